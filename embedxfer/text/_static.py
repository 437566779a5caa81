"""``StaticEmbedder``: a transformer encoder distilled into a table of token vectors."""

import hashlib
import json
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._cache import CACHE_CONSTRAINT
from .._core.base import FitParamsMixin, RawInputMixin
from .._core.device import DEVICE_CONSTRAINT
from .._core.embedder import CORPUS_FIT_NONE, CORPUS_FIT_WHOLE, Embedder
from .._core.param_validation import Interval, validate_params
from .._core.public import set_module
from .._core.registry import get_or_load
from .._core.rows import count_zero_rows
from .._core.validation import check_documents
from . import _pooling
from ._encoder_loading import DEFAULT_MODEL, MODEL_CONSTRAINT, resolve_model_source
from ._word import (
    _COUNTED_BY_CALLER,
    _POOLING_RULE,
    EmptyDocumentWarning,
    _pooling_parts,
    empty_documents_counted_here,
)


@set_module("embedxfer")
class StaticEmbedder(Embedder, RawInputMixin, FitParamsMixin, TransformerMixin, BaseEstimator):
    """Embed documents at word-vector speed with a transformer distilled into a table.

    On first use, every token of the encoder's vocabulary goes through the
    encoder (``[CLS] token [SEP]``, mean-pooled), the vectors are reduced by
    PCA and weighted by a Zipf estimate of each token's frequency (smooth
    inverse frequency), as model2vec does. The table is kept in
    ``$EMBEDXFER_HOME/static`` as plain data (``.npy`` and JSON, verified by
    checksums, memory-mapped) and loaded once per process: a later ``fit``
    reads it in well under a second, and encoding needs neither torch nor
    transformers once it exists. A document is the pooled vectors of its
    tokens, cut by the model's own tokenizer (a fast tokenizer is required).

    Optionally (``adapt=True``) ``fit`` also encodes the training documents
    with the encoder and trains the vectors of the tokens they use so that
    the pooled static vectors point where the encoder's own document vectors
    point (a cosine loss, a few epochs of Adam, starting from the distilled
    table). No labels are used.

    Parameters
    ----------
    model : str or os.PathLike, default="all-MiniLM-L6-v2"
        A sentence-transformers or Hugging Face encoder name or folder, as
        for :class:`SentenceEmbedder` (the default resolves to the packaged
        all-MiniLM-L6-v2).
    n_components : int or None, default=256
        Dimensions kept by PCA; ``None`` keeps the encoder's width.
    sif_a : float or None, default=1e-4
        Smooth inverse frequency parameter of the token weights
        ``a / (a + p)``, ``p`` a Zipf estimate from the token's rank in the
        vocabulary; ``None`` weights every token alike.
    vocabulary_limit : int or None, default=None
        Distil only the first ``vocabulary_limit`` tokens of the vocabulary
        (a quick, smaller table, e.g. for tests); ``None`` distils them all.
    pooling : str or list of str, default="mean"
        ``"mean"``, ``"sum"``, ``"max"``, ``"min"``, or several joined by
        ``"+"`` whose results are concatenated.
    normalize : bool, default=False
        Scale each output row to unit L2 norm (zero rows stay zero).
    adapt : bool, default=False
        Adapt the table to the training documents in ``fit`` (one pass of the
        encoder over them).
    adapt_epochs : int, default=8
        Passes over the training documents when adapting (minibatches of 64
        documents, a fixed seed: the same documents give the same table).
    adapt_learning_rate : float, default=0.003
        Adam's step size when adapting.
    batch_size : int, default=20000
        Documents tokenised and pooled at a time; bounds memory.
    device : {"cpu", "cuda", "auto"} or str, default="cpu"
        Where the encoder runs to distil the table and to adapt it.
        Encoding documents always pools on the CPU.
    verbose : int, default=0
        ``1`` shows a progress bar (tqdm) while distilling.
    cache : None, bool, str, os.PathLike or EmbeddingCache, default=None
        Reuse vectors of documents already embedded with the same table and
        settings (see :class:`EmbeddingCache`).

    Attributes
    ----------
    n_features_out_ : int
        Output width (``vector_size_`` times the number of poolings).
    vector_size_ : int
        Width of the table's vectors.
    vocabulary_size_ : int
        Rows of the table (the tokenizer's vocabulary).
    poolings_ : tuple of str
        The pooling operations, in output order.
    table_key_ : str
        Name of the distilled table's folder in ``$EMBEDXFER_HOME/static``.
    adapted_ids_ : ndarray of int64
        Table rows changed by corpus adaptation (empty without it).
    adapted_vectors_ : ndarray of float32, shape (n_adapted, vector_size)
        Their adapted vectors; pickled with the estimator (the distilled
        table itself never is).
    device_ : str
        The resolved device of the encoder.

    See Also
    --------
    SentenceEmbedder : The encoder itself (slower, stronger).
    WordVectorEmbedder : Pooled pretrained word vectors.

    Examples
    --------
    >>> from embedxfer import StaticEmbedder
    >>> embed = StaticEmbedder().fit(["a good film"])  # doctest: +SKIP
    >>> embed.transform(["a good film", "a dull, tedious film"]).shape  # doctest: +SKIP
    (2, 256)
    """

    _parameter_constraints = {
        "model": MODEL_CONSTRAINT,
        "n_components": [Interval(Integral, 1, None), None],
        "sif_a": [Interval(Real, 0, None, closed="neither"), None],
        "vocabulary_limit": [Interval(Integral, 1, None), None],
        "pooling": [_POOLING_RULE],
        "normalize": ["boolean"],
        "adapt": ["boolean"],
        "adapt_epochs": [Interval(Integral, 1, None)],
        "adapt_learning_rate": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None)],
        "device": DEVICE_CONSTRAINT,
        "verbose": ["verbose"],
        "cache": CACHE_CONSTRAINT,
    }

    def __init__(
        self,
        model=DEFAULT_MODEL,
        *,
        n_components=256,
        sif_a=1e-4,
        vocabulary_limit=None,
        pooling="mean",
        normalize=False,
        adapt=False,
        adapt_epochs=8,
        adapt_learning_rate=0.003,
        batch_size=20000,
        device="cpu",
        verbose=0,
        cache=None,
    ):
        self.model = model
        self.n_components = n_components
        self.sif_a = sif_a
        self.vocabulary_limit = vocabulary_limit
        self.pooling = pooling
        self.normalize = normalize
        self.adapt = adapt
        self.adapt_epochs = adapt_epochs
        self.adapt_learning_rate = adapt_learning_rate
        self.batch_size = batch_size
        self.device = device
        self.verbose = verbose
        self.cache = cache

    # ------------------------------------------------------------------ fit
    def fit(self, X=None, y=None):
        """Load (distilling on first use) the table; with ``adapt``, adapt it to ``X``.

        Parameters
        ----------
        X : iterable of str, default=None
            Training documents; needed with ``adapt=True``, else only checked.
        y : None
            Ignored.

        Returns
        -------
        self : StaticEmbedder
            The fitted estimator.
        """
        validate_params(self)
        docs = check_documents(X) if X is not None else None
        if self.adapt and not docs:
            raise ValueError("adapt=True adapts the table to the training documents; pass X.")
        self.__dict__.pop("_adapted_table_cache", None)
        device = self._resolve_device()
        table = self._table(device)
        if self.cache is not None:
            from .._cache import resolve_cache

            resolve_cache(self.cache)
        adapted_ids = np.zeros(0, dtype=np.int64)
        adapted_vectors = np.zeros((0, table.vectors.shape[1]), dtype=np.float32)
        if self.adapt:
            from ._static_adapt import adapt_rows

            ids, doc_ptr = self._token_ids(table, docs)
            targets = self._teacher_vectors(docs, device)
            adapted_ids, adapted_vectors = adapt_rows(
                table,
                ids,
                doc_ptr,
                targets,
                weights=self._token_weights(table, device),
                epochs=int(self.adapt_epochs),
                learning_rate=float(self.adapt_learning_rate),
            )
        self.device_ = device
        self.table_key_ = table.key
        self.vector_size_ = int(table.vectors.shape[1])
        self.vocabulary_size_ = int(table.vectors.shape[0])
        self.poolings_ = _pooling_parts(self.pooling)
        self.n_features_out_ = self.vector_size_ * len(self.poolings_)
        self.adapted_ids_ = adapted_ids
        self.adapted_vectors_ = adapted_vectors
        self._fitted_params = self._params_fit_depends_on()
        return self

    # ------------------------------------------------------------ transform
    def transform(self, X):
        """Embed documents.

        Parameters
        ----------
        X : iterable of str
            Documents (list, array, pandas Series or one-column DataFrame).

        Returns
        -------
        X_new : ndarray of shape (n_documents, n_features_out), float32
            Documents without any known token get zeros, counted in an
            ``EmptyDocumentWarning``.
        """
        check_is_fitted(self)
        self._check_params_unchanged()
        docs = check_documents(X, allow_empty=True)
        if self.cache is None:
            return self._encode(docs)
        from .._cache import encode_with_cache

        with empty_documents_counted_here():
            out = encode_with_cache(self.cache, self._cache_fingerprint(), docs, self._encode)
        _warn_empty(count_zero_rows(out), len(out))
        return out

    def _encode(self, docs):
        table = self._fitted_table()
        vectors = self._vectors(table)
        out = np.empty((len(docs), self.n_features_out_), dtype=np.float32)
        n_empty = 0
        for start in range(0, len(docs), self.batch_size):
            batch = docs[start : start + self.batch_size]
            ids, doc_ptr = self._token_ids(table, batch)
            n_empty += int(np.count_nonzero(doc_ptr[1:] == doc_ptr[:-1]))
            out[start : start + len(batch)] = self._pool(vectors, ids, doc_ptr)
        if not _COUNTED_BY_CALLER.get():
            _warn_empty(n_empty, len(docs))
        return out

    def _pool(self, vectors, ids, doc_ptr):
        parts = []
        for op in self.poolings_:
            if op in ("max", "min"):
                parts.append(_pooling.segment_extreme(ids, doc_ptr, vectors, op))
                continue
            part = _pooling.weighted_sum(ids, doc_ptr, vectors)
            if op == "mean":
                part /= np.maximum(np.diff(doc_ptr), 1).astype(np.float32)[:, None]
            parts.append(part)
        out = parts[0] if len(parts) == 1 else np.hstack(parts)
        if self.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out /= np.where(norms > 0, norms, 1.0)
        return out

    def get_feature_names_out(self, input_features=None):
        """Output feature names, e.g. ``minilm_static_mean0``.

        Parameters
        ----------
        input_features : None
            Ignored; the names come from the model and the pooling.

        Returns
        -------
        feature_names_out : ndarray of str objects
            One name per output column.
        """
        from ._sentence import _model_tag

        check_is_fitted(self)
        tag = f"{_model_tag(self.model)}_static"
        return np.asarray(
            [f"{tag}_{op}{i}" for op in self.poolings_ for i in range(self.vector_size_)],
            dtype=object,
        )

    @property
    def table_(self):
        """The distilled table's vectors, memory-mapped (before adaptation; not pickled)."""
        check_is_fitted(self)
        return self._fitted_table().vectors

    # ------------------------------------------------------------- helpers
    def _resolve_device(self):
        if self.device in (None, "cpu"):
            return "cpu"
        from .._core.device import resolve_device

        return resolve_device(self.device)

    def _table_settings(self):
        from ._static_tables import model_content_signature, table_settings

        source, is_local = resolve_model_source(self.model)
        # A local model is its files' bytes, wherever they lie; a hub model its name.
        if is_local:
            identity = {"source": None, "files": model_content_signature(source)}
        else:
            identity = {"source": source, "files": None}
        return (
            source,
            is_local,
            table_settings(
                identity,
                n_components=self.n_components,
                sif_a=self.sif_a,
                vocabulary_limit=self.vocabulary_limit,
            ),
        )

    def _table(self, device):
        """The distilled table, distilling it (on ``device``) when it is not on disk yet."""
        from ._static_tables import read_table, static_home, table_key, write_table

        source, is_local, settings = self._table_settings()
        key = table_key(settings)

        def load():
            folder = static_home() / key
            table = read_table(folder, settings)
            if table is None:
                backend = self._teacher(device)
                if not getattr(backend.tokenizer, "is_fast", False):
                    raise ValueError(
                        f"model={self.model!r} has no fast (Rust) tokenizer (tokenizer.json); "
                        "StaticEmbedder tokenises with one. Save the model with a fast "
                        "tokenizer (AutoTokenizer.from_pretrained(..., use_fast=True))."
                    )
                from ._static_distill import distil

                arrays = distil(
                    backend,
                    n_components=self.n_components,
                    sif_a=self.sif_a,
                    vocabulary_limit=self.vocabulary_limit,
                    show_progress_bar=bool(self.verbose),
                )
                tokenizer_json = backend.tokenizer.backend_tokenizer.to_str()
                write_table(folder, arrays, tokenizer_json, settings, source=source)
                table = read_table(folder, settings)
                if table is None:
                    raise OSError(f"the distilled table written to {folder} cannot be read back.")
            return table

        return get_or_load(("embedxfer.StaticEmbedder.table", key), load)

    def _fitted_table(self):
        table = self._table(self.device_)
        if table.key != self.table_key_:
            raise ValueError(
                f"the distilled table of model={self.model!r} changed since this "
                "StaticEmbedder was fitted (the model files changed); fit it again."
            )
        return table

    def _teacher(self, device):
        """The encoder, shared with :class:`SentenceEmbedder` through the registry."""
        from ._sentence import SentenceEmbedder

        return SentenceEmbedder(model=self.model, device=device)._load_torch(device, "float32")

    def _teacher_vectors(self, docs, device):
        from ._sentence import SentenceEmbedder

        teacher = SentenceEmbedder(model=self.model, device=device, pooling="mean")
        return teacher.fit().transform(docs)

    def _token_weights(self, table, device):
        """The Zipf weight each row of the table was multiplied by when distilled."""
        if self.sif_a is None:
            return np.ones(len(table.vectors), dtype=np.float32)
        from ._static_distill import frequency_ranks, text_tokens, zipf_weights

        usable, _ = text_tokens(self._teacher(device).tokenizer)
        if len(usable) != len(table.vectors):
            raise ValueError(
                f"the tokenizer of model={self.model!r} has {len(usable)} tokens but its "
                f"distilled table {len(table.vectors)} rows; fit it again."
            )
        return zipf_weights(frequency_ranks(usable), float(self.sif_a))

    def _token_ids(self, table, docs):
        return table.token_ids().ids(docs)

    def _vectors(self, table):
        """The table with the adapted rows in place (a copy, kept until refit)."""
        if not len(self.adapted_ids_):
            return table.vectors
        cached = self.__dict__.get("_adapted_table_cache")
        if cached is None:
            cached = np.array(table.vectors, dtype=np.float32)
            cached[self.adapted_ids_] = self.adapted_vectors_
            self._adapted_table_cache = cached
        return cached

    # -- the embedder protocol (embedxfer._core.embedder) --------------------------------------
    embedder_kind = "static"
    _description = "static"
    _name_suffix = ("static", "sentence")

    def _load_model(self):
        self._fitted_table()

    def _corpus_fit(self):
        return CORPUS_FIT_WHOLE if self.adapt else CORPUS_FIT_NONE

    @classmethod
    def _name_option(cls, option):
        if all(p in _pooling.WORD_POOLINGS for p in option.split("+")):
            return "pooling", {"pooling": option}
        return None

    @classmethod
    def _options_help(cls):
        return f"poolings {', '.join(_pooling.WORD_POOLINGS)}"

    @classmethod
    def _from_name(cls, name, options):
        params = options.given("cache", "pooling", "device")
        return cls(name, normalize=bool(options.normalize), **params)

    @classmethod
    def _download_origin(cls, name):
        from ._sentence import SentenceEmbedder

        return SentenceEmbedder._download_origin(name)

    @classmethod
    def _download_remedy(cls, name):
        from ._sentence import SentenceEmbedder

        return SentenceEmbedder._download_remedy(name)

    _INFERENCE_PARAMS = ("normalize", "batch_size", "cache", "verbose")
    _FITTED_STATE = "its fitted state (the table and its adaptation)"

    def _cache_fingerprint(self):
        h = hashlib.blake2b(digest_size=16)
        h.update(repr((self.table_key_, self.poolings_, bool(self.normalize), "static/1")).encode())
        h.update(np.ascontiguousarray(self.adapted_ids_).tobytes())
        h.update(np.ascontiguousarray(self.adapted_vectors_).tobytes())
        return f"static:{h.hexdigest()}"

    def __getstate__(self):
        state = dict(super().__getstate__())  # object's is the live __dict__
        state.pop("_adapted_table_cache", None)
        return state


