"""Distilled static tables on disk: written once, verified, memory-mapped.

A table is kept in ``$EMBEDXFER_HOME/static/<key>``, where the key hashes
the model's identity (for a local model, the names, sizes and BLAKE2b digests of
its files, so the same model installed anywhere gives the same key; for a hub
name, the name) and the distillation settings. The folder holds plain data only:
``vectors.npy`` (one row per token id), ``mean.npy`` and
``components.npy`` (the projection from the encoder's space),
``tokenizer.json`` (the model's fast tokenizer, so that encoding needs
neither torch nor transformers) and ``manifest.json`` (the settings, the
shapes, every file's size and checksum). It is written to a temporary
folder and renamed into place in one step; a folder whose files do not
match its manifest is ignored and distilled again, never trusted.
"""

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .._core.artefact import (
    MANIFEST,
    artefact_folders,
    discard_folder,
    file_digest,
    verify_folder,
    write_manifest,
)
from .._core.atomic import replace_folder
from .._core.environment import home_folder
from ._vector_conversions import _STALE_TEMP_SECONDS, _clean_stale_temporaries

# Bump when the distillation recipe or the folder layout changes.
DISTILLATION_VERSION = 1
_MANIFEST = MANIFEST
_ARRAYS = ("vectors", "mean", "components")
_FILES = (*(f"{name}.npy" for name in _ARRAYS), "tokenizer.json")


def static_home():
    """Folder holding distilled tables (``$EMBEDXFER_HOME/static`` or the user cache)."""
    return home_folder("static")


def table_settings(model_identity, *, n_components, sif_a, vocabulary_limit):
    """What determines a table: the model's identity and the distillation settings."""
    return {
        "model": model_identity,
        "n_components": None if n_components is None else int(n_components),
        "sif_a": None if sif_a is None else float(sif_a),
        "vocabulary_limit": None if vocabulary_limit is None else int(vocabulary_limit),
        "version": DISTILLATION_VERSION,
    }


def table_key(settings):
    """Name of the folder a table is kept in: a hash of its settings."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:32]


class StaticTable:
    """A verified distilled table: memory-mapped arrays and the tokenizer's JSON."""

    def __init__(self, folder, manifest, arrays, tokenizer_json):
        self.folder = Path(folder)
        self.manifest = manifest
        self.vectors = arrays["vectors"]
        self.mean = arrays["mean"]
        self.components = arrays["components"]
        self.tokenizer_json = tokenizer_json
        self._token_ids = None

    @property
    def key(self):
        return self.folder.name

    def token_ids(self):
        """The ``TokenIds`` of this table's tokenizer (built once)."""
        if self._token_ids is None:
            from ._wordpiece import TokenIds

            token_ids = TokenIds(self.tokenizer_json)
            # Rows left out of the distillation (vocabulary_limit) are unknown tokens.
            if len(self.vectors) == token_ids.vocab_size:
                token_ids.dropped |= ~np.asarray(self.vectors).any(axis=1)
            self._token_ids = token_ids
        return self._token_ids


def model_content_signature(folder):
    """``[[name, size, blake2b], ...]`` of the files that define a local model.

    Unlike its path and modification times, this is the same wherever the same
    model is installed, so a table, and a fitted StaticEmbedder that names it,
    follows the model's bytes. Hashed once per process per version of the files
    (about 0.1 s for all-MiniLM-L6-v2's 92 MB).
    """
    from .._core.registry import get_or_load
    from ._sentence import _folder_signature

    folder = os.path.abspath(folder)
    signature = _folder_signature(folder)

    def digest():
        return [
            [name, size, file_digest(os.path.join(folder, name))] for name, size, _ in signature
        ]

    key = ("embedxfer.static.model-content", folder, json.dumps(signature))
    return json.loads(json.dumps(get_or_load(key, digest)))


