"""The README's Python example runs as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, "the README has a Python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    inference = [b for b in blocks if "tiny.bitlogic" in b]
    assert len(inference) == 1, "the README has one inference example"
    exec(compile(inference[0], str(README), "exec"), namespace)
    assert os.path.exists(tmp_path / "tiny.bitlogic")
    labels, scores = namespace["labels"], namespace["scores"]
    assert labels.shape == (1000,) and scores.shape == (1000, 2)  # type: ignore[attr-defined]
    assert ((labels == 0) | (labels == 1)).all()  # type: ignore[operator]


def test_readme_training_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    training = [b for b in blocks if "bitlogic.compile(model)" in b]
    assert len(training) == 1, "the README has one training example"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(training[0], str(README), "exec"), namespace)
    assert os.path.exists(tmp_path / "digits.bitlogic")
    net, data = namespace["net"], namespace["data"]
    accuracy = (net.predict(data.x_test) == data.y_test).mean()  # type: ignore[attr-defined]
    assert accuracy > 0.8
