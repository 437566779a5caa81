"""ImageClassifier: fine-tuning with frozen early blocks, on real images.

The mechanics (what trains, persistence, determinism, augmentation) are
checked on a small convolutional network wrapped as an ImageModel, so that
they run in seconds; accuracy is checked with the real EfficientNet-Lite0
weights on scikit-image's bundled textures and on the shared hymenoptera set.
"""

import pickle
import subprocess
import sys

import numpy as np
import pytest
import skops.io as sio
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV

pytest.importorskip("torch")
pytest.importorskip("PIL")
pytest.importorskip("efficientnet_lite_pytorch")

import torch
from _image_data import hymenoptera
from _image_samples import texture_patches

from embedxfer import ImageClassifier
from embedxfer.image import ImageModel, ImagePreprocess, ImageReadError
from embedxfer.image._preprocess import random_resized_crop, to_rgb


def small_net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 5, stride=2),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 12, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.Conv2d(12, 16, 3),
        torch.nn.ReLU(),
    )


@pytest.fixture(scope="module")
def small_model():
    return ImageModel(small_net(), preprocess=ImagePreprocess(resize=40, crop=32), name="small")


@pytest.fixture(scope="module")
def patches():
    return texture_patches()


def fast(model, **params):
    defaults = {"epochs": 3, "batch_size": 8, "lr": 1e-2, "random_state": 0, "device": "cpu"}
    return ImageClassifier(model=model, **{**defaults, **params})


@pytest.mark.parametrize("unfreeze", [0, 2, "all"])
def test_unfreeze_trains_exactly_the_top_blocks(small_model, patches, unfreeze):
    (X, y), _ = patches
    before = {k: v.clone() for k, v in small_model.module.state_dict().items()}
    clf = fast(small_model, unfreeze=unfreeze).fit(X, y)
    # The shared pretrained module is never changed by fit.
    for key, value in small_model.module.state_dict().items():
        assert torch.equal(value, before[key]), key
    trained = clf._runtime.trained
    names = clf.trainable_parameters_
    assert clf.n_blocks_ == 7
    expected_first = {0: 7, 2: 5, "all": 0}[unfreeze]
    assert sorted({int(n.split(".")[1]) for n in names}) == [
        i for i in (0, 1, 3, 5) if i >= expected_first
    ]
    cut = clf._runtime.cut

    def pretrained(name):  # "2.weight" of the trained copy -> "{cut + 2}.weight"
        index, rest = name.split(".", 1)
        return before[f"{cut + int(index)}.{rest}"]

    changed = [n for n, p in trained.named_parameters() if not torch.equal(p, pretrained(n))]
    assert len(changed) == len(names)
    # Batch-norm statistics stay those of the pretrained network.
    if unfreeze == "all":
        assert torch.equal(trained[1].running_mean, before["1.running_mean"])
    assert clf.predict_proba(X[:4]).sum(1) == pytest.approx(np.ones(4), abs=1e-5)
    assert set(clf.predict(X)) <= set(clf.classes_)


def test_unfreeze_more_than_the_blocks_is_an_error(small_model, patches):
    (X, y), _ = patches
    with pytest.raises(ValueError, match="unfreeze=8 but the model has 7 blocks"):
        fast(small_model, unfreeze=8).fit(X, y)
    with pytest.raises(ValueError, match="'unfreeze' parameter .*Got 'top'"):
        fast(small_model, unfreeze="top").fit(X, y)


def test_fit_is_deterministic_and_leaves_torch_random_state_alone(small_model, patches):
    (X, y), (X_test, _) = patches
    state = torch.random.get_rng_state()
    a = fast(small_model, unfreeze=2, augment=True).fit(X, y).predict_proba(X_test)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = fast(small_model, unfreeze=2, augment=True).fit(X, y).predict_proba(X_test)
    np.testing.assert_array_equal(a, b)
    c = fast(small_model, unfreeze=2, augment=True, random_state=1).fit(X, y)
    assert not np.array_equal(c.predict_proba(X_test), a)


def test_early_stopping_class_weight_and_history(small_model, patches):
    (X, y), _ = patches
    clf = fast(
        small_model,
        unfreeze=1,
        epochs=30,
        head_epochs=0,
        validation_fraction=0.25,
        n_iter_no_change=1,
        class_weight="balanced",
    ).fit(X, y)
    assert len(clf.validation_loss_curve_) == clf.n_epochs_ <= 30
    assert clf.best_validation_loss_ == min(clf.validation_loss_curve_)
    with pytest.raises(ValueError, match="class_weight names the label 'cat'"):
        fast(small_model, class_weight={"cat": 2.0}).fit(X, y)


def test_head_trains_alone_first_then_with_the_unfrozen_blocks(small_model, patches):
    (X, y), _ = patches
    two_stage = fast(small_model, unfreeze=1, head_epochs=5, epochs=3).fit(X, y)
    assert two_stage.n_epochs_ == 8 and len(two_stage.loss_curve_) == 8
    one_stage = fast(small_model, unfreeze=1, head_epochs=0, epochs=3).fit(X, y)
    assert one_stage.n_epochs_ == 3
    # The head starts the fine-tuning stage trained: its first loss is far lower.
    assert two_stage.loss_curve_[5] < one_stage.loss_curve_[0]
    with pytest.raises(ValueError, match="'head_epochs' parameter .*Got -1"):
        fast(small_model, unfreeze=1, head_epochs=-1).fit(X, y)


