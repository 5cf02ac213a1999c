"""Datasets for training and benchmarks: MNIST, Fashion-MNIST and two small scikit-learn sets.

::

    ds = bitlogic.datasets.load("mnist")     # uint8 [60000, 784] / [10000, 784], labels int64
    ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.num_classes, ds.low, ds.high

MNIST and Fashion-MNIST are read from IDX files (raw or ``.gz``) in ``<root>/mnist/`` and ``<root>/fashion-mnist/``;
``root`` is the argument, else ``$BITLOGIC_DATA``, else ``$XDG_CACHE_HOME/bitlogic`` (``~/.cache/bitlogic``). Missing
files are downloaded from the official mirrors (SHA-256 checked) unless ``download=False``. ``"breast-cancer"`` and
``"digits"`` come bundled with scikit-learn (``pip install scikit-learn``), split 80/20 stratified and
deterministically. Every failure raises :class:`bitlogic.DatasetError` (also importable from here).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import importlib
import os
import struct
import urllib.error
import urllib.request
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from bitlogic import _native
from bitlogic.errors import DatasetError

__all__ = ["Dataset", "DatasetError", "load", "names"]


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A train/test split: features ``x_*`` (one row per example) and int64 labels ``y_*`` in ``[0, num_classes)``.

    ``low`` and ``high`` are the natural range of the features (0 and 255 for images), for choosing encoder
    thresholds. Images are uint8 ``[n, 784]``, C-contiguous; the scikit-learn sets are float32.
    """

    name: str
    x_train: npt.NDArray[Any]
    y_train: npt.NDArray[np.int64]
    x_test: npt.NDArray[Any]
    y_test: npt.NDArray[np.int64]
    num_classes: int
    low: float
    high: float

    @property
    def num_features(self) -> int:
        """Number of features per example (784 for the image sets)."""
        return int(self.x_train.shape[1])

    def __repr__(self) -> str:
        # The default repr would print the arrays.
        return (
            f"Dataset(name={self.name!r}, train={self.x_train.shape[0]}, test={self.x_test.shape[0]}, "
            f"num_features={self.num_features}, num_classes={self.num_classes}, dtype={self.x_train.dtype}, "
            f"low={self.low}, high={self.high})"
        )


@dataclass(frozen=True)
class _Remote:
    """Where to download an IDX dataset: ``base_url + file`` for each gz file, with its SHA-256."""

    base_url: str
    sha256: Mapping[str, str]


_IMAGE_SETS: Final = ("mnist", "fashion-mnist")
_SKLEARN_SETS: Final = ("breast-cancer", "digits")

# The four IDX files, without ``.gz``; (images, labels) for train, then test.
_SPLITS: Final = (
    ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
)

# SHA-256 of the gz files as served. MNIST: the values torchvision-era tooling cites (cross-checked in several
# independent projects, e.g. notwa/mnists hashes.py, Britefury/batchup). Fashion-MNIST: upstream publishes only MD5s
# (8d4fb7e6..., 25c81989..., bef4ecab..., bb300cfd...); these SHA-256 values are the ones published by
# Britefury/batchup (batchup/datasets/fashion_mnist.py) and notwa/mnists, which agree with each other.
_REMOTES: dict[str, _Remote] = {
    "mnist": _Remote(
        base_url="https://ossci-datasets.s3.amazonaws.com/mnist/",
        sha256={
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    ),
    "fashion-mnist": _Remote(
        base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        sha256={
            "train-images-idx3-ubyte.gz": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
            "train-labels-idx1-ubyte.gz": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
            "t10k-images-idx3-ubyte.gz": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
            "t10k-labels-idx1-ubyte.gz": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
        },
    ),
}

_TIMEOUT_S: Final = 60.0
# The largest real file is about 26 MB; a cap stops a misbehaving server from filling the disk before the hash check.
_MAX_DOWNLOAD_BYTES: Final = 64 * 1024 * 1024
_CHUNK: Final = 1 << 16
_IMAGE_SHAPE: Final = (28, 28)
_NUM_LABELS: Final = 10


def names() -> list[str]:
    """The dataset names :func:`load` accepts."""
    return [*_IMAGE_SETS, *_SKLEARN_SETS]


def load(name: str, root: str | os.PathLike[str] | None = None, download: bool = True) -> Dataset:
    """Loads a dataset by name (see :func:`names`; case and ``_`` / ``-`` do not matter).

    ``root`` (image sets only) is the data directory: the argument, else ``$BITLOGIC_DATA``, else
    ``$XDG_CACHE_HOME/bitlogic`` (default ``~/.cache/bitlogic``). Files are looked up in ``<root>/<name>/``; missing
    ones are downloaded there when ``download`` is true. Raises :class:`DatasetError`.
    """
    key = name.strip().lower().replace("_", "-") if isinstance(name, str) else ""
    if key in _IMAGE_SETS:
        return _load_idx_dataset(key, _resolve_root(root) / key, download)
    if key == "breast-cancer":
        return _load_breast_cancer()
    if key == "digits":
        return _load_digits()
    raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(names())}")


