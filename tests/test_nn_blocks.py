"""Shapes and behaviour of the convolutional building blocks in aelab.nn."""

import warnings

import pytest
import torch
from torch import nn

from aelab.exceptions import ConfigError
from aelab.nn import (
    BottleneckBypassWarning,
    ConvAct,
    DenseBlock,
    InceptionModule,
    LeNetStack,
    ResidualBlock,
    Transition,
    UNet,
    VGGStack,
    build_encoder,
    check_anomaly_use,
    make_pool,
    pad_to_multiple,
)

torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny convolutions run faster on one thread, and CI machines are shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

# Every block, built with a given activation class and pooling kind, on 4 input channels.
BLOCKS = {
    "lenet": lambda act, pool: LeNetStack(4, (6, 8), 3, activation=act, pool=pool),
    "vgg": lambda act, pool: VGGStack(4, (6, 8), 2, activation=act, pool=pool),
    "residual": lambda act, pool: ResidualBlock(4, 6, stride=2, activation=act),
    "inception": lambda act, pool: InceptionModule(4, 2, 4, 2, 2, activation=act, pool=pool),
    "inception_naive": lambda act, pool: InceptionModule(4, 2, 4, 2, 2, reduce=False,
                                                         activation=act, pool=pool),
    "dense": lambda act, pool: DenseBlock(4, 3, 2, activation=act),
    "transition": lambda act, pool: Transition(4, 6, activation=act, pool="avg"),
    "unet": lambda act, pool: UNet(4, channels=(4, 8), activation=act, pool=pool),
}


def test_conv_act_options():
    plain = ConvAct(3, 5)
    assert [type(m) for m in plain] == [nn.Conv2d, nn.ReLU]
    assert plain[0].bias is not None and plain.out_channels == 5
    bn = ConvAct(3, 5, activation=nn.Tanh, batch_norm=True)
    assert [type(m) for m in bn] == [nn.Conv2d, nn.BatchNorm2d, nn.Tanh]
    assert bn[0].bias is None  # batch norm makes the bias redundant
    assert [type(m) for m in ConvAct(3, 5, activation=None)] == [nn.Conv2d]
    assert ConvAct(3, 5, 3, stride=2)(torch.zeros(1, 3, 10, 10)).shape == (1, 5, 5, 5)


def test_make_pool_and_pad():
    assert isinstance(make_pool("max"), nn.MaxPool2d)
    assert isinstance(make_pool("avg"), nn.AvgPool2d)
    with pytest.raises(ConfigError, match="pool='sum'"):
        make_pool("sum")
    x = torch.ones(2, 1, 27, 30)
    padded = pad_to_multiple(x, 8)
    assert padded.shape == (2, 1, 32, 32)
    assert padded[..., :27, :30].eq(1).all() and padded[..., 27:, :].eq(0).all()


def test_lenet5_shapes():
    lenet5 = LeNetStack(1, (6, 16), kernel_size=5, padding=0, activation=nn.Tanh, pool="avg")
    assert lenet5(torch.zeros(2, 1, 32, 32)).shape == (2, 16, 5, 5)  # C1-S2-C3-S4 of LeNet-5
    assert lenet5.out_channels == 16
    same = LeNetStack(1, (6, 16))
    assert same(torch.zeros(1, 1, 28, 28)).shape == (1, 16, 7, 7)


