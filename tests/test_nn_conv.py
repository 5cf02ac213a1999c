"""The convolutional layers of bitlogic.nn and their export: shapes, gradients, encoders on images, and the exported
network giving exactly the model's eval() scores."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import bitlogic
import bitlogic.reference
from bitlogic.export import ExportError, export_parts
from bitlogic.nn import (
    BinaryConv2d,
    BinaryLinear,
    DistributiveThermometer,
    GroupSum,
    LogicConv2d,
    LogicLayer,
    LUTConv2d,
    LUTLayer,
    OrPool2d,
    Sign,
    Thermometer,
)
from bitlogic.ops.conv import output_size, tree_conv

from _exactness import train_steps


def naive_tree_conv(x: torch.Tensor, leaves: torch.Tensor, coef: torch.Tensor, kernel: tuple[int, int],
                    stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
    """The definition, position by position: the leaves' values (0 outside the image), then gate g on nodes 2g and
    2g + 1 appended as node 2**d + g; the last node is the output."""
    batch, _, h, w = x.shape
    trees, width, _ = leaves.shape
    rows, cols = output_size((h, w), kernel, stride, padding)
    out = torch.zeros(batch, trees, rows, cols, dtype=x.dtype)
    for o, yo, xo in itertools.product(range(trees), range(rows), range(cols)):
        nodes = []
        for c, dy, dx in leaves[o].tolist():
            y, xx = yo * stride[0] - padding[0] + dy, xo * stride[1] - padding[1] + dx
            inside = 0 <= y < h and 0 <= xx < w
            nodes.append(x[:, c, y, xx] if inside else torch.zeros(batch, dtype=x.dtype))
        for g in range(width - 1):
            a, b = nodes[2 * g], nodes[2 * g + 1]
            c0, c1, c2, c3 = coef[o, g]
            nodes.append(c0 + c1 * a + (c2 + c3 * a) * b)
        out[:, o, yo, xo] = nodes[-1]
    return out


GEOMETRIES = [((3, 3), (1, 1), (1, 1)), ((2, 3), (2, 1), (0, 1)), ((3, 2), (2, 3), (2, 0)), ((1, 1), (1, 1), (0, 0))]


@pytest.mark.parametrize(("kernel", "stride", "padding"), GEOMETRIES)
@pytest.mark.parametrize("depth", [1, 3])
def test_tree_conv_is_the_tree_at_every_position(kernel: tuple[int, int], stride: tuple[int, int],
                                                 padding: tuple[int, int], depth: int) -> None:
    torch.manual_seed(0)
    layer = LogicConv2d(3, 4, kernel_size=kernel, depth=depth, stride=stride, padding=padding, init="random")
    x = torch.rand(2, 3, 5, 6, dtype=torch.float64)
    coef = layer.coefficients().detach().double()
    got = tree_conv(x, layer.leaves, coef, layer.kernel_size, layer.stride, layer.padding)
    expected = naive_tree_conv(x, layer.leaves, coef, layer.kernel_size, layer.stride, layer.padding)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-12)
    # float32 (the fused CPU kernels) agrees within rounding
    got32 = layer(x.float())
    assert torch.allclose(got32.double(), expected, atol=1e-5)


def test_tree_conv_gradcheck() -> None:
    torch.manual_seed(1)
    layer = LogicConv2d(2, 3, kernel_size=2, depth=2, stride=1, padding=1, init="random")
    x = torch.rand(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    coef = layer.coefficients().detach().double().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda xi, ci: tree_conv(xi, layer.leaves, ci, layer.kernel_size, layer.stride, layer.padding), (x, coef))


def images(n: int, channels: int, h: int, w: int, seed: int, bits: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if bits:
        return torch.randint(0, 2, (n, channels, h, w), generator=g).to(torch.float32)
    return torch.rand(n, channels, h, w, generator=g)


LAYERS = {
    "logic": lambda: LogicConv2d(3, 5, kernel_size=3, depth=2, stride=2, padding=1),
    "logic-inputwise": lambda: LogicConv2d(3, 4, kernel_size=(2, 3), depth=3, padding=(0, 1),
                                           parametrization="inputwise", init="random", grad_factor=2.0),
    "logic-gumbel": lambda: LogicConv2d(3, 4, estimator="gumbel", init="random"),
    "lut": lambda: LUTConv2d(3, 4, kernel_size=3, n=4, stride=(1, 2)),
    "lut-soft": lambda: LUTConv2d(3, 4, n=3, estimator="soft"),
    "lut-gumbel": lambda: LUTConv2d(3, 4, n=2, estimator="gumbel", padding=0),
    "binary": lambda: BinaryConv2d(3, 6, 3, padding=1),
    "binary-zero-pad": lambda: BinaryConv2d(3, 6, (2, 3), stride=2, padding=(1, 2), pad_value=0.0,
                                            quantizer="approx_sign"),
    "pool": lambda: OrPool2d(),
    "pool-odd": lambda: OrPool2d(kernel_size=(3, 2), stride=(2, 1)),
}


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_layers_give_their_output_shape_and_gradients(kind: str) -> None:
    torch.manual_seed(2)
    layer = LAYERS[kind]().train()
    x = images(3, 3, 7, 8, seed=2).requires_grad_()
    out = layer(x)
    kernel, stride = layer.kernel_size, layer.stride
    padding = getattr(layer, "padding", (0, 0))
    channels = getattr(layer, "out_channels", 3)
    assert out.shape == (3, channels, *output_size((7, 8), kernel, stride, padding))
    out.backward(torch.randn_like(out))
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert type(layer).__name__ in repr(layer) and "kernel_size" in repr(layer)


def test_eval_layers_output_bits() -> None:
    torch.manual_seed(3)
    x = images(4, 3, 6, 6, seed=3, bits=True)
    for kind, make in LAYERS.items():
        layer = make().eval()
        with torch.no_grad():
            out = layer(x)
        if not kind.startswith("binary"):
            assert set(out.unique().tolist()) <= {0.0, 1.0}, kind


def test_lut_conv_reads_its_leaves_at_each_position() -> None:
    torch.manual_seed(4)
    layer = LUTConv2d(2, 3, kernel_size=(2, 3), n=3, stride=(2, 1), padding=(1, 1)).eval()
    x = images(2, 2, 5, 4, seed=4, bits=True)
    with torch.no_grad():
        got = layer(x)
    rows, cols = output_size((5, 4), layer.kernel_size, layer.stride, layer.padding)
    tables = layer.truth_tables()
    for b, o, yo, xo in itertools.product(range(2), range(3), range(rows), range(cols)):
        address = 0
        for j, (c, dy, dx) in enumerate(layer.leaves[o].tolist()):
            y, xx = yo * 2 - 1 + dy, xo - 1 + dx
            bit = int(x[b, c, y, xx]) if 0 <= y < 5 and 0 <= xx < 4 else 0
            address |= bit << j
        assert got[b, o, yo, xo] == float(tables[o, address])


@pytest.mark.parametrize("pad_value", [1.0, 0.0])
def test_binary_conv_is_the_dot_of_every_window(pad_value: float) -> None:
    torch.manual_seed(5)
    layer = BinaryConv2d(2, 3, (3, 2), stride=(1, 2), padding=(1, 1), pad_value=pad_value).eval()
    x = images(2, 2, 4, 5, seed=5, bits=True)
    with torch.no_grad():
        got = layer(x)
    w = torch.where(layer.weight >= 0, 1.0, -1.0)
    rows, cols = output_size((4, 5), layer.kernel_size, layer.stride, layer.padding)
    for b, o, yo, xo in itertools.product(range(2), range(3), range(rows), range(cols)):
        dot = 0.0
        for c, dy, dx in itertools.product(range(2), range(3), range(2)):
            y, xx = yo - 1 + dy, xo * 2 - 1 + dx
            s = 2 * float(x[b, c, y, xx]) - 1 if 0 <= y < 4 and 0 <= xx < 5 else pad_value
            dot += s * float(w[o, c, dy, dx])
        assert got[b, o, yo, xo] == dot


def test_or_pool_is_the_or_of_each_window() -> None:
    x = images(3, 2, 5, 7, seed=6, bits=True)
    got = OrPool2d((2, 3), (2, 2)).eval()(x)
    for b, c, yo, xo in itertools.product(range(3), range(2), range(2), range(3)):
        window = x[b, c, 2 * yo : 2 * yo + 2, 2 * xo : 2 * xo + 3]
        assert got[b, c, yo, xo] == float(window.max())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: LogicConv2d(0, 4), "LogicConv2d: in_channels must be a positive int"),
        (lambda: LogicConv2d(3, 4, depth=9), r"LogicConv2d: depth must be in 1..8"),
        (lambda: LogicConv2d(3, 4, depth=0), r"LogicConv2d: depth must be in 1..8"),
        (lambda: LogicConv2d(3, 4, kernel_size=0), "LogicConv2d: kernel_size must be >= 1"),
        (lambda: LogicConv2d(3, 4, stride=(1, 0)), "LogicConv2d: stride must be >= 1"),
        (lambda: LogicConv2d(3, 4, padding=-1), "LogicConv2d: padding must be >= 0"),
        (lambda: LogicConv2d(3, 4, kernel_size=(1, 2, 3)), "LogicConv2d: kernel_size must be an int or a pair"),
        (lambda: LogicConv2d(3, 4, channels_per_tree=0), "LogicConv2d: channels_per_tree must be a positive int"),
        (lambda: LogicConv2d(3, 4, init="zeros"), "LogicConv2d: init must be"),  # type: ignore[arg-type]
        (lambda: LogicConv2d(3, 4, parametrization="x"),  # type: ignore[arg-type]
         "LogicConv2d: parametrization must be"),
        (lambda: LogicConv2d(3, 4, estimator="x"), "LogicConv2d: estimator must be"),  # type: ignore[arg-type]
        (lambda: LUTConv2d(3, 0), "LUTConv2d: out_channels must be a positive int"),
        (lambda: LUTConv2d(3, 4, n=9), r"LUTConv2d: n must be in 1..8"),
        (lambda: LUTConv2d(3, 4, temperature=0.0), "LUTConv2d: temperature must be positive"),
        (lambda: BinaryConv2d(3, 4, 3, pad_value=-1.0), "BinaryConv2d: pad_value must be 1.0"),
        (lambda: BinaryConv2d(3, 4, 3, quantizer="sign"), "BinaryConv2d: quantizer must be"),  # type: ignore[arg-type]
        (lambda: OrPool2d(kernel_size=0), "OrPool2d: kernel_size must be >= 1"),
    ],
)
def test_bad_sizes_name_the_argument(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_bad_inputs_name_the_layer_and_the_shape() -> None:
    layer = LogicConv2d(3, 4, kernel_size=5, padding=0)
    expected = r"LogicConv2d: expected input \[batch, 3, height, width\], got \[2, 4, 6, 6\]"
    with pytest.raises(ValueError, match=expected):
        layer(torch.zeros(2, 4, 6, 6))
    with pytest.raises(ValueError, match="LogicConv2d: kernel height 5 is larger than the padded input height 4"):
        layer(torch.zeros(2, 3, 4, 6))
    with pytest.raises(ValueError, match="OrPool2d: expected input"):
        OrPool2d()(torch.zeros(2, 6))
    with pytest.raises(bitlogic.InputError, match="LUTConv2d: a torch.uint8 input must hold bits"):
        LUTConv2d(1, 2)(torch.full((1, 1, 3, 3), 2, dtype=torch.uint8))


def test_leaves_read_channels_per_tree_distinct_channels() -> None:
    torch.manual_seed(7)
    layer = LogicConv2d(10, 50, kernel_size=(2, 3), depth=4, channels_per_tree=3)
    leaves = layer.leaves
    assert leaves.shape == (50, 16, 3) and leaves.dtype == torch.int64
    assert all(len(set(tree[:, 0].tolist())) <= 3 for tree in leaves)
    assert int(leaves[..., 1].max()) == 1 and int(leaves[..., 2].max()) == 2 and int(leaves.min()) == 0
    assert len(set(leaves[..., 0].reshape(-1).tolist())) == 10  # every channel read by some tree
    few = LogicConv2d(2, 20, depth=3, channels_per_tree=5)  # fewer channels than asked: all of them
    assert set(few.leaves[..., 0].reshape(-1).tolist()) == {0, 1}


def test_residual_init_starts_each_tree_near_its_first_leaf() -> None:
    torch.manual_seed(8)
    layer = LogicConv2d(2, 6, kernel_size=3, depth=2).train()
    assert layer.ops().eq(3).all()
    x = images(2, 2, 5, 5, seed=8)
    out = layer(x)
    first = layer.leaves[:, 0]  # gate 0 passes leaf 0, gate 2 passes gate 0's output
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for o in range(6):
        c, dy, dx = first[o].tolist()
        assert (out[:, o] - padded[:, c, dy : dy + 5, dx : dx + 5]).abs().max() < 0.4


# Encoders on images.


def test_thermometer_on_images_puts_threshold_t_of_channel_c_at_t_times_c() -> None:
    x = images(4, 3, 5, 6, seed=9)
    encoder = Thermometer(2, 0.0, 1.0)
    out = encoder(x)
    assert out.shape == (4, 6, 5, 6)
    for t, c in itertools.product(range(2), range(3)):
        assert torch.equal(out[:, t * 3 + c], (x[:, c] > encoder.thresholds[t]).float())
    flat = torch.rand(4, 7)
    assert encoder(flat).shape == (4, 7, 2)  # flat features as before


@pytest.mark.parametrize("learnable", [False, True])
def test_distributive_thermometer_fits_images_per_channel(learnable: bool) -> None:
    g = torch.Generator().manual_seed(10)
    x = torch.rand(50, 2, 4, 5, generator=g)
    x[:, 1] = x[:, 1] * 10 + 5  # a channel of another range
    encoder = DistributiveThermometer(3, learnable=learnable).fit(x)
    assert encoder.fitted_image == (2, 4, 5)
    thresholds = encoder.thresholds
    assert thresholds.shape == (2, 3)
    for c in range(2):
        pixels = x[:, c].reshape(-1).numpy()
        expected = np.quantile(pixels, [0.25, 0.5, 0.75], method="lower").astype(np.float32)
        assert np.allclose(thresholds[c].detach().numpy(), expected, atol=1e-6 if learnable else 0)
    out = encoder(x)
    assert out.shape == (50, 6, 4, 5)
    for t, c in itertools.product(range(3), range(2)):
        assert torch.equal(out[:, t * 2 + c], (x[:, c] > thresholds[c, t]).float())
    # The image shape is in the state_dict: a fresh encoder takes it with the thresholds.
    fresh = DistributiveThermometer(3, learnable=learnable)
    fresh.load_state_dict(encoder.state_dict())
    assert fresh.fitted_image == (2, 4, 5) and torch.equal(fresh(x), out)
    rows = encoder.feature_thresholds(40)
    assert rows.shape == (40, 3) and np.array_equal(rows[20:], np.repeat(thresholds[1:].detach().numpy(), 20, 0))
    with pytest.raises(ValueError, match=r"fitted on images of 2 channels"):
        encoder(torch.rand(3, 40))
    if learnable:
        xr = x.clone().requires_grad_()
        encoder.train()(xr).sum().backward()
        assert xr.grad is not None and encoder.raw_thresholds.grad is not None
        assert encoder.raw_thresholds.grad.shape == (2, 3)


def test_distributive_thermometer_on_flat_features_is_unchanged() -> None:
    x = torch.rand(30, 6)
    encoder = DistributiveThermometer(2).fit(x)
    assert encoder.fitted_image is None and encoder.thresholds.shape == (6, 2)
    assert encoder(x).shape == (30, 6, 2)
    state = encoder.state_dict()
    del state["image_shape"]  # a state_dict saved before encoders took images
    fresh = DistributiveThermometer(2)
    fresh.load_state_dict(state)
    assert fresh.fitted_image is None and torch.equal(fresh.thresholds, encoder.thresholds)


def test_an_image_with_a_nan_names_its_sample_and_feature() -> None:
    x = torch.rand(3, 2, 4, 4)
    x[1, 1, 2, 3] = float("nan")
    feature = (1 * 4 + 2) * 4 + 3
    with pytest.raises(bitlogic.InputError, match=f"sample 1, feature {feature} is NaN"):
        Thermometer(2)(x)
    encoder = DistributiveThermometer(2).fit(torch.rand(5, 2, 4, 4))
    with pytest.raises(bitlogic.InputError, match=f"sample 1, feature {feature} is NaN"):
        encoder(x)
    with pytest.raises(bitlogic.InputError, match=f"sample 1, feature {feature} is NaN"):
        DistributiveThermometer(2).fit(x)


# The binary fold, checked in torch alone: the exported weights and thresholds on the dot give the eval() bits.


def randomize_norms(model: nn.Module, seed: int) -> None:
    """Trained-looking batch norms: random statistics, scales of both signs (some zero), random shifts."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(n, generator=g) * 3)
                m.running_var.copy_(torch.rand(n, generator=g) * 10 + 0.1)
                scale = torch.randn(n, generator=g)
                scale[torch.rand(n, generator=g) < 0.15] = 0.0
                m.weight.copy_(scale)
                m.bias.copy_(torch.randn(n, generator=g) * 2)


