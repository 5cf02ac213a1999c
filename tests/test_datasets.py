"""bitlogic.datasets: IDX parsing, root resolution, downloads (from a local server only) and the scikit-learn sets."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import shutil
import socket
import struct
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import bitlogic
from bitlogic import datasets
from bitlogic.datasets import Dataset, DatasetError

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
N_TRAIN, N_TEST = 12, 5


def idx_images(images: np.ndarray) -> bytes:
    n, rows, cols = images.shape
    return struct.pack(">IIII", 0x803, n, rows, cols) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 0x801, len(labels)) + labels.astype(np.uint8).tobytes()


def synthetic(seed: int = 0) -> dict[str, bytes]:
    """Small valid IDX contents for the four files, keyed by file name without ``.gz``."""
    rng = np.random.default_rng(seed)
    contents = {}
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        contents[f"{prefix}-images-idx3-ubyte"] = idx_images(rng.integers(0, 256, (n, 28, 28)))
        contents[f"{prefix}-labels-idx1-ubyte"] = idx_labels(np.arange(n) % 10)
    return contents


def write(directory: Path, contents: dict[str, bytes], gz: bool = True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for stem, data in contents.items():
        if gz:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / stem).write_bytes(data)


def expected_arrays(contents: dict[str, bytes]) -> tuple[np.ndarray, ...]:
    def images(stem: str) -> np.ndarray:
        return np.frombuffer(contents[stem], np.uint8, offset=16).reshape(-1, 784)

    def labels(stem: str) -> np.ndarray:
        return np.frombuffer(contents[stem], np.uint8, offset=8).astype(np.int64)

    return (images(FILES[0]), labels(FILES[1]), images(FILES[2]), labels(FILES[3]))


def assert_matches(ds: Dataset, contents: dict[str, bytes]) -> None:
    for actual, expected in zip((ds.x_train, ds.y_train, ds.x_test, ds.y_test), expected_arrays(contents)):
        assert actual.dtype == expected.dtype
        np.testing.assert_array_equal(actual, expected)


@pytest.fixture(autouse=True)
def _no_ambient_data_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No test may read or write the user's cache by accident; the real-data test reads the saved variable.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


# -- real MNIST ------------------------------------------------------------------------------------------------------

REAL_DATA = os.environ.get("BITLOGIC_DATA")


@pytest.mark.skipif(not REAL_DATA, reason="BITLOGIC_DATA is not set (the Makefile sets it to ../shared/data)")
def test_real_mnist() -> None:
    ds = datasets.load("mnist", download=False)  # root from BITLOGIC_DATA
    assert ds.name == "mnist"
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    assert ds.x_train.dtype == np.uint8 and ds.x_test.dtype == np.uint8
    assert ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
    assert ds.x_train.flags.c_contiguous and ds.x_test.flags.c_contiguous
    assert (ds.num_classes, ds.num_features, ds.low, ds.high, ds.image_shape) == (10, 784, 0.0, 255.0, (1, 28, 28))
    # The published class counts of MNIST.
    assert np.bincount(ds.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(ds.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert ds.x_train.max() == 255 and ds.x_train.min() == 0
    assert "mnist" in repr(ds) and "60000" in repr(ds)


# -- local IDX files -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_synthetic_files_load(tmp_path: Path, gz: bool) -> None:
    contents = synthetic()
    write(tmp_path / "mnist", contents, gz=gz)
    ds = datasets.load("mnist", root=tmp_path, download=False)
    assert_matches(ds, contents)
    assert ds.image_shape == (1, 28, 28)
    assert ds.x_train.shape == (N_TRAIN, 784) and ds.x_train.flags.c_contiguous and ds.x_train.flags.writeable
    assert ds.num_features == 784


def test_raw_and_gz_load_identically(tmp_path: Path) -> None:
    contents = synthetic()
    write(tmp_path / "a" / "mnist", contents, gz=True)
    write(tmp_path / "b" / "mnist", contents, gz=False)
    mixed = tmp_path / "c" / "mnist"
    write(mixed, {k: v for k, v in contents.items() if "train" in k}, gz=True)
    write(mixed, {k: v for k, v in contents.items() if "t10k" in k}, gz=False)
    loaded = [datasets.load("mnist", root=tmp_path / sub, download=False) for sub in "abc"]
    for ds in loaded[1:]:
        for field in ("x_train", "y_train", "x_test", "y_test"):
            np.testing.assert_array_equal(getattr(ds, field), getattr(loaded[0], field))


def test_raw_preferred_when_both_exist(tmp_path: Path) -> None:
    write(tmp_path / "mnist", synthetic(seed=1), gz=True)
    write(tmp_path / "mnist", synthetic(seed=2), gz=False)
    assert_matches(datasets.load("mnist", root=tmp_path, download=False), synthetic(seed=2))


def test_fashion_mnist_reads_its_own_directory(tmp_path: Path) -> None:
    contents = synthetic(seed=3)
    write(tmp_path / "fashion-mnist", contents)
    ds = datasets.load("Fashion_MNIST", root=tmp_path, download=False)
    assert ds.name == "fashion-mnist"
    assert_matches(ds, contents)


def _labels_with(values: list[int]) -> bytes:
    return idx_labels(np.array(values))


# Each defect: (file it is written to, new contents from the valid contents, text the error must contain).
DEFECTS: dict[str, tuple[str, Callable[[dict[str, bytes]], bytes], str]] = {
    "bad-magic-images": (FILES[0], lambda c: struct.pack(">I", 0x801) + c[FILES[0]][4:], "magic number 0x00000801"),
    "bad-magic-labels": (FILES[3], lambda c: struct.pack(">I", 0x803) + c[FILES[3]][4:], "expected 0x00000801"),
    "type-not-ubyte": (FILES[1], lambda c: struct.pack(">I", 0x0D01) + c[FILES[1]][4:], "expected 0x00000801"),
    "truncated-payload": (FILES[0], lambda c: c[FILES[0]][:-1], f"expected exactly {N_TRAIN * 784}"),
    "trailing-bytes": (FILES[2], lambda c: c[FILES[2]] + b"\0", f"expected exactly {N_TEST * 784}"),
    "short-header": (FILES[1], lambda c: c[FILES[1]][:6], "header"),
    "empty": (FILES[3], lambda c: b"", "header"),
    "not-28x28": (
        FILES[2],
        lambda c: idx_images(np.zeros((N_TEST * 2, 14, 28), np.uint8)),
        "expected 28x28",
    ),
    "count-mismatch": (FILES[1], lambda c: _labels_with([0] * (N_TRAIN - 1)), "expected equal counts"),
    "label-too-big": (FILES[3], lambda c: _labels_with([0, 1, 10, 2, 3]), "label 10 at index 2"),
    "label-255": (FILES[1], lambda c: _labels_with([255] * N_TRAIN), "expected labels < 10"),
}


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_idx_defects_name_the_file(tmp_path: Path, defect: str, gz: bool) -> None:
    stem, mutate, message = DEFECTS[defect]
    contents = synthetic()
    contents[stem] = mutate(contents)
    write(tmp_path / "mnist", contents, gz=gz)
    with pytest.raises(DatasetError, match="expected") as info:
        datasets.load("mnist", root=tmp_path, download=False)
    text = str(info.value)
    assert str(tmp_path / "mnist" / (stem + (".gz" if gz else ""))) in text
    assert message in text


@pytest.mark.parametrize("data", [b"not gzip at all", gzip.compress(b"\0" * 1000)[:-12]], ids=["garbage", "cut"])
def test_corrupt_gzip_names_the_file(tmp_path: Path, data: bytes) -> None:
    write(tmp_path / "mnist", synthetic())
    (tmp_path / "mnist" / f"{FILES[2]}.gz").write_bytes(data)
    with pytest.raises(DatasetError, match=f"{FILES[2]}.gz"):
        datasets.load("mnist", root=tmp_path, download=False)


def test_missing_files_without_download(tmp_path: Path) -> None:
    contents = synthetic()
    del contents[FILES[1]], contents[FILES[2]]
    write(tmp_path / "mnist", contents)
    with pytest.raises(DatasetError) as info:
        datasets.load("mnist", root=tmp_path, download=False)
    text = str(info.value)
    assert FILES[1] in text and FILES[2] in text and FILES[0] not in text and FILES[3] not in text
    assert str(tmp_path / "mnist") in text and "BITLOGIC_DATA" in text
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(f"{s}.gz" for s in contents)


# -- root resolution -------------------------------------------------------------------------------------------------


def test_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    contents = synthetic(seed=4)
    write(tmp_path / "env" / "mnist", contents)
    monkeypatch.setenv("BITLOGIC_DATA", str(tmp_path / "env"))
    assert_matches(datasets.load("mnist", download=False), contents)
    # An explicit root wins over the variable.
    write(tmp_path / "arg" / "mnist", synthetic(seed=5))
    assert_matches(datasets.load("mnist", root=str(tmp_path / "arg"), download=False), synthetic(seed=5))


def test_root_defaults_to_xdg_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BITLOGIC_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match=str(tmp_path / "cache" / "bitlogic" / "mnist")):
        datasets.load("mnist", download=False)
    write(tmp_path / "cache" / "bitlogic" / "mnist", synthetic(seed=6))
    assert_matches(datasets.load("mnist", download=False), synthetic(seed=6))
    # Unset (or relative, which XDG says to ignore): ~/.cache.
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(DatasetError, match=str(tmp_path / "home" / ".cache" / "bitlogic" / "mnist")):
        datasets.load("mnist", download=False)


# -- downloads, from a server on 127.0.0.1 only ----------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server; yields (base URL, the directory it serves)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _serve(served: Path, contents: dict[str, bytes]) -> dict[str, str]:
    """Writes the gz files to the served directory; returns their SHA-256 by file name."""
    write(served, contents)
    return {f"{stem}.gz": hashlib.sha256((served / f"{stem}.gz").read_bytes()).hexdigest() for stem in contents}


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_download(server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    url, served = server
    contents = synthetic(seed=7)
    monkeypatch.setitem(datasets._REMOTES, name, datasets._Remote(url, _serve(served, contents)))
    root = tmp_path / "root"
    ds = datasets.load(name, root=root)
    assert_matches(ds, contents)
    assert sorted(p.name for p in (root / name).iterdir()) == sorted(f"{s}.gz" for s in FILES)
    for stem in FILES:  # saved byte for byte
        assert (root / name / f"{stem}.gz").read_bytes() == (served / f"{stem}.gz").read_bytes()
    # Everything is there now: no network needed any more.
    shutil.rmtree(served)
    assert_matches(datasets.load(name, root=root, download=False), contents)


def test_download_is_saved_atomically_and_readable(
    server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, served = server
    contents = synthetic(seed=8)
    monkeypatch.setitem(datasets._REMOTES, "mnist", datasets._Remote(url, _serve(served, contents)))
    writes: list[tuple[str, int]] = []
    real = datasets._native.write_atomic

    def recording(path: str, data: bytes) -> None:
        writes.append((path, len(data)))
        real(path, data)

    monkeypatch.setattr(datasets._native, "write_atomic", recording)
    root = tmp_path / "root"
    assert_matches(datasets.load("mnist", root=root), contents)
    expected = [(str(root / "mnist" / f"{s}.gz"), (served / f"{s}.gz").stat().st_size) for s in FILES]
    assert sorted(writes) == sorted(expected)  # one whole-file write each, through the engine's atomic writer
    umask = os.umask(0)
    os.umask(umask)
    for stem in FILES:  # a cache readable like any download, not a private temporary file
        assert (root / "mnist" / f"{stem}.gz").stat().st_mode & 0o777 == 0o666 & ~umask


def test_download_that_cannot_be_saved_names_the_file(
    server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, served = server
    monkeypatch.setitem(datasets._REMOTES, "mnist", datasets._Remote(url, _serve(served, synthetic())))

    def full_disk(path: str, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(datasets._native, "write_atomic", full_disk)
    with pytest.raises(DatasetError, match="cannot save .*No space left on device.*BITLOGIC_DATA") as info:
        datasets.load("mnist", root=tmp_path)
    assert str(tmp_path / "mnist" / f"{FILES[0]}.gz") in str(info.value)
    assert list((tmp_path / "mnist").iterdir()) == []


def test_download_fetches_only_missing_files(
    server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, served = server
    contents = synthetic(seed=8)
    hashes = _serve(served, {FILES[3]: contents[FILES[3]]})  # the server has only one file
    monkeypatch.setitem(datasets._REMOTES, "mnist", datasets._Remote(url, hashes))
    write(tmp_path / "mnist", {k: v for k, v in contents.items() if k != FILES[3]}, gz=False)
    assert_matches(datasets.load("mnist", root=tmp_path), contents)
    assert (tmp_path / "mnist" / f"{FILES[3]}.gz").is_file()


def test_download_sha_mismatch_leaves_nothing(
    server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, served = server
    hashes = _serve(served, synthetic(seed=9))
    bad = f"{FILES[2]}.gz"
    hashes[bad] = hashlib.sha256(b"something else").hexdigest()
    monkeypatch.setitem(datasets._REMOTES, "mnist", datasets._Remote(url, hashes))
    root = tmp_path / "root"
    with pytest.raises(DatasetError, match="SHA-256") as info:
        datasets.load("mnist", root=root)
    assert url + bad in str(info.value) and hashes[bad] in str(info.value)
    # Files verified before the bad one may stay; the bad one and any temporary file must not.
    left = sorted(p.name for p in (root / "mnist").iterdir())
    assert left == sorted(f"{s}.gz" for s in FILES[:2])


def test_download_404(server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, served = server
    hashes = _serve(served, synthetic())
    (served / f"{FILES[0]}.gz").unlink()
    monkeypatch.setitem(datasets._REMOTES, "mnist", datasets._Remote(url, hashes))
    with pytest.raises(DatasetError, match="HTTP 404") as info:
        datasets.load("mnist", root=tmp_path)
    assert f"{url}{FILES[0]}.gz" in str(info.value) and "BITLOGIC_DATA" in str(info.value)
    assert list((tmp_path / "mnist").iterdir()) == []


def test_download_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    hashes = {f"{stem}.gz": "0" * 64 for stem in FILES}
    monkeypatch.setitem(datasets._REMOTES, "mnist", datasets._Remote(url, hashes))
    with pytest.raises(DatasetError) as info:
        datasets.load("mnist", root=tmp_path)
    text = str(info.value)
    assert f"{url}{FILES[0]}.gz" in text and str(tmp_path / "mnist") in text and "BITLOGIC_DATA" in text
    assert list((tmp_path / "mnist").iterdir()) == []


def test_real_hash_table_is_complete() -> None:
    files = {"mnist": [f"{stem}.gz" for stem in FILES], "cifar10": ["cifar-10-binary.tar.gz"]}
    for name in ("mnist", "fashion-mnist", "cifar10"):
        remote = datasets._REMOTES[name]
        assert sorted(remote.sha256) == sorted(files.get(name, files["mnist"]))
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in remote.sha256.values())
        assert remote.base_url.endswith("/")
    # The published archive is 170,052,171 bytes: the cap must let it through.
    assert datasets._REMOTES["cifar10"].max_bytes > 170_052_171


# -- CIFAR-10, from fake batches in both published formats -----------------------------------------------------------

CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_PY, CIFAR_BIN = "cifar-10-batches-py", "cifar-10-batches-bin"
CIFAR_ARCHIVES = {CIFAR_PY: "cifar-10-python.tar.gz", CIFAR_BIN: "cifar-10-binary.tar.gz"}
CifarBatches = dict[str, tuple[np.ndarray, list[int]]]


def cifar_batches(seed: int = 0, sizes: tuple[int, ...] = (3, 2, 4, 1, 2, 3)) -> CifarBatches:
    """Six small batches (data_batch_1..5, test_batch) of uint8 [n, 3072] images and their labels."""
    rng = np.random.default_rng(seed)
    names = (*CIFAR_TRAIN, "test_batch")
    return {
        name: (rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist())
        for name, n in zip(names, sizes)
    }


def _py2_str(data: bytes) -> bytes:
    # BINSTRING: how Python 2 pickled every str, bytes-like.
    return b"T" + struct.pack("<i", len(data)) + data


def _py2_int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)  # BININT


def py2_pickle(images: np.ndarray, labels: list[int]) -> bytes:
    """A batch pickled the way the published files are (Python 2 cPickle, protocol 2, numpy 1.x names)."""
    array = b"".join((
        b"cnumpy.core.multiarray\n_reconstruct\n",  # GLOBAL
        b"cnumpy\nndarray\n", _py2_int(0), b"\x85", _py2_str(b"b"), b"\x87R",  # (ndarray, (0,), 'b') REDUCE
        b"(", _py2_int(1), _py2_int(images.shape[0]), _py2_int(images.shape[1]), b"\x86",  # MARK 1 (n, 3072)
        b"cnumpy\ndtype\n", _py2_str(b"u1"), _py2_int(0), _py2_int(1), b"\x87R",  # dtype('u1', 0, 1)
        b"(", _py2_int(3), _py2_str(b"|"), b"NNN", _py2_int(-1), _py2_int(-1), _py2_int(0), b"tb",  # dtype state
        b"\x89", _py2_str(images.tobytes()), b"tb",  # False, raw bytes; TUPLE BUILD
    ))
    label_list = b"](" + b"".join(_py2_int(label) for label in labels) + b"e"  # EMPTY_LIST MARK ... APPENDS
    items = [(b"batch_label", _py2_str(b"training batch 1 of 5")), (b"labels", label_list), (b"data", array)]
    body = b"".join(_py2_str(key) + value for key, value in items)
    return b"\x80\x02}(" + body + b"u."  # PROTO 2, EMPTY_DICT, MARK, ..., SETITEMS, STOP


def python_batch(images: np.ndarray, labels: list[int], flavour: str) -> bytes:
    if flavour == "py2":
        return py2_pickle(images, labels)
    protocol = {"protocol2": 2, "protocol4": 4}[flavour]  # what re-pickling under Python 3 produces
    return pickle.dumps({b"batch_label": b"batch", b"labels": labels, b"data": images}, protocol=protocol)


def binary_batch(images: np.ndarray, labels: list[int]) -> bytes:
    return np.concatenate([np.asarray(labels, np.uint8)[:, None], images], axis=1).tobytes()


def cifar_files(batches: CifarBatches, layout: str, flavour: str = "py2") -> dict[str, bytes]:
    """The batch files of one layout by their name inside the layout's directory."""
    if layout == CIFAR_BIN:
        return {f"{name}.bin": binary_batch(*batch) for name, batch in batches.items()}
    return {name: python_batch(*batch, flavour) for name, batch in batches.items()}


