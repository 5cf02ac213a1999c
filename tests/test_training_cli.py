"""The training loop (determinism, checkpoints, exact resume after an interrupt) and the ``bitlogic`` command line.

Everything runs on scikit-learn's bundled "digits" set with small models, so the file takes seconds.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import bitlogic
import bitlogic.cli._common
import bitlogic.cli.bench
import bitlogic.cli.evaluate
import bitlogic.cli.info
from bitlogic import datasets, training
from bitlogic.cli import CliError, main
from bitlogic.spec import ENCODER_KINDS, LAYER_KINDS

from _proxy import with_native
from _training import Interrupt, tiny

ROOT = Path(__file__).resolve().parent.parent
EPOCHS, BATCH, LR = 2, 64, 0.01
ERROR_NAMES = ["BitlogicError", "FormatError", "InputError", "ExportError", "CheckpointError", "DatasetError",
               "CudaError", "KernelCompileError"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    # The models are tiny: on a busy machine, torch's thread pool costs more than it gains.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits() -> datasets.Dataset:
    return datasets.load("digits")


def fit(model: nn.Module, ds: datasets.Dataset, **kwargs: Any) -> training.TrainResult:
    options: dict[str, Any] = {"epochs": EPOCHS, "batch_size": BATCH, "lr": LR, "progress": False}
    options.update(kwargs)
    return training.train(model, ds, **options)


def same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def without_seconds(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.fixture(scope="module")
def reference(digits: datasets.Dataset) -> tuple[nn.Sequential, training.TrainResult]:
    """The uninterrupted run every resumed run must reproduce."""
    model = tiny(digits)
    return model, fit(model, digits)


# -- train() ----------------------------------------------------------------------------------------------------


def test_train_learns_digits(
    digits: datasets.Dataset, reference: tuple[nn.Sequential, training.TrainResult]
) -> None:
    model, result = reference
    assert result.test_accuracy > 0.5  # chance is 0.1
    assert [h["epoch"] for h in result.history] == [1.0, 2.0]
    assert set(result.history[0]) == {"epoch", "loss", "train_acc", "test_acc", "seconds"}
    assert result.history[1]["loss"] < result.history[0]["loss"]
    assert result.history[-1]["test_acc"] == result.test_accuracy
    assert result.seconds > 0
    assert training.evaluate(model, digits.x_test, digits.y_test) == result.test_accuracy
    assert model.training  # evaluation does not leave the model in eval()


def test_training_is_deterministic(
    digits: datasets.Dataset, reference: tuple[nn.Sequential, training.TrainResult]
) -> None:
    again = tiny(digits)
    result = fit(again, digits)
    assert same_state(again, reference[0])
    assert without_seconds(result.history) == without_seconds(reference[1].history)
    other = tiny(digits)
    fit(other, digits, seed=1)  # same initial weights, another shuffle
    assert not same_state(other, reference[0])


def test_checkpoint_is_written_atomically_every_epoch(
    digits: datasets.Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "run.ckpt"
    saved_epochs: list[int] = []
    real_save = training._atomic_save

    def spy(obj: Any, target: Path) -> None:
        saved_epochs.append(obj["epoch"])
        real_save(obj, target)

    monkeypatch.setattr(training, "_atomic_save", spy)
    fit(tiny(digits), digits, checkpoint=path, extra={"note": "hello"})
    assert saved_epochs == [1, 2]
    data = training.load_checkpoint(path)
    assert data["format"] == training.CHECKPOINT_FORMAT and data["version"] == training.CHECKPOINT_VERSION
    assert (data["epoch"], data["step"]) == (2, 0) and data["extra"] == {"note": "hello"}
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt"]  # no temporary files left

    # A save that dies half-way leaves the previous checkpoint untouched and no temporary file.
    before = path.read_bytes()

    def broken_save(obj: Any, f: Any) -> None:
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        real_save({"x": 1}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt"]


def test_checkpoint_saved_from_eight_threads_always_reads_whole(tmp_path: Path) -> None:
    # Checkpoints go through the core's atomic write: concurrent savers of one path (and a folder not yet made)
    # leave one whole checkpoint, and a reader meanwhile always gets a whole one.
    path = tmp_path / "new" / "run.ckpt"
    payloads = [{"writer": i, "weights": torch.full((1000 + 100 * i,), float(i))} for i in range(8)]
    training._atomic_save(payloads[0], path)
    start = threading.Barrier(8 + 1)
    done = threading.Event()

    def writer(i: int) -> None:
        start.wait()
        for _ in range(10):
            training._atomic_save(payloads[i], path)

    def check(data: dict[str, Any]) -> None:
        i = data["writer"]
        assert torch.equal(data["weights"], payloads[i]["weights"])

    def reader() -> int:
        start.wait()
        loads = 0
        while not done.is_set() or loads == 0:
            check(torch.load(path, weights_only=True))
            loads += 1
        return loads

    with concurrent.futures.ThreadPoolExecutor(max_workers=9) as pool:
        read = pool.submit(reader)
        writers = [pool.submit(writer, i) for i in range(8)]
        for w in writers:
            w.result()
        done.set()
        assert read.result() > 0
    check(torch.load(path, weights_only=True))
    assert [p.name for p in path.parent.iterdir()] == ["run.ckpt"]


@pytest.mark.parametrize(
    ("at", "real_signal"),
    [
        (5, False),  # mid-epoch 1, inside the forward pass
        (24, False),  # first step of epoch 2: the checkpoint is the end of epoch 1 ("1 epoch, then resume")
        (30, True),  # a real Ctrl-C mid-epoch 2: the step finishes, then the loop stops
    ],
)
def test_interrupt_then_resume_matches_the_uninterrupted_run(
    digits: datasets.Dataset,
    reference: tuple[nn.Sequential, training.TrainResult],
    tmp_path: Path,
    at: int,
    real_signal: bool,
    request: pytest.FixtureRequest,
) -> None:
    if real_signal:
        # Python's own Ctrl-C handler, whatever the runner installed (a background shell ignores SIGINT).
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    steps = -(-len(digits.x_train) // BATCH)
    assert steps == 23
    path = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        fit(tiny(digits, interrupt=Interrupt(at, real_signal)), digits, checkpoint=path, extra={"k": "v"})
    data = training.load_checkpoint(path)
    done = at if real_signal else at - 1  # a real Ctrl-C lets the step finish; a raise undoes the step
    assert (data["epoch"], data["step"]) == divmod(done, steps)
    assert data["extra"] == {"k": "v"}

    resumed = tiny(digits, seed=123)  # different initial weights: everything must come from the checkpoint
    result = fit(resumed, digits, checkpoint=path, resume=True)
    assert same_state(resumed, reference[0])
    assert without_seconds(result.history) == without_seconds(reference[1].history)
    assert result.test_accuracy == reference[1].test_accuracy
    assert training.load_checkpoint(path)["extra"] == {"k": "v"}  # kept when resume passes no extra


def test_bad_checkpoints_give_clear_errors(digits: datasets.Dataset, tmp_path: Path) -> None:
    path = tmp_path / "run.ckpt"
    with pytest.raises(training.CheckpointError, match="no checkpoint at"):
        fit(tiny(digits), digits, checkpoint=path, resume=True)
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(training.CheckpointError, match="corrupt"):
        fit(tiny(digits), digits, checkpoint=path, resume=True)

    fit(tiny(digits), digits, epochs=1, checkpoint=path)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(training.CheckpointError, match="corrupt"):
        training.load_checkpoint(path)
    path.write_bytes(good)
    with pytest.raises(training.CheckpointError, match="different model"):
        fit(tiny(digits, hidden=32), digits, epochs=1, checkpoint=path, resume=True)
    with pytest.raises(training.CheckpointError, match="other settings: epochs=1"):
        fit(tiny(digits), digits, epochs=3, checkpoint=path, resume=True)
    with pytest.raises(ValueError, match="extra\\['where'\\]: expected str"):
        fit(tiny(digits), digits, checkpoint=path, extra={"where": tmp_path})  # would not load back
    torch.save({"format": training.CHECKPOINT_FORMAT, "version": 99}, path)
    with pytest.raises(training.CheckpointError, match="version 99"):
        training.load_checkpoint(path)


def test_progress_bar_and_epoch_lines(digits: datasets.Dataset, capsys: pytest.CaptureFixture[str]) -> None:
    fit(tiny(digits), digits, epochs=1, progress=True)
    out = capsys.readouterr().out
    assert "epoch 1/1: loss" in out and "test acc" in out


# -- the command line ---------------------------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


TRAIN = ["train", "--dataset", "digits", "--preset", "binary-small", "--epochs", "1", "--device", "cpu"]
TRAIN.append("--no-progress")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``bitlogic train`` once; the network file and what it printed."""
    out = tmp_path_factory.mktemp("cli") / "digits.bitlogic"
    buffer = io.StringIO()  # a module-scoped fixture cannot use capsys
    with contextlib.redirect_stdout(buffer):
        assert main([*TRAIN, "--output", str(out)]) == 0
    return out, buffer.getvalue()


