"""The network file format (docs/FORMAT.md), checked through files made by an independent writer.

Files are crafted with ``tests/_safetensors.py``, which does not use bitlogic, then read with ``bitlogic.load``. A valid
file must load and evaluate like the numpy reference; every corruption must raise ``bitlogic.FormatError`` (a
``ValueError``) whose message names the offending key, tensor or value.
"""

from __future__ import annotations

import copy
import json
import os
import re
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import _safetensors as st
import bitlogic
from bitlogic import reference
from bitlogic.spec import BinaryLayer, BitsEncoder, GateLayer, Layer, LutLayer, ThresholdEncoder

Parts = tuple[Any, list[Layer], int, float]


def small_parts() -> Parts:
    """A small network with every kind of part; its tables and weights have padding bits.

    Threshold encoder F=3, T=2 (6 bits) -> 5 gates -> 4 two-input tables (1 byte, 4 padding bits) -> 6 binary
    outputs over 4 inputs (1 byte, 4 padding bits) -> k = 2.
    """
    encoder = ThresholdEncoder(np.array([[0.0, 1.0], [-1.0, 0.5], [2.0, 3.0]], dtype=np.float32), "feature_major")
    gates = GateLayer(inputs=[[0, 1], [2, 3], [4, 5], [5, 0], [3, 3]], ops=[1, 6, 7, 14, 3])
    luts = LutLayer(inputs=[[0, 1], [2, 3], [4, 0], [1, 4]], tables=[[0, 1, 1, 0], [1, 0, 0, 1], [0, 0, 0, 1], [1, 1, 1, 0]])
    binary = BinaryLayer(
        weights=[[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0], [1, 0, 0, 1], [1, 1, 0, 0]],
        thresholds=[2, 0, 3, 5, 1, 4],
    )
    return encoder, [gates, luts, binary], 2, 2.5


def sample_features(n: int = 200) -> np.ndarray:
    return np.random.default_rng(3).normal(0.5, 2.0, size=(n, 3)).astype(np.float32)


class FileParts:
    """The three pieces of a network file, each editable before assembling: description, tensors, metadata."""

    def __init__(self, parts: Parts | None = None) -> None:
        encoder, layers, k, tau = parts if parts is not None else small_parts()
        self.description: dict[str, Any] = st.network_description(encoder, layers, k, tau)
        self.tensors: dict[str, st.Tensor] = st.network_tensors(encoder, layers)
        self.version = "1.0"
        self.network_text: str | None = None  # when set, used verbatim instead of the description
        self.metadata_edit: Callable[[dict[str, str]], None] | None = None

    def bytes(self) -> bytes:
        """The file; of a version 1.1 or later, with the digest of its data (before ``metadata_edit``)."""
        text = self.network_text if self.network_text is not None else self.description
        metadata = st.network_metadata(text, self.version)
        if st.has_digest(self.version):
            metadata[st.DIGEST_KEY] = st.digest(st.split(st.write(self.tensors, None))[1])
        if self.metadata_edit is not None:
            self.metadata_edit(metadata)
        return st.write(self.tensors, metadata)

    def tensor(self, name: str) -> np.ndarray:
        return self.tensors[name].array().copy()

    def set(self, name: str, dtype: str, array: Any) -> None:
        self.tensors[name] = st.Tensor.of(dtype, array)


def write_file(tmp_path: Path, data: bytes, name: str = "net.bitlogic") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def load_bytes(tmp_path: Path, data: bytes) -> bitlogic.Network:
    return bitlogic.load(write_file(tmp_path, data))


def format_error(tmp_path: Path, data: bytes, *names: str) -> str:
    """Loads ``data`` expecting a FormatError; each of ``names`` is an alternative set of words the message names.

    A name ``"a|b"`` is satisfied when the message contains ``a`` or ``b`` (case-insensitive).
    """
    with pytest.raises(bitlogic.FormatError) as info:
        load_bytes(tmp_path, data)
    error = info.value
    assert isinstance(error, ValueError)
    assert isinstance(error, bitlogic.BitlogicError)
    message = str(error)
    assert message, "a format error must say what is wrong"
    for name in names:
        options = name.split("|")
        assert any(o.lower() in message.lower() for o in options), f"{options} not named in: {message!r}"
    return message


# -- valid files ------------------------------------------------------------------------------------------------------


def test_independently_written_file_loads_and_matches_reference(tmp_path: Path) -> None:
    encoder, layers, k, tau = small_parts()
    net = load_bytes(tmp_path, st.network_bytes(encoder, layers, k, tau))
    x = sample_features()
    expected = reference.scores(encoder, layers, k, x)
    assert expected.min() != expected.max(), "the sample should exercise more than one score"
    np.testing.assert_array_equal(net.scores(x), expected)
    np.testing.assert_array_equal(net.predict(x), reference.predict(encoder, layers, k, x))
    assert net.num_classes == k
    assert net.tau == tau
    assert net.num_inputs == 3
    assert net.num_input_bits == 6


def test_loaded_parts_equal_the_written_arrays(tmp_path: Path) -> None:
    encoder, layers, k, tau = small_parts()
    net = load_bytes(tmp_path, st.network_bytes(encoder, layers, k, tau))
    assert isinstance(net.encoder, ThresholdEncoder)
    np.testing.assert_array_equal(net.encoder.thresholds, encoder.thresholds)
    assert net.encoder.bit_order == "feature_major"
    loaded = net.layers
    assert [type(layer) for layer in loaded] == [GateLayer, LutLayer, BinaryLayer]
    for mine, theirs in zip(layers, loaded):
        for field in ("inputs", "ops", "tables", "weights", "thresholds"):
            if hasattr(mine, field):
                np.testing.assert_array_equal(getattr(theirs, field), getattr(mine, field), err_msg=field)


def test_bits_encoder_file_with_no_layers(tmp_path: Path) -> None:
    # The head reads the encoder's group directly when there are no layers.
    net = load_bytes(tmp_path, st.network_bytes(BitsEncoder(6), [], 3, 1.0))
    x = np.array([[1, 0, 1, 1, 0, 1]], dtype=bool)
    assert net.scores(x).tolist() == [[1, 2, 1]]
    assert net.stats()["depth"] == 0


def test_info_is_kept(tmp_path: Path) -> None:
    encoder, layers, k, tau = small_parts()
    net = load_bytes(tmp_path, st.network_bytes(encoder, layers, k, tau, info={"producer": "tests", "note": "é"}))
    assert net.info == {"producer": "tests", "note": "é"}