@pytest.mark.parametrize("pad_value", [1.0, 0.0])
@pytest.mark.parametrize("norm", [True, False])
def test_binary_conv_folds_into_thresholds_on_the_dot(pad_value: float, norm: bool) -> None:
    torch.manual_seed(11)
    conv = BinaryConv2d(3, 16, 3, stride=1, padding=2, pad_value=pad_value)
    block: list[nn.Module] = [conv] + ([nn.BatchNorm2d(16)] if norm else []) + [Sign()]
    model = nn.Sequential(*block)
    randomize_norms(model, 11)
    model.eval()
    part = conv.export_spatial(block[1:], (3, 5, 4))
    layer = part.layer
    assert isinstance(layer, bitlogic.spec.ConvBinaryLayer)
    assert part.consumed == len(block) - 1 and part.out_shape == (16, 7, 6)
    assert (part.in_width, part.out_width) == (60, 16 * 42)
    x = images(64, 3, 5, 4, seed=11, bits=True)
    with torch.no_grad():
        expected = model(x)
        w = torch.from_numpy(layer.weights.astype(np.float32) * 2 - 1).view(16, 3, 3, 3)
        dot = torch.nn.functional.conv2d(torch.nn.functional.pad(2 * x - 1, (2, 2, 2, 2), value=pad_value), w)
    got = (dot >= torch.from_numpy(layer.thresholds).view(1, 16, 1, 1).float()).float()
    assert torch.equal(got, expected)
    assert layer.pad_value == int(pad_value)


