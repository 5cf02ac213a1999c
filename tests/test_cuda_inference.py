"""Bit-sliced inference on the GPU (cuda/packed_inference.cu through bitlogic.gpu.inference.GpuNetwork).

Every check is bit-exactness with the CPU engine (``Network.scores`` / ``Network.predict``, itself tested against
bitlogic.reference): scores int32 equal element for element, predictions equal, for the optimized program the GPU
runs by default and for the program as written (``optimize=False``). On the CPU the kernels run in the emulator
(tests/cuda_emulator.py) on CPU tensors, with small shapes, including sample counts around a word (1, 31, 32, 33)
and a grid capped so that every kernel strides; on a GPU (where one exists) the same checks run on the device with
more than 10 000 samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import bitlogic
import bitlogic.reference
from bitlogic import BinaryLayer, BitsEncoder, GateLayer, InputError, LutLayer, Network, ThresholdEncoder
from bitlogic.gpu import CudaError, inference
from bitlogic.gpu.inference import GpuNetwork
from bitlogic.nn import BinaryLinear, GroupSum, LogicLayer, LUTLayer, Sign, Thermometer
from bitlogic.spec import ConvBinaryLayer, ConvGateLayer, ConvLutLayer, OrPoolLayer
from cuda_emulator import Emulator, available

pytestmark = pytest.mark.skipif(not available(), reason="the CPU emulator of the CUDA kernels needs g++")
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")

SAMPLES = [1, 31, 32, 33, 100]
OPTIMIZE = [pytest.param(True, id="optimized"), pytest.param(False, id="as-written")]
FEATURE_DTYPES = [torch.float32, torch.float64, torch.uint8]
ORDERS = ["feature_major", "threshold_major"]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Emulator:
    return Emulator(Path(tmp_path_factory.mktemp("emulated-kernels")))


def _on(net: Network, emulator: Emulator | None, optimize: bool = True) -> GpuNetwork:
    """The network on the emulator (CPU tensors), or on the GPU when ``emulator`` is None."""
    if emulator is None:
        return GpuNetwork(net, "cuda", optimize=optimize)
    return GpuNetwork(net, "cpu", optimize=optimize, backend=emulator)


def _assert_exact(gnet: GpuNetwork, net: Network, x: torch.Tensor) -> None:
    expected = net.scores(x.cpu().numpy())
    got = gnet.scores(x)
    assert got.dtype == torch.int32 and got.device == x.device and tuple(got.shape) == expected.shape
    assert np.array_equal(got.cpu().numpy(), expected)
    labels = gnet.predict(x)
    assert labels.dtype == torch.int64 and labels.device == x.device
    assert np.array_equal(labels.cpu().numpy(), net.predict(x.cpu().numpy()))


def _random_bits(n: int, width: int, seed: int) -> torch.Tensor:
    return torch.rand(n, width, generator=torch.Generator().manual_seed(seed)) < 0.5


def _mixed_layers(width: int, seed: int) -> list[GateLayer | LutLayer | BinaryLayer]:
    """Gates, 3- and 5-input tables and binary layers in one stack; binary thresholds cover the constant cases
    (<= 0: always 1, above the input width: always 0)."""
    rng = np.random.default_rng(seed)
    layers: list[GateLayer | LutLayer | BinaryLayer] = []
    for kind, out in [("gates", 70), ("binary", 50), ("luts3", 64), ("binary", 40), ("luts5", 36), ("gates", 30)]:
        if kind == "gates":
            layers.append(GateLayer(rng.integers(0, width, (out, 2)), rng.integers(0, 16, out)))
        elif kind.startswith("luts"):
            n = int(kind[4:])
            layers.append(LutLayer(rng.integers(0, width, (out, n)), rng.integers(0, 2, (out, 1 << n))))
        else:
            layers.append(BinaryLayer(rng.integers(0, 2, (out, width)), rng.integers(-2, width + 3, out)))
        width = out
    return layers


def _thresholds(features: int, per_feature: int, dtype: torch.dtype, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == torch.uint8:
        # Whole numbers (a feature equal to one is not above it) and halves, and one below every value.
        values = rng.integers(0, 256, (features, per_feature)).astype(np.float32)
        values[rng.random(values.shape) < 0.3] += 0.5
        values[0, 0] = -1.0
    else:
        values = rng.uniform(-1, 1, (features, per_feature)).astype(np.float32)
        values[0, 0], values[-1, -1] = -np.inf, np.inf
    return values


def _features(n: int, thresholds: np.ndarray, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Features of ``dtype``, a share of them exactly on a threshold (where > and >= differ) and, in float64, a
    share a hair's breadth above or below one (where comparing in float32 would say "equal")."""
    g = torch.Generator().manual_seed(seed)
    features = thresholds.shape[0]
    finite = torch.from_numpy(np.where(np.isfinite(thresholds), thresholds, 0.0).astype(np.float32))
    if dtype == torch.uint8:
        x = torch.randint(0, 256, (n, features), generator=g).to(torch.uint8)
        on = torch.rand(n, features, generator=g) < 0.3
        pick = finite[torch.arange(features)[None, :].expand(n, features), torch.randint(0, thresholds.shape[1],
                                                                                          (n, features), generator=g)]
        whole = (pick.floor() == pick) & (pick >= 0)
        x[on & whole] = pick[on & whole].to(torch.uint8)
        return x
    x = (torch.rand(n, features, generator=g) * 2.4 - 1.2).to(dtype)
    on = torch.rand(n, features, generator=g) < 0.3
    pick = finite[torch.arange(features)[None, :].expand(n, features),
                  torch.randint(0, thresholds.shape[1], (n, features), generator=g)].to(dtype)
    if dtype == torch.float64:
        nudge = torch.randint(-1, 2, (n, features), generator=g).to(torch.float64) * 2.0**-40
        pick = pick + nudge
    x[on] = pick[on]
    return x


