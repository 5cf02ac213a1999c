"""``bitlogic train``: train a preset on a data set, export the network and check it against the torch model.

A run is described by its :class:`_Settings`, taken from the flags or, with ``--resume``, from the checkpoint of
the run it continues (flags that contradict the checkpoint are refused). PyTorch is imported only here, when the
command runs, so that the other commands work without it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

import bitlogic
from bitlogic.cli._common import (
    EXIT_INTERRUPTED,
    MIN_BENCH_ROWS,
    CliError,
    best_rate,
    fraction,
    load_dataset,
    non_negative_float,
    positive_float,
    positive_int,
    rate,
    size,
    thread_counts,
    threads_label,
    tile,
)
from bitlogic.errors import CheckpointError
from bitlogic.network import Network

if TYPE_CHECKING:
    import torch
    from torch import nn

    from bitlogic.datasets import Dataset
    from bitlogic.presets import Preset
    from bitlogic.training import TrainResult

DEFAULT_OUTPUT = "model.bitlogic"
SCHEDULE_CHOICES = ["one-cycle", "onecycle", "cosine", "constant", "step"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train a preset on a dataset and export the network")
    p.add_argument("--dataset", help="dataset name (mnist, fashion-mnist, breast-cancer, digits)")
    p.add_argument("--data-dir", help="dataset directory (default: $BITLOGIC_DATA or ~/.cache/bitlogic)")
    p.add_argument("--preset", help="model preset (see `bitlogic presets`)")
    p.add_argument("--epochs", type=positive_int, help="default: the preset's")
    p.add_argument("--batch-size", type=positive_int, help="default: the preset's")
    p.add_argument("--lr", type=positive_float, help="peak learning rate; default: the preset's")
    p.add_argument("--schedule", choices=SCHEDULE_CHOICES,
                   help="learning-rate schedule (default: the preset's, one-cycle for most; step: x0.1 every third of "
                        "the run, or at the preset's period)")
    p.add_argument("--weight-decay", type=non_negative_float,
                   help="decoupled weight decay (AdamW) of every parameter; default: 0 (Adam)")
    p.add_argument("--val-split", type=fraction,
                   help="fraction of the training set held out for validation; the test set is then evaluated once, "
                        "at the end, and the best epoch kept in CHECKPOINT's .best.ckpt; default: 0")
    p.add_argument("--history", nargs="?", const="", metavar="PATH",
                   help="write the per-epoch history (.csv or .json); without PATH beside the checkpoint "
                        "(CHECKPOINT's .history.csv)")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto", help="default: auto")
    p.add_argument("--seed", type=int, help="default: 0")
    p.add_argument("--output", "-o", help=f"network file to write (default: {DEFAULT_OUTPUT})")
    p.add_argument("--checkpoint", help="training checkpoint (default: OUTPUT with suffix .ckpt)")
    p.add_argument("--resume", action="store_true", help="continue the run saved in the checkpoint")
    p.add_argument("--threads", type=positive_int, help="torch threads (torch.set_num_threads)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (also off when not a terminal)")
    p.set_defaults(func=run)


@dataclass(frozen=True)
class _Settings:
    """What a run trains; ``None`` training settings are the preset's."""

    dataset: str
    preset: str
    data_dir: str | None
    output: Path
    checkpoint: Path
    seed: int
    epochs: int | None
    batch_size: int | None
    lr: float | None
    schedule: str | None = None  # None: the preset's
    weight_decay: float = 0.0
    val_split: float = 0.0
    history: str | None = None  # a path, "" for beside the checkpoint, None for no history file
    step_size: int | None = None  # the step schedule's period; None: the preset's (or a third of the run)

    def hyper(self, preset: Preset) -> _Hyper:
        from bitlogic.training import canonical_schedule

        schedule = self.schedule if self.schedule is not None else canonical_schedule(preset.schedule)
        return _Hyper(
            self.epochs if self.epochs is not None else preset.epochs,
            self.batch_size if self.batch_size is not None else preset.batch_size,
            self.lr if self.lr is not None else preset.lr,
            schedule,
            # The preset's step period belongs to its own schedule and epochs.
            self.step_size if self.step_size is not None
            else preset.step_size if schedule == canonical_schedule(preset.schedule) and self.epochs is None
            else None,
        )