def write_cifar_directory(root: Path, layout: str, files: dict[str, bytes]) -> None:
    directory = root / "cifar10" / layout
    directory.mkdir(parents=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)


def cifar_archive(layout: str, files: dict[str, bytes]) -> bytes:
    """A tar.gz laid out as the published one: the directory, the batches and the files beside them."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        directory = tarfile.TarInfo(layout)
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
        for name, data in {"readme.html": b"<html></html>", **files, "batches.meta": b"meta"}.items():
            info = tarfile.TarInfo(f"{layout}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def write_cifar_archive(root: Path, layout: str, files: dict[str, bytes]) -> Path:
    path = root / "cifar10" / CIFAR_ARCHIVES[layout]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cifar_archive(layout, files))
    return path


def assert_cifar(ds: Dataset, batches: CifarBatches) -> None:
    train = [batches[name] for name in CIFAR_TRAIN]
    expected = (
        np.concatenate([images for images, _ in train]),
        np.concatenate([labels for _, labels in train]).astype(np.int64),
        *(np.asarray(a) for a in batches["test_batch"]),
    )
    actual = (ds.x_train, ds.y_train, ds.x_test, ds.y_test)
    for got, want, dtype in zip(actual, expected, (np.uint8, np.int64, np.uint8, np.int64)):
        assert got.dtype == dtype and got.flags.c_contiguous
        np.testing.assert_array_equal(got, want)
    assert (ds.name, ds.num_classes, ds.num_features, ds.low, ds.high) == ("cifar10", 10, 3072, 0.0, 255.0)
    assert ds.image_shape == (3, 32, 32)


def test_python_pickle_helper_matches_real_pickle() -> None:
    # The hand-written Python 2 pickle is what the real unpickler reads as the batch (so it tests what it claims).
    images, labels = cifar_batches()["test_batch"]
    batch = pickle.loads(py2_pickle(images, labels), encoding="bytes")
    assert batch[b"labels"] == labels and batch[b"batch_label"] == b"training batch 1 of 5"
    np.testing.assert_array_equal(batch[b"data"], images)


@pytest.mark.parametrize("flavour", ["py2", "protocol2", "protocol4"])
def test_cifar10_python_directory(tmp_path: Path, flavour: str) -> None:
    batches = cifar_batches()
    write_cifar_directory(tmp_path, CIFAR_PY, cifar_files(batches, CIFAR_PY, flavour))
    ds = datasets.load("cifar10", root=tmp_path, download=False)
    assert_cifar(ds, batches)


def test_cifar10_binary_directory_and_image_layout(tmp_path: Path) -> None:
    batches = cifar_batches(seed=1)
    write_cifar_directory(tmp_path, CIFAR_BIN, cifar_files(batches, CIFAR_BIN))
    ds = datasets.load("CIFAR-10", root=tmp_path, download=False)
    assert_cifar(ds, batches)
    # A row is the red, green and blue planes of 32 rows of 32: [N, 3, 32, 32] after reshaping by image_shape.
    assert ds.image_shape is not None
    images = ds.x_test.reshape(-1, *ds.image_shape)
    raw = batches["test_batch"][0][1]
    assert images[1, 2, 5, 7] == raw[2 * 1024 + 5 * 32 + 7] and images[1, 0, 31, 0] == raw[31 * 32]


@pytest.mark.parametrize("layout", [CIFAR_PY, CIFAR_BIN])
def test_cifar10_archive_is_read_in_place(tmp_path: Path, layout: str) -> None:
    batches = cifar_batches(seed=2)
    archive = write_cifar_archive(tmp_path, layout, cifar_files(batches, layout))
    assert_cifar(datasets.load("cifar_10", root=tmp_path, download=False), batches)
    assert sorted(p.name for p in archive.parent.iterdir()) == [archive.name]  # nothing extracted


def test_cifar10_directories_before_archives(tmp_path: Path) -> None:
    write_cifar_archive(tmp_path, CIFAR_PY, cifar_files(cifar_batches(seed=3), CIFAR_PY))
    write_cifar_archive(tmp_path, CIFAR_BIN, cifar_files(cifar_batches(seed=4), CIFAR_BIN))
    # Of two archives, the python one.
    assert_cifar(datasets.load("cifar10", root=tmp_path, download=False), cifar_batches(seed=3))
    write_cifar_directory(tmp_path, CIFAR_BIN, cifar_files(cifar_batches(seed=5), CIFAR_BIN))
    assert_cifar(datasets.load("cifar10", root=tmp_path, download=False), cifar_batches(seed=5))


def test_cifar10_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar_directory(tmp_path, CIFAR_BIN, cifar_files(cifar_batches(seed=6), CIFAR_BIN))
    monkeypatch.setenv("BITLOGIC_DATA", str(tmp_path))
    assert_cifar(datasets.load("cifar10", download=False), cifar_batches(seed=6))


def test_cifar10_missing_without_download(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        datasets.load("cifar10", root=tmp_path, download=False)
    text = str(info.value)
    for name in (CIFAR_PY, CIFAR_BIN, *CIFAR_ARCHIVES.values()):
        assert str(tmp_path / "cifar10" / name) in text
    assert "download=True" in text and "BITLOGIC_DATA" in text and "cs.toronto.edu/~kriz/cifar.html" in text
    assert not (tmp_path / "cifar10").exists()


def test_cifar10_download(server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, served = server
    batches = cifar_batches(seed=7)
    archive = cifar_archive(CIFAR_BIN, cifar_files(batches, CIFAR_BIN))
    (served / "cifar-10-binary.tar.gz").write_bytes(archive)
    hashes = {"cifar-10-binary.tar.gz": hashlib.sha256(archive).hexdigest()}
    monkeypatch.setitem(datasets._REMOTES, "cifar10", datasets._Remote(url, hashes, max_bytes=len(archive)))
    root = tmp_path / "root"
    assert_cifar(datasets.load("cifar10", root=root), batches)
    assert (root / "cifar10" / "cifar-10-binary.tar.gz").read_bytes() == archive  # saved as served, not extracted
    assert sorted(p.name for p in (root / "cifar10").iterdir()) == ["cifar-10-binary.tar.gz"]
    shutil.rmtree(served)
    assert_cifar(datasets.load("cifar10", root=root, download=False), batches)


@pytest.mark.parametrize("defect", ["sha", "too-big"])
def test_cifar10_bad_download_leaves_nothing(
    server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, defect: str
) -> None:
    url, served = server
    archive = cifar_archive(CIFAR_BIN, cifar_files(cifar_batches(), CIFAR_BIN))
    (served / "cifar-10-binary.tar.gz").write_bytes(archive)
    digest = hashlib.sha256(archive if defect == "too-big" else b"other").hexdigest()
    remote = datasets._Remote(url, {"cifar-10-binary.tar.gz": digest}, max_bytes=len(archive) - (defect == "too-big"))
    monkeypatch.setitem(datasets._REMOTES, "cifar10", remote)
    with pytest.raises(DatasetError, match="SHA-256" if defect == "sha" else "more than") as info:
        datasets.load("cifar10", root=tmp_path)
    assert f"{url}cifar-10-binary.tar.gz" in str(info.value) and "BITLOGIC_DATA" in str(info.value)
    assert list((tmp_path / "cifar10").iterdir()) == []


class _Evil:
    """Unpickling this would run a command that creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def _dtype_pickle(dtype: str) -> bytes:
    return pickle.dumps({b"data": np.zeros((2, 3072), dtype), b"labels": [0, 1]}, protocol=2)


