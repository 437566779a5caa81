"""Converted vector files: plain data in ``EMBEDXFER_HOME``, verified before use.

A parsed source is written once as ``.npy`` vectors (read with
``allow_pickle=False``), a JSON vocabulary and a JSON manifest with the
source's identity and every file's size and checksum; later loads check the
manifest and memory-map the vectors, so worker processes share the pages.
Stale and interrupted conversions are listed and pruned here.
"""

import hashlib
import json
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
    install_folder,
    read_manifest,
    remove_orphaned_folders,
    temporary_folder_prefix,
    verify_folder,
    write_manifest,
)
from .._core.atomic import replace_folder
from .._core.environment import home_folder
from ..exceptions import VectorFileWarning
from ._vector_formats import _keyed_vectors

_CONVERSION_VERSION = "2"


_MANIFEST = MANIFEST


_STALE_TEMP_SECONDS = 3600


def vectors_home():
    """Folder holding converted vector files (``EMBEDXFER_HOME`` or the user cache)."""
    return home_folder("vectors")


def _converted_path(path, format, cache_dir):
    stat = Path(path).stat()
    key = f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{format}|{_CONVERSION_VERSION}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    base = Path(cache_dir) if cache_dir is not None else vectors_home()
    return base / f"{Path(path).name.split('.')[0]}-{digest}"


def _source_manifest(path, format):
    """What a conversion of ``path`` must say about its source to be used.

    The inode change time is part of it: a file rewritten in place with its
    size and modification time restored (``touch -r``, ``os.utime``) still
    gets a new change time, which no user can set, so it is converted again;
    hashing the whole source on every load would cost seconds for large files.
    """
    stat = Path(path).stat()
    manifest = {
        "version": _CONVERSION_VERSION,
        "source": str(Path(path).resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
        "format": format,
    }
    if format == "packaged-glove" and _rows_are_contiguous(path):
        # The package's .npy is memory-mapped where it is installed; only its
        # Parquet word list is converted (to JSON). A column-major file is
        # converted whole: gathering rows from it is about 100x slower.
        manifest["kind"] = "packaged"
    return manifest


def _rows_are_contiguous(path):
    """Whether a ``.npy`` file holds a row-major float32 matrix (each vector in one piece)."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran_order, dtype = read_header(fh)
    except (OSError, ValueError):
        return False
    return len(shape) == 2 and not fortran_order and dtype == np.float32


def _write_converted(kv, target, source_manifest):
    """Save ``kv`` as plain data (.npy arrays, JSON vocabulary and manifest), atomically.

    The folder is written under a temporary name and renamed when complete, so a
    killed run leaves a temporary folder (cleaned up later) rather than half a
    conversion.
    """
    from gensim.models.fasttext import FastTextKeyedVectors

    tmp = _temporary_folder(target, "converted vectors", ", or pass convert=False")
    try:
        arrays = {"vectors": kv.vectors}
        manifest = dict(source_manifest, vector_size=int(kv.vector_size))
        manifest.setdefault("kind", "keyed")
        if manifest["kind"] == "packaged":
            arrays = {}
            manifest["source_blake2b"] = file_digest(source_manifest["source"])
        elif isinstance(kv, FastTextKeyedVectors) and kv.bucket:
            arrays["vectors_vocab"] = kv.vectors_vocab
            arrays["vectors_ngrams"] = kv.vectors_ngrams
            manifest.update(
                kind="fasttext", min_n=int(kv.min_n), max_n=int(kv.max_n), bucket=int(kv.bucket)
            )
        files = {}
        for name, array in arrays.items():
            np.save(
                tmp / f"{name}.npy",
                np.ascontiguousarray(array, dtype=np.float32),
                allow_pickle=False,
            )
            files[f"{name}.npy"] = None
        with open(tmp / "vocabulary.json", "w", encoding="ascii") as fh:
            json.dump(list(kv.index_to_key), fh, ensure_ascii=True)
        files["vocabulary.json"] = None
        manifest["words"] = len(kv.index_to_key)
        write_manifest(tmp, manifest, files)
        if target.exists() or target.is_symlink():
            if _read_converted(target, source_manifest, warn=False) is not None:
                return  # a concurrent run finished the same conversion first
            discard_folder(target)  # unusable: replace it
        replace_folder(tmp, target)  # keeps a concurrent writer's finished folder
    except OSError as err:
        raise OSError(
            f"cannot write converted vectors to {target} ({err.strerror or err}); free disk "
            "space or set EMBEDXFER_HOME to another folder, or pass convert=False."
        ) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _temporary_folder(target, what, remedy=""):
    """A new temporary folder beside ``target``, where ``what`` is written before it is
    renamed; an unwritable place raises one ``OSError`` line with the remedy."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return Path(
            tempfile.mkdtemp(prefix=temporary_folder_prefix(target.name), dir=target.parent)
        )
    except OSError as err:
        raise OSError(
            f"cannot write {what} in {target.parent} ({err.strerror or err}); "
            f"set EMBEDXFER_HOME to a writable folder{remedy}."
        ) from err


