"""The `tinyexit` command: a thin layer over the Python API.

Each verb lives in its own module under `tinyexit/commands/` and exposes
`NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`; they are discovered here, so adding a
verb never touches this file.

Exit status: 0 success; 1 a result that failed its check (e.g. bench's oracle comparison); 2 a problem the user
can fix (TinyexitError: bad arguments, a missing tool, a broken run folder), printed as one line without a
traceback; 3 an internal error (a bug in tinyexit), printed as one line; `--verbose` adds the traceback.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from tinyexit import __version__, logs
from tinyexit.errors import TinyexitError, brief

INTERNAL_ERROR = 3


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
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show TensorFlow's and absl's log lines (hidden by default) and the traceback of an "
                             "internal error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in _commands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="show TensorFlow's and absl's log lines (hidden by default) and the traceback of an "
                             "internal error")
        p.set_defaults(_run=mod.run)
    return parser


def _environment_problem(e: Exception) -> str | None:
    """The one-line message of an OSError the user fixes (no permission, disk full, read-only file system),
    else None (any other exception is a bug)."""
    import errno
    if isinstance(e, PermissionError) or (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EROFS,
                                                                                  errno.EDQUOT)):
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror or e}; check the permissions and free space of that folder"
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        logs.set_verbose()
    try:
        return int(args._run(args) or 0)
    except TinyexitError as e:
        print(f"tinyexit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: one line, the traceback only on request
        env = _environment_problem(e)
        if env:
            print(f"tinyexit {args.command}: error: {env}", file=sys.stderr)
            return 2
        if args.verbose:
            import traceback
            traceback.print_exc()
        print(f"tinyexit {args.command}: internal error: {brief(e, 300)} (a bug in tinyexit; re-run with "
              f"--verbose for the traceback and report it)", file=sys.stderr)
        return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