class _Hyper(NamedTuple):
    epochs: int
    batch_size: int
    lr: float
    schedule: str
    step_size: int | None


def run(args: argparse.Namespace) -> int:
    torch = _import_torch()
    from bitlogic import presets, training

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = _resumed(args) if args.resume else _fresh(args)
    preset = presets.get(settings.preset)
    dataset = load_dataset(settings.dataset, settings.data_dir)
    hyper = settings.hyper(preset)
    device = training.resolve_device(args.device)  # --device cuda without a GPU: a CudaError, reported by main
    torch.manual_seed(settings.seed)
    model = preset.build(dataset.x_train, dataset.num_classes, dataset.image_shape)
    print(
        f"training {preset.name} ({preset.description}) on {dataset.name}: {len(dataset.x_train)} train / "
        f"{len(dataset.x_test)} test samples; {hyper.epochs} epochs, batch {hyper.batch_size}, lr {hyper.lr:g}, "
        f"seed {settings.seed}, device {device}, torch threads: {torch.get_num_threads()}",
        flush=True,
    )
    if (hyper.schedule, settings.weight_decay, settings.val_split) != ("onecycle", 0.0, 0.0):
        print(f"schedule {hyper.schedule}, weight decay {settings.weight_decay:g}, "
              f"validation split {settings.val_split:g}", flush=True)
    progress = not args.no_progress and sys.stderr.isatty()
    result = _train(model, dataset, preset, settings, hyper, device, resume=args.resume, progress=progress)
    if result is None:
        return EXIT_INTERRUPTED
    if settings.val_split > 0:
        print(f"best epoch by validation accuracy: {result.best_epoch} ({result.best_val_accuracy:.2%}), its "
              f"checkpoint in {training.best_checkpoint_path(settings.checkpoint)}")
    net = _export(model, preset, dataset, settings, hyper, result, device)
    _report_exported(net, model, dataset, result.test_accuracy, device)
    return 0


def _import_torch() -> Any:
    if "torch" not in sys.modules:
        # Torch's OpenMP threads spin for milliseconds after each of its parallel regions (libgomp's default wait
        # policy), taking the cores from the fused kernels in between: on a 2-core machine under load a training step
        # measured 5-10x its kernels' time, and with PASSIVE the step costs its kernels plus torch's own few ms.
        # libgomp reads the setting once, when torch loads, so it can only be chosen here; a user's value is kept.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
    except ImportError as error:
        raise CliError(f"bitlogic train needs PyTorch: pip install torch ({error})") from None
    return torch


def _checkpoint_path(args: argparse.Namespace) -> Path:
    if args.checkpoint:
        return Path(args.checkpoint)
    return Path(args.output or DEFAULT_OUTPUT).with_suffix(".ckpt")


def _fresh(args: argparse.Namespace) -> _Settings:
    from bitlogic import training

    if args.dataset is None or args.preset is None:
        raise CliError("train needs --dataset and --preset (or --resume to continue from a checkpoint)")
    checkpoint = _checkpoint_path(args)
    _refuse_unfinished(checkpoint)
    seed = args.seed if args.seed is not None else 0
    output = Path(args.output or DEFAULT_OUTPUT)
    return _Settings(
        args.dataset, args.preset, args.data_dir, output, checkpoint, seed, args.epochs, args.batch_size, args.lr,
        training.canonical_schedule(args.schedule) if args.schedule is not None else None, args.weight_decay or 0.0, args.val_split or 0.0,
        args.history,
    )


