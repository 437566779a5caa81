"""HybridEmbedder: blocks side by side, each normalised and weighted."""

import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.decomposition import TruncatedSVD
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from embedxfer import HybridEmbedder, SentenceEmbedder, WordVectorEmbedder
from embedxfer._core.param_validation import InvalidParameterError

DOCS = ["alpha beta", "gamma", "delta epsilon zeta", "eta", "theta iota"]


def fixed(matrix):
    """A block that returns ``matrix`` whatever the documents."""
    matrix = np.asarray(matrix, dtype=np.float64)
    return FunctionTransformer(lambda docs: matrix[: len(docs)])


@pytest.fixture(scope="module")
def views():
    rng = np.random.default_rng(0)
    # Scales and widths far apart: a plain concatenation would be all "wide".
    return rng.normal(size=(5, 3)) * 1000.0, rng.normal(size=(5, 40)) * 0.01


def cosines(matrix):
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return unit @ unit.T


def test_dot_product_is_the_weighted_mean_of_block_cosines(views):
    narrow, wide = views
    hybrid = HybridEmbedder(
        blocks=[("narrow", fixed(narrow)), ("wide", fixed(wide))], weights={"wide": 3.0}
    )
    X = hybrid.fit_transform(DOCS)
    assert X.dtype == np.float32 and X.shape == (5, 43)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-6)
    expected = 0.25 * cosines(narrow) + 0.75 * cosines(wide)
    np.testing.assert_allclose(X @ X.T, expected, atol=1e-6)
    block_norms = np.linalg.norm(X[:, hybrid.output_indices_["narrow"]], axis=1)
    np.testing.assert_allclose(block_norms, np.sqrt(0.25), rtol=1e-6)
    assert hybrid.weights_ == {"narrow": 0.25, "wide": 0.75}
    np.testing.assert_allclose(hybrid.transform(DOCS), X)


def test_equal_weights_by_default_and_zero_weight_silences_a_block(views):
    narrow, wide = views
    blocks = [("narrow", fixed(narrow)), ("wide", fixed(wide))]
    X = HybridEmbedder(blocks=blocks).fit_transform(DOCS)
    np.testing.assert_allclose(X @ X.T, 0.5 * cosines(narrow) + 0.5 * cosines(wide), atol=1e-6)
    silenced = HybridEmbedder(blocks=blocks, weights={"wide": 0}).fit_transform(DOCS)
    assert not silenced[:, 3:].any()
    np.testing.assert_allclose(silenced @ silenced.T, cosines(narrow), atol=1e-6)


def test_zero_rows_and_rounding_noise_stay_zero_never_nan(views):
    narrow, wide = views
    narrow = narrow.copy()
    narrow[1] = 0.0
    narrow[2] = 1e-17  # a document with no weight in the view, up to rounding
    hybrid = HybridEmbedder(blocks=[("narrow", fixed(narrow)), ("wide", fixed(wide))])
    X = hybrid.fit_transform(DOCS)
    assert np.isfinite(X).all()
    assert not X[1, :3].any() and not X[2, :3].any()
    np.testing.assert_allclose(np.linalg.norm(X[1]), np.sqrt(0.5), rtol=1e-6)


def test_document_empty_after_stop_words_gets_zeros_in_the_lexical_block():
    docs = ["the match ended in a draw", "shares fell on the market", "the of and", "a striker"]
    tfidf = TfidfVectorizer(stop_words="english")
    X = HybridEmbedder(blocks=[("tfidf", tfidf), ("glove", WordVectorEmbedder())]).fit_transform(
        docs
    )
    assert sp.issparse(X) and X.dtype == np.float32
    dense = X.toarray()
    assert np.isfinite(dense).all()
    n_terms = len(dense[0]) - 50
    assert not dense[2, :n_terms].any()
    np.testing.assert_allclose(np.linalg.norm(dense[[0, 1, 3]], axis=1), 1.0, rtol=1e-5)


