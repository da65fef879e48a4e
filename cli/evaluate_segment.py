"""zhtext CLI: evaluate_segment commands."""
