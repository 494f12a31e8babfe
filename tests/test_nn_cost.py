"""aelab.nn.cost against hand-computed parameter and MAC counts for every block."""

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from aelab.exceptions import ConfigError, NotFittedError
from aelab.nn import (
    DenseBlock,
    InceptionModule,
    LeNetStack,
    ResidualBlock,
    Transition,
    UNet,
    VGGStack,
    cost,
    format_cost,
)


def conv_params(cin, cout, k, groups=1, bias=True):
    return cout * (cin // groups) * k * k + (cout if bias else 0)


def conv_macs(cin, cout, k, h, w, groups=1):
    return h * w * cout * (cin // groups) * k * k


def counts(model, shape):
    d = cost(model, shape, latency_runs=0)
    assert d["params"] == sum(p.numel() for p in model.parameters())
    return d["params"], d["macs"]


def test_conv_strided_and_grouped():
    assert counts(nn.Conv2d(3, 8, 3, stride=2, padding=1), (3, 28, 28)) == (
        conv_params(3, 8, 3), conv_macs(3, 8, 3, 14, 14))
    assert counts(nn.Conv2d(8, 16, 3, padding=1, groups=4), (8, 10, 10)) == (
        conv_params(8, 16, 3, groups=4), conv_macs(8, 16, 3, 10, 10, groups=4))


def test_conv_transpose():
    # every input pixel is scattered into out_c * k * k outputs
    assert counts(nn.ConvTranspose2d(4, 2, 2, stride=2), (4, 5, 5)) == (4 * 2 * 4 + 2, 25 * 4 * 2 * 4)


def test_linear_and_extra_dimensions():
    assert counts(nn.Linear(784, 32), 784) == (784 * 32 + 32, 784 * 32)
    assert counts(nn.Linear(10, 3), (5, 10)) == (33, 5 * 10 * 3)  # applied to each of 5 rows


def test_shared_layer_counts_params_once_and_macs_per_call():
    layer = nn.Linear(6, 6)
    d = cost(nn.Sequential(layer, nn.ReLU(), layer), 6, latency_runs=0)
    assert (d["params"], d["macs"]) == (42, 72)


def test_inception_3a_matches_googlenet_table_1():
    # Szegedy et al. 2014, Table 1, inception (3a): 28x28x192 input, "159K params, 128M ops"
    block = InceptionModule(192, 64, 128, 32, 32, c3_reduce=96, c5_reduce=16)
    d = cost(block, (192, 28, 28), latency_runs=0)
    weights = 192 * 64 + 192 * 96 + 9 * 96 * 128 + 192 * 16 + 25 * 16 * 32 + 192 * 32
    assert weights == 163_328  # = 159.5 Ki: the paper's K is 1024 and counts weights only
    assert abs(weights / 1024 - 159) < 1
    assert d["params"] == weights + (64 + 96 + 128 + 16 + 32 + 32)  # 163,696 with biases
    assert d["macs"] == 28 * 28 * weights == 128_049_152  # every weight is used at 784 pixels
    assert abs(d["macs"] / 128e6 - 1) < 0.03
    assert block.out_channels == 256


def test_inception_naive_costs_over_twice():
    naive = InceptionModule(192, 64, 128, 32, 32, reduce=False)
    reduced = InceptionModule(192, 64, 128, 32, 32, c3_reduce=96, c5_reduce=16)
    n, r = cost(naive, (192, 28, 28), latency_runs=0), cost(reduced, (192, 28, 28), latency_runs=0)
    weights = 192 * 64 + 9 * 192 * 128 + 25 * 192 * 32
    assert n["params"] == weights + 64 + 128 + 32 == 387_296
    assert n["macs"] == 28 * 28 * weights
    assert n["params"] > 2 * r["params"] and n["macs"] > 2 * r["macs"]
    assert naive.out_channels == 64 + 128 + 32 + 192


def test_residual_without_projection():
    p = 2 * conv_params(8, 8, 3)
    m = 2 * conv_macs(8, 8, 3, 16, 16)
    assert counts(ResidualBlock(8), (8, 16, 16)) == (p, m)


def test_residual_with_projection():
    p = conv_params(8, 16, 3) + conv_params(16, 16, 3) + conv_params(8, 16, 1)
    m = conv_macs(8, 16, 3, 8, 8) + conv_macs(16, 16, 3, 8, 8) + conv_macs(8, 16, 1, 8, 8)
    assert counts(ResidualBlock(8, 16, stride=2), (8, 16, 16)) == (p, m)


def test_dense_block_and_transition():
    ins = [4 + 3 * i for i in range(3)]
    p = sum(conv_params(c, 3, 3) for c in ins)
    m = sum(conv_macs(c, 3, 3, 8, 8) for c in ins)
    assert counts(DenseBlock(4, 3, 3), (4, 8, 8)) == (p, m)
    assert counts(Transition(13, 6), (13, 8, 8)) == (conv_params(13, 6, 1), conv_macs(13, 6, 1, 8, 8))


def test_vgg_stack():
    p = conv_params(3, 8, 3) + conv_params(8, 8, 3) + conv_params(8, 16, 3) + conv_params(16, 16, 3)
    m = (conv_macs(3, 8, 3, 32, 32) + conv_macs(8, 8, 3, 32, 32)
         + conv_macs(8, 16, 3, 16, 16) + conv_macs(16, 16, 3, 16, 16))
    assert counts(VGGStack(3, (8, 16), 2), (3, 32, 32)) == (p, m)


def test_lenet5_feature_extractor():
    # C1: 6@28x28 from 32x32 (156 params), C3: 16@10x10 (dense table: 2416 params)
    lenet5 = LeNetStack(1, (6, 16), kernel_size=5, padding=0, activation=nn.Tanh, pool="avg")
    assert counts(lenet5, (1, 32, 32)) == (156 + 2416, 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150)


@pytest.mark.parametrize("levels", [(4, 8), (4, 8, 16)])
def test_unet_params_and_macs(levels):
    side = 16
    convs = []  # (cin, cout, kernel, side) of every convolution
    ins = (1,) + levels[:-2]
    for i, (cin, c) in enumerate(zip(ins, levels[:-1])):  # two 3x3 convs per level
        convs += [(cin, c, 3, side >> i), (c, c, 3, side >> i)]
    deepest = side >> (len(levels) - 1)
    convs += [(levels[-2], levels[-1], 3, deepest), (levels[-1], levels[-1], 3, deepest)]
    for i in range(len(levels) - 2, -1, -1):  # up: concat(upsampled deeper, skip)
        convs += [(levels[i + 1] + levels[i], levels[i], 3, side >> i), (levels[i], levels[i], 3, side >> i)]
    convs.append((levels[0], 1, 1, side))  # 1x1 head
    expected = (sum(conv_params(a, b, k) for a, b, k, _ in convs),
                sum(conv_macs(a, b, k, s, s) for a, b, k, s in convs))
    assert counts(UNet(1, channels=levels), (1, side, side)) == expected


def test_activation_bytes_skips_views_and_inplace():
    def net(inplace):
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=inplace), nn.Identity(),
                             nn.Flatten(), nn.Linear(4 * 8 * 8, 10), nn.Tanh())
    def activation_bytes(model):
        return cost(model, (1, 8, 8), latency_runs=0)["activation_bytes"]

    conv_out, linear_out = 4 * 8 * 8, 10  # conv, [ReLU], Linear and Tanh outputs count
    assert activation_bytes(net(True)) == 4 * (conv_out + 2 * linear_out)
    assert activation_bytes(net(False)) == 4 * (2 * conv_out + 2 * linear_out)
    assert activation_bytes(net(False).double()) == 8 * (2 * conv_out + 2 * linear_out)


