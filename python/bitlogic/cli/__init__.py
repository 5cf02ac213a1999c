"""The ``bitlogic`` command: train presets, evaluate, benchmark and inspect network files.

::

    bitlogic train --dataset mnist --preset lut-small --output mnist.bitlogic
    bitlogic train --resume --output mnist.bitlogic          # after Ctrl-C
    bitlogic eval mnist.bitlogic --dataset mnist
    bitlogic bench mnist.bitlogic --threads 1
    bitlogic info mnist.bitlogic
    bitlogic presets

One module per command (``train``, ``evaluate``, ``bench``, ``info``, ``presets``), each with its ``add_parser`` and
``run``. Only ``train`` and ``presets`` need PyTorch; ``eval``, ``bench`` and ``info`` run on the Rust engine alone.
Every :class:`bitlogic.BitlogicError` (bad files, data sets, checkpoints, models, usage) and every ``OSError`` is one
line on stderr (``bitlogic: error: ...``) and exit status 2; Ctrl-C is exit status 130. ``BITLOGIC_DEBUG=1`` shows
the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import bitlogic
from bitlogic.cli import bench, evaluate, info, presets, train
from bitlogic.cli._common import EXIT_ERROR, EXIT_INTERRUPTED, CliError, one_line
from bitlogic.errors import BitlogicError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bitlogic",
        description="Train boolean logic-gate / LUT / binary networks and run them on the bit-sliced engine.",
    )
    parser.add_argument("--version", action="version", version=f"bitlogic {bitlogic.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in (train, evaluate, bench, info, presets):
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
        return status
    except KeyboardInterrupt:
        print("bitlogic: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (BitlogicError, OSError) as error:
        if os.environ.get("BITLOGIC_DEBUG"):
            raise
        print(f"bitlogic: error: {one_line(error)}", file=sys.stderr)
        return EXIT_ERROR


__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "CliError", "build_parser", "main"]
