"""``bitlogic presets``: the model presets and their training settings."""

from __future__ import annotations

import argparse
from typing import Any

from bitlogic.cli._common import CliError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("presets", help="list the model presets")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from bitlogic import presets
    except ImportError as error:
        raise CliError(f"the presets need PyTorch: pip install torch ({error})") from None
    print(f"{'preset':<14} {'family':<7} {'epochs':>6} {'batch':>6} {'lr':>7}  description")
    for preset in presets.PRESETS.values():
        print(
            f"{preset.name:<14} {preset.family:<7} {preset.epochs:>6} {preset.batch_size:>6} {preset.lr:>7g}  "
            f"{preset.description}"
        )
    return 0