def _compiled_model(seed: int) -> tuple[nn.Sequential, float]:
    """A small trained-looking torch model of every layer family (as in tests/test_nn_export.py), in eval()."""
    torch.manual_seed(seed)
    tau = 5.0
    model = nn.Sequential(
        Thermometer(3, -1.0, 1.0), nn.Flatten(),
        LogicLayer(36, 64), BinaryLinear(64, 48), nn.BatchNorm1d(48), Sign(),
        LUTLayer(48, 40, n=4), LUTLayer(40, 32, n=2, mapping="arange"), LogicLayer(32, 30, parametrization="inputwise"),
        GroupSum(3, tau=tau),
    )
    g = torch.Generator().manual_seed(seed)
    batch_norm = model[4]
    assert isinstance(batch_norm, nn.BatchNorm1d)
    assert batch_norm.running_mean is not None and batch_norm.running_var is not None
    with torch.no_grad():
        batch_norm.running_mean.copy_(torch.randn(48, generator=g) * 3)
        batch_norm.running_var.copy_(torch.rand(48, generator=g) * 10 + 0.1)
        batch_norm.weight.copy_(torch.randn(48, generator=g))
        batch_norm.bias.copy_(torch.randn(48, generator=g))
    return model.eval(), tau


def _model_features(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 12, generator=g) * 2.4 - 1.2
    on = torch.rand(n, 12, generator=g) < 0.2
    x[on] = torch.tensor([-0.5, 0.0, 0.5])[torch.randint(0, 3, (int(on.sum()),), generator=g)]
    return x


# -- emulator: bit-exactness -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("optimize", OPTIMIZE)
@pytest.mark.parametrize(("kind", "arity"), [("gates", 2), ("luts", 2), ("luts", 3), ("luts", 6), ("binary", 2)])
def test_random_networks_match_the_cpu_engine(emulator: Emulator, kind: str, arity: int, optimize: bool) -> None:
    net = bitlogic.random_network(45, [70, 33], 3, kind=kind, n=arity, seed=arity)  # type: ignore[arg-type]
    gnet = _on(net, emulator, optimize)
    for n in SAMPLES:
        x = _random_bits(n, 45, seed=n)
        _assert_exact(gnet, net, x)
    _assert_exact(gnet, net, x.to(torch.uint8))  # 0/1 uint8 bits are the same bits


