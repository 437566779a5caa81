"""Documents to vocabulary ids, in a few C-level or numpy calls per batch.

The batch is joined into one string with a separator, so that one pass
tokenises every document and the separators mark where each one ends.

With the default pattern no Python object is made per token. Where the
package was built with its compiled kernels, one call per piece of text
follows the pattern's rules character by character and looks each token up
in an open-addressing table of the vocabulary (``_kernels.c``). Otherwise
the text's code points go into a numpy array, the tokens are found with
array operations that follow the same rules, and their ids come from a hash
of their code points looked up in a sorted table of the vocabulary's hashes,
each hit then checked character by character against the word. Both give
the regular expression's tokens exactly (tests compare them on random and
real text). Any other pattern or tokenizer makes the token strings and looks
them up with a single ``map(dict.get, ...)``: no Python loop per word either
way.
"""

import re
import threading
from itertools import chain, repeat

import numpy as np

from .._core.param_validation import Hint, Options
from .._core.threads import run_parallel, usable_threads
from ._native import kernels

# Words (with a PTB-style split of "n't" and of "'s"-like clitics, as the
# GloVe / word2vec vocabularies have them) and single punctuation marks.
DEFAULT_TOKEN_PATTERN = r"\w+(?=n't\b)|n't\b|'\w+|\w+|[^\w\s]"
_SEP = "\x00"
_SEP_ID = -2
OOV_ID = -1
# The default pattern with a first alternative that takes a whole word not
# followed by an apostrophe (nearly every word) at once, instead of
# backtracking through the clitic lookahead letter by letter: the same tokens.
_DEFAULT_REGEX = re.compile(rf"{_SEP}|(?:\w+(?![\w'])|{DEFAULT_TOKEN_PATTERN})")


class VocabularyIndex:
    """Word -> row lookup for one vector source, with the batch separator added.

    Parameters
    ----------
    key_to_index : dict
        The vectors' word -> row mapping (not modified).
    """

    def __init__(self, key_to_index):
        self.size = len(key_to_index)
        self.lookup = dict(key_to_index)
        self.lookup[_SEP] = _SEP_ID
        self.is_lowercase = not any(w != w.lower() for w in key_to_index)
        self._words = key_to_index
        self._tables = None

    def hash_tables(self):
        """The vocabulary as hash tables for the default pattern, built on first use."""
        if self._tables is None:
            self._tables = _HashTables(self._words)
        return self._tables

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_tables"] = None
        return state


# The tokenizers named by a string (the others are callables): "regex" (as
# None) matches token_pattern, "split" and "whitespace" are str.split.
_SPLIT_NAMES = ("split", "whitespace")
TOKENIZER_NAMES = (*_SPLIT_NAMES, "regex")


def compile_tokenizer(tokenizer=None, token_pattern=DEFAULT_TOKEN_PATTERN):
    """Return ``(kind, obj)``: ``("regex", compiled)`` or ``("callable", func)``."""
    if tokenizer is None or tokenizer == "regex":
        if token_pattern == DEFAULT_TOKEN_PATTERN:
            return "regex", _DEFAULT_REGEX
        try:
            pattern = re.compile(token_pattern)
        except (re.error, TypeError) as err:
            raise ValueError(
                f"token_pattern={token_pattern!r} is not a valid regular expression: {err}."
            ) from None
        if pattern.groups:
            raise ValueError(
                f"token_pattern={token_pattern!r} has capturing groups; use (?:...) instead."
            )
        # A custom pattern may match the batch separator (r"\S+", ".+"), so it runs
        # document by document; only the default pattern takes the one-pass path.
        return "callable", pattern.findall
    if tokenizer in _SPLIT_NAMES or tokenizer is str.split:
        return "callable", str.split
    if callable(tokenizer):
        return "callable", tokenizer
    raise ValueError(
        f"tokenizer={tokenizer!r}; expected None (regex), 'split' or a callable "
        "taking a string and returning a list of tokens."
    )


