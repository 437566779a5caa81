"""Reading vector files: format detection, the parsers, and checks on what they hold.

word2vec binary and text, GloVe text, fastText ``.bin``, the packaged GloVe
(``.npy`` + Parquet word list) and, by explicit opt-in, gensim's native
pickles. Size claims in headers are checked against the file before
anything is allocated; rows with NaN or infinity are dropped with a warning.
"""

import gzip
import pickle
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np

from ..exceptions import UnsafeVectorFileError, VectorFileWarning, VectorFormatError

FORMATS = ("auto", "word2vec-bin", "word2vec-text", "glove-text", "fasttext-bin", "gensim")


_FASTTEXT_MAGIC = 793712314


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
        # gensim's own consistency checks on a fastText .bin (supervised
        # models are refused by _check_fasttext_header before gensim reads).
        AssertionError,
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
    """Refuse a fastText .bin whose headers claim more than the file holds.

    gensim allocates from two headers before it reads the data behind them:
    the first (dimensions, buckets, words) and the input matrix's
    ``(num_vectors, dim)``, which lies past the vocabulary. Both are read
    here and bounded by the file's size, and the matrix must have the shape
    the first header implies (gensim asserts it only after allocating). Files
    of fastText's first releases (no magic number, no pruned index, no
    quantisation flag) are read by their own layout.
    """
    bound = _data_size_bound(path)
    opener = gzip.open if _is_gzip(path) else open
    with opener(path, "rb") as fh:
        head = fh.read(_FASTTEXT_NEW_HEADER)
        new_format = len(head) >= 4 and struct.unpack("<i", head[:4])[0] == _FASTTEXT_MAGIC
        layout = _FASTTEXT_LAYOUTS[new_format]
        if len(head) < layout["vocabulary"]:
            raise VectorFormatError(f"{path}: a fastText .bin of {len(head)} bytes is truncated.")
        dim = struct.unpack_from("<i", head, layout["dim"])[0]
        bucket = struct.unpack_from("<i", head, layout["bucket"])[0]
        vocab_size, nwords, nlabels = struct.unpack_from("<3i", head, layout["counts"])
        pruned = struct.unpack_from("<q", head, 84)[0] if new_format else 0
        if nlabels > 0 and vocab_size == nwords + nlabels:
            raise VectorFormatError(
                f"{path}: a supervised fastText model ({nlabels} labels); only unsupervised "
                "word vectors (fastText skipgram or cbow) load."
            )
        if (
            dim < 1
            or bucket < 0
            or nwords < 0
            or nlabels != 0
            or vocab_size != nwords
            or pruned < -1
        ):
            raise VectorFormatError(
                f"{path}: fastText header has dim={dim}, bucket={bucket}, words={nwords}, "
                f"labels={nlabels}, vocabulary entries={vocab_size}, pruned entries={pruned}."
            )
        rows = nwords + bucket
        if rows * dim * 4 > bound:
            raise VectorFormatError(
                f"{path}: fastText header announces {nwords} words and {bucket} n-gram "
                f"buckets of {dim} dimensions, at least {rows * dim * 4:,} bytes, but the "
                f"file holds {bound:,} (truncated file or corrupt header)."
            )
        fh.seek(layout["vocabulary"])
        read_ahead = _skip_fasttext_vocabulary(fh, vocab_size, path)
        offset = fh.tell() - len(read_ahead)
        if new_format:
            # The pruned index (pairs of int32), then the quantisation flag (a bool).
            offset += 8 * max(pruned, 0) + 1
        if offset + 16 > bound:
            raise VectorFormatError(f"{path}: the fastText .bin ends before its matrix header.")
        fh.seek(offset)
        matrix = fh.read(16)
    if len(matrix) < 16:
        raise VectorFormatError(f"{path}: the fastText .bin ends before its matrix header.")
    num_vectors, matrix_dim = struct.unpack("<2q", matrix)
    if (num_vectors, matrix_dim) != (rows, dim):
        raise VectorFormatError(
            f"{path}: the fastText matrix header announces {num_vectors} x {matrix_dim} "
            f"vectors, but the first header implies {rows} x {dim} (corrupt header)."
        )
    if rows * dim * 4 > bound - offset - 16:
        raise VectorFormatError(
            f"{path}: the fastText matrix of {rows} x {dim} vectors needs "
            f"{rows * dim * 4:,} bytes, more than the {bound - offset - 16:,} left in the "
            "file (truncated file)."
        )


_FASTTEXT_MAGIC = 793712314
_FASTTEXT_NEW_HEADER = 92
# Byte offsets of the fields gensim allocates from, and where the vocabulary
# starts: after the magic number, the version and 12 int32 + 1 double of
# arguments (new format), or after 12 int32 + 1 double with no magic (old).
_FASTTEXT_LAYOUTS = {
    True: {"dim": 8, "bucket": 40, "counts": 64, "vocabulary": _FASTTEXT_NEW_HEADER},
    False: {"dim": 0, "bucket": 32, "counts": 56, "vocabulary": 76},
}


# A fastText word is at most a line (1,024 bytes in fastText); this allows far more.
_MAX_FASTTEXT_WORD = 1 << 20


def _skip_fasttext_vocabulary(fh, count, path):
    """Read past ``count`` vocabulary entries (word, NUL, int64 count, int8 type).

    Returns the bytes read beyond them. Refuses a vocabulary that ends early,
    where gensim's reader would loop forever on the end of the file.
    """
    buffer, pos = b"", 0
    for _ in range(count):
        while True:
            end = buffer.find(b"\0", pos)
            if end >= 0 and end + 10 <= len(buffer):
                break
            if end < 0 and len(buffer) - pos > _MAX_FASTTEXT_WORD:
                raise VectorFormatError(
                    f"{path}: a fastText vocabulary word longer than {_MAX_FASTTEXT_WORD:,} "
                    "bytes (corrupt file)."
                )
            more = fh.read(1 << 20)
            if not more:
                raise VectorFormatError(
                    f"{path}: the fastText vocabulary ends before its {count} words "
                    "(truncated file)."
                )
            buffer, pos = buffer[pos:] + more, 0
        pos = end + 10
    return buffer[pos:]


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


def _read_native(path):
    from gensim.models import KeyedVectors
    from gensim.utils import SaveLoad

    obj = SaveLoad.load(str(path), mmap="r")
    if not isinstance(obj, KeyedVectors):
        obj = getattr(obj, "wv", None)  # a full Word2Vec / FastText model
    if not isinstance(obj, KeyedVectors):
        raise VectorFormatError(f"{path} is a gensim file but holds no KeyedVectors.")
    return obj


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
