"""The `tinyexit` command: a thin layer over the Python API.

Each verb lives in its own module under `tinyexit/commands/` and exposes
`NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`; they are discovered here, so adding a
verb never touches this file.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from tinyexit import __version__
from tinyexit.errors import TinyexitError


def _commands():
    import tinyexit.commands as pkg
    mods = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"tinyexit.commands.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinyexit", description="Early-exit TinyML from data to firmware.")
    parser.add_argument("--version", action="version", version=f"tinyexit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in _commands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except TinyexitError as e:
        print(f"tinyexit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
