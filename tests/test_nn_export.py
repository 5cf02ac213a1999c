"""bitlogic.nn layers and bitlogic.compile: the exported network gives exactly the model's eval() scores."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import bitlogic
import bitlogic.reference
from bitlogic import _native
from bitlogic.export import ExportError
from bitlogic.nn import (
    GATE_COEFFICIENTS,
    BinaryLinear,
    DistributiveThermometer,
    GroupSum,
    LogicLayer,
    LUTLayer,
    Sign,
    Thermometer,
)
from bitlogic.nn._export import LayerPart
from bitlogic.nn.logic import NUM_OPS, op_truth_table
from bitlogic.nn.lut import MAX_ARITY, efd_gradients, efd_matrix

from _exactness import assert_exact, train_steps

FEATURES = 12


def binary_block(i: int, o: int, quantizer: str = "ste_sign") -> list[nn.Module]:
    return [BinaryLinear(i, o, quantizer=quantizer), nn.BatchNorm1d(o), Sign(quantizer=quantizer)]  # type: ignore[arg-type]


def randomize_batch_norms(model: nn.Module, generator: torch.Generator) -> None:
    """Trained-looking batch norms: random statistics, scales of both signs (and some zero), random shifts."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            n = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(n, generator=generator) * 3)
                m.running_var.copy_(torch.rand(n, generator=generator) * 10 + 0.1)
                scale = torch.randn(n, generator=generator)
                scale[torch.rand(n, generator=generator) < 0.1] = 0.0
                m.weight.copy_(scale)
                m.bias.copy_(torch.randn(n, generator=generator))


