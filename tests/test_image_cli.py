"""``embedxfer embed`` and ``evaluate`` on a folder of images (one sub-folder per class)."""

import json
import signal
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("PIL")
pytest.importorskip("efficientnet_lite_pytorch")

from _image_samples import texture_patches
from PIL import Image
from test_cli import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Two classes of scikit-image texture patches as PNG files, class per sub-folder."""
    root = tmp_path_factory.mktemp("images")
    (X, y), _ = texture_patches()
    for i, (patch, label) in enumerate(zip(X, y)):
        if label in ("brick", "grass"):
            (root / label).mkdir(exist_ok=True)
            Image.fromarray(patch).save(root / label / f"{i:02d}.png")
    (root / "brick" / "notes.txt").write_text("not an image, skipped")
    return root


def test_embed_a_folder_of_images(image_folder, tmp_path):
    out = tmp_path / "vectors.npy"
    proc = run_cli(
        "embed",
        image_folder,
        "-o",
        out,
        "-m",
        "efficientnet-lite0",
        "--device",
        "cpu",
        "--chunk-size",
        "3",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    vectors = np.load(out)
    listing = (tmp_path / "vectors.npy.paths.txt").read_text().splitlines()
    assert vectors.shape == (8, 1280) and vectors.dtype == np.float32 and len(listing) == 8
    assert all(p.endswith(".png") for p in listing) and listing == sorted(listing)
    from embedxfer import ImageEmbedder

    expected = ImageEmbedder(device="cpu").fit().transform(listing[:2])
    np.testing.assert_allclose(vectors[:2], expected, rtol=1e-4, atol=1e-5)
    assert "8 x 1280 float32" in proc.stderr


def test_evaluate_a_folder_of_images(image_folder, tmp_path):
    proc = run_cli(
        "evaluate",
        "--data",
        image_folder,
        "--cv",
        "2",
        "--device",
        "cpu",
        "--json",
        tmp_path / "r.json",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "8 images, 2 classes (brick 4, grass 4)" in proc.stderr
    results = {r["features"]: r for r in json.loads((tmp_path / "r.json").read_text())["results"]}
    assert results["efficientnet-lite0 + logistic regression"]["accuracy"] >= 0.85
    assert results["majority class"]["accuracy"] == pytest.approx(0.5)
    assert "| raw pixels 32x32 + logistic regression |" in proc.stdout


def test_folder_without_class_sub_folders_is_a_one_line_error(image_folder, tmp_path):
    proc = run_cli("evaluate", "--data", image_folder / "brick", cwd=tmp_path)
    assert_one_line_error(proc, "one sub-folder of images per class")
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli(
        "embed", empty, "-o", tmp_path / "x.npy", "-m", "efficientnet-lite0", cwd=tmp_path
    )
    assert_one_line_error(proc, "holds no image files")


def test_evaluate_refuses_a_report_inside_the_image_folder(image_folder, tmp_path):
    report = image_folder / "grass" / "report.json"
    proc = run_cli("evaluate", "--data", image_folder, "--json", report, cwd=tmp_path)
    assert_one_line_error(proc, "inside the data folder")
    assert not report.exists()


@pytest.fixture
def embedded(image_folder, tmp_path):
    """An image folder embedded into ``vectors.npy``; its ``rerun`` args embed one class."""
    out = tmp_path / "vectors.npy"
    args = ["embed", image_folder, "-o", out, "-m", "efficientnet-lite0", "--device", "cpu"]
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    listing = tmp_path / "vectors.npy.paths.txt"
    return SimpleNamespace(
        out=out,
        listing=listing,
        before=(out.read_bytes(), listing.read_text()),
        rerun=[*args[:1], image_folder / "brick", *args[2:], "--force"],
    )


def test_a_matrix_and_its_listing_are_replaced_together(embedded, tmp_path, monkeypatch):
    from embedxfer.cli import _output

    out, listing, before = embedded.out, embedded.listing, embedded.before
    # A rerun on one class only, stopped (SIGTERM) just as the matrix is renamed in.
    commit = _output.NpyWriter.commit

    def commit_then_terminated(writer):
        commit(writer)
        signal.raise_signal(signal.SIGTERM)

    monkeypatch.setattr(_output.NpyWriter, "commit", commit_then_terminated)
    proc = run_cli(*embedded.rerun, cwd=tmp_path)
    assert proc.returncode == 143, proc.stderr
    # The signal waited for the listing: the new matrix has its own listing.
    rows = listing.read_text().splitlines()
    assert len(rows) == len(np.load(out)) == 4 and all("/brick/" in row for row in rows)
    assert (out.read_bytes(), listing.read_text()) != before
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_failed_rerun_keeps_the_earlier_matrix_and_listing(embedded, tmp_path, monkeypatch):
    from embedxfer.cli import _output

    out, listing, before = embedded.out, embedded.listing, embedded.before

    def commit_fails(writer):
        raise OSError("No space left on device")

    monkeypatch.setattr(_output.NpyWriter, "commit", commit_fails)
    proc = run_cli(*embedded.rerun, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1] == "embedxfer: error: No space left on device"
    assert (out.read_bytes(), listing.read_text()) == before
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
