"""Whether a named model is on this machine, or must be downloaded and can be."""

import os
import socket

from .._environment import OFFLINE_VARIABLES, offline
from .._vectors import source_identity


class ModelUnavailableError(ConnectionError):
    """A model that must be downloaded while the network cannot be used."""


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


def check_available(spec):
    """Raise :class:`ModelUnavailableError` when ``spec`` needs a download that cannot happen."""
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
    else:
        remedy = (
            "download it on a connected machine and pass its folder, or use the packaged "
            "'all-MiniLM-L6-v2'"
        )
    raise ModelUnavailableError(
        f"model {spec.name!r} must be downloaded from {origin}, but {reason}; {remedy} "
        "(see 'embedxfer models')."
    )