@pytest.mark.parametrize("optimize", OPTIMIZE)
@pytest.mark.parametrize("arity", [1, 4, 5, 7, 8])
def test_every_other_arity_the_format_allows(emulator: Emulator, arity: int, optimize: bool) -> None:
    net = bitlogic.random_network(20, [24, 12], 4, kind="luts", n=arity, seed=10 + arity)
    gnet = _on(net, emulator, optimize)
    for n in (33, 100):
        _assert_exact(gnet, net, _random_bits(n, 20, seed=arity * n))


@pytest.mark.parametrize("optimize", OPTIMIZE)
def test_a_mixed_stack_matches_the_cpu_engine(emulator: Emulator, optimize: bool) -> None:
    net = Network.from_arrays(BitsEncoder(50), _mixed_layers(50, seed=3), 3)
    gnet = _on(net, emulator, optimize)
    for n in SAMPLES:
        _assert_exact(gnet, net, _random_bits(n, 50, seed=100 + n))


def _conv_layers(seed: int) -> list[Any]:
    """Every spatial kind in one stack over a 2 x 9 x 7 image: trees with padding, an OR pool, tables with stride 2,
    a zero-padded binary convolution and a one-padded one, then a dense gate layer."""
    rng = np.random.default_rng(seed)

    def leaves(o: int, n: int, c: int, k: int) -> np.ndarray:
        return np.stack([rng.integers(0, c, (o, n)), rng.integers(0, k, (o, n)), rng.integers(0, k, (o, n))], -1)

    trees = ConvGateLayer((2, 9, 7), leaves(4, 8, 2, 3), rng.integers(0, 16, (4, 7)), (3, 3), (1, 1), (1, 1))
    pool = OrPoolLayer(trees.output_shape, (2, 2), (1, 1))
    tables = ConvLutLayer(pool.output_shape, leaves(3, 5, 4, 3), rng.integers(0, 2, (3, 32)), (3, 3), (2, 2), (1, 1))
    c, h, w = tables.output_shape
    zero = ConvBinaryLayer(tables.output_shape, rng.integers(0, 2, (5, c * 4)), rng.integers(-3, 4, 5), (2, 2),
                           (1, 1), (1, 1), pad_value=0)
    c, h, w = zero.output_shape
    one = ConvBinaryLayer(zero.output_shape, rng.integers(0, 2, (4, c * 9)), rng.integers(-8, 9, 4), (3, 3), (1, 1),
                          (1, 1), pad_value=1)
    width = one.width
    return [trees, pool, tables, zero, one, GateLayer(rng.integers(0, width, (30, 2)), rng.integers(0, 16, 30))]


@pytest.mark.parametrize("optimize", OPTIMIZE)
def test_a_convolutional_stack_matches_the_cpu_engine(emulator: Emulator, optimize: bool) -> None:
    net = Network.from_arrays(BitsEncoder(2 * 9 * 7), _conv_layers(seed=4), 3)
    gnet = _on(net, emulator, optimize)
    for n in SAMPLES:
        _assert_exact(gnet, net, _random_bits(n, 2 * 9 * 7, seed=200 + n))


@pytest.mark.parametrize("optimize", OPTIMIZE)
def test_every_op_code_follows_its_truth_table(emulator: Emulator, optimize: bool) -> None:
    # 16 gates over the same two inputs, one class per gate: the scores are the gates' outputs themselves.
    net = Network.from_arrays(BitsEncoder(2), [GateLayer(np.array([[0, 1]] * 16), np.arange(16))], 16)
    x = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=torch.bool)
    got = _on(net, emulator, optimize).scores(x)
    expected = [[(op >> (3 - (2 * a + b))) & 1 for op in range(16)] for a, b in [(0, 0), (0, 1), (1, 0), (1, 1)]]
    assert got.tolist() == expected
    _assert_exact(_on(net, emulator, optimize), net, x)


