"""zhtext CLI: tag commands."""
