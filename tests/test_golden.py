"""The format frozen per version: the golden files of tests/golden/ and the JSON Schema of the description.

Every ``tests/golden/v{VERSION}/NAME.bitlogic`` must still load, evaluate its stored inputs to its stored scores (the
numpy reference's, checked when the file was made), decode with the independent reader of ``_safetensors.py``, and
re-save through today's writer into a file that loads as an equal network. The cargo suite reads the same files
(``rust/bitlogic/tests/golden.rs``).

The description of every golden file and of random networks validates against ``docs/format.schema.json``, checked
by the small validator below (it interprets only the keywords the schema uses and refuses any other, so a constraint
is never skipped silently), and by ``jsonschema`` as well where that package is installed.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import _safetensors as st
import bitlogic
from bitlogic import reference

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
SCHEMA = json.loads((ROOT / "docs" / "format.schema.json").read_text())
FILES = sorted(GOLDEN.glob("v*/*.bitlogic"))


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("golden_generate", GOLDEN / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def expected(path: Path) -> tuple[np.ndarray, np.ndarray]:
    metadata, tensors = st.read(path.with_name(path.name.replace(".bitlogic", ".expected.safetensors")).read_bytes())
    assert metadata is not None and metadata["case"] == path.stem
    assert set(tensors) == {"inputs", "scores"}
    return tensors["inputs"].array(), tensors["scores"].array()


def description_of(data: bytes) -> Any:
    header, _ = st.split(data)
    return json.loads(header["__metadata__"]["network"])


# -- golden files -----------------------------------------------------------------------------------------------------


def test_every_case_has_its_files() -> None:
    cases = _generator().CASES
    want = sorted(f"v{version}/{name}{ext}" for name, (version, _, _) in cases.items()
                  for ext in (".bitlogic", ".expected.safetensors"))
    have = sorted(str(p.relative_to(GOLDEN)) for p in GOLDEN.glob("v*/*") if p.is_file())
    assert have == want
    readme = (GOLDEN / "README.md").read_text()
    for name, (version, _, _) in cases.items():
        assert f"`v{version}/{name}`" in readme, f"README.md does not describe v{version}/{name}"
    assert {"1.0", "1.1", "1.2"} <= {version for version, _, _ in cases.values()}


def test_every_layer_kind_and_arity_is_covered() -> None:
    kinds: set[str] = set()
    orders: set[str] = set()
    for path in FILES:
        d = description_of(path.read_bytes())
        kinds.update(f"luts{layer['arity']}" if layer["kind"] == "luts" else layer["kind"] for layer in d["layers"])
        orders.add(d["encoder"].get("bit_order", "bits"))
    assert kinds == {"gates", "binary", *(f"luts{n}" for n in range(1, 9)), "conv_gates", "conv_luts", "conv_binary",
                     "or_pool"}
    assert orders == {"bits", "feature_major", "threshold_major"}


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(GOLDEN)) for p in FILES])
def test_golden_file(path: Path) -> None:
    data = path.read_bytes()
    net = bitlogic.load(path)
    x, scores = expected(path)
    assert scores.dtype == np.int32 and scores.shape == (x.shape[0], net.num_classes)
    if x.dtype == np.uint8 and isinstance(net.encoder, bitlogic.BitsEncoder):
        x = x.astype(bool)  # bits; a threshold network takes uint8 features as they are
    np.testing.assert_array_equal(net.scores(x), scores)
    np.testing.assert_array_equal(net.scores(x, optimize=False, threads=1), scores)
    np.testing.assert_array_equal(net.predict(x), np.argmax(scores, axis=1))

    # The file follows the specification as an independent reader knows it, and says its folder's version.
    metadata, _ = st.read(data)
    assert metadata is not None and f"v{metadata['format_version']}" == path.parent.name
    decoded = st.read_network(data)
    assert decoded.num_classes == net.num_classes and decoded.tau == net.tau and decoded.info == (net.info or None)
    np.testing.assert_array_equal(reference.scores(decoded.encoder, decoded.layers, decoded.num_classes, x), scores)

    # Today's writer keeps everything the file holds.
    again = bitlogic.Network.from_bytes(net.to_bytes())
    assert again == net
    assert again.info == net.info and again.tau == net.tau
    np.testing.assert_array_equal(again.scores(x), scores)


@pytest.mark.parametrize("path", [p for p in FILES if p.parent.name != "v1.0"],
                         ids=[str(p.relative_to(GOLDEN)) for p in FILES if p.parent.name != "v1.0"])
def test_damaged_golden_file_of_1_1_names_the_digests(path: Path) -> None:
    data = path.read_bytes()
    header, buffer = st.split(data)
    assert header["__metadata__"][st.DIGEST_KEY] == st.digest(buffer)
    damaged = bytearray(data)
    damaged[len(data) - len(buffer) // 2] ^= 0x01
    with pytest.raises(bitlogic.FormatError, match=st.DIGEST_KEY) as info:
        bitlogic.Network.from_bytes(bytes(damaged))
    assert header["__metadata__"][st.DIGEST_KEY] in str(info.value)
    assert st.digest(bytes(damaged[len(data) - len(buffer):])) in str(info.value)


# -- the JSON Schema --------------------------------------------------------------------------------------------------

_ANNOTATIONS = {"$schema", "$id", "$defs", "title", "description"}


class SchemaError(ValueError):
    pass


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and math.isfinite(value) and value.is_integer()
        )
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    return isinstance(value, kinds[name])


def validate(value: Any, schema: dict[str, Any], root: dict[str, Any] = SCHEMA, at: str = "$") -> None:
    """Raises SchemaError where ``value`` breaks ``schema`` (the subset of draft 2020-12 used by the schema file)."""

    def fail(why: str) -> None:
        raise SchemaError(f"{at}: {why}")

    for keyword, rule in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        if keyword == "$ref":
            assert rule.startswith("#/$defs/"), rule
            validate(value, root["$defs"][rule.removeprefix("#/$defs/")], root, at)
        elif keyword == "type":
            if not _is_type(value, rule):
                fail(f"expected {rule}, got {value!r}")
        elif keyword == "const":
            if value != rule or type(value) is not type(rule):
                fail(f"expected {rule!r}, got {value!r}")
        elif keyword == "enum":
            if value not in rule:
                fail(f"expected one of {rule}, got {value!r}")
        elif keyword in ("minimum", "maximum", "exclusiveMinimum"):
            if _is_type(value, "number") and not {
                "minimum": value >= rule, "maximum": value <= rule, "exclusiveMinimum": value > rule
            }[keyword]:
                fail(f"{value!r} breaks {keyword} {rule}")
        elif keyword in ("minItems", "maxItems"):
            if isinstance(value, list) and not (len(value) >= rule if keyword == "minItems" else len(value) <= rule):
                fail(f"{len(value)} items break {keyword} {rule}")
        elif keyword == "items":
            for i, item in enumerate(value if isinstance(value, list) else []):
                validate(item, rule, root, f"{at}[{i}]")
        elif keyword == "required":
            missing = [k for k in rule if isinstance(value, dict) and k not in value]
            if missing:
                fail(f"missing {missing}")
        elif keyword == "properties":
            for k, sub in rule.items():
                if isinstance(value, dict) and k in value:
                    validate(value[k], sub, root, f"{at}.{k}")
        elif keyword == "additionalProperties":
            extra = [k for k in (value if isinstance(value, dict) else {}) if k not in schema.get("properties", {})]
            for k in extra:
                if rule is False:
                    fail(f"unexpected key {k!r}")
                validate(value[k], rule, root, f"{at}.{k}")
        elif keyword == "oneOf":
            passed = 0
            for sub in rule:
                try:
                    validate(value, sub, root, at)
                    passed += 1
                except SchemaError:
                    pass
            if passed != 1:
                fail(f"matches {passed} of the {len(rule)} alternatives, expected exactly one")
        else:
            raise AssertionError(f"the test's validator does not implement the keyword {keyword!r}")


def check(description: Any) -> None:
    validate(description, SCHEMA)
    try:
        import jsonschema
    except ImportError:
        return
    jsonschema.Draft202012Validator(SCHEMA).validate(description)


def random_descriptions() -> list[Any]:
    nets = [bitlogic.random_network(12, [16, 8], 2, kind=kind, n=n, seed=n)  # type: ignore[arg-type]
            for kind, n in [("gates", 2), ("luts", 1), ("luts", 8), ("binary", 3)]]
    thresholds = bitlogic.ThresholdEncoder(np.array([[0.5, 1.0], [-np.inf, np.inf]], dtype=np.float32),
                                           "threshold_major")
    nets.append(bitlogic.Network.from_arrays(thresholds, [], 2, tau=0.5, info={"a": "b"}))
    return [description_of(net.to_bytes()) for net in nets]


def test_schema_is_draft_2020_12() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    try:
        import jsonschema
    except ImportError:
        return
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_descriptions_of_golden_files_validate() -> None:
    assert FILES
    for path in FILES:
        check(description_of(path.read_bytes()))


def test_descriptions_of_random_networks_validate() -> None:
    for description in random_descriptions():
        check(description)


_REMOVE = object()

# (what, path to the edited value, new value or _REMOVE): each breaks one rule of the schema.
EDITS: list[tuple[str, tuple[Any, ...], Any]] = [
    ("unknown top-level key", ("extra",), 1),
    ("missing head", ("head",), _REMOVE),
    ("width 0", ("layers", 0, "width"), 0),
    ("width 2^31", ("layers", 0, "width"), 2**31),
    ("width as text", ("layers", 0, "width"), "8"),
    ("width fractional", ("layers", 0, "width"), 8.5),
    ("arity 9", ("layers", 1, "arity"), 9),
    ("arity on gates", ("layers", 0, "arity"), 2),
    ("luts without arity", ("layers", 1, "arity"), _REMOVE),
    ("two sources", ("layers", 0, "sources"), [0, 1]),
    ("no sources", ("layers", 0, "sources"), []),
    ("unknown layer kind", ("layers", 0, "kind"), "conv"),
    ("unknown encoder kind", ("encoder", "kind"), "one_hot"),
    ("bad bit order", ("encoder", "bit_order"), "column_major"),
    ("bits key on thresholds", ("encoder", "num_inputs"), 3),
    ("tau 0", ("head", "tau"), 0),
    ("tau negative", ("head", "tau"), -1.5),
    ("tau as text", ("head", "tau"), "1"),
    ("unknown head kind", ("head", "kind"), "softmax"),
    ("kind true", ("head", "kind"), True),
    ("num_classes 0", ("head", "num_classes"), 0),
    ("info not an object", ("info",), ["x"]),
    ("info value a number", ("info",), {"epochs": 3}),
    ("info value null", ("info",), {"note": None}),
]


@pytest.mark.parametrize("path,value", [e[1:] for e in EDITS], ids=[e[0] for e in EDITS])
def test_schema_rejects_invalid_descriptions(path: tuple[Any, ...], value: Any) -> None:
    good = description_of((GOLDEN / "v1.0" / "mixed.bitlogic").read_bytes())
    assert [layer["kind"] for layer in good["layers"]][:2] == ["gates", "luts"]
    check(good)
    bad = copy.deepcopy(good)
    target = bad
    for step in path[:-1]:
        target = target[step]
    if value is _REMOVE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    with pytest.raises(SchemaError):
        validate(bad, SCHEMA)
    try:
        import jsonschema
    except ImportError:
        return
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SCHEMA).validate(bad)
