"""The embedder protocol and the registry of kinds (embedxfer/_core/embedder.py).

Every registered kind implements the protocol, and a toy embedder registered
here reaches the command line and the Dask layer without any edit to them.
"""

import hashlib
import json
import pickle

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils.validation import check_is_fitted

import embedxfer
import embedxfer.image
from embedxfer._core.base import RawInputMixin
from embedxfer._core.embedder import (
    CLAIM_NAME,
    CORPUS_FIT_NONE,
    CORPUS_FIT_STATISTICS,
    CORPUS_FIT_WHOLE,
    BuildOptions,
    Embedder,
    embedder_class,
    embedder_classes,
    embedder_kinds,
    embedders_within,
    named_embedder_classes,
    register_embedder,
    unregister_embedder,
)
from embedxfer._core.validation import check_documents

KINDS = ("word", "sentence", "static", "hybrid", "contrastive", "image")


def test_the_registry_holds_every_embedder_kind():
    assert embedder_kinds()[: len(KINDS)] == KINDS
    classes = embedder_classes()
    public = {getattr(embedxfer, name, None) for name in embedxfer.__all__}
    public |= {getattr(embedxfer.image, name, None) for name in embedxfer.image.__all__}
    for kind, cls in classes.items():
        assert issubclass(cls, Embedder) and cls.embedder_kind == kind
        assert not cls.__abstractmethods__, f"{cls.__name__} leaves {cls.__abstractmethods__}"
        assert cls in public, f"{cls.__name__} is registered but not public"
    with pytest.raises(KeyError):
        embedder_class("no-such-kind")


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_implements_the_protocol(kind):
    cls = embedder_class(kind)
    embedder = cls()
    assert embedder._corpus_fit() in (CORPUS_FIT_NONE, CORPUS_FIT_STATISTICS, CORPUS_FIT_WHOLE)
    assert isinstance(cls._fit_encodes, bool) and isinstance(cls._kind_option, bool)
    assert embedder._sub_embedders() == ()  # unfitted
    reference = embedder._model_reference()
    assert reference is None or isinstance(reference, str)
    for name in cls._known_names():
        assert cls._name_claim(name) is not None, name
    if cls._options_help() is not None:
        assert cls._name_option("no-such-option") is None
    if cls._name_suffix is not None:
        assert cls._name_suffix[1] in embedder_kinds()
    if kind in named_embedder_classes():
        name = (cls._known_names() or ("all-MiniLM-L6-v2",))[0]
        options = BuildOptions(batch_size=8, device="cpu", normalize=True)
        built = cls._from_name(name, options)
        assert type(built) is cls
        assert repr(clone(built)) == repr(built)
        for module, extra in cls._requirements({}):
            assert isinstance(module, str) and isinstance(extra, str)
    else:
        with pytest.raises(NotImplementedError):
            cls._from_name("x", BuildOptions())


def test_word_vectors_through_the_protocol():
    from embedxfer import WordVectorEmbedder

    embedder = WordVectorEmbedder("glove-6B-50d", weighting="sif").fit(["a good film"] * 3)
    assert embedder._corpus_fit() == CORPUS_FIT_STATISTICS
    assert WordVectorEmbedder()._corpus_fit() == CORPUS_FIT_NONE
    embedder._load_model()
    assert embedder._model_reference() == "glove-6B-50d"
    assert embedder._cache_fingerprint().startswith("word:")


def test_embedders_within_walks_pipelines_and_composites():
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    from embedxfer import HybridEmbedder, WordVectorEmbedder

    docs = ["the match ended in a draw", "shares fell on the market", "a bank raised rates"]
    hybrid = HybridEmbedder(
        blocks=[
            ("lsa", make_pipeline(TfidfVectorizer(), TruncatedSVD(2, random_state=0))),
            ("glove", make_pipeline(WordVectorEmbedder(), "passthrough")),
        ]
    )
    pipe = make_pipeline(hybrid, LogisticRegression()).fit(docs, [0, 1, 1])
    found = embedders_within(pipe)
    assert [type(e).__name__ for e in found] == ["HybridEmbedder", "WordVectorEmbedder"]
    assert found[1] is pipe[0].blocks_["glove"][0]
    assert embedders_within(LogisticRegression()) == []


# -- a toy embedder, registered by the test alone ----------------------------------------

LOADS = []  # what ToyEmbedder._load_model saw (in this process)


