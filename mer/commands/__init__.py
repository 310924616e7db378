"""Thin wiring modules of the ``fedpsyau`` subcommands that belong to the MER side."""