def _read_converted(target, expected, warn=True):
    """The vectors converted in ``target``, or None when absent or not trustworthy.

    A conversion is used only when its manifest names the same source (path,
    size, modification time, format) and every file has the size and checksum
    the manifest records: a folder planted under the expected name, a
    half-written one or one from an older version is rebuilt, never trusted.
    """
    if not target.is_dir():
        return None
    manifest, _ = read_manifest(target)
    kind = manifest.get("kind")
    needed = {"vocabulary.json"} | ({"vectors.npy"} if kind != "packaged" else set())
    if kind == "fasttext":
        needed |= {"vectors_vocab.npy", "vectors_ngrams.npy"}
    manifest, problem = verify_folder(target, expected, needed)
    if problem is None and kind == "packaged":
        try:
            ok = file_digest(manifest["source"]) == manifest.get("source_blake2b")
        except (OSError, KeyError, TypeError):
            ok = False
        if not ok:
            problem = "the packaged vectors do not match the checksum in the manifest"
    if problem is None:
        try:
            return _converted_keyed_vectors(target, manifest)
        except (OSError, ValueError, TypeError, KeyError) as err:
            problem = f"unreadable ({err})"
        except RecursionError:
            problem = "unreadable (vocabulary.json is nested too deeply)"
    if warn:
        warnings.warn(
            f"ignoring the converted vectors in {target}: {problem}; converting the source again.",
            VectorFileWarning,
            stacklevel=4,
        )
    return None


def _converted_keyed_vectors(target, manifest):
    def load(name):
        return np.load(target / name, mmap_mode="r", allow_pickle=False)

    with open(target / "vocabulary.json", encoding="ascii") as fh:
        words = json.load(fh)
    if not (isinstance(words, list) and set(map(type, words)) <= {str}):
        raise ValueError("vocabulary.json is not a list of words")
    if manifest["kind"] == "packaged":
        vectors = np.load(manifest["source"], mmap_mode="r", allow_pickle=False)
    else:
        vectors = load("vectors.npy")
    if vectors.ndim != 2 or vectors.shape != (manifest["words"], manifest["vector_size"]):
        raise ValueError(f"vectors.npy has shape {vectors.shape}")
    if manifest["kind"] != "packaged" and vectors.dtype != np.float32:
        raise ValueError(f"vectors.npy holds {vectors.dtype}, expected float32")
    if manifest["kind"] != "fasttext":
        return _keyed_vectors(words, vectors)
    from gensim.models.fasttext import FastTextKeyedVectors

    kv = FastTextKeyedVectors(
        vectors.shape[1],
        int(manifest["min_n"]),
        int(manifest["max_n"]),
        int(manifest["bucket"]),
        count=0,
        dtype=np.float32,
    )
    plain = _keyed_vectors(words, vectors)
    kv.index_to_key, kv.key_to_index, kv.vectors = (
        plain.index_to_key,
        plain.key_to_index,
        plain.vectors,
    )
    kv.vectors_vocab = load("vectors_vocab.npy")
    kv.vectors_ngrams = load("vectors_ngrams.npy")
    if kv.vectors_ngrams.shape != (kv.bucket, vectors.shape[1]):
        raise ValueError(f"vectors_ngrams.npy has shape {kv.vectors_ngrams.shape}")
    return kv


# float16's largest finite value.
FLOAT16_MAX = float(np.finfo(np.float16).max)

# Rows rounded to float16 at a time (bounds the float32 copies made on the way).
_ROUND_ROWS = 1 << 15


