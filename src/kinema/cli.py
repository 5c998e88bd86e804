"""The `kinema` command line: one typer app; each subcommand lives in kinema/commands/.

Heavy imports (torch, transformers) happen inside the commands, so `kinema --help`
is instant. Any KinemaInputError becomes a one-line message and exit code 2.
"""

from __future__ import annotations

import importlib
import sys

import typer

from kinema.errors import KinemaInputError

COMMAND_MODULES = ("generate", "train", "evaluate", "models", "story", "serve", "worker", "admin")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="kinema: text-to-video that runs anywhere.",
)

for _name in COMMAND_MODULES:
    try:
        _module = importlib.import_module(f"kinema.commands.{_name}")
    except ModuleNotFoundError as exc:  # a command not built yet must not break the others
        if exc.name != f"kinema.commands.{_name}":
            raise
        continue
    _module.register(app)


def main() -> None:
    try:
        app()
    except KinemaInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