def test_version_1_0_and_1_1_files_load_alike(tmp_path: Path) -> None:
    encoder, layers, k, tau = small_parts()
    old = load_bytes(tmp_path, st.network_bytes(encoder, layers, k, tau, version="1.0"))
    new = load_bytes(tmp_path, st.network_bytes(encoder, layers, k, tau, version="1.1"))
    assert old == new == bitlogic.Network.from_arrays(encoder, layers, k, tau=tau)


def test_newer_minor_version_is_read(tmp_path: Path) -> None:
    parts = FileParts()
    parts.version = "1.7"
    net = load_bytes(tmp_path, parts.bytes())
    encoder, layers, k, _ = small_parts()
    np.testing.assert_array_equal(net.scores(sample_features()), reference.scores(encoder, layers, k, sample_features()))


def test_integer_tau_is_a_number(tmp_path: Path) -> None:
    parts = FileParts()
    parts.description["head"]["tau"] = 3
    assert load_bytes(tmp_path, parts.bytes()).tau == 3.0


def test_infinite_thresholds_are_allowed(tmp_path: Path) -> None:
    parts = FileParts()
    thresholds = parts.tensor("encoder.thresholds")
    thresholds[0, 0] = -np.inf
    thresholds[2, 1] = np.inf
    parts.set("encoder.thresholds", "F32", thresholds)
    net = load_bytes(tmp_path, parts.bytes())
    encoder, layers, k, _ = small_parts()
    x = sample_features()
    np.testing.assert_array_equal(net.scores(x), reference.scores(ThresholdEncoder(thresholds), layers, k, x))


def test_tensor_order_in_the_buffer_does_not_matter(tmp_path: Path) -> None:
    # Readers locate tensors by name and offsets (section 1); only writers are asked to use section 3's order.
    parts = FileParts()
    parts.tensors = dict(reversed(list(parts.tensors.items())))
    net = load_bytes(tmp_path, parts.bytes())
    encoder, layers, k, _ = small_parts()
    np.testing.assert_array_equal(net.scores(sample_features()), reference.scores(encoder, layers, k, sample_features()))


def test_header_key_order_does_not_matter(tmp_path: Path) -> None:
    data = FileParts().bytes()
    header, buffer = st.split(data)
    reordered = dict(reversed(list(header.items())))
    net = load_bytes(tmp_path, st.assemble(reordered, buffer))
    assert net.num_classes == 2


@pytest.mark.parametrize("arity", range(1, 9))
def test_lut_file_of_every_arity(tmp_path: Path, arity: int) -> None:
    rng = np.random.default_rng(arity)
    layers: list[Layer] = [
        LutLayer(inputs=rng.integers(0, 11, size=(6, arity)), tables=rng.integers(0, 2, size=(6, 1 << arity)))
    ]
    net = load_bytes(tmp_path, st.network_bytes(BitsEncoder(11), layers, 3))
    x = rng.integers(0, 2, size=(100, 11)).astype(bool)
    np.testing.assert_array_equal(net.scores(x), reference.scores(BitsEncoder(11), layers, 3, x))


# -- files bitlogic writes follow the specification -------------------------------------------------------------------


def test_engine_file_decodes_independently(tmp_path: Path) -> None:
    encoder, layers, k, tau = small_parts()
    net = bitlogic.Network.from_arrays(encoder, layers, k, tau=tau)
    path = tmp_path / "out.bitlogic"
    net.save(path)
    decoded = st.read_network(path.read_bytes())
    assert decoded.metadata["format"] == "bitlogic"
    # The writer writes the current version, 1.2, with the digest of the data (checked by read_network).
    assert decoded.metadata["format_version"] == "1.2" == bitlogic._native.FORMAT_VERSION
    assert decoded.metadata[st.DIGEST_KEY] == st.digest(st.split(path.read_bytes())[1])
    assert decoded.num_classes == k and decoded.tau == tau
    x = sample_features()
    np.testing.assert_array_equal(
        reference.scores(decoded.encoder, decoded.layers, decoded.num_classes, x), reference.scores(encoder, layers, k, x)
    )
    for mine, theirs in zip(layers, decoded.layers):
        for field in ("inputs", "ops", "tables", "weights", "thresholds"):
            if hasattr(mine, field):
                np.testing.assert_array_equal(getattr(theirs, field), getattr(mine, field), err_msg=field)
    # The same bytes load back in bitlogic as an equal network.
    assert bitlogic.load(path) == net


def test_engine_writes_compact_json(tmp_path: Path) -> None:
    encoder, layers, k, tau = small_parts()
    path = tmp_path / "out.bitlogic"
    bitlogic.Network.from_arrays(encoder, layers, k, tau=tau).save(path)
    header, _ = st.split(path.read_bytes())
    assert st.is_compact_json(header["__metadata__"]["network"])


@pytest.mark.parametrize("order", ["section_3", "reversed", "by_name_descending"])
def test_tensors_may_be_stored_in_any_order(order: str) -> None:
    # FORMAT.md 5: readers find tensors by name; the order in the data buffer is free.
    encoder, layers, k, tau = small_parts()
    tensors = st.network_tensors(encoder, layers)
    names = list(tensors)
    if order == "reversed":
        names.reverse()
    elif order == "by_name_descending":
        names.sort(reverse=True)
    description = st.network_description(encoder, layers, k, tau)
    data = st.write({name: tensors[name] for name in names}, st.network_metadata(description))
    loaded = bitlogic.Network.from_bytes(data)
    assert loaded == bitlogic.Network.from_arrays(encoder, layers, k, tau=tau)


def test_engine_output_is_read_by_the_independent_reader(tmp_path: Path) -> None:
    encoder, layers, k, tau = small_parts()
    path = tmp_path / "out.bitlogic"
    bitlogic.Network.from_arrays(encoder, layers, k, tau=tau).save(path)
    decoded = st.read_network(path.read_bytes())
    assert sorted(decoded.tensor_order) == sorted(st.network_tensors(encoder, layers))
    assert decoded.num_classes == k and decoded.tau == tau


def test_stats_bytes_is_the_data_buffer_size(tmp_path: Path) -> None:
    encoder, layers, k, tau = small_parts()
    net = bitlogic.Network.from_arrays(encoder, layers, k, tau=tau)
    path = tmp_path / "out.bitlogic"
    net.save(path)
    _, buffer = st.split(path.read_bytes())
    assert net.stats()["bytes"] == len(buffer)


# -- saving -----------------------------------------------------------------------------------------------------------


