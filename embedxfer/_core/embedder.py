"""The embedder protocol, and the registry of embedder kinds.

Everything outside the estimators (the command line, :mod:`embedxfer.dask`)
talks to an embedder through :class:`Embedder` and finds its class through
:func:`embedder_class`: nothing there probes an estimator's private names or
branches on its kind. A new embedder is one module whose class implements
:class:`Embedder`, plus one :func:`register_embedder` line below.

The protocol has two halves:

- on an instance (what a Dask worker and the encoding loop need):
  :meth:`Embedder._resolve_device_here`, :meth:`Embedder._load_model`,
  :meth:`Embedder._model_reference`, :meth:`Embedder._cache_fingerprint`,
  :meth:`Embedder._corpus_fit`, :meth:`Embedder._sub_embedders` and
  ``_fit_encodes``;
- on the class (how a model name becomes an estimator):
  ``embedder_kind``, :meth:`Embedder._name_claim`,
  :meth:`Embedder._name_option`, :meth:`Embedder._from_name`,
  :meth:`Embedder._requirements` and :meth:`Embedder._download_origin`.

Model names, option words and download origins are the library's own
vocabulary (packaged names, poolings, backends); nothing here knows argparse.
"""

import importlib
from abc import ABCMeta, abstractmethod
from dataclasses import dataclass, field

from .validation import read_once

# Values of Embedder._corpus_fit().
CORPUS_FIT_NONE = "none"  # fit learns nothing from the documents
CORPUS_FIT_STATISTICS = "statistics"  # sums over partitions (embedxfer.dask.fit)
CORPUS_FIT_WHOLE = "whole"  # fit needs every document (and labels) at once

# How Embedder._name_claim ranks a model name (see resolve order in its docstring).
CLAIM_ALWAYS = "always"
CLAIM_NAME = "name"
CLAIM_PATTERN = "pattern"


@dataclass(frozen=True)
class BuildOptions:
    """What a model name's options and the common run settings ask of a new embedder.

    ``None`` means "the embedder's default"; each kind takes the fields that
    apply to it (:meth:`Embedder._from_name`).
    """

    pooling: str = None
    weighting: str = None
    settings: dict = field(default_factory=dict)  # parameters from runtime option words
    batch_size: int = None
    device: str = None
    cache: str = None
    normalize: bool = False
    allow_pickle: bool = False

    def given(self, *names):
        """``{name: value}`` for those of ``names`` that are set (not None)."""
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


class Embedder(metaclass=ABCMeta):
    """What every embedder of the package declares, beyond scikit-learn's API.

    A mixin: put it first among the bases (``class WordVectorEmbedder(Embedder,
    RawInputMixin, ..., BaseEstimator)``). Only :meth:`_cache_fingerprint`
    must be written; every other member has a default that suits an embedder
    with a ``device`` parameter and nothing heavy to load.

    Attributes
    ----------
    embedder_kind : str
        The kind's name in the registry and on the command line
        (``--kind``, ``ModelSpec.kind``), e.g. ``"word"``.
    _description : str
        How messages name the kind, e.g. ``"word vectors"``.
    _kind_option : bool
        Whether ``--kind NAME`` may force this kind for any model name.
    _name_suffix : tuple of (str, str) or None
        ``(option, base kind)``: a model-name option that turns a model of the
        base kind into this kind (``all-MiniLM-L6-v2:static``).
    _fit_encodes : bool
        ``fit`` encodes every document (e.g. to scale blocks), so a caller
        that wants the training documents' vectors calls ``fit_transform``
        once instead of ``fit`` then ``transform``.
    """

    embedder_kind = None
    _description = "embeddings"
    _kind_option = False
    _name_suffix = None
    _fit_encodes = False

    # -- in the process that encodes (a Dask worker, the command line) ------------------

    def _resolve_device(self):
        """The device this process runs the embedder on, from the ``device`` parameter."""
        from .device import resolve_device

        return resolve_device(getattr(self, "device", None))

    def _resolve_device_here(self):
        """Resolve ``device=None`` / ``"auto"`` again in this process (a worker's own GPU).

        A fitted embedder unpickled on another machine keeps an explicit device
        as fitted; an automatic one follows what this machine has.
        """
        if getattr(self, "device", "cpu") in (None, "auto") and hasattr(self, "device_"):
            self.device_ = self._resolve_device()

    def _load_model(self):
        """Load the heavy artefact now (once per process, through ``_core.registry``).

        The default has nothing to load. Raises whatever loading raises; the
        Dask layer names the worker and :meth:`_model_reference`.
        """
        return None

    def _model_reference(self):
        """The name or path of the heavy artefact each process must resolve, or None."""
        return getattr(self, "model", None)

    @abstractmethod
    def _cache_fingerprint(self):
        """A string that changes whenever the vectors would (model, parameters, fitted state).

        Keys the embedding cache and a Dask job's output folder. None when the
        embedder cannot be fingerprinted safely (then nothing is cached).
        """

    def _corpus_fit(self):
        """What ``fit`` needs of the documents, as one of the ``CORPUS_FIT_*`` values.

        ``"none"``: nothing (a few documents, or none, do); ``"statistics"``:
        sums that :func:`embedxfer.dask.fit` gathers over partitions;
        ``"whole"``: every document at once.
        """
        return CORPUS_FIT_NONE

    def _sub_embedders(self):
        """Embedders held inside this one (a composite's fitted blocks); default none."""
        return ()

    def fit_transform(self, X, y=None, **fit_params):
        """Fit to ``X``, then embed it.

        ``fit(X).transform(X)``, except that a one-shot iterator (a generator)
        is read once, so both steps see every document.

        Parameters
        ----------
        X : iterable
            The documents (or images).
        y : array-like, default=None
            Passed to ``fit``.
        **fit_params : dict
            Passed to ``fit``.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features_out)
            The embeddings.
        """
        return super().fit_transform(read_once(X), y, **fit_params)

    # -- from a model name (the command line) -------------------------------------------

    @classmethod
    def _name_claim(cls, name):
        """How surely ``name`` names a model of this kind, or None.

        ``"always"``: a fixed name of this kind, whatever ``--kind`` says;
        ``"name"``: a known name or an existing local file or folder of this
        kind; ``"pattern"``: shaped like one (e.g. a Hub id ``owner/name``),
        tried only once the name is not a missing path.
        """
        return None

    @classmethod
    def _canonical_name(cls, name):
        """The name as reports show it (aliases collapse to one)."""
        return name

    @classmethod
    def _known_names(cls):
        """Names of this kind that resolve without a path (suggested for typos)."""
        return ()

    @classmethod
    def _name_option(cls, option):
        """``(role, parameters)`` for a model-name option word, or None if not understood.

        ``role`` is ``"pooling"``, ``"weighting"`` or ``"runtime"``; e.g. a
        sentence model's ``"onnx-int8"`` gives ``("runtime", {"backend": "onnx",
        "precision": "int8"})``.
        """
        return None

    @classmethod
    def _options_help(cls):
        """The options this kind's model names take, for an error message; None: none."""
        return None

    @classmethod
    def _from_name(cls, name, options):
        """A fresh, unfitted embedder for a model ``name`` and :class:`BuildOptions`."""
        raise NotImplementedError(f"{cls.__name__} is not built from a model name.")

    @classmethod
    def _requirements(cls, settings):
        """``[(module, extra), ...]``: the libraries a model with ``settings`` needs."""
        return []

    @classmethod
    def _download_origin(cls, name):
        """Where ``name`` would be downloaded from, or None when it is local."""
        return None

    @classmethod
    def _download_remedy(cls, name):
        """What to do when ``name`` cannot be downloaded (the end of an error message)."""
        return "pass a local copy"


