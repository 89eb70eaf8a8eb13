"""One module per CLI subcommand; each exposes ``register(subparsers)`` which
adds its parser and sets ``func(args) -> dict`` (the JSON result)."""
