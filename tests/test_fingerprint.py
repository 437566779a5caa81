"""Cache fingerprints and source identities never confuse different inputs."""

import warnings

import numpy as np
import pytest
from gensim.models import KeyedVectors

from embedxfer import EmbeddingCache, WordVectorEmbedder
from embedxfer._core.fingerprint import NotCachedWarning, callable_fingerprint
from embedxfer.text._vector_sources import source_identity

DOCS = ["alpha beta", "beta gamma delta", "gamma", "delta alpha alpha"]


def small_kv(words, seed=0, dim=8):
    kv = KeyedVectors(dim)
    kv.add_vectors(
        list(words), np.random.default_rng(seed).normal(size=(len(words), dim)).astype(np.float32)
    )
    return kv


def first_word(text):
    return text.split()[:1]


def last_word(text):
    return text.split()[-1:]


class Splitter:
    def __init__(self, sep):
        self.sep = sep

    def __call__(self, text):
        return text.split(self.sep)


def test_two_lambda_tokenizers_never_share_cached_vectors(tmp_path):
    kv = small_kv(["alpha", "beta", "gamma", "delta"])
    cache = EmbeddingCache(tmp_path / "cache")
    first = WordVectorEmbedder(kv, tokenizer=lambda t: t.split()[:1], cache=cache)
    last = WordVectorEmbedder(kv, tokenizer=lambda t: t.split()[-1:], cache=cache)
    with pytest.warns(NotCachedWarning, match="cannot be fingerprinted safely"):
        a = first.fit(DOCS).transform(DOCS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotCachedWarning)
        b = last.fit(DOCS).transform(DOCS)
    np.testing.assert_allclose(a[1], kv["beta"], rtol=1e-6)
    np.testing.assert_allclose(b[1], kv["delta"], rtol=1e-6)
    assert len(cache) == 0  # nothing stored under an unsafe fingerprint


@pytest.mark.filterwarnings("ignore::embedxfer.text._word.EmptyDocumentWarning")
def test_named_functions_and_callable_objects_are_fingerprinted_apart(tmp_path):
    kv = small_kv(["alpha", "beta", "gamma", "delta"])
    cache = EmbeddingCache(tmp_path / "cache")
    outputs = []
    for tok in (first_word, last_word, Splitter(" "), Splitter("a")):
        emb = WordVectorEmbedder(kv, tokenizer=tok, cache=cache).fit(DOCS)
        fresh = WordVectorEmbedder(kv, tokenizer=tok).fit(DOCS).transform(DOCS)
        np.testing.assert_allclose(emb.transform(DOCS), fresh, rtol=1e-6)
        np.testing.assert_allclose(emb.transform(DOCS), fresh, rtol=1e-6)  # from the cache
        outputs.append(fresh)
    assert not np.allclose(outputs[0], outputs[1])
    prints = {
        callable_fingerprint(t) for t in (first_word, last_word, Splitter(" "), Splitter("a"))
    }
    assert len(prints) == 4 and None not in prints
    assert callable_fingerprint(Splitter(" ")) == callable_fingerprint(Splitter(" "))


def test_closures_and_lambdas_have_no_fingerprint():
    sep = " "
    assert callable_fingerprint(lambda t: t.split()) is None
    assert callable_fingerprint(lambda t: t.split(sep)) is None

    def local(text):
        return text.split(sep)

    assert callable_fingerprint(local) is None
    assert callable_fingerprint(None) == "None"


def test_keyed_vectors_differing_only_in_word_order_are_different_sources(tmp_path):
    words = ["alpha", "beta", "gamma", "delta"]
    kv = small_kv(words)
    swapped = KeyedVectors(kv.vector_size)
    swapped.add_vectors(["beta", "alpha", "gamma", "delta"], np.asarray(kv.vectors))
    assert source_identity(kv) != source_identity(swapped)
    for cache in (None, EmbeddingCache(tmp_path / "cache")):
        a = WordVectorEmbedder(kv, cache=cache).fit(DOCS).transform(DOCS)
        b = WordVectorEmbedder(swapped, cache=cache).fit(DOCS).transform(DOCS)
        np.testing.assert_allclose(a[0], (kv["alpha"] + kv["beta"]) / 2, rtol=1e-6)
        np.testing.assert_allclose(b[2], swapped["gamma"], rtol=1e-6)
        np.testing.assert_allclose(b[0], (swapped["alpha"] + swapped["beta"]) / 2, rtol=1e-6)


def test_keyed_vectors_differing_in_any_single_row_are_different_sources():
    kv = small_kv([f"w{i}" for i in range(1000)])
    ids = {source_identity(kv)}
    for row in (1, 17, 999):  # rows a sampled identity would skip
        other = KeyedVectors(kv.vector_size)
        vectors = np.array(kv.vectors)
        vectors[row, 3] += 1e-3
        other.add_vectors(list(kv.index_to_key), vectors)
        ids.add(source_identity(other))
    assert len(ids) == 4


def test_refit_with_a_cache_stores_the_fresh_vectors(tmp_path):
    kv = small_kv(["alpha", "beta", "gamma", "delta"])
    cache = EmbeddingCache(tmp_path / "cache")
    for weighting in ("tfidf", "sif", "usif"):
        emb = WordVectorEmbedder(kv, weighting=weighting, cache=cache)
        emb.fit(DOCS[:2]).transform(DOCS)
        got = emb.fit(DOCS[1:]).transform(DOCS)
        fresh = WordVectorEmbedder(kv, weighting=weighting).fit(DOCS[1:]).transform(DOCS)
        np.testing.assert_allclose(got, fresh, rtol=1e-5, atol=1e-6)
        again = WordVectorEmbedder(kv, weighting=weighting, cache=cache).fit(DOCS[1:])
        np.testing.assert_allclose(again.transform(DOCS), fresh, rtol=1e-5, atol=1e-6)
