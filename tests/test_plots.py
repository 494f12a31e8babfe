"""aelab.plots: every function returns a Figure whose contents match its input."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from aelab import plots
from aelab.exceptions import DataError

rng = np.random.default_rng(0)
IMAGES = rng.random((12, 28, 28)).astype(np.float32)


def _image(fig, i=0):
    return fig.axes[i].get_images()[0].get_array()


def test_no_pyplot_state(tmp_path):
    """Plotting never imports pyplot (global figure state, GUI backends): checked in a fresh interpreter."""
    code = (
        "import sys, numpy as np; from aelab import plots; "
        "plots.image_grid(np.zeros((4, 8, 8))).savefig(sys.argv[1]); "
        "plots.roc_curves([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.4]); "
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(plots.__file__).parents[1])}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "grid.png")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "grid.png").stat().st_size > 0


@pytest.mark.parametrize(
    "X",
    [IMAGES, IMAGES.reshape(12, 784), IMAGES[:, None], np.repeat(IMAGES[:, None], 3, axis=1)],
    ids=["nhw", "flat", "n1hw", "n3hw"],
)
def test_as_images_accepts_the_image_layouts(X):
    out = plots.as_images(X)
    assert out.shape[:3] == (12, 28, 28)


def test_as_images_rejects_tabular_data():
    assert plots.as_images(rng.random((5, 7))) is None
    with pytest.raises(DataError, match="not a batch of images"):
        plots.image_grid(rng.random((5, 7)))


def test_reconstruction_grid_two_rows_of_n_images():
    fig = plots.reconstruction_grid(IMAGES, IMAGES * 0.5, n=5, title="t")
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["original", "reconstruction"]
    for i in range(2):
        assert _image(fig, i).shape == (28, 5 * 29 - 1)  # 5 tiles with 1-pixel gaps
    # one grey scale for both rows: the originals' range
    assert fig.axes[1].get_images()[0].get_clim() == pytest.approx((IMAGES[:5].min(), IMAGES[:5].max()))


def test_reconstruction_grid_shape_mismatch():
    with pytest.raises(DataError, match="same shape"):
        plots.reconstruction_grid(IMAGES, IMAGES[:, :14, :14])


def test_image_rows_one_titled_row_each():
    fig = plots.image_rows({"clean": IMAGES, "noisy": IMAGES + 0.1, "denoised": IMAGES}, n=4)
    assert [ax.get_title() for ax in fig.axes] == ["clean", "noisy", "denoised"]
    assert all(_image(fig, i).shape == (28, 4 * 29 - 1) for i in range(3))


def test_image_grid_tiles_all_images():
    fig = plots.image_grid(IMAGES, ncols=4)
    assert _image(fig).shape == (3 * 29 - 1, 4 * 29 - 1)
    assert np.isnan(np.ma.filled(_image(fig), np.nan)[28]).all()  # separator row


def test_interpolation_strip_rows():
    fig = plots.interpolation_strip(IMAGES, steps=6)
    assert _image(fig).shape == (2 * 29 - 1, 6 * 29 - 1)
    with pytest.raises(DataError, match="rows of 5"):
        plots.interpolation_strip(IMAGES, steps=5)


def test_latent_manifold_grid_and_ticks():
    grid = np.linspace(-2, 2, 4)
    fig = plots.latent_manifold(IMAGES[:16 - 4].tolist() + IMAGES[:4].tolist(), grid)
    ax = fig.axes[0]
    assert _image(fig).shape == (4 * 29 - 1, 4 * 29 - 1)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z1", "z2")
    assert [t.get_text() for t in ax.get_xticklabels()][0] == "-2"
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "2"  # top row: largest z2
    with pytest.raises(DataError, match="4x4=16"):
        plots.latent_manifold(IMAGES, grid)


def test_latent_scatter_one_collection_per_label():
    Z = rng.normal(size=(300, 2))
    fig = plots.latent_scatter(Z, labels=np.arange(300) % 3)
    ax = fig.axes[0]
    assert len(ax.collections) == 3
    assert ax.get_legend() is not None
    assert sum(len(c.get_offsets()) for c in ax.collections) == 300


def test_latent_scatter_projects_wide_codes_and_subsamples():
    Z = rng.normal(size=(500, 8))
    fig = plots.latent_scatter(Z, max_points=100)
    ax = fig.axes[0]
    assert len(ax.collections) == 1
    assert len(ax.collections[0].get_offsets()) == 100
    assert ax.get_xlabel() == "PC 1 of z"


def test_latent_scatter_label_count_mismatch():
    with pytest.raises(DataError, match="one label per code"):
        plots.latent_scatter(rng.normal(size=(10, 2)), labels=[0, 1])


def test_score_histogram_one_step_per_class_log_y():
    scores = np.concatenate([rng.normal(size=200), rng.normal(3, size=20)])
    labels = np.r_[np.zeros(200), np.ones(20)]
    fig = plots.score_histogram(scores, labels, threshold=1.5)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert len(ax.patches) == 2  # one step outline per class
    assert len(ax.lines) == 1  # the threshold
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "class 0.0 (n=200)" in texts and "class 1.0 (n=20)" in texts


def test_score_histogram_class_names():
    fig = plots.score_histogram([1.0, 2.0, 3.0], [0, 0, 1], names={0: "normal", 1: "anomaly"})
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["normal (n=2)", "anomaly (n=1)"]


def test_histograms_rejects_empty():
    with pytest.raises(DataError):
        plots.histograms({"a": []})


def test_roc_curves_log_fpr_axis():
    y = np.r_[np.zeros(500), np.ones(50)]
    s = y + rng.normal(size=550)
    fig = plots.roc_curves(y, {"good": s, "random": rng.normal(size=550)})
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert len(ax.lines) == 3  # two curves and the random-guess diagonal
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0].startswith("good (AUC 0.")
    x, _ = ax.lines[0].get_data()
    assert (x > 0).all()  # FPR = 0 cannot sit on a log axis


def test_roc_curves_background_rejection():
    y = np.r_[np.zeros(500), np.ones(50)]
    fig = plots.roc_curves(y, y + rng.normal(size=550), rejection=True)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xscale() == "linear"
    tpr, rejection = ax.lines[0].get_data()
    assert (rejection >= 1).all() and tpr.max() <= 1


def test_training_curves_one_line_per_series():
    fig = plots.training_curves({"loss": [3, 2, 1], "val_loss": [3.5, 2.5, 2], "lr": []})
    ax = fig.axes[0]
    assert len(ax.lines) == 2
    assert ax.get_yscale() == "log"
    assert list(ax.lines[0].get_xdata()) == [1, 2, 3]


def test_training_curves_linear_scale_for_negative_losses():
    fig = plots.training_curves({"loss": [-1.0, -2.0]})
    assert fig.axes[0].get_yscale() == "linear"


def test_training_curves_empty_history():
    with pytest.raises(DataError, match="fit"):
        plots.training_curves({"loss": []})


def test_line_plot_annotations_and_scales():
    fig = plots.line_plot(
        {"pca": ([2, 8, 32], [0.05, 0.03, 0.01])}, xlabel="k", ylabel="MSE", logx=True, annotate={"pca": ["a", "b", "c"]}
    )
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"
    assert [t.get_text() for t in ax.texts] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "8", "32"]  # the measured k, not powers of ten


def test_figures_render_to_png(tmp_path):
    fig = plots.reconstruction_grid(np.repeat(IMAGES[:, None], 3, axis=1), np.repeat(IMAGES[:, None], 3, axis=1))
    fig.savefig(tmp_path / "x.png")
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
