"""The researcher's training loop: schedules, weight decay, the validation split, the discretization gap, the
history file, the best checkpoint, tensor and DataLoader inputs, and the command line's flags for them.

Everything runs on scikit-learn's bundled "digits" set (1 437 training / 360 test rows) with tiny models.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import bitlogic.training.loop
from bitlogic import datasets, training
from bitlogic.cli import main
from bitlogic.errors import CheckpointError, InputError
from bitlogic.nn import BinaryLinear, DistributiveThermometer, GroupSum, LogicLayer
from bitlogic.training.data import Data
from bitlogic.training.schedules import make_scheduler

from _training import Interrupt, tiny

EPOCHS, BATCH, LR = 3, 64, 0.01
STEPS = 23  # ceil(1437 / 64)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits() -> datasets.Dataset:
    return datasets.load("digits")


def logic(ds: datasets.Dataset, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    bits = 2 * ds.num_features
    return nn.Sequential(
        DistributiveThermometer(2).fit(ds.x_train), nn.Flatten(),
        LogicLayer(bits, 400), LogicLayer(400, 400), GroupSum(ds.num_classes, 10.0),
    )  # fmt: skip


def fit(model: nn.Module, data: Any, **kwargs: Any) -> training.TrainResult:
    options: dict[str, Any] = {"epochs": EPOCHS, "batch_size": BATCH, "lr": LR, "progress": False}
    options.update(kwargs)
    return training.train(model, data, **options)


def same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def without_seconds(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    # NaN != NaN: compare the figures as strings
    return [{k: repr(v) for k, v in row.items() if k != "seconds"} for row in rows]


# -- schedules ------------------------------------------------------------------------------------------------------


def one_cycle(t: int, total: int, lr: float) -> float:
    """torch's OneCycleLR, as documented: cosine from lr/25 up to lr over 10 % of the run, then down to lr/25e4."""
    start, low = lr / 25, lr / 25 / 1e4
    peak = 0.1 * total - 1
    if t <= peak:
        return lr + (start - lr) / 2 * (1 + math.cos(math.pi * t / peak))
    return low + (lr - low) / 2 * (1 + math.cos(math.pi * (t - peak) / (total - 1 - peak)))


EXPECTED = {
    "one-cycle": lambda t, total, lr: one_cycle(t, total, lr),
    "cosine": lambda t, total, lr: lr * (1 + math.cos(math.pi * t / total)) / 2,
    "constant": lambda t, total, lr: lr,
    # step: x0.1 every ceil(epochs / 3) = 1 epoch here
    "step": lambda t, total, lr: lr * 0.1 ** (t // STEPS),
}


@pytest.mark.parametrize("schedule", list(EXPECTED))
def test_each_schedule_follows_its_definition(schedule: str, digits: datasets.Dataset) -> None:
    total = EPOCHS * STEPS
    optimizer = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=LR)
    scheduler = make_scheduler(optimizer, schedule, LR, total, steps_per_epoch=STEPS, step_size=1)
    used = []
    for _ in range(total):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert used == pytest.approx([EXPECTED[schedule](t, total, LR) for t in range(total)], rel=1e-6, abs=1e-12)

    # A run records the learning rate of each epoch's last step.
    result = fit(tiny(digits), digits, schedule=schedule)
    lrs = [row["lr"] for row in result.records]
    assert lrs == pytest.approx([used[STEPS * (e + 1) - 1] for e in range(EPOCHS)], rel=1e-9)


def test_step_schedule_period_and_factor(digits: datasets.Dataset) -> None:
    result = fit(tiny(digits), digits, epochs=4, schedule="step", step_size=2, gamma=0.5)
    assert [row["lr"] for row in result.records] == pytest.approx([LR, LR, LR / 2, LR / 2])
    with pytest.raises(InputError, match="unknown schedule 'linear'"):
        fit(tiny(digits), digits, schedule="linear")


def test_the_default_schedule_is_one_cycle(digits: datasets.Dataset) -> None:
    a, b = tiny(digits), tiny(digits)
    fit(a, digits, epochs=1)
    fit(b, digits, epochs=1, schedule="one-cycle")
    assert same_state(a, b)


# -- weight decay ---------------------------------------------------------------------------------------------------


def test_weight_decay_shrinks_the_weights(digits: datasets.Dataset) -> None:
    def norm(model: nn.Module) -> float:
        return sum(float(m.weight.detach().norm()) for m in model.modules() if isinstance(m, BinaryLinear))

    plain, decayed = tiny(digits), tiny(digits)
    fit(plain, digits)
    fit(decayed, digits, weight_decay=1.0)
    assert norm(decayed) < 0.9 * norm(plain)
    with pytest.raises(InputError, match="weight_decay"):
        fit(tiny(digits), digits, weight_decay=-1.0)