def test_save_over_an_existing_file_is_atomic_and_clean(tmp_path: Path) -> None:
    encoder, layers, k, tau = small_parts()
    first = bitlogic.Network.from_arrays(encoder, layers, k, tau=tau)
    second = bitlogic.random_network(9, [12, 6], 3, kind="gates", seed=1)
    path = tmp_path / "model.bitlogic"
    first.save(path)
    second.save(path)  # replaces the first
    assert os.listdir(tmp_path) == ["model.bitlogic"], "no temporary files may be left behind"
    loaded = bitlogic.load(path)
    assert loaded == second
    x = np.random.default_rng(0).integers(0, 2, size=(50, 9)).astype(bool)
    np.testing.assert_array_equal(loaded.scores(x), second.scores(x))
    first.save(str(path))  # str paths too
    assert os.listdir(tmp_path) == ["model.bitlogic"]
    assert bitlogic.load(str(path)) == first


def test_save_replaces_a_file_that_is_not_a_network(tmp_path: Path) -> None:
    # Atomic replacement renames a new file over the old one; the directory must hold exactly the target after.
    net = bitlogic.random_network(8, [8], 2, seed=3)
    path = tmp_path / "model.bitlogic"
    path.write_bytes(b"not a network")
    net.save(path)
    assert sorted(os.listdir(tmp_path)) == ["model.bitlogic"]
    assert bitlogic.load(path) == net


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        bitlogic.load(tmp_path / "absent.bitlogic")
    with pytest.raises(OSError):
        bitlogic.load(str(tmp_path / "absent.bitlogic"))


# -- container corruption ---------------------------------------------------------------------------------------------


def test_every_truncation_is_a_format_error(tmp_path: Path) -> None:
    # Run in a child process, so that a crash or a hang becomes a failure of this test, not of the whole run.
    data = FileParts().bytes()
    source = tmp_path / "full.bitlogic"
    source.write_bytes(data)
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(bitlogic.__file__).parent.parent)!r})
        import bitlogic
        data = open({str(source)!r}, "rb").read()
        path = {str(tmp_path / "cut.bitlogic")!r}
        bad = []
        for n in range(len(data)):
            with open(path, "wb") as f:
                f.write(data[:n])
            try:
                bitlogic.load(path)
                bad.append((n, "loaded"))
            except bitlogic.FormatError as e:
                if not str(e):
                    bad.append((n, "empty message"))
            except BaseException as e:
                bad.append((n, type(e).__name__ + ": " + str(e)))
        print("BAD", bad[:5], len(bad))
        sys.exit(1 if bad else 0)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    # The full file itself loads.
    assert load_bytes(tmp_path, data).num_classes == 2


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\x00" * 8,  # header length 0: an empty header is not JSON
        b"\xff" * 64,
        bytes(range(256)),
        b"PK\x03\x04" + b"\x00" * 100,
        struct.pack("<Q", 2) + b"{}",  # valid container, no metadata
        struct.pack("<Q", 2) + b"[]",
        struct.pack("<Q", 4) + b"null",
    ],
    ids=["empty", "one-byte", "zero-header", "ff", "range", "zip", "empty-object", "array", "null"],
)
def test_garbage_bytes(tmp_path: Path, data: bytes) -> None:
    format_error(tmp_path, data)


def test_random_garbage_never_loads(tmp_path: Path) -> None:
    rng = np.random.default_rng(99)
    for size in [1, 7, 8, 9, 16, 100, 1000]:
        format_error(tmp_path, rng.integers(0, 256, size=size, dtype=np.uint8).tobytes())


def test_header_length_larger_than_file(tmp_path: Path) -> None:
    data = FileParts().bytes()
    (length,) = struct.unpack("<Q", data[:8])
    for bad in [len(data), len(data) - 7, 2**63, 2**64 - 1]:
        format_error(tmp_path, struct.pack("<Q", bad) + data[8:])
    assert length < len(data)


def test_bad_json_header(tmp_path: Path) -> None:
    _, buffer = st.split(FileParts().bytes())
    for text in [b"{", b'{"a":}', b"\xff\xfe{}", b"{'__metadata__': {}}", b'{"__metadata__": NaN}']:
        format_error(tmp_path, st.assemble({}, buffer, header_bytes=text))


def test_trailing_bytes_after_the_data(tmp_path: Path) -> None:
    # The buffer must be exactly covered by the tensors.
    format_error(tmp_path, FileParts().bytes() + b"\x00")


def _edit_header(data: bytes, edit: Callable[[dict[str, Any]], None]) -> bytes:
    header, buffer = st.split(data)
    header = copy.deepcopy(header)
    edit(header)
    return st.assemble(header, buffer)


def test_data_offsets_gap(tmp_path: Path) -> None:
    def edit(header: dict[str, Any]) -> None:
        entry = header["layers.0.ops"]
        entry["data_offsets"] = [entry["data_offsets"][0] + 1, entry["data_offsets"][1] + 1]

    format_error(tmp_path, _edit_header(FileParts().bytes(), edit))


def test_data_offsets_overlap(tmp_path: Path) -> None:
    def edit(header: dict[str, Any]) -> None:
        # layers.2.thresholds (6 x I32 = 24 bytes) is pointed into layers.0.inputs (40 bytes): an overlap, and a gap
        # where its own bytes were.
        begin = header["layers.0.inputs"]["data_offsets"][0]
        header["layers.2.thresholds"]["data_offsets"] = [begin, begin + 24]

    format_error(tmp_path, _edit_header(FileParts().bytes(), edit))


def test_data_offsets_past_the_buffer_and_reversed(tmp_path: Path) -> None:
    data = FileParts().bytes()
    _, buffer = st.split(data)

    def past(header: dict[str, Any]) -> None:
        header["layers.0.ops"]["data_offsets"] = [len(buffer), len(buffer) + 5]

    def reversed_(header: dict[str, Any]) -> None:
        begin, end = header["layers.0.ops"]["data_offsets"]
        header["layers.0.ops"]["data_offsets"] = [end, begin]

    def huge(header: dict[str, Any]) -> None:
        header["layers.0.ops"]["data_offsets"] = [2**64 - 5, 2**64 - 1]

    for edit in (past, reversed_, huge):
        format_error(tmp_path, _edit_header(data, edit))


def test_shape_and_offsets_disagree(tmp_path: Path) -> None:
    def edit(header: dict[str, Any]) -> None:
        header["layers.0.ops"]["shape"] = [4]  # five bytes of data

    format_error(tmp_path, _edit_header(FileParts().bytes(), edit), "layers.0.ops")


