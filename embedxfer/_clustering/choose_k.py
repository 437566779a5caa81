"""Choosing the number of clusters: the silhouette or the stability over a range of candidates."""

import numbers
from dataclasses import dataclass

import numpy as np

__all__ = ["NClustersChoice", "choose_n_clusters"]


CRITERIA = ("silhouette", "stability")


@dataclass
class NClustersChoice:
    """The score of each candidate number of clusters, and the best one.

    Attributes
    ----------
    n_clusters : int
        The candidate with the best score under ``criterion`` (the smallest
        on a tie).
    candidates : list of int
        The numbers of clusters tried, in order.
    silhouettes : list of float
        Mean silhouette of each candidate's clustering (-1 to 1, higher is
        better separated).
    labels : dict of int to ndarray
        Each candidate's cluster labels.
    criterion : str
        ``"silhouette"`` or ``"stability"``: what chose ``n_clusters``.
    stabilities : list of float or None
        With ``criterion="stability"``: each candidate's mean adjusted Rand
        index between the clusterings of two random subsamples, on the
        documents they share (1: the same clusters every time).
    """

    n_clusters: int
    candidates: list
    silhouettes: list
    labels: dict
    criterion: str = "silhouette"
    stabilities: list | None = None

    def to_frame(self):
        """A ``pandas.DataFrame``: ``n_clusters``, ``silhouette`` (and ``stability``), ``best``."""
        import pandas as pd

        columns = {"n_clusters": self.candidates, "silhouette": self.silhouettes}
        if self.stabilities is not None:
            columns["stability"] = self.stabilities
        columns["best"] = [k == self.n_clusters for k in self.candidates]
        return pd.DataFrame(columns)

    def __repr__(self):
        return self.to_text()

    def to_text(self):
        """A small table, the best candidate marked with ``*``."""
        with_stability = self.stabilities is not None
        lines = ["n_clusters  silhouette" + ("   stability" if with_stability else "")]
        for i, (k, score) in enumerate(zip(self.candidates, self.silhouettes)):
            line = f"{k:>10}  {score:>10.3f}"
            if with_stability:
                line += f"  {self.stabilities[i]:>10.3f}"
            lines.append(line + (" *" if k == self.n_clusters else ""))
        return "\n".join(lines)


