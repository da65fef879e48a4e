"""zhtext CLI: discover commands."""
