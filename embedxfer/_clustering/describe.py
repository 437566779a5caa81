"""What each cluster of documents is about: class-based TF-IDF terms and central documents."""

import numbers
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .._core.rows import unit_rows
from .._core.validation import check_documents, check_label_types, missing_positions

__all__ = ["ClusterDescription", "DescribedCluster", "class_tfidf", "describe_clusters"]

# Words of two or more letters: numbers and one-letter tokens name no topic.
_WORD_PATTERN = r"(?u)\b[^\W\d_][^\W\d_]+\b"
_NOISE = -1


@dataclass
class DescribedCluster:
    """One cluster: its size, top terms and most central documents.

    Attributes
    ----------
    label : int or str
        The cluster's label; ``-1`` is the noise of density-based clusterers.
    size : int
        Documents in the cluster.
    share : float
        ``size`` over all documents (0 for an empty cluster).
    terms : list of (str, float)
        Top terms with their class-based TF-IDF score, best first.
    documents : list of (int, str)
        The most representative documents (their index in the input and
        their text), nearest the cluster's centre first; none for noise.
    is_noise : bool
        Whether the label is the noise label ``-1``.
    """

    label: object
    size: int
    share: float
    terms: list = field(default_factory=list)
    documents: list = field(default_factory=list)
    is_noise: bool = False

    @property
    def name(self):
        """A short name: the label and the top three terms, e.g. ``"3_film_award_actor"``."""
        words = [term for term, _ in self.terms[:3]]
        tag = "noise" if self.is_noise else str(self.label)
        return "_".join([tag, *words]) if words else tag


class ClusterDescription:
    """The clusters of a corpus described, in label order (noise first).

    Iterate over it for :class:`DescribedCluster` entries, index it by
    label (``description[3]``), or call :meth:`to_frame`. ``print`` shows
    one block per cluster.
    """

    def __init__(self, clusters, n_documents):
        self.clusters = list(clusters)
        self.n_documents = int(n_documents)

    def __len__(self):
        return len(self.clusters)

    def __iter__(self):
        return iter(self.clusters)

    def __getitem__(self, label):
        for cluster in self.clusters:
            if cluster.label == label:
                return cluster
        raise KeyError(f"no cluster labelled {label!r}; labels: {self.labels}")

    @property
    def labels(self):
        """The cluster labels, in order."""
        return [cluster.label for cluster in self.clusters]

    def names(self):
        """``{label: short name}``, e.g. ``{0: "0_film_award_actor"}``."""
        return {cluster.label: cluster.name for cluster in self.clusters}

    def to_frame(self, *, max_chars=120):
        """One row per cluster: label, size, share, terms, documents.

        Parameters
        ----------
        max_chars : int or None, default=120
            Representative documents are cut to this many characters
            (``None`` keeps them whole).

        Returns
        -------
        frame : pandas.DataFrame
            Columns ``label``, ``size``, ``share``, ``terms`` (comma-separated)
            and ``documents`` (a list of texts).
        """
        import pandas as pd

        rows = [
            {
                "label": c.label,
                "size": c.size,
                "share": c.share,
                "terms": ", ".join(term for term, _ in c.terms),
                "documents": [_shorten(text, max_chars) for _, text in c.documents],
            }
            for c in self.clusters
        ]
        return pd.DataFrame(rows, columns=["label", "size", "share", "terms", "documents"])

    def __repr__(self):
        return self.to_text()

    def to_text(self, *, max_chars=100):
        """A readable summary: one block per cluster with its terms and documents.

        Parameters
        ----------
        max_chars : int, default=100
            Representative documents are cut to this many characters.

        Returns
        -------
        text : str
        """
        lines = [f"{len(self.clusters)} clusters of {self.n_documents} documents"]
        for c in self.clusters:
            tag = "noise (-1)" if c.is_noise else f"cluster {c.label}"
            terms = ", ".join(term for term, _ in c.terms) or "(no terms)"
            lines.append(f"{tag}: {c.size} documents ({c.share:.0%}): {terms}")
            for index, text in c.documents:
                lines.append(f"    [{index}] {_shorten(text, max_chars)}")
        return "\n".join(lines)


