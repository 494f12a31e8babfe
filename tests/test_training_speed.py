"""The training step's cost, without timing anything: operations per step against the best hand-written
loop, the fused losses and clipping against their PyTorch definitions, and the auto batch rule.

Before aelab 0.3 a default dense-AE step ran 461 ATen operations against the hand loop's 348
(1.32x: PyTorch's per-tensor gradient clipping on the CPU and the trimmed loss's separate
ops); benchmarks/train_speed.py measures what that costs in time.
"""

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import aelab
from aelab import losses
from aelab.exceptions import ConfigError
from aelab.models import build_model
from aelab.training import clip_grad_norm

DENSE = dict(arch="dense", hidden=(256, 64), latent_dim=16, batch_size=256, validation_fraction=0,
             early_stopping=False, scaler="none", random_state=0)


def aten_ops(fn) -> int:
    with profile(activities=[ProfilerActivity.CPU]) as p:
        fn()
    return sum(e.count for e in p.key_averages() if e.key.startswith("aten::"))


@pytest.mark.parametrize("trim", ["auto", 0])
def test_a_training_step_runs_about_the_operations_of_the_hand_written_loop(digits, trim):
    X = (digits[0][:2048] / 255.0).astype(np.float32)  # 8 steps of 256 per epoch
    cfg = aelab.Autoencoder(**DENSE, epochs=1).fit(X).fitted_.model_cfg
    Xt = torch.from_numpy(X.reshape(len(X), -1))

    def hand():
        torch.manual_seed(0)
        model = build_model(cfg)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
        perm = torch.randperm(len(Xt))
        for i in range(0, len(Xt), 256):
            xb = Xt[perm[i : i + 256]]
            loss = torch.nn.functional.mse_loss(model(xb).x_hat, xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    per_step_hand = aten_ops(hand) / 8
    # two fits that differ by 4 epochs (32 steps): the difference is the steps alone
    fit = lambda epochs: aelab.Autoencoder(**DENSE, epochs=epochs, trim=trim).fit(X)  # noqa: E731
    per_step_aelab = (aten_ops(lambda: fit(5)) - aten_ops(lambda: fit(1))) / 32
    assert per_step_aelab <= 1.1 * per_step_hand, (per_step_aelab, per_step_hand)


@pytest.mark.parametrize("trim", [0.0, 0.1, 0.3])
def test_trimmed_mse_is_the_trimmed_mean_of_per_sample_mse(trim):
    torch.manual_seed(0)
    a = torch.randn(37, 3, 8, requires_grad=True)
    b = torch.randn(37, 3, 8)
    fused = losses.trimmed_mse(a, b, trim)
    (g_fused,) = torch.autograd.grad(fused, a)
    plain = losses.trimmed_mean(((a - b) ** 2).flatten(1).mean(1), trim)
    (g_plain,) = torch.autograd.grad(plain, a)
    assert fused.item() == pytest.approx(plain.item(), rel=1e-6)
    torch.testing.assert_close(g_fused, g_plain)
    keep = max(1, round((1 - trim) * 37))
    x = a.detach().double().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: losses._TrimmedMSE.apply(t, b.double(), keep), (x,))
    assert torch.autograd.gradcheck(lambda t: losses._SquaredError.apply(t, b.double()), (x,))


@pytest.mark.parametrize("scale", [0.01, 100.0])
def test_cpu_gradient_clipping_follows_pytorchs_rule(scale):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s)) for s in ((5, 3), (3,), (4, 4))]
    for p in params:
        p.grad = scale * torch.randn_like(p)
    reference = [p.grad.clone() for p in params]
    ref_params = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for p, g in zip(ref_params, reference):
        p.grad = g
    torch.nn.utils.clip_grad_norm_(ref_params, 1.0)
    clip_grad_norm(params, 1.0)
    for p, r in zip(params, ref_params):
        torch.testing.assert_close(p.grad, r.grad)
    if scale > 1:
        assert float(torch.linalg.vector_norm(torch.cat([p.grad.reshape(-1) for p in params]))) == pytest.approx(1.0)


def test_auto_batch_takes_half_the_steps_for_the_same_epochs_on_large_sets():
    ae = aelab.Autoencoder()
    wide, narrow = ae._train_config(5400, 6000), ae._train_config(4500, 5000)
    assert (wide.batch_size, wide.lr) == (64, 2e-3) and (narrow.batch_size, narrow.lr) == (32, 1e-3)
    assert wide.epochs == aelab.Autoencoder(batch_size=32)._train_config(5400, 6000).epochs == 18
    # an explicit batch size keeps the 3,000-step rule and lr 1e-3
    explicit = aelab.Autoencoder(batch_size=128)._train_config(5400, 6000)
    assert (explicit.batch_size, explicit.lr, explicit.epochs) == (128, 1e-3, 70)
    assert aelab.Autoencoder(lr=5e-4)._train_config(5400, 6000).lr == 5e-4
    for bad in ({"batch_size": 0}, {"batch_size": "big"}, {"lr": "fast"}, {"lr": -1.0}):
        with pytest.raises(ConfigError, match="batch_size|lr"):
            aelab.Autoencoder(**bad).fit(np.zeros((10, 3), np.float32))
