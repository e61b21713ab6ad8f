"""Entry point of the ``unet-sdk`` command.

Each subcommand lives in its own module ``sdk.cli.<name>`` exposing ``add_parser(subparsers)`` (which
registers the subcommand and sets ``func``) and a ``run(args) -> int``. Errors of unet-sdk
(:class:`sdk.errors.UnetSdkError`) are printed without a traceback and give exit status 2;
Ctrl-C gives 130.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .._version import __version__
from ..errors import UnetSdkError

SUBCOMMANDS = ("demo", "predict", "info", "evaluate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unet-sdk", description="U-Net segmentation with ONNX Runtime, and ISBI 2012 / topology metrics."
    )
    parser.add_argument("--version", action="version", version=f"unet-sdk {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f".{name}", __package__).add_parser(subparsers)
    return parser


def run_parsed(
    args: argparse.Namespace,
    *,
    prog: str,
    errors: tuple[type[BaseException], ...] = (UnetSdkError,),
    log_format: str = "%(levelname)s %(name)s: %(message)s",
) -> int:
    """Configure logging from ``args.verbose`` and run ``args.func(args)``: the expected ``errors`` are
    printed as one line without a traceback (exit 2), Ctrl-C gives 130. Shared with ``unet-export``."""
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format=log_format)
    try:
        return int(args.func(args) or 0)
    except errors as exc:
        print(f"{prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog} {args.command}: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    return run_parsed(build_parser().parse_args(argv), prog="unet-sdk")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