def build(family: str, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    bits = 3
    encoder: list[nn.Module] = [Thermometer(bits, -1.0, 1.0), nn.Flatten()]
    width = FEATURES * bits
    if family == "logic":
        body: list[nn.Module] = [LogicLayer(width, 64), LogicLayer(64, 60, connections="unique")]
    elif family == "logic-inputwise":
        body = [LogicLayer(width, 64, parametrization="inputwise"), LogicLayer(64, 60, parametrization="inputwise")]
    elif family == "lut":
        body = [LUTLayer(width, 40, n=6), LUTLayer(40, 30, n=3, mapping="arange")]
    elif family == "lut-learnable":
        body = [LUTLayer(width, 40, n=4, mapping="learnable"), LUTLayer(40, 30, n=2)]
    elif family == "binary":
        body = binary_block(width, 48) + binary_block(48, 30, "approx_sign")
    elif family == "mixed":
        body = (
            [LogicLayer(width, 80, init="residual")]
            + binary_block(80, 50, "swish_sign")
            + [LUTLayer(50, 40, n=5), LogicLayer(40, 30, parametrization="inputwise", init="residual")]
        )
    else:
        raise AssertionError(family)
    model = nn.Sequential(*encoder, *body, GroupSum(3, tau=7.0))
    randomize_batch_norms(model, torch.Generator().manual_seed(seed))
    return model


def features(n: int, seed: int) -> torch.Tensor:
    """Random features, a share of them exactly on a threshold (where > and >= differ)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, FEATURES, generator=g) * 2.4 - 1.2
    on = torch.rand(n, FEATURES, generator=g) < 0.2
    x[on] = torch.tensor([-0.5, 0.0, 0.5])[torch.randint(0, 3, (int(on.sum()),), generator=g)]
    return x


FAMILIES = ["logic", "logic-inputwise", "lut", "lut-learnable", "binary", "mixed"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_weights_export_exactly(family: str, seed: int) -> None:
    assert_exact(build(family, seed), features(700, seed))


@pytest.mark.parametrize("family", FAMILIES)
def test_trained_weights_export_exactly(family: str) -> None:
    model = build(family, 10)
    x = features(256, 10)
    train_steps(model, x, steps=15, seed=10)
    assert_exact(model, features(600, 11))


@pytest.mark.parametrize("family", FAMILIES)
def test_state_dict_round_trip_keeps_the_network(family: str) -> None:
    model = build(family, 3)
    train_steps(model, features(128, 3), steps=5, seed=3)
    reloaded = build(family, 99)  # different wiring and weights until the state_dict is loaded
    reloaded.load_state_dict(model.state_dict())
    assert bitlogic.compile(reloaded) == bitlogic.compile(model)


def test_models_without_encoder_take_bits() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(LogicLayer(20, 40), LUTLayer(40, 20, n=3), GroupSum(2, tau=3.0))
    x = torch.randint(0, 2, (300, 20)).to(torch.float32)
    net = bitlogic.compile(model)
    assert isinstance(net.encoder, bitlogic.BitsEncoder)
    with torch.no_grad():
        expected = model.eval()(x)
    got = torch.from_numpy(net.scores(x.numpy().astype(bool))).to(torch.float32) / 3.0
    assert torch.equal(got, expected)


def test_distributive_thermometer_exports_its_fitted_thresholds() -> None:
    g = torch.Generator().manual_seed(5)
    x_train = torch.randint(0, 256, (500, 6, 6), generator=g).to(torch.uint8)
    encoder = DistributiveThermometer(4).fit(x_train.numpy())
    model = nn.Sequential(encoder, nn.Flatten(), LogicLayer(36 * 4, 60), GroupSum(3, tau=2.0))
    x = torch.randint(0, 256, (300, 6, 6), generator=g).to(torch.uint8)
    net = bitlogic.compile(model)
    assert np.array_equal(net.encoder.thresholds, encoder.thresholds.numpy())  # type: ignore[union-attr]
    with torch.no_grad():
        expected = model.eval()(x)
    got = torch.from_numpy(net.scores(x.reshape(300, 36).numpy())).to(torch.float32) / 2.0
    assert torch.equal(got, expected)
    # Thresholds are quantiles: each one is a value of the training data, splitting it near (t+1)/(T+1).
    column = x_train.reshape(500, 36)[:, 0].to(torch.float32)
    for t, threshold in enumerate(encoder.thresholds[0]):
        assert bool((column == threshold).any())
        share = float((column <= threshold).to(torch.float32).mean())
        assert abs(share - (t + 1) / 5) < 0.05
    # An unfitted encoder of the same size takes the fitted thresholds from a state_dict.
    fresh = DistributiveThermometer(4)
    fresh.load_state_dict(encoder.state_dict())
    assert torch.equal(fresh.thresholds, encoder.thresholds)


def test_thermometer_thresholds_split_the_range_evenly() -> None:
    enc = Thermometer(3, 0.0, 255.0)
    assert torch.allclose(enc.thresholds, torch.tensor([63.75, 127.5, 191.25]))
    out = enc(torch.tensor([[0.0, 63.75, 64.0, 255.0]]))
    assert out.shape == (1, 4, 3)
    assert out.tolist() == [[[0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 1, 1]]]


def test_a_nan_feature_is_one_error_text_everywhere() -> None:
    # The engine words it; errors.nan_feature restates it for the torch encoder and the numpy reference.
    x = np.zeros((4, 3), dtype=np.float32)
    x[3, 0] = x[2, 1] = np.nan
    net = bitlogic.Network.from_arrays(bitlogic.ThresholdEncoder(np.zeros((3, 2))), [], num_classes=2)
    texts = []
    for evaluate in (net.scores, lambda v: bitlogic.reference.encode(net.encoder, v),
                     lambda v: Thermometer(2)(torch.from_numpy(v))):  # fmt: skip
        with pytest.raises(bitlogic.InputError) as caught:
            evaluate(x)
        texts.append(str(caught.value))
    assert texts == ["invalid input: sample 2, feature 1 is NaN; expected a number"] * 3


def test_softmax16_coefficients_are_the_mixture_of_the_16_gates() -> None:
    torch.manual_seed(0)
    layer = LogicLayer(5, 30)
    a, b = torch.rand(2, 30, dtype=torch.float64)
    probs = torch.softmax(layer.weight.detach().double(), dim=1)
    gates = []
    for op in range(16):
        f00, f01, f10, f11 = op_truth_table(op)
        gates.append(f00 * (1 - a) * (1 - b) + f01 * (1 - a) * b + f10 * a * (1 - b) + f11 * a * b)
    mixture = (probs * torch.stack(gates, dim=1)).sum(1)
    c = layer.coefficients().double()
    assert torch.allclose(c[:, 0] + c[:, 1] * a + c[:, 2] * b + c[:, 3] * a * b, mixture, atol=1e-6)


def test_gate_coefficients_match_the_engine_truth_tables() -> None:
    # The engine's op codes are checked against named functions in the Rust tests; here the torch side must agree.
    names = {1: lambda a, b: a & b, 6: lambda a, b: a ^ b, 7: lambda a, b: a | b, 8: lambda a, b: 1 - (a | b),
             3: lambda a, b: a, 12: lambda a, b: 1 - a, 14: lambda a, b: 1 - (a & b)}  # fmt: skip
    for op, f in names.items():
        c0, c1, c2, c3 = GATE_COEFFICIENTS[op].tolist()
        for a, b in itertools.product((0, 1), repeat=2):
            assert c0 + c1 * a + c2 * b + c3 * a * b == f(a, b), (op, a, b)


def test_op_codes_and_limits_are_the_cores() -> None:
    # One convention for all 16 op codes: the core's OP_TABLES (FORMAT.md: the output for (a, b) is bit 3 - (2a + b)
    # of the op code), the torch coefficients, the numpy reference and the engine all agree.
    assert (NUM_OPS, MAX_ARITY) == (_native.NUM_OPS, _native.MAX_ARITY) == (16, 8)
    assert len(_native.OP_TABLES) == NUM_OPS
    corners = list(itertools.product((0, 1), repeat=2))
    bits = np.array(corners, dtype=bool)  # the four (a, b) rows
    layer = bitlogic.GateLayer(inputs=[[0, 1]] * NUM_OPS, ops=list(range(NUM_OPS)))
    reference = bitlogic.reference.layer_outputs(layer, bits)  # [4, 16]
    net = bitlogic.Network.from_arrays(bitlogic.BitsEncoder(2), [layer], num_classes=NUM_OPS)
    engine = net.scores(bits)  # one gate per class: its score is the gate's output bit
    for op in range(NUM_OPS):
        table = _native.OP_TABLES[op]
        assert table == op_truth_table(op) == tuple((op >> (3 - i)) & 1 for i in range(4)), op
        c0, c1, c2, c3 = GATE_COEFFICIENTS[op].tolist()
        for row, (a, b) in enumerate(corners):
            assert c0 + c1 * a + c2 * b + c3 * a * b == table[2 * a + b], (op, a, b)
            assert reference[row, op] == engine[row, op] == table[2 * a + b], (op, a, b)
    with pytest.raises(ValueError, match="op code"):
        op_truth_table(NUM_OPS)
    with pytest.raises(ValueError, match=f"1..{MAX_ARITY}"):
        LUTLayer(4, 4, n=MAX_ARITY + 1)


def test_residual_init_starts_as_pass_through() -> None:
    for parametrization in ("softmax16", "inputwise"):
        layer = LogicLayer(10, 50, init="residual", parametrization=parametrization)  # type: ignore[arg-type]
        assert layer.ops().eq(3).all()
        x = torch.rand(4, 10)
        out = layer.train()(x)
        a = x[:, layer.inputs[0]]
        assert (out - a).abs().max() < 0.2  # close to A while training too


def test_unique_connections_have_distinct_pairs() -> None:
    layer = LogicLayer(20, 190, connections="unique")
    pairs = {tuple(sorted(p)) for p in layer.inputs.t().tolist()}
    assert len(pairs) == 190 and all(a != b for a, b in pairs)
    with pytest.raises(ValueError, match="distinct input pairs"):
        LogicLayer(20, 191, connections="unique")


def test_random_connections_spread_reads_evenly() -> None:
    layer = LogicLayer(100, 1000)
    counts = torch.bincount(layer.inputs.reshape(-1), minlength=100)
    assert int(counts.min()) == int(counts.max()) == 20


def test_lut_efd_gradient_matches_its_definition() -> None:
    torch.manual_seed(1)
    n, alpha, beta = 4, 0.3, 0.4
    tables = torch.randn(3, 1 << n, dtype=torch.float64)
    got = efd_gradients(tables, efd_matrix(n, alpha, beta).double())
    for lut, address, j in itertools.product(range(3), range(1 << n), range(n)):
        total = 0.0
        for k in range(1 << n):
            if not (k >> j) & 1:
                continue
            distance = bin((k ^ address) & ~(1 << j)).count("1")
            total += alpha * beta**distance * float(tables[lut, k] - tables[lut, k ^ (1 << j)])
        assert abs(float(got[lut, address, j]) - total) < 1e-5


def test_lut_backward_routes_gradients() -> None:
    torch.manual_seed(2)
    layer = LUTLayer(8, 5, n=3, mapping="arange", clamp_luts=False)
    x = torch.randint(0, 2, (6, 8)).to(torch.float32).requires_grad_()
    out = layer(x)
    g = torch.randn_like(out)
    out.backward(g)
    assert layer.tables.grad is not None and x.grad is not None
    # Table gradient: each sample's output gradient lands on its addressed entry.
    bits = x.detach()[:, layer.inputs].to(torch.int64)  # [6, 5, 3]
    address = (bits << torch.arange(3)).sum(-1)
    expected = torch.zeros(5, 8)
    for s, lut in itertools.product(range(6), range(5)):
        expected[lut, address[s, lut]] += g[s, lut]
    assert torch.allclose(layer.tables.grad, expected)
    # Input gradient: the EFD per (table, address), scattered back to the wires.
    per = efd_gradients(layer.tables.detach(), layer.efd)
    expected_x = torch.zeros(6, 8)
    for s, lut, j in itertools.product(range(6), range(5), range(3)):
        expected_x[s, layer.inputs[lut, j]] += g[s, lut] * per[lut, address[s, lut], j]
    assert torch.allclose(x.grad, expected_x, atol=1e-6)


def test_learnable_mapping_trains_its_weights() -> None:
    torch.manual_seed(3)
    layer = LUTLayer(10, 4, n=2, mapping="learnable")
    x = torch.randint(0, 2, (16, 10)).to(torch.float32).requires_grad_()
    layer(x).sum().backward()
    assert layer.mapping_weight.grad is not None and layer.mapping_weight.grad.abs().sum() > 0
    assert x.grad is not None
    assert layer.wires().shape == (4, 2)


def test_binary_linear_counts_matches() -> None:
    layer = BinaryLinear(5, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -0.2, 0.0, 0.3, -0.9], [-1.0, -1.0, -1.0, -1.0, -1.0]]))
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0]])
    # weight bits 1 0 1 1 0 vs input 1 0 1 1 0: 5 matches -> 2*5-5 = 5; all-minus weights: 2 matches -> -1.
    assert layer(x).tolist() == [[5.0, -1.0]]


BIT_LAYERS = {
    "logic": lambda: LogicLayer(10, 24),
    "logic-inputwise": lambda: LogicLayer(10, 24, parametrization="inputwise"),
    "lut": lambda: LUTLayer(10, 8, n=3),
    "lut-soft": lambda: LUTLayer(10, 8, n=3, ste=False),
    "binary": lambda: BinaryLinear(10, 6),
}


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int64])
@pytest.mark.parametrize("kind", sorted(BIT_LAYERS))
def test_bool_and_integer_bits_give_what_float_bits_give(kind: str, dtype: torch.dtype, training: bool) -> None:
    # In bool or uint8 arithmetic the relaxed gates were constants (training) or wrong gates (eval), silently.
    torch.manual_seed(7)
    layer = BIT_LAYERS[kind]().train(training)
    bits = torch.rand(32, 10) > 0.5
    expected = layer(bits.float())
    got = layer(bits.to(dtype))
    assert got.dtype == expected.dtype == torch.float32
    assert torch.equal(got, expected)
    assert not training or got.std() > 0  # not constants


@pytest.mark.parametrize("kind", sorted(BIT_LAYERS))
def test_integer_inputs_other_than_bits_are_refused(kind: str) -> None:
    layer = BIT_LAYERS[kind]()
    name = type(layer).__name__
    x = torch.zeros(4, 10, dtype=torch.uint8)
    x[2, 3] = 2
    with pytest.raises(bitlogic.InputError, match=rf"{name}: a torch.uint8 input must hold bits \(0 or 1\), got 2"):
        layer(x)
    with pytest.raises(bitlogic.InputError, match=r"torch.int8 input must hold bits \(0 or 1\), got -1"):
        layer(torch.full((4, 10), -1, dtype=torch.int8))
    with pytest.raises(bitlogic.InputError, match="expected real inputs"):
        layer(torch.zeros(4, 10, dtype=torch.complex64))


@pytest.mark.parametrize("quantizer", ["ste_sign", "approx_sign", "swish_sign"])
def test_quantizer_gradients(quantizer: str) -> None:
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
    Sign(quantizer)(x).sum().backward()  # type: ignore[arg-type]
    assert x.grad is not None
    assert x.grad[2] > 0 and x.grad[0] == pytest.approx(0.0, abs=0.01) and x.grad[4] == pytest.approx(0.0, abs=0.01)


def test_binary_fold_handles_constant_and_negative_scales() -> None:
    torch.manual_seed(4)
    block = binary_block(9, 4)
    norm = block[1]
    assert isinstance(norm, nn.BatchNorm1d)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, -1.0, 0.0, 0.0]))
        norm.bias.copy_(torch.tensor([0.0, 0.5, 1.0, -1.0]))
    model = nn.Sequential(*block, GroupSum(2))
    net = bitlogic.compile(model)
    layer = net.layers[0]
    assert isinstance(layer, bitlogic.BinaryLayer)
    assert layer.thresholds[2] <= 0 and layer.thresholds[3] > 9  # always on, never on
    x = torch.tensor(list(itertools.product((0.0, 1.0), repeat=9)))
    with torch.no_grad():
        expected = model.eval()(x)
    assert torch.equal(torch.from_numpy(net.scores(x.numpy().astype(bool))).to(torch.float32), expected)


@pytest.mark.parametrize(
    ("modules", "message"),
    [
        (lambda: [LogicLayer(8, 8)], "must end with GroupSum"),
        (lambda: [LogicLayer(8, 8), nn.ReLU(), GroupSum(2)], r"layer 1 \(ReLU\): not exportable"),
        (lambda: [BinaryLinear(8, 8), GroupSum(2)], r"layer 0 \(BinaryLinear\): must be followed by"),
        (lambda: [LogicLayer(8, 8), LogicLayer(9, 8), GroupSum(2)], r"layer 1 \(LogicLayer\): expects 9 inputs"),
        (lambda: [LogicLayer(8, 9), GroupSum(2)], "do not split into 2 groups"),
        (lambda: [GroupSum(2)], "no LogicLayer"),
        (lambda: [DistributiveThermometer(2), nn.Flatten(), LogicLayer(8, 8), GroupSum(2)], "not fitted"),
        (lambda: [LogicLayer(8, 8), Thermometer(2), GroupSum(2)], "encoder must come first"),
    ],
)
def test_unexportable_models_name_the_layer(modules: object, message: str) -> None:
    model = nn.Sequential(*modules())  # type: ignore[operator]
    with pytest.raises(ExportError, match=message):
        bitlogic.compile(model)


class Negate(nn.Module):
    """A layer kind the exporter has never heard of: it exports through the protocol alone."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1 - x

    def export_part(self, following: object) -> LayerPart:
        wires = np.stack([np.arange(self.width)] * 2, axis=1)
        not_a = 0b1100  # op code bits (f00, f01, f10, f11) = (1, 1, 0, 0): NOT A
        return LayerPart(bitlogic.GateLayer(inputs=wires, ops=np.full(self.width, not_a, np.uint8)), self.width,
                         self.width)


def test_a_module_with_export_part_exports_without_exporter_changes() -> None:
    torch.manual_seed(8)
    model = nn.Sequential(nn.Identity(), LogicLayer(6, 8), nn.Dropout(0.5), Negate(8), GroupSum(2)).eval()
    net = bitlogic.compile(model)
    assert [type(layer).__name__ for layer in net.layers] == ["GateLayer", "GateLayer"]
    x = torch.tensor(list(itertools.product((0.0, 1.0), repeat=6)))
    with torch.no_grad():
        expected = model(x)
    assert torch.equal(torch.from_numpy(net.scores(x.numpy().astype(bool))).to(torch.float32), expected)
    with pytest.raises(ExportError, match=r"layer 2 \(Flatten\): not exportable"):
        bitlogic.compile(nn.Sequential(LogicLayer(6, 8), Negate(8), nn.Flatten(), GroupSum(2)))


def test_compile_leaves_the_training_mode_alone() -> None:
    model = build("mixed", 0)
    model.train()
    bitlogic.compile(model)
    assert all(m.training for m in model.modules())


def test_grad_factor_scales_the_input_gradient() -> None:
    torch.manual_seed(6)
    plain = LogicLayer(10, 20)
    scaled = LogicLayer(10, 20, grad_factor=2.5)
    scaled.load_state_dict(plain.state_dict())
    x = torch.rand(5, 10)
    grads = []
    for layer in (plain, scaled):
        xi = x.clone().requires_grad_()
        layer(xi).sum().backward()
        assert xi.grad is not None
        grads.append(xi.grad)
    assert torch.allclose(grads[1], 2.5 * grads[0])


def test_lut_without_ste_trains_on_soft_bits_and_evaluates_bits() -> None:
    torch.manual_seed(7)
    layer = LUTLayer(6, 4, n=2, ste=False)
    with torch.no_grad():
        layer.tables.copy_(torch.tensor([[-0.5, 0.5, 1.0, -1.0]] * 4))
    x = torch.randint(0, 2, (8, 6)).to(torch.float32)
    soft = layer.train()(x)
    hard = layer.eval()(x)
    assert set(soft.unique().tolist()) <= {0.0, 0.25, 0.75, 1.0}
    assert torch.equal(hard, (soft > 0.5).to(torch.float32))


# Random architectures: any order of families, widths, arities and encoders must export exactly.

LAYER = st.one_of(
    st.tuples(st.just("logic"), st.sampled_from(["softmax16", "inputwise"]), st.sampled_from(["random", "residual"])),
    st.tuples(st.just("lut"), st.integers(1, 6), st.sampled_from(["random", "learnable", "arange"])),
    st.tuples(st.just("binary"), st.sampled_from(["ste_sign", "approx_sign", "swish_sign"]), st.booleans()),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    features=st.integers(1, 6),
    bits=st.integers(1, 3),
    encoder=st.sampled_from(["uniform", "distributive", "none"]),
    layers=st.lists(st.tuples(LAYER, st.integers(1, 24)), min_size=1, max_size=4),
    classes=st.integers(1, 4),
    per_class=st.integers(1, 5),
    tau=st.sampled_from([1.0, 0.3, 7.0]),
    seed=st.integers(0, 2**31 - 1),
    train=st.booleans(),
)
def test_random_architectures_export_exactly(
    features: int,
    bits: int,
    encoder: str,
    layers: list[tuple[tuple[str, object, object], int]],
    classes: int,
    per_class: int,
    tau: float,
    seed: int,
    train: bool,
) -> None:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(200, features, generator=g) * 2.4 - 1.2
    modules: list[nn.Module] = []
    if encoder == "uniform":
        modules += [Thermometer(bits, -1.0, 1.0), nn.Flatten()]
        width = features * bits
    elif encoder == "distributive":
        modules += [DistributiveThermometer(bits).fit(x.numpy()), nn.Flatten()]
        width = features * bits
    else:
        x = torch.randint(0, 2, (200, features), generator=g).to(torch.float32)
        width = features
    for i, ((kind, a, b), out) in enumerate(layers):
        out = classes * per_class if i == len(layers) - 1 else out
        if kind == "logic":
            modules.append(LogicLayer(width, out, parametrization=a, init=b))  # type: ignore[arg-type]
        elif kind == "lut":
            modules.append(LUTLayer(width, out, n=int(a), mapping=b))  # type: ignore[arg-type, call-overload]
        else:
            modules += [BinaryLinear(width, out, quantizer=a)]  # type: ignore[arg-type]
            modules += [nn.BatchNorm1d(out)] if b else []
            modules += [Sign(quantizer=a)]  # type: ignore[arg-type]
        width = out
    model = nn.Sequential(*modules, GroupSum(classes, tau=tau))
    randomize_batch_norms(model, g)
    if train:
        train_steps(model, x[:64], steps=3, seed=seed, classes=classes)
    net = bitlogic.compile(model)
    with torch.no_grad():
        expected = model.eval()(x)
    inputs = x.numpy() if encoder != "none" else x.numpy().astype(bool)
    got = torch.from_numpy(net.scores(inputs)).to(torch.float32) / tau
    assert torch.equal(got, expected)