def _refuse_unfinished(checkpoint: Path) -> None:
    """A fresh run would overwrite ``checkpoint``; refuse when it holds an unfinished run."""
    if not checkpoint.is_file():
        return
    from bitlogic import training

    try:
        saved = training.load_checkpoint(checkpoint)
    except CheckpointError:
        return  # unreadable or foreign: nothing to continue from
    done, total = int(saved["epoch"]), int(saved["config"].get("epochs", 0))
    if done < total:
        raise CliError(
            f"{checkpoint} holds an unfinished run ({done}/{total} epochs); continue it with --resume, or delete it "
            "(or pass another --checkpoint) to start over"
        )


def _resumed(args: argparse.Namespace) -> _Settings:
    """The settings of the run saved in the checkpoint; flags may repeat them but not change them."""
    from bitlogic import training

    checkpoint = _checkpoint_path(args)
    saved = training.load_checkpoint(checkpoint)
    extra, config = saved["extra"], saved["config"]
    steps = training.steps_per_epoch(int(config["num_train"]), int(config["batch_size"]))
    epoch, step = int(saved["epoch"]), int(saved["step"])
    del saved  # the model and optimizer states: the training loop reads them again
    where = f"epoch {epoch + 1}/{config['epochs']}, step {step}/{steps}"
    where = where if epoch < int(config["epochs"]) else "the end (training already finished)"
    _check_unchanged(args, checkpoint, extra, config)
    dataset, preset = args.dataset or extra.get("dataset"), args.preset or extra.get("preset")
    if dataset is None or preset is None:
        raise CliError(f"{checkpoint} does not name its dataset and preset; pass --dataset and --preset")
    output = Path(args.output) if args.output else Path(extra.get("output") or DEFAULT_OUTPUT)
    print(f"resuming {checkpoint} at {where}")
    return _Settings(
        dataset,
        preset,
        args.data_dir or extra.get("data_dir"),
        output,
        checkpoint,
        config["seed"],
        config["epochs"],
        config["batch_size"],
        config["lr"],
        config.get("schedule", "onecycle"),
        float(config.get("weight_decay", 0.0)),
        float(config.get("val_split", 0.0)),
        args.history if args.history is not None else extra.get("history"),
        config.get("step_size"),
    )


def _check_unchanged(args: argparse.Namespace, checkpoint: Path, extra: dict[str, Any], config: dict[str, Any]) -> None:
    from bitlogic import training

    for flag, given, key in (("--dataset", args.dataset, "dataset"), ("--preset", args.preset, "preset")):
        if given is not None and extra.get(key) is not None and given != extra[key]:
            raise CliError(f"{checkpoint} was made with {flag} {extra[key]}, not {given}")
    for flag, given, key in (
        ("--epochs", args.epochs, "epochs"),
        ("--batch-size", args.batch_size, "batch_size"),
        ("--lr", args.lr, "lr"),
        ("--seed", args.seed, "seed"),
        ("--weight-decay", args.weight_decay, "weight_decay"),
        ("--val-split", args.val_split, "val_split"),
    ):
        made = config.get(key, training.CONFIG_DEFAULTS.get(key))
        if given is not None and given != made:
            raise CliError(f"{checkpoint} was made with {flag} {made}; a resumed run keeps it")
    if args.schedule is not None and training.canonical_schedule(args.schedule) != config.get("schedule"):
        raise CliError(f"{checkpoint} was made with --schedule {config.get('schedule')}; a resumed run keeps it")


@contextlib.contextmanager
def _epoch_lines(enabled: bool) -> Iterator[None]:
    """Without a progress bar, the training loop's log (one line per epoch) goes to stdout."""
    from bitlogic import training

    if not enabled:
        yield
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    training.logger.addHandler(handler)
    training.logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        training.logger.removeHandler(handler)