def test_every_three_input_truth_table(emulator: Emulator) -> None:
    # 256 three-input tables over the same inputs, one class per table, as written: one operation per table, so
    # the kernel's reading of every truth table byte shows in the scores.
    tables = (np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1
    net = Network.from_arrays(BitsEncoder(3), [LutLayer(np.array([[0, 1, 2]] * 256), tables)], 256)
    x = torch.tensor([[(a >> j) & 1 for j in range(3)] for a in range(8)], dtype=torch.bool)
    for optimize in (True, False):
        got = _on(net, emulator, optimize).scores(x)
        assert got.tolist() == [[(t >> a) & 1 for t in range(256)] for a in range(8)]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype", FEATURE_DTYPES, ids=str)
def test_the_encoder_bits_are_the_reference_s(emulator: Emulator, order: str, dtype: torch.dtype) -> None:
    # No layers and one class per bit: the scores are the encoder's bits, in the file's bit order.
    thresholds = _thresholds(5, 3, dtype, seed=1)
    net = Network.from_arrays(ThresholdEncoder(thresholds, order), [], 15)  # type: ignore[arg-type]
    x = _features(70, thresholds, dtype, seed=2)
    expected = bitlogic.reference.encode(net.encoder, x.numpy()).astype(np.int32)
    assert np.array_equal(_on(net, emulator).scores(x).numpy(), expected)
    _assert_exact(_on(net, emulator), net, x)


@pytest.mark.parametrize("optimize", OPTIMIZE)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype", FEATURE_DTYPES, ids=str)
def test_threshold_networks_match_the_cpu_engine(emulator: Emulator, order: str, dtype: torch.dtype,
                                                 optimize: bool) -> None:
    thresholds = _thresholds(9, 4, dtype, seed=5)
    layers = bitlogic.random_network(36, [60, 30], 3, seed=6).layers
    net = Network.from_arrays(ThresholdEncoder(thresholds, order), layers, 3)  # type: ignore[arg-type]
    gnet = _on(net, emulator, optimize)
    for n in SAMPLES:
        _assert_exact(gnet, net, _features(n, thresholds, dtype, seed=n))
    # A bool input of a threshold network is bits already encoded, as for the CPU engine.
    _assert_exact(gnet, net, _random_bits(40, 36, seed=7))


def test_float64_features_are_compared_in_float64(emulator: Emulator) -> None:
    thresholds = np.array([[0.25, 0.5]], dtype=np.float32)
    net = Network.from_arrays(ThresholdEncoder(thresholds), [], 2)
    just_above = 0.5 + 2.0**-40  # rounds to 0.5 in float32, which is not above 0.5
    x = torch.tensor([[just_above], [0.5], [0.5 - 2.0**-40]], dtype=torch.float64)
    assert _on(net, emulator).scores(x).tolist() == [[1, 1], [1, 0], [1, 0]]
    assert _on(net, emulator).scores(x.to(torch.float32)).tolist() == [[1, 0], [1, 0], [1, 0]]


def _special_values(device: str) -> tuple[Network, list[torch.Tensor]]:
    """A network whose scores are its encoder bits, with thresholds and features at zeros of both signs, float32
    subnormals and infinities (a flush-to-zero or a sloppy conversion shows up here)."""
    tiny = float(np.float32(1e-40))  # subnormal in float32
    thresholds = np.array([[-np.inf, -tiny, 0.0, tiny, 1.0, np.inf]], dtype=np.float32)
    net = Network.from_arrays(ThresholdEncoder(thresholds), [], 6)
    values = [-np.inf, -1.0, -tiny, -1e-45, -0.0, 0.0, 1e-45, tiny, 2 * tiny, 1.0, np.inf]
    inputs = [torch.tensor(values, dtype=dtype, device=device)[:, None] for dtype in (torch.float32, torch.float64)]
    inputs.append(torch.tensor([0, 1, 2, 255], dtype=torch.uint8, device=device)[:, None])
    return net, inputs


def test_zeros_subnormals_and_infinities_compare_exactly(emulator: Emulator) -> None:
    net, inputs = _special_values("cpu")
    for x in inputs:
        _assert_exact(_on(net, emulator), net, x)


@pytest.mark.parametrize("optimize", OPTIMIZE)
def test_a_compiled_torch_model_scores_exactly(emulator: Emulator, optimize: bool) -> None:
    model, tau = _compiled_model(seed=4)
    net = bitlogic.compile(model)
    gnet = _on(net, emulator, optimize)
    for n in (33, 100):
        x = _model_features(n, seed=n)
        _assert_exact(gnet, net, x)
        with torch.no_grad():
            assert torch.equal(gnet.scores(x).to(torch.float32) / tau, model(x))


def test_ties_go_to_the_lowest_class(emulator: Emulator) -> None:
    net = Network.from_arrays(BitsEncoder(6), [], 3)  # class c counts bits 2c and 2c + 1
    x = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 1], [0, 1, 1, 1, 0, 0]],
                     dtype=torch.bool)
    gnet = _on(net, emulator)
    assert gnet.scores(x).tolist() == [[2, 2, 2], [0, 0, 0], [0, 1, 1], [1, 2, 0]]
    assert gnet.predict(x).tolist() == [0, 0, 1, 1]


