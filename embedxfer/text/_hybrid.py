"""HybridEmbedder: several views of a document side by side, each normalised and weighted."""

import hashlib
import numbers
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.base import TransformerMixin, clone
from sklearn.pipeline import Pipeline
from sklearn.utils import Bunch
from sklearn.utils.metaestimators import _BaseComposition
from sklearn.utils.validation import check_is_fitted

from .._core.base import RawInputMixin
from .._core.embedder import CLAIM_ALWAYS, CORPUS_FIT_WHOLE, Embedder
from .._core.param_validation import Rule, validate_params
from .._core.public import set_module
from .._core.rows import row_norms, unit_rows
from .._core.validation import check_documents

_DROP = "drop"
# Model names of the default HybridEmbedder: LSA beside chunked, max-pooled all-MiniLM-L6-v2.
HYBRID_NAMES = ("hybrid", "lsa+all-MiniLM-L6-v2")


def _blocks_problem(blocks):
    if blocks is None:
        return None
    message = (
        f"blocks={blocks!r:.80}; expected None (the default blocks) or a non-empty list of "
        "(name, transformer) pairs, e.g. [('lsa', make_pipeline(TfidfVectorizer(), "
        "TruncatedSVD(100))), ('minilm', SentenceEmbedder())]."
    )
    if isinstance(blocks, (str, bytes)) or not isinstance(blocks, (list, tuple)) or not blocks:
        return message
    for item in blocks:
        if not isinstance(item, tuple) or len(item) != 2 or not isinstance(item[0], str):
            return message
        name, block = item
        if isinstance(block, type):
            return (
                f"blocks: {name!r} is the class {block.__name__}, not an instance; "
                f"pass {block.__name__}()."
            )
        if block != _DROP and not (hasattr(block, "fit") and hasattr(block, "transform")):
            return (
                f"blocks: {name!r} is {block!r:.60}, which has no fit and transform; "
                "pass a transformer or 'drop'."
            )
    names = [name for name, _ in blocks]
    if len(set(names)) != len(names):
        return f"blocks: the names {names} are not unique; give every block its own name."
    bad = [name for name in names if "__" in name or not name]
    if bad:
        return f"blocks: the names {bad} are empty or hold '__'; rename them."
    reserved = sorted(set(names) & {"blocks", "weights"})
    if reserved:
        return f"blocks: the names {reserved} clash with HybridEmbedder's parameters; rename them."
    return None


def _weights_problem(weights):
    if weights is None or _is_auto(weights):
        return None
    if not isinstance(weights, dict):
        return (
            f"weights={weights!r:.80}; expected 'auto' (weights read from the corpus), None "
            "(equal weights) or a dict from block name to a weight >= 0, e.g. "
            "{'lsa': 1.0, 'minilm': 2.0}."
        )
    for name, weight in weights.items():
        if (
            not isinstance(weight, numbers.Real)
            or isinstance(weight, bool)
            or not np.isfinite(weight)
            or weight < 0
        ):
            return f"weights[{name!r}]={weight!r}; every weight must be a finite number >= 0."
    return None