# Export: the order of the parts and where the image shape comes from.


def conv_model(encoder: nn.Module | None, channels: int) -> nn.Sequential:
    head: list[nn.Module] = [nn.Flatten(), LogicLayer(4 * 3 * 3, 12), GroupSum(3)]
    front = [encoder] if encoder is not None else []
    return nn.Sequential(*front, LogicConv2d(channels, 4, kernel_size=3, padding=1), OrPool2d(), *head)


@pytest.mark.parametrize(
    ("modules", "input_shape", "message"),
    [
        (lambda: conv_model(Thermometer(2), 6), None, r"layer 1 \(LogicConv2d\): needs the shape of its input image: "
                                                      r"pass bitlogic.compile\(model, input_shape="),
        (lambda: conv_model(None, 3), None, r"layer 0 \(LogicConv2d\): needs the shape"),
        (lambda: conv_model(Thermometer(2), 6), (2, 6, 6), r"layer 1 \(LogicConv2d\): expects 6 input channels, but"),
        (lambda: conv_model(DistributiveThermometer(2).fit(torch.rand(4, 3, 6, 6)), 6), (3, 6, 7),
         r"fitted on images of shape \(3, 6, 6\), but input_shape is \(3, 6, 7\)"),
        (lambda: conv_model(DistributiveThermometer(2).fit(torch.rand(4, 108)), 6), (3, 6, 6),
         "fitted on flat features, but input_shape"),
        (lambda: nn.Sequential(LogicConv2d(2, 4), nn.Flatten(), LogicConv2d(4, 4), GroupSum(2)), (2, 4, 4),
         r"layer 2 \(LogicConv2d\): a spatial layer after Flatten or a dense layer"),
        (lambda: nn.Sequential(LogicConv2d(2, 4), LogicLayer(64, 8), GroupSum(2)), (2, 4, 4),
         r"layer 1 \(LogicLayer\): reads flat bits; put nn.Flatten"),
        (lambda: nn.Sequential(LogicConv2d(2, 4), GroupSum(2)), (2, 4, 4), r"GroupSum reads flat bits"),
        (lambda: nn.Sequential(BinaryConv2d(2, 4, 3), nn.MaxPool2d(2), nn.BatchNorm2d(4), Sign(), nn.Flatten(),
                               GroupSum(2)), (2, 6, 6), r"layer 0 \(BinaryConv2d\): must be followed by \[BatchNorm2d "
                                                        r"and\] Sign.*pool after Sign"),
        (lambda: nn.Sequential(BinaryConv2d(2, 4, 3), nn.BatchNorm2d(5), Sign(), nn.Flatten(), GroupSum(2)),
         (2, 6, 6), "followed by a BatchNorm2d of 5 features"),
        (lambda: nn.Sequential(LogicConv2d(2, 4), nn.MaxPool2d(2, padding=1), nn.Flatten(), GroupSum(2)), (2, 4, 4),
         r"layer 1 \(MaxPool2d\): only MaxPool2d without padding"),
        (lambda: nn.Sequential(LogicConv2d(2, 4, padding=0, kernel_size=5), nn.Flatten(), GroupSum(2)), (2, 4, 4),
         r"layer 0 \(LogicConv2d\): kernel_size: expected a window height of at most 4"),
        (lambda: nn.Sequential(LogicLayer(8, 8), GroupSum(2)), (2, 2, 2), r"layer 0 \(LogicLayer\): reads flat bits"),
        (lambda: nn.Sequential(nn.Flatten(), LogicLayer(8, 8), GroupSum(2)), (2, 2, 3),
         r"the first layer reads 8 bits, but input_shape=\(2, 2, 3\) holds 12"),
        (lambda: nn.Sequential(nn.Flatten(), LogicLayer(8, 8), GroupSum(2)), (2, 2), "input_shape: expected the"),
    ],
)
def test_unexportable_conv_models_say_why(modules: object, input_shape: tuple[int, ...] | None, message: str) -> None:
    torch.manual_seed(12)
    with pytest.raises(ExportError, match=message):
        bitlogic.compile(modules(), input_shape=input_shape)  # type: ignore[operator]


