"""Datasets for training and benchmarks: MNIST, Fashion-MNIST, CIFAR-10 and two small scikit-learn sets.

::

    ds = bitlogic.datasets.load("mnist")     # uint8 [60000, 784] / [10000, 784], labels int64
    ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.num_classes, ds.low, ds.high
    ds.image_shape                           # (1, 28, 28); ds.x_train.reshape(-1, *ds.image_shape) is [N, C, H, W]

MNIST and Fashion-MNIST are read from IDX files (raw or ``.gz``) in ``<root>/mnist/`` and ``<root>/fashion-mnist/``;
``root`` is the argument, else ``$BITLOGIC_DATA``, else ``$XDG_CACHE_HOME/bitlogic`` (``~/.cache/bitlogic``). Missing
files are downloaded from the official mirrors (SHA-256 checked) unless ``download=False``.

CIFAR-10 (``"cifar10"``: uint8 [50000, 3072] / [10000, 3072], ``image_shape`` (3, 32, 32)) is read from
``<root>/cifar10/``: the extracted ``cifar-10-batches-py/`` or ``cifar-10-batches-bin/`` directory, else the
``cifar-10-python.tar.gz`` or ``cifar-10-binary.tar.gz`` archive as published (read in place, never extracted);
with none of them, the binary archive is downloaded (SHA-256 checked) unless ``download=False``. The pickled python
batches are read by an unpickler that runs no code: it accepts only the batches' dict, list, bytes, int and numpy
uint8 array structure (see :func:`_unpickle_batch`).

``"breast-cancer"`` and ``"digits"`` come bundled with scikit-learn (``pip install scikit-learn``), split 80/20
stratified and deterministically. Every failure raises :class:`bitlogic.DatasetError` (also importable from here).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import importlib
import io
import math
import os
import pickle
import struct
import tarfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Mapping
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
    thresholds. Images are uint8 rows of ``C*H*W`` pixels, C-contiguous, pixel ``(c, y, x)`` at ``(c*H + y)*W + x``
    (the file format's ``input_shape`` order, and torch's ``nn.Flatten`` of ``[N, C, H, W]``); ``image_shape`` is
    ``(C, H, W)`` for them (``(1, 28, 28)``, ``(3, 32, 32)``; digits' float32 8 x 8 images ``(1, 8, 8)``), ``None`` for
    breast-cancer.
    """

    name: str
    x_train: npt.NDArray[Any]
    y_train: npt.NDArray[np.int64]
    x_test: npt.NDArray[Any]
    y_test: npt.NDArray[np.int64]
    num_classes: int
    low: float
    high: float
    image_shape: tuple[int, int, int] | None = None

    @property
    def num_features(self) -> int:
        """Number of features per example (784 for MNIST, 3072 for CIFAR-10)."""
        return int(self.x_train.shape[1])

    def __repr__(self) -> str:
        # The default repr would print the arrays.
        return (
            f"Dataset(name={self.name!r}, train={self.x_train.shape[0]}, test={self.x_test.shape[0]}, "
            f"num_features={self.num_features}, num_classes={self.num_classes}, dtype={self.x_train.dtype}, "
            f"low={self.low}, high={self.high})"
        )


# The largest IDX file is about 26 MB; a cap stops a misbehaving server from filling the disk before the hash check.
_MAX_DOWNLOAD_BYTES: Final = 64 * 1024 * 1024


@dataclass(frozen=True)
class _Remote:
    """Where to download a dataset: ``base_url + file`` for each file, with its SHA-256 and at most ``max_bytes``."""

    base_url: str
    sha256: Mapping[str, str]
    max_bytes: int = _MAX_DOWNLOAD_BYTES


_IMAGE_SETS: Final = ("mnist", "fashion-mnist")
_CIFAR10: Final = "cifar10"
_SKLEARN_SETS: Final = ("breast-cancer", "digits")
# Other spellings load() accepts (after lower-casing and "_" -> "-").
_ALIASES: Final = {"cifar-10": _CIFAR10}

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
    # The dataset author's binary archive (170,052,171 bytes; the site publishes its MD5,
    # c32a1d4ab5d03f1284b67883e8d87530). This SHA-256 is the one several independent loaders pin for that URL
    # (e.g. torchvision-ruby, Julia's MLDatasets). The binary version is the one downloaded because reading it
    # needs no unpickling at all.
    _CIFAR10: _Remote(
        base_url="https://www.cs.toronto.edu/~kriz/",
        sha256={"cifar-10-binary.tar.gz": "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"},
        max_bytes=192 * 1024 * 1024,
    ),
}

_TIMEOUT_S: Final = 60.0
_CHUNK: Final = 1 << 16
_IMAGE_SHAPE: Final = (28, 28)
_NUM_LABELS: Final = 10