def test_unknown_safetensors_dtype(tmp_path: Path) -> None:
    def edit(header: dict[str, Any]) -> None:
        header["layers.0.ops"]["dtype"] = "Q8"

    format_error(tmp_path, _edit_header(FileParts().bytes(), edit))


def test_metadata_value_not_a_string(tmp_path: Path) -> None:
    def edit(header: dict[str, Any]) -> None:
        header["__metadata__"]["network"] = json.loads(header["__metadata__"]["network"])

    format_error(tmp_path, _edit_header(FileParts().bytes(), edit), "network|metadata")


def test_huge_declared_sizes_do_not_allocate(tmp_path: Path) -> None:
    # A description claiming a 2^32 - 1 wide layer and a header claiming a matching shape without the data must be
    # rejected from the sizes alone (FORMAT.md 4: no allocation in proportion to unchecked numbers).
    parts = FileParts(
        (BitsEncoder(4), [GateLayer(inputs=[[0, 1], [2, 3]], ops=[1, 6])], 2, 1.0)
    )
    parts.description["layers"][0]["width"] = 2**32 - 1
    format_error(tmp_path, parts.bytes(), "layers.0|width")

    data = parts.bytes()

    def edit(header: dict[str, Any]) -> None:
        header["layers.0.inputs"]["shape"] = [2**32 - 1, 2]
        header["layers.0.ops"]["shape"] = [2**32 - 1]

    format_error(tmp_path, _edit_header(data, edit))

    # A legal network that is huge only in name: 2^31 - 1 input bits, no layers, one class. Loading it must not
    # allocate per input bit (the process would run out of memory); its sizes come back as written. Its compiled
    # form would exceed the engine's node limit, which is said, again without allocating; stats() compiles nothing
    # and counts the parts as written.
    big = FileParts((BitsEncoder(2**31 - 1), [], 1, 1.0))
    net = load_bytes(tmp_path, big.bytes())
    assert net.num_inputs == 2**31 - 1
    assert "2147483647 inputs" in repr(net)
    with pytest.raises(bitlogic.InputError, match="too large to evaluate"):
        net.prepare()
    stats = net.stats()
    assert (stats["num_input_bits"], stats["depth"], stats["bytes"]) == (2**31 - 1, 0, 0)


# -- metadata and versions --------------------------------------------------------------------------------------------


def test_missing_metadata(tmp_path: Path) -> None:
    parts = FileParts()
    data = st.write(parts.tensors, None)
    format_error(tmp_path, data, "metadata")


@pytest.mark.parametrize("key", ["format", "format_version", "network"])
def test_missing_metadata_key(tmp_path: Path, key: str) -> None:
    parts = FileParts()
    parts.metadata_edit = lambda m: m.pop(key)
    format_error(tmp_path, parts.bytes(), key)


def test_extra_metadata_key(tmp_path: Path) -> None:
    parts = FileParts()
    parts.metadata_edit = lambda m: m.update(author="someone")
    format_error(tmp_path, parts.bytes(), "author")


@pytest.mark.parametrize("name", ["safetensors", "Bitlogic", "", "bitlogic "])
def test_wrong_format_name(tmp_path: Path, name: str) -> None:
    parts = FileParts()
    parts.metadata_edit = lambda m: m.update(format=name)
    format_error(tmp_path, parts.bytes(), "format")


def test_major_version_2_is_rejected_naming_both_versions(tmp_path: Path) -> None:
    parts = FileParts()
    parts.version = "2.0"
    message = format_error(tmp_path, parts.bytes(), "2.0")
    assert re.search(r"(?<![\d.])1(\.\d+|\.x)?(?![\d.])", message.replace("2.0", "")), message


@pytest.mark.parametrize("version", ["0.9", "3.1"])
def test_other_majors_are_rejected(tmp_path: Path, version: str) -> None:
    parts = FileParts()
    parts.version = version
    format_error(tmp_path, parts.bytes(), version)


@pytest.mark.parametrize("version", ["1.99999999999999999999", "1.4294967296", "99999999999.0", "4294967296.1"])
def test_versions_no_reader_knows_name_both_versions(tmp_path: Path, version: str) -> None:
    # Of the form MAJOR.MINOR, but with a number past 2^32 - 1, which no version has (FORMAT.md 2).
    parts = FileParts()
    parts.version = version
    message = format_error(tmp_path, parts.bytes(), version)
    assert bitlogic._native.FORMAT_VERSION in message.replace(version, ""), message


@pytest.mark.parametrize(
    "version", ["1", "1.", ".0", "1.0.0", "one.zero", "1.a", "", "-1.0", "1.-1", "01.0", "1.01", "1.0 ", "1.١"]
)
def test_malformed_version(tmp_path: Path, version: str) -> None:
    parts = FileParts()
    parts.version = version
    format_error(tmp_path, parts.bytes(), "version")


def test_newer_minor_with_unknown_top_level_key_names_the_key(tmp_path: Path) -> None:
    parts = FileParts()
    parts.version = "1.7"
    parts.description["skip_connections"] = [[0, 2]]
    format_error(tmp_path, parts.bytes(), "skip_connections")


def test_newer_minor_with_unknown_layer_key_names_the_key(tmp_path: Path) -> None:
    parts = FileParts()
    parts.version = "1.7"
    parts.description["layers"][1]["dilation"] = 2
    format_error(tmp_path, parts.bytes(), "dilation")


def test_newer_minor_with_unknown_encoder_kind_names_the_kind(tmp_path: Path) -> None:
    parts = FileParts()
    parts.version = "1.7"
    parts.description["encoder"] = {"kind": "one_hot", "num_inputs": 3}
    format_error(tmp_path, parts.bytes(), "one_hot")


@pytest.mark.parametrize("version", ["1.0", "1.7"])
def test_unknown_layer_kind_names_the_kind(tmp_path: Path, version: str) -> None:
    parts = FileParts()
    parts.version = version
    parts.description["layers"][0]["kind"] = "convolution"
    format_error(tmp_path, parts.bytes(), "convolution")


def test_unknown_head_kind_names_the_kind(tmp_path: Path) -> None:
    parts = FileParts()
    parts.description["head"]["kind"] = "softmax"
    format_error(tmp_path, parts.bytes(), "softmax")


# -- the digest of the data (format 1.1) ------------------------------------------------------------------------------


def _flip(data: bytes, position: int) -> bytes:
    out = bytearray(data)
    out[position] ^= 0x10
    return bytes(out)