# -- validation split -----------------------------------------------------------------------------------------------


def test_the_validation_split_is_disjoint_and_reproducible(digits: datasets.Dataset) -> None:
    rows, held = training.split_indices(1437, 0.2, seed=0)
    assert len(held) == round(0.2 * 1437) and len(rows) + len(held) == 1437
    assert not set(rows.tolist()) & set(held.tolist())
    again = training.split_indices(1437, 0.2, seed=0)
    assert torch.equal(again[0], rows) and torch.equal(again[1], held)
    assert not torch.equal(training.split_indices(1437, 0.2, seed=1)[1], held)

    data = Data.prepare(digits, None, torch.device("cpu"), 0.2, 0)
    x = torch.as_tensor(digits.x_train, dtype=torch.float32)
    assert data.x_val is not None
    assert torch.equal(data.x_train, x[rows]) and torch.equal(data.x_val, x[held])
    with pytest.raises(InputError, match="val_split"):
        fit(tiny(digits), digits, val_split=1.0)


def test_with_a_validation_split_the_test_set_is_evaluated_once(
    digits: datasets.Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    real = bitlogic.training.loop.evaluate

    def spy(model: nn.Module, x: Any, *args: Any) -> float:
        seen.append(len(x))
        return real(model, x, *args)

    monkeypatch.setattr(bitlogic.training.loop, "evaluate", spy)
    result = fit(tiny(digits), digits, val_split=0.2, checkpoint=tmp_path / "run.ckpt")
    assert seen.count(len(digits.x_test)) == 1
    assert seen.count(round(0.2 * 1437)) == EPOCHS  # the validation split, every epoch
    assert all(not math.isnan(row["val_acc"]) for row in result.records)
    assert [math.isnan(row["test_acc"]) for row in result.records] == [True] * (EPOCHS - 1) + [False]
    assert result.test_accuracy == result.records[-1]["test_acc"]
    config = training.load_checkpoint(tmp_path / "run.ckpt")["config"]
    assert config["num_train"] == 1437 - round(0.2 * 1437) and config["val_split"] == 0.2


# -- the discretization gap -----------------------------------------------------------------------------------------


def test_the_gap_is_reported_every_epoch(digits: datasets.Dataset, capsys: pytest.CaptureFixture[str]) -> None:
    model = logic(digits)
    result = fit(model, digits, lr=0.1, val_split=0.2, progress=True)
    for row in result.records:
        assert row["eval_acc"] == row["val_acc"]
        assert row["gap"] == pytest.approx(row["relaxed_acc"] - row["eval_acc"])
        assert 0 <= row["relaxed_acc"] <= 1
    assert any(row["gap"] != 0 for row in result.records)  # soft gates differ from their argmax
    out = capsys.readouterr().out
    assert "val acc" in out and "relaxed" in out and "gap" in out

    # The last epoch's figures, measured again by hand on the same rows.
    data = Data.prepare(digits, None, torch.device("cpu"), 0.2, 0)
    assert data.x_val is not None and data.y_val is not None
    assert training.relaxed_accuracy(model, data.x_val, data.y_val) == result.records[-1]["relaxed_acc"]
    assert model.training and all(m.training for m in model.modules())  # the modes are put back


def test_without_a_split_the_gap_is_measured_on_training_rows(digits: datasets.Dataset) -> None:
    result = fit(tiny(digits), digits)
    for row in result.records:
        assert math.isnan(row["val_acc"]) and not math.isnan(row["test_acc"])
        # binary layers have no relaxation: batch norm uses its running statistics in both
        assert row["gap"] == 0 and not math.isnan(row["eval_acc"])


# -- history file ---------------------------------------------------------------------------------------------------


def test_the_history_file_has_one_row_per_epoch(digits: datasets.Dataset, tmp_path: Path) -> None:
    result = fit(tiny(digits), digits, checkpoint=tmp_path / "run.ckpt", history=True, val_split=0.2)
    path = tmp_path / "run.history.csv"
    with path.open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames or ()) == training.COLUMNS
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]
    assert rows[0]["test_acc"] == "" and float(rows[-1]["test_acc"]) == result.test_accuracy
    assert without_seconds(training.read_history(path)) == without_seconds(result.records)

    json_path = tmp_path / "h.json"
    fit(tiny(digits), digits, history=json_path)
    loaded = json.loads(json_path.read_text())
    assert len(loaded) == EPOCHS and list(loaded[0]) == list(training.COLUMNS)
    assert loaded[0]["val_acc"] is None  # no split: null, not NaN (which is not JSON)
    with pytest.raises(InputError, match=".csv or .json"):
        fit(tiny(digits), digits, history=tmp_path / "h.txt")
    with pytest.raises(InputError, match="needs checkpoint"):
        fit(tiny(digits), digits, history=True)