def describe_clusters(
    documents,
    labels,
    embeddings=None,
    *,
    n_terms=10,
    n_docs=3,
    clusters=None,
    vectorizer=None,
    reduce_frequent_words=True,
):
    """Describe clusters of documents by their top terms and most central documents.

    Works with the labels of any clusterer (KMeans, agglomerative, HDBSCAN's
    ``-1`` noise included). A cluster's terms are ranked by class-based
    TF-IDF, as in BERTopic: the documents of each cluster are counted as one
    document, each term's frequency in the cluster (over the cluster's word
    count) is multiplied by ``log(1 + A / f)``, where ``f`` is the term's
    count in the whole corpus and ``A`` the mean word count of a cluster; a
    term frequent in one cluster and rare elsewhere ranks first. With
    ``reduce_frequent_words`` (BERTopic's option of that name) the
    frequency's square root is used, so that words frequent everywhere
    ("said", "year") give way to the words that name a topic.

    Parameters
    ----------
    documents : iterable of str
        The documents that were clustered.
    labels : array-like of shape (n_documents,)
        A cluster label per document (int or str); ``-1`` marks noise.
    embeddings : array-like or sparse matrix of shape (n_documents, n_features), default=None
        The vectors that were clustered. The representative documents are
        those nearest (by cosine) the mean of their cluster's unit vectors.
        ``None`` ranks documents by the cosine between their term counts and
        their cluster's class-based TF-IDF instead.
    n_terms : int, default=10
        Top terms per cluster.
    n_docs : int, default=3
        Representative documents per cluster (none for noise).
    clusters : array-like, default=None
        The labels to describe, in this order; a label no document has gets
        an empty entry (size 0). ``None``: the labels present, sorted, noise
        first.
    vectorizer : CountVectorizer, default=None
        How documents become term counts. ``None``:
        ``CountVectorizer(stop_words="english")`` keeping words of two or
        more letters.
    reduce_frequent_words : bool, default=True
        Rank by the square root of each term's frequency in the cluster.

    Returns
    -------
    description : ClusterDescription
        One ``DescribedCluster`` per cluster; ``print`` it, or call
        ``to_frame()``.

    See Also
    --------
    HybridEmbedder : Vectors that cluster long documents well.
    choose_n_clusters : Pick the number of clusters.

    Examples
    --------
    >>> from embedxfer import describe_clusters
    >>> docs = ["the striker scored a goal", "a late goal won the match",
    ...         "shares fell as the bank cut rates", "the bank raised rates"]
    >>> description = describe_clusters(docs, [0, 0, 1, 1], n_terms=2, n_docs=1)
    >>> [cluster.name for cluster in description]
    ['0_goal_late', '1_bank_rates']
    >>> description[1].size, description[1].documents
    (2, [(2, 'shares fell as the bank cut rates')])
    """
    docs = check_documents(documents, allow_empty=True)
    labels = _check_labels(labels, len(docs))
    _check_count("n_terms", n_terms)
    _check_count("n_docs", n_docs)
    order = _cluster_order(labels, clusters)
    index_of = {label: i for i, label in enumerate(order)}
    stray = [label for label in dict.fromkeys(labels.tolist()) if label not in index_of]
    if stray:
        raise ValueError(
            f"labels holds {stray[:5]}, which clusters={list(order)[:10]} leaves out; "
            "list every label in clusters, or pass clusters=None."
        )
    membership = _membership(labels, index_of, len(order))
    sizes = np.asarray(membership.sum(axis=1)).ravel().astype(int)
    counts, terms = _term_counts(docs, vectorizer)
    scores = class_tfidf(membership @ counts, reduce_frequent_words=reduce_frequent_words)
    top_terms = _top_terms(scores, terms, n_terms)
    central = _central_documents(
        membership, labels, index_of, embeddings, counts, scores, len(docs), n_docs
    )
    described = []
    for i, label in enumerate(order):
        noise = _is_noise(label)
        described.append(
            DescribedCluster(
                label=label,
                size=int(sizes[i]),
                share=float(sizes[i] / len(docs)) if docs else 0.0,
                terms=top_terms[i],
                documents=[] if noise else [(int(j), docs[j]) for j in central[i]],
                is_noise=noise,
            )
        )
    return ClusterDescription(described, len(docs))