def test_pickle_save_and_load_give_the_same_predictions(small_model, patches, tmp_path):
    (X, y), (X_test, _) = patches
    clf = fast(small_model, unfreeze=2).fit(X, y)
    expected = clf.predict_proba(X_test)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X_test), expected)
    folder = clf.save(tmp_path / "clf")
    files = sorted(p.name for p in (tmp_path / "clf").iterdir())
    assert files == ["config.json", "model.safetensors"]
    with pytest.raises(ValueError, match="model of your own"):
        ImageClassifier.load(folder)
    loaded = ImageClassifier.load(folder, model=small_model)
    np.testing.assert_array_equal(loaded.predict_proba(X_test), expected)
    np.testing.assert_array_equal(loaded.transform(X_test), clf.transform(X_test))
    assert clf.transform(X_test).shape == (len(X_test), 16)


@pytest.mark.slow  # a fresh interpreter loads torch and the model again
def test_lite0_saved_model_predicts_the_same_in_a_fresh_process(patches, tmp_path):
    (X, y), (X_test, _) = patches
    clf = ImageClassifier(unfreeze=1, epochs=1, batch_size=8, random_state=0, device="cpu")
    clf.fit(X[::4], y[::4])
    clf.save(tmp_path / "lite0")
    # skops (a network of your own, a torch module, is beyond what skops stores).
    blob = sio.dumps(clf)
    assert sio.get_untrusted_types(data=blob) == ["embedxfer.ImageClassifier"]
    restored = sio.loads(blob, trusted=["embedxfer.ImageClassifier"])
    np.testing.assert_allclose(restored.predict_proba(X_test), clf.predict_proba(X_test), atol=1e-6)
    np.save(tmp_path / "images.npy", np.stack([np.asarray(to_rgb(x)) for x in X_test[:3]]))
    np.save(
        tmp_path / "expected.npy", clf.predict_proba([np.asarray(to_rgb(x)) for x in X_test[:3]])
    )
    code = (
        "import numpy as np; from embedxfer import ImageClassifier; "
        f"clf = ImageClassifier.load({str(tmp_path / 'lite0')!r}); "
        f"p = clf.predict_proba(np.load({str(tmp_path / 'images.npy')!r})); "
        f"np.testing.assert_allclose(p, np.load({str(tmp_path / 'expected.npy')!r}), atol=1e-5)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_augmentation_crops_at_random_and_only_in_training(patches):
    spec = ImagePreprocess(resize=64, crop=48)
    image = to_rgb(patches[0][0][0])
    rng = np.random.default_rng(0)
    crops = [random_resized_crop(image, spec, rng) for _ in range(4)]
    assert all(c.shape == (3, 48, 48) and c.dtype == np.float32 for c in crops)
    assert not np.array_equal(crops[0], crops[1])
    centre = spec(image)
    assert centre.shape == (3, 48, 48)


def test_unreadable_training_image_is_named(small_model, patches, tmp_path):
    (X, y), _ = patches
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    X = list(X)
    X[5] = str(bad)
    with pytest.raises(ImageReadError, match=r"image 5 \('.*broken.png'\).*not an image format"):
        fast(small_model).fit(X, y)
    with pytest.raises(ValueError, match="X has 10 images but y has 9 labels"):
        fast(small_model).fit(X[:10], y[:9])


def test_contract_and_grid_search(small_model, patches):
    (X, y), (X_test, y_test) = patches
    clf = fast(small_model)
    with pytest.raises(NotFittedError):
        clf.predict(X_test)
    search = GridSearchCV(clf, {"unfreeze": [0, 1]}, cv=2).fit(X, y)
    assert search.best_params_["unfreeze"] in (0, 1)
    twin = clone(search.best_estimator_)
    with pytest.raises(NotFittedError):
        twin.predict(X_test)
    assert 0 <= search.score(X_test, y_test) <= 1


def test_lite0_head_only_tells_textures_apart(patches):
    (X, y), (X_test, y_test) = patches
    clf = ImageClassifier(random_state=0, device="cpu").fit(X, y)
    assert clf.n_blocks_ == 16 and clf.n_features_out_ == 1280
    assert clf.score(X_test, y_test) >= 0.9


@pytest.mark.gpu
def test_gpu_fine_tuning_runs_with_mixed_precision(patches):
    (X, y), (X_test, y_test) = patches
    clf = ImageClassifier(unfreeze=2, epochs=2, batch_size=8, random_state=0, device="cuda")
    clf.fit(X, y)
    assert clf.device_ == "cuda" and clf.score(X_test, y_test) >= 0.75


@pytest.mark.slow
def test_hymenoptera_fine_tuning_top_blocks():
    X, y = hymenoptera("train")
    X_val, y_val = hymenoptera("val")
    clf = ImageClassifier(unfreeze=2, random_state=0, device="cpu").fit(X, y)
    accuracy = clf.score(X_val, y_val)
    assert accuracy >= 0.95, accuracy
