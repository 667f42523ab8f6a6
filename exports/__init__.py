"""Exporters: a finished build in another trainer's layout, one module per format."""
