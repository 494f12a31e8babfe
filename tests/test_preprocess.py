"""The preprocessing module: the one implementation of the scaler and the layout, run by Python and ONNX."""

import numpy as np
import pytest
import torch

import aelab
from aelab.export.onnx import ScoreGraph
from aelab.preprocess import Preprocess
from aelab.preprocessing import RunningStats, Scaler


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("pre", ["none", "sum+sqrt", "log1p"])
def test_scaler_is_the_modules_arithmetic_by_hand(dtype, pre):
    rng = np.random.default_rng(0)
    X = (rng.random((300, 6)) * 200).astype(dtype)
    sc = Scaler("standard", True, pre).fit_data(X, RunningStats.of(X))
    Y = np.asarray(X, np.float64)
    if "sum" in pre:
        Y = Y / Y.sum(axis=1, keepdims=True)
    Y = np.sqrt(Y) if "sqrt" in pre else np.log1p(Y) if "log1p" in pre else X
    work = np.float64 if Y.dtype == np.float64 else np.float32
    by_hand = ((Y.astype(work) - sc.offset.astype(work)) / sc.scale.astype(work)).astype(np.float32)
    np.testing.assert_allclose(sc.transform(X), by_hand, rtol=1e-6, atol=1e-6)
    assert sc.transform(X).dtype == np.float32
    # the inverse undoes the scaling and the range compression, not the division by a sample's total
    undone = X.astype(np.float64) / (X.astype(np.float64).sum(1, keepdims=True) if "sum" in pre else 1.0)
    np.testing.assert_allclose(sc.inverse_transform(sc.transform(X)), undone, rtol=1e-4, atol=1e-5 * undone.max())


def test_python_and_the_onnx_graph_hold_the_same_module():
    """Channels-last images, per-pixel scaling: Fitted.to_net is the module, and the graph carries that module."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 8, 8, 3)).astype(np.float32)  # signed: not intensity images
    est = aelab.Autoencoder(input_kind="image", scaler="standard", epochs=1, random_state=0).fit(X)
    f = est.fitted_
    assert f.layout.channels_last and isinstance(f.preprocess, Preprocess)
    with torch.no_grad():
        direct = f.preprocess(torch.from_numpy(X)).numpy()
        np.testing.assert_array_equal(f.to_net(X), direct)
        assert direct.shape == (120, *f.net_shape)  # a dense network: channels first, then flattened
        np.testing.assert_array_equal(direct, np.moveaxis(f.scaler.transform(X), -1, 1).reshape(direct.shape))
        np.testing.assert_allclose(f.from_net(direct), X, rtol=1e-5, atol=1e-5)
        g = ScoreGraph(f, output="reconstruction")
        assert isinstance(g.prep, Preprocess) and g.prep.steps == f.preprocess.steps
        np.testing.assert_array_equal(g.prep(torch.from_numpy(X)).numpy(), direct)
        np.testing.assert_allclose(g(torch.from_numpy(X)).numpy(), est.reconstruct(X), rtol=1e-5, atol=1e-6)


def test_a_read_only_array_is_scaled_without_a_warning(tmp_path):
    X = np.random.default_rng(2).normal(size=(50, 4)).astype(np.float32)
    X.setflags(write=False)
    sc = Scaler("standard").fit(X)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = sc.transform(X)
    np.testing.assert_allclose(out.mean(0), 0, atol=1e-5)
