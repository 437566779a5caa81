"""Documents to vocabulary ids, in a handful of C-level calls per batch.

The batch is joined into one string with a separator that the token pattern
returns as a token of its own, so one ``findall`` tokenises every document
and the separators mark where each one ends. Ids come from a single
``map(dict.get, ...)`` over the tokens: no Python loop per word.
"""

import re
from itertools import chain, repeat

import numpy as np

# Words (with a PTB-style split of "n't" and of "'s"-like clitics, as the
# GloVe / word2vec vocabularies have them) and single punctuation marks.
DEFAULT_TOKEN_PATTERN = r"\w+(?=n't\b)|n't\b|'\w+|\w+|[^\w\s]"
_SEP = "\x00"
_SEP_ID = -2
OOV_ID = -1


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


def compile_tokenizer(tokenizer=None, token_pattern=DEFAULT_TOKEN_PATTERN):
    """Return ``(kind, obj)``: ``("regex", compiled)`` or ``("callable", func)``."""
    if tokenizer is None or tokenizer == "regex":
        pattern = re.compile(f"{_SEP}|(?:{token_pattern})")
        if pattern.groups:
            raise ValueError(
                f"token_pattern={token_pattern!r} has capturing groups; use (?:...) instead."
            )
        return "regex", pattern
    if tokenizer in ("split", "whitespace") or tokenizer is str.split:
        return "callable", str.split
    if callable(tokenizer):
        return "callable", tokenizer
    raise ValueError(
        f"tokenizer={tokenizer!r}; expected None (regex), 'split' or a callable "
        "taking a string and returning a list of tokens."
    )


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
    token_lists = [tok(doc.lower() if lowercase else doc) for doc in docs]
    lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=len(docs))
    doc_ptr = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=doc_ptr[1:])
    return list(chain.from_iterable(token_lists)), doc_ptr


def documents_to_ids(docs, index, compiled, lowercase, *, with_tokens=False):
    """Map documents to vocabulary rows.

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
    tokens, doc_ptr = tokenize(docs, compiled, lowercase)
    n = len(tokens)
    ids = np.fromiter(map(index.lookup.get, tokens, repeat(OOV_ID, n)), dtype=np.int64, count=n)
    if doc_ptr is None:
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
    """Keep in-vocabulary tokens only; return ``(ids, doc_ptr, counts_total)``."""
    known = ids >= 0
    csum = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(known, out=csum[1:])
    return ids[known], csum[doc_ptr]