def _train(
    model: nn.Module,
    dataset: Dataset,
    preset: Preset,
    settings: _Settings,
    hyper: _Hyper,
    device: torch.device,
    *,
    resume: bool,
    progress: bool,
) -> TrainResult | None:
    """The training run; ``None`` after Ctrl-C, with the checkpoint saved."""
    from bitlogic import training

    extra = {
        "preset": preset.name,
        "dataset": dataset.name,
        "data_dir": str(settings.data_dir) if settings.data_dir is not None else None,
        "output": str(settings.output),
        "seed": settings.seed,
        "history": settings.history,
    }
    history: str | bool | None = True if settings.history == "" else settings.history
    with _epoch_lines(not progress):
        try:
            return training.train(
                model,
                dataset,
                epochs=hyper.epochs,
                batch_size=hyper.batch_size,
                lr=hyper.lr,
                device=device,
                seed=settings.seed,
                checkpoint=settings.checkpoint,
                resume=resume,
                progress=progress,
                extra=extra,
                schedule=hyper.schedule,  # type: ignore[arg-type]  # argparse's choices, a checkpoint's or a preset's
                step_size=hyper.step_size,
                weight_decay=settings.weight_decay,
                val_split=settings.val_split,
                history=history,
            )
        except KeyboardInterrupt:
            print(
                f"\ninterrupted; checkpoint saved to {settings.checkpoint}, continue with --resume "
                f"(bitlogic train --resume --checkpoint {settings.checkpoint})",
                file=sys.stderr,
            )
            return None


def _export(
    model: nn.Module,
    preset: Preset,
    dataset: Dataset,
    settings: _Settings,
    hyper: _Hyper,
    result: TrainResult,
    device: torch.device,
) -> Network:
    """Compiles the trained model with what made it in ``info``, saves it, and reads the file back."""
    import torch

    info = {
        "preset": preset.name,
        "family": preset.family,
        "dataset": dataset.name,
        "epochs": str(hyper.epochs),
        "batch_size": str(hyper.batch_size),
        "lr": repr(float(hyper.lr)),
        "seed": str(settings.seed),
        "schedule": hyper.schedule,
        "weight_decay": repr(float(settings.weight_decay)),
        "val_split": repr(float(settings.val_split)),
        "test_accuracy": f"{result.test_accuracy:.6f}",
        "train_seconds": f"{result.seconds:.1f}",
        "device": str(device),
        "bitlogic_version": bitlogic.__version__,
        "torch_version": str(torch.__version__),
        "created": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
    }
    bitlogic.compile(model, info=info).save(settings.output)
    net = bitlogic.load(settings.output)
    size_bytes = os.path.getsize(settings.output)
    print(f"saved {settings.output} ({size_bytes:,} bytes); trained in {result.seconds:.1f} s")
    return net


def _report_exported(net: Network, model: nn.Module, dataset: Dataset, torch_accuracy: float, device: Any) -> None:
    """The engine's test accuracy, a loud warning if it disagrees with torch, the network's size and speed."""
    from bitlogic import training

    x_test, y_test = dataset.x_test, dataset.y_test
    predictions = net.predict(x_test)
    correct = int((predictions == y_test).sum())
    accuracy = correct / len(y_test)
    disagree = int((training.predict(model, x_test, device=device) != predictions).sum())
    print(f"test accuracy {accuracy:.2%} ({correct}/{len(y_test)}) through the Rust engine")
    if disagree or accuracy != torch_accuracy:
        bar = "!" * 78
        print(
            f"{bar}\nWARNING: the exported network disagrees with the torch model in eval(): {disagree} of "
            f"{len(y_test)} test predictions differ (engine {accuracy:.4%}, torch {torch_accuracy:.4%}).\n"
            f"This is a bug in bitlogic's export; please report it.\n{bar}",
            file=sys.stderr,
        )
    else:
        print("  identical to the torch model in eval() (all predictions agree)")
    stats = net.stats()
    print(f"network: {size(stats)}, depth {stats['depth']}, {stats['bytes']:,} bytes of network data")
    x = tile(np.asarray(x_test), MIN_BENCH_ROWS)
    net.prepare()
    rates = [
        f"{rate(best_rate(net, x, 3, t))} ({'1 thread' if t == 1 else threads_label(t) + ' threads'})"
        for t in thread_counts(None)
    ]
    print(f"inference on the test set ({len(x)} rows): " + ", ".join(rates))