PY_DEFECTS: dict[str, tuple[Callable[[Path], bytes], str]] = {
    "code": (lambda tmp: pickle.dumps({b"data": _Evil(tmp / "pwned"), b"labels": []}), "refusing posix.system"),
    "object-array": (
        lambda tmp: pickle.dumps({b"data": np.array([[1]], dtype=object), b"labels": [0]}, protocol=2),
        "not a uint8 array",
    ),
    "float-array": (lambda tmp: _dtype_pickle("float32"), "not a uint8 array"),
    "not-a-dict": (lambda tmp: pickle.dumps([1, 2, 3]), "a pickled list, expected a dict"),
    "no-labels": (lambda tmp: pickle.dumps({b"data": np.zeros((1, 3072), np.uint8)}), "'labels' (a list)"),
    "str-labels": (
        lambda tmp: pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": ["cat"]}),
        "list of ints",
    ),
    "wrong-width": (
        lambda tmp: python_batch(np.zeros((2, 1024), np.uint8), [0, 1], "py2"),
        "expected [n, 3072]",
    ),
    "count-mismatch": (
        lambda tmp: python_batch(np.zeros((2, 3072), np.uint8), [0, 1, 2], "py2"),
        "2 images but 3 labels",
    ),
    "label-10": (lambda tmp: python_batch(np.zeros((3, 3072), np.uint8), [0, 10, 1], "py2"), "label 10 at index 1"),
    "label-huge": (
        lambda tmp: python_batch(np.zeros((1, 3072), np.uint8), [2**70], "protocol4"),
        f"label {2**70} at index 0",
    ),
    "truncated": (lambda tmp: python_batch(*cifar_batches()["test_batch"], "py2")[:-40], "not a CIFAR-10"),
    "garbage": (lambda tmp: b"not a pickle", "not a CIFAR-10 python batch"),
}