def test_the_history_file_after_interrupt_and_resume(digits: datasets.Dataset, tmp_path: Path) -> None:
    straight = fit(tiny(digits), digits, history=tmp_path / "straight.csv")
    ckpt, history = tmp_path / "run.ckpt", tmp_path / "run.json"
    with pytest.raises(KeyboardInterrupt):
        fit(tiny(digits, interrupt=Interrupt(STEPS + 5)), digits, checkpoint=ckpt, history=history)
    assert len(json.loads(history.read_text())) == 1  # the first epoch
    resumed = fit(tiny(digits, seed=7), digits, checkpoint=ckpt, history=history, resume=True)
    assert without_seconds(resumed.records) == without_seconds(straight.records)
    assert without_seconds(training.read_history(history)) == without_seconds(straight.records)
    # A resumed finished run leaves the file as it was.
    fit(tiny(digits), digits, checkpoint=ckpt, history=history, resume=True)
    assert len(training.read_history(history)) == EPOCHS


# -- best checkpoint ------------------------------------------------------------------------------------------------


def test_the_best_checkpoint_holds_the_best_validation_epoch(digits: datasets.Dataset, tmp_path: Path) -> None:
    ckpt = tmp_path / "run.ckpt"
    # A high constant learning rate makes the validation accuracy move about.
    result = fit(tiny(digits), digits, epochs=5, lr=0.2, schedule="constant", val_split=0.25, checkpoint=ckpt)
    accuracies = [row["val_acc"] for row in result.records]
    best = accuracies.index(max(accuracies)) + 1
    assert (result.best_epoch, result.best_val_accuracy) == (best, max(accuracies))
    saved = training.load_checkpoint(tmp_path / "run.best.ckpt")
    assert saved["epoch"] == best and saved["step"] == 0
    model = tiny(digits, seed=3)
    model.load_state_dict(saved["model"])
    data = Data.prepare(digits, None, torch.device("cpu"), 0.25, 0)
    assert training.evaluate(model, data.x_val, data.y_val) == max(accuracies)

    other = tmp_path / "elsewhere.ckpt"
    fit(tiny(digits), digits, epochs=1, val_split=0.25, best_checkpoint=other)
    assert training.load_checkpoint(other)["epoch"] == 1
    with pytest.raises(InputError, match="val_split"):
        fit(tiny(digits), digits, best_checkpoint=other)


# -- inputs ---------------------------------------------------------------------------------------------------------


def test_arrays_tensors_and_loaders_train_like_the_dataset(digits: datasets.Dataset) -> None:
    reference = tiny(digits)
    expected = fit(reference, digits, epochs=2)
    xt, yt = torch.as_tensor(digits.x_train), torch.as_tensor(digits.y_train)
    xs, ys = torch.as_tensor(digits.x_test), torch.as_tensor(digits.y_test)
    inputs: list[tuple[Any, Any]] = [
        ((digits.x_train, digits.y_train, digits.x_test, digits.y_test), None),
        ((xt, yt, xs, ys), None),
        ((xt, yt), (xs, ys)),
        (DataLoader(TensorDataset(xt, yt), batch_size=100), DataLoader(TensorDataset(xs, ys), batch_size=50)),
        ((DataLoader(TensorDataset(xt, yt), batch_size=100), DataLoader(TensorDataset(xs, ys))), None),
    ]
    for data, test in inputs:
        model = tiny(digits)
        result = fit(model, data, epochs=2, test=test)
        assert same_state(model, reference)
        assert without_seconds(result.records) == without_seconds(expected.records)

    no_test = fit(tiny(digits), (digits.x_train, digits.y_train), epochs=1)
    assert math.isnan(no_test.test_accuracy) and not math.isnan(no_test.records[0]["gap"])