# The tokenising parameters of every estimator that tokenises text itself
# (WordVectorEmbedder, SequenceClassifier). ``token_pattern`` is compiled in
# fit, and only when no tokenizer is given.
TOKENIZATION_CONSTRAINTS = {
    "lowercase": [Options(["auto"]), "boolean"],
    "tokenizer": [
        None,
        Options(["regex", *_SPLIT_NAMES]),
        callable,
        Hint("Pass None (token_pattern), 'split' or a function from a string to a list of tokens."),
    ],
    "token_pattern": [
        str,
        re.Pattern,
        Hint("Pass a regular expression, as a string or compiled with re.compile."),
    ],
}


def is_default_pattern(compiled):
    """Whether a ``compile_tokenizer`` result is the default pattern (the compiled kernels')."""
    return compiled[1] is _DEFAULT_REGEX


def tokenize(docs, compiled, lowercase):
    """Tokens of all documents, flat, and their offsets ``doc_ptr`` (len n+1)."""
    kind, tok = compiled
    if kind == "regex":
        text = _SEP.join(docs)
        if text.count(_SEP) != len(docs) - 1:  # a document holds the separator itself
            text = _SEP.join(doc.replace(_SEP, " ") for doc in docs)
        if lowercase:
            text = text.lower()
        tokens = tok.findall(text)
        return tokens, None
    if any(_SEP in doc for doc in docs):
        # NUL is whitespace to the default pattern (it separates documents there); the
        # same here, so that every tokenizer sees the same text.
        docs = [doc.replace(_SEP, " ") for doc in docs]
    token_lists = [tok(doc.lower() if lowercase else doc) for doc in docs]
    if not all(type(tokens) is list for tokens in token_lists):
        token_lists = [_check_tokens(tokens, i, tok) for i, tokens in enumerate(token_lists)]
    lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(docs))
    doc_ptr = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=doc_ptr[1:])
    tokens = list(chain.from_iterable(token_lists))
    if not all(issubclass(kind, str) for kind in set(map(type, tokens))):
        _refuse_non_str_token(token_lists, tok)
    return tokens, doc_ptr


def _tokenizer_name(tokenizer):
    return getattr(tokenizer, "__qualname__", repr(tokenizer))


def _check_tokens(tokens, index, tokenizer):
    if isinstance(tokens, (list, tuple)):
        return list(tokens)
    raise TypeError(
        f"the tokenizer {_tokenizer_name(tokenizer)} returned {type(tokens).__name__} "
        f"({tokens!r:.40}) for document {index}; a tokenizer must return a list of str tokens."
    )


def _refuse_non_str_token(token_lists, tokenizer):
    """Name the first token that is not a str (a lookup would miss it: a silent zero vector)."""
    for index, tokens in enumerate(token_lists):
        for token in tokens:
            if not isinstance(token, str):
                raise TypeError(
                    f"the tokenizer {_tokenizer_name(tokenizer)} returned a token of type "
                    f"{type(token).__name__} ({token!r:.40}) for document {index}; a tokenizer "
                    "must return a list of str tokens."
                )


def documents_to_ids(docs, index, compiled, lowercase, *, with_tokens=False, known_only=False):
    """Map documents to vocabulary rows.

    Parameters
    ----------
    known_only : bool, default=False
        Leave out-of-vocabulary tokens out (what ``drop_oov`` does after).
        Not with ``with_tokens``.

    Returns
    -------
    ids : ndarray of int64
        Row of each token, ``OOV_ID`` (-1) for out-of-vocabulary tokens.
    doc_ptr : ndarray of int64, shape (n_docs + 1,)
        Document ``i`` owns ``ids[doc_ptr[i]:doc_ptr[i + 1]]``.
    tokens : list of str or None
        With ``with_tokens=True``, the tokens aligned with ``ids`` (for
        subword lookups of out-of-vocabulary words).
    """
    if is_default_pattern(compiled) and not with_tokens:
        found = _default_ids(docs, index.hash_tables(), lowercase, known_only)
        if found is not None:
            ids, doc_ptr, dropped = found
            if known_only and not dropped:
                ids, doc_ptr = drop_oov(ids, doc_ptr)
            return ids, doc_ptr, None
    if known_only and with_tokens:
        raise ValueError("known_only and with_tokens: the tokens would not match the ids")
    ids, doc_ptr, tokens = _lookup_tokens(docs, index, compiled, lowercase, with_tokens)
    if known_only:
        ids, doc_ptr = drop_oov(ids, doc_ptr)
    return ids, doc_ptr, tokens