# Training.


def test_a_tiny_logic_conv_model_learns() -> None:
    torch.manual_seed(13)
    model = nn.Sequential(
        LogicConv2d(1, 16, kernel_size=3, depth=2, padding=1, init="random"), OrPool2d(),
        nn.Flatten(), LogicLayer(16 * 4 * 4, 64, init="random"), GroupSum(2, tau=4.0),
    )
    g = torch.Generator().manual_seed(13)
    # Two classes: bright in the top half or in the bottom half.
    y = torch.randint(0, 2, (128,), generator=g)
    x = torch.rand(128, 1, 8, 8, generator=g) * 0.3
    top = torch.arange(8).view(1, 1, 8, 1) < 4
    x = torch.where(top == (y.view(-1, 1, 1, 1) == 0), x + 0.7, x)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5, losses


# Exactness: the compiled network gives the model's eval() scores bit for bit.

SHAPE = (3, 7, 9)


def exact_model(family: str, seed: int) -> tuple[nn.Sequential, torch.Tensor, tuple[int, int, int] | None]:
    """A model of ``family``, its test images and the ``input_shape`` compile needs (None: the encoder knows)."""
    torch.manual_seed(seed)
    c, h, w = SHAPE
    x = images(300, c, h, w, seed=seed)
    on = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed)) < 0.1
    x[on] = 0.5  # on a threshold, where > and >= differ
    if family == "logic":
        encoder = DistributiveThermometer(2).fit(images(200, c, h, w, seed=seed + 1))
        body: list[nn.Module] = [
            encoder,
            LogicConv2d(6, 8, kernel_size=3, depth=3, padding=1, init="random"), OrPool2d(),  # 7x9 -> 7x9 -> 3x4
            LogicConv2d(8, 6, kernel_size=(2, 3), depth=2, stride=(1, 2), padding=(0, 1), init="random",
                        parametrization="inputwise"),  # 3x4 -> 2x2
            nn.Flatten(), LogicLayer(24, 30, init="random"),
        ]
        return nn.Sequential(*body, GroupSum(3, tau=3.0)), x, None
    if family == "lut":
        body = [
            Thermometer(2, 0.0, 1.0),
            LUTConv2d(6, 10, kernel_size=3, n=4, stride=2, padding=1, channels_per_tree=3),  # 7x9 -> 4x5
            nn.MaxPool2d((2, 3), stride=1),  # -> 3x3
            LUTConv2d(10, 6, kernel_size=(3, 1), n=6, padding=(1, 0)),  # -> 3x3
            nn.Flatten(), LogicLayer(54, 30, init="random"),
        ]
        return nn.Sequential(*body, GroupSum(3, tau=3.0)), x, SHAPE
    if family in ("binary-one-pad", "binary-zero-pad"):
        pad = 1.0 if family == "binary-one-pad" else 0.0
        body = [
            Thermometer(3, 0.0, 1.0),
            BinaryConv2d(9, 12, 3, padding=1, pad_value=pad), nn.BatchNorm2d(12), Sign(),  # 7x9
            nn.MaxPool2d(3, stride=2),  # -> 3x4
            BinaryConv2d(12, 8, (2, 3), stride=(1, 2), padding=(1, 2), pad_value=pad, quantizer="approx_sign"),
            Sign(),  # -> 4x3
            nn.Flatten(), LogicLayer(96, 30, init="random"),
        ]
        return nn.Sequential(*body, GroupSum(3, tau=3.0)), x, SHAPE
    assert family == "mixed"
    bits = (x > 0.5).to(torch.float32)
    body = [
        LogicConv2d(3, 8, kernel_size=3, depth=2, stride=(2, 1), padding=(1, 0), init="random"),  # -> 4x7
        BinaryConv2d(8, 10, 3, padding=1), nn.BatchNorm2d(10), Sign(),  # -> 4x7
        OrPool2d(kernel_size=(2, 3), stride=(2, 2)),  # -> 2x3
        LUTConv2d(10, 6, kernel_size=2, n=3, padding=1),  # -> 3x4
        nn.Flatten(), *binary_dense(72, 40), LUTLayer(40, 30, n=3),
    ]
    return nn.Sequential(*body, GroupSum(3, tau=3.0)), bits, SHAPE


