"""Entry point of the ``unet-sdk`` command.

Each subcommand lives in its own module ``sdk.cli.<name>`` exposing ``add_parser(subparsers)`` (which
registers the subcommand and sets ``func``) and a ``run(args) -> int``. Errors of unet-sdk
(:class:`sdk.errors.UnetSdkError`) are printed without a traceback and give exit status 2;
Ctrl-C gives 130; a closed pipe (``unet-sdk info --json | head``) ends quietly with 141, as for
SIGPIPE. ``-v``/``-q`` work before and after the subcommand.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from .._version import __version__
from ..errors import UnetSdkError
from .options import add_verbosity_arguments

SUBCOMMANDS = ("demo", "predict", "info", "evaluate", "explain")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unet-sdk", description="U-Net segmentation with ONNX Runtime, and ISBI 2012 / topology metrics."
    )
    parser.add_argument("--version", action="version", version=f"unet-sdk {__version__}")
    add_verbosity_arguments(parser, top_level=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f".{name}", __package__).add_parser(subparsers)
    for subparser in subparsers.choices.values():
        add_verbosity_arguments(subparser, top_level=False)
        if subparser.description:  # module docstrings serve as descriptions: no reST markup in --help
            subparser.description = subparser.description.replace("``", "")
    return parser


def run_parsed(
    args: argparse.Namespace,
    *,
    prog: str,
    errors: tuple[type[BaseException], ...] = (UnetSdkError,),
    log_format: str = "%(levelname)s %(name)s: %(message)s",
) -> int:
    """Configure logging from ``args.verbose``/``args.quiet`` and run ``args.func(args)``: the expected
    ``errors`` are printed as one line without a traceback (exit 2), Ctrl-C gives 130, a reader that
    closed our stdout 141. Shared with ``unet-export``."""
    verbosity = args.verbose - getattr(args, "quiet", 0)
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(
        max(-1, verbosity), logging.DEBUG
    )
    logging.basicConfig(level=level, format=log_format)
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        return status
    except errors as exc:
        print(f"{prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog} {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader (e.g. `head`) has what it wanted; point stdout at /dev/null so that the
        # interpreter's final flush does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def main(argv: list[str] | None = None) -> int:
    return run_parsed(build_parser().parse_args(argv), prog="unet-sdk")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
