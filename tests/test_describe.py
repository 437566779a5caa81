"""describe_clusters: class-based TF-IDF terms, central documents, sizes."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _shared_data import read_dataset, read_packaged_sms
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer

from embedxfer import describe_clusters
from embedxfer._clustering.describe import class_tfidf

DOCS = [
    "the striker scored a late goal",
    "a goal in the last minute won the match",
    "the keeper saved a penalty in the match",
    "shares fell as the bank cut interest rates",
    "the central bank raised interest rates",
    "the film won an award for best actor",
]
LABELS = [0, 0, 0, 1, 1, 2]


def test_class_tfidf_matches_the_formula():
    counts = np.array([[2.0, 0.0, 1.0], [0.0, 3.0, 1.0], [0.0, 0.0, 0.0]])
    scores = class_tfidf(counts)
    mean_words = 3.5  # clusters with words: (3 + 4) / 2
    frequency = np.array([2.0, 3.0, 2.0])
    idf = np.log(1 + mean_words / frequency)
    expected = np.vstack([counts[0] / 3 * idf, counts[1] / 4 * idf, np.zeros(3)])
    np.testing.assert_allclose(scores, expected)
    reduced = class_tfidf(counts, reduce_frequent_words=True)
    np.testing.assert_allclose(reduced, np.sqrt(expected / idf) * idf)


def test_terms_sizes_and_central_documents():
    description = describe_clusters(DOCS, LABELS, n_terms=3, n_docs=2)
    assert description.labels == [0, 1, 2] and len(description) == 3
    sports, money, film = description
    assert (sports.size, money.size, film.size) == (3, 2, 1)
    assert sports.share == pytest.approx(0.5)
    assert [t for t, _ in sports.terms][:2] == ["goal", "match"]
    assert {t for t, _ in money.terms[:2]} == {"bank", "rates"}
    assert all(score > 0 for _, score in sports.terms)
    assert len(sports.documents) == 2 and all(LABELS[i] == 0 for i, _ in sports.documents)
    assert film.documents == [(5, DOCS[5])] and film.name.startswith("2_")


def test_central_documents_follow_the_embedding():
    # Document 2 sits on its cluster's centre in this embedding, document 0 far off.
    embeddings = np.array(
        [[1.0, 0.0], [0.6, 0.8], [0.8, 0.6], [0.0, 1.0], [0.1, 1.0], [1.0, 1.0]], dtype=np.float32
    )
    description = describe_clusters(DOCS, LABELS, embeddings, n_docs=3)
    assert [i for i, _ in description[0].documents] == [2, 1, 0]
    sparse = describe_clusters(DOCS, LABELS, sp.csr_matrix(embeddings), n_docs=3)
    assert sparse[0].documents == description[0].documents


def test_noise_empty_and_one_document_clusters_and_stop_word_documents():
    docs = [*DOCS, "the of and", "it is"]
    labels = [0, 0, -1, 1, 1, 2, 2, -1]
    description = describe_clusters(docs, labels, np.eye(8), clusters=[-1, 0, 1, 2, 3])
    noise, _, _, _, empty = description
    assert (
        noise.is_noise and noise.size == 2 and noise.documents == [] and noise.name[:5] == "noise"
    )
    assert empty.size == 0 and empty.share == 0 and empty.terms == [] and empty.documents == []
    for cluster in description:
        assert all(np.isfinite(score) for _, score in cluster.terms)
    frame = description.to_frame()
    assert list(frame["size"]) == [2, 2, 2, 2, 0]
    text = repr(description)
    assert "noise (-1): 2 documents" in text and "cluster 3: 0 documents (0%): (no terms)" in text
    only_stop_words = describe_clusters(["the", "of and", "it"], [0, 1, 1])
    assert [c.terms for c in only_stop_words] == [[], []]
    assert only_stop_words[1].size == 2 and len(only_stop_words[1].documents) == 2


def test_string_labels_and_noise_first():
    description = describe_clusters(DOCS, ["s", "s", "s", "m", "m", "f"], n_docs=1)
    assert description.labels == ["f", "m", "s"]
    assert describe_clusters(DOCS, [3, 3, -1, 1, 1, 1]).labels == [-1, 1, 3]
    with pytest.raises(KeyError, match="no cluster labelled 'x'"):
        description["x"]


def test_to_frame_columns_and_cut_documents():
    frame = describe_clusters(DOCS, LABELS, n_terms=2, n_docs=1).to_frame(max_chars=12)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["label", "size", "share", "terms", "documents"]
    assert frame.loc[1, "terms"] == "bank, rates"
    assert all(len(text) <= 12 for texts in frame["documents"] for text in texts)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"labels": [0, 1]}, ["labels", "one label per document"]),
        ({"labels": [0, 0, 1, 1, np.nan, 2]}, ["labels holds nan (missing) at document 4"]),
        ({"labels": np.array([0, 0, 1, 1, np.nan, 2])}, ["labels", "NaN"]),
        ({"labels": [0, 0, 1, 1, None, 2]}, ["labels", "None"]),
        ({"labels": [0, 0, "a", "a", -1, 2]}, ["labels mix types ['int', 'str']"]),
        (
            {"labels": np.array([0, 0, "a", "a", 1, 1], dtype=object)},
            ["labels mix types ['int', 'str']"],
        ),
        ({"labels": pd.Series(list("aabb") + [pd.NA, "c"], dtype="string")}, ["labels", "<NA>"]),
        ({"labels": np.array([0, 0, 1, 1, pd.NaT, 2], dtype=object)}, ["labels", "NaT"]),
        ({"labels": [0, 0, 1, 1, None, 2]}, ["labels holds None (missing) at document 4"]),
        ({"embeddings": np.ones((2, 3))}, ["embeddings", "one row per document"]),
        ({"embeddings": np.full((6, 2), np.nan)}, ["embeddings", "NaN"]),
        ({"clusters": [0, 1]}, ["clusters", "[2]"]),
        ({"n_terms": -1}, ["n_terms"]),
        ({"n_docs": 1.5}, ["n_docs"]),
    ],
)
def test_bad_input_raises_naming_it(kwargs, words):
    kwargs = {"labels": LABELS, **kwargs}
    with pytest.raises(ValueError) as info:
        describe_clusters(DOCS, **kwargs)
    for word in words:
        assert word in str(info.value)


def test_sms_spam_cluster_terms_name_spam():
    texts, labels = read_packaged_sms()
    description = describe_clusters(texts, np.where(labels == 1, "spam", "ham"), n_terms=10)
    spam_terms = {term for term, _ in description["spam"].terms}
    assert len(spam_terms & {"free", "txt", "mobile", "claim", "prize", "call", "text", "won"}) >= 3
    assert not spam_terms & {"ok", "lol", "gonna", "love"}


BBC_TOPIC_WORDS = {
    "business": {"bank", "economy", "growth", "market", "shares", "company", "firm", "sales"},
    "entertainment": {"film", "music", "band", "award", "star", "album", "actor", "best"},
    "politics": {"election", "labour", "government", "party", "blair", "minister", "tory"},
    "sports": {"match", "game", "win", "cup", "team", "players", "england", "season"},
    "tech": {"software", "users", "technology", "computer", "mobile", "digital", "net"},
}


@pytest.mark.slow
def test_top_terms_of_each_bbc_cluster_name_its_topic():
    texts, topics = read_dataset("bbc_news")
    lsa = make_pipeline(
        TfidfVectorizer(sublinear_tf=True, stop_words="english", min_df=2),
        TruncatedSVD(n_components=100, random_state=0),
        Normalizer(),
    )
    X = lsa.fit_transform(texts)
    clusters = KMeans(n_clusters=5, n_init=3, random_state=0).fit_predict(X)
    description = describe_clusters(texts, clusters, X, n_terms=10)
    for cluster in description:
        # The cluster's topic: the label most of its documents carry.
        members = topics[clusters == cluster.label]
        values, counts = np.unique(members, return_counts=True)
        topic = str(values[counts.argmax()]).lower()
        terms = {term for term, _ in cluster.terms}
        assert topic in BBC_TOPIC_WORDS, topic
        assert len(terms & BBC_TOPIC_WORDS[topic]) >= 2, (topic, terms)
    assert len({str(t) for t in description.labels}) == 5