def embedders_within(estimator):
    """Every :class:`Embedder` in ``estimator``: itself, a Pipeline's steps, a composite's blocks.

    Depth first, in order; other estimators are skipped (a classifier, a
    scikit-learn transformer).
    """
    found = []
    _collect(estimator, found)
    return found


def _collect(estimator, found):
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list):  # a Pipeline
        for _, step in steps:
            _collect(step, found)
        return
    if isinstance(estimator, Embedder):
        found.append(estimator)
        for inner in estimator._sub_embedders():
            _collect(inner, found)


# -- the registry of kinds ---------------------------------------------------------------

# Kind -> "module:Class" (imported on first use) or the class itself. The order is
# the order in which model names are resolved.
_REGISTRY = {}


def register_embedder(kind, target):
    """Register an embedder class under ``kind``.

    Parameters
    ----------
    kind : str
        The kind's name (its class's ``embedder_kind``).
    target : type or str
        The class, or ``"module:Class"`` to import it on first use.
    """
    _REGISTRY[kind] = target


def unregister_embedder(kind):
    """Forget ``kind`` (for tests that register a toy embedder)."""
    _REGISTRY.pop(kind, None)


def embedder_kinds():
    """The registered kinds, in registration order."""
    return tuple(_REGISTRY)


def embedder_class(kind):
    """The class registered under ``kind``.

    Raises
    ------
    KeyError
        For a kind nobody registered.
    """
    target = _REGISTRY[kind]
    if isinstance(target, str):
        module, _, name = target.partition(":")
        target = getattr(importlib.import_module(module), name)
        _REGISTRY[kind] = target
    return target


def embedder_classes():
    """``{kind: class}`` for every registered kind, in order."""
    return {kind: embedder_class(kind) for kind in embedder_kinds()}


def named_embedder_classes():
    """``{kind: class}`` of the kinds built from a model name (they define ``_from_name``)."""
    return {
        kind: cls
        for kind, cls in embedder_classes().items()
        if cls._from_name.__func__ is not Embedder._from_name.__func__
    }


register_embedder("word", "embedxfer.text._word:WordVectorEmbedder")
register_embedder("sentence", "embedxfer.text._sentence:SentenceEmbedder")
register_embedder("static", "embedxfer.text._static:StaticEmbedder")
register_embedder("hybrid", "embedxfer.text._hybrid:HybridEmbedder")
register_embedder("contrastive", "embedxfer.text._contrastive:ContrastiveEmbedder")
register_embedder("image", "embedxfer.image._embedder:ImageEmbedder")
