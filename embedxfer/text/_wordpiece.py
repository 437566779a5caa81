"""Documents to a fast tokenizer's token ids, in batches, without special tokens.

Any fast (Rust, ``tokenizers``) tokenizer works through its own
``encode_batch``. For the BERT family (``BertNormalizer`` with text cleaning,
``BertPreTokenizer``, ``WordPiece``) most tokens need no call to it: text is
cut with numpy where BERT itself would cut it (whitespace, ASCII
punctuation), and every ASCII word that is a whole vocabulary entry is
looked up in a hash table of those entries (the one
:class:`~embedxfer.text._tokenize.VocabularyIndex` builds). Only the rest (words
WordPiece splits, runs holding a non-ASCII or control character or a
special token's text) goes to the tokenizer, once per distinct string. The
ids are the tokenizer's own, document by document; only their order within
a document may differ, which no pooling sees.

Special tokens and the unknown token are dropped: they carry no text.
"""

import json
import threading
from itertools import chain

import numpy as np

from .._core.optional import import_optional, install_hint
from ._native import kernels
from ._tokenize import OOV_ID, VocabularyIndex, _code_points, drop_oov, ids_in_pieces

_SEP = "\x00"
# Character classes for the BERT fast path, by code point (128: anything
# beyond ASCII): where BERT cuts text, what it keeps whole.
_BOUNDARY, _ALNUM, _PUNCT, _COMPLEX = 0, 1, 2, 3
_ASCII_CLASSES = np.full(129, _COMPLEX, dtype=np.uint8)  # ASCII controls, non-ASCII
_ASCII_CLASSES[[0, 9, 10, 13, 32]] = _BOUNDARY
_ASCII_CLASSES[33:127] = _PUNCT
for _first, _last in ((48, 57), (65, 90), (97, 122)):
    _ASCII_CLASSES[_first : _last + 1] = _ALNUM
# Strings the tokenizer was asked about, kept per tokenizer (bounded).
_MAX_REMEMBERED = 1 << 19


def import_tokenizers():
    """The ``tokenizers`` package, or an ImportError naming the extra that installs it."""
    return import_optional(
        "tokenizers",
        f"StaticEmbedder needs the tokenizers package; {install_hint('transformers')}",
    )


