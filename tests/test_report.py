"""aelab.report: a self-contained HTML file that a real browser renders without errors."""

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread

from aelab import plots
from aelab.report import Section, format_table, model_report, render_html, write_report

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
rng = np.random.default_rng(0)


def synthetic_sections() -> list[Section]:
    images = rng.random((16, 28, 28)).astype(np.float32)
    y = np.r_[np.zeros(300), np.ones(30)]
    scores = y * 2 + rng.normal(size=330)
    return [
        Section(
            "Compression <k>",
            "Reconstruction error against the code size.\n\nA second paragraph & more.",
            tables={"MSE": [{"model": "PCA", "k": 2, "mse": 0.0561}, {"model": "AE", "k": 2, "mse": 0.0432}]},
            figures={
                "reconstructions": plots.reconstruction_grid(images, images[::-1]),
                "MSE vs k": plots.line_plot({"PCA": ([2, 8, 32], [0.06, 0.03, 0.01])}, xlabel="k", ylabel="MSE"),
            },
        ),
        Section(
            "Anomaly detection",
            "Scores and ROC.",
            tables={"metrics": [{"score": "mse", "auc": 0.93}]},
            figures={
                "histogram": plots.score_histogram(scores, y, threshold=1.0),
                "ROC": plots.roc_curves(y, {"mse": scores}),
                "rejection": plots.roc_curves(y, scores, rejection=True),
            },
        ),
        Section(
            "Generation",
            "Samples, interpolation and the manifold.",
            figures={
                "samples": plots.image_grid(images),
                "interpolation": plots.interpolation_strip(images[:8], steps=8),
                "manifold": plots.latent_manifold(images, np.linspace(-2, 2, 4)),
                "latent": plots.latent_scatter(rng.normal(size=(200, 5)), np.arange(200) % 4),
                "training": plots.training_curves({"loss": [3, 2, 1], "val_loss": [3, 2.5, 2]}),
            },
        ),
        Section("Notes only", "A section with text and nothing else."),
    ]


def test_format_table_aligns_columns():
    rows = [{"model": "PCA", "mse": 0.012345678}, {"model": "dense AE", "mse": 1.5, "k": 8}, {"model": "x", "mse": "n/a"}]
    lines = format_table(rows, title="T").splitlines()
    assert lines == [
        "T",
        "model     mse      k",
        "--------  -------  -",
        "PCA       0.01235",  # 4 significant digits; a missing cell is empty
        "dense AE      1.5  8",  # numbers right-aligned
        "x         n/a",  # text left-aligned
    ]


def _data_uris(text: str) -> list[str]:
    return re.findall(r'src="data:image/png;base64,([^"]+)"', text)


def test_render_html_is_self_contained_and_escaped():
    sections = synthetic_sections()
    text = render_html(sections, title="Report <1> & co")
    assert "<title>Report &lt;1&gt; &amp; co</title>" in text
    assert "<h2>Compression &lt;k&gt;</h2>" in text
    assert "<p>A second paragraph &amp; more.</p>" in text
    assert "<script" not in text.lower()
    # no reference outside the file: only data URIs and in-page anchors
    refs = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert refs and all(r.startswith(("data:image/png;base64,", "#")) for r in refs)
    assert "http://" not in text and "https://" not in text and "url(" not in text
    pngs = _data_uris(text)
    assert len(pngs) == sum(len(s.figures) for s in sections) == 10
    for png in pngs:  # every embedded figure decodes to a real image
        assert imread(io.BytesIO(base64.b64decode(png)), format="png").shape[0] > 50
    assert text.count("<table>") == 2
    assert "<td>0.0561</td>" in text


def _bad_figure() -> Figure:
    fig = Figure()
    fig.text(0.5, 0.5, r"$\frac{$")  # broken mathtext: fails only when rendered
    return fig


def test_write_report_is_atomic(tmp_path):
    out = tmp_path / "report.html"
    write_report(out, [Section("First")], title="v1")
    before = out.read_text()
    with pytest.raises(ValueError):
        write_report(out, [Section("Second", figures={"bad": _bad_figure()})], title="v2")
    assert out.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # no temp file left behind
    write_report(out, [Section("Second")], title="v2")
    assert "<h2>Second</h2>" in out.read_text()


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "/usr/bin/chromium"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "Headless Chromium is needed to check that the HTML report renders, but it is not installed. "
        "Install it with: apt-get install -y chromium (CI does this in .ci/run)."
    )