def _lookup_tokens(docs, index, compiled, lowercase, with_tokens):
    """``documents_to_ids`` from the token strings, looked up in the dictionary."""
    tokens, doc_ptr = tokenize(docs, compiled, lowercase)
    n = len(tokens)
    ids = np.fromiter(map(index.lookup.get, tokens, repeat(OOV_ID, n)), dtype=np.int64, count=n)
    if doc_ptr is not None:
        ids[ids == _SEP_ID] = OOV_ID  # a "\x00" token of the user's tokenizer is no separator
    else:
        seps = np.flatnonzero(ids == _SEP_ID)
        doc_ptr = np.empty(len(docs) + 1, dtype=np.int64)
        doc_ptr[0] = 0
        # Each separator removed shifts the later documents' offsets by one.
        doc_ptr[1:-1] = seps - np.arange(len(seps))
        doc_ptr[-1] = n - len(seps)
        keep = np.ones(n, dtype=bool)
        keep[seps] = False
        ids = ids[keep]
        if with_tokens:
            tokens = _drop_positions(tokens, seps)
    return ids, doc_ptr, (tokens if with_tokens else None)


def _drop_positions(tokens, positions):
    if not len(positions):
        return tokens
    out = []
    start = 0
    for p in positions.tolist():
        out.extend(tokens[start:p])
        start = p + 1
    out.extend(tokens[start:])
    return out


def drop_oov(ids, doc_ptr):
    """Keep in-vocabulary tokens only; return ``(ids, doc_ptr)`` of what is left."""
    known = ids >= 0
    csum = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(known, out=csum[1:])
    return ids[known], csum[doc_ptr]


# -- the default pattern with numpy -------------------------------------------------

# Text is cut into pieces of about this many characters, so that the arrays
# of one piece stay in the processor's cache.
_PIECE_CHARS = 1 << 19
_APOSTROPHE, _LETTER_N, _LETTER_T = ord("'"), ord("n"), ord("t")
# Character classes as ``re`` sees them (\w, \s, anything else), with the
# apostrophe and the batch separator marked.
_WORD, _SPACE, _OTHER, _APOS, _NUL = 1, 2, 4, 8, 16
_N_CODE_POINTS = 0x110000


def _class_table():
    """Class of every code point (0 to 0x10FFFF), as ``re`` sees it."""
    chars = "".join(map(chr, range(_N_CODE_POINTS)))
    # re's \w is str.isalnum() or "_"; its \s is str.isspace() (the same
    # tables: checked for every code point in the tests).
    word = np.fromiter(map(str.isalnum, chars), dtype=bool, count=_N_CODE_POINTS)
    space = np.fromiter(map(str.isspace, chars), dtype=bool, count=_N_CODE_POINTS)
    table = np.full(_N_CODE_POINTS, _OTHER, dtype=np.uint8)
    table[space] = _SPACE
    table[word] = _WORD
    table[ord("_")] = _WORD
    table[0] = _NUL
    table[_APOSTROPHE] = _OTHER | _APOS
    return table


class _Classes:
    """Class of every code point, the table built on first use (about 0.2 s)."""

    _table = None
    _latin1 = None  # the first 256 entries, for bytes.translate
    _lock = threading.Lock()

    @classmethod
    def table(cls):
        if cls._table is None:
            with cls._lock:
                if cls._table is None:
                    table = _class_table()
                    cls._latin1 = table[:256].tobytes()
                    cls._table = table
        return cls._table

    @classmethod
    def of(cls, cp):
        table = cls.table()
        if cp.dtype == np.uint8:
            return np.frombuffer(cp.tobytes().translate(cls._latin1), dtype=np.uint8)
        return table[cp]


def _code_points(text):
    """Code points of ``text`` (bytes when it is ASCII), with 8 zero bytes after."""
    if text.isascii():
        raw = text.encode("ascii") + bytes(8)
        return np.frombuffer(raw, dtype=np.uint8)[:-8]
    raw = text.encode("utf-32-le", "surrogatepass") + bytes(8)
    return np.frombuffer(raw, dtype=np.uint32)[:-2]


