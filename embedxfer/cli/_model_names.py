"""Model names on the command line: ``NAME[:OPTIONS]`` resolved to a :class:`ModelSpec`."""

import difflib
import os
from dataclasses import dataclass, field

from .._core.embedder import (
    CLAIM_ALWAYS,
    CLAIM_NAME,
    CLAIM_PATTERN,
    embedder_class,
    named_embedder_classes,
)
from ..exceptions import UnknownModelError
from ..text._encoder_loading import DEFAULT_MODEL
from ..text._vector_sources import DEFAULT_VECTORS
from ._availability import check_available
from ._errors import CLIError

TFIDF_NAMES = ("tfidf", "tf-idf")
# What "evaluate" compares unless told otherwise, and what "demo" compares.
DEMO_MODELS = (DEFAULT_VECTORS, DEFAULT_MODEL, TFIDF_NAMES[0])
_PATH_SUFFIXES = (".txt", ".bin", ".vec", ".gz", ".bz2", ".kv", ".model", ".npy", ".zip", ".w2v")


@dataclass
class ModelSpec:
    """A model named on the command line, resolved.

    Attributes
    ----------
    name : str
        The model name or path (without options).
    kind : str
        A registered embedder kind (``"word"``, ``"sentence"``, ``"static"``,
        ``"hybrid"``, ...; see :mod:`embedxfer._core.embedder`) or ``"tfidf"``.
    pooling : str or None
        Pooling option given after ``:`` (``None``: the embedder's default).
    weighting : str or None
        Word-vector weighting given after ``:``.
    label : str
        How tables and plots name it (``name`` plus its options).
    settings : dict
        Further parameters from runtime options, such as a sentence model's
        ``onnx``, ``onnx-int8``, ``openvino`` or ``chunk``.
    """

    name: str
    kind: str
    pooling: str = None
    weighting: str = None
    label: str = field(default="")
    settings: dict = field(default_factory=dict)


def known_model_names():
    """Names that resolve without a path: each kind's known names and the TF-IDF baseline."""
    names = [n for cls in named_embedder_classes().values() for n in cls._known_names()]
    return list(dict.fromkeys(names + list(TFIDF_NAMES[:1])))


def parse_model(text, kind="auto", extra_options=()):
    """Resolve ``NAME[:OPTIONS]`` to a :class:`ModelSpec`.

    ``OPTIONS`` are comma-separated option words of the model's kind
    (``Embedder._name_option``): poolings and weightings, e.g.
    ``glove-6B-50d:mean+max``, ``glove-6B-50d:sif``,
    ``all-MiniLM-L6-v2:cls``; ``all-MiniLM-L6-v2:static`` is the sentence
    model distilled into a static table (:class:`embedxfer.StaticEmbedder`,
    word poolings); sentence models also take ``onnx``,
    ``onnx-int8`` (ONNX Runtime backend, float32 or int8), ``openvino``,
    ``openvino-bf16``, ``openvino-int8`` (OpenVINO backend: float32, bfloat16, or int8
    calibrated on the documents) and ``chunk``
    (long documents read whole), e.g. ``all-MiniLM-L6-v2:onnx-int8,chunk``.
    ``kind`` is ``"auto"`` (from the name) or a registered kind. ``extra_options``
    are validated the same way (the command line's ``--pooling`` and ``--weighting``).
    """
    name, options = _split_options(text)
    options = options + [o for o in extra_options if o is not None]
    resolved = resolve_kind(name, kind)
    suffixes = set()
    for suffix_kind, cls in named_embedder_classes().items():
        if cls._name_suffix is None or cls._name_suffix[0] not in options:
            continue
        option, base = cls._name_suffix
        if resolved not in (base, suffix_kind):
            raise ValueError(
                f"model {text!r}: option {option!r} makes {cls._description} embeddings of a "
                f"{embedder_class(base)._description} model; {name!r} is not one."
            )
        resolved = suffix_kind
        suffixes.add(option)
    pooling = weighting = None
    settings = {}
    for option in options:
        if option in suffixes:
            continue
        role, params = _option_role(text, option, resolved)
        if role == "weighting":
            weighting = params["weighting"]
        elif role == "pooling":
            pooling = params["pooling"]
        else:
            settings.update(params)
    name = TFIDF_NAMES[0] if resolved == "tfidf" else embedder_class(resolved)._canonical_name(name)
    label = name if not options else f"{name}:{','.join(options)}"
    return ModelSpec(
        name=name,
        kind=resolved,
        pooling=pooling,
        weighting=weighting,
        label=label,
        settings=settings,
    )