def test_cli_train_writes_an_exact_network(trained: tuple[Path, str], digits: datasets.Dataset) -> None:
    path, out = trained
    assert path.is_file() and path.with_suffix(".ckpt").is_file()
    assert "epoch 1/1: loss" in out
    assert "through the Rust engine" in out and "identical to the torch model" in out
    assert "binary weights" in out and "samples/s" in out
    net = bitlogic.load(path)
    accuracy = float(np.mean(net.predict(digits.x_test) == digits.y_test))
    assert accuracy > 0.5
    assert f"test accuracy {accuracy:.2%}" in out
    info = net.info
    assert info["preset"] == "binary-small" and info["dataset"] == "digits" and info["epochs"] == "1"
    assert float(info["test_accuracy"]) == pytest.approx(accuracy, abs=1e-6)  # torch eval() accuracy == engine's
    assert info["bitlogic_version"] == bitlogic.__version__


def test_cli_interrupt_and_resume(
    trained: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    output = tmp_path / "m.bitlogic"
    calls = {"n": 0}
    real = torch.nn.functional.cross_entropy

    def interrupting(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        out: torch.Tensor = real(*args, **kwargs)
        return out

    monkeypatch.setattr(training, "F", types.SimpleNamespace(cross_entropy=interrupting))
    code, out, err = run_cli(capsys, *TRAIN, "--output", str(output))
    assert code == 130
    assert f"interrupted; checkpoint saved to {output.with_suffix('.ckpt')}, continue with --resume" in err
    assert not output.exists()

    code, out, err = run_cli(capsys, *TRAIN, "--output", str(output))  # a fresh run would lose it
    assert code == 2 and "unfinished run" in err and "--resume" in err

    monkeypatch.setattr(training, "F", types.SimpleNamespace(cross_entropy=real))
    code, out, err = run_cli(capsys, "train", "--resume", "--output", str(output), "--no-progress", "--device", "cpu")
    assert code == 0, err
    assert "resuming" in out and "identical to the torch model" in out
    straight, resumed = bitlogic.load(trained[0]), bitlogic.load(output)
    for a, b in zip(straight.layers, resumed.layers, strict=True):
        assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)


def test_cli_eval_bench_info_presets(
    trained: tuple[Path, str], digits: datasets.Dataset, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(trained[0])
    accuracy = float(np.mean(bitlogic.load(path).predict(digits.x_test) == digits.y_test))

    code, out, _ = run_cli(capsys, "eval", path, "--dataset", "digits")
    assert code == 0 and f"test accuracy {accuracy:.2%}" in out

    code, out, _ = run_cli(capsys, "bench", path, "--batch", "500", "--repeat", "1", "--threads", "1")
    assert code == 0 and "uint8" in out
    assert all(isa in out for isa in bitlogic.supported_isas())
    assert "optimization off" in out and "optimizing passes" in out

    code, out, _ = run_cli(capsys, "info", path)
    assert code == 0
    assert "encoder: thresholds, 64 features x 2" in out and "binary width" in out
    assert "preset: binary-small" in out and "binary_weights:" in out and "classes: 10" in out

    code, out, _ = run_cli(capsys, "presets")
    assert code == 0 and all(name in out for name in ["logic-small", "lut-large", "binary-small"])


def test_cli_bench_on_a_network_without_encoder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "random.bitlogic"
    bitlogic.random_network(40, [64, 20], 2).save(path)
    code, out, _ = run_cli(capsys, "bench", str(path), "--batch", "100", "--repeat", "1", "--threads", "1")
    assert code == 0 and "bool" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["info", "missing.bitlogic"], "no such network file"),
        (["info", "{garbage}"], "invalid network file"),
        (["eval", "{model}", "--dataset", "no-such-set"], "unknown dataset"),
        (["eval", "{model}", "--dataset", "breast-cancer"], "takes 64 inputs"),
        (["train", "--dataset", "digits"], "needs --dataset and --preset"),
        (["train", "--dataset", "digits", "--preset", "nope", "--checkpoint", "{tmp}/x.ckpt"], "unknown preset"),
        (["train", "--resume", "--checkpoint", "{tmp}/none.ckpt"], "no checkpoint at"),
        (["bench", "{model}", "--batch", "0"], "--batch must be"),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(
    argv: list[str],
    message: str,
    trained: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    garbage = tmp_path / "garbage.bitlogic"
    garbage.write_bytes(b"not a network")
    args = [a.format(model=trained[0], garbage=garbage, tmp=tmp_path) for a in argv]
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert err.startswith("bitlogic: error: ") and err.count("\n") == 1, err
    assert message in err


@pytest.mark.parametrize("error", [*(getattr(bitlogic, name) for name in ERROR_NAMES), CliError, OSError])
def test_cli_turns_every_bitlogic_error_into_one_line_and_exit_2(
    error: type[Exception], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(path: str) -> bitlogic.Network:
        raise error(f"what went wrong\nwith {path}")

    monkeypatch.setattr(bitlogic.cli.info, "load_network", fail)
    code, out, err = run_cli(capsys, "info", "net.bitlogic")
    assert code == 2 and out == ""
    assert err == "bitlogic: error: what went wrong with net.bitlogic\n"


def test_a_cuda_device_without_a_gpu_is_a_cuda_error(
    digits: datasets.Dataset, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda", "cuda:1"):
        with pytest.raises(bitlogic.CudaError, match=f"device '{name}' requested but torch finds no CUDA GPU"):
            training.resolve_device(name)
    assert issubclass(bitlogic.CudaError, bitlogic.BitlogicError) and issubclass(bitlogic.CudaError, RuntimeError)
    assert training.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(bitlogic.InputError, match="unknown device 'gpu0'"):
        training.resolve_device("gpu0")
    with pytest.raises(bitlogic.CudaError):
        fit(tiny(digits), digits, device="cuda")
    code, out, err = run_cli(capsys, *[a if a != "cpu" else "cuda" for a in TRAIN])
    assert code == 2
    assert err == ("bitlogic: error: device 'cuda' requested but torch finds no CUDA GPU (use device 'cpu', or "
                   "'auto' to take a GPU only when there is one)\n")


def test_cli_leaves_a_bug_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(path: str) -> bitlogic.Network:
        raise ValueError("a bug, not a bitlogic error")

    monkeypatch.setattr(bitlogic.cli.info, "load_network", fail)
    with pytest.raises(ValueError, match="a bug"):
        main(["info", "net.bitlogic"])


def test_cli_info_compiles_once_and_names_an_unknown_kind(
    trained: tuple[Path, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    net = bitlogic.load(trained[0])
    native = with_native(net)
    monkeypatch.setattr(bitlogic.cli.info, "load_network", lambda path: net)
    code, out, _ = run_cli(capsys, "info", str(trained[0]))
    assert code == 0 and "program (as written -> optimized):" in out and "binary_rows:" in out
    assert native.calls["optimization"] == 1 and "prepare" not in native.calls

    parts = native.real.layer_parts()
    with_native(net, layer_parts=[*parts[:1], ("conv", *parts[0][1:])])
    code, out, err = run_cli(capsys, "info", str(trained[0]))
    assert code == 2 and "unknown layer kind 'conv'; this version of bitlogic knows gates, luts, binary" in err


def test_cli_info_has_a_description_of_every_kind() -> None:
    # Layers describe themselves (width, fan_in): a random layer of every kind answers with its own reading.
    net = bitlogic.random_network(8, [6, 4], 2, kind="gates")
    assert [layer.fan_in for layer in net.layers] == [2, 2]
    assert [layer.fan_in for layer in bitlogic.random_network(8, [6], 2, kind="luts", n=3).layers] == [3]
    assert [layer.fan_in for layer in bitlogic.random_network(8, [6], 2, kind="binary").layers] == [8]
    assert all(isinstance(getattr(cls, "fan_in"), property) for cls in LAYER_KINDS.values())
    assert set(bitlogic.cli.info._ENCODERS) == set(bitlogic.cli.bench._RANDOM_INPUTS) == set(ENCODER_KINDS)


def test_cli_eval_times_the_compiled_engine_on_enough_rows(
    trained: tuple[Path, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    net = bitlogic.load(trained[0])
    native = with_native(net)
    monkeypatch.setattr(bitlogic.cli.evaluate, "load_network", lambda path: net)
    seconds: list[float] = []
    real_rate = bitlogic.cli._common.sustained_rate

    def timed(*args: Any, **kwargs: Any) -> tuple[float, int]:
        start = time.perf_counter()
        result = real_rate(*args, **kwargs)
        seconds.append(time.perf_counter() - start)
        return result

    monkeypatch.setattr(bitlogic.cli.evaluate, "sustained_rate", timed)
    code, out, _ = run_cli(capsys, "eval", str(trained[0]), "--dataset", "digits")
    assert code == 0
    assert native.order.index("prepare") < native.order.index("predict")  # compiled before anything is timed
    assert seconds and seconds[0] >= 0.2
    line = out.splitlines()[-1]
    assert line.startswith("throughput ") and "samples/s" in line
    assert "calls of 8,192 rows (the 360 test rows repeated), compiled beforehand" in line


@pytest.mark.parametrize("preset", ["logic-small", "logic-large"])
def test_cli_trains_the_logic_presets_on_a_narrow_dataset(
    preset: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 30 features: too few encoder bits for the first layer's gates to read distinct pairs.
    output = tmp_path / f"{preset}.bitlogic"
    argv = ["train", "--dataset", "breast-cancer", "--preset", preset, "--epochs", "1", "--device", "cpu"]
    code, out, err = run_cli(capsys, *argv, "--no-progress", "--output", str(output))
    assert code == 0, err
    assert "identical to the torch model" in out
    assert bitlogic.load(output).info["preset"] == preset


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def test_python_m_bitlogic(trained: tuple[Path, str]) -> None:
    done = run_python("-m", "bitlogic", "info", str(trained[0]))
    assert done.returncode == 0, done.stderr
    assert "preset: binary-small" in done.stdout
    done = run_python("-m", "bitlogic", "info", "missing.bitlogic")
    assert done.returncode == 2 and done.stderr == "bitlogic: error: no such network file: missing.bitlogic\n"


BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("no torch here")
sys.meta_path.insert(0, Block())
from bitlogic.cli import main
model = sys.argv[1]
assert main(["info", model]) == 0
assert main(["bench", model, "--batch", "200", "--repeat", "1", "--threads", "1"]) == 0
assert main(["eval", model, "--dataset", "digits"]) == 0
assert main(["train", "--dataset", "digits", "--preset", "binary-small"]) == 2
assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
"""


def test_inference_commands_work_without_torch(trained: tuple[Path, str]) -> None:
    done = run_python("-c", BLOCK_TORCH, str(trained[0]))
    assert done.returncode == 0, done.stderr
    assert "bitlogic train needs PyTorch" in done.stderr


@pytest.mark.parametrize("given, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_train_loads_torch_with_passive_openmp_threads_unless_told(given: str | None, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    code = ("import os; from bitlogic.cli.train import _import_torch; _import_torch(); "
            "print(os.environ['OMP_WAIT_POLICY'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