# Appended to a copy of the report (the report itself has no JavaScript): after
# load, log how many images decoded, any broken one, and every resource fetched.
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  imgs.filter(i => !i.complete || i.naturalWidth === 0).forEach(i => console.error("broken image: " + i.alt));
  const fetched = performance.getEntriesByType("resource").map(r => r.name).filter(n => !n.startsWith("data:"));
  fetched.forEach(n => console.error("network request: " + n));
  console.log("probe: " + imgs.filter(i => i.naturalWidth > 0).length + " images decoded");
});
</script>"""


def _run_chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *extra, page.resolve().as_uri(),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc


def _console(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


def assert_report_renders(report: Path, section_titles: list[str], n_images: int, tmp_path: Path, artifact: str):
    """Open ``report`` in headless Chromium: no console error, every section in the DOM, every image decoded."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"{artifact}.png"
    shot.unlink(missing_ok=True)
    proc = _run_chromium(report, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,4000")
    assert _console(proc) == [], "the report logged console messages"
    assert shot.exists(), "chromium wrote no screenshot"
    pixels = imread(shot)
    assert pixels.shape[:2] == (4000, 1280) and pixels.std() > 0.01, "the screenshot is blank"

    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    proc = _run_chromium(probe, tmp_path / "profile", "--dump-dom")
    console = _console(proc)
    assert len(console) == 1 and f'"probe: {n_images} images decoded"' in console[0], console
    dom = proc.stdout
    for title in section_titles:
        assert f"<h2>{title}</h2>" in dom, f"section {title!r} is missing from the rendered page"


def test_report_renders_in_chromium(tmp_path):
    sections = synthetic_sections()
    report = write_report(tmp_path / "report.html", sections, title="synthetic report")
    titles = ["Compression &lt;k&gt;", "Anomaly detection", "Generation", "Notes only"]
    assert_report_renders(report, titles, 10, tmp_path, "report-synthetic")


def test_model_report_sections(tmp_path):
    import aelab

    X = rng.random((200, 8, 8)).astype(np.float32)
    labels = (np.arange(200) % 10 == 0).astype(int)
    est = aelab.Autoencoder(latent_dim=3, hidden=(16,), arch="dense", epochs=2, random_state=0).fit(X)
    sections = model_report(est, X, labels)
    titles = [s.title for s in sections]
    assert titles == ["Model: Autoencoder", "Reconstructions", "Anomaly scores", "Decisions with guarantees",
                      "Why flagged", "Latent space", "Training"]
    scores = sections[2]
    assert set(scores.figures) == {"score histogram", "ROC curve (log FPR)"}
    metrics = {r["metric"]: r["value"] for r in scores.tables["detection metrics"]}
    assert metrics["ROC AUC"] == pytest.approx(aelab.metrics.roc_auc(labels, est.decision_function(X)))
    assert "TPR at FPR 0.001" in metrics
    settings = {r["parameter"]: r["value"] for r in sections[0].tables["settings"]}
    assert settings["latent_dim"] == 3


def test_model_report_names_binary_classes():
    import aelab

    X = rng.normal(size=(100, 4)).astype(np.float32)
    y = (np.arange(100) % 5 == 0).astype(int)
    sections = model_report(aelab.PCA(n_components=2).fit(X), X, y)
    hist = sections[1].figures["score histogram"]
    legend = [t.get_text() for t in hist.axes[0].get_legend().get_texts()]
    assert legend[:2] == ["normal (0) (n=80)", "anomaly (1) (n=20)"]


def test_model_report_tabular_without_labels():
    import aelab

    X = rng.normal(size=(100, 5)).astype(np.float32)
    sections = model_report(aelab.PCA(n_components=2).fit(X), X)
    titles = [s.title for s in sections]
    assert "Reconstructions" not in titles and "Training" not in titles  # no images, no training history
    assert titles[:4] == ["Model: PCA", "Anomaly scores", "Why flagged", "Latent space"]
    assert "ROC curve (log FPR)" not in sections[1].figures


def test_model_report_label_mismatch():
    import aelab
    from aelab.exceptions import DataError

    X = rng.normal(size=(50, 4)).astype(np.float32)
    with pytest.raises(DataError, match="one label per row"):
        model_report(aelab.PCA(n_components=2).fit(X), X, labels=[0, 1])


def test_model_report_draws_reconstructions_only_for_images(tmp_path):
    import aelab

    rng_ = np.random.default_rng(0)
    events = np.stack([rng_.exponential(30, (200, 19)), rng_.normal(size=(200, 19)),
                       rng_.uniform(-3, 3, (200, 19))], -1).astype(np.float32)  # (n, 19, 3): a table of objects
    est = aelab.Autoencoder(epochs=1, random_state=0).fit(events)
    titles = [s.title for s in model_report(est, events)]
    assert est.input_kind_ == "table" and "Reconstructions" not in titles and "Anomaly scores" in titles
    square = rng_.normal(size=(200, 16)).astype(np.float32)  # 16 columns, not 4 x 4 images
    assert "Reconstructions" not in [s.title for s in model_report(aelab.Autoencoder(epochs=1).fit(square), square)]