def test_a_capped_grid_strides_over_everything(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # One block of two warps for every launch: each kernel loops, the ballot ones with inactive warps at the end.
    monkeypatch.setattr(inference, "MAX_BLOCKS", 1)
    monkeypatch.setattr(inference, "THREADS", 64)
    net = Network.from_arrays(BitsEncoder(50), _mixed_layers(50, seed=8), 3)
    gnet = _on(net, emulator)
    start = len(emulator.launches)
    _assert_exact(gnet, net, _random_bits(100, 50, seed=9))
    launched = emulator.launches[start:]
    assert {kernel for kernel, _, _ in launched} == {"infer_pack", "infer_ops", "infer_rows", "infer_binary",
                                                     "infer_class_sums"}
    assert {(grid, block) for _, grid, block in launched} == {((1, 1, 1), (64, 1, 1))}


def test_no_samples(emulator: Emulator) -> None:
    net = bitlogic.random_network(10, [8, 4], 2, seed=1)
    gnet = _on(net, emulator)
    start = len(emulator.launches)
    scores = gnet.scores(torch.zeros(0, 10, dtype=torch.bool))
    assert scores.shape == (0, 2) and scores.dtype == torch.int32
    assert gnet.predict(torch.zeros(0, 10, dtype=torch.bool)).shape == (0,)
    assert len(emulator.launches) == start


# -- the program ------------------------------------------------------------------------------------------------------


def test_the_uploaded_program_is_the_optimized_one(emulator: Emulator) -> None:
    # The passes really ran: fewer operations than the gates written; as written, one operation per gate.
    net = bitlogic.random_network(40, [300, 200, 120], 4, seed=2)
    gates = sum(len(layer.ops) for layer in net.layers if isinstance(layer, GateLayer))
    optimized, as_written = _on(net, emulator), _on(net, emulator, optimize=False)
    assert optimized.optimize and not as_written.optimize
    assert as_written.num_ops == gates == net.optimization()["before"]["ops"]
    assert optimized.num_ops == net.optimization()["after"]["ops"] < gates
    assert optimized.num_slots == net.optimization()["after"]["slots"]
    for gnet in (optimized, as_written):
        _assert_exact(gnet, net, _random_bits(77, 40, seed=3))


def test_operations_run_in_program_order_over_reused_slots(emulator: Emulator) -> None:
    # The engine reuses slots, so the program only means what it says in order: one launch per stretch of
    # operations between binary steps, each thread running the stretch for its word.
    net = Network.from_arrays(BitsEncoder(50), _mixed_layers(50, seed=4), 3)
    gnet = _on(net, emulator)
    program = net.program(True)
    assert gnet.num_slots < net.num_input_bits + 2 + gnet.num_ops  # slots are reused
    x = _random_bits(65, 50, seed=5)
    start = len(emulator.launches)
    assert np.array_equal(gnet.scores(x).numpy(), net.scores(x.numpy()))
    kernels = [kernel for kernel, _, _ in emulator.launches[start:]]
    # Between two binary steps (and before the first, after the last) the operations are one launch.
    stretches, binary, previous = 0, 0, None
    for step in program["steps"]:
        binary += step["kind"] == "binary"
        stretches += step["kind"] == "ops" and previous != "ops"
        previous = step["kind"]
    assert kernels.count("infer_ops") == stretches and kernels.count("infer_binary") == binary
    assert binary > 0 and stretches > 1


@pytest.mark.parametrize("ops", [[15, 0, 12, 3, 14, 15], [15, 0, 15, 0]], ids=["inverted", "constant"])
def test_class_outputs_inverted_or_constant(emulator: Emulator, ops: list[int]) -> None:
    # After the passes a class may count slots read inverted, bits known to be 1, or nothing but constants (no
    # operation and no slot at all).
    net = Network.from_arrays(BitsEncoder(3), [GateLayer(np.array([[0, 1]] * len(ops)), np.array(ops))], 2)
    classes = net.program(True)["classes"]
    assert any(c["ones"] for c in classes)
    assert any(len(c["inverted"]) for c in classes) == (ops[2] == 12)
    x = torch.tensor([[(a >> j) & 1 for j in range(3)] for a in range(8)], dtype=torch.bool)
    for optimize in (True, False):
        _assert_exact(_on(net, emulator, optimize), net, x)


def test_the_program_view() -> None:
    net = bitlogic.random_network(12, [30, 20], 2, kind="luts", n=4, seed=5)
    for optimize in (True, False):
        program = net.program(optimize)
        ops, imms = program["ops"], program["imms"]
        assert ops.dtype == np.uint32 and ops.shape == (imms.shape[0], 4) and imms.dtype == np.uint8
        assert program["input_bits"].dtype == np.uint32 and np.all(program["input_bits"] < net.num_input_bits)
        assert np.all(ops < program["num_slots"])
        covered = [i for step in program["steps"] if step["kind"] == "ops" for i in range(step["start"], step["end"])]
        assert covered == list(range(imms.shape[0]))  # every operation in one step, in order
        assert len(program["classes"]) == net.num_classes
    assert net.program(True)["imms"].shape[0] < net.program(False)["imms"].shape[0]


# -- errors ----------------------------------------------------------------------------------------------------------


def test_bad_inputs_raise_the_cpu_engine_s_errors(emulator: Emulator) -> None:
    bits_net = bitlogic.random_network(10, [8, 4], 2, seed=1)
    thresholds = np.zeros((3, 2), dtype=np.float32)
    threshold_net = Network.from_arrays(ThresholdEncoder(thresholds), bitlogic.random_network(6, [4], 2).layers, 2)
    uint8_bits = torch.zeros(3, 10, dtype=torch.uint8)
    uint8_bits[1, 3] = 2
    nan32 = torch.zeros(4, 3)
    nan32[2, 1] = float("nan")
    cases = [
        (bits_net, torch.zeros(3, 9, dtype=torch.bool), "expected 10 input bits per sample"),
        (bits_net, torch.zeros(10, dtype=torch.bool), "2-dimensional"),
        (bits_net, torch.zeros(2, 10, 1, dtype=torch.bool), "2-dimensional"),
        (bits_net, torch.zeros(3, 10), "not float features"),
        (bits_net, uint8_bits, "sample 1, input bit 3 is 2; expected 0 or 1"),
        (threshold_net, torch.zeros(3, 2), "expected 3 features per sample"),
        (threshold_net, torch.zeros(3, 5, dtype=torch.bool), "expected 6 input bits per sample"),
        (threshold_net, torch.zeros(3, 6, dtype=torch.uint8), "expected 3 features per sample"),
        (threshold_net, nan32, "sample 2, feature 1 is NaN"),
        (threshold_net, nan32.to(torch.float64), "sample 2, feature 1 is NaN"),
    ]
    for net, x, message in cases:
        with pytest.raises(InputError) as cpu_error:
            net.scores(x.numpy())
        with pytest.raises(InputError, match=message) as gpu_error:
            _on(net, emulator).scores(x)
        assert str(gpu_error.value) == str(cpu_error.value)
    for dtype in (torch.int32, torch.int64, torch.float16, torch.bfloat16):
        with pytest.raises(InputError, match=f"float32, float64, uint8 or bool tensor, got dtype {dtype}"):
            _on(threshold_net, emulator).predict(torch.zeros(3, 3, dtype=dtype))


def test_inputs_must_be_tensors_on_the_network_s_device(emulator: Emulator) -> None:
    net = bitlogic.random_network(10, [8, 4], 2, seed=1)
    gnet = _on(net, emulator)
    with pytest.raises(InputError, match="expected a torch.Tensor on cpu, got ndarray"):
        gnet.scores(np.zeros((3, 10), dtype=bool))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="expected a tensor on cpu, got one on meta"):
        gnet.scores(torch.zeros(3, 10, dtype=torch.bool, device="meta"))