def names() -> list[str]:
    """The dataset names :func:`load` accepts."""
    return [*_IMAGE_SETS, _CIFAR10, *_SKLEARN_SETS]


def load(name: str, root: str | os.PathLike[str] | None = None, download: bool = True) -> Dataset:
    """Loads a dataset by name (see :func:`names`; case and ``_`` / ``-`` do not matter).

    ``root`` (image sets only) is the data directory: the argument, else ``$BITLOGIC_DATA``, else
    ``$XDG_CACHE_HOME/bitlogic`` (default ``~/.cache/bitlogic``). Files are looked up in ``<root>/<name>/``; missing
    ones are downloaded there when ``download`` is true. Raises :class:`DatasetError`.
    """
    key = name.strip().lower().replace("_", "-") if isinstance(name, str) else ""
    key = _ALIASES.get(key, key)
    if key in _IMAGE_SETS:
        return _load_idx_dataset(key, _resolve_root(root) / key, download)
    if key == _CIFAR10:
        return _load_cifar10(_resolve_root(root) / key, download)
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
    help_text = (
        f"download them by hand into {directory} (files {', '.join(s + '[.gz]' for p in _SPLITS for s in p)}), "
        f"or set BITLOGIC_DATA to a directory that holds {name}/"
    )
    for stem in missing:
        _download(name, f"{stem}.gz", directory, help_text)

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
    return Dataset(
        name, x_train, y_train, x_test, y_test, num_classes=_NUM_LABELS, low=0.0, high=255.0, image_shape=(1, 28, 28)
    )


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


# -- CIFAR-10 -------------------------------------------------------------------------------------------------------

_CIFAR_SIDE: Final = 32
_CIFAR_SHAPE: Final = (3, _CIFAR_SIDE, _CIFAR_SIDE)
_CIFAR_PIXELS: Final = 3 * _CIFAR_SIDE * _CIFAR_SIDE
# A real batch is 10000 images (30.7 MB); the cap bounds what a hostile archive member can make us read.
_CIFAR_MAX_MEMBER_BYTES: Final = 64 * 1024 * 1024
_CIFAR_DOWNLOAD: Final = "cifar-10-binary.tar.gz"

ImagesAndLabels = tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]


@dataclass(frozen=True)
class _CifarFormat:
    """One of the two published layouts of CIFAR-10: its directory (as extracted), archive and batch files."""

    directory: str
    archive: str
    train: tuple[str, ...]
    test: str
    parse: Callable[[bytes, str], ImagesAndLabels]


def _parse_cifar_binary(data: bytes, where: str) -> ImagesAndLabels:
    """A binary batch: records of one label byte and 3072 pixel bytes (red, green, blue planes, rows of 32)."""
    record = 1 + _CIFAR_PIXELS
    if not data or len(data) % record:
        raise DatasetError(f"{where}: {len(data)} bytes, expected a positive whole number of {record}-byte records")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, record)
    return _checked_cifar(np.ascontiguousarray(records[:, 1:]), records[:, 0].astype(np.int64), where)


def _parse_cifar_python(data: bytes, where: str) -> ImagesAndLabels:
    """A pickled python batch: a dict with ``b"data"`` uint8 [n, 3072] and ``b"labels"`` a list of n ints."""
    batch = _unpickle_batch(data, where)
    images, labels = batch.get("data"), batch.get("labels")
    if not isinstance(images, _PickledArray) or not isinstance(labels, list):
        raise DatasetError(f"{where}: expected a dict with 'data' (a numpy array) and 'labels' (a list)")
    if not all(type(label) is int for label in labels):
        raise DatasetError(f"{where}: expected 'labels' to be a list of ints")
    pixels = images.to_uint8(where)
    if pixels.ndim != 2 or pixels.shape[1] != _CIFAR_PIXELS:
        raise DatasetError(f"{where}: 'data' of shape {pixels.shape}, expected [n, {_CIFAR_PIXELS}]")
    # Checked here, before int64 could overflow on a huge one.
    bad = next((i for i, label in enumerate(labels) if not 0 <= label < _NUM_LABELS), None)
    if bad is not None:
        raise _label_error(where, labels[bad], bad)
    return _checked_cifar(pixels, np.asarray(labels, dtype=np.int64).reshape(-1), where)


def _checked_cifar(images: npt.NDArray[np.uint8], labels: npt.NDArray[np.int64], where: str) -> ImagesAndLabels:
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels; expected equal counts")
    if labels.size and int(labels.max()) >= _NUM_LABELS:
        bad = int(np.argmax(labels >= _NUM_LABELS))
        raise _label_error(where, int(labels[bad]), bad)
    return images, labels


def _label_error(where: str, label: int, index: int) -> DatasetError:
    return DatasetError(f"{where}: label {label} at index {index}, expected labels 0..{_NUM_LABELS - 1}")