def _option_role(text, option, resolved):
    """``(role, parameters)`` for an option of a ``resolved`` model (``Embedder._name_option``)."""
    if resolved == "tfidf":
        raise ValueError(f"model {text!r}: the TF-IDF baseline takes no options.")
    cls = embedder_class(resolved)
    allowed = cls._options_help()
    if allowed is None:
        raise ValueError(f"model {text!r}: the {cls._description} takes no options.")
    found = cls._name_option(option)
    if found is not None:
        return found
    raise ValueError(
        f"model {text!r}: option {option!r} is not understood for {cls._description} "
        f"embeddings; use {allowed}."
    )


def _option_kind(kind, option):
    """The role of ``option`` for models of ``kind`` (``"pooling"``, ...), or None."""
    if kind not in named_embedder_classes():
        return None
    found = embedder_class(kind)._name_option(option)
    return None if found is None else found[0]


def _option_word(word):
    """Whether some kind understands ``word`` as a model-name option (or suffix)."""
    return any(
        cls._name_option(word) is not None
        or (cls._name_suffix is not None and cls._name_suffix[0] == word)
        for cls in named_embedder_classes().values()
    )


def _split_options(text):
    text = os.fspath(text)
    head, sep, tail = text.rpartition(":")
    if not sep or not head or len(head) == 1:  # no options, or a Windows drive letter
        return text, []
    options = [o.strip() for o in tail.split(",") if o.strip()]
    if options and all(_option_word(p) for o in options for p in o.split("+")):
        return head, options
    if options and head in known_model_names():
        # A known model with an option we do not know: parse_model names the option.
        return head, options
    return text, []


def resolve_kind(name, kind="auto"):
    """The kind (``"word"``, ``"sentence"``, ``"hybrid"``, ... or ``"tfidf"``) of a model name.

    Each registered kind ranks the name (``Embedder._name_claim``): a fixed
    name of a kind wins over ``kind``; otherwise ``kind`` (unless ``"auto"``);
    then a known name or existing path; then, unless the name looks like a
    missing path, a name shaped like one of a kind (a Hub id).

    Raises
    ------
    FileNotFoundError
        For something that looks like a path but does not exist.
    UnknownModelError
        For a bare name that is not known; the message lists close names.
    """
    kinds = named_embedder_classes()
    if kind != "auto" and kind not in kinds:
        expected = ", ".join(repr(k) for k in ("auto", *kinds))
        raise ValueError(f"kind={kind!r}; expected one of {expected}.")
    if name.lower() in TFIDF_NAMES:
        return "tfidf"
    claims = {k: cls._name_claim(name) for k, cls in kinds.items()}
    for k, claim in claims.items():
        if claim == CLAIM_ALWAYS:
            return k
    if kind != "auto":
        return kind
    for k, claim in claims.items():
        if claim == CLAIM_NAME:
            return k
    if _looks_like_path(name):
        raise FileNotFoundError(f"model {name!r}: no such file or folder.")
    for k, claim in claims.items():
        if claim == CLAIM_PATTERN:
            return k
    close = close_model_names(name)
    hint = f" Close names: {', '.join(close)}." if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}.{hint} Run 'embedxfer models' for what is available; a "
        "Hugging Face Hub model is named 'owner/name' (or pass --kind sentence); word "
        "vectors can be given as a file path."
    )


def close_model_names(name, n=3):
    """Known names close to ``name`` (case-insensitive, substrings first)."""
    known = known_model_names()
    lower = {k.lower(): k for k in known}
    query = name.lower()
    found = [k for k in known if query and query in k.lower()]
    found += [lower[m] for m in difflib.get_close_matches(query, list(lower), n=n, cutoff=0.6)]
    return list(dict.fromkeys(found))[:n]


def _looks_like_path(name):
    return (
        name.startswith((".", "/", "~", "\\"))
        or name.count("/") > 1
        or "\\" in name
        or name.lower().endswith(_PATH_SUFFIXES)
    )


def embedding_spec(config, tfidf_end):
    """The model ``embed`` is asked for, with its ``--pooling`` and ``--weighting``.

    Raises CLIError for the TF-IDF baseline (the message ends in ``tfidf_end``)
    and for a weighting of a sentence model; checks that the model is available.
    """
    spec = parse_model(config.model, config.kind)
    if spec.kind == "tfidf":
        raise CLIError("'tfidf' is a baseline for 'evaluate', not an embedding model" + tfidf_end)
    if config.weighting is not None and _option_kind(spec.kind, config.weighting) != "weighting":
        raise CLIError(f"--weighting applies to word vectors, not to {spec.name!r}.")
    spec = parse_model(config.model, spec.kind, extra_options=(config.pooling, config.weighting))
    check_available(spec)
    return spec