def test_other_ops_pool_window_and_elementwise():
    d = cost(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                           nn.Upsample(scale_factor=2)), (1, 8, 8), latency_runs=0)
    relu, pool, upsample = 4 * 64, 4 * 16 * 4, 4 * 64
    assert d["other_ops"] == relu + pool + upsample
    assert d["macs"] == conv_macs(1, 4, 3, 8, 8)


def test_latency_and_mode_restored():
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5))
    model.train()
    d = cost(model, 8, latency_runs=3)
    assert isinstance(d["latency_ms"], float) and d["latency_ms"] > 0
    assert model.training and all(m.training for m in model.modules())
    assert cost(model, 8, latency_runs=0)["latency_ms"] is None
    with pytest.raises(ConfigError, match="latency_runs"):
        cost(model, 8, latency_runs=-1)


@dataclass
class _Output:
    recon: torch.Tensor
    mu: torch.Tensor


class _TinyVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc, self.dec = nn.Linear(12, 2), nn.Linear(2, 12)

    def forward(self, x):
        mu = self.enc(x)
        return _Output(self.dec(mu), mu)


class _FittedEstimator:
    """The estimator protocol cost relies on: ``model_`` and ``model_input_shape_``."""

    def __init__(self, model=None, shape=None):
        if model is not None:
            self.model_, self.model_input_shape_ = model, shape

    def fit(self, X):  # pragma: no cover - presence of fit marks an estimator
        return self


def test_estimator_and_dataclass_output():
    d = cost(_FittedEstimator(_TinyVAE(), (12,)), latency_runs=0)
    assert d["input_shape"] == (12,)
    assert (d["params"], d["macs"]) == (12 * 2 + 2 + 2 * 12 + 12, 12 * 2 + 2 * 12)
    assert cost(_FittedEstimator(_TinyVAE(), (99,)), input_shape=(3, 12), latency_runs=0)["macs"] == 3 * 48


def test_input_errors():
    with pytest.raises(ConfigError, match="input_shape is required"):
        cost(nn.Linear(2, 2))
    with pytest.raises(NotFittedError, match="call fit"):
        cost(_FittedEstimator())
    with pytest.raises(ConfigError, match="model_input_shape_"):
        cost(_FittedEstimator(nn.Linear(2, 2), None))
    with pytest.raises(ConfigError, match="nn.Module or a fitted estimator"):
        cost("model.safetensors")


def test_format_cost_table():
    d = cost(InceptionModule(192, 64, 128, 32, 32, c3_reduce=96, c5_reduce=16), (192, 28, 28),
             latency_runs=0)
    text = format_cost({**d, "latency_ms": 0.25})
    lines = text.splitlines()
    assert len(lines) == 6
    assert "163,696" in text and "128,049,152" in text and "128.0 M" in text and "192x28x28" in text
    assert lines[-1].startswith("latency") and lines[-1].endswith("0.250 ms")
    # the exact values are right-aligned in one column
    ends = {line.index(value) + len(value) for line, value in
            zip(lines[1:4], ("163,696", "128,049,152", f"{d['other_ops']:,}"))}
    assert len(ends) == 1
    assert "not measured" in format_cost({**d, "latency_ms": None})