def test_a_flipped_data_byte_names_both_digests(tmp_path: Path) -> None:
    # FORMAT.md 2: a damaged file fails to load, naming what it records and what its data hashes to, instead of
    # loading as a different network.
    encoder, layers, k, tau = small_parts()
    written_here = st.network_bytes(encoder, layers, k, tau, version="1.1")
    written_by_the_engine = bitlogic.Network.from_arrays(encoder, layers, k, tau=tau).to_bytes()
    for data in (written_here, written_by_the_engine):
        header, buffer = st.split(data)
        recorded = header["__metadata__"][st.DIGEST_KEY]
        assert recorded == st.digest(buffer)
        start = len(data) - len(buffer)
        for position in range(start, len(data), 7):
            bad = _flip(data, position)
            found = st.digest(bad[start:])
            format_error(tmp_path, bad, st.DIGEST_KEY, recorded, found)


def test_a_flipped_data_byte_of_a_1_0_file_may_load_differently(tmp_path: Path) -> None:
    # Why 1.1 has the digest: the same damage in a 1.0 file (a flipped bit of a threshold) loads as another network.
    encoder, layers, k, tau = small_parts()
    data = st.network_bytes(encoder, layers, k, tau, version="1.0")
    _, buffer = st.split(data)
    position = len(data) - len(buffer) + st.split(data)[0]["encoder.thresholds"]["data_offsets"][0] + 3
    damaged = load_bytes(tmp_path, _flip(data, position))
    assert damaged != bitlogic.Network.from_arrays(encoder, layers, k, tau=tau)


def test_missing_digest_in_a_1_1_file(tmp_path: Path) -> None:
    parts = FileParts()
    parts.version = "1.1"
    parts.metadata_edit = lambda m: m.pop(st.DIGEST_KEY)
    format_error(tmp_path, parts.bytes(), st.DIGEST_KEY, "missing")


def test_digest_in_a_1_0_file(tmp_path: Path) -> None:
    parts = FileParts()
    parts.metadata_edit = lambda m: m.update({st.DIGEST_KEY: st.digest(st.split(FileParts().bytes())[1])})
    format_error(tmp_path, parts.bytes(), st.DIGEST_KEY, "1.0")


@pytest.mark.parametrize("bad", ["", "0" * 63, "0" * 65, "A" * 64, "g" * 64, " " + "0" * 63, "sha256:" + "0" * 57])
def test_malformed_digest(tmp_path: Path, bad: str) -> None:
    parts = FileParts()
    parts.version = "1.1"
    parts.metadata_edit = lambda m: m.update({st.DIGEST_KEY: bad})
    format_error(tmp_path, parts.bytes(), st.DIGEST_KEY, "hexadecimal")


def test_the_independent_reader_checks_the_digest() -> None:
    data = st.network_bytes(*small_parts(), version="1.1")
    st.read_network(data)
    with pytest.raises(ValueError, match=st.DIGEST_KEY):
        st.read_network(_flip(data, len(data) - 1))


# -- repeated keys and tensor entries (FORMAT.md 1) -------------------------------------------------------------------


def _insert_after(text: str, after: str, insert: str) -> str:
    at = text.index(after) + len(after)
    return text[:at] + insert + text[at:]


def _with_header_text(data: bytes, edit: Callable[[str], str]) -> bytes:
    (length,) = struct.unpack("<Q", data[:8])
    text = edit(data[8 : 8 + length].decode("utf-8"))
    return st.assemble({}, data[8 + length :], header_bytes=text.encode("utf-8"))


@pytest.mark.parametrize(
    "after,insert,names",
    [
        ("{", '"__metadata__":{},', ["__metadata__", "twice"]),
        ('"layers.0.ops":{', '"dtype":"U8",', ["dtype", "layers.0.ops", "twice"]),
        ('"__metadata__":{', '"format_version":"2.0",', ["format_version", "twice"]),
        ('"__metadata__":{', '"format":"bitlogic",', ["format", "twice"]),
    ],
    ids=["metadata-object", "entry-key", "format_version", "format"],
)
def test_repeated_keys_in_the_header_are_rejected(tmp_path: Path, after: str, insert: str, names: list[str]) -> None:
    # JSON parsers keep one of the values (usually the last); the format rejects the file instead.
    data = _with_header_text(FileParts().bytes(), lambda t: _insert_after(t, after, insert))
    format_error(tmp_path, data, *names)
    with pytest.raises(st.ContainerError):
        st.read(data)


def test_a_repeated_tensor_entry_is_rejected(tmp_path: Path) -> None:
    data = FileParts().bytes()
    entry = json.dumps(st.split(data)[0]["layers.0.ops"], separators=(",", ":"))
    format_error(tmp_path, _with_header_text(data, lambda t: _insert_after(t, "{", f'"layers.0.ops":{entry},')),
                 "layers.0.ops", "twice")


@pytest.mark.parametrize(
    "after,insert,names",
    [
        ("{", '"head":{"kind":"group_sum","num_classes":2,"tau":1.0},', ["head", "twice"]),
        ('"encoder":{', '"bit_order":"threshold_major",', ["bit_order", "twice"]),
        ('"layers":[{', '"width":5,', ["width", "twice"]),
        ('"info":{', '"producer":"other",', ["producer", "info", "twice"]),
    ],
    ids=["top", "encoder", "layer", "info"],
)
def test_repeated_keys_in_the_description_are_rejected(
    tmp_path: Path, after: str, insert: str, names: list[str]
) -> None:
    parts = FileParts()
    parts.description["info"] = {"producer": "tests"}
    parts.network_text = _insert_after(json.dumps(parts.description, separators=(",", ":")), after, insert)
    format_error(tmp_path, parts.bytes(), *names)


@pytest.mark.parametrize("info", [None, [], "x", {"epochs": 3}, {"a": None}, {"a": {"b": "c"}}, {"a": ["b"]}])
def test_info_must_be_an_object_of_strings(tmp_path: Path, info: Any) -> None:
    parts = FileParts()
    parts.description["info"] = info
    format_error(tmp_path, parts.bytes(), "info")


def test_empty_info_is_absent_info(tmp_path: Path) -> None:
    parts = FileParts()
    parts.description["info"] = {}
    net = load_bytes(tmp_path, parts.bytes())
    assert net.info == {}
    assert net == load_bytes(tmp_path, FileParts().bytes())