def test_zero_width_block_takes_no_weight(views):
    narrow, _ = views
    empty = FunctionTransformer(lambda docs: np.zeros((len(docs), 0)))
    hybrid = HybridEmbedder(blocks=[("empty", empty), ("narrow", fixed(narrow))])
    X = hybrid.fit_transform(DOCS)
    assert X.shape == (5, 3) and hybrid.weights_ == {"empty": 0.0, "narrow": 1.0}
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-6)
    assert list(hybrid.get_feature_names_out()) == [f"narrow__narrow{i}" for i in range(3)]


def test_drop_leaves_a_block_out(views):
    narrow, wide = views
    hybrid = HybridEmbedder(blocks=[("narrow", fixed(narrow)), ("wide", "drop")]).fit(DOCS)
    assert list(hybrid.named_blocks_) == ["narrow"] and hybrid.n_features_out_ == 3
    with pytest.raises(ValueError, match="drop"):
        HybridEmbedder(blocks=[("wide", "drop")]).fit(DOCS)


def test_block_with_other_row_count_is_named(views):
    narrow, _ = views
    short = FunctionTransformer(lambda docs: np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"block 'short' returned 2 rows for 5 documents"):
        HybridEmbedder(blocks=[("narrow", fixed(narrow)), ("short", short)]).fit(DOCS)


def test_block_returning_nan_is_named(views):
    bad = FunctionTransformer(lambda docs: np.full((len(docs), 2), np.nan))
    with pytest.raises(ValueError, match=r"block 'bad'.*NaN"):
        HybridEmbedder(blocks=[("bad", bad)]).fit(DOCS)


def test_failing_block_is_named():
    lexical = TfidfVectorizer(stop_words="english")
    with pytest.raises(ValueError, match=r"block 'lexical'.*empty vocabulary"):
        HybridEmbedder(blocks=[("lexical", lexical)]).fit(["the", "and of"])


def test_an_lsa_larger_than_the_vocabulary_names_the_parameter_to_set():
    with pytest.raises(ValueError, match="n_components") as info:
        HybridEmbedder().fit(DOCS)  # the default LSA keeps 100 of DOCS' 10 terms
    message = str(info.value)
    assert message.startswith("block 'lsa': ") and "\n" not in message
    assert (
        "pass blocks=HybridEmbedder.default_blocks() and set lsa__truncatedsvd__n_comp" in message
    )
    lsa = make_pipeline(TfidfVectorizer(), TruncatedSVD(n_components=20))
    with pytest.raises(ValueError, match="; set lsa__truncatedsvd__n_components to a smaller"):
        HybridEmbedder(blocks=[("lsa", lsa)], weights=None).fit(DOCS)


@pytest.mark.parametrize(
    "params, words",
    [
        ({"blocks": "lsa"}, ["blocks", "list of"]),
        ({"blocks": []}, ["blocks", "non-empty"]),
        ({"blocks": [("a", TfidfVectorizer)]}, ["blocks", "class", "instance"]),
        ({"blocks": [("a", "tfidf")]}, ["blocks", "no fit and transform"]),
        ({"blocks": [("a", TfidfVectorizer()), ("a", TfidfVectorizer())]}, ["not unique"]),
        ({"blocks": [("a__b", TfidfVectorizer())]}, ["'__'"]),
        ({"blocks": [("weights", TfidfVectorizer())]}, ["clash"]),
        ({"weights": [1, 2]}, ["weights", "dict"]),
        ({"weights": {"a": -1.0}}, ["weights", ">= 0"]),
        ({"weights": {"a": float("nan")}}, ["weights", "finite"]),
    ],
)
def test_bad_parameters_raise_naming_them(params, words):
    params = {"blocks": [("a", TfidfVectorizer())], **params}
    with pytest.raises(InvalidParameterError) as info:
        HybridEmbedder(**params).fit(DOCS)
    for word in words:
        assert word in str(info.value)