def write_table(folder, arrays, tokenizer_json, settings, source=None):
    """Save a distilled table in ``folder`` atomically; a finished one already there wins.

    ``source`` (the model's folder or name) is recorded for ``embedxfer models``;
    it is not part of the settings, so it does not change the table's key.
    """
    folder = Path(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    except OSError as err:
        raise OSError(
            f"cannot write the distilled table in {folder.parent} ({err.strerror or err}); "
            "set EMBEDXFER_HOME to a writable folder."
        ) from err
    try:
        for name in _ARRAYS:
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(arrays[name], np.float32))
        (tmp / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
        entries = {"settings": settings, "source": source, "shape": list(arrays["vectors"].shape)}
        write_manifest(tmp, entries, _FILES)
        if folder.exists() or folder.is_symlink():
            if read_table(folder, settings, warn=False) is not None:
                return  # a concurrent run finished the same table first
            discard_folder(folder)  # unusable: replace it
        replace_folder(tmp, folder, done=folder / _MANIFEST)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_table(folder, settings, *, warn=True):
    """The table in ``folder``, or None when absent or not trustworthy.

    Used only when its manifest records the same settings (with ``settings``
    None: any) and every file has the recorded size and checksum.
    """
    folder = Path(folder)
    if not (folder.is_dir() or folder.is_symlink()):
        return None
    expected = {} if settings is None else {"settings": settings}
    manifest, problem = verify_folder(folder, expected, set(_FILES))
    if problem is None:
        try:
            return _load(folder, manifest)
        except (OSError, ValueError, TypeError, KeyError) as err:
            problem = f"unreadable ({err})"
    if warn:
        warnings.warn(
            f"ignoring the distilled table in {folder}: {problem}; distilling it again.",
            stacklevel=4,
        )
    return None


def _load(folder, manifest):
    arrays = {
        name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in _ARRAYS
    }
    vectors = arrays["vectors"]
    shape = tuple(manifest["shape"])
    if vectors.ndim != 2 or vectors.shape != shape or vectors.dtype != np.float32:
        raise ValueError(f"vectors.npy has shape {vectors.shape} and dtype {vectors.dtype}")
    if arrays["components"].shape[0] != shape[1] or arrays["mean"].shape != (
        arrays["components"].shape[1],
    ):
        raise ValueError("mean.npy and components.npy do not match vectors.npy")
    tokenizer_json = (folder / "tokenizer.json").read_text(encoding="utf-8")
    return StaticTable(folder, manifest, arrays, tokenizer_json)


def distilled_tables(home=None):
    """Folders of distilled tables, for inspection (``embedxfer models``)."""
    return artefact_folders(home if home is not None else static_home())


def describe_table(folder):
    """``(model, usable)`` of a table folder: the model it was distilled from (its
    source), and whether the table is intact and the model's files unchanged."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / _MANIFEST).read_text(encoding="utf-8"))
        settings = manifest["settings"]
        model = settings["model"]
        source = manifest.get("source") or model.get("source")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None, False
    if settings.get("version") != DISTILLATION_VERSION:
        return source, False
    if model.get("files") is not None:
        if not isinstance(source, str) or not os.path.isdir(source):
            return source, False
        if model_content_signature(source) != model["files"]:
            return source, False
    return source, read_table(folder, None, warn=False) is not None


def prune_tables(home=None, *, all=False):
    """Delete distilled tables that can no longer be used (or all of them).

    A table is stale when its model's files are gone or have changed, when
    it comes from an older version of the distillation, or when its files do
    not match their manifest; temporary folders of killed runs go too.

    Returns
    -------
    removed : list of pathlib.Path
    """
    base = Path(home) if home is not None else static_home()
    removed = _clean_stale_temporaries(base, older_than=0 if all else _STALE_TEMP_SECONDS)
    for folder in distilled_tables(base):
        if all or not describe_table(folder)[1]:
            discard_folder(folder)
            removed.append(folder)
    return removed