# -- IDX datasets ---------------------------------------------------------------------------------------------------


def _resolve_root(root: str | os.PathLike[str] | None) -> Path:
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("BITLOGIC_DATA")
    if env:
        return Path(env).expanduser()
    # XDG says a relative XDG_CACHE_HOME is invalid and must be ignored.
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache) if cache and os.path.isabs(cache) else Path.home() / ".cache"
    return base / "bitlogic"


def _find(directory: Path, stem: str) -> Path | None:
    # Raw is preferred when both exist: same content, no decompression.
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_idx_dataset(name: str, directory: Path, download: bool) -> Dataset:
    stems = [stem for pair in _SPLITS for stem in pair]
    missing = [stem for stem in stems if _find(directory, stem) is None]
    if missing and not download:
        listed = ", ".join(f"{stem}[.gz]" for stem in missing)
        raise DatasetError(
            f"{name}: missing {listed} in {directory}; call with download=True, place the files there by hand, or "
            f"set BITLOGIC_DATA to a directory that holds {name}/"
        )
    for stem in missing:
        _download(name, stem, directory)

    arrays: list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]] = []
    for images_stem, labels_stem in _SPLITS:
        images_path = _find(directory, images_stem)
        labels_path = _find(directory, labels_stem)
        if images_path is None or labels_path is None:  # removed by someone else since the check above
            raise DatasetError(f"{name}: {images_stem} or {labels_stem} disappeared from {directory}")
        images = _parse_idx(_read(images_path), images_path, images=True)
        labels = _parse_idx(_read(labels_path), labels_path, images=False)
        if images.shape[0] != labels.shape[0]:
            raise DatasetError(
                f"{images_path} holds {images.shape[0]} images but {labels_path} holds {labels.shape[0]} labels; "
                "expected equal counts"
            )
        arrays.append((images.reshape(images.shape[0], -1), labels.astype(np.int64)))
    (x_train, y_train), (x_test, y_test) = arrays
    return Dataset(name, x_train, y_train, x_test, y_test, num_classes=_NUM_LABELS, low=0.0, high=255.0)


def _read(path: Path) -> bytes:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as error:  # BadGzipFile is an OSError; a truncated gz is an EOFError
        raise DatasetError(f"cannot read {path}: {error}") from error


def _parse_idx(data: bytes, path: Path, *, images: bool) -> npt.NDArray[np.uint8]:
    """Strict IDX parser: unsigned-byte data, 3 dims (n, 28, 28) for images or 1 dim (n) for labels < 10."""
    kind = "images" if images else "labels"
    ndim = 3 if images else 1
    expected_magic = 0x00000800 | ndim
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: {len(data)} bytes, expected at least the {header}-byte IDX {kind} header")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise DatasetError(
            f"{path}: magic number 0x{magic:08x}, expected 0x{expected_magic:08x} (IDX {kind}, unsigned bytes)"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if images and dims[1:] != _IMAGE_SHAPE:
        raise DatasetError(f"{path}: images of {dims[1]}x{dims[2]} pixels, expected 28x28")
    expected_size = int(np.prod(dims, dtype=np.int64))
    if len(data) - header != expected_size:
        shape = " x ".join(str(d) for d in dims)
        raise DatasetError(f"{path}: {len(data) - header} data bytes, expected exactly {expected_size} ({shape})")
    # Copied so the arrays are writable and do not pin the file's bytes.
    array: npt.NDArray[np.uint8] = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()
    if not images and array.size and int(array.max()) >= _NUM_LABELS:
        bad = int(np.argmax(array >= _NUM_LABELS))
        raise DatasetError(f"{path}: label {int(array[bad])} at index {bad}, expected labels < {_NUM_LABELS}")
    return array


# -- download -------------------------------------------------------------------------------------------------------


def _progress(total: int | None, desc: str) -> Any:
    # tqdm is optional and untyped, so it is imported by name; without it downloads are silent.
    try:
        tqdm = importlib.import_module("tqdm")
    except ImportError:
        return None
    return tqdm.tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=False)