_CIFAR_FORMATS: Final = (
    _CifarFormat(
        "cifar-10-batches-py",
        "cifar-10-python.tar.gz",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        _parse_cifar_python,
    ),
    _CifarFormat(
        "cifar-10-batches-bin",
        "cifar-10-binary.tar.gz",
        tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        "test_batch.bin",
        _parse_cifar_binary,
    ),
)


def _load_cifar10(directory: Path, download: bool) -> Dataset:
    # Extracted directories first (no decompression), then the archives; the first one present is read whole.
    for layout in _CIFAR_FORMATS:
        if (directory / layout.directory).is_dir():
            return _cifar_dataset(layout, directory / layout.directory, archive=False)
    for layout in _CIFAR_FORMATS:
        if (directory / layout.archive).is_file():
            return _cifar_dataset(layout, directory / layout.archive, archive=True)
    sources = [name for layout in _CIFAR_FORMATS for name in (layout.directory, layout.archive)]
    expected = ", ".join(str(directory / name) for name in sources)
    help_text = (
        f"put the python or binary version from https://www.cs.toronto.edu/~kriz/cifar.html (the archive as "
        f"published, or its extracted directory) into {directory}, or set BITLOGIC_DATA to a directory that holds "
        f"{_CIFAR10}/"
    )
    if not download:
        raise DatasetError(f"{_CIFAR10}: found none of {expected}; call with download=True, or {help_text}")
    _download(_CIFAR10, _CIFAR_DOWNLOAD, directory, help_text)
    downloaded = next(layout for layout in _CIFAR_FORMATS if layout.archive == _CIFAR_DOWNLOAD)
    return _cifar_dataset(downloaded, directory / downloaded.archive, archive=True)


def _cifar_dataset(layout: _CifarFormat, source: Path, archive: bool) -> Dataset:
    names = (*layout.train, layout.test)
    read = _cifar_archive_reader(source, layout.directory, names) if archive else _cifar_directory_reader(source)
    train = [layout.parse(*read(name)) for name in layout.train]
    x_test, y_test = layout.parse(*read(layout.test))
    x_train = np.concatenate([images for images, _ in train])
    y_train = np.concatenate([labels for _, labels in train])
    return Dataset(
        _CIFAR10, x_train, y_train, x_test, y_test, _NUM_LABELS, low=0.0, high=255.0, image_shape=_CIFAR_SHAPE
    )


# A batch reader: the bytes of a batch file by name, and how to name it in errors.
_BatchReader = Callable[[str], tuple[bytes, str]]


def _cifar_directory_reader(directory: Path) -> _BatchReader:
    def read(name: str) -> tuple[bytes, str]:
        path = directory / name
        if not path.is_file():
            raise DatasetError(f"{path}: missing; an extracted CIFAR-10 directory needs all six batch files")
        _check_member_size(path.stat().st_size, str(path))
        return _read(path), str(path)

    return read


def _cifar_archive_reader(archive: Path, directory: str, names: tuple[str, ...]) -> _BatchReader:
    """Reads the batches out of the archive in one pass (a gz archive has no random access), extracting nothing."""
    wanted = {f"{directory}/{name}": name for name in names}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, mode="r|gz") as tar:
            for member in tar:
                name = wanted.get(member.name.removeprefix("./"))
                if name is None or name in found:
                    continue
                where = f"{archive}:{member.name}"
                if not member.isfile():
                    raise DatasetError(f"{where}: not a regular file; expected a CIFAR-10 batch")
                _check_member_size(member.size, where)
                content = tar.extractfile(member)
                if content is None:  # isfile() was checked, so this does not happen
                    raise DatasetError(f"{where}: cannot be read")
                found[name] = content.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"cannot read {archive}: {error}") from error

    def read(name: str) -> tuple[bytes, str]:
        if name not in found:
            raise DatasetError(f"{archive}: no member {directory}/{name}; expected the archive as published")
        return found[name], f"{archive}:{directory}/{name}"

    return read


def _check_member_size(size: int, where: str) -> None:
    if size > _CIFAR_MAX_MEMBER_BYTES:
        raise DatasetError(f"{where}: {size} bytes, expected at most {_CIFAR_MAX_MEMBER_BYTES} for one batch")


# -- pickled CIFAR batches, unpickled without running code ----------------------------------------------------------