def choose_n_clusters(
    X,
    candidates=range(2, 11),
    *,
    criterion="silhouette",
    clusterer=None,
    metric="cosine",
    sample_size=2000,
    n_resamples=5,
    subsample=0.8,
    random_state=0,
):
    """Pick the number of clusters by the silhouette or by the stability of the clusters.

    Clusters ``X`` once per candidate number and scores each clustering by
    its mean silhouette: how much closer each document is to its own cluster
    than to the nearest other one. The silhouette favours well separated
    clusters; on topic data it tends to pick the broad topics, so read the
    table (``print`` the result) rather than the maximum alone, and
    describe the clusters (:func:`describe_clusters`) to judge them. For
    clusterers that find their own number (HDBSCAN), no choice is needed.

    ``criterion="stability"`` chooses instead the number whose clusters come
    back when the data change a little (Ben-Hur, Elisseeff and Guyon 2002;
    Lange et al. 2004): for each candidate, ``n_resamples`` pairs of random
    subsamples (``subsample`` of the documents each) are clustered
    separately and the two clusterings compared, by the adjusted Rand
    index, on the documents both hold. A number that cuts through a real
    group splits it differently each time and scores low. It costs
    ``2 * n_resamples`` more clusterings per candidate.

    Parameters
    ----------
    X : array-like or sparse matrix of shape (n_samples, n_features)
        The vectors to cluster (e.g. a :class:`HybridEmbedder`'s output).
    candidates : iterable of int, default=range(2, 11)
        The numbers of clusters to try, each in ``[2, n_samples - 1]``.
    criterion : {"silhouette", "stability"}, default="silhouette"
        What chooses: the highest mean silhouette, or the highest mean
        stability (the silhouettes are computed and shown either way).
    clusterer : estimator, default=None
        A clusterer with an ``n_clusters`` parameter and ``fit_predict``
        (cloned for every candidate). ``None``:
        ``KMeans(n_init=10, random_state=random_state)``.
    metric : str, default="cosine"
        Distance of the silhouette (any of ``sklearn.metrics.silhouette_score``).
    sample_size : int or None, default=2000
        Score the silhouette on this many randomly drawn samples (its cost
        grows with the square of the samples), at least one more than the
        largest candidate; ``None`` uses all of them.
    n_resamples : int, default=5
        With ``criterion="stability"``: pairs of subsamples per candidate.
    subsample : float, default=0.8
        With ``criterion="stability"``: the share of the documents in each
        subsample, in ``(0, 1)``.
    random_state : int, default=0
        Seed of the default KMeans, of the silhouette's sample and of the
        subsamples.

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
    >>> choose_n_clusters(X, range(2, 6), criterion="stability", metric="euclidean").n_clusters
    3
    """
    from sklearn.base import clone
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    X = _check_vectors(X)
    n_samples = X.shape[0]
    candidates = _check_candidates(candidates, n_samples)
    if sample_size is not None and (
        not isinstance(sample_size, numbers.Integral) or isinstance(sample_size, bool)
    ):
        raise ValueError(f"sample_size={sample_size!r}; expected an integer or None.")
    if sample_size is not None and sample_size <= max(candidates):
        raise ValueError(
            f"sample_size={sample_size} is too few to score {max(candidates)} clusters: the "
            f"silhouette needs more samples than clusters; pass at least "
            f"{max(candidates) + 1}, or None for all samples."
        )
    if clusterer is None:
        clusterer = KMeans(n_init=10, random_state=random_state)
    elif isinstance(clusterer, type) or not (
        hasattr(clusterer, "get_params") and hasattr(clusterer, "fit_predict")
    ):
        raise TypeError(
            f"clusterer={clusterer!r} is not a clusterer instance; pass one such as KMeans() "
            "or AgglomerativeClustering(), or None for KMeans."
        )
    elif "n_clusters" not in clusterer.get_params():
        raise ValueError(
            f"clusterer={clusterer!r} has no n_clusters parameter; pass a clusterer such as "
            "KMeans or AgglomerativeClustering (HDBSCAN finds its own number)."
        )
    if criterion not in CRITERIA:
        raise ValueError(f"criterion={criterion!r}; expected one of {', '.join(CRITERIA)}.")
    if criterion == "stability":
        _check_resampling(n_resamples, subsample, n_samples, max(candidates))
    sample = None if sample_size is None or sample_size >= n_samples else int(sample_size)
    silhouettes, labels = [], {}
    for k in candidates:
        found = np.asarray(clone(clusterer).set_params(n_clusters=k).fit_predict(X))
        labels[k] = found
        if len(np.unique(found)) < 2:
            silhouettes.append(-1.0)  # one cluster: nothing separated
            continue
        try:
            score = silhouette_score(
                X, found, metric=metric, sample_size=sample, random_state=random_state
            )
        except ValueError as err:
            if "Number of labels" not in str(err):
                raise
            raise ValueError(
                f"the silhouette's sample of {sample} samples held too few of the {k} clusters "
                "to score; raise sample_size, or None for all samples."
            ) from None
        silhouettes.append(float(score))
    if all(len(np.unique(found)) < 2 for found in labels.values()):
        raise ValueError(
            f"the clusterer put every sample in one cluster for every candidate {candidates}; "
            "X shows no clusters to choose among."
        )
    stabilities = None
    scores = silhouettes
    if criterion == "stability":
        from sklearn.utils import check_array

        X = check_array(X, accept_sparse=["csr", "csc"])  # rows taken by position below
        rng = np.random.default_rng(random_state)
        draws = [_subsample_pair(rng, n_samples, subsample) for _ in range(int(n_resamples))]
        stabilities = [_stability(X, clone(clusterer), k, draws) for k in candidates]
        scores = stabilities
    best = candidates[int(np.argmax(scores))]
    return NClustersChoice(best, candidates, silhouettes, labels, criterion, stabilities)


def _subsample_pair(rng, n_samples, share):
    size = max(2, int(round(share * n_samples)))
    return (
        np.sort(rng.choice(n_samples, size, replace=False)),
        np.sort(rng.choice(n_samples, size, replace=False)),
    )