def binary_dense(i: int, o: int) -> list[nn.Module]:
    return [BinaryLinear(i, o), nn.BatchNorm1d(o), Sign()]


EXACT_FAMILIES = ["logic", "lut", "binary-one-pad", "binary-zero-pad", "mixed"]


def check_exact(model: nn.Sequential, x: torch.Tensor, input_shape: tuple[int, int, int] | None) -> bitlogic.Network:
    """The exported layers give the eval() scores bit for bit, in the numpy reference and in the engine."""
    model.eval()
    with torch.no_grad():
        expected = model(x)
    parts = export_parts(model, input_shape)
    rows = x.reshape(x.shape[0], -1).numpy()
    if isinstance(parts.encoder, bitlogic.BitsEncoder):
        rows = rows.astype(bool)
    reference = bitlogic.reference.scores(parts.encoder, parts.layers, parts.num_classes, rows)
    assert torch.equal(torch.from_numpy(reference).to(torch.float32) / parts.tau, expected)
    net = bitlogic.compile(model, input_shape=input_shape)
    got = torch.from_numpy(net.scores(rows)).to(torch.float32) / parts.tau
    assert torch.equal(got, expected), (got - expected).abs().max()
    assert np.array_equal(net.predict(rows), bitlogic.reference.network_predict(net, rows))
    return net