@pytest.mark.parametrize("key", ["extra", "byteorder", "dtype ", ""])
def test_extra_key_in_a_tensor_entry_is_rejected(tmp_path: Path, key: str) -> None:
    def edit(header: dict[str, Any]) -> None:
        header["layers.1.tables"][key] = 1

    format_error(tmp_path, _edit_header(FileParts().bytes(), edit), "layers.1.tables", f"`{key}`")


# -- the description --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["{", "[]", '"network"', "null", "1", '{"encoder": NaN}'])
def test_network_not_a_json_object(tmp_path: Path, text: str) -> None:
    parts = FileParts()
    parts.network_text = text
    format_error(tmp_path, parts.bytes(), "network")


@pytest.mark.parametrize("key", ["encoder", "layers", "head"])
def test_missing_description_key(tmp_path: Path, key: str) -> None:
    parts = FileParts()
    del parts.description[key]
    format_error(tmp_path, parts.bytes(), key)


@pytest.mark.parametrize(
    "path,key",
    [
        (("encoder",), "num_features"),
        (("encoder",), "bit_order"),
        (("layers", 1), "arity"),
        (("layers", 0), "sources"),
        (("layers", 2), "width"),
        (("head",), "tau"),
        (("head",), "num_classes"),
    ],
)
def test_missing_nested_key(tmp_path: Path, path: tuple[Any, ...], key: str) -> None:
    parts = FileParts()
    target: Any = parts.description
    for step in path:
        target = target[step]
    del target[key]
    format_error(tmp_path, parts.bytes(), key)


def test_unknown_key_in_version_1_0(tmp_path: Path) -> None:
    parts = FileParts()
    parts.description["head"]["bias"] = 0
    format_error(tmp_path, parts.bytes(), "bias")


def _set(parts: FileParts, path: tuple[Any, ...], value: Any) -> None:
    target: Any = parts.description
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value


@pytest.mark.parametrize(
    "path,value,name",
    [
        (("layers", 0, "width"), 5.0, "width"),  # a fraction-style integer
        (("layers", 0, "width"), "5", "width"),
        (("layers", 0, "width"), 0, "width|output|layers.0"),
        (("layers", 0, "width"), -5, "width"),
        (("layers", 0, "width"), 2**32, "width"),
        (("layers", 0, "width"), True, "width"),
        (("layers", 1, "arity"), 0, "arity"),
        (("layers", 1, "arity"), 9, "arity"),
        (("encoder", "num_features"), 0, "num_features|feature|encoder.thresholds"),
        (("encoder", "thresholds_per_feature"), 2.5, "thresholds_per_feature"),
        (("encoder", "bit_order"), "column_major", "bit_order|column_major"),
        (("encoder", "bit_order"), 0, "bit_order"),
        (("head", "num_classes"), 0, "num_classes|class"),
        (("head", "num_classes"), -2, "num_classes|class"),
        (("head", "tau"), 0, "tau"),
        (("head", "tau"), 0.0, "tau"),
        (("head", "tau"), -1.5, "tau"),
        (("head", "tau"), "1.0", "tau"),
        (("head", "tau"), None, "tau"),
        (("layers", 0, "sources"), [], "sources"),
        (("layers", 1, "sources"), [0], "sources"),
        (("layers", 1, "sources"), [1, 1], "sources"),
        (("layers", 1, "sources"), 1, "sources"),
        (("layers",), {}, "layers"),
        (("encoder",), [], "encoder"),
    ],
    ids=lambda v: ".".join(map(str, v)) if isinstance(v, tuple) else repr(v),
)
def test_bad_description_values(tmp_path: Path, path: tuple[Any, ...], value: Any, name: str) -> None:
    parts = FileParts()
    _set(parts, path, value)
    format_error(tmp_path, parts.bytes(), name)


def _bits_file(layers: list[Layer], num_inputs: int = 4, num_classes: int = 1) -> FileParts:
    return FileParts((BitsEncoder(num_inputs), layers, num_classes, 1.0))


def test_zero_widths_are_rejected_even_with_matching_empty_tensors(tmp_path: Path) -> None:
    # FORMAT.md 3: "every width and count below is at least 1". The tensors are made to agree (empty), so the only
    # thing wrong is the zero itself.
    gates = _bits_file([])
    gates.description["layers"] = [{"kind": "gates", "width": 0, "sources": [0]}]
    gates.tensors = {"layers.0.inputs": st.Tensor.of("U32", np.zeros((0, 2))), "layers.0.ops": st.Tensor.of("U8", [])}
    format_error(tmp_path, gates.bytes(), "width|output")

    luts = _bits_file([])
    luts.description["layers"] = [{"kind": "luts", "width": 0, "arity": 2, "sources": [0]}]
    luts.tensors = {"layers.0.inputs": st.Tensor.of("U32", np.zeros((0, 2))),
                    "layers.0.tables": st.Tensor.of("U8", np.zeros((0, 1)))}
    format_error(tmp_path, luts.bytes(), "width|output")

    binary = _bits_file([])
    binary.description["layers"] = [{"kind": "binary", "width": 0, "sources": [0]}]
    binary.tensors = {"layers.0.weights": st.Tensor.of("U8", np.zeros((0, 1))),
                      "layers.0.thresholds": st.Tensor.of("I32", [])}
    format_error(tmp_path, binary.bytes(), "width|output")

    no_bits = _bits_file([])
    no_bits.description["encoder"]["num_inputs"] = 0
    format_error(tmp_path, no_bits.bytes(), "num_inputs|input")

    for f, t in [(0, 2), (2, 0)]:
        thresholds = FileParts((ThresholdEncoder(np.zeros((1, 1))), [], 1, 1.0))
        thresholds.description["encoder"].update(num_features=f, thresholds_per_feature=t)
        thresholds.tensors = {"encoder.thresholds": st.Tensor.of("F32", np.zeros((f, t)))}
        format_error(tmp_path, thresholds.bytes(), "num_features|thresholds_per_feature|feature")


@pytest.mark.parametrize("literal", ["5e0", "5.0", "5E0", "50e-1"])
def test_integer_with_exponent_or_fraction_is_rejected(tmp_path: Path, literal: str) -> None:
    parts = FileParts()
    text = json.dumps(parts.description, separators=(",", ":"))
    assert '"width":5,' in text
    parts.network_text = text.replace('"width":5,', f'"width":{literal},', 1)
    format_error(tmp_path, parts.bytes(), "width")


@pytest.mark.parametrize("literal", ["1e400", "-1e400"])
def test_non_finite_tau(tmp_path: Path, literal: str) -> None:
    parts = FileParts()
    text = json.dumps(parts.description, separators=(",", ":"))
    parts.network_text = text.replace('"tau":2.5', f'"tau":{literal}')
    format_error(tmp_path, parts.bytes())


