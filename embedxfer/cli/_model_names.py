"""Model names on the command line: ``NAME[:OPTIONS]`` resolved to a :class:`ModelSpec`."""

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .._pooling import SENTENCE_POOLINGS, WORD_POOLINGS
from .._transformers import DEFAULT_MODEL, PACKAGED_MINILM_NAMES
from .._vectors import DEFAULT_VECTORS, GENSIM_DATA_NAMES, PACKAGED_GLOVE_NAMES
from .._weighting import WEIGHTINGS
from ..exceptions import UnknownModelError
from ._availability import check_available
from ._errors import CLIError
from ._options import EMBEDDER_KINDS

TFIDF_NAMES = ("tfidf", "tf-idf")
# HybridEmbedder's default blocks: LSA beside chunked, max-pooled all-MiniLM-L6-v2.
HYBRID_NAMES = ("hybrid", "lsa+all-MiniLM-L6-v2")
# Options of sentence models that choose how they run rather than what they pool.
SENTENCE_RUNTIME_OPTIONS = {
    "torch": {"backend": "torch"},
    "onnx": {"backend": "onnx"},
    "onnx-int8": {"backend": "onnx", "precision": "int8"},
    "chunk": {"long_documents": "chunk"},
}
# The option that turns a sentence model into its distilled static table (StaticEmbedder).
STATIC_OPTION = "static"
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
    kind : {"word", "sentence", "static", "tfidf", "hybrid"}
    pooling : str or None
        Pooling option given after ``:`` (``None``: the embedder's default).
    weighting : str or None
        Word-vector weighting given after ``:``.
    label : str
        How tables and plots name it (``name`` plus its options).
    settings : dict
        Further SentenceEmbedder parameters from options such as ``onnx``,
        ``onnx-int8`` or ``chunk``.
    """

    name: str
    kind: str
    pooling: str = None
    weighting: str = None
    label: str = field(default="")
    settings: dict = field(default_factory=dict)


def known_model_names():
    """Names that resolve without a path: packaged, gensim-data and the TF-IDF baseline."""
    return list(
        dict.fromkeys(
            PACKAGED_GLOVE_NAMES
            + PACKAGED_MINILM_NAMES
            + GENSIM_DATA_NAMES
            + TFIDF_NAMES[:1]
            + HYBRID_NAMES[:1]
        )
    )


def parse_model(text, kind="auto", extra_options=()):
    """Resolve ``NAME[:OPTIONS]`` to a :class:`ModelSpec`.

    ``OPTIONS`` are comma-separated pooling and weighting words, e.g.
    ``glove-6B-50d:mean+max``, ``glove-6B-50d:sif``,
    ``all-MiniLM-L6-v2:cls``; ``all-MiniLM-L6-v2:static`` is the sentence
    model distilled into a static table (:class:`embedxfer.StaticEmbedder`,
    word poolings); sentence models also take ``onnx``,
    ``onnx-int8`` (ONNX Runtime backend, float32 or int8) and ``chunk``
    (long documents read whole), e.g. ``all-MiniLM-L6-v2:onnx-int8,chunk``.
    ``kind`` is ``"auto"`` (from the name),
    ``"word"`` or ``"sentence"``. ``extra_options`` are validated the same
    way (the command line's ``--pooling`` and ``--weighting``).
    """
    name, options = _split_options(text)
    options = options + [o for o in extra_options if o is not None]
    resolved = resolve_kind(name, kind)
    if STATIC_OPTION in options:
        if resolved != "sentence":
            raise ValueError(
                f"model {text!r}: option {STATIC_OPTION!r} distils a sentence model; "
                f"{name!r} is not one."
            )
        resolved = "static"
    pooling = weighting = None
    settings = {}
    for option in options:
        if option == STATIC_OPTION:
            continue
        role = _option_role(text, option, resolved)
        if role == "weighting":
            weighting = option
        elif role == "pooling":
            pooling = option
        else:
            settings.update(SENTENCE_RUNTIME_OPTIONS[option])
    if resolved == "tfidf":
        name = TFIDF_NAMES[0]
    if resolved == "hybrid":
        name = HYBRID_NAMES[0]
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
    """``"weighting"``, ``"pooling"`` or ``"runtime"`` for an option of a ``resolved`` model."""
    if resolved == "tfidf":
        raise ValueError(f"model {text!r}: the TF-IDF baseline takes no options.")
    if resolved == "hybrid":
        raise ValueError(f"model {text!r}: the hybrid embedder takes no options.")
    if option in WEIGHTINGS and resolved == "word":
        return "weighting"
    if (resolved in ("word", "static") and all(p in WORD_POOLINGS for p in option.split("+"))) or (
        resolved == "sentence" and option in SENTENCE_POOLINGS
    ):
        return "pooling"
    if resolved == "sentence" and option in SENTENCE_RUNTIME_OPTIONS:
        return "runtime"
    allowed = (
        f"poolings {', '.join(WORD_POOLINGS)} (or several joined by '+') and "
        f"weightings {', '.join(WEIGHTINGS)}"
        if resolved == "word"
        else f"poolings {', '.join(WORD_POOLINGS)}"
        if resolved == "static"
        else f"poolings {', '.join(SENTENCE_POOLINGS)} and {', '.join(SENTENCE_RUNTIME_OPTIONS)}"
    )
    raise ValueError(
        f"model {text!r}: option {option!r} is not understood for {resolved} "
        f"embeddings; use {allowed}."
    )


def _split_options(text):
    text = os.fspath(text)
    head, sep, tail = text.rpartition(":")
    if not sep or not head or len(head) == 1:  # no options, or a Windows drive letter
        return text, []
    options = [o.strip() for o in tail.split(",") if o.strip()]
    words = set(WORD_POOLINGS + SENTENCE_POOLINGS + WEIGHTINGS)
    words |= set(SENTENCE_RUNTIME_OPTIONS) | {STATIC_OPTION}
    if options and all(set(o.split("+")) <= words for o in options):
        return head, options
    if options and head in known_model_names():
        # A known model with an option we do not know: parse_model names the option.
        return head, options
    return text, []


def resolve_kind(name, kind="auto"):
    """``"word"``, ``"sentence"`` or ``"tfidf"`` for a model name or path.

    Raises
    ------
    FileNotFoundError
        For something that looks like a path but does not exist.
    UnknownModelError
        For a bare name that is not known; the message lists close names.
    """
    if kind not in EMBEDDER_KINDS:
        raise ValueError(f"kind={kind!r}; expected 'auto', 'word' or 'sentence'.")
    if name.lower() in TFIDF_NAMES:
        return "tfidf"
    if name.lower() in (n.lower() for n in HYBRID_NAMES):
        return "hybrid"
    if kind != "auto":
        return kind
    if name in PACKAGED_GLOVE_NAMES or name in GENSIM_DATA_NAMES:
        return "word"
    if name in PACKAGED_MINILM_NAMES:
        return "sentence"
    path = Path(name).expanduser()
    if path.is_dir():
        return "sentence"
    if path.is_file():
        return "word"
    if _looks_like_path(name):
        raise FileNotFoundError(f"model {name!r}: no such file or folder.")
    if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", name):
        return "sentence"  # a Hugging Face Hub id, e.g. sentence-transformers/all-mpnet-base-v2
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


def embedding_spec(args, tfidf_end):
    """The model ``embed`` is asked for, with its ``--pooling`` and ``--weighting``.

    Raises CLIError for the TF-IDF baseline (the message ends in ``tfidf_end``)
    and for a weighting of a sentence model; checks that the model is available.
    """
    spec = parse_model(args.model, args.kind)
    if spec.kind == "tfidf":
        raise CLIError("'tfidf' is a baseline for 'evaluate', not an embedding model" + tfidf_end)
    if args.weighting is not None and spec.kind != "word":
        raise CLIError(f"--weighting applies to word vectors, not to {spec.name!r}.")
    spec = parse_model(args.model, spec.kind, extra_options=(args.pooling, args.weighting))
    check_available(spec)
    return spec