def test_vgg_stack_structure():
    vgg = VGGStack(3, (8, 16, 32), convs_per_stage=3)
    convs = [m for m in vgg.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 9 and all(c.kernel_size == (3, 3) for c in convs)
    assert vgg(torch.zeros(1, 3, 40, 40)).shape == (1, 32, 5, 5)
    assert VGGStack(3, (8,), pool=None)(torch.zeros(1, 3, 7, 9)).shape == (1, 8, 7, 9)
    with pytest.raises(ConfigError, match="at least one stage"):
        VGGStack(3, ())


@pytest.mark.parametrize("cout, stride, projected", [(8, 1, False), (16, 1, True), (8, 2, True)])
def test_residual_shortcut(cout, stride, projected):
    block = ResidualBlock(8, cout, stride=stride)
    assert isinstance(block.shortcut, nn.Identity) is not projected
    assert block(torch.zeros(1, 8, 12, 12)).shape == (1, cout, 12 // stride, 12 // stride)


def test_residual_identity_skip_carries_input():
    block = ResidualBlock(4)
    for p in block.body.parameters():
        nn.init.zeros_(p)
    x = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(block(x), torch.relu(x))  # the body adds nothing: act(x)


def test_inception_reduce_channels_and_defaults():
    block = InceptionModule(16, 8, 12, 4, 6)
    assert block.out_channels == 8 + 12 + 4 + 6
    assert block(torch.zeros(2, 16, 9, 11)).shape == (2, 30, 9, 11)
    reduce3 = block.branches[1][0][0]
    reduce5 = block.branches[2][0][0]
    assert (reduce3.out_channels, reduce5.out_channels) == (6, 2)  # c3 // 2, c5 // 2
    explicit = InceptionModule(16, 8, 12, 4, 6, c3_reduce=3, c5_reduce=1)
    assert (explicit.branches[1][0][0].out_channels, explicit.branches[2][0][0].out_channels) == (3, 1)


def test_inception_naive_passes_pooled_input():
    block = InceptionModule(5, 2, 3, 4, cpool=99, reduce=False)
    assert block.out_channels == 2 + 3 + 4 + 5  # cpool is ignored: the pool keeps in_channels
    x = torch.randn(1, 5, 8, 8)
    y = block(x)
    assert y.shape == (1, 14, 8, 8)
    torch.testing.assert_close(y[:, 9:], nn.functional.max_pool2d(x, 3, 1, 1))
    with pytest.raises(ConfigError, match="reduce=True"):
        InceptionModule(5, 2, 3, 4, 1, reduce=False, c3_reduce=2)


def test_dense_block_concatenates_input_and_growth():
    block = DenseBlock(4, growth_rate=3, n_layers=3)
    assert block.out_channels == 13
    assert [layer[0].in_channels for layer in block.layers] == [4, 7, 10]
    x = torch.randn(2, 4, 5, 7)
    y = block(x)
    assert y.shape == (2, 13, 5, 7)
    torch.testing.assert_close(y[:, :4], x)  # the input is passed on unchanged
    with pytest.raises(ConfigError, match="growth_rate"):
        DenseBlock(4, 0, 2)


def test_transition_halves():
    t = Transition(13, 6)
    assert isinstance(t[-1], nn.AvgPool2d) and t.out_channels == 6
    assert t(torch.zeros(1, 13, 8, 10)).shape == (1, 6, 4, 5)
    assert Transition(13, 6, pool=None)(torch.zeros(1, 13, 8, 10)).shape == (1, 6, 8, 10)


@pytest.mark.parametrize("size", [(28, 28), (40, 40), (27, 31)])
@pytest.mark.parametrize("channels", [1, 3])
def test_unet_any_size(size, channels):
    net = UNet(channels, channels=(4, 8, 16))
    assert net(torch.randn(2, channels, *size)).shape == (2, channels, *size)
    assert UNet(channels, 2, channels=(4, 8))(torch.zeros(1, channels, *size)).shape == (1, 2, *size)
    with pytest.raises(ConfigError, match="two levels"):
        UNet(channels, channels=(4,))


def test_unet_skips_bypass_the_bottleneck():
    net = UNet(1, channels=(4, 8))
    for p in net.bottleneck.parameters():
        nn.init.zeros_(p)  # nothing passes through the bottleneck...
    a, b = torch.rand(1, 1, 12, 12), torch.rand(1, 1, 12, 12)
    assert not torch.allclose(net(a), net(b))  # ...and the output still follows the input


def test_unet_anomaly_warning():
    net = UNet(1, channels=(4, 8))
    with pytest.warns(BottleneckBypassWarning, match="denoising"):
        assert net.warn_anomaly()
    with pytest.warns(BottleneckBypassWarning, match="UNet"):
        assert check_anomaly_use(nn.Sequential(nn.Identity(), net))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not check_anomaly_use(build_encoder("resnet", 1, (4, 8)))


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_blocks_use_the_activation_given(name):
    block = BLOCKS[name](nn.Tanh, "max")
    kinds = {type(m) for m in block.modules()}
    assert nn.Tanh in kinds and nn.ReLU not in kinds


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_blocks_are_affine_with_identity_and_avg_pool(name):
    block = BLOCKS[name](nn.Identity, "avg").double()
    x, y = torch.randn(2, 1, 4, 8, 8, dtype=torch.float64)
    zero = torch.zeros_like(x)
    torch.testing.assert_close(block(x + y) + block(zero), block(x) + block(y))
    relu = BLOCKS[name](nn.ReLU, "max").double()  # the check can fail: ReLU is not affine
    assert not torch.allclose(relu(x + y) + relu(zero), relu(x) + relu(y))