def test_construction_errors() -> None:
    net = bitlogic.random_network(10, [8, 4], 2, seed=1)
    with pytest.raises(CudaError, match="GPU kernels need CUDA tensors, got tensors on cpu"):
        GpuNetwork(net, "cpu")
    with pytest.raises(TypeError, match="expected a bitlogic.Network, got dict"):
        GpuNetwork({}, "cpu")  # type: ignore[arg-type]


# -- on the GPU ------------------------------------------------------------------------------------------------------

GPU_SAMPLES = 10_007  # not a multiple of 32: the last word is partial


@gpu
@pytest.mark.parametrize("optimize", OPTIMIZE)
@pytest.mark.parametrize(("kind", "arity"), [("gates", 2), ("luts", 2), ("luts", 3), ("luts", 6), ("luts", 8),
                                             ("binary", 2)])
def test_on_the_gpu_random_networks_match_the_cpu_engine(kind: str, arity: int, optimize: bool) -> None:
    net = bitlogic.random_network(200, [1000, 600, 300], 10, kind=kind, n=arity, seed=arity)  # type: ignore[arg-type]
    _assert_exact(_on(net, None, optimize), net, _random_bits(GPU_SAMPLES, 200, seed=1).cuda())


@gpu
@pytest.mark.parametrize("optimize", OPTIMIZE)
def test_on_the_gpu_a_mixed_stack_matches_the_cpu_engine(optimize: bool) -> None:
    net = Network.from_arrays(BitsEncoder(50), _mixed_layers(50, seed=3), 3)
    gnet = _on(net, None, optimize)
    for n in (1, 33, GPU_SAMPLES):
        _assert_exact(gnet, net, _random_bits(n, 50, seed=n).cuda())