@set_module("embedxfer")
class HybridEmbedder(Embedder, RawInputMixin, TransformerMixin, _BaseComposition):
    """Several views of each document side by side, each normalised and weighted.

    Every block (an embedder of this package, or any scikit-learn transformer
    that takes raw text, such as a ``TfidfVectorizer`` + ``TruncatedSVD``
    pipeline) encodes the documents; each block's rows are scaled to unit L2
    norm and then by ``sqrt(w / W)``, where ``w`` is the block's weight and
    ``W`` the sum of the weights. So no block dominates by its scale or its
    width, every output row has unit norm (a document that a block cannot
    encode, such as one left empty by stop words, gets zeros there, never
    NaN), and the dot product of two output rows is the weighted mean of the
    blocks' cosine similarities (with ``weights="auto"``, weights that may
    differ from document to document: see ``weights``). Euclidean k-means,
    cosine nearest neighbours and linear models on the output all see that
    weighted similarity.
    ``FeatureUnion`` concatenates without normalising, so a 384-wide block
    with large values drowns a 100-wide one.

    The default blocks are the recipe that clusters long documents best:
    latent semantic analysis (sublinear TF-IDF without English stop words,
    truncated SVD to 100 dimensions) beside all-MiniLM-L6-v2 run over whole
    documents in overlapping windows, pooled by element-wise max. The lexical
    view catches the words that name a topic, the semantic view their
    paraphrases. On short texts (a sentence, a news snippet) two documents
    rarely share a word, so the lexical view has little to say: the default
    ``weights="auto"`` reads that from the corpus and leans on the semantic
    view there (AG News snippets: ARI 0.649 against 0.572 with equal weights
    and 0.604 for MiniLM alone), while long documents keep both views about
    equal (BBC News: 0.930).

    Parameters
    ----------
    blocks : list of (str, transformer) or None, default=None
        The views, as ``(name, transformer)`` pairs (``FeatureUnion``'s
        convention); a transformer may be ``"drop"``. Each is cloned and
        fitted on the documents in :meth:`fit`. ``None`` uses
        :meth:`default_blocks`. Parameters of a block are reachable as
        ``name__param`` (``set_params(minilm__cache="embeddings/")``) once
        the blocks are given explicitly.
    weights : "auto", dict of str to float or None, default="auto"
        Weight of each block by name (missing names weigh 1); ``None`` weighs
        every block 1. A weight of 0 leaves the block's columns at zero.
        ``"auto"`` reads the weights from the documents given to :meth:`fit`,
        with no label and no constant to tune:

        - a *lexical* block (a pipeline whose first step, or a block whose
          output, is a sparse document-term matrix, such as a
          ``TfidfVectorizer``) weighs ``1 - exp(-m)``, where ``m`` is the
          mean number of terms two documents of the corpus share
          (``shared_terms_``): the chance, under a Poisson model, that two
          documents share a term at all, since a lexical view cannot relate
          documents that share none. About 1 on long documents (BBC News:
          ``m`` = 8.3), 0.28 on news snippets (AG News: 0.32), 0.015 on
          questions (TREC: 0.015). Every other block weighs 1;
        - a pipeline whose last step is a projection (has ``components_``,
          such as ``TruncatedSVD``) is scaled, document by document, by the
          share of the document's vector the projection keeps, over the
          root mean square of that share on the fitted corpus: a document
          whose words the components barely describe gets a projection that
          is mostly noise, which normalising would blow up, and leans on the
          other blocks instead. Output rows are normalised to unit length
          again, so a block's share of a row is ``w s**2 / sum(w s**2)``.

        Where every block is lexical and no two documents share a term, the
        weights are equal.

    Attributes
    ----------
    blocks_ : dict of str to transformer
        The fitted blocks by name, in output order (``"drop"`` ones left out).
    named_blocks_ : Bunch
        The same, as scikit-learn's composites give them.
    output_indices_ : dict of str to slice
        The columns of each block in the output.
    weights_ : dict of str to float
        Each block's share of the squared norm of an output row
        (``w / W``); the blocks' scales are the square roots. With
        ``weights="auto"``, the share in a document whose projected blocks
        keep their corpus's typical (root mean square) share.
    shared_terms_ : dict of str to float
        With ``weights="auto"``, the mean number of terms two fitted
        documents share, for each lexical block; empty otherwise.
    n_features_out_ : int
        Width of the output.

    See Also
    --------
    SentenceEmbedder : The semantic view; ``long_documents="chunk"`` reads
        whole documents.
    WordVectorEmbedder : Pooled static word vectors, a cheap semantic view.
    sklearn.pipeline.FeatureUnion : Concatenation without normalising.
    describe_clusters : What each cluster of the output is about.

    Examples
    --------
    >>> from sklearn.decomposition import TruncatedSVD
    >>> from sklearn.feature_extraction.text import TfidfVectorizer
    >>> from sklearn.pipeline import make_pipeline
    >>> from embedxfer import HybridEmbedder, WordVectorEmbedder
    >>> docs = ["the match ended in a draw", "shares fell on the stock market",
    ...         "the striker scored twice", "the bank raised interest rates"]
    >>> hybrid = HybridEmbedder(
    ...     blocks=[("lsa", make_pipeline(TfidfVectorizer(), TruncatedSVD(2, random_state=0))),
    ...             ("glove", WordVectorEmbedder())],
    ...     weights={"lsa": 1.0, "glove": 3.0},
    ... )
    >>> X = hybrid.fit_transform(docs)
    >>> X.shape, hybrid.output_indices_["glove"]
    ((4, 52), slice(2, 52, None))
    >>> import numpy as np
    >>> np.linalg.norm(X, axis=1).round(3)
    array([1., 1., 1., 1.], dtype=float32)
    """

    _parameter_constraints = {
        "blocks": [Rule(_blocks_problem)],
        "weights": [Rule(_weights_problem)],
    }

    def __init__(self, *, blocks=None, weights="auto"):
        self.blocks = blocks
        self.weights = weights

    @staticmethod
    def default_blocks():
        """The default views, fresh and unfitted: LSA and chunked, max-pooled MiniLM.

        Pass them explicitly to reach their parameters, e.g.
        ``HybridEmbedder(blocks=HybridEmbedder.default_blocks()).set_params(
        minilm__cache="embeddings/", minilm__device="cuda")``.

        Returns
        -------
        blocks : list of (str, transformer)
            ``("lsa", Pipeline(TfidfVectorizer(sublinear_tf=True,
            stop_words="english"), TruncatedSVD(100)))`` and ``("minilm",
            SentenceEmbedder(long_documents="chunk", chunk_pooling="max",
            normalize=True))``.
        """
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import make_pipeline

        from ._sentence import SentenceEmbedder

        lsa = make_pipeline(
            TfidfVectorizer(sublinear_tf=True, stop_words="english"),
            TruncatedSVD(n_components=100, random_state=0),
        )
        minilm = SentenceEmbedder(long_documents="chunk", chunk_pooling="max", normalize=True)
        return [("lsa", lsa), ("minilm", minilm)]

    # -- parameters of the blocks (FeatureUnion's conventions) -------------------

    def get_params(self, deep=True):
        """Get the parameters of this embedder and, with ``deep``, of its blocks.

        Parameters
        ----------
        deep : bool, default=True
            Include the blocks and their parameters.

        Returns
        -------
        params : dict
            Parameter names mapped to their values; a block's own parameters
            are named ``name__param``.
        """
        return self._get_params("blocks", deep=deep)

    def set_params(self, **params):
        """Set parameters, a whole block by its name, or a block's parameter as ``name__param``.

        Parameters
        ----------
        **params : dict
            Parameter names (``blocks``, ``weights``, a block's name, or
            ``name__param``) mapped to their new values.

        Returns
        -------
        self : HybridEmbedder
            This estimator.
        """
        self._set_params("blocks", **params)
        return self

    @property
    def named_blocks_(self):
        """The fitted blocks by name, in output order (``"drop"`` ones left out)."""
        check_is_fitted(self, "blocks_")
        return Bunch(**self.blocks_)

    # -- scikit-learn API --------------------------------------------------------

    def fit(self, X, y=None):
        """Fit every block on the documents.

        Parameters
        ----------
        X : iterable of str
            The documents.
        y : array-like, default=None
            Passed to each block's ``fit`` (unsupervised blocks ignore it).

        Returns
        -------
        self : HybridEmbedder
            The fitted estimator.
        """
        self._fit_transform(X, y)
        return self

    def fit_transform(self, X, y=None):
        """Fit every block and return the weighted blocks side by side.

        Encodes each document once per block (``fit`` then ``transform``
        would encode twice).

        Parameters
        ----------
        X : iterable of str
            The documents.
        y : array-like, default=None
            Passed to each block's ``fit_transform``.

        Returns
        -------
        X_new : ndarray of shape (n_documents, n_features_out), float32
            A CSR matrix when a block's output is sparse.
        """
        return self._fit_transform(X, y)

    def transform(self, X):
        """Encode documents with every block and put the weighted blocks side by side.

        Parameters
        ----------
        X : iterable of str
            The documents: a list, a 1-D array, a pandas Series or a
            one-column DataFrame.

        Returns
        -------
        X_new : ndarray of shape (n_documents, n_features_out), float32
            A CSR matrix when a block's output is sparse.
        """
        check_is_fitted(self)
        docs = check_documents(X, allow_empty=True)
        if not docs:
            # No rows, with the type and width one document gets: the blocks
            # (a TF-IDF among them) refuse an empty batch.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return self._transform_documents([""])[:0]
        return self._transform_documents(docs)

    def _transform_documents(self, docs):
        auto = bool(getattr(self, "_retained_rms", None))
        runs = [
            _run_block(name, block, docs, auto and name in self._retained_rms)
            for name, block in self.named_blocks_.items()
        ]
        outputs = [run.out for run in runs]
        for (name, _), out in zip(self.named_blocks_.items(), outputs):
            width = self.output_indices_[name].stop - self.output_indices_[name].start
            if out.shape[1] != width:
                raise ValueError(
                    f"block {name!r} returned {out.shape[1]} columns, but {width} when "
                    "fitted; fit the HybridEmbedder again."
                )
        return self._combine(outputs, self._row_scales(runs) if auto else None)

    def get_feature_names_out(self, input_features=None):
        """Get the output column names: ``{block name}__{the block's feature name}``.

        Parameters
        ----------
        input_features : ignored
            Present for API consistency.

        Returns
        -------
        feature_names_out : ndarray of str
            One name per output column.
        """
        check_is_fitted(self)
        names = []
        for name, block in self.named_blocks_.items():
            index = self.output_indices_[name]
            width = index.stop - index.start
            try:
                inner = [str(f) for f in block.get_feature_names_out()]
            except (AttributeError, TypeError, ValueError):
                inner = None
            if inner is None or len(inner) != width:
                inner = [f"{name}{i}" for i in range(width)]
            names += [f"{name}__{feature}" for feature in inner]
        return np.asarray(names, dtype=object)

    @property
    def _n_features_out(self):
        return self.n_features_out_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags

    # -- the embedder protocol (embedxfer._core.embedder) --------------------------------------
    embedder_kind = "hybrid"
    _description = "hybrid embedder"
    _fit_encodes = True

    def _corpus_fit(self):
        return CORPUS_FIT_WHOLE

    def _sub_embedders(self):
        return tuple(getattr(self, "blocks_", {}).values())

    def _model_reference(self):
        return None

    def _cache_fingerprint(self):
        """A hash of every block's fingerprint (or fitted state) and the weights.

        None when a block cannot be fingerprinted safely.
        """
        check_is_fitted(self)
        h = hashlib.blake2b(digest_size=16)
        layout = [(name, index.start, index.stop) for name, index in self.output_indices_.items()]
        floors = sorted(self._norm_floors.items())
        scales = sorted(getattr(self, "_retained_rms", {}).items())
        h.update(repr(("hybrid/1", layout, sorted(self.weights_.items()), floors, scales)).encode())
        for name, block in self.blocks_.items():
            part = _block_fingerprint(block)
            if part is None:
                return None
            h.update(f"{name}={part}\n".encode())
        return f"hybrid:{h.hexdigest()}"

    @classmethod
    def _name_claim(cls, name):
        return CLAIM_ALWAYS if name.lower() in (n.lower() for n in HYBRID_NAMES) else None

    @classmethod
    def _canonical_name(cls, name):
        return HYBRID_NAMES[0]

    @classmethod
    def _known_names(cls):
        return HYBRID_NAMES[:1]

    @classmethod
    def _from_name(cls, name, options):
        # Rows are unit length already: normalize changes nothing.
        params = {f"minilm__{k}": v for k, v in options.given("batch_size", "cache").items()}
        return cls(blocks=cls.default_blocks()).set_params(minilm__device=options.device, **params)

    @classmethod
    def _requirements(cls, settings):
        from ._sentence import SentenceEmbedder

        return SentenceEmbedder._requirements({})

    @classmethod
    def _download_origin(cls, name):
        from ._encoder_loading import DEFAULT_MODEL
        from ._sentence import SentenceEmbedder

        return SentenceEmbedder._download_origin(DEFAULT_MODEL)

    @classmethod
    def _download_remedy(cls, name):
        from ._encoder_loading import DEFAULT_MODEL
        from ._sentence import SentenceEmbedder

        return SentenceEmbedder._download_remedy(DEFAULT_MODEL)

    # -- helpers -----------------------------------------------------------------

    def _fit_transform(self, X, y):
        validate_params(self)
        docs = check_documents(X)
        if y is not None and len(y) != len(docs):
            raise ValueError(f"X has {len(docs)} documents but y has {len(y)} labels.")
        blocks = self.default_blocks() if self.blocks is None else list(self.blocks)
        names = [name for name, _ in blocks]
        auto = _is_auto(self.weights)
        weights = {} if auto else dict(self.weights or {})
        unknown = sorted(set(weights) - set(names))
        if unknown:
            raise ValueError(
                f"weights names {unknown}, which are not blocks; the blocks are {names}."
            )
        kept = [(name, clone(block)) for name, block in blocks if not _is_drop(block)]
        if not kept:
            raise ValueError(f"every block of {names} is 'drop'; keep at least one block.")
        runs = []
        for name, block in kept:
            try:
                runs.append(_run_block(name, block, docs, auto, fit_y=(y,)))
            except ValueError as err:
                raise _with_a_smaller_size(err, name, block, self.blocks is None) from err
        outputs = [run.out for run in runs]
        indices, start = {}, 0
        for (name, _), out in zip(kept, outputs):
            indices[name] = slice(start, start + out.shape[1])
            start += out.shape[1]
        self.shared_terms_ = {}
        self._retained_rms = {}
        if auto:
            for (name, _), run in zip(kept, runs):
                if run.terms is not None:
                    self.shared_terms_[name] = _mean_shared_terms(run.terms)
                if run.retained is not None:
                    self._retained_rms[name] = _root_mean_square(run.retained)
            # A lexical view can only compare documents that share a term: it
            # weighs the chance that two documents of the corpus do.
            weights = {name: -np.expm1(-m) for name, m in self.shared_terms_.items()}
        # A block without columns can hold no share of a row's norm.
        raw = {
            name: float(weights.get(name, 1.0)) if out.shape[1] else 0.0
            for (name, _), out in zip(kept, outputs)
        }
        if auto and sum(raw.values()) <= 0:  # no two documents share a term anywhere
            raw = {name: 1.0 if out.shape[1] else 0.0 for (name, _), out in zip(kept, outputs)}
        total = sum(raw.values())
        if total <= 0:
            raise ValueError(
                f"the weights {raw} of the blocks with columns sum to 0; give at least one "
                "block with columns a positive weight."
            )
        self._norm_floors = {name: _norm_floor(out) for (name, _), out in zip(kept, outputs)}
        self.blocks_ = dict(kept)
        self.output_indices_ = indices
        self.weights_ = {name: value / total for name, value in raw.items()}
        self.n_features_out_ = start
        return self._combine(outputs, self._row_scales(runs))

    def _row_scales(self, runs):
        """Each projected lexical block's per-document scale under ``weights="auto"``.

        The share of a document's term vector that the block's components
        capture, over its root mean square on the fitted corpus: a document
        the components describe poorly leans on the other views.
        """
        rms = getattr(self, "_retained_rms", {})
        return {
            name: run.retained / rms[name] if rms[name] > 0 else np.ones_like(run.retained)
            for name, run in zip(self.blocks_, runs)
            if name in rms
        }

    def _combine(self, outputs, row_scales=None):
        """Each block's rows at norm ``sqrt(weights_[name])``, side by side.

        With per-document scales ``s`` (``weights="auto"``), a block's rows are
        at norm ``sqrt(w s**2 / sum(w s**2))`` instead, the sum running over
        the blocks of that row.
        """
        names = list(self.named_blocks_)
        shares = {name: self.weights_[name] for name in names}
        if row_scales:
            squares = {name: shares[name] * row_scales.get(name, 1.0) ** 2 for name in names}
            total = np.broadcast_to(sum(squares.values()), (outputs[0].shape[0],))
            shares = {
                name: np.divide(
                    np.broadcast_to(squares[name], total.shape),
                    total,
                    out=np.zeros(total.shape),
                    where=total > 0,
                )
                for name in names
            }
        # Rows whose norm is rounding noise (e.g. a document whose words all
        # fall outside an SVD's components) stay zero instead of being blown
        # up into a random direction; all-zero rows never divide by zero.
        scaled = [
            unit_rows(out, floor=self._norm_floors[name], scale=np.sqrt(shares[name]))
            for name, out in zip(names, outputs)
        ]
        if any(sp.issparse(out) for out in scaled):
            return sp.hstack(scaled, format="csr", dtype=np.float32)
        return np.hstack(scaled).astype(np.float32, copy=False)