def class_tfidf(class_counts, *, reduce_frequent_words=False):
    """Class-based TF-IDF of a (clusters x terms) count matrix (BERTopic's c-TF-IDF).

    Parameters
    ----------
    class_counts : sparse matrix or ndarray of shape (n_clusters, n_terms)
        Each row: the summed term counts of one cluster's documents.
    reduce_frequent_words : bool, default=False
        Use the square root of the term frequency ``tf``.

    Returns
    -------
    scores : ndarray of shape (n_clusters, n_terms), float64
        ``tf * log(1 + A / f)``: the term's share of the cluster's words,
        times the log of the mean words per cluster ``A`` over the term's
        corpus count ``f``. Rows of empty clusters and terms no cluster uses
        score 0.
    """
    counts = sp.csr_matrix(class_counts, dtype=np.float64)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    frequency = np.asarray(counts.sum(axis=0)).ravel()
    used = totals > 0
    mean_words = totals[used].mean() if used.any() else 0.0
    idf = np.zeros_like(frequency)
    np.log1p(mean_words / frequency, out=idf, where=frequency > 0)
    inverse_totals = np.zeros_like(totals)
    np.divide(1.0, totals, out=inverse_totals, where=used)
    frequencies = sp.csr_matrix(sp.diags(inverse_totals) @ counts)
    if reduce_frequent_words:
        frequencies.data = np.sqrt(frequencies.data)
    return (frequencies @ sp.diags(idf)).toarray()


# -- helpers ---------------------------------------------------------------------------


def _check_missing_labels(labels):
    missing = missing_positions(labels)
    if len(missing):
        first = missing[0]
        raise ValueError(
            f"labels holds {labels[first]!r} (missing) at document {first}; give every "
            "document a label (-1 for noise)."
        )


def _check_labels(labels, n_documents):
    values = labels.to_numpy() if hasattr(labels, "to_numpy") else labels
    if not hasattr(values, "dtype"):  # a list: numpy would make mixed labels str
        as_given = np.asarray(values, dtype=object).ravel()
        _check_missing_labels(as_given)
        check_label_types(as_given)
    array = np.asarray(values)
    if array.ndim != 1:
        array = array.reshape(-1) if array.ndim == 2 and 1 in array.shape else array
    if array.ndim != 1 or len(array) != n_documents:
        raise ValueError(
            f"labels has shape {np.shape(labels)}; expected one label per document ({n_documents})."
        )
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise ValueError("labels holds NaN or infinite values; give every document a label.")
        if (array != np.round(array)).any():
            raise ValueError("labels holds fractional numbers; cluster labels are ints or str.")
        array = array.astype(np.int64)
    if array.dtype.kind == "O":
        _check_missing_labels(array)
        check_label_types(array)
    return array


def _check_count(name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name}={value!r}; expected an integer >= 0.")


def _is_noise(label):
    return isinstance(label, numbers.Integral) and not isinstance(label, bool) and label == _NOISE


def _cluster_order(labels, clusters):
    if clusters is not None:
        order = list(np.asarray(clusters).tolist())
        if len(set(order)) != len(order):
            raise ValueError(f"clusters={order[:10]} names a label twice.")
        return order
    present = list(np.unique(labels).tolist()) if len(labels) else []
    return sorted(present, key=lambda label: (not _is_noise(label),))