@pytest.mark.parametrize("defect", sorted(PY_DEFECTS))
def test_cifar10_python_defects(tmp_path: Path, defect: str) -> None:
    make, message = PY_DEFECTS[defect]
    files = cifar_files(cifar_batches(), CIFAR_PY)
    files["data_batch_3"] = make(tmp_path)
    write_cifar_directory(tmp_path, CIFAR_PY, files)
    with pytest.raises(DatasetError) as info:
        datasets.load("cifar10", root=tmp_path, download=False)
    assert str(tmp_path / "cifar10" / CIFAR_PY / "data_batch_3") in str(info.value)
    assert message.replace("posix", os.system.__module__) in str(info.value)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "0 bytes, expected a positive whole number of 3073-byte records"),
        (b"\0" * 3074, "3074 bytes"),
        (b"\x0a" + b"\0" * 3072, "label 10 at index 0"),
    ],
    ids=["empty", "partial-record", "label-10"],
)
def test_cifar10_binary_defects(tmp_path: Path, data: bytes, message: str) -> None:
    files = cifar_files(cifar_batches(), CIFAR_BIN)
    files["test_batch.bin"] = data
    write_cifar_directory(tmp_path, CIFAR_BIN, files)
    with pytest.raises(DatasetError, match="expected") as info:
        datasets.load("cifar10", root=tmp_path, download=False)
    assert str(tmp_path / "cifar10" / CIFAR_BIN / "test_batch.bin") in str(info.value) and message in str(info.value)