def test_weights_naming_no_block_or_summing_to_zero():
    blocks = [("a", TfidfVectorizer())]
    with pytest.raises(ValueError, match=r"weights.*\['b'\].*not blocks"):
        HybridEmbedder(blocks=blocks, weights={"b": 1.0}).fit(DOCS)
    with pytest.raises(ValueError, match="sum to 0"):
        HybridEmbedder(blocks=blocks, weights={"a": 0.0}).fit(DOCS)


def lsa_and_glove():
    lsa = make_pipeline(TfidfVectorizer(), TruncatedSVD(n_components=3, random_state=0))
    return HybridEmbedder(blocks=[("lsa", lsa), ("glove", WordVectorEmbedder())])


def test_nested_parameters_clone_and_unfitted_blocks():
    hybrid = lsa_and_glove()
    params = hybrid.get_params(deep=True)
    assert params["lsa__truncatedsvd__n_components"] == 3 and "glove__pooling" in params
    hybrid.set_params(lsa__truncatedsvd__n_components=2, glove__pooling="max")
    assert hybrid.blocks[0][1][-1].n_components == 2
    hybrid.fit(DOCS)
    assert not hasattr(hybrid.blocks[1][1], "n_features_out_"), "fit must clone the blocks"
    assert hybrid.named_blocks_["glove"].pooling == "max"
    assert hybrid.output_indices_ == {"lsa": slice(0, 2), "glove": slice(2, 52)}
    twin = clone(hybrid)
    with pytest.raises(NotFittedError):
        twin.transform(DOCS)
    hybrid.set_params(glove=WordVectorEmbedder(pooling="mean"))
    assert hybrid.blocks[1][1].pooling == "mean"
    restored = pickle.loads(pickle.dumps(hybrid))
    np.testing.assert_allclose(restored.transform(DOCS), hybrid.transform(DOCS))


def test_feature_names_set_output_and_pandas_input():
    hybrid = lsa_and_glove().fit(DOCS)
    names = hybrid.get_feature_names_out()
    assert list(names[:2]) == ["lsa__truncatedsvd0", "lsa__truncatedsvd1"]
    assert names[-1] == "glove__glove50_mean49" and len(set(names)) == len(names) == 53
    expected = hybrid.transform(DOCS)
    np.testing.assert_allclose(hybrid.transform(pd.Series(DOCS)), expected)
    np.testing.assert_allclose(hybrid.transform(pd.DataFrame({"text": DOCS})), expected)
    frame = clone(hybrid).set_output(transform="pandas").fit(DOCS).transform(DOCS)
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == list(names)
    np.testing.assert_allclose(frame.to_numpy(), expected, rtol=1e-6)


def test_refit_on_other_documents_equals_a_fresh_fit():
    other = ["stock market shares", "a film review", "the election result", "bank rates rise"]
    refitted = lsa_and_glove().fit(DOCS).fit(other)
    fresh = lsa_and_glove().fit(other)
    np.testing.assert_allclose(refitted.transform(DOCS), fresh.transform(DOCS), atol=1e-6)


def test_default_blocks_are_the_long_document_recipe():
    hybrid = HybridEmbedder()
    assert hybrid.get_params(deep=True) == {"blocks": None, "weights": "auto"}
    (lsa_name, lsa), (minilm_name, minilm) = HybridEmbedder.default_blocks()
    assert (lsa_name, minilm_name) == ("lsa", "minilm")
    assert lsa[0].sublinear_tf and lsa[0].stop_words == "english"
    assert lsa[-1].n_components == 100
    assert isinstance(minilm, SentenceEmbedder)
    assert (minilm.long_documents, minilm.chunk_pooling) == ("chunk", "max")
    assert HybridEmbedder.default_blocks()[1][1] is not minilm, "fresh blocks every call"


# -- the command line: fit encodes every document, so `embed -m hybrid` encodes once ------