@pytest.mark.parametrize("family", EXACT_FAMILIES)
@pytest.mark.parametrize("seed", [0, 1])
def test_random_conv_models_export_exactly(family: str, seed: int) -> None:
    model, x, shape = exact_model(family, seed)
    randomize_norms(model, seed)
    net = check_exact(model, x, shape)
    kinds = {type(layer).__name__ for layer in net.layers}
    assert kinds & {"ConvGateLayer", "ConvLutLayer", "ConvBinaryLayer"}


@pytest.mark.parametrize("family", EXACT_FAMILIES)
def test_trained_conv_models_export_exactly(family: str) -> None:
    model, x, shape = exact_model(family, 20)
    randomize_norms(model, 20)
    train_steps(model, x[:64], steps=5, seed=20)
    check_exact(model, x, shape)


def test_an_encoder_fitted_on_images_carries_the_shape_through_a_state_dict() -> None:
    model, x, _ = exact_model("logic", 30)
    net = bitlogic.compile(model)
    assert isinstance(net.encoder, bitlogic.ThresholdEncoder) and net.encoder.bit_order == "threshold_major"
    assert net.encoder.thresholds.shape == (3 * 7 * 9, 2)
    reloaded, _, _ = exact_model("logic", 31)
    reloaded[0] = DistributiveThermometer(2)  # unfitted: the state_dict brings thresholds and image shape
    reloaded.load_state_dict(model.state_dict())
    assert bitlogic.compile(reloaded) == net
    assert bitlogic.compile(model, input_shape=SHAPE) == net  # the same shape given twice


