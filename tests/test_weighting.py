import numpy as np

from embedxfer.text import _weighting as w


def test_document_frequency_counts_each_document_once():
    ids = np.array([0, 0, 1, 2, 2, 2, 1])
    doc_ptr = np.array([0, 3, 3, 7])
    np.testing.assert_array_equal(w.document_frequency(ids, doc_ptr, 4), [1, 2, 1, 0])


def test_smooth_idf_matches_scikit_learn():
    from sklearn.feature_extraction.text import TfidfVectorizer

    docs = ["a b", "a c", "a b d"]
    vec = TfidfVectorizer(token_pattern=r"\w").fit(docs)
    df = np.array([3, 2, 1, 1])  # a b c d
    np.testing.assert_allclose(w.smooth_idf(df, 3), vec.idf_)


def test_probabilities_and_sif_weights():
    p = w.count_probabilities(np.bincount(np.array([0, 0, 1, 3]), minlength=4))
    np.testing.assert_allclose(p, [0.5, 0.25, 0, 0.25])
    weights = w.sif_weights(p, 1e-3)
    assert weights[2] == 1.0 and weights[0] < weights[1]
    ranks = w.rank_probabilities(1000)
    assert np.all(np.diff(ranks) < 0) and np.isclose(ranks.sum(), 1.0, atol=0.05)


def test_usif_parameter_is_positive_and_falls_with_vocabulary():
    rng = np.random.default_rng(0)
    small = w.rank_probabilities(1000)
    large = w.rank_probabilities(100_000)
    a_small, a_large = w.usif_parameter(small, 20), w.usif_parameter(large, 20)
    assert a_small > a_large > 0
    assert np.all(w.usif_weights(small, a_small) > 0)
    del rng


def test_principal_components_and_removal():
    rng = np.random.default_rng(0)
    direction = np.array([3.0, 4.0, 0.0]) / 5.0
    X = (rng.normal(size=(200, 1)) * 10 + 20) * direction + rng.normal(size=(200, 3)) * 0.1
    X = np.vstack([X, np.zeros((3, 3))])  # zero rows (empty documents) are ignored
    comps, weights = w.principal_components(X, 1)
    assert abs(abs(comps[0] @ direction) - 1) < 1e-3
    assert weights[0] == 1.0
    Y = w.remove_components(X.astype(np.float32).copy(), comps)
    np.testing.assert_allclose(Y @ comps[0], 0, atol=1e-3)
    np.testing.assert_array_equal(Y[-3:], 0)
    again, _ = w.principal_components(X, 1)
    np.testing.assert_array_equal(again, comps)  # deterministic sign


def test_no_more_components_than_the_rank():
    row = np.array([[1.0, 2.0, 3.0]])
    comps, weights = w.principal_components(np.vstack([row, 2 * row, row]), 5)
    assert comps.shape == (1, 3)
    np.testing.assert_allclose(weights, [1.0])


def test_the_rank_does_not_shrink_as_documents_are_added():
    # Directions 2% as strong as the first are real, however many documents
    # hold them (a tolerance growing with the number of rows dropped them).
    rng = np.random.default_rng(0)
    for n_documents in (2_000, 300_000):
        X = np.zeros((n_documents, 6), np.float32)
        X[:, 0] = 1.0
        X += 0.02 * rng.standard_normal(X.shape, dtype=np.float32)
        components, _ = w.principal_components(X, 5)
        assert components.shape == (5, 6), n_documents
    assert w.numerical_rank(np.array([1.0, 1e-6]), n_features=300) == 1


def test_rows_lying_in_the_components_become_zeros():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 50)).astype(np.float32)
    comps, _ = w.principal_components(X[:1], 1)
    Y = w.remove_components(X.copy(), comps)
    np.testing.assert_array_equal(Y[0], 0)  # not float32 rounding error
    assert np.all(np.linalg.norm(Y[1:], axis=1) > 0.5 * np.linalg.norm(X[1:], axis=1))
    half = w.remove_components(X[:1].copy(), comps, np.array([0.5], np.float32))
    np.testing.assert_allclose(half, 0.5 * X[:1], rtol=1e-5)