@gpu
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype", FEATURE_DTYPES, ids=str)
def test_on_the_gpu_threshold_networks_match_the_cpu_engine(order: str, dtype: torch.dtype) -> None:
    thresholds = _thresholds(40, 5, dtype, seed=5)
    layers = bitlogic.random_network(200, [500, 300], 10, kind="luts", n=4, seed=6).layers
    net = Network.from_arrays(ThresholdEncoder(thresholds, order), layers, 10)  # type: ignore[arg-type]
    _assert_exact(_on(net, None), net, _features(GPU_SAMPLES, thresholds, dtype, seed=7).cuda())


@gpu
def test_on_the_gpu_zeros_subnormals_and_infinities_compare_exactly() -> None:
    net, inputs = _special_values("cuda")
    for x in inputs:
        _assert_exact(_on(net, None), net, x)


@gpu
def test_on_the_gpu_a_compiled_torch_model_scores_exactly() -> None:
    model, tau = _compiled_model(seed=4)
    net = bitlogic.compile(model)
    x = _model_features(GPU_SAMPLES, seed=2)
    gnet = _on(net, None)
    _assert_exact(gnet, net, x.cuda())
    with torch.no_grad():
        assert torch.equal(gnet.scores(x.cuda()).cpu().to(torch.float32) / tau, model(x))


@gpu
def test_on_the_gpu_nan_features_are_rejected() -> None:
    net = Network.from_arrays(ThresholdEncoder(np.zeros((3, 2), dtype=np.float32)), [], 2)
    x = torch.zeros(GPU_SAMPLES, 3, device="cuda")
    x[5000, 2] = float("nan")
    with pytest.raises(InputError, match="sample 5000, feature 2 is NaN"):
        _on(net, None).scores(x)


@gpu
def test_on_the_gpu_a_convolutional_stack_matches_the_cpu_engine() -> None:
    net = Network.from_arrays(BitsEncoder(2 * 9 * 7), _conv_layers(seed=4), 3)
    _assert_exact(_on(net, None), net, _random_bits(1000, 2 * 9 * 7, seed=5).cuda())