def _windows(values):
    """The little-endian 64-bit word at every byte of ``values``.

    ``values`` must be followed by 8 readable bytes (``_code_points`` and
    ``_WordTable`` make them so).
    """
    base = values.base
    assert base is not None and base.nbytes >= values.nbytes + 8
    return np.ndarray((values.nbytes,), dtype="<u8", buffer=base, strides=(1,))


# _MASKS[n]: the low n bytes of a 64-bit word.
_MASKS = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
_LENGTH_MIX = np.uint64(0x9E3779B97F4A7C15)
# Slots of the table of frequent words (2**16 x 32 bytes: a core's L2 cache).
_HOT_BITS = 16
_MIX = np.uint64(0xFF51AFD7ED558CCD)
_SHIFT = np.uint64(33)


def _mix(h):
    """A bijection of 64-bit words that spreads every bit to the high ones."""
    h ^= h >> _SHIFT
    h *= _MIX
    h ^= h >> _SHIFT
    return h


def _span_hashes(windows, starts, nbytes):
    """Hashes of the byte spans ``[starts, starts + nbytes)``.

    A span of at most 8 bytes hashes to ``_mix(its bytes ^ length)``, which
    is one-to-one for a given length: for such spans equal hashes and
    lengths mean equal bytes.
    """
    h = windows[starts] & _MASKS[np.minimum(nbytes, 8)]
    h ^= nbytes.astype(np.uint64) * _LENGTH_MIX
    _mix(h)
    longer = np.flatnonzero(nbytes > 8)
    offset = 8
    while len(longer):
        left = nbytes[longer] - offset
        h[longer] = _mix(
            h[longer] ^ (windows[starts[longer] + offset] & _MASKS[np.minimum(left, 8)])
        )
        offset += 8
        longer = longer[left > 8]
    return h


def _utf8_widths(cp):
    """Bytes of each code point in UTF-8 (lone surrogates: 3, as with "surrogatepass")."""
    return (
        1
        + (cp >= 0x80).view(np.uint8)
        + (cp >= 0x800).view(np.uint8)
        + (cp >= 0x10000).view(np.uint8)
    )