class ToyEmbedder(Embedder, RawInputMixin, TransformerMixin, BaseEstimator):
    """Letter counts a-z, as a stand-in for a new embedder kind."""

    embedder_kind = "toy"
    _description = "toy"
    _kind_option = True

    def __init__(self, model="toy-letters", *, case=False, device=None, normalize=False):
        self.model = model
        self.case = case
        self.device = device
        self.normalize = normalize

    def fit(self, X=None, y=None):
        self.device_ = self._resolve_device()
        self.n_features_out_ = 52 if self.case else 26
        return self

    def transform(self, X):
        check_is_fitted(self)
        docs = check_documents(X)
        letters = "abcdefghijklmnopqrstuvwxyz"
        alphabet = letters + letters.upper() if self.case else letters
        out = np.array(
            [[(d if self.case else d.lower()).count(c) for c in alphabet] for d in docs],
            dtype=np.float32,
        ).reshape(len(docs), self.n_features_out_)
        if self.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out /= np.where(norms > 0, norms, 1)
        return out

    def get_feature_names_out(self, input_features=None):
        return np.asarray([f"toy{i}" for i in range(self.n_features_out_)], dtype=object)

    def _resolve_device(self):
        return "cpu"

    def _load_model(self):
        LOADS.append(self.model)

    def _cache_fingerprint(self):
        blob = json.dumps([self.model, self.case, self.normalize]).encode()
        return "toy:" + hashlib.sha256(blob).hexdigest()[:16]

    @classmethod
    def _name_claim(cls, name):
        return CLAIM_NAME if name == "toy-letters" else None

    @classmethod
    def _known_names(cls):
        return ("toy-letters",)

    @classmethod
    def _name_option(cls, option):
        return ("runtime", {"case": True}) if option == "case" else None

    @classmethod
    def _options_help(cls):
        return "case"

    @classmethod
    def _from_name(cls, name, options):
        return cls(name, normalize=options.normalize, device=options.device, **options.settings)


@pytest.fixture
def toy():
    register_embedder("toy", ToyEmbedder)
    LOADS.clear()
    yield ToyEmbedder
    unregister_embedder("toy")


class _ReadingToy(ToyEmbedder):
    """A toy whose ``fit`` reads the documents, as the corpus-fitting embedders do."""

    def fit(self, X=None, y=None):
        self.n_documents_ = len(check_documents(X))
        return super().fit(X, y)


def test_fit_transform_reads_a_generator_once():
    docs = ["ab", "bc", "cd"]
    embedder = _ReadingToy()
    X = embedder.fit_transform(d for d in docs)
    assert embedder.n_documents_ == 3
    np.testing.assert_array_equal(X, _ReadingToy().fit(docs).transform(docs))
    frame = _ReadingToy().set_output(transform="pandas").fit_transform(d for d in docs)
    assert frame.shape == (3, 26)


def test_a_registered_toy_reaches_the_model_names(toy):
    from embedxfer.cli._encode import build_embedder
    from embedxfer.cli._model_names import known_model_names, parse_model
    from embedxfer.cli._options import kind_choices

    assert "toy" in kind_choices() and "toy-letters" in known_model_names()
    spec = parse_model("toy-letters:case")
    assert (spec.kind, spec.name, spec.settings) == ("toy", "toy-letters", {"case": True})
    embedder = build_embedder(spec, normalize=True)
    assert isinstance(embedder, ToyEmbedder) and embedder.case and embedder.normalize
    assert parse_model("anything-else", kind="toy").kind == "toy"
    with pytest.raises(ValueError, match="not understood for toy"):
        parse_model("toy-letters:max")


def test_a_registered_toy_runs_in_the_command_line(toy, tmp_path, capsys):
    from embedxfer.cli._main import main

    docs = ["Hello world", "abc ABC", "zzz"]
    source = tmp_path / "docs.txt"
    source.write_text("\n".join(docs) + "\n")
    assert (
        main(["embed", str(source), "-o", str(tmp_path / "v.npy"), "-m", "toy-letters:case"]) == 0
    )
    expected = ToyEmbedder(case=True).fit().transform(docs)
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), expected)
    assert "toy-letters:case (toy, 52 dimensions)" in capsys.readouterr().err


def test_a_registered_toy_runs_on_dask(toy, tmp_path):
    dask = pytest.importorskip("dask")
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    import embedxfer.dask as edask

    docs = ["Hello world", "abc ABC", "zzz", "toy"] * 3
    series = dd.from_pandas(pd.Series(docs), npartitions=3)
    embedder = ToyEmbedder(device="auto").fit()
    with dask.config.set(scheduler="synchronous"):
        # Through pickle, as a worker receives it: loaded once there, device resolved there.
        shipped = pickle.loads(pickle.dumps(embedder))
        shipped.device_ = "elsewhere"
        vectors = edask.transform(shipped, series).compute()
        np.testing.assert_array_equal(vectors.to_numpy(), embedder.transform(docs))
        assert LOADS == ["toy-letters"] and shipped.device_ == "cpu"
        summary = edask.embed_to_parquet(embedder, series, tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / edask.MANIFEST).read_text())
    assert summary["written"] == 3 and manifest["embedder"] == embedder._cache_fingerprint()


def test_a_toy_that_cannot_load_fails_naming_its_model(toy):
    dask = pytest.importorskip("dask")
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    import embedxfer.dask as edask

    class Broken(ToyEmbedder):
        def _load_model(self):
            raise OSError("no such file")

    series = dd.from_pandas(pd.Series(["a", "b"]), npartitions=1)
    with (
        dask.config.set(scheduler="synchronous"),
        pytest.raises(edask.ModelUnavailableError, match="'toy-letters' of Broken"),
    ):
        edask.transform(Broken().fit(), series).compute()
