"""An independent, minimal safetensors writer and reader, and a bitlogic network file writer and reader.

Written from docs/FORMAT.md alone, without calling bitlogic: the tests use it to craft valid and malformed files, and
to check that the engine's files follow the specification. That a file written here loads in bitlogic and evaluates
like the numpy reference shows that the format is implementable by a third party.

Container (FORMAT.md 1): ``u64 LE header length N`` + ``N bytes of UTF-8 JSON`` + the data buffer, where each tensor is
``{"dtype", "shape", "data_offsets": [begin, end]}`` relative to the buffer, plus ``__metadata__`` (string values).
No JSON object may hold a key twice. Files of version 1.1 and later record the SHA-256 of the data buffer under
``data_sha256`` (FORMAT.md 2); version 1.2 adds the spatial layer kinds (conv_gates, conv_luts, conv_binary, or_pool).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bitlogic.spec import (
    BinaryLayer,
    BitsEncoder,
    ConvBinaryLayer,
    ConvGateLayer,
    ConvLutLayer,
    Encoder,
    GateLayer,
    Layer,
    LutLayer,
    OrPoolLayer,
    ThresholdEncoder,
)

SPATIAL = (ConvGateLayer, ConvLutLayer, ConvBinaryLayer, OrPoolLayer)

# safetensors dtype name -> little-endian numpy dtype.
DTYPES: dict[str, np.dtype[Any]] = {
    "U8": np.dtype("<u1"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "F32": np.dtype("<f4"),
}


class ContainerError(ValueError):
    """The bytes are not a well-formed safetensors container (raised by this module's reader only)."""


@dataclass(frozen=True)
class Tensor:
    """One tensor as stored: dtype name, shape, and its raw little-endian C-ordered bytes."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes

    @staticmethod
    def of(dtype: str, array: Any) -> Tensor:
        values = np.ascontiguousarray(array, dtype=DTYPES[dtype])
        return Tensor(dtype, tuple(int(d) for d in values.shape), values.tobytes(order="C"))

    def array(self) -> np.ndarray:
        count = int(np.prod(self.shape, dtype=np.int64))
        return np.frombuffer(self.data, dtype=DTYPES[self.dtype], count=count).reshape(self.shape)


# -- container --------------------------------------------------------------------------------------------------------


def assemble(header: Mapping[str, Any], buffer: bytes, *, header_bytes: bytes | None = None) -> bytes:
    """Raw container bytes from a header object (written as compact JSON, or ``header_bytes`` as given)."""
    text = header_bytes if header_bytes is not None else json.dumps(header, separators=(",", ":")).encode("utf-8")
    return struct.pack("<Q", len(text)) + text + buffer


DIGEST_KEY = "data_sha256"


def digest(buffer: bytes) -> str:
    """The digest a 1.1 file records of its data buffer: SHA-256, 64 lowercase hexadecimal digits."""
    return hashlib.sha256(buffer).hexdigest()


def write(tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None, *, with_digest: bool = False) -> bytes:
    """A well-formed container holding ``tensors`` (packed back to back in the given order) and ``metadata``, to
    which ``with_digest`` adds the digest of the data buffer."""
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = dict(metadata)
    chunks: list[bytes] = []
    offset = 0
    for name, t in tensors.items():
        expected = int(np.prod(t.shape, dtype=np.int64)) * DTYPES[t.dtype].itemsize
        assert len(t.data) == expected, f"{name}: {len(t.data)} bytes for shape {t.shape} of {t.dtype}"
        header[name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(t.data)]}
        chunks.append(t.data)
        offset += len(t.data)
    buffer = b"".join(chunks)
    if with_digest:
        header.setdefault("__metadata__", {})[DIGEST_KEY] = digest(buffer)
    return assemble(header, buffer)


def split(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The parsed header object and the data buffer, with only the framing checked."""
    if len(data) < 8:
        raise ContainerError("shorter than the 8-byte header length")
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        raise ContainerError(f"header length {length} runs past the end of the file")
    try:
        header = json.loads(
            data[8 : 8 + length].decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_unique_object
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ContainerError(f"header is not UTF-8 JSON: {error}") from None
    if not isinstance(header, dict):
        raise ContainerError("header is not a JSON object")
    return header, data[8 + length :]


def _reject_constant(name: str) -> Any:
    raise ContainerError(f"header holds the non-JSON constant {name}")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ContainerError(f"the key {key!r} appears twice in one object")
        out[key] = value
    return out


def loads_unique(text: str) -> Any:
    """``json.loads`` refusing any object that holds a key twice (FORMAT.md 1)."""
    return json.loads(text, object_pairs_hook=_unique_object)


def read(data: bytes) -> tuple[dict[str, str] | None, dict[str, Tensor]]:
    """Metadata and tensors (in data-offset order) of a container, checked by the safetensors rules."""
    header, buffer = split(data)
    metadata = header.pop("__metadata__", None)
    if metadata is not None and (
        not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values())
    ):
        raise ContainerError("__metadata__ must map names to strings")
    spans: list[tuple[int, int, str]] = []
    tensors: dict[str, Tensor] = {}
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise ContainerError(f"{name}: expected dtype, shape and data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPES:
            raise ContainerError(f"{name}: unknown dtype {dtype!r}")
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise ContainerError(f"{name}: bad shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise ContainerError(f"{name}: bad data_offsets {offsets!r}")
        begin, end = offsets
        count = 1
        for d in shape:
            count *= d
        if not 0 <= begin <= end <= len(buffer) or end - begin != count * DTYPES[dtype].itemsize:
            raise ContainerError(f"{name}: data_offsets {offsets} do not fit shape {shape} in {len(buffer)} bytes")
        spans.append((begin, end, name))
        tensors[name] = Tensor(dtype, tuple(shape), buffer[begin:end])
    spans.sort()
    position = 0
    for begin, end, name in spans:
        if begin != position:
            raise ContainerError(f"{name}: data starts at {begin}, expected {position} (gap or overlap)")
        position = end
    if position != len(buffer):
        raise ContainerError(f"tensors cover {position} of {len(buffer)} data bytes")
    return metadata, {name: tensors[name] for _, _, name in spans}


# -- bit packing (FORMAT.md 3.4, 3.5) ---------------------------------------------------------------------------------


def pack_rows(bits: Any) -> np.ndarray:
    """0/1 ``[R, C]`` -> uint8 ``[R, ceil(C / 8)]``: entry ``j`` is bit ``j mod 8`` of byte ``j div 8``, padding 0."""
    bits = np.asarray(bits, dtype=np.uint8)
    rows, cols = bits.shape
    nbytes = -(-cols // 8)
    padded = np.zeros((rows, nbytes * 8), dtype=np.uint8)
    padded[:, :cols] = bits
    weights = (1 << np.arange(8)).astype(np.uint8)  # bit 0 is the least significant
    return (padded.reshape(rows, nbytes, 8) * weights).sum(axis=2).astype(np.uint8)


def unpack_rows(packed: Any, cols: int) -> tuple[np.ndarray, bool]:
    """Inverse of :func:`pack_rows`: the 0/1 ``[R, cols]`` entries, and whether every padding bit is 0."""
    packed = np.asarray(packed, dtype=np.uint8)
    shifts = np.arange(8, dtype=np.uint8)
    bits = ((packed[:, :, None] >> shifts) & 1).reshape(packed.shape[0], -1)
    return bits[:, :cols].astype(np.uint8), not bits[:, cols:].any()


# -- the network file (FORMAT.md 2, 3, 5) -----------------------------------------------------------------------------


def network_description(
    encoder: Encoder,
    layers: Sequence[Layer],
    num_classes: int,
    tau: float = 1.0,
    info: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The JSON description of section 3, as a Python object (key order as in the specification's example)."""
    if isinstance(encoder, BitsEncoder):
        enc: dict[str, Any] = {"kind": "bits", "num_inputs": int(encoder.num_inputs)}
    else:
        f, t = encoder.thresholds.shape
        enc = {"kind": "thresholds", "num_features": int(f), "thresholds_per_feature": int(t),
               "bit_order": encoder.bit_order}
    described: list[dict[str, Any]] = []
    for i, layer in enumerate(layers):
        entry: dict[str, Any] = {"kind": layer.kind, "width": layer.width}
        if isinstance(layer, (LutLayer, ConvLutLayer)):
            entry["arity"] = layer.arity
        entry["sources"] = [i]
        if isinstance(layer, SPATIAL):
            entry |= spatial_keys(layer)
        described.append(entry)
    out: dict[str, Any] = {
        "encoder": enc,
        "layers": described,
        "head": {"kind": "group_sum", "num_classes": int(num_classes), "tau": float(tau)},
    }
    if info is not None:
        out["info"] = dict(info)
    return out


def spatial_keys(layer: ConvGateLayer | ConvLutLayer | ConvBinaryLayer | OrPoolLayer) -> dict[str, Any]:
    """The keys a spatial layer's description has beside ``kind``, ``width``, ``sources`` (and ``arity``)."""
    keys: dict[str, Any] = {"input_shape": list(layer.input_shape), "kernel_size": list(layer.kernel_size),
                            "stride": list(layer.stride)}
    if isinstance(layer, OrPoolLayer):
        return keys
    keys |= {"padding": list(layer.padding), "out_channels": layer.out_channels}
    if isinstance(layer, ConvGateLayer):
        keys["depth"] = layer.depth
    elif isinstance(layer, ConvBinaryLayer):
        keys["pad_value"] = layer.pad_value
    return keys


def network_tensors(encoder: Encoder, layers: Sequence[Layer]) -> dict[str, Tensor]:
    """The tensors of section 3, packed, in the order section 5 asks writers to use."""
    tensors: dict[str, Tensor] = {}
    if isinstance(encoder, ThresholdEncoder):
        tensors["encoder.thresholds"] = Tensor.of("F32", encoder.thresholds)
    for i, layer in enumerate(layers):
        if isinstance(layer, GateLayer):
            tensors[f"layers.{i}.inputs"] = Tensor.of("U32", layer.inputs)
            tensors[f"layers.{i}.ops"] = Tensor.of("U8", layer.ops)
        elif isinstance(layer, LutLayer):
            tensors[f"layers.{i}.inputs"] = Tensor.of("U32", layer.inputs)
            tensors[f"layers.{i}.tables"] = Tensor.of("U8", pack_rows(layer.tables))
        elif isinstance(layer, ConvGateLayer):
            tensors[f"layers.{i}.leaves"] = Tensor.of("U32", layer.leaves)
            tensors[f"layers.{i}.ops"] = Tensor.of("U8", layer.ops)
        elif isinstance(layer, ConvLutLayer):
            tensors[f"layers.{i}.leaves"] = Tensor.of("U32", layer.leaves)
            tensors[f"layers.{i}.tables"] = Tensor.of("U8", pack_rows(layer.tables))
        elif isinstance(layer, (BinaryLayer, ConvBinaryLayer)):
            tensors[f"layers.{i}.weights"] = Tensor.of("U8", pack_rows(layer.weights))
            tensors[f"layers.{i}.thresholds"] = Tensor.of("I32", layer.thresholds)
        # or_pool has no tensors.
    return tensors


def network_metadata(description: Mapping[str, Any] | str, version: str = "1.0") -> dict[str, str]:
    """The metadata keys of section 2 other than the digest (which :func:`write` adds, knowing the data)."""
    text = description if isinstance(description, str) else json.dumps(description, separators=(",", ":"))
    return {"format": "bitlogic", "format_version": version, "network": text}


def has_digest(version: str) -> bool:
    """Whether a file of ``version`` records the digest of its data: 1.1 and every later 1.x."""
    major, _, minor = version.partition(".")
    return major == "1" and minor.isdigit() and minor.isascii() and int(minor) >= 1


def network_bytes(
    encoder: Encoder,
    layers: Sequence[Layer],
    num_classes: int,
    tau: float = 1.0,
    info: Mapping[str, str] | None = None,
    version: str | None = None,
) -> bytes:
    """A complete, valid network file of ``version`` (1.0 has no digest, 1.1 and later do); by default 1.2 when a
    layer is of a spatial kind, 1.1 otherwise."""
    if version is None:
        version = "1.2" if any(isinstance(layer, SPATIAL) for layer in layers) else "1.1"
    description = network_description(encoder, layers, num_classes, tau, info)
    tensors = network_tensors(encoder, layers)
    return write(tensors, network_metadata(description, version), with_digest=has_digest(version))


@dataclass
class DecodedNetwork:
    encoder: Encoder
    layers: list[Layer]
    num_classes: int
    tau: float
    info: dict[str, str] | None
    description: dict[str, Any]
    metadata: dict[str, str]
    tensor_order: list[str]


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def is_compact_json(text: str) -> bool:
    """True when ``text`` has no whitespace outside its string literals."""
    return not re.search(r"\s", _STRING.sub('""', text))


def _window_count(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output positions along one axis: ``floor((size + 2*padding - kernel) / stride) + 1``, which must be >= 1."""
    assert 1 <= kernel <= size + 2 * padding and stride >= 1 and padding >= 0, (size, kernel, stride, padding)
    return (size + 2 * padding - kernel) // stride + 1


def _pair(desc: Mapping[str, Any], key: str, minimum: int) -> tuple[int, int]:
    value = desc[key]
    assert isinstance(value, list) and len(value) == 2 and all(type(v) is int and v >= minimum for v in value), desc
    return value[0], value[1]


def _read_spatial(
    i: int, desc: Mapping[str, Any], tensors: Mapping[str, Tensor], width: int
) -> tuple[Layer, list[str]]:
    """A spatial layer (format 1.2) and the names of its tensors, every rule of its description checked."""
    kind = desc["kind"]
    common = {"kind", "width", "sources", "input_shape", "kernel_size", "stride"}
    extra = {"conv_gates": {"depth"}, "conv_luts": {"arity"}, "conv_binary": {"pad_value"}, "or_pool": set()}[kind]
    conv = set() if kind == "or_pool" else {"padding", "out_channels"}
    assert set(desc) == common | conv | extra, desc
    shape = desc["input_shape"]
    assert isinstance(shape, list) and len(shape) == 3 and all(type(v) is int and v >= 1 for v in shape), desc
    c, h, w = shape
    assert c * h * w == width, f"layers.{i}: input_shape {shape} holds {c * h * w} bits, the input width is {width}"
    (kh, kw), (sh, sw) = _pair(desc, "kernel_size", 1), _pair(desc, "stride", 1)
    (ph, pw) = (0, 0) if kind == "or_pool" else _pair(desc, "padding", 0)
    out_h, out_w = _window_count(h, kh, sh, ph), _window_count(w, kw, sw, pw)
    channels = c if kind == "or_pool" else desc["out_channels"]
    assert type(channels) is int and channels >= 1, desc
    assert desc["width"] == channels * out_h * out_w, f"layers.{i}: width {desc['width']} for {desc}"
    geometry: dict[str, Any] = {"input_shape": tuple(shape), "kernel_size": (kh, kw), "stride": (sh, sw)}
    if kind == "or_pool":
        return OrPoolLayer(**geometry), []
    geometry["padding"] = (ph, pw)
    names = {"conv_gates": ("leaves", "ops"), "conv_luts": ("leaves", "tables"),
             "conv_binary": ("weights", "thresholds")}[kind]
    first, second = (tensors[f"layers.{i}.{name}"] for name in names)
    layer: Layer
    if kind in ("conv_gates", "conv_luts"):
        count = 1 << desc["depth"] if kind == "conv_gates" else desc["arity"]
        assert 1 <= desc.get("depth", desc.get("arity")) <= 8, desc
        assert (first.dtype, first.shape) == ("U32", (channels, count, 3)), first
        leaves = first.array()
        for axis, limit in enumerate((c, kh, kw)):
            assert int(leaves[..., axis].max(initial=0)) < limit, f"layers.{i}.leaves: axis {axis} not below {limit}"
        if kind == "conv_gates":
            assert (second.dtype, second.shape) == ("U8", (channels, count - 1)), second
            assert int(second.array().max(initial=0)) <= 15
            layer = ConvGateLayer(leaves=leaves.copy(), ops=second.array().copy(), **geometry)
        else:
            assert (second.dtype, second.shape) == ("U8", (channels, -(-(1 << count) // 8))), second
            bits, clean = unpack_rows(second.array(), 1 << count)
            assert clean, f"layers.{i}.tables: nonzero padding bits"
            layer = ConvLutLayer(leaves=leaves.copy(), tables=bits, **geometry)
    else:
        n = c * kh * kw
        assert (first.dtype, first.shape) == ("U8", (channels, -(-n // 8))), first
        assert (second.dtype, second.shape) == ("I32", (channels,)), second
        assert desc["pad_value"] in (0, 1) and type(desc["pad_value"]) is int, desc
        bits, clean = unpack_rows(first.array(), n)
        assert clean, f"layers.{i}.weights: nonzero padding bits"
        layer = ConvBinaryLayer(weights=bits, thresholds=second.array().copy(), pad_value=desc["pad_value"],
                                **geometry)
    return layer, [f"layers.{i}.{name}" for name in names]


def read_network(data: bytes) -> DecodedNetwork:
    """Decodes a network file of version 1.0, 1.1 or 1.2 back into spec objects, checking what section 4 lists and,
    from 1.1 on, the digest of the data.

    Used to check files that bitlogic writes; raises ``ValueError`` (or ``AssertionError``) on anything off-spec.
    """
    metadata, tensors = read(data)
    if metadata is None or metadata.get("format") != "bitlogic" or "format_version" not in metadata:
        raise ValueError(f"not a bitlogic network file: metadata {metadata!r}")
    version = metadata["format_version"]
    if version not in ("1.0", "1.1", "1.2"):
        raise ValueError(f"format version {version!r}")
    keys = {"format", "format_version", "network"} | ({DIGEST_KEY} if has_digest(version) else set())
    if set(metadata) != keys:
        raise ValueError(f"metadata keys of a {version} file: {sorted(metadata)}")
    if has_digest(version) and metadata[DIGEST_KEY] != digest(split(data)[1]):
        raise ValueError(f"{DIGEST_KEY} {metadata[DIGEST_KEY]} is not the digest of the data")
    description = loads_unique(metadata["network"])
    assert set(description) <= {"encoder", "layers", "head", "info"}, description.keys()
    enc = description["encoder"]
    expected: list[str] = []
    encoder: Encoder
    if enc["kind"] == "bits":
        assert set(enc) == {"kind", "num_inputs"}, enc
        encoder = BitsEncoder(enc["num_inputs"])
        width = enc["num_inputs"]
    else:
        assert enc["kind"] == "thresholds" and set(enc) == {
            "kind", "num_features", "thresholds_per_feature", "bit_order"}, enc
        t = tensors["encoder.thresholds"]
        assert t.dtype == "F32" and t.shape == (enc["num_features"], enc["thresholds_per_feature"]), t
        assert not np.isnan(t.array()).any()
        encoder = ThresholdEncoder(t.array().copy(), enc["bit_order"])
        width = encoder.num_bits
        expected.append("encoder.thresholds")
    layers: list[Layer] = []
    for i, desc in enumerate(description["layers"]):
        assert desc["sources"] == [i], desc
        kind, w = desc["kind"], desc["width"]
        # FORMAT.md 2: a kind is read in a file of any 1.x version (writers state the version that introduced it).
        if kind in ("conv_gates", "conv_luts", "conv_binary", "or_pool"):
            spatial, names = _read_spatial(i, desc, tensors, width)
            layers.append(spatial)
            expected += names
        elif kind == "gates":
            assert set(desc) == {"kind", "width", "sources"}, desc
            inputs, ops = tensors[f"layers.{i}.inputs"], tensors[f"layers.{i}.ops"]
            assert (inputs.dtype, inputs.shape, ops.dtype, ops.shape) == ("U32", (w, 2), "U8", (w,))
            assert int(inputs.array().max(initial=0)) < width and int(ops.array().max(initial=0)) <= 15
            layers.append(GateLayer(inputs.array().copy(), ops.array().copy()))
            expected += [f"layers.{i}.inputs", f"layers.{i}.ops"]
        elif kind == "luts":
            assert set(desc) == {"kind", "width", "arity", "sources"}, desc
            n = desc["arity"]
            inputs, tables = tensors[f"layers.{i}.inputs"], tensors[f"layers.{i}.tables"]
            assert (inputs.dtype, inputs.shape) == ("U32", (w, n))
            assert (tables.dtype, tables.shape) == ("U8", (w, -(-(1 << n) // 8)))
            assert int(inputs.array().max(initial=0)) < width
            bits, clean = unpack_rows(tables.array(), 1 << n)
            assert clean, f"layers.{i}.tables: nonzero padding bits"
            layers.append(LutLayer(inputs.array().copy(), bits))
            expected += [f"layers.{i}.inputs", f"layers.{i}.tables"]
        elif kind == "binary":
            assert set(desc) == {"kind", "width", "sources"}, desc
            weights, thresholds = tensors[f"layers.{i}.weights"], tensors[f"layers.{i}.thresholds"]
            assert (weights.dtype, weights.shape) == ("U8", (w, -(-width // 8)))
            assert (thresholds.dtype, thresholds.shape) == ("I32", (w,))
            bits, clean = unpack_rows(weights.array(), width)
            assert clean, f"layers.{i}.weights: nonzero padding bits"
            layers.append(BinaryLayer(bits, thresholds.array().copy()))
            expected += [f"layers.{i}.weights", f"layers.{i}.thresholds"]
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
        width = w
    head = description["head"]
    assert set(head) == {"kind", "num_classes", "tau"} and head["kind"] == "group_sum", head
    assert width % head["num_classes"] == 0 and head["tau"] > 0
    assert sorted(tensors) == sorted(expected), (sorted(tensors), sorted(expected))
    return DecodedNetwork(
        encoder=encoder,
        layers=layers,
        num_classes=head["num_classes"],
        tau=float(head["tau"]),
        info=description.get("info"),
        description=description,
        metadata=metadata,
        tensor_order=list(tensors),
    )
