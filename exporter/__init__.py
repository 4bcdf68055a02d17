"""Training and export (needs the [train] extra): the only place that imports torch."""
