"""Whether a named model is on this machine, or must be downloaded and can be."""

import os
import socket

from .._core.embedder import embedder_class
from .._core.environment import OFFLINE_VARIABLES, offline
from .._core.optional import install_hint
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
    return embedder_class(spec.kind)._download_origin(spec.name)


def missing_extra(spec):
    """``(module, extra)`` for a library ``spec`` needs that this install lacks, or None."""
    if spec.kind == "tfidf":
        return None  # TF-IDF needs only the core install
    for module, extra in embedder_class(spec.kind)._requirements(spec.settings):
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
    remedy = embedder_class(spec.kind)._download_remedy(spec.name)
    raise ModelUnavailableError(
        f"model {spec.name!r} must be downloaded from {origin}, but {reason}; {remedy} "
        "(see 'embedxfer models')."
    )