def test_cifar10_incomplete_directory_names_the_file(tmp_path: Path) -> None:
    files = cifar_files(cifar_batches(), CIFAR_BIN)
    del files["data_batch_4.bin"]
    write_cifar_directory(tmp_path, CIFAR_BIN, files)
    with pytest.raises(DatasetError, match="missing") as info:
        datasets.load("cifar10", root=tmp_path, download=False)
    assert str(tmp_path / "cifar10" / CIFAR_BIN / "data_batch_4.bin") in str(info.value)


def test_cifar10_archive_defects(tmp_path: Path) -> None:
    files = cifar_files(cifar_batches(), CIFAR_BIN)
    del files["data_batch_2.bin"]
    archive = write_cifar_archive(tmp_path, CIFAR_BIN, files)
    with pytest.raises(DatasetError, match=f"no member {CIFAR_BIN}/data_batch_2.bin") as info:
        datasets.load("cifar10", root=tmp_path, download=False)
    assert str(archive) in str(info.value)

    archive.write_bytes(cifar_archive(CIFAR_BIN, cifar_files(cifar_batches(), CIFAR_BIN))[:-100])
    with pytest.raises(DatasetError, match=f"cannot read {archive}"):
        datasets.load("cifar10", root=tmp_path, download=False)

    # A link where a batch should be is refused, never followed.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        link = tarfile.TarInfo(f"{CIFAR_BIN}/data_batch_1.bin")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(DatasetError, match="not a regular file"):
        datasets.load("cifar10", root=tmp_path, download=False)