def test_head_width_not_divisible(tmp_path: Path) -> None:
    parts = FileParts()
    parts.description["head"]["num_classes"] = 4  # last width is 6
    format_error(tmp_path, parts.bytes(), "num_classes|head|divisible")


def test_head_width_not_divisible_without_layers(tmp_path: Path) -> None:
    parts = FileParts((BitsEncoder(7), [], 1, 1.0))
    parts.description["head"]["num_classes"] = 2
    format_error(tmp_path, parts.bytes(), "num_classes|head|divisible")


def test_layer_width_disagreeing_with_its_tensors(tmp_path: Path) -> None:
    parts = FileParts()
    parts.description["layers"][0]["width"] = 4  # the tensors hold 5 gates
    format_error(tmp_path, parts.bytes(), "layers.0")


# -- tensors ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", [16, 17, 128, 255])
def test_op_code_above_15(tmp_path: Path, op: int) -> None:
    parts = FileParts()
    ops = parts.tensor("layers.0.ops")
    ops[3] = op
    parts.set("layers.0.ops", "U8", ops)
    format_error(tmp_path, parts.bytes(), "layers.0.ops|layer 0", "layers.0.ops|op code")


@pytest.mark.parametrize(
    "name,index,value",
    [
        ("layers.0.inputs", (4, 1), 6),  # input width 6 (encoder)
        ("layers.0.inputs", (0, 0), 2**32 - 1),
        ("layers.1.inputs", (2, 0), 5),  # input width 5 (gates)
        ("layers.1.inputs", (3, 1), 1000),
    ],
)
def test_wire_index_out_of_range(tmp_path: Path, name: str, index: tuple[int, int], value: int) -> None:
    parts = FileParts()
    inputs = parts.tensor(name)
    inputs[index] = value
    parts.set(name, "U32", inputs)
    layer = name.split(".")[1]
    # The message names the tensor, or the layer and the wire.
    format_error(tmp_path, parts.bytes(), f"{name}|layer {layer}", f"{name}|wire")


def test_wire_index_at_the_last_bit_is_fine(tmp_path: Path) -> None:
    parts = FileParts()
    inputs = parts.tensor("layers.0.inputs")
    inputs[0, 0] = 5
    parts.set("layers.0.inputs", "U32", inputs)
    load_bytes(tmp_path, parts.bytes())


@pytest.mark.parametrize(
    "name,dtype",
    [
        ("encoder.thresholds", "I32"),
        ("encoder.thresholds", "U32"),
        ("layers.0.inputs", "I32"),
        ("layers.0.inputs", "F32"),
        ("layers.0.ops", "U32"),
        ("layers.1.inputs", "I32"),
        ("layers.1.tables", "U32"),
        ("layers.2.weights", "I32"),
        ("layers.2.thresholds", "U32"),
        ("layers.2.thresholds", "F32"),
    ],
)
def test_wrong_dtype(tmp_path: Path, name: str, dtype: str) -> None:
    parts = FileParts()
    parts.set(name, dtype, parts.tensor(name).astype(st.DTYPES[dtype]))
    format_error(tmp_path, parts.bytes(), name)


@pytest.mark.parametrize(
    "name,shape_fn",
    [
        ("encoder.thresholds", lambda a: a.reshape(-1)),
        ("encoder.thresholds", lambda a: a.reshape(2, 3)),
        ("encoder.thresholds", lambda a: a[:, :1]),
        ("layers.0.inputs", lambda a: np.concatenate([a, a[:, :1]], axis=1)),
        ("layers.0.inputs", lambda a: a[:4]),
        ("layers.0.inputs", lambda a: a.reshape(-1)),
        ("layers.0.ops", lambda a: a.reshape(5, 1)),
        ("layers.0.ops", lambda a: a[:4]),
        ("layers.1.inputs", lambda a: a[:, :1]),
        ("layers.1.tables", lambda a: np.concatenate([a, a], axis=1)),
        ("layers.1.tables", lambda a: a.reshape(-1)),
        ("layers.2.weights", lambda a: np.concatenate([a, a], axis=1)),
        ("layers.2.weights", lambda a: a[:5]),
        ("layers.2.thresholds", lambda a: a.reshape(6, 1)),
        ("layers.2.thresholds", lambda a: np.concatenate([a, a])),
    ],
)
def test_wrong_shape(tmp_path: Path, name: str, shape_fn: Callable[[np.ndarray], np.ndarray]) -> None:
    parts = FileParts()
    tensor = parts.tensors[name]
    parts.set(name, tensor.dtype, shape_fn(tensor.array().copy()))
    format_error(tmp_path, parts.bytes(), name)


@pytest.mark.parametrize("name", ["layers.3.ops", "extra", "encoder.offsets", "layers.0.tables"])
def test_extra_tensor(tmp_path: Path, name: str) -> None:
    parts = FileParts()
    parts.tensors[name] = st.Tensor.of("U8", np.zeros(5, dtype=np.uint8))
    format_error(tmp_path, parts.bytes(), name)


def test_thresholds_tensor_in_a_bits_network_is_extra(tmp_path: Path) -> None:
    parts = FileParts((BitsEncoder(4), [GateLayer(inputs=[[0, 1], [2, 3]], ops=[1, 6])], 2, 1.0))
    parts.tensors = {"encoder.thresholds": st.Tensor.of("F32", np.zeros((4, 1))), **parts.tensors}
    format_error(tmp_path, parts.bytes(), "encoder.thresholds")


@pytest.mark.parametrize(
    "name", ["encoder.thresholds", "layers.0.inputs", "layers.0.ops", "layers.1.tables", "layers.2.weights",
             "layers.2.thresholds"]
)
def test_missing_tensor(tmp_path: Path, name: str) -> None:
    parts = FileParts()
    del parts.tensors[name]
    format_error(tmp_path, parts.bytes(), name)


@pytest.mark.parametrize("bit", range(4, 8))
def test_nonzero_padding_bits_in_two_input_tables(tmp_path: Path, bit: int) -> None:
    parts = FileParts()
    tables = parts.tensor("layers.1.tables")
    tables[2, 0] |= 1 << bit
    parts.set("layers.1.tables", "U8", tables)
    format_error(tmp_path, parts.bytes(), "layers.1.tables|layer 1", "layers.1.tables|table")


