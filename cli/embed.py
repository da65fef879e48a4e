"""zhtext CLI: embed commands."""