# -- scikit-learn datasets -------------------------------------------------------------------------------------------

SKLEARN = {"breast-cancer": (569, 30, 2), "digits": (1797, 64, 10)}


@pytest.mark.parametrize("name", sorted(SKLEARN))
def test_sklearn_sets(name: str) -> None:
    pytest.importorskip("sklearn")
    total, features, classes = SKLEARN[name]
    ds = datasets.load(name)
    n_test = -(-total // 5)  # train_test_split rounds the test share up
    assert ds.name == name
    assert ds.x_train.shape == (total - n_test, features) and ds.x_test.shape == (n_test, features)
    assert ds.x_train.dtype == np.float32 and ds.x_test.dtype == np.float32
    assert ds.image_shape == ((1, 8, 8) if name == "digits" else None)  # digits are 8 x 8 images
    assert ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
    assert ds.x_train.flags.c_contiguous and ds.x_test.flags.c_contiguous
    assert ds.num_classes == classes and ds.num_features == features
    assert set(np.unique(ds.y_train)) == set(range(classes)) == set(np.unique(ds.y_test))
    if name == "digits":
        assert (ds.low, ds.high) == (0.0, 16.0)
    else:  # the training features' minimum and maximum
        assert (ds.low, ds.high) == (float(ds.x_train.min()), float(ds.x_train.max()))
    assert ds.low <= ds.x_train.min() and ds.x_train.max() <= ds.high

    # Deterministic.
    again = datasets.load(name.upper().replace("-", "_"))
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(ds, field), getattr(again, field))

    # Stratified: each class's share of the test set is its share of the whole set, up to rounding.
    y = np.concatenate([ds.y_train, ds.y_test])
    share = np.bincount(y, minlength=classes) / len(y)
    assert np.all(np.abs(np.bincount(ds.y_test, minlength=classes) - share * n_test) <= 1)

    # Train and test together are the original set, each example exactly once.
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    loader = sklearn_datasets.load_digits if name == "digits" else sklearn_datasets.load_breast_cancer
    x_all, y_all = loader(return_X_y=True)
    original = np.concatenate([np.asarray(x_all, np.float32), np.asarray(y_all, np.float32)[:, None]], axis=1)
    split = np.concatenate([np.concatenate([ds.x_train, ds.x_test]), y[:, None].astype(np.float32)], axis=1)

    def by_rows(a: np.ndarray) -> np.ndarray:
        return a[np.lexsort(a.T[::-1])]

    np.testing.assert_array_equal(by_rows(split), by_rows(original))


