"""The ``r1searcher`` entry point: discovers sub-commands in ``r1searcher.commands``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import r1searcher
import r1searcher.commands as _commands
from r1searcher.util.errors import describe_error


def _command_modules() -> list[tuple[str, object]]:
    out = []
    for info in sorted(pkgutil.iter_modules(_commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"r1searcher.commands.{info.name}")
        out.append((info.name.replace("_", "-"), mod))
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="r1searcher",
        description="Teach language models to search while they reason (R1-Searcher), on a laptop or a cluster.",
    )
    parser.add_argument("--version", action="version", version=f"r1searcher {r1searcher.__version__}")
    parser.add_argument("--debug", dest="debug_all", action="store_true",
                        help="show the full traceback of an error (also: R1SEARCHER_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, mod in _command_modules():
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    import os

    import yaml

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    # Clear one-line errors, no traceback: the user's input (files, values, YAML), the disk (no space,
    # no permission), a retriever that is down. --debug (before or after the command) shows it all.
    except (OSError, ValueError, RuntimeError, yaml.YAMLError) as e:
        if getattr(args, "debug", False) or args.debug_all or os.environ.get("R1SEARCHER_DEBUG"):
            raise
        print(f"r1searcher {args.command}: error: {describe_error(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