@pytest.mark.parametrize("bit", range(2, 8))
def test_nonzero_padding_bits_in_one_input_tables(tmp_path: Path, bit: int) -> None:
    layers: list[Layer] = [LutLayer(inputs=[[0], [1]], tables=[[0, 1], [1, 0]])]
    parts = FileParts((BitsEncoder(2), layers, 1, 1.0))
    load_bytes(tmp_path, parts.bytes())
    tables = parts.tensor("layers.0.tables")
    tables[1, 0] |= 1 << bit
    parts.set("layers.0.tables", "U8", tables)
    format_error(tmp_path, parts.bytes(), "layers.0.tables|layer 0", "layers.0.tables|table")


@pytest.mark.parametrize("bit", range(4, 8))
def test_nonzero_padding_bits_in_weights(tmp_path: Path, bit: int) -> None:
    parts = FileParts()
    weights = parts.tensor("layers.2.weights")
    weights[5, 0] |= 1 << bit
    parts.set("layers.2.weights", "U8", weights)
    format_error(tmp_path, parts.bytes(), "layers.2.weights|layer 2", "layers.2.weights|weight")


def test_nonzero_padding_in_the_last_byte_of_wide_weights(tmp_path: Path) -> None:
    # I = 13: two bytes per row, the last with 3 padding bits (13..15).
    rng = np.random.default_rng(1)
    layers: list[Layer] = [BinaryLayer(weights=rng.integers(0, 2, size=(4, 13)), thresholds=[1, 5, 7, 13])]
    parts = FileParts((BitsEncoder(13), layers, 2, 1.0))
    net = load_bytes(tmp_path, parts.bytes())
    x = rng.integers(0, 2, size=(64, 13)).astype(bool)
    np.testing.assert_array_equal(net.scores(x), reference.scores(BitsEncoder(13), layers, 2, x))
    weights = parts.tensor("layers.0.weights")
    weights[3, 1] |= 0x80
    parts.set("layers.0.weights", "U8", weights)
    format_error(tmp_path, parts.bytes(), "layers.0.weights|layer 0", "layers.0.weights|weight")


@pytest.mark.parametrize(
    "nan", [np.float32(np.nan), np.frombuffer(struct.pack("<I", 0xFFC00001), dtype="<f4")[0]], ids=["qnan", "payload"]
)
def test_nan_threshold(tmp_path: Path, nan: np.float32) -> None:
    parts = FileParts()
    thresholds = parts.tensor("encoder.thresholds")
    thresholds[1, 1] = nan
    parts.set("encoder.thresholds", "F32", thresholds)
    format_error(tmp_path, parts.bytes(), "encoder.thresholds|encoder thresholds", "nan")


def test_tensor_data_is_little_endian(tmp_path: Path) -> None:
    # Tensor data is little-endian (section 1): a threshold of 1.0 written here reads as 1.0, not as a denormal.
    layers: list[Layer] = []
    encoder = ThresholdEncoder(np.array([[1.0]], dtype=np.float32))
    net = load_bytes(tmp_path, st.network_bytes(encoder, layers, 1))
    np.testing.assert_array_equal(net.encoder.thresholds, [[1.0]])
    x = np.array([[0.5], [1.0], [1.5]], dtype=np.float32)
    assert net.scores(x)[:, 0].tolist() == [0, 0, 1]


# -- spatial layers (format 1.2) --------------------------------------------------------------------------------------


def spatial_parts() -> tuple[BitsEncoder, list[Layer], int]:
    from bitlogic.spec import ConvBinaryLayer, ConvGateLayer, ConvLutLayer, OrPoolLayer

    rng = np.random.default_rng(12)
    first = ConvGateLayer((2, 5, 4), np.stack([rng.integers(0, n, size=(3, 4)) for n in (2, 3, 3)], axis=-1),
                          rng.integers(0, 16, size=(3, 3)), padding=1)
    pool = OrPoolLayer(first.output_shape, kernel_size=(2, 1), stride=(1, 2))
    luts = ConvLutLayer(pool.output_shape, np.stack([rng.integers(0, n, size=(2, 3)) for n in (3, 2, 2)], axis=-1),
                        rng.integers(0, 2, size=(2, 8)), kernel_size=2, stride=(2, 1), padding=(1, 0))
    binary = ConvBinaryLayer(luts.output_shape, rng.integers(0, 2, size=(2, 2)), [0, -1], kernel_size=1,
                             pad_value=0)
    return BitsEncoder(40), [first, pool, luts, binary], 2


def test_spatial_file_written_independently_loads_and_decodes(tmp_path: Path) -> None:
    encoder, layers, k = spatial_parts()
    data = st.network_bytes(encoder, layers, k)
    net = load_bytes(tmp_path, data)
    assert net == bitlogic.Network.from_arrays(encoder, layers, k)
    x = np.random.default_rng(3).integers(0, 2, size=(130, 40)).astype(bool)
    np.testing.assert_array_equal(net.scores(x), reference.scores(encoder, layers, k, x))
    decoded = st.read_network(net.to_bytes())
    assert decoded.metadata["format_version"] == "1.2"
    assert [d["kind"] for d in decoded.description["layers"]] == ["conv_gates", "or_pool", "conv_luts", "conv_binary"]
    assert sorted(decoded.tensor_order) == ["layers.0.leaves", "layers.0.ops", "layers.2.leaves", "layers.2.tables",
                                            "layers.3.thresholds", "layers.3.weights"]  # or_pool has none


@pytest.mark.parametrize("layer,key,value,words", [
    (0, "width", 5, ["width", "5"]),
    (0, "dilation", [1, 1], ["dilation"]),
    (0, "padding", [1], ["padding"]),
    (0, "out_channels", 4, ["width"]),
    (0, "input_shape", [4, 5, 2], ["width"]),  # 40 bits still, but another output size
    (1, "padding", [0, 0], ["padding"]),
    (0, "depth", 3, ["leaves"]),
    (3, "pad_value", 2, ["pad_value"]),
    (2, "stride", [0, 1], ["stride"]),
])
def test_bad_spatial_descriptions_name_the_key(layer: int, key: str, value: Any, words: list[str]) -> None:
    encoder, layers, k = spatial_parts()
    description = st.network_description(encoder, layers, k)
    description["layers"][layer][key] = value
    data = st.write(st.network_tensors(encoder, layers), st.network_metadata(description, "1.2"), with_digest=True)
    with pytest.raises(bitlogic.FormatError) as info:
        bitlogic.Network.from_bytes(data)
    for word in words:
        assert any(w in str(info.value) for w in word.split("|")), (word, str(info.value))