def _download(name: str, stem: str, directory: Path) -> None:
    """Downloads ``<stem>.gz`` into ``directory``, atomically and only if its SHA-256 matches."""
    remote = _REMOTES[name]
    file_name = f"{stem}.gz"
    url = remote.base_url + file_name
    expected = remote.sha256[file_name].lower()
    help_text = (
        f"download {url} by hand into {directory} (files {', '.join(s + '[.gz]' for p in _SPLITS for s in p)}), "
        f"or set BITLOGIC_DATA to a directory that holds {name}/"
    )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatasetError(f"{name}: cannot write to {directory} ({error}); pass root= or set BITLOGIC_DATA") from error
    # Held in memory (at most _MAX_DOWNLOAD_BYTES) until verified: nothing unverified ever reaches the directory.
    data, digest = _fetch(url, file_name, help_text)
    if digest != expected:
        raise DatasetError(
            f"{url}: SHA-256 {digest}, expected {expected}; the download is corrupt or the mirror changed and "
            f"nothing was saved; {help_text}"
        )
    try:
        # A temporary file of a name unique to this write, synced and renamed over the destination, the directory
        # synced: readers, and other processes downloading the same file, see no file or the whole of it.
        _native.write_atomic(os.fspath(directory / file_name), data)
    except OSError as error:
        raise DatasetError(
            f"{name}: cannot save {directory / file_name} ({error}); pass root= or set BITLOGIC_DATA"
        ) from error


def _fetch(url: str, file_name: str, help_text: str) -> tuple[bytes, str]:
    """The bytes of ``url`` and their SHA-256 hex digest."""
    digest = hashlib.sha256()
    chunks: list[bytes] = []
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            bar = _progress(int(length) if length and length.isdigit() else None, file_name)
            try:
                received = 0
                while chunk := response.read(_CHUNK):
                    received += len(chunk)
                    if received > _MAX_DOWNLOAD_BYTES:
                        raise DatasetError(f"{url} sent more than {_MAX_DOWNLOAD_BYTES} bytes; {help_text}")
                    digest.update(chunk)
                    chunks.append(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
            finally:
                if bar is not None:
                    bar.close()
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as error:
        if isinstance(error, urllib.error.HTTPError):
            error.close()  # it holds the error response open
            reason: object = f"HTTP {error.code} {error.reason}"
        else:
            reason = getattr(error, "reason", None) or error
        raise DatasetError(f"cannot download {url}: {reason}; {help_text}") from error
    return b"".join(chunks), digest.hexdigest()


# -- scikit-learn datasets ------------------------------------------------------------------------------------------


def _sklearn() -> tuple[ModuleType, ModuleType]:
    # Imported lazily and by name: scikit-learn is optional and ships no type information.
    try:
        return importlib.import_module("sklearn.datasets"), importlib.import_module("sklearn.model_selection")
    except ImportError as error:
        raise DatasetError(
            f"the breast-cancer and digits datasets need scikit-learn: pip install scikit-learn ({error})"
        ) from error


def _split(name: str, x: Any, y: Any, num_classes: int, low: float | None, high: float | None) -> Dataset:
    """A deterministic stratified 80/20 split (``random_state=0``); ``None`` bounds become the training min/max."""
    _, model_selection = _sklearn()
    features = np.asarray(x, dtype=np.float32)
    labels = np.asarray(y, dtype=np.int64)
    x_train, x_test, y_train, y_test = model_selection.train_test_split(
        features, labels, test_size=0.2, random_state=0, stratify=labels
    )
    x_train = np.ascontiguousarray(x_train, dtype=np.float32)
    return Dataset(
        name,
        x_train,
        np.ascontiguousarray(y_train, dtype=np.int64),
        np.ascontiguousarray(x_test, dtype=np.float32),
        np.ascontiguousarray(y_test, dtype=np.int64),
        num_classes=num_classes,
        low=float(x_train.min()) if low is None else low,
        high=float(x_train.max()) if high is None else high,
    )


def _load_breast_cancer() -> Dataset:
    # The 30 features have unrelated units and no natural range, so low/high are the minimum and maximum over all
    # training features (test features may fall slightly outside).
    datasets, _ = _sklearn()
    x, y = datasets.load_breast_cancer(return_X_y=True)
    return _split("breast-cancer", x, y, num_classes=2, low=None, high=None)


def _load_digits() -> Dataset:
    # 8x8 images with 4-bit pixel counts: values 0..16.
    datasets, _ = _sklearn()
    x, y = datasets.load_digits(return_X_y=True)
    return _split("digits", x, y, num_classes=10, low=0.0, high=16.0)