SEEN = []  # every document CountingWords encoded


class CountingWords(WordVectorEmbedder):
    """GloVe that records the documents it encodes."""

    def transform(self, X):
        docs = list(X)
        SEEN.extend(docs)
        return super().transform(docs)


@pytest.fixture
def counted_default(monkeypatch):
    """The default blocks made cheap: small LSA beside counted GloVe (named as the default)."""

    def blocks():
        lsa = make_pipeline(TfidfVectorizer(), TruncatedSVD(3, random_state=0))
        return [("lsa", lsa), ("minilm", CountingWords())]

    monkeypatch.setattr(HybridEmbedder, "default_blocks", staticmethod(blocks))
    SEEN.clear()
    return blocks


CLI_DOCS = ["the match ended in a draw", "shares fell on the market", "the striker scored"] * 4
CLI_DOCS += ["the bank raised rates", "a film about a bank robbery"]


def test_embed_hybrid_encodes_each_document_once(counted_default, tmp_path):
    from embedxfer.cli._main import main

    source = tmp_path / "docs.txt"
    source.write_text("\n".join(CLI_DOCS) + "\n")
    out = tmp_path / "v.npy"
    assert main(["embed", str(source), "-o", str(out), "-m", "hybrid", "-q"]) == 0
    assert sorted(SEEN) == sorted(CLI_DOCS)
    expected = HybridEmbedder(blocks=counted_default()).fit_transform(CLI_DOCS)
    np.testing.assert_allclose(np.load(out), expected, atol=1e-6)


def test_embed_hybrid_reports_its_blocks_cache_hits(counted_default, tmp_path, capsys):
    from embedxfer.cli._main import main

    source = tmp_path / "docs.txt"
    source.write_text("\n".join(CLI_DOCS) + "\n")
    args = ["embed", str(source), "-m", "hybrid", "--cache", str(tmp_path / "cache")]
    n, repeats = len(CLI_DOCS), len(CLI_DOCS) - len(set(CLI_DOCS))
    assert main([*args, "-o", str(tmp_path / "a.npy")]) == 0
    assert f"; {repeats} of {n} from the cache" in capsys.readouterr().err  # repeated texts
    assert main([*args, "-o", str(tmp_path / "b.npy")]) == 0
    assert f"; {n} of {n} from the cache" in capsys.readouterr().err
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_evaluate_encodes_hybrid_once(counted_default):
    from embedxfer.cli._encode import encode_corpus
    from embedxfer.cli._model_names import parse_model

    result = encode_corpus(parse_model("hybrid"), CLI_DOCS)
    assert sorted(SEEN) == sorted(CLI_DOCS) and result["X"].shape[0] == len(CLI_DOCS)


def test_fingerprint_follows_the_blocks_and_survives_pickling():
    blocks = [("lsa", make_pipeline(TfidfVectorizer(), TruncatedSVD(2, random_state=0)))]
    blocks.append(("glove", WordVectorEmbedder()))
    hybrid = HybridEmbedder(blocks=blocks).fit(CLI_DOCS)
    key = hybrid._cache_fingerprint()
    assert (
        key.startswith("hybrid:") and pickle.loads(pickle.dumps(hybrid))._cache_fingerprint() == key
    )
    assert clone(hybrid).fit(CLI_DOCS)._cache_fingerprint() == key
    assert clone(hybrid).fit(CLI_DOCS[:-1])._cache_fingerprint() != key  # LSA fitted otherwise
    reweighted = clone(hybrid).set_params(weights={"glove": 2.0}).fit(CLI_DOCS)
    assert reweighted._cache_fingerprint() != key
    pooled = clone(hybrid).set_params(glove__pooling="max").fit(CLI_DOCS)
    assert pooled._cache_fingerprint() != key


# -- weights="auto": the lexical view weighed by what it can see on this corpus ----------


