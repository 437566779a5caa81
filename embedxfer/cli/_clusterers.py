"""Clustering embeddings and scoring the clusters against the true labels."""

import time

import numpy as np

from ._errors import CLIError

CLUSTERERS = ("kmeans", "agglomerative", "hdbscan")


def lsa_vectors(texts, n_components=100, random_state=0):
    """TF-IDF reduced by truncated SVD and L2-normalised (latent semantic analysis)."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2, stop_words="english").fit_transform(texts)
    k = max(2, min(n_components, tfidf.shape[1] - 1, tfidf.shape[0] - 1))
    reduced = TruncatedSVD(n_components=k, random_state=random_state).fit_transform(tfidf)
    return normalize(reduced).astype(np.float32)


# Ward's agglomerative clustering keeps every pairwise distance (n^2 / 2
# float64 values, and as much again while merging): 20,000 documents need
# about 3.6 GB. Beyond this, memory, not time, ends the run.
MAX_AGGLOMERATIVE_DOCUMENTS = 20_000


def check_cluster_size(estimators, n_documents):
    """Refuse, before any encoding, a clusterer whose memory grows past bounds at this size."""
    if "agglomerative" in estimators and n_documents > MAX_AGGLOMERATIVE_DOCUMENTS:
        gib = n_documents * (n_documents - 1) / 2 * 8 * 2 / 2**30
        raise CLIError(
            f"--estimators agglomerative keeps every pairwise distance: {n_documents:,} "
            f"documents need about {gib:.0f} GiB; pass --max-docs "
            f"{MAX_AGGLOMERATIVE_DOCUMENTS} (or fewer), or use kmeans or hdbscan."
        )


def make_clusterer(name, n_clusters, n_samples, random_state=0):
    """A scikit-learn clusterer for L2-normalised vectors.

    ``"kmeans"`` and ``"agglomerative"`` (Ward) look for ``n_clusters``.
    ``"hdbscan"`` finds its own number of clusters and leaves outliers as
    noise; density estimates degrade in tens of dimensions, so the vectors
    are first projected on their 5 principal components (re-normalised).
    """
    from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer

    if name == "kmeans":
        return KMeans(n_clusters=n_clusters, n_init=10, random_state=random_state)
    if name == "agglomerative":
        return AgglomerativeClustering(n_clusters=n_clusters, linkage="ward")
    if name == "hdbscan":
        size = max(5, n_samples // (8 * n_clusters))
        return make_pipeline(
            PCA(n_components=5, random_state=random_state),
            Normalizer(),
            HDBSCAN(min_cluster_size=size, min_samples=5, copy=True),
        )
    raise ValueError(f"unknown clusterer {name!r}; expected one of {', '.join(CLUSTERERS)}.")


def score_clustering(name, X, y, n_clusters, random_state=0):
    """Cluster unit-length ``X`` with ``name`` and score it against the true labels ``y``.

    Returns a dict with ``ari``, ``nmi``, ``silhouette`` (cosine, on the
    documents not marked as noise), ``n_found`` (clusters), ``noise``
    (share of documents HDBSCAN leaves unclustered), ``cluster_s`` and
    ``labels``.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

    started = time.perf_counter()
    labels = make_clusterer(name, n_clusters, len(X), random_state).fit_predict(X)
    elapsed = time.perf_counter() - started
    clustered = labels >= 0
    found = np.unique(labels[clustered])
    silhouette = np.nan
    if 2 <= len(found) < clustered.sum():
        silhouette = float(
            silhouette_score(
                X[clustered],
                labels[clustered],
                metric="cosine",
                sample_size=min(int(clustered.sum()), 2000),
                random_state=random_state,
            )
        )
    return {
        "ari": float(adjusted_rand_score(y, labels)),
        "nmi": float(normalized_mutual_info_score(y, labels)),
        "silhouette": silhouette,
        "n_found": int(len(found)),
        "noise": float(1.0 - clustered.mean()),
        "cluster_s": elapsed,
        "labels": labels,
    }