def test_sklearn_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("sklearn", "sklearn.datasets", "sklearn.model_selection"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(DatasetError, match="pip install scikit-learn"):
        datasets.load("digits")


# -- names and errors ------------------------------------------------------------------------------------------------


def test_names() -> None:
    assert datasets.names() == ["mnist", "fashion-mnist", "cifar10", "breast-cancer", "digits"]


@pytest.mark.parametrize("name", ["cifar100", "", "mnist2", "fashion mnist", "cifar 10"])
def test_unknown_name(name: str) -> None:
    with pytest.raises(DatasetError, match="unknown dataset") as info:
        datasets.load(name)
    for known in datasets.names():
        assert known in str(info.value)


def test_error_hierarchy() -> None:
    assert issubclass(DatasetError, bitlogic.BitlogicError) and issubclass(DatasetError, ValueError)


def test_dataset_is_frozen(tmp_path: Path) -> None:
    write(tmp_path / "mnist", synthetic())
    ds = datasets.load("MNIST", root=tmp_path, download=False)
    with pytest.raises(AttributeError):
        ds.name = "other"  # type: ignore[misc]


def test_import_needs_only_numpy() -> None:
    code = (
        "import sys, bitlogic.datasets; "
        "heavy = [m for m in ('sklearn', 'tqdm') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    python_dir = Path(__file__).resolve().parent.parent / "python"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(python_dir), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
