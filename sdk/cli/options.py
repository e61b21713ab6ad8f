"""Options shared by several ``unet-sdk`` subcommands (one definition, one help text)."""
from __future__ import annotations

import argparse

from ..errors import InvalidInputError
from ..runtime import parse_device


def device(text: str) -> str:
    """argparse type of ``--device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    try:
        parse_device(text)
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_device_argument(parser: argparse.ArgumentParser, *, what: str = "where to run") -> None:
    parser.add_argument(
        "--device", type=device, default="auto", metavar="DEVICE",
        help=f"{what}: auto, cpu, cuda or cuda:N (the N-th GPU) (default: auto)",
    )


def add_verbosity_arguments(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """``-v``/``-q`` on the main parser and again on each subcommand, so that they work on either side
    of the subcommand; the subcommand's copy leaves the attribute alone unless given."""
    default = 0 if top_level else argparse.SUPPRESS
    parser.add_argument("-v", "--verbose", action="count", default=default,
                        help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="count", default=default,
                        help="errors only, no progress bars")
