"""Choosing the number of clusters: the silhouette over a range of candidates."""

import numbers
from dataclasses import dataclass

import numpy as np

__all__ = ["NClustersChoice", "choose_n_clusters"]


@dataclass
class NClustersChoice:
    """The silhouette of each candidate number of clusters, and the best one.

    Attributes
    ----------
    n_clusters : int
        The candidate with the highest silhouette (the smallest on a tie).
    candidates : list of int
        The numbers of clusters tried, in order.
    silhouettes : list of float
        Mean silhouette of each candidate's clustering (-1 to 1, higher is
        better separated).
    labels : dict of int to ndarray
        Each candidate's cluster labels.
    """

    n_clusters: int
    candidates: list
    silhouettes: list
    labels: dict

    def to_frame(self):
        """A ``pandas.DataFrame`` with columns ``n_clusters``, ``silhouette`` and ``best``."""
        import pandas as pd

        return pd.DataFrame(
            {
                "n_clusters": self.candidates,
                "silhouette": self.silhouettes,
                "best": [k == self.n_clusters for k in self.candidates],
            }
        )

    def __repr__(self):
        return self.to_text()

    def to_text(self):
        """A small table, the best candidate marked with ``*``."""
        lines = ["n_clusters  silhouette"]
        for k, score in zip(self.candidates, self.silhouettes):
            mark = " *" if k == self.n_clusters else ""
            lines.append(f"{k:>10}  {score:>10.3f}{mark}")
        return "\n".join(lines)


def choose_n_clusters(
    X, candidates=range(2, 11), *, clusterer=None, metric="cosine", sample_size=2000, random_state=0
):
    """Pick the number of clusters whose clustering has the highest mean silhouette.

    Clusters ``X`` once per candidate number and scores each clustering by
    its mean silhouette: how much closer each document is to its own cluster
    than to the nearest other one. The silhouette favours well separated
    clusters; on topic data it tends to pick the broad topics, so read the
    table (``print`` the result) rather than the maximum alone, and
    describe the clusters (:func:`describe_clusters`) to judge them. For
    clusterers that find their own number (HDBSCAN), no choice is needed.

    Parameters
    ----------
    X : array-like or sparse matrix of shape (n_samples, n_features)
        The vectors to cluster (e.g. a :class:`HybridEmbedder`'s output).
    candidates : iterable of int, default=range(2, 11)
        The numbers of clusters to try, each in ``[2, n_samples - 1]``.
    clusterer : estimator, default=None
        A clusterer with an ``n_clusters`` parameter and ``fit_predict``
        (cloned for every candidate). ``None``:
        ``KMeans(n_init=10, random_state=random_state)``.
    metric : str, default="cosine"
        Distance of the silhouette (any of ``sklearn.metrics.silhouette_score``).
    sample_size : int or None, default=2000
        Score the silhouette on this many randomly drawn samples (its cost
        grows with the square of the samples); ``None`` uses all of them.
    random_state : int, default=0
        Seed of the default KMeans and of the silhouette's sample.

    Returns
    -------
    choice : NClustersChoice
        ``choice.n_clusters`` is the best candidate; ``print(choice)`` shows
        the table; ``choice.labels[k]`` the labels of candidate ``k``.

    See Also
    --------
    describe_clusters : What each cluster is about.

    Examples
    --------
    >>> import numpy as np
    >>> from embedxfer import choose_n_clusters
    >>> rng = np.random.default_rng(0)
    >>> centres = np.eye(3) * 10
    >>> X = np.vstack([c + rng.normal(size=(20, 3)) for c in centres])
    >>> choice = choose_n_clusters(X, range(2, 6), metric="euclidean")
    >>> choice.n_clusters
    3
    """
    from sklearn.base import clone
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n_samples = X.shape[0] if hasattr(X, "shape") else len(X)
    candidates = _check_candidates(candidates, n_samples)
    if sample_size is not None and (
        not isinstance(sample_size, numbers.Integral) or isinstance(sample_size, bool)
    ):
        raise ValueError(f"sample_size={sample_size!r}; expected an integer or None.")
    if clusterer is None:
        clusterer = KMeans(n_init=10, random_state=random_state)
    elif "n_clusters" not in clusterer.get_params():
        raise ValueError(
            f"clusterer={clusterer!r} has no n_clusters parameter; pass a clusterer such as "
            "KMeans or AgglomerativeClustering (HDBSCAN finds its own number)."
        )
    sample = None if sample_size is None or sample_size >= n_samples else int(sample_size)
    silhouettes, labels = [], {}
    for k in candidates:
        found = np.asarray(clone(clusterer).set_params(n_clusters=k).fit_predict(X))
        labels[k] = found
        if len(np.unique(found)) < 2:
            silhouettes.append(-1.0)  # one cluster: nothing separated
            continue
        score = silhouette_score(
            X, found, metric=metric, sample_size=sample, random_state=random_state
        )
        silhouettes.append(float(score))
    best = candidates[int(np.argmax(silhouettes))]
    return NClustersChoice(best, candidates, silhouettes, labels)


def _check_candidates(candidates, n_samples):
    try:
        values = list(candidates)
    except TypeError:
        values = None
    if not values or not all(
        isinstance(k, numbers.Integral) and not isinstance(k, bool) for k in values
    ):
        raise ValueError(
            f"candidates={candidates!r}; expected a non-empty list of integers, e.g. range(2, 11)."
        )
    values = sorted({int(k) for k in values})
    bad = [k for k in values if not 2 <= k <= n_samples - 1]
    if bad:
        raise ValueError(
            f"candidates {bad} are out of range for {n_samples} samples; the silhouette "
            f"needs 2 <= n_clusters <= {n_samples - 1}."
        )
    return values