class _WordTable:
    """The vocabulary in one encoding (UTF-8 for ASCII text, else UTF-32).

    Words are kept sorted by hash; a directory indexed by the top bits of
    the hash gives the few entries to compare with, so that a lookup reads
    two places in memory instead of the ~19 of a binary search.

    Before that, the most frequent words (the lowest rows: vector files list
    words by decreasing frequency) sit in a small direct-mapped table indexed
    by the low bits of the hash, which stays in the processor's cache: most
    tokens of a text are found there with one read.
    """

    @classmethod
    def build(cls, words, rows, wide):
        text = "".join(words)
        cp = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
        chars = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
        char_ends = np.cumsum(chars)
        if wide:
            data = text.encode("utf-32-le", "surrogatepass")
            nbytes = 4 * chars
        else:
            data = text.encode("utf-8", "surrogatepass")
            width = _utf8_widths(cp)
            prefix = np.zeros(len(cp) + 1, dtype=np.int64)
            np.cumsum(width, out=prefix[1:])
            nbytes = prefix[char_ends] - prefix[char_ends - chars]
        starts = np.cumsum(nbytes) - nbytes
        buffer = np.frombuffer(data + bytes(8), dtype=np.uint8)[:-8]
        hashes = _span_hashes(_windows(buffer), starts, nbytes)
        order = np.argsort(hashes, kind="stable")
        hashes = hashes[order]
        if len(hashes) > 1 and not np.all(hashes[1:] != hashes[:-1]):
            return None  # two long words share a hash: use the dictionary
        self = cls()
        bits = max(int(2 * len(words)).bit_length(), 8)
        self.shift = np.uint64(64 - bits)
        counts = np.bincount((hashes >> self.shift).astype(np.intp), minlength=1 << bits)
        self.directory = np.zeros((1 << bits) + 1, dtype=np.int32)
        np.cumsum(counts, out=self.directory[1:])
        self.hashes = hashes
        self.rows = rows[order]
        self.starts = starts[order]
        self.nbytes = nbytes[order]
        self.windows = _windows(buffer)
        self.words = buffer
        self._slots = None
        self._build_hot()
        return self

    def slots(self):
        """The table as the compiled kernel reads it, built on first use.

        Open addressing with linear probing: a word sits at the first free
        slot from ``hash & mask``, so a lookup reads one slot (16 bytes)
        for most words, and one more place for the bytes of a word longer
        than 8. Returns ``(slots, starts)``, or None when a row does not fit
        a slot's 32 bits (then the numpy code runs).
        """
        if self._slots is None:
            fits = not len(self.rows) or (self.rows.min() >= 0 and self.rows.max() < 2**31)
            self._slots = (
                _slot_table(self.hashes, self.rows, self.starts, self.nbytes) if fits else ()
            )
        return self._slots or None

    def _build_hot(self):
        """The direct-mapped table of frequent words: slot ``hash & mask`` -> entry."""
        bits = int(np.clip(int(len(self.hashes)).bit_length(), 8, _HOT_BITS))
        self.hot_mask = np.uint64((1 << bits) - 1)
        slots = (self.hashes & self.hot_mask).astype(np.intp)
        # Most frequent first, so that the first entry of each slot is the one kept.
        by_rank = np.argsort(self.rows, kind="stable")
        _, first = np.unique(slots[by_rank], return_index=True)
        entries = by_rank[first]
        # An empty slot holds a hash that no token mapped to it can have
        # (its low bits differ from the slot), so it never matches.
        self.hot_hashes = np.arange(1 << bits, dtype=np.uint64) ^ np.uint64(1)
        self.hot_hashes[slots[entries]] = self.hashes[entries]
        # The words' rows, lengths and places, copied so that a hit reads
        # nothing outside the small table.
        self.hot_rows = np.full(1 << bits, OOV_ID, dtype=np.int64)
        self.hot_nbytes = np.full(1 << bits, -1, dtype=np.int64)
        self.hot_starts = np.zeros(1 << bits, dtype=np.int64)
        for hot, main in [
            (self.hot_rows, self.rows),
            (self.hot_nbytes, self.nbytes),
            (self.hot_starts, self.starts),
        ]:
            hot[slots[entries]] = main[entries]

    def lookup(self, cp, starts, ends):
        """Rows of the tokens ``cp[starts[i]:ends[i]]``; ``OOV_ID`` if not a word.

        ``cp`` comes from ``_code_points``, in this table's encoding.
        """
        size = cp.itemsize
        byte_starts = starts * size if size > 1 else starts
        return self.lookup_bytes(cp, byte_starts, (ends - starts) * size)

    def lookup_bytes(self, data, byte_starts, nbytes):
        """Rows of the byte spans ``[byte_starts[i], byte_starts[i] + nbytes[i])`` of ``data``.

        ``data`` is followed by 8 readable bytes (see ``_windows``).
        """
        ids = np.full(len(byte_starts), OOV_ID, dtype=np.int64)
        if not len(byte_starts) or not len(self.hashes):
            return ids
        text = _windows(data)
        hashes = _span_hashes(text, byte_starts, nbytes)
        slot = (hashes & self.hot_mask).astype(np.intp)
        hot = self.hot_hashes[slot] == hashes
        hit = np.flatnonzero(hot)
        found = (hit, slot[hit], self.hot_rows, self.hot_nbytes, self.hot_starts)
        self._confirm(ids, text, byte_starts, nbytes, *found)
        # The others are looked up in the whole table (hashes are unique there,
        # so a token with a frequent word's hash but other bytes is no word).
        rest = np.flatnonzero(~hot)
        rest_hashes = hashes[rest]
        bucket = (rest_hashes >> self.shift).astype(np.intp)
        entry = self.directory[bucket]
        last = self.directory[bucket + 1]
        found = np.full(len(rest), -1, dtype=np.int64)
        active = np.flatnonzero(entry < last)
        entry = entry[active]
        while len(active):
            match = self.hashes[entry] == rest_hashes[active]
            found[active[match]] = entry[match]
            more = ~match & (entry + 1 < last[active])
            active, entry = active[more], entry[more] + 1
        cold = np.flatnonzero(found >= 0)
        found = (rest[cold], found[cold], self.rows, self.nbytes, self.starts)
        self._confirm(ids, text, byte_starts, nbytes, *found)
        return ids

    def _confirm(self, ids, text, byte_starts, nbytes, hit, entry, rows, word_nbytes, word_starts):
        """Set ``ids[hit]`` to ``rows[entry]`` where the token's bytes are the word's."""
        token_nbytes = nbytes[hit]
        good = word_nbytes[entry] == token_nbytes
        # Spans of up to 8 bytes match exactly (see _span_hashes); longer
        # ones are compared with the word 8 bytes at a time.
        check = np.flatnonzero(good & (token_nbytes > 8))
        text_at, word_at = byte_starts[hit[check]], word_starts[entry[check]]
        left = token_nbytes[check]
        while len(check):
            differ = (text[text_at] ^ self.windows[word_at]) & _MASKS[np.minimum(left, 8)]
            good[check[differ != 0]] = False
            left -= 8
            more = (differ == 0) & (left > 0)
            check, text_at, word_at, left = (
                check[more],
                text_at[more] + 8,
                word_at[more] + 8,
                left[more],
            )
        ids[hit[good]] = rows[entry[good]]