@dataclass
class _BlockRun:
    """A block's output, and what ``weights="auto"`` reads on the way."""

    out: object
    terms: object = None
    retained: np.ndarray = None


def _run_block(name, block, docs, auto, fit_y=None):
    """Fit and transform (``fit_y=(y,)``) or transform ``docs`` with one block.

    With ``auto``, a pipeline runs step by step to keep its first step's
    output (the document-term matrix of a vectorizer, when sparse) and, when
    its last step is a projection (has ``components_``), the share of each
    document's vector the projection keeps.
    """
    n = len(docs)
    steps = None
    if auto and isinstance(block, Pipeline):
        steps = [step for _, step in block.steps if not _is_passthrough(step)]
    if not steps:
        method = block.transform if fit_y is None else block.fit_transform
        out = _as_matrix(_block_call(name, method, docs, *(fit_y or ())), name, n)
        terms = out if auto and sp.issparse(out) else None
        return _BlockRun(out, terms)
    data, terms, before = docs, None, None
    for index, step in enumerate(steps):
        if index == len(steps) - 1:
            before = data
        if fit_y is None:
            data = _block_call(name, step.transform, data)
        elif hasattr(step, "fit_transform"):
            data = _block_call(name, step.fit_transform, data, *fit_y)
        else:
            data = _block_call(name, lambda d, t: t.fit(d, *fit_y).transform(d), data, step)
        if index == 0 and sp.issparse(data):
            terms = data
    out = _as_matrix(data, name, n)
    retained = None
    if len(steps) > 1 and hasattr(steps[-1], "components_"):
        before = _as_matrix(before, name, n)
        inputs = row_norms(before)
        retained = np.divide(row_norms(out), inputs, out=np.zeros(n), where=inputs > 0)
    return _BlockRun(out, terms, retained)


