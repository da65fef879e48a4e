"""zhtext CLI: segment commands."""