# The compiled kernel's slot: a word's hash, its row (-1: empty) and length.
SLOT = np.dtype([("hash", np.uint64), ("row", np.int32), ("nbytes", np.int32)])


def _slot_table(hashes, rows, starts, nbytes):
    """``_WordTable.slots``: the words placed by linear probing, all at once.

    Each round places, for every free slot that words are waiting at, the
    first of them; the others move one slot on. A word passes only slots
    that are taken, so a lookup that stops at the first empty slot finds it.
    """
    size = 1 << max(int(3 * len(hashes) // 2).bit_length(), 4)  # at most 2/3 full
    mask = np.uint64(size - 1)
    slots = np.zeros(size, dtype=SLOT)
    slots["row"] = -1
    slot_starts = np.zeros(size, dtype=np.int64)
    waiting = np.arange(len(hashes))
    at = (hashes & mask).astype(np.int64)
    while len(waiting):
        free = np.flatnonzero(slots["row"][at] < 0)
        taken, first = np.unique(at[free], return_index=True)
        placed = waiting[free[first]]
        slots["hash"][taken] = hashes[placed]
        slots["row"][taken] = rows[placed]
        slots["nbytes"][taken] = nbytes[placed]
        slot_starts[taken] = starts[placed]
        left = np.ones(len(waiting), dtype=bool)
        left[free[first]] = False
        waiting = waiting[left]
        at = (at[left] + 1) & (size - 1)
    return slots, slot_starts


class _HashTables:
    """Both encodings of a vocabulary, each built on first use."""

    def __init__(self, key_to_index):
        self.words = list(key_to_index)
        self.rows = np.fromiter(key_to_index.values(), dtype=np.int64, count=len(self.words))
        self.tables = {}
        self.lock = threading.Lock()

    def get(self, wide):
        if wide not in self.tables:
            with self.lock:
                if wide not in self.tables:
                    self.tables[wide] = _WordTable.build(self.words, self.rows, wide)
        return self.tables[wide]


def _default_ids(docs, tables, lowercase, known_only):
    """``documents_to_ids`` for the default pattern, in pieces of bounded size.

    Returns ``(ids, doc_ptr, dropped)`` (``dropped``: whether the compiled
    kernel left the unknown tokens out already, as asked by ``known_only``),
    or ``None`` when the vocabulary can't be hashed (then the regular
    expression is used).
    """
    table = tables.get(False)
    if table is None:
        return None
    native = kernels() if table.slots() is not None else None
    found = ids_in_pieces(
        docs, lambda piece: _piece_ids(piece, table, lowercase, native, known_only)
    )
    return None if found is None else (*found, native is not None and known_only)


def piece_bounds(docs):
    """Offsets cutting ``docs`` into runs of about ``_PIECE_CHARS`` characters (at least one)."""
    lengths = np.fromiter(map(len, docs), dtype=np.int64, count=len(docs)) + 1
    bounds = np.cumsum(lengths)
    cuts = [0]
    while cuts[-1] < len(docs):
        base = bounds[cuts[-1] - 1] if cuts[-1] else 0
        cut = int(np.searchsorted(bounds, base + _PIECE_CHARS, side="right"))
        cuts.append(min(max(cut, cuts[-1] + 1), len(docs)))
    return cuts


def piece_text(docs, lowercase):
    """The documents joined by the separator (one a document holds becomes a space)."""
    if lowercase:
        # Document by document: str.lower is fast on ASCII strings and slow on
        # others, so one accented document would slow down the whole piece.
        docs = list(map(str.lower, docs))
    text = _SEP.join(docs)
    if text.count(_SEP) != len(docs) - 1:
        text = _SEP.join(doc.replace(_SEP, " ") for doc in docs)
    return text


def ids_in_pieces(docs, piece_ids):
    """``piece_ids(piece) -> (ids, doc_ptr)`` over pieces of ``docs``, joined.

    Pieces of about ``_PIECE_CHARS`` characters keep each one's arrays in the
    processor's cache; they are independent and numpy releases the GIL, so
    they run in several threads. ``None`` if any piece gives ``None``.
    """
    cuts = piece_bounds(docs)
    pieces = run_parallel(
        piece_ids, [(docs[a:b],) for a, b in zip(cuts[:-1], cuts[1:])], usable_threads()
    )
    if any(piece is None for piece in pieces):
        return None
    id_parts, ptr_parts, offset = [], [np.zeros(1, dtype=np.int64)], 0
    for ids, doc_ptr in pieces:
        id_parts.append(ids)
        ptr_parts.append(doc_ptr[1:] + offset)
        offset += len(ids)
    if not id_parts:
        return np.zeros(0, dtype=np.int64), ptr_parts[0]
    return np.concatenate(id_parts), np.concatenate(ptr_parts)


def _piece_ids(docs, table, lowercase, native=None, known_only=False):
    """``(ids, doc_ptr)`` of one piece: by the compiled kernel (``native``), else numpy."""
    if native is not None:
        return _compiled_piece_ids(native, docs, lowercase, table, known_only)
    text = piece_text(docs, lowercase)
    cp = _code_points(text)
    starts, ends, separators = _default_tokens(cp)
    if cp.dtype == np.uint8:
        ids = table.lookup(cp, starts, ends)
    else:
        # Tokens are found in code points and looked up in UTF-8, where most
        # words fit in one 64-bit word (in UTF-32 a word longer than two
        # characters takes several rounds of hashing and comparing).
        data = np.frombuffer(text.encode("utf-8", "surrogatepass") + bytes(8), np.uint8)[:-8]
        offsets = np.zeros(len(cp) + 1, dtype=np.int64)
        np.cumsum(_utf8_widths(cp), out=offsets[1:])
        ids = table.lookup_bytes(data, offsets[starts], offsets[ends] - offsets[starts])
    doc_ptr = np.empty(len(docs) + 1, dtype=np.int64)
    doc_ptr[0] = 0
    doc_ptr[1:-1] = np.searchsorted(starts, separators)
    doc_ptr[-1] = len(ids)
    return ids, doc_ptr


def on_kernel_text(docs, lowercase, call):
    """``call(text)`` on the documents' UTF-8 text as the compiled kernels read it.

    They lowercase ASCII documents themselves (with ``lowercase`` on), so
    only the others go through ``str.lower`` here. A kernel returns None when
    the text holds more documents than it was given: one held the separator,
    which is then a space, as everywhere else.
    """
    if lowercase and not all(map(str.isascii, docs)):
        docs = [doc if doc.isascii() else doc.lower() for doc in docs]
    found = call(_SEP.join(docs).encode("utf-8", "surrogatepass"))
    if found is None:
        spaced = _SEP.join(doc.replace(_SEP, " ") for doc in docs)
        found = call(spaced.encode("utf-8", "surrogatepass"))
    return found


def compiled_tables(table):
    """A vocabulary's tables as the compiled kernels take them (after the text)."""
    slots, starts = table.slots()
    return _Classes.table(), slots, starts, table.words


def _compiled_piece_ids(native, docs, lowercase, table, known_only):
    """``_piece_ids`` in one call of the compiled kernel: the same rules, the same table."""
    doc_ptr = np.empty(len(docs) + 1, dtype=np.int64)
    tables = compiled_tables(table)

    def call(data):
        ids = np.empty(len(data), dtype=np.int64)  # a token has at least one byte
        count = native.token_ids(data, *tables, ids, doc_ptr, known_only, lowercase)
        return None if count is None else ids[:count]

    return on_kernel_text(docs, lowercase, call), doc_ptr


def _default_tokens(cp):
    r"""Tokens of ``DEFAULT_TOKEN_PATTERN`` in ``cp``: starts, ends, and the separators.

    The rules, read off the pattern: a run of word characters is one token,
    except that (a) an apostrophe before it joins it (``'\w+``: "'s"), and
    (b) a run ending in "n" before "'t" and a non-word character gives that
    "n" to an "n't" token (``\w+(?=n't\b)|n't\b``: "do" "n't"), unless (a)
    applied to the run. Every other character that is neither a word
    character nor whitespace is a token of its own.
    """
    n = len(cp)
    classes = _Classes.of(cp)
    word = (classes & _WORD).view(bool)
    edges = np.flatnonzero(word[1:] != word[:-1]) + 1
    if n and word[0]:
        edges = np.concatenate(([0], edges))
    if n and word[-1]:
        edges = np.concatenate((edges, [n]))
    starts, ends = edges[0::2], edges[1::2]
    marked = np.flatnonzero(classes >= _OTHER)
    kinds = classes[marked]
    separators = marked[kinds == _NUL]
    singles = marked[(kinds & _OTHER) != 0]
    apostrophes = marked[(kinds & _APOS) != 0]
    extra_starts = extra_ends = np.zeros(0, dtype=np.int64)
    if len(apostrophes):
        # Apostrophes before a word character: they start "'s"-like tokens,
        # or are taken by "n't": after a run ending in "n" that no apostrophe
        # precedes, before a "t" that ends a run.
        joined = apostrophes[apostrophes + 1 < n]
        joined = joined[word[joined + 1]]
        p = joined[joined >= 1]
        nt = (cp[p - 1] == _LETTER_N) & (cp[p + 1] == _LETTER_T)
        nt &= (p + 2 >= n) | ~word[np.minimum(p + 2, n - 1)]
        p = p[nt]
        before = np.searchsorted(ends, p)  # the run that ends at p
        run_start = starts[before]
        taken = p[(run_start == 0) | (cp[np.maximum(run_start - 1, 0)] != _APOSTROPHE)]
        after = np.searchsorted(starts, joined + 1)  # the run that starts after
        is_taken = np.isin(joined, taken, assume_unique=True)
        split = np.searchsorted(ends, taken)
        starts = starts.copy()
        ends = ends.copy()
        starts[after[~is_taken]] -= 1
        one = ends[split] - starts[split] == 1  # the run is "n": it becomes "n't"
        ends[split[one]] += 2
        ends[split[~one]] -= 1
        extra_starts = taken[~one] - 1
        extra_ends = taken[~one] + 2
        if is_taken.any():  # the "t" runs went into "n't" tokens
            keep = np.ones(len(starts), dtype=bool)
            keep[after[is_taken]] = False
            starts, ends = starts[keep], ends[keep]
        singles = singles[~np.isin(singles, joined, assume_unique=True)]
    if len(singles):
        if len(extra_starts):
            order = np.argsort(np.concatenate((extra_starts, singles)), kind="stable")
            extra_ends = np.concatenate((extra_ends, singles + 1))[order]
            extra_starts = np.concatenate((extra_starts, singles))[order]
        else:
            extra_starts, extra_ends = singles, singles + 1
    if len(extra_starts):
        at = np.searchsorted(starts, extra_starts)
        starts = np.insert(starts, at, extra_starts)
        ends = np.insert(ends, at, extra_ends)
    return starts, ends, separators