def _membership(labels, index_of, n_clusters):
    """A (clusters x documents) 0/1 matrix."""
    rows = np.fromiter((index_of[label] for label in labels.tolist()), np.int64, len(labels))
    ones = np.ones(len(labels))
    return sp.csr_matrix((ones, (rows, np.arange(len(labels)))), shape=(n_clusters, len(labels)))


def _term_counts(docs, vectorizer):
    """(documents x terms) counts and the terms; no terms when no document has one."""
    from sklearn.base import clone
    from sklearn.feature_extraction.text import CountVectorizer

    if vectorizer is None:
        vectorizer = CountVectorizer(stop_words="english", token_pattern=_WORD_PATTERN)
    else:
        vectorizer = clone(vectorizer)
    try:
        counts = vectorizer.fit_transform(docs)
    except ValueError as err:
        if "empty vocabulary" not in str(err):
            raise
        return sp.csr_matrix((len(docs), 0)), np.array([], dtype=object)
    return sp.csr_matrix(counts, dtype=np.float64), vectorizer.get_feature_names_out()


def _top_terms(scores, terms, n_terms):
    result = []
    for row in scores:
        positive = np.flatnonzero(row > 0)
        if n_terms == 0 or not positive.size:
            result.append([])
            continue
        best = positive[np.argsort(-row[positive], kind="stable")[:n_terms]]
        result.append([(str(terms[j]), float(row[j])) for j in best])
    return result


def _central_documents(membership, labels, index_of, embeddings, counts, scores, n, n_docs):
    """Per cluster, the indices of its ``n_docs`` documents nearest its centre."""
    rows = np.fromiter((index_of[label] for label in labels.tolist()), np.int64, n)
    if embeddings is not None:
        vectors = _check_embeddings(embeddings, n)
        unit = unit_rows(vectors)
        centres = membership @ unit
        centres = centres.toarray() if sp.issparse(centres) else np.asarray(centres)
    else:
        unit = unit_rows(counts)
        centres = scores
    centres = unit_rows(centres)
    if sp.issparse(unit):
        # Each stored term times its document's centre at that term: O(stored
        # terms), where centres[rows] would be a dense documents x terms array.
        unit = sp.csr_matrix(unit)
        doc_of = np.repeat(np.arange(n), np.diff(unit.indptr))
        products = unit.data * centres[rows[doc_of], unit.indices]
        closeness = np.bincount(doc_of, weights=products, minlength=n)
    else:
        closeness = np.einsum("ij,ij->i", unit, centres[rows])
    central = []
    for i in range(membership.shape[0]):
        members = membership.indices[membership.indptr[i] : membership.indptr[i + 1]]
        best = members[np.argsort(-closeness[members], kind="stable")[:n_docs]]
        central.append(best.tolist())
    return central


def _check_embeddings(embeddings, n_documents):
    if hasattr(embeddings, "to_numpy"):
        embeddings = embeddings.to_numpy()
    matrix = sp.csr_matrix(embeddings) if sp.issparse(embeddings) else np.asarray(embeddings)
    if matrix.ndim != 2 or matrix.shape[0] != n_documents:
        raise ValueError(
            f"embeddings has shape {matrix.shape}; expected one row per document "
            f"({n_documents}, n_features)."
        )
    if matrix.dtype.kind not in "biuf":
        raise ValueError(f"embeddings holds {matrix.dtype} values; expected numbers.")
    values = matrix.data if sp.issparse(matrix) else matrix
    if not np.isfinite(values).all():
        raise ValueError("embeddings holds NaN or infinite values; fix the vectors first.")
    return matrix.astype(np.float64)


def _shorten(text, max_chars):
    text = " ".join(text.split())
    if max_chars is None or len(text) <= max_chars:
        return text
    return text[: max(max_chars - 3, 0)].rstrip() + "..."