def _mean_shared_terms(terms):
    """The mean number of columns two distinct rows of ``terms`` both have non-zero.

    From the document frequencies alone: a pair shares term ``t`` in
    ``df_t * (df_t - 1)`` of the ``n * (n - 1)`` ordered pairs.
    """
    n = terms.shape[0]
    if n < 2:
        return float("inf")  # no pair to judge by: the view keeps its full weight
    present = sp.csr_matrix(terms, copy=True)
    present.eliminate_zeros()
    df = np.bincount(present.indices, minlength=present.shape[1]).astype(np.float64)
    return float((df @ (df - 1)) / (n * (n - 1.0)))


def _root_mean_square(values):
    values = values[values > 0]
    return float(np.sqrt(np.mean(values**2))) if values.size else 0.0


def _norm_floor(matrix):
    """Row norms at or below this are rounding noise: 1e-6 of the block's typical norm."""
    norms = row_norms(matrix)
    norms = norms[norms > 0]
    return float(np.median(norms)) * 1e-6 if norms.size else 0.0


def _block_fingerprint(block):
    """An embedder block's own fingerprint; a hash of any other block's parameters and state."""
    import joblib

    state = _public_state(block)
    return state if isinstance(block, Embedder) else joblib.hash(state, hash_name="sha1")


