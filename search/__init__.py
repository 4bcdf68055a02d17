"""Search: queries to results, the Python API and the CLI."""