def _stability(X, clusterer, k, draws):
    """Mean ARI of the clusterings of two subsamples, on the rows both hold."""
    from sklearn.metrics import adjusted_rand_score

    scores = []
    for first, second in draws:
        shared, in_first, in_second = np.intersect1d(first, second, return_indices=True)
        if len(shared) < 2:
            continue
        a = clusterer.set_params(n_clusters=k).fit_predict(X[first])
        b = clusterer.set_params(n_clusters=k).fit_predict(X[second])
        scores.append(adjusted_rand_score(np.asarray(a)[in_first], np.asarray(b)[in_second]))
    return float(np.mean(scores)) if scores else -1.0


def _check_resampling(n_resamples, subsample, n_samples, largest):
    if (
        not isinstance(n_resamples, numbers.Integral)
        or isinstance(n_resamples, bool)
        or (n_resamples < 1)
    ):
        raise ValueError(f"n_resamples={n_resamples!r}; expected an integer >= 1.")
    if not isinstance(subsample, numbers.Real) or not 0 < subsample < 1:
        raise ValueError(f"subsample={subsample!r}; expected a share in (0, 1), e.g. 0.8.")
    if round(subsample * n_samples) <= largest:
        raise ValueError(
            f"subsample={subsample} of {n_samples} samples leaves {round(subsample * n_samples)} "
            f"per subsample, too few for {largest} clusters; raise subsample or lower the "
            "candidates."
        )


def _check_vectors(X):
    """``X`` as a 2-D numeric array or sparse matrix of finite values, with 2+ distinct rows."""
    import scipy.sparse as sp

    if X is None:
        raise ValueError("X is None; pass the vectors to cluster, shape (n_samples, n_features).")
    if not sp.issparse(X):
        X = np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X)
        if X.dtype.kind not in "biuf":
            X = _as_numbers(X)
    if X.ndim != 2:
        raise ValueError(
            f"X has shape {X.shape}; expected the vectors as a 2-D array of shape "
            "(n_samples, n_features), e.g. X.reshape(-1, 1) for a single feature."
        )
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X has shape {X.shape}; there is nothing to cluster.")
    if sp.issparse(X):
        X = X.tocsr()
        bad = [] if np.isfinite(X.data).all() else _sparse_bad_rows(X)
    else:
        bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if len(bad):
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise ValueError(
            f"X holds NaN or infinite values in row {bad[0]}{more}; drop or fill those rows "
            "before clustering."
        )
    if _all_rows_equal(X):
        raise ValueError(
            f"X has fewer than 2 distinct rows (all {X.shape[0]} are the same); there are no "
            "clusters to choose among."
        )
    return X


def _as_numbers(X):
    from .._core.validation import missing_positions

    try:
        return X.astype(np.float64)
    except (TypeError, ValueError):
        missing = missing_positions(X.ravel())
        if len(missing) and X.ndim == 2:
            first = missing[0]
            row = first // X.shape[1]
            raise ValueError(
                f"X holds missing values (first: {X.flat[first]!r} in row {row}); drop or "
                "fill those rows before clustering."
            ) from None
        raise ValueError(
            f"X holds values that are not numbers (dtype {X.dtype}); pass the vectors to "
            "cluster, e.g. an embedder's output."
        ) from None


def _sparse_bad_rows(X):
    rows = np.repeat(np.arange(X.shape[0]), np.diff(X.indptr))
    return np.unique(rows[~np.isfinite(X.data)])


def _all_rows_equal(X):
    """Whether every row of ``X`` equals the first (one distinct row)."""
    if X.shape[0] < 2:
        return False
    if not hasattr(X, "indptr"):
        return bool((X[0] == X).all())
    X = X.copy()
    X.eliminate_zeros()
    X.sum_duplicates()  # also sorts the indices
    lengths = np.diff(X.indptr)
    if (lengths != lengths[0]).any():
        return False
    width = int(lengths[0])
    indices, data = X.indices.reshape(-1, width), X.data.reshape(-1, width)
    return bool((indices == indices[0]).all() and (data == data[0]).all())


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