def _public_state(obj):
    """Parameters and public fitted attributes (``*_``), recursively, in a hashable form.

    Private attributes are left out: some hold per-process values (scikit-learn's
    TfidfVectorizer keeps the ``id()`` of its stop-word list), and arrays are
    made contiguous, since their memory layout changes in a pickle round trip.
    """
    if isinstance(obj, Embedder):  # e.g. inside a Pipeline block: its own fingerprint
        return obj._cache_fingerprint()
    if hasattr(obj, "get_params") and not isinstance(obj, type):
        params = {k: _public_state(v) for k, v in obj.get_params(deep=False).items()}
        fitted = {}
        for name in dir(obj):
            if name.endswith("_") and not name.startswith("_"):
                try:
                    fitted[name] = _public_state(getattr(obj, name))
                except Exception:  # a property of a state it does not have
                    continue
        return (type(obj).__module__, type(obj).__qualname__, params, fitted)
    if isinstance(obj, (list, tuple)):
        return [_public_state(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _public_state(v) for k, v in obj.items()}
    if sp.issparse(obj):
        obj = sp.csr_matrix(obj)
        return [obj.shape, *(np.ascontiguousarray(a) for a in (obj.data, obj.indices, obj.indptr))]
    if isinstance(obj, np.ndarray):
        return np.ascontiguousarray(obj)
    return obj


def _is_auto(weights):
    return isinstance(weights, str) and weights == "auto"


def _is_passthrough(step):
    return step is None or (isinstance(step, str) and step == "passthrough")


def _is_drop(block):
    return isinstance(block, str) and block == _DROP


def _with_a_smaller_size(err, name, block, default):
    """``err`` with the way out when it is a block's ``n_components`` too large for the corpus."""
    steps = block.steps if isinstance(block, Pipeline) else [(None, block)]
    sized = [step for step, est in steps if "n_components" in getattr(est, "get_params", dict)()]
    if not sized or "n_components" not in str(err):
        return err
    param = f"{name}__{sized[-1]}__n_components" if sized[-1] else f"{name}__n_components"
    first = "pass blocks=HybridEmbedder.default_blocks() and " if default else ""
    return type(err)(
        f"{str(err).rstrip('.')}; {first}set {param} to a smaller size with set_params, or fit "
        "on more documents."
    )


def _block_call(name, method, *args):
    """Call a block's method; a ValueError or TypeError says which block failed."""
    try:
        return method(*args)
    except (ValueError, TypeError) as err:
        try:
            named = type(err)(f"block {name!r}: {err}")
        except Exception:
            raise err from None
        raise named from err


def _as_matrix(out, name, n_rows):
    """A block's output as a 2-D float32 array or CSR matrix, checked against ``n_rows``."""
    if sp.issparse(out):
        matrix = sp.csr_matrix(out, dtype=np.float32)
        values = matrix.data
    else:
        if hasattr(out, "to_numpy"):  # a block with set_output(transform="pandas")
            out = out.to_numpy()
        matrix = np.asarray(out)
        if matrix.ndim == 1:
            matrix = matrix.reshape(-1, 1)
        if matrix.ndim != 2 or matrix.dtype.kind not in "biuf":
            raise ValueError(
                f"block {name!r} returned {matrix.dtype} values of shape {matrix.shape}; "
                "a block must return a 2-D array of numbers."
            )
        matrix = matrix.astype(np.float32, copy=False)
        values = matrix
    if matrix.shape[0] != n_rows:
        raise ValueError(
            f"block {name!r} returned {matrix.shape[0]} rows for {n_rows} documents; every "
            "block must return one row per document."
        )
    if not np.isfinite(values).all():
        raise ValueError(f"block {name!r} returned NaN or infinite values; fix or drop that block.")
    return matrix