class TokenIds:
    """A fast tokenizer (from its JSON serialisation) turning documents into ids.

    Parameters
    ----------
    tokenizer_json : str
        ``tokenizer.json``: what ``tokenizer.backend_tokenizer.to_str()``
        gives for a transformers fast tokenizer.
    """

    def __init__(self, tokenizer_json):
        tokenizers = import_tokenizers()
        self.tokenizer = tokenizers.Tokenizer.from_str(tokenizer_json)
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        spec = json.loads(tokenizer_json)
        self.vocab_size = int(self.tokenizer.get_vocab_size(with_added_tokens=True))
        added = spec.get("added_tokens") or []
        dropped = [t["id"] for t in added if t.get("special")]
        unk = (spec.get("model") or {}).get("unk_token")
        if unk is not None and self.tokenizer.token_to_id(unk) is not None:
            dropped.append(self.tokenizer.token_to_id(unk))
        self.dropped = np.zeros(self.vocab_size, dtype=bool)
        self.dropped[[i for i in dropped if 0 <= i < self.vocab_size]] = True
        self._added_texts = [t["content"] for t in added if t.get("content")]
        self._bert = _bert_settings(spec)
        self._words = None
        self._pieces = {}
        self._lock = threading.Lock()

    @property
    def uses_word_table(self):
        """Whether the BERT fast path applies to this tokenizer."""
        return self._bert is not None

    def ids(self, docs):
        """Token ids of ``docs``: ``(ids, doc_ptr)``, special and unknown tokens dropped.

        ``ids[doc_ptr[i]:doc_ptr[i + 1]]`` are document ``i``'s ids.
        """
        if self._bert is not None and self._word_table() is not None:
            ids, doc_ptr = ids_in_pieces(docs, self._bert_ids)
        else:
            ids, doc_ptr = self.tokenizer_ids(docs)
        ids = np.where(self.dropped[ids], OOV_ID, ids) if len(ids) else ids
        return drop_oov(ids, doc_ptr)

    def tokenizer_ids(self, docs):
        """``(ids, doc_ptr)`` from the tokenizer's own batch encoding, nothing dropped."""
        lists = [e.ids for e in self.tokenizer.encode_batch_fast(docs, add_special_tokens=False)]
        return _flatten(lists)

    # -- the BERT fast path ---------------------------------------------------------

    def _word_table(self):
        if self._words is None:
            with self._lock:
                if self._words is None:
                    self._words = _WholeWords(self.tokenizer.get_vocab(), self._bert)
        return self._words.table

    def _bert_ids(self, docs):
        text = _SEP.join(docs)
        if text.count(_SEP) != len(docs) - 1:
            # BERT's text cleaning deletes NUL characters anyway.
            text = _SEP.join(doc.replace(_SEP, "") for doc in docs)
        native = kernels()
        table = self._words.table.tables.get(False) if native is not None else None
        if (
            table is not None
            and table.slots() is not None
            and not any(added in text for added in self._added_texts)
        ):
            return self._compiled_bert_ids(native, table, text, len(docs))
        cp = _code_points(text)
        classes = _ASCII_CLASSES[np.minimum(cp, 128)]
        inside = classes != _BOUNDARY
        # Runs of characters between boundaries; a run with anything BERT
        # treats specially goes to the tokenizer whole.
        run_start = inside & ~np.r_[False, inside[:-1]]
        run_of = np.cumsum(run_start) - 1
        starts_of_runs = np.flatnonzero(run_start)
        ends_of_runs = np.flatnonzero(inside & ~np.r_[inside[1:], False]) + 1
        complex_run = np.zeros(len(starts_of_runs), dtype=bool)
        complex_run[run_of[classes == _COMPLEX]] = True
        for added in self._added_texts:
            at = text.find(added)
            while at >= 0:
                if inside[at]:
                    complex_run[run_of[at]] = True
                at = text.find(added, at + 1)
        simple = inside & ~complex_run[np.maximum(run_of, 0)]
        alnum = simple & (classes == _ALNUM)
        word_starts = np.flatnonzero(alnum & ~np.r_[False, alnum[:-1]])
        word_ends = np.flatnonzero(alnum & ~np.r_[alnum[1:], False]) + 1
        punct = np.flatnonzero(simple & (classes == _PUNCT))
        starts = np.concatenate((word_starts, punct))
        ends = np.concatenate((word_ends, punct + 1))
        # The spans looked up are ASCII: look them up in bytes even when the
        # text has other characters (UTF-32 would take several hashing rounds).
        lowered = _ascii_bytes(cp, lower=self._bert["lowercase"])
        ids = self._word_table().lookup(lowered, starts, ends)
        separators = np.flatnonzero(cp == 0)
        # Documents of the table's hits, and the strings left to the tokenizer.
        hit = ids != OOV_ID
        miss = np.flatnonzero(~hit)
        left_starts = np.concatenate((starts[miss], starts_of_runs[complex_run]))
        left_ends = np.concatenate((ends[miss], ends_of_runs[complex_run]))
        left = [text[a:b] for a, b in zip(left_starts.tolist(), left_ends.tolist())]
        return self._in_text_order(
            ids[hit],
            np.searchsorted(separators, starts[hit]),
            starts[hit],
            left,
            np.searchsorted(separators, left_starts),
            left_starts,
            len(docs),
        )

    def _compiled_bert_ids(self, native, table, text, n_docs):
        """``_bert_ids`` with the compiled kernel finding the whole words (no added
        token's text in ``text``: that would make its run go to the tokenizer)."""
        data = text.encode("utf-8", "surrogatepass")
        n = len(data)  # at most one id or span per byte
        ids, id_docs, id_starts, span_docs = (np.empty(n, dtype=np.int64) for _ in range(4))
        spans = np.empty((n, 2), dtype=np.int64)
        slots, starts = table.slots()
        n_ids, n_spans = native.whole_word_ids(
            data,
            n_docs,
            slots,
            starts,
            table.words,
            self._bert["lowercase"],
            ids,
            id_docs,
            id_starts,
            spans.reshape(-1),
            span_docs,
        )
        spans = spans[:n_spans]
        left = [data[a:b].decode("utf-8", "surrogatepass") for a, b in spans.tolist()]
        return self._in_text_order(
            ids[:n_ids],
            id_docs[:n_ids],
            id_starts[:n_ids],
            left,
            span_docs[:n_spans],
            spans[:, 0],
            n_docs,
        )

    def _in_text_order(self, hits, hit_docs, hit_starts, left, left_docs, left_starts, n_docs):
        """``(ids, doc_ptr)``: the table's hits and the tokenizer's ids of the strings
        ``left``, merged in text order, so that a document's ids do not depend on
        the other documents of its piece or on the path that found them (sums of
        rows added in another order differ in the last bits)."""
        piece_ids, ptr = self._piece_lists(left)
        lengths = np.diff(ptr)
        docs_of = np.concatenate((hit_docs, np.repeat(left_docs, lengths)))
        at = np.concatenate((hit_starts, np.repeat(left_starts, lengths)))
        order = np.lexsort((at, docs_of))  # stable: a string's pieces keep their order
        doc_ptr = np.searchsorted(docs_of[order], np.arange(n_docs + 1))
        return np.concatenate((hits, piece_ids))[order], doc_ptr.astype(np.int64)

    def _piece_lists(self, strings):
        """``(ids, ptr)``: the tokenizer's ids of each string (asked once per distinct
        string), string ``i``'s at ``ids[ptr[i]:ptr[i + 1]]``."""
        if not strings:
            return np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
        remembered = self._pieces  # replaced, never cleared: safe to read meanwhile
        fresh = {}
        unknown = [s for s in dict.fromkeys(strings) if s not in remembered]
        if unknown:
            encoded = self.tokenizer.encode_batch_fast(unknown, add_special_tokens=False)
            fresh = dict(zip(unknown, (tuple(e.ids) for e in encoded)))
            with self._lock:
                if len(self._pieces) + len(fresh) > _MAX_REMEMBERED:
                    self._pieces = dict(fresh)
                else:
                    self._pieces.update(fresh)
        return _flatten([fresh[s] if s in fresh else remembered[s] for s in strings])