class _PickledArray:
    """What a pickled numpy array becomes: its recorded state, turned into an array only if it is plain uint8 data.

    A pickle rebuilds an array by calling ``numpy.core.multiarray._reconstruct`` and then the array's
    ``__setstate__``; both are replaced by this record, so no numpy code ever sees the pickle's arguments.
    """

    def __init__(self, *args: object) -> None:
        self.state: object = None

    def __setstate__(self, state: object) -> None:
        self.state = state

    def to_uint8(self, where: str) -> npt.NDArray[np.uint8]:
        # ndarray.__reduce__'s state: (version, shape, dtype, is_fortran, raw bytes).
        state = self.state
        if not (isinstance(state, tuple) and len(state) == 5):
            raise DatasetError(f"{where}: 'data' is not a pickled numpy array")
        _, shape, dtype, fortran, raw = state
        if not (isinstance(dtype, _PickledDtype) and dtype.is_uint8()):
            raise DatasetError(f"{where}: 'data' is not a uint8 array")
        if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
            raise DatasetError(f"{where}: 'data' has an invalid shape {shape!r}")
        if fortran not in (False, 0) or not isinstance(raw, bytes):
            raise DatasetError(f"{where}: 'data' is not a C-ordered array of raw bytes")
        size = math.prod(shape)  # exact: a hostile shape must not wrap around
        if len(raw) != size:
            raise DatasetError(f"{where}: 'data' holds {len(raw)} bytes, expected {size} for shape {shape}")
        array: npt.NDArray[np.uint8] = np.frombuffer(raw, dtype=np.uint8).reshape(shape).copy()
        return array


class _PickledDtype:
    """A pickled ``numpy.dtype(name, align, copy)``; only its name is kept (its state is the byte order etc.)."""

    def __init__(self, name: object = None, *args: object) -> None:
        self.name = name.decode("ascii", "replace") if isinstance(name, bytes) else name

    def __setstate__(self, state: object) -> None:
        pass

    def is_uint8(self) -> bool:
        return self.name == "u1"


def _reconstruct(cls: object, *args: object) -> _PickledArray:
    if cls is not _PickledArray:
        raise pickle.UnpicklingError("_reconstruct of something other than numpy.ndarray")
    return _PickledArray()


def _latin1(text: object, encoding: object = "latin1") -> bytes:
    # Python 3's protocol-2 pickles store bytes as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("_codecs.encode other than of a str to latin1")
    return text.encode("latin1")


# The only globals a CIFAR batch refers to (numpy 1.x and 2.x module names), each mapped to a stand-in above.
_PICKLE_GLOBALS: Final[Mapping[tuple[str, str], object]] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _PickledArray,
    ("numpy", "dtype"): _PickledDtype,
    ("_codecs", "encode"): _latin1,
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing {module}.{name}, which a CIFAR-10 batch never holds") from None


def _unpickle_batch(data: bytes, where: str) -> dict[str, object]:
    """The batch's dict, keys as str, from a pickle that may hold nothing but builtin values and uint8 arrays.

    The batches were written by Python 2: ``encoding="bytes"`` keeps their strings as bytes (numpy's raw data among
    them) rather than guessing a text encoding.
    """
    try:
        batch = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as error:  # a hostile or corrupt pickle can raise nearly anything, all of it "unreadable"
        raise DatasetError(f"{where}: not a CIFAR-10 python batch ({type(error).__name__}: {error})") from error
    if not isinstance(batch, dict):
        raise DatasetError(f"{where}: a pickled {type(batch).__name__}, expected a dict")
    return {key.decode("latin1") if isinstance(key, bytes) else str(key): value for key, value in batch.items()}


# -- download -------------------------------------------------------------------------------------------------------


def _progress(total: int | None, desc: str) -> Any:
    # tqdm is optional and untyped, so it is imported by name; without it downloads are silent.
    try:
        tqdm = importlib.import_module("tqdm")
    except ImportError:
        return None
    return tqdm.tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, leave=False)


def _download(name: str, file_name: str, directory: Path, help_text: str) -> None:
    """Downloads ``file_name`` of ``name``'s remote into ``directory``, atomically and only if its SHA-256 matches.

    ``help_text`` says how to get the files by hand; every error ends with it.
    """
    remote = _REMOTES[name]
    url = remote.base_url + file_name
    expected = remote.sha256[file_name].lower()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatasetError(f"{name}: cannot write to {directory} ({error}); pass root= or set BITLOGIC_DATA") from error
    # Held in memory (at most _MAX_DOWNLOAD_BYTES) until verified: nothing unverified ever reaches the directory.
    data, digest = _fetch(url, file_name, help_text, remote.max_bytes)
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


def _fetch(url: str, file_name: str, help_text: str, max_bytes: int) -> tuple[bytes, str]:
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
                    if received > max_bytes:
                        raise DatasetError(f"{url} sent more than {max_bytes} bytes; {help_text}")
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


def _split(
    name: str, x: Any, y: Any, num_classes: int, low: float | None, high: float | None,
    image_shape: tuple[int, int, int] | None = None,
) -> Dataset:
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
        image_shape=image_shape,
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
    return _split("digits", x, y, num_classes=10, low=0.0, high=16.0, image_shape=(1, 8, 8))
