"""choose_n_clusters: the silhouette over a range of candidate numbers of clusters."""

import numpy as np
import pandas as pd
import pytest
from scipy.sparse import csr_matrix
from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans

from embedxfer import choose_n_clusters


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centres = np.eye(4) * 10
    return np.vstack([c + rng.normal(size=(15, 4)) for c in centres])


def test_finds_the_number_of_separated_groups(blobs):
    choice = choose_n_clusters(blobs, range(2, 8), metric="euclidean")
    assert choice.n_clusters == 4
    assert choice.candidates == [2, 3, 4, 5, 6, 7]
    assert max(choice.silhouettes) == choice.silhouettes[2] > 0.5
    assert len(np.unique(choice.labels[4])) == 4 and len(choice.labels[4]) == 60
    frame = choice.to_frame()
    assert list(frame.columns) == ["n_clusters", "silhouette", "best"]
    assert frame["best"].sum() == 1 and frame.loc[frame["best"], "n_clusters"].item() == 4
    assert "4  " in repr(choice) and repr(choice).count("*") == 1


def test_any_clusterer_with_n_clusters(blobs):
    choice = choose_n_clusters(blobs, [3, 4, 5], clusterer=AgglomerativeClustering())
    assert choice.n_clusters == 4
    with pytest.raises(ValueError, match="n_clusters"):
        choose_n_clusters(blobs, [3, 4], clusterer=HDBSCAN())


@pytest.mark.parametrize(
    "candidates, words",
    [([], "non-empty"), ([1, 2], "out of range"), ([2, 60], "out of range"), ("abc", "integers")],
)
def test_bad_candidates_raise_naming_them(blobs, candidates, words):
    with pytest.raises(ValueError, match="candidates") as info:
        choose_n_clusters(blobs, candidates)
    assert words in str(info.value)


@pytest.mark.parametrize("sparse", [False, True])
def test_identical_points_are_refused_not_given_a_best_number(sparse):
    X = np.ones((6, 3))
    X = csr_matrix(X) if sparse else X
    with pytest.raises(ValueError, match="X has fewer than 2 distinct rows"):
        choose_n_clusters(X, [2, 3])


def test_one_cluster_for_every_candidate_is_refused():
    class OneCluster(KMeans):
        def fit_predict(self, X, y=None):
            return np.zeros(X.shape[0], dtype=int)

    with pytest.raises(ValueError, match="every sample in one cluster for every candidate"):
        choose_n_clusters(np.arange(12.0).reshape(6, 2), [2, 3], clusterer=OneCluster())


def _with_nan():
    X = np.random.default_rng(0).random((10, 3))
    X[4, 1] = np.nan
    return X


@pytest.mark.parametrize(
    "X, kwargs, error, message",
    [
        (None, {}, ValueError, "X is None; pass the vectors"),
        (np.zeros((0, 3)), {}, ValueError, r"X has shape \(0, 3\); there is nothing to cluster"),
        (np.zeros(10), {}, ValueError, r"X has shape \(10,\); expected .* 2-D array"),
        (_with_nan(), {}, ValueError, "X holds NaN or infinite values in row 4;"),
        (csr_matrix(_with_nan()), {}, ValueError, "X holds NaN or infinite values in row 4;"),
        (pd.DataFrame(_with_nan()).astype("Float64"), {}, ValueError, "missing values .* row 4"),
        ([["a", "b"]] * 5, {}, ValueError, "X holds values that are not numbers"),
        (np.eye(4), {"clusterer": "kmeans"}, TypeError, "clusterer='kmeans' is not"),
        (np.eye(4), {"clusterer": KMeans}, TypeError, "is not a clusterer instance"),
        (np.eye(4), {"sample_size": 1}, ValueError, "sample_size=1 is too few to score 2"),
        (np.eye(4), {"sample_size": 2}, ValueError, "pass at least 3, or None"),
    ],
)
def test_bad_vectors_and_clusterers_get_one_line_naming_them(X, kwargs, error, message):
    with pytest.raises(error, match=message) as info:
        choose_n_clusters(X, [2], **kwargs)
    assert "\n" not in str(info.value)


def test_a_silhouette_sample_missing_clusters_is_named():
    # 99 points in one place and one apart: a sample of 3 rarely holds both.
    X = np.vstack([np.zeros((99, 2)), np.ones((1, 2))]) + 1e-3 * np.arange(200).reshape(100, 2)
    with pytest.raises(ValueError, match="sample of 3 samples held too few of the 2 clusters"):
        choose_n_clusters(X, [2], sample_size=3, metric="euclidean")


def test_stability_finds_the_groups_and_cuts_through_one_score_low(blobs):
    params = dict(criterion="stability", n_resamples=3, metric="euclidean")
    params["clusterer"] = KMeans(n_init=3, random_state=0)
    choice = choose_n_clusters(blobs, [3, 4, 5, 6], **params)
    assert choice.n_clusters == 4 and choice.criterion == "stability"
    stability = dict(zip(choice.candidates, choice.stabilities))
    # Four separated groups come back whole from every subsample; a fifth
    # cluster splits one of them differently each time.
    assert stability[4] > 0.99 and stability[5] < stability[4] and stability[6] < stability[4]
    assert all(-1 <= v <= 1 for v in stability.values())
    frame = choice.to_frame()
    assert list(frame.columns) == ["n_clusters", "silhouette", "stability", "best"]
    assert "stability" in repr(choice) and repr(choice).count("*") == 1
    assert choose_n_clusters(blobs, [3, 4, 5, 6], **params).stabilities == choice.stabilities


def test_stability_takes_lists_and_sparse_rows(blobs):
    from scipy import sparse

    params = dict(criterion="stability", n_resamples=2, clusterer=KMeans(n_init=2, random_state=0))
    dense = choose_n_clusters(blobs.tolist(), [3, 4], **params)
    sparse_choice = choose_n_clusters(sparse.csr_matrix(blobs), [3, 4], **params)
    assert dense.n_clusters == sparse_choice.n_clusters == 4


@pytest.mark.parametrize(
    "params, words",
    [
        ({"criterion": "gap"}, "criterion='gap'"),
        ({"criterion": "stability", "n_resamples": 0}, "n_resamples=0"),
        ({"criterion": "stability", "subsample": 1.0}, "subsample=1.0"),
        ({"criterion": "stability", "subsample": 0.05}, "too few for 7 clusters"),
    ],
)
def test_bad_stability_settings_raise_naming_them(blobs, params, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        choose_n_clusters(blobs, range(2, 8), **params)