def float16_table(vectors, what, out=None):
    """``vectors`` rounded to float16 (into ``out`` when given), a block of rows at a time.

    Raises ``ValueError`` naming ``what`` when a value lies beyond float16's
    range, where it would become infinite.
    """
    if out is None:
        out = np.empty(vectors.shape, dtype=np.float16)
    for start in range(0, len(vectors), _ROUND_ROWS):
        block = np.asarray(vectors[start : start + _ROUND_ROWS], dtype=np.float32)
        magnitude = np.abs(block)
        largest = float(magnitude.max(initial=0.0))
        if not largest <= FLOAT16_MAX:  # NaN and infinity stay, for the finite check to name
            largest = float(magnitude[np.isfinite(magnitude)].max(initial=0.0))
        if largest > FLOAT16_MAX:
            raise ValueError(
                f"precision='float16': {what} hold values up to {largest:.6g}, beyond "
                f"float16's range (+-{FLOAT16_MAX:g}); use precision='float32'."
            )
        out[start : start + len(block)] = block
    return out


def float16_folder(target):
    """Where the float16 table of the conversion in ``target`` is kept."""
    return target.with_name(f"{target.name}-float16")


def read_float16_table(folder, expected, shape):
    """The float16 table in ``folder`` (memory-mapped), or None when absent or not sound.

    It is used only when its manifest names the same source as ``expected``
    and its file matches the recorded size and checksum.
    """
    if not folder.is_dir():
        return None
    _, problem = verify_folder(folder, expected, {"vectors.npy"})
    if problem is None:
        try:
            table = np.load(folder / "vectors.npy", mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            problem = f"unreadable ({err})"
        else:
            if table.dtype == np.float16 and table.shape == tuple(shape):
                return table
            problem = f"vectors.npy holds {table.dtype} {table.shape}, expected float16 {shape}"
    warnings.warn(
        f"ignoring the float16 table in {folder}: {problem}; writing it again.",
        VectorFileWarning,
        stacklevel=4,
    )
    return None


def write_float16_table(vectors, folder, expected, what):
    """Round ``vectors`` to float16 into ``folder`` as a ``.npy`` with its manifest, atomically."""
    tmp = _temporary_folder(folder, "a float16 table")
    try:
        table = np.lib.format.open_memmap(
            tmp / "vectors.npy", mode="w+", dtype=np.float16, shape=vectors.shape
        )
        float16_table(vectors, what, out=table)
        table.flush()
        del table
        write_manifest(tmp, expected, ["vectors.npy"])
        install_folder(tmp, folder, expected, ["vectors.npy"])
    except OSError as err:
        raise OSError(
            f"cannot write the float16 table to {folder} ({err.strerror or err}); free disk "
            "space or set EMBEDXFER_HOME to another folder."
        ) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _clean_stale_temporaries(base, older_than=_STALE_TEMP_SECONDS):
    """Remove temporary folders that killed conversions left behind."""
    return remove_orphaned_folders(base, older_than=older_than)


def converted_files(cache_dir=None):
    """Converted vector folders in the cache, for inspection (``embedxfer models``)."""
    return artefact_folders(cache_dir if cache_dir is not None else vectors_home())


def describe_conversion(folder):
    """``(source, usable)`` of a converted folder: the file it came from, and whether it
    is a current conversion of that file as it is now (source unchanged, files intact)."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / _MANIFEST).read_text(encoding="utf-8"))
        source = Path(manifest["source"])
        expected = _source_manifest(source, manifest["format"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None, False
    if manifest.get("kind") == "float16":
        expected["kind"] = "float16"
        return source, verify_folder(folder, expected, {"vectors.npy"})[1] is None
    return source, _read_converted(folder, expected, warn=False) is not None


def prune_conversions(cache_dir=None, *, all=False):
    """Delete converted vectors that can no longer be used (or all of them).

    A conversion is stale when its source file is gone or has changed, when it
    comes from an older version of embedxfer, or when its files do not match
    their manifest; temporary folders left by killed conversions go too.

    Parameters
    ----------
    cache_dir : path-like, default=None
        The conversion folder; default ``$EMBEDXFER_HOME/vectors`` or the
        user's cache folder.
    all : bool, default=False
        Delete every conversion, usable or not.

    Returns
    -------
    removed : list of pathlib.Path
        The folders deleted.
    """
    base = Path(cache_dir) if cache_dir is not None else vectors_home()
    removed = _clean_stale_temporaries(base, older_than=0 if all else _STALE_TEMP_SECONDS)
    for folder in converted_files(base):
        if all or not describe_conversion(folder)[1]:
            discard_folder(folder)
            removed.append(folder)
    return removed
