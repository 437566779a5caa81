"""choose_n_clusters: the silhouette over a range of candidate numbers of clusters."""

import numpy as np
import pytest
from sklearn.cluster import HDBSCAN, AgglomerativeClustering
from sklearn.exceptions import ConvergenceWarning

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


def test_identical_points_give_no_nan():
    X = np.ones((6, 3))
    with pytest.warns(ConvergenceWarning, match="distinct clusters"):
        choice = choose_n_clusters(X, [2, 3])
    assert all(np.isfinite(choice.silhouettes))
