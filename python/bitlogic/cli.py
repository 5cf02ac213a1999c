"""The ``bitlogic`` command: train presets, evaluate, benchmark and inspect network files.

::

    bitlogic train --dataset mnist --preset lut-small --output mnist.bitlogic
    bitlogic train --resume --output mnist.bitlogic          # after Ctrl-C
    bitlogic eval mnist.bitlogic --dataset mnist
    bitlogic bench mnist.bitlogic --threads 1
    bitlogic info mnist.bitlogic
    bitlogic presets

Only ``train`` and ``presets`` need PyTorch; ``eval``, ``bench`` and ``info`` run on the Rust engine alone. Errors
are one line on stderr (``bitlogic: error: ...``) and exit status 2; ``BITLOGIC_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import bitlogic
from bitlogic.network import Network
from bitlogic.spec import BinaryLayer, GateLayer, LutLayer, ThresholdEncoder

if TYPE_CHECKING:
    from torch import nn

    from bitlogic.datasets import Dataset

DEFAULT_OUTPUT = "model.bitlogic"
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
# Throughput figures from fewer rows than this are mostly call overhead; smaller test sets are tiled up to it.
_MIN_BENCH_ROWS = 8192


class CliError(Exception):
    """A usage problem reported as ``bitlogic: error: <message>``."""


# -- helpers --------------------------------------------------------------------------------------------------------


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _load_network(path: str) -> Network:
    if not os.path.exists(path):
        raise CliError(f"no such network file: {path}")
    if os.path.isdir(path):
        raise CliError(f"{path} is a directory, not a network file")
    return bitlogic.load(path)


def _load_dataset(name: str, data_dir: str | None) -> Dataset:
    from bitlogic import datasets

    return datasets.load(name, root=data_dir)


def _best_rate(
    net: Network, x: np.ndarray, repeat: int, threads: int | None, isa: Any = None, optimize: bool = True
) -> float:
    """Samples per second, best of ``repeat`` timed runs after one warm-up."""
    net.predict(x[: min(len(x), 256)], threads=threads, isa=isa, optimize=optimize)
    best = math.inf
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        net.predict(x, threads=threads, isa=isa, optimize=optimize)
        best = min(best, time.perf_counter() - start)
    return len(x) / max(best, 1e-9)


def _rate(rate: float) -> str:
    if rate >= 1e6:
        return f"{rate / 1e6:.2f} M samples/s"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f} k samples/s"
    return f"{rate:.0f} samples/s"


def _size(stats: dict[str, Any]) -> str:
    parts = []
    if stats.get("gates"):
        parts.append(f"{stats['gates']:,} gates")
    for arity, count in sorted(dict(stats.get("luts") or {}).items()):
        parts.append(f"{count:,} {arity}-input LUTs")
    if stats.get("binary_weights"):
        parts.append(f"{stats['binary_weights']:,} binary weights")
    return ", ".join(parts) or "no layers"


def _thread_counts(threads: int | None) -> list[int | None]:
    """``[threads]`` when given, else 1 and all cores (``None``: the engine uses every core)."""
    if threads is not None:
        if threads < 1:
            raise CliError(f"--threads must be >= 1, got {threads}")
        return [threads]
    return [1] if (os.cpu_count() or 1) == 1 else [1, None]


def _threads_label(threads: int | None) -> str:
    if threads is None:
        return f"all ({os.cpu_count() or 1})"
    return str(threads)


# -- train ----------------------------------------------------------------------------------------------------------


def _cmd_train(args: argparse.Namespace) -> int:
    try:
        import torch
    except ImportError as error:
        raise CliError(f"bitlogic train needs PyTorch: pip install torch ({error})") from None
    from bitlogic import presets, training

    if args.threads is not None:
        if args.threads < 1:
            raise CliError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    output = Path(args.output) if args.output else None
    checkpoint = Path(args.checkpoint) if args.checkpoint else Path(args.output or DEFAULT_OUTPUT).with_suffix(".ckpt")

    dataset_name: str | None = args.dataset
    preset_name: str | None = args.preset
    data_dir: str | None = args.data_dir
    seed: int = args.seed if args.seed is not None else 0
    epochs, batch_size, lr = args.epochs, args.batch_size, args.lr
    if args.resume:
        saved = training.load_checkpoint(checkpoint)
        extra, config = saved["extra"], saved["config"]
        steps = training.steps_per_epoch(int(config["num_train"]), int(config["batch_size"]))
        progress_note = (
            f"epoch {int(saved['epoch']) + 1}/{config['epochs']}, step {int(saved['step'])}/{steps}"
            if int(saved["epoch"]) < int(config["epochs"])
            else "the end (training already finished)"
        )
        del saved
        for flag, given, key in (
            ("--dataset", dataset_name, "dataset"),
            ("--preset", preset_name, "preset"),
        ):
            if given is not None and extra.get(key) is not None and given != extra[key]:
                raise CliError(f"{checkpoint} was made with {flag} {extra[key]}, not {given}")
        for flag, given, key in (
            ("--epochs", epochs, "epochs"),
            ("--batch-size", batch_size, "batch_size"),
            ("--lr", lr, "lr"),
            ("--seed", args.seed, "seed"),
        ):
            if given is not None and given != config.get(key):
                raise CliError(f"{checkpoint} was made with {flag} {config.get(key)}; a resumed run keeps it")
        dataset_name = dataset_name or extra.get("dataset")
        preset_name = preset_name or extra.get("preset")
        if dataset_name is None or preset_name is None:
            raise CliError(f"{checkpoint} does not name its dataset and preset; pass --dataset and --preset")
        data_dir = data_dir or extra.get("data_dir")
        if output is None:
            output = Path(extra["output"]) if extra.get("output") else Path(DEFAULT_OUTPUT)
        epochs, batch_size, lr, seed = config["epochs"], config["batch_size"], config["lr"], config["seed"]
        print(f"resuming {checkpoint} at {progress_note}")
    else:
        if dataset_name is None or preset_name is None:
            raise CliError("train needs --dataset and --preset (or --resume to continue from a checkpoint)")
        _refuse_unfinished(checkpoint)
    output = output or Path(DEFAULT_OUTPUT)

    preset = presets.get(preset_name)
    dataset = _load_dataset(dataset_name, data_dir)
    epochs = epochs if epochs is not None else preset.epochs
    batch_size = batch_size if batch_size is not None else preset.batch_size
    lr = lr if lr is not None else preset.lr
    device = training.resolve_device(args.device)
    torch.manual_seed(seed)
    model = preset.build(dataset.x_train, dataset.num_classes)
    print(
        f"training {preset.name} ({preset.description}) on {dataset.name}: {len(dataset.x_train)} train / "
        f"{len(dataset.x_test)} test samples; {epochs} epochs, batch {batch_size}, lr {lr:g}, seed {seed}, "
        f"device {device}, torch threads: {torch.get_num_threads()}",
        flush=True,
    )
    extra = {
        "preset": preset.name,
        "dataset": dataset.name,
        "data_dir": str(data_dir) if data_dir is not None else None,
        "output": str(output),
        "seed": seed,
    }
    progress = not args.no_progress and sys.stderr.isatty()
    handler: logging.Handler | None = None
    if not progress:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        training.logger.addHandler(handler)
        training.logger.setLevel(logging.INFO)
    try:
        result = training.train(
            model,
            dataset,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            device=device,
            seed=seed,
            checkpoint=checkpoint,
            resume=args.resume,
            progress=progress,
            extra=extra,
        )
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; checkpoint saved to {checkpoint}, continue with --resume "
            f"(bitlogic train --resume --checkpoint {checkpoint})",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    finally:
        if handler is not None:
            training.logger.removeHandler(handler)

    info = {
        "preset": preset.name,
        "family": preset.family,
        "dataset": dataset.name,
        "epochs": str(epochs),
        "batch_size": str(batch_size),
        "lr": repr(float(lr)),
        "seed": str(seed),
        "test_accuracy": f"{result.test_accuracy:.6f}",
        "train_seconds": f"{result.seconds:.1f}",
        "device": str(device),
        "bitlogic_version": bitlogic.__version__,
        "torch_version": str(torch.__version__),
        "created": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
    }
    net = bitlogic.compile(model, info=info)
    net.save(output)
    net = bitlogic.load(output)
    print(f"saved {output} ({os.path.getsize(output):,} bytes); trained in {result.seconds:.1f} s")
    _report_exported(net, model, dataset, result.test_accuracy, device)
    return 0


def _refuse_unfinished(checkpoint: Path) -> None:
    """A fresh run would overwrite ``checkpoint``; refuse when it holds an unfinished run."""
    if not checkpoint.is_file():
        return
    from bitlogic import training

    try:
        saved = training.load_checkpoint(checkpoint)
    except training.CheckpointError:
        return  # unreadable or foreign: nothing to continue from
    done, total = int(saved["epoch"]), int(saved["config"].get("epochs", 0))
    if done < total:
        raise CliError(
            f"{checkpoint} holds an unfinished run ({done}/{total} epochs); continue it with --resume, or delete it "
            "(or pass another --checkpoint) to start over"
        )


def _report_exported(net: Network, model: nn.Module, dataset: Dataset, torch_accuracy: float, device: Any) -> None:
    from bitlogic import training

    x_test, y_test = dataset.x_test, dataset.y_test
    predictions = net.predict(x_test)
    correct = int((predictions == y_test).sum())
    accuracy = correct / len(y_test)
    torch_predictions = training.predict(model, x_test, device=device)
    disagree = int((torch_predictions != predictions).sum())
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
    print(f"network: {_size(stats)}, depth {stats['depth']}, {stats['bytes']:,} bytes of network data")
    x = _tile(np.asarray(x_test), _MIN_BENCH_ROWS)
    rates = [
        f"{_rate(_best_rate(net, x, 3, t))} ({'1 thread' if t == 1 else _threads_label(t) + ' threads'})"
        for t in _thread_counts(None)
    ]
    print(f"inference on the test set ({len(x)} rows): " + ", ".join(rates))


def _tile(x: np.ndarray, rows: int) -> np.ndarray:
    if len(x) >= rows or len(x) == 0:
        return x
    return np.ascontiguousarray(np.resize(x, (rows, *x.shape[1:])))


# -- eval, bench, info, presets -------------------------------------------------------------------------------------


def _cmd_eval(args: argparse.Namespace) -> int:
    net = _load_network(args.model)
    dataset = _load_dataset(args.dataset, args.data_dir)
    if net.num_inputs != dataset.num_features:
        raise CliError(
            f"{args.model} takes {net.num_inputs} inputs but {dataset.name} has {dataset.num_features} features"
        )
    if net.num_classes < dataset.num_classes:
        raise CliError(f"{args.model} has {net.num_classes} classes but {dataset.name} has {dataset.num_classes}")
    start = time.perf_counter()
    predictions = net.predict(dataset.x_test)
    seconds = time.perf_counter() - start
    correct = int((predictions == dataset.y_test).sum())
    total = len(dataset.y_test)
    print(
        f"{dataset.name} test accuracy {correct / total:.2%} ({correct}/{total}); "
        f"{_rate(total / max(seconds, 1e-9))}, all threads"
    )
    return 0


def _random_inputs(net: Network, rows: int, seed: int = 0) -> np.ndarray:
    """Random rows the network accepts: uint8 features spanning its thresholds (float32 when they do not fit in
    0..255), or random input bits for a network without an encoder."""
    rng = np.random.default_rng(seed)
    encoder = net.encoder
    if isinstance(encoder, ThresholdEncoder):
        thresholds = encoder.thresholds[np.isfinite(encoder.thresholds)]
        low = float(thresholds.min()) if thresholds.size else 0.0
        high = float(thresholds.max()) if thresholds.size else 255.0
        if low >= 0 and high < 255:
            lo, hi = max(0, math.floor(low)), min(255, math.ceil(high) + 1)
            return rng.integers(lo, hi + 1, size=(rows, net.num_inputs), dtype=np.uint8)
        margin = 0.1 * (high - low) + 1e-3
        return rng.uniform(low - margin, high + margin, size=(rows, net.num_inputs)).astype(np.float32)
    return rng.integers(0, 2, size=(rows, net.num_inputs), dtype=np.uint8).astype(np.bool_)


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.batch < 1:
        raise CliError(f"--batch must be >= 1, got {args.batch}")
    if args.repeat < 1:
        raise CliError(f"--repeat must be >= 1, got {args.repeat}")
    net = _load_network(args.model)
    threads = _thread_counts(args.threads)
    x = _random_inputs(net, args.batch)
    print(f"{args.model}: {net!r}")
    start = time.perf_counter()
    net.prepare()
    after = net.stats()["after"]
    print(f"optimizing passes: {time.perf_counter() - start:.3f} s, {after['ops']:,} operations"
          + (f", {after['binary_rows']:,} binary rows" if after["binary_rows"] else ""))
    print(f"{args.batch} random {x.dtype} rows x {x.shape[1]}, best of {args.repeat} runs")
    print(f"{'isa':<24} {'threads':>9} {'samples/s':>14} {'ns/sample':>10}")
    rows: list[tuple[str, Any, bool]] = [(isa, isa, True) for isa in bitlogic.supported_isas()]
    rows.append((f"{bitlogic._native.default_isa()}, optimization off", None, False))
    for label, isa, optimize in rows:
        for t in threads:
            rate = _best_rate(net, x, args.repeat, t, isa, optimize)
            print(f"{label:<24} {_threads_label(t):>9} {rate:>14,.0f} {1e9 / rate:>10.1f}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    net = _load_network(args.model)
    print(f"{args.model}: {os.path.getsize(args.model):,} bytes")
    encoder = net.encoder
    if isinstance(encoder, ThresholdEncoder):
        features, count = encoder.thresholds.shape
        finite = encoder.thresholds[np.isfinite(encoder.thresholds)]
        span = f", thresholds in [{finite.min():g}, {finite.max():g}]" if finite.size else ""
        print(
            f"encoder: thresholds, {features} features x {count} = {encoder.num_bits} bits "
            f"({encoder.bit_order}){span}"
        )
    else:
        print(f"encoder: none, {encoder.num_inputs} input bits")
    print(f"layers: {len(net.layers)}")
    for index, layer in enumerate(net.layers):
        if isinstance(layer, GateLayer):
            kind, arity = "gates", 2
        elif isinstance(layer, LutLayer):
            kind, arity = "luts", layer.arity
        elif isinstance(layer, BinaryLayer):
            kind, arity = "binary", int(layer.weights.shape[1])
        else:  # pragma: no cover - spec has no other layer kinds
            kind, arity = type(layer).__name__, 0
        print(f"  {index}: {kind:<6} width {layer.width:>7,}  arity {arity}")
    print(f"classes: {net.num_classes}, tau {net.tau:g}")
    info = net.info
    print("info:" + ("" if info else " (none)"))
    for key in sorted(info):
        print(f"  {key}: {info[key]}")
    print("stats:")
    for key, value in net.stats().items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in sorted(value.items())) or "-"
        print(f"  {key}: {value}")
    return 0


def _cmd_presets(args: argparse.Namespace) -> int:
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


# -- parser and entry point -----------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bitlogic",
        description="Train boolean logic-gate / LUT / binary networks and run them on the bit-sliced engine.",
    )
    parser.add_argument("--version", action="version", version=f"bitlogic {bitlogic.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train a preset on a dataset and export the network")
    p.add_argument("--dataset", help="dataset name (mnist, fashion-mnist, breast-cancer, digits)")
    p.add_argument("--data-dir", help="dataset directory (default: $BITLOGIC_DATA or ~/.cache/bitlogic)")
    p.add_argument("--preset", help="model preset (see `bitlogic presets`)")
    p.add_argument("--epochs", type=_positive_int, help="default: the preset's")
    p.add_argument("--batch-size", type=_positive_int, help="default: the preset's")
    p.add_argument("--lr", type=_positive_float, help="peak learning rate; default: the preset's")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto", help="default: auto")
    p.add_argument("--seed", type=int, help="default: 0")
    p.add_argument("--output", "-o", help=f"network file to write (default: {DEFAULT_OUTPUT})")
    p.add_argument("--checkpoint", help="training checkpoint (default: OUTPUT with suffix .ckpt)")
    p.add_argument("--resume", action="store_true", help="continue the run saved in the checkpoint")
    p.add_argument("--threads", type=_positive_int, help="torch threads (torch.set_num_threads)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (also off when not a terminal)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="test accuracy of a network file on a dataset")
    p.add_argument("model", help="network file")
    p.add_argument("--dataset", required=True, help="dataset name")
    p.add_argument("--data-dir", help="dataset directory")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("bench", help="inference throughput on random inputs, per thread count and ISA")
    p.add_argument("model", help="network file")
    p.add_argument("--batch", type=int, default=10000, help="rows per call (default: 10000)")
    p.add_argument("--threads", type=int, help="thread count (default: 1 and all cores)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs, the best is reported (default: 5)")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("info", help="describe a network file")
    p.add_argument("model", help="network file")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("presets", help="list the model presets")
    p.set_defaults(func=_cmd_presets)
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
    except (CliError, ValueError, OSError) as error:
        # ValueError covers bitlogic.FormatError / InputError, DatasetError, ExportError and CheckpointError.
        if os.environ.get("BITLOGIC_DEBUG"):
            raise
        print(f"bitlogic: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_ERROR


__all__ = ["CliError", "build_parser", "main"]