class _WholeWords:
    """The vocabulary entries WordPiece keeps whole: ASCII words and punctuation marks."""

    def __init__(self, vocab, bert):
        prefix = bert["prefix"]
        limit = bert["max_chars"]
        words = {}
        for token, row in vocab.items():
            if not token.isascii() or len(token) > limit or (prefix and token.startswith(prefix)):
                continue
            kinds = set(_ASCII_CLASSES[np.frombuffer(token.encode("ascii"), np.uint8)].tolist())
            if bert["lowercase"] and token != token.lower():
                continue
            if kinds == {_ALNUM} or (len(token) == 1 and kinds == {_PUNCT}):
                words[token] = row
        self.table = _EitherWidth(VocabularyIndex(words).hash_tables()) if words else None


class _EitherWidth:
    """Look up in the table of the text's encoding (bytes or UTF-32)."""

    def __init__(self, tables):
        self.tables = tables

    def lookup(self, cp, starts, ends):
        table = self.tables.get(cp.dtype != np.uint8)
        if table is None:  # two words share a hash: a plain dictionary lookup
            words = self.tables.words
            index = dict(zip(words, self.tables.rows.tolist()))
            text = cp.tobytes().decode("ascii" if cp.dtype == np.uint8 else "utf-32-le")
            return np.fromiter(
                (index.get(text[a:b], OOV_ID) for a, b in zip(starts.tolist(), ends.tolist())),
                dtype=np.int64,
                count=len(starts),
            )
        return table.lookup(cp, starts, ends)


def _bert_settings(spec):
    """What the fast path needs of a BERT-style tokenizer, or None for any other."""
    normalizer = spec.get("normalizer") or {}
    pre = spec.get("pre_tokenizer") or {}
    model = spec.get("model") or {}
    if (
        normalizer.get("type") != "BertNormalizer"
        or not normalizer.get("clean_text", True)
        or pre.get("type") != "BertPreTokenizer"
        or model.get("type") != "WordPiece"
        or any(t.get("normalized") for t in spec.get("added_tokens") or [])
    ):
        return None
    return {
        "lowercase": bool(normalizer.get("lowercase", True)),
        "prefix": model.get("continuing_subword_prefix") or "",
        "max_chars": int(model.get("max_input_chars_per_word") or 100),
    }


def _ascii_bytes(cp, lower):
    """``cp`` as bytes (code points past ASCII become 0x80), A-Z lowered if ``lower``,
    followed by 8 zero bytes as ``_code_points`` gives it."""
    raw = np.zeros(len(cp) + 8, dtype=np.uint8)
    out = raw[: len(cp)]
    np.minimum(cp, 0x80, out=out, casting="unsafe")
    if lower:
        upper = (out >= 65) & (out <= 90)
        out[upper] += 32
    return out


def _flatten(lists):
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    doc_ptr = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=doc_ptr[1:])
    ids = np.fromiter(chain.from_iterable(lists), dtype=np.int64, count=int(doc_ptr[-1]))
    return ids, doc_ptr
