"""WordVectorEmbedder's one-pass compiled path gives the numpy code's vectors.

With the compiled kernels, the default pattern and no subword lookups, a
transform tokenises, looks up and pools in one call per piece of text
(``embedxfer.text._fused``); everything else runs the separate kernels.
"""

import warnings

import numpy as np
import pytest

from embedxfer import WordVectorEmbedder
from embedxfer.text import _fused, _native

pytestmark = pytest.mark.skipif(
    not _native.available(),
    reason="this install was built without the compiled kernels (no C compiler)",
)

TRICKY = [
    "Don't panic: it's Müller's CAFÉ (naïve) — ok?",
    "",
    "a\x00b the film",  # a document holding the batch separator
    "İstanbul ǅemal ÀÉÎ and THE FILM",
    "zzzqqq xxyyzz",  # no known word
    "THE Film's PLOT isn't GOOD",
    "The film isn't bad, " * 1500,  # more tokens than a lookup batch (4,096)
]


def transform_both_ways(embedder, docs, monkeypatch):
    """(compiled, numpy) vectors of ``docs``, and how often the one-pass path ran."""
    from embedxfer.text import _pooling

    calls = []
    original = _fused.pool_documents
    monkeypatch.setattr(
        "embedxfer.text._word.pool_documents",
        lambda *a, **k: calls.append(1) or original(*a, **k),
    )
    monkeypatch.setattr(_pooling, "_TORCH_KERNELS", False)  # numpy's own sums below
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = embedder.transform(docs)
        monkeypatch.setattr(_native, "ENABLED", False)
        reference = embedder.transform(docs)
        monkeypatch.setattr(_native, "ENABLED", True)
    return compiled, reference, len(calls)


# Weights apply to sums and means only.
SETTINGS = [(p, None) for p in ("mean", "sum", "max", "min")] + [
    (p, w) for p in ("mean", "sum") for w in ("tfidf", "sif", "usif")
]


@pytest.mark.parametrize("pooling, weighting", SETTINGS)
def test_one_pass_equals_the_numpy_code(glove, mr_texts, pooling, weighting, monkeypatch):
    docs = list(mr_texts[0][:1500]) + TRICKY
    embedder = WordVectorEmbedder(pooling=pooling, weighting=weighting).fit(docs)
    compiled, reference, calls = transform_both_ways(embedder, docs, monkeypatch)
    assert calls == 1
    if weighting in ("sif", "usif"):
        # The components are removed by a BLAS product after the pooling, whose
        # rounding depends on the array's alignment.
        np.testing.assert_allclose(compiled, reference, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(compiled, reference)


@pytest.mark.parametrize("lowercase", [True, False])
def test_one_pass_lowercases_as_str_lower(small_glove, lowercase, monkeypatch):
    docs = TRICKY + ["The FILM", "the film", "ΣΊΣΥΦΟΣ the", "K (kelvin) the"] * 3
    embedder = WordVectorEmbedder(small_glove, lowercase=lowercase, normalize=True).fit(docs)
    compiled, reference, calls = transform_both_ways(embedder, docs, monkeypatch)
    assert calls == 1
    np.testing.assert_array_equal(compiled, reference)
    assert np.abs(compiled[-2]).sum() > 0


@pytest.mark.parametrize(
    "params",
    [
        {"pooling": "mean+max"},
        {"tokenizer": "split"},
        {"token_pattern": r"\w+"},
        {"dtype": np.float64},
    ],
)
def test_other_settings_keep_the_separate_kernels(small_glove, params, monkeypatch):
    docs = ["the film is good", "a bad film", ""]
    embedder = WordVectorEmbedder(small_glove, **params).fit(docs)
    compiled, reference, calls = transform_both_ways(embedder, docs, monkeypatch)
    assert calls == 0
    np.testing.assert_allclose(compiled, reference, rtol=1e-6)


def test_empty_documents_are_counted_on_the_one_pass_path(small_glove):
    from embedxfer.exceptions import EmptyDocumentWarning

    embedder = WordVectorEmbedder(small_glove).fit(["the film"])
    with pytest.warns(EmptyDocumentWarning, match="2 of 3 documents"):
        X = embedder.transform(["the film", "", "zzzqqq"])
    assert (X[1:] == 0).all() and (X[0] != 0).any()


def test_pool_text_checks_its_arguments(small_glove):
    from embedxfer.text._tokenize import VocabularyIndex, compiled_tables

    kernels = _native._KERNELS
    table = VocabularyIndex(small_glove.key_to_index).hash_tables().get(False)
    tables = compiled_tables(table)
    vectors = small_glove.vectors
    text = b"the film\x00a film"
    out = np.zeros((2, vectors.shape[1]), np.float32)
    counts = np.zeros(2, np.int64)
    assert kernels.pool_text(text, *tables, vectors, None, 1, out, counts, False) == 2
    assert counts.tolist() == [2, 2]
    np.testing.assert_allclose(
        out[0],
        (vectors[small_glove.key_to_index["the"]] + vectors[small_glove.key_to_index["film"]]) / 2,
    )
    # Three documents in the text for two rows: None, nothing written.
    out[:] = 7
    assert kernels.pool_text(text + b"\x00x", *tables, vectors, None, 1, out, counts, False) is None
    assert (out == 7).all()
    with pytest.raises(ValueError, match="mode"):
        kernels.pool_text(text, *tables, vectors, None, 9, out, counts, False)
    with pytest.raises(ValueError, match="shapes"):
        kernels.pool_text(text, *tables, vectors, np.ones(3, np.float32), 1, out, counts, False)
    # A vocabulary whose rows lie past the vectors given is refused, not read.
    with pytest.raises(IndexError, match="outside the vectors"):
        kernels.pool_text(text, *tables, vectors[:10], None, 1, out[:, :], counts, False)
