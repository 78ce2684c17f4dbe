"""Command-line interface: a thin typer layer over `smallvision.api`."""
