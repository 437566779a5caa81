"""WordVectorEmbedder.partial_fit: corpus statistics gathered batch by batch.

The statistics live in embedxfer/text/_corpus_stats.py.
"""

import pickle

import numpy as np
import pytest

from embedxfer import WordVectorEmbedder
from embedxfer.datasets import load_sms_spam

pytestmark = pytest.mark.filterwarnings("ignore::embedxfer.text._word.EmptyDocumentWarning")


@pytest.fixture(scope="module")
def docs():
    return list(load_sms_spam().data)


def _fitted_state(embedder):
    return {k: v for k, v in vars(embedder).items() if k.endswith("_") and not k.startswith("_")}


def _partial(params, docs, batch):
    embedder = WordVectorEmbedder(**params)
    for start in range(0, len(docs), batch):
        embedder.partial_fit(docs[start : start + batch])
    return embedder


def _assert_same_state(got, expected, component_tol=0.0):
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        if isinstance(value, np.ndarray):
            tol = component_tol if name.startswith("component") else 0.0
            np.testing.assert_allclose(got[name], value, atol=tol, rtol=0, err_msg=name)
        else:
            assert got[name] == value, name


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"weighting": "tfidf"},
        {"weighting": "sif", "n_components": 0},
        {"weighting": "usif", "n_components": 0},
        {"weighting": "sif", "word_frequency": "vectors"},
        {"pooling": "mean+max", "weighting": "tfidf"},
    ],
)
def test_partial_fit_equals_fit_exactly(docs, params):
    expected = WordVectorEmbedder(**params).fit(docs)
    got = _partial(params, docs, batch=1000)
    _assert_same_state(_fitted_state(got), _fitted_state(expected), component_tol=1e-6)
    np.testing.assert_allclose(got.transform(docs), expected.transform(docs), atol=1e-6)


@pytest.mark.parametrize(
    "params, tol",
    # Measured on SMS Spam in batches of 1000: largest component difference
    # 8e-4 (sif), 1.4e-2 (usif's 5 components: smaller eigen-gaps).
    [({"weighting": "sif"}, 3e-3), ({"weighting": "usif"}, 5e-2)],
)
def test_partial_fit_components_with_corpus_weights_are_close(docs, params, tol):
    expected = WordVectorEmbedder(**params).fit(docs)
    got = _partial(params, docs, batch=1000)
    # The weights themselves are exact; only the components are pooled with running weights.
    np.testing.assert_array_equal(got.weights_, expected.weights_)
    assert got.sif_a_ == expected.sif_a_
    np.testing.assert_allclose(got.components_, expected.components_, atol=tol)
    np.testing.assert_allclose(got.transform(docs), expected.transform(docs), atol=2 * tol)


def test_fit_discards_partial_fit(docs):
    embedder = WordVectorEmbedder(weighting="tfidf")
    embedder.partial_fit(docs[:2000])
    embedder.fit(docs[2000:3000])
    fresh = WordVectorEmbedder(weighting="tfidf").fit(docs[2000:3000])
    _assert_same_state(_fitted_state(embedder), _fitted_state(fresh))
    # ... and a partial_fit after fit starts a new accumulation, not fit's corpus plus more.
    embedder.partial_fit(docs[:500])
    np.testing.assert_array_equal(
        embedder.weights_, WordVectorEmbedder(weighting="tfidf").fit(docs[:500]).weights_
    )


def test_partial_fit_survives_pickling_and_stays_small(docs):
    embedder = WordVectorEmbedder(weighting="sif")
    embedder.partial_fit(docs[:2500])
    restored = pickle.loads(pickle.dumps(embedder))
    assert len(pickle.dumps(embedder)) < 500_000
    restored.partial_fit(docs[2500:])
    embedder.partial_fit(docs[2500:])
    np.testing.assert_array_equal(restored.components_, embedder.components_)
    np.testing.assert_array_equal(restored.weights_, embedder.weights_)


def test_partial_fit_rejects_bad_input_like_fit():
    with pytest.raises(ValueError, match="document 1 is None"):
        WordVectorEmbedder().partial_fit(["fine", None])
    with pytest.raises(
        ValueError, match="'weighting' parameter of WordVectorEmbedder .*Got 'bm25'"
    ):
        WordVectorEmbedder(weighting="bm25").partial_fit(["fine"])


def test_partial_fit_interrupted_midway_counts_the_retried_batch_once(docs, monkeypatch):
    from sklearn.exceptions import NotFittedError

    from embedxfer.text import _corpus_stats

    params = {"weighting": "sif", "word_frequency": "corpus"}
    clean = _partial(params, docs[:2000], batch=1000)
    embedder = WordVectorEmbedder(**params).partial_fit(docs[:1000])
    fresh = WordVectorEmbedder(**params)

    def interrupted(*args, **kwargs):  # Ctrl-C in the Gram pass, after the counts
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(_corpus_stats, "partition_gram", interrupted)
        for target in (embedder, fresh):
            with pytest.raises(KeyboardInterrupt):
                target.partial_fit(docs[1000:2000])
    with pytest.raises(NotFittedError):
        fresh.transform(docs[:2])
    embedder.partial_fit(docs[1000:2000])  # the retry
    assert embedder._partial_fit_state["counts"].n_docs == 2000
    _assert_same_state(_fitted_state(embedder), _fitted_state(clean))
