"""CLI subcommands: each module exposes register(app) and owns one command."""