def topic_corpus(words_per_doc, n_docs=60, seed=0):
    """Documents of three topics, each drawing from its own words and common ones."""
    rng = np.random.default_rng(seed)
    topics = [[f"{topic}{i}" for i in range(40)] for topic in ("sport", "money", "film")]
    common = [f"word{i}" for i in range(400)]
    docs = []
    for d in range(n_docs):
        own = rng.choice(topics[d % 3], words_per_doc // 2)
        other = rng.choice(common, words_per_doc - words_per_doc // 2)
        docs.append(" ".join(rng.permutation(np.concatenate([own, other]))))
    return docs


def auto_hybrid(n_docs=60):
    semantic = np.random.default_rng(1).normal(size=(n_docs, 8))
    lsa = make_pipeline(TfidfVectorizer(), TruncatedSVD(n_components=5, random_state=0))
    return HybridEmbedder(blocks=[("lsa", lsa), ("semantic", fixed(semantic))])


def test_auto_weighs_the_lexical_block_less_on_short_texts():
    short = auto_hybrid().fit(topic_corpus(4))
    long = auto_hybrid().fit(topic_corpus(120))
    assert short.weights_["lsa"] < 0.3 < 0.45 < long.weights_["lsa"] <= 0.5
    assert short.shared_terms_["lsa"] < long.shared_terms_["lsa"]
    np.testing.assert_allclose(sum(short.weights_.values()), 1.0)
    # The weight is the chance that two documents share a term: 1 - exp(-mean shared terms).
    docs = topic_corpus(4)
    present = (TfidfVectorizer().fit_transform(docs) > 0).astype(float)
    shared = (present @ present.T).toarray()
    mean_shared = (shared.sum() - np.trace(shared)) / (len(docs) * (len(docs) - 1))
    assert short.shared_terms_["lsa"] == pytest.approx(mean_shared)
    lexical = 1 - np.exp(-mean_shared)
    assert short.weights_["lsa"] == pytest.approx(lexical / (lexical + 1))


def test_auto_scales_each_document_by_the_share_its_components_keep():
    docs = topic_corpus(12)
    hybrid = auto_hybrid()
    X = hybrid.fit_transform(docs)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(hybrid.transform(docs), X, atol=1e-6)
    # The scale's reference is fitted state: a few documents alone encode as in the corpus.
    np.testing.assert_allclose(hybrid.transform(docs[:3]), X[:3], atol=1e-6)
    tfidf, svd = hybrid.named_blocks_["lsa"].steps[0][1], hybrid.named_blocks_["lsa"].steps[-1][1]
    retained = np.linalg.norm(svd.transform(tfidf.transform(docs)), axis=1)  # tf-idf rows: unit
    scale2 = retained**2 / np.mean(retained**2)
    w = hybrid.weights_["lsa"]
    expected = w * scale2 / (w * scale2 + 1 - w)
    lexical_norms = np.linalg.norm(X[:, hybrid.output_indices_["lsa"]], axis=1)
    np.testing.assert_allclose(lexical_norms**2, expected, rtol=1e-4)
    assert lexical_norms.std() > 0.01, "documents differ in the share their components keep"
    # Fixed weights keep every block at its weight's share, whatever the document.
    fixed_weights = clone(hybrid).set_params(weights={"lsa": 1.0}).fit_transform(docs)
    np.testing.assert_allclose(
        np.linalg.norm(fixed_weights[:, :5], axis=1), np.sqrt(0.5), rtol=1e-5
    )


def test_auto_with_no_shared_term_falls_back_to_equal_weights():
    hybrid = HybridEmbedder(blocks=[("a", TfidfVectorizer())]).fit(DOCS)  # no shared word
    assert hybrid.shared_terms_ == {"a": 0.0} and hybrid.weights_ == {"a": 1.0}
    np.testing.assert_allclose(np.linalg.norm(hybrid.transform(DOCS).toarray(), axis=1), 1.0)