def test_dense_models_on_images_export_in_threshold_major_order() -> None:
    torch.manual_seed(32)
    x = images(200, 2, 3, 4, seed=32)
    model = nn.Sequential(Thermometer(3, 0.0, 1.0), nn.Flatten(), LogicLayer(72, 40), GroupSum(4, tau=2.0))
    net = check_exact(model, x, (2, 3, 4))
    assert isinstance(net.encoder, bitlogic.ThresholdEncoder) and net.encoder.bit_order == "threshold_major"
    flat = nn.Sequential(Thermometer(3, 0.0, 1.0), nn.Flatten(), LogicLayer(72, 40), GroupSum(4, tau=2.0))
    flat.load_state_dict(model.state_dict())
    flat_net = check_exact(flat, x.reshape(200, 24), None)  # flat features: feature-major, as before
    assert isinstance(flat_net.encoder, bitlogic.ThresholdEncoder) and flat_net.encoder.bit_order == "feature_major"


def test_a_first_unflatten_gives_the_image_shape() -> None:
    torch.manual_seed(33)
    model = nn.Sequential(nn.Unflatten(1, (2, 5, 6)), LogicConv2d(2, 4, init="random"), OrPool2d(), nn.Flatten(),
                          LogicLayer(4 * 2 * 3, 12), GroupSum(3))
    x = (torch.rand(100, 60, generator=torch.Generator().manual_seed(33)) > 0.5).to(torch.float32)
    check_exact(model, x, None)
    check_exact(model, x, (2, 5, 6))
    with pytest.raises(ExportError, match=r"layer 0 \(Unflatten\): makes images \(2, 5, 6\), but input_shape"):
        bitlogic.compile(model, input_shape=(1, 10, 6))
    with pytest.raises(ExportError, match=r"only a first Unflatten\(1, \(C, H, W\)\)"):
        bitlogic.compile(nn.Sequential(nn.Unflatten(1, (10, 6)), nn.Flatten(), LogicLayer(60, 3), GroupSum(3)))