@pytest.mark.parametrize(
    ("data", "test", "message"),
    [
        ("digits", None, "got a str"),
        ((np.zeros((4, 2)), np.zeros(4), np.zeros((4, 2))), None, "got a tuple of 3"),
        ([np.zeros((4, 2)), "labels"], None, "got a list of 2 \\(ndarray, str\\)"),
        (DataLoader([{"x": torch.zeros(2)}]), None, "expected a pair \\(features, labels\\)"),
        (DataLoader(TensorDataset(torch.zeros(0, 2), torch.zeros(0))), None, "yields no batches"),
        ("dataset", (np.zeros((4, 2)), np.zeros(4)), "test= is for inputs without a test set"),
        ((np.zeros((4, 2)), np.zeros(4)), "test", "test= takes a DataLoader or a pair"),
    ],
)
def test_other_inputs_are_input_errors(
    data: Any, test: Any, message: str, digits: datasets.Dataset
) -> None:
    with pytest.raises(InputError, match=message):
        fit(tiny(digits), digits if data == "dataset" else data, test=test)


def test_a_loader_resumes_exactly_only_when_it_yields_the_same_samples(
    digits: datasets.Dataset, tmp_path: Path
) -> None:
    xt, yt = torch.as_tensor(digits.x_train), torch.as_tensor(digits.y_train)
    xs, ys = torch.as_tensor(digits.x_test), torch.as_tensor(digits.y_test)
    test = DataLoader(TensorDataset(xs, ys), batch_size=100)
    straight = tiny(digits)
    expected = fit(straight, DataLoader(TensorDataset(xt, yt), batch_size=100), test=test)

    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        fit(tiny(digits, interrupt=Interrupt(30)), DataLoader(TensorDataset(xt, yt), batch_size=100), test=test,
            checkpoint=ckpt)
    resumed = tiny(digits, seed=5)
    result = fit(resumed, DataLoader(TensorDataset(xt, yt), batch_size=100), test=test, checkpoint=ckpt, resume=True)
    assert same_state(resumed, straight)
    assert without_seconds(result.records) == without_seconds(expected.records)

    with pytest.raises(KeyboardInterrupt):
        fit(tiny(digits, interrupt=Interrupt(30)), DataLoader(TensorDataset(xt, yt), batch_size=100), test=test,
            checkpoint=ckpt)
    shuffled = DataLoader(TensorDataset(xt, yt), batch_size=100, shuffle=True)
    with pytest.raises(CheckpointError, match="same samples in the same order"):
        fit(tiny(digits), shuffled, test=test, checkpoint=ckpt, resume=True)


def test_resume_refuses_other_new_settings(digits: datasets.Dataset, tmp_path: Path) -> None:
    ckpt = tmp_path / "run.ckpt"
    fit(tiny(digits), digits, epochs=1, checkpoint=ckpt, weight_decay=0.1, val_split=0.2)
    with pytest.raises(CheckpointError, match="weight_decay=0.1"):
        fit(tiny(digits), digits, epochs=1, checkpoint=ckpt, val_split=0.2, resume=True)
    with pytest.raises(CheckpointError, match="val_split=0.2"):
        fit(tiny(digits), digits, epochs=1, checkpoint=ckpt, weight_decay=0.1, resume=True)
    fit(tiny(digits), digits, epochs=1, checkpoint=ckpt, weight_decay=0.1, val_split=0.2, resume=True)


# -- the command line -----------------------------------------------------------------------------------------------


def test_cli_flags_reach_the_loop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "m.bitlogic"
    base = ["train", "--dataset", "digits", "--preset", "binary-small", "--epochs", "2", "--device", "cpu",
            "--no-progress", "--output", str(output)]
    code = main([*base, "--schedule", "step", "--weight-decay", "0.01", "--val-split", "0.2", "--history"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "val acc" in out and "gap" in out and "best epoch by validation accuracy" in out
    config = training.load_checkpoint(tmp_path / "m.ckpt")["config"]
    assert (config["schedule"], config["weight_decay"], config["val_split"]) == ("step", 0.01, 0.2)
    assert len(training.read_history(tmp_path / "m.history.csv")) == 2
    assert training.load_checkpoint(tmp_path / "m.best.ckpt")["epoch"] in (1, 2)

    code = main(["train", "--resume", "--output", str(output), "--no-progress", "--schedule", "cosine"])
    assert code == 2 and "made with --schedule step" in capsys.readouterr().err
    code = main(["train", "--resume", "--output", str(output), "--no-progress", "--weight-decay", "0"])
    assert code == 2 and "made with --weight-decay 0.01" in capsys.readouterr().err
    code = main(["train", "--resume", "--output", str(output), "--no-progress", "--device", "cpu"])
    assert code == 0 and "training already finished" in capsys.readouterr().out
