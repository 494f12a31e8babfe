"""Encoder/decoder backbones: shapes, the build contract, linearity, and that they train."""

import pytest
import torch
from torch import nn

from aelab.exceptions import ConfigError
from aelab.nn import BACKBONES, build_decoder, build_encoder, inception_split, pad_to_multiple

CHANNELS = (8, 16, 32)  # three stages: inputs are padded to a multiple of 8


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny convolutions run faster on one thread, and CI machines are shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_all_backbones_listed():
    assert BACKBONES == ("plain", "vgg", "resnet", "inception", "dense")


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("size, padded", [(28, 32), (40, 40)])
def test_shapes(backbone, in_channels, size, padded):
    x = pad_to_multiple(torch.randn(2, in_channels, size, size), 2 ** len(CHANNELS))
    assert x.shape[-2:] == (padded, padded)
    encoder = build_encoder(backbone, in_channels, CHANNELS)
    decoder = build_decoder(backbone, CHANNELS, in_channels)
    h = x
    for stage, c in zip(encoder, CHANNELS):  # each stage halves H and W exactly
        side = h.shape[-1] // 2
        h = stage(h)
        assert h.shape == (2, c, side, side)
    assert len(encoder) == len(CHANNELS)
    assert decoder(h).shape == x.shape


@pytest.mark.parametrize("backbone", BACKBONES)
def test_decoder_contract(backbone):
    decoder = build_decoder(backbone, (8, 16), 2)
    assert not any(isinstance(m, nn.modules.conv._ConvTransposeNd) for m in decoder.modules())
    last = decoder[-1]
    assert isinstance(last, nn.Conv2d) and last.out_channels == 2  # no activation after it
    upsamples = [m for m in decoder.modules() if isinstance(m, nn.Upsample)]
    assert len(upsamples) == 2 and all(u.mode == "nearest" for u in upsamples)
    assert decoder(torch.zeros(1, 16, 3, 5)).shape == (1, 2, 12, 20)  # non-square works too


@pytest.mark.parametrize("backbone", BACKBONES)
def test_activation_class_is_honoured(backbone):
    model = nn.Sequential(build_encoder(backbone, 1, (8, 16), nn.Tanh),
                          build_decoder(backbone, (8, 16), 1, nn.Tanh))
    kinds = {type(m) for m in model.modules()}
    assert nn.Tanh in kinds and nn.ReLU not in kinds


@pytest.mark.parametrize("backbone", BACKBONES)
def test_identity_activation_gives_an_affine_autoencoder(backbone):
    def autoencoder(act):
        torch.manual_seed(0)
        return nn.Sequential(build_encoder(backbone, 1, (8, 16), act),
                             build_decoder(backbone, (8, 16), 1, act)).double()

    x, y = torch.randn(2, 3, 1, 16, 16, dtype=torch.float64)
    zero = torch.zeros_like(x)
    linear = autoencoder(nn.Identity)
    assert not any(isinstance(m, nn.MaxPool2d) for m in linear.modules())  # max-pool isn't linear
    torch.testing.assert_close(linear(x + y) + linear(zero), linear(x) + linear(y))
    relu = autoencoder(nn.ReLU)
    assert not torch.allclose(relu(x + y) + relu(zero), relu(x) + relu(y))


@pytest.mark.parametrize("activation, gain", [(nn.ReLU, 2 ** 0.5), (nn.Tanh, 5 / 3), (nn.Identity, 1.0)])
def test_he_initialisation_with_the_activation_gain(activation, gain):
    torch.manual_seed(0)
    encoder = build_encoder("vgg", 3, (64, 64), activation)
    convs = [m for m in encoder.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs[1:]:  # 64 * 9 inputs per output: std = gain / sqrt(576)
        assert conv.weight.std().item() == pytest.approx(gain / 24, rel=0.05)
        assert conv.bias.abs().max().item() == 0


def test_bad_arguments():
    with pytest.raises(ConfigError, match="backbone='mobilenet'"):
        build_encoder("mobilenet", 1, (8,))
    with pytest.raises(ConfigError, match="backbone='mobilenet'"):
        build_decoder("mobilenet", (8,), 1)
    with pytest.raises(ConfigError, match="non-empty"):
        build_encoder("plain", 1, ())
    with pytest.raises(ConfigError, match="not an instance"):
        build_encoder("plain", 1, (8,), nn.ReLU())
    with pytest.raises(ConfigError, match="at least 4 channels"):
        build_encoder("inception", 1, (3, 8))


@pytest.mark.parametrize("c", [4, 5, 8, 17, 256])
def test_inception_split(c):
    parts = inception_split(c)
    assert sum(parts) == c and min(parts) >= 1
    assert inception_split(256) == (64, 128, 32, 32)  # GoogLeNet (3a)


def _blobs(n=48, size=16, seed=0):
    """Smooth images: one Gaussian blob each at a random place."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, 1, 1, generator=g) * (size - 6) + 3
    yy, xx = torch.meshgrid(torch.arange(size * 1.0), torch.arange(size * 1.0), indexing="ij")
    return torch.exp(-((yy - centre[:, 0]) ** 2 + (xx - centre[:, 1]) ** 2) / 8).unsqueeze(1)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_short_training_lowers_the_loss(backbone):
    torch.manual_seed(0)
    x = _blobs()
    model = nn.Sequential(build_encoder(backbone, 1, (8, 16)), build_decoder(backbone, (8, 16), 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = nn.functional.mse_loss(model(x), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::5]