# The prefix of a vectors name that is a distilled table: ``"static:all-MiniLM-L6-v2"``.
STATIC_VECTORS_PREFIX = "static:"


def _static_model(name):
    model = name[len(STATIC_VECTORS_PREFIX) :]
    if not model.strip():
        raise ValueError(
            f"vectors={name!r} names no model; write 'static:' and a sentence encoder, "
            "e.g. 'static:all-MiniLM-L6-v2'."
        )
    return model


def static_vectors_identity(name):
    """What identifies ``"static:MODEL"`` vectors: the key of the table (model files, settings)."""
    from ._static_tables import table_key

    return f"static:{table_key(StaticEmbedder(model=_static_model(name))._table_settings()[2])}"


def static_word_vectors(name):
    """The whole words of a distilled table as gensim ``KeyedVectors`` (``load_vectors``).

    ``name`` is ``"static:MODEL"``: the table of ``StaticEmbedder(model=MODEL)``
    with its default settings (distilled on first use, then read from disk).
    Every vocabulary token that is a whole word (not a ``##`` continuation,
    not a special or unused entry, and kept by the distillation) becomes a
    word with its row, so the table can seed a word-level model such as
    :class:`SequenceClassifier`.
    """
    from gensim.models import KeyedVectors

    embedder = StaticEmbedder(model=_static_model(name)).fit()
    table = embedder._fitted_table()
    vocab = (json.loads(table.tokenizer_json).get("model") or {}).get("vocab") or {}
    dropped = table.token_ids().dropped
    words, rows = [], []
    for token, index in vocab.items():
        if (
            0 <= index < len(table.vectors)
            and not dropped[index]
            and not token.startswith("##")
            and not (token.startswith("[") and token.endswith("]"))
        ):
            words.append(token)
            rows.append(index)
    order = np.argsort(rows, kind="stable")  # the vocabulary's order: frequent tokens first
    kv = KeyedVectors(vector_size=table.vectors.shape[1])
    kv.add_vectors([words[i] for i in order], np.asarray(table.vectors)[np.asarray(rows)[order]])
    return kv


def _warn_empty(n_empty, n_docs):
    if n_empty:
        warnings.warn(
            f"{n_empty} of {n_docs} documents have no known token; their vectors are zeros.",
            EmptyDocumentWarning,
            stacklevel=4,
        )
