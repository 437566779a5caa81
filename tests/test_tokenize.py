import re

import numpy as np
import pytest

from embedxfer.text._tokenize import (
    DEFAULT_TOKEN_PATTERN,
    OOV_ID,
    VocabularyIndex,
    compile_tokenizer,
    documents_to_ids,
    drop_oov,
)

VOCAB = {w: i for i, w in enumerate(["the", "film", "do", "n't", "'s", "it", ",", ".", "good"])}


def reference_ids(docs, pattern=DEFAULT_TOKEN_PATTERN, lowercase=True):
    ids, ptr = [], [0]
    for doc in docs:
        toks = re.findall(pattern, doc.lower() if lowercase else doc)
        ids.extend(VOCAB.get(t, OOV_ID) for t in toks)
        ptr.append(len(ids))
    return np.array(ids, dtype=np.int64), np.array(ptr)


@pytest.mark.parametrize(
    "docs",
    [
        ["The film, it's good.", "", "don't", "unknownword the"],
        ["", "", ""],
        ["one"],
        ["a\x00b the", "the\x00\x00film"],  # documents holding the batch separator
    ],
)
def test_regex_path_matches_per_document_reference(docs, kernel_path):
    index = VocabularyIndex(VOCAB)
    ids, ptr, tokens = documents_to_ids(
        docs, index, compile_tokenizer(), lowercase=True, with_tokens=True
    )
    clean = [d.replace("\x00", " ") for d in docs]
    ref_ids, ref_ptr = reference_ids(clean)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(ptr, ref_ptr)
    assert len(tokens) == len(ids)


def test_clitics_split_like_glove():
    kind, pattern = compile_tokenizer()
    assert pattern.findall("don't it's can't") == ["do", "n't", "it", "'s", "ca", "n't"]


def test_callable_and_split_tokenizers():
    index = VocabularyIndex(VOCAB)
    ids, ptr, _ = documents_to_ids(["The film", "good"], index, compile_tokenizer("split"), False)
    np.testing.assert_array_equal(ids, [OOV_ID, 1, 8])
    np.testing.assert_array_equal(ptr, [0, 2, 3])
    ids, ptr, _ = documents_to_ids(
        ["the-film"], index, compile_tokenizer(lambda s: s.split("-")), True
    )
    np.testing.assert_array_equal(ids, [0, 1])


def test_lowercase_detection():
    assert VocabularyIndex({"the": 0, "cat": 1}).is_lowercase
    assert not VocabularyIndex({"The": 0, "cat": 1}).is_lowercase


def test_bad_tokenizer_arguments():
    with pytest.raises(ValueError, match="tokenizer="):
        compile_tokenizer(42)
    with pytest.raises(ValueError, match="capturing groups"):
        compile_tokenizer(None, r"(\w+)")


def test_vocabulary_index_does_not_modify_the_source():
    source = dict(VOCAB)
    VocabularyIndex(source)
    assert source == VOCAB


# -- the numpy path of the default pattern ------------------------------------------


def regex_reference(docs, vocab, lowercase):
    """One ``re.findall`` per document with the documented pattern, and dict lookups."""
    ids, ptr = [], [0]
    for doc in docs:
        doc = doc.replace("\x00", " ")
        toks = re.findall(DEFAULT_TOKEN_PATTERN, doc.lower() if lowercase else doc)
        ids.extend(vocab.get(t, OOV_ID) for t in toks)
        ptr.append(len(ids))
    return np.array(ids, dtype=np.int64), np.array(ptr, dtype=np.int64)


TRICKY_VOCAB = [
    "a",
    "b",
    "n't",
    "'s",
    "do",
    ",",
    ".",
    "u.s.",
    "don't",
    "a_b",
    "é",
    "ab",
    "t",
    "n",
    "'",
    "-",
    "an",
    "abn",
    "1",
    "²",
    "x y",
    "İ",
    "_",
    "'t",
    "'n",
    "\U0001f600",
    "ǆ",
    "nt",
    "dan",
    "aaaaaaaa",
    "aaaaaaaaa",
    "abababababababababab",
    "ééééé",
    "ééééé's",
    "tntntntnt",
]
PIECES = [
    "a",
    "b",
    "d",
    "n",
    "t",
    "'",
    "'",
    "n't",
    "'s",
    "n'",
    "'t",
    " ",
    " ",
    "\t",
    "\n",
    "\x00",
    ",",
    ".",
    "-",
    "_",
    "1",
    "²",
    "é",
    "İ",
    "ǅ",
    "U",
    "\u00a0",
    "\x1c",
    "\u2019",
    "\U0001f600",
    "\U00020000",
    "\ud800",
    "aaaaaaaa",
    "aaaaaaaaa",
    "abababababababababab",
    "ééééé",
    "tntntntnt",
]


@pytest.mark.parametrize("seed", range(4))
def test_default_pattern_gives_the_regex_tokens_on_random_text(seed, kernel_path):
    rng = np.random.default_rng(seed)
    vocab = {w: i for i, w in enumerate(TRICKY_VOCAB)}
    index = VocabularyIndex(vocab)
    assert index.hash_tables().get(False) is not None
    for _ in range(400):
        docs = [
            "".join(rng.choice(PIECES, size=rng.integers(0, 15)).tolist())
            for _ in range(rng.integers(1, 6))
        ]
        lowercase = bool(rng.integers(2))
        ids, ptr, _ = documents_to_ids(docs, index, compile_tokenizer(), lowercase)
        ref_ids, ref_ptr = regex_reference(docs, vocab, lowercase)
        np.testing.assert_array_equal(ids, ref_ids, err_msg=repr(docs))
        np.testing.assert_array_equal(ptr, ref_ptr, err_msg=repr(docs))
        known = documents_to_ids(docs, index, compile_tokenizer(), lowercase, known_only=True)
        for got, expected in zip(known[:2], drop_oov(ref_ids, ref_ptr)):
            np.testing.assert_array_equal(got, expected, err_msg=repr(docs))


def test_default_pattern_on_real_text_and_real_vocabulary(glove, mr_texts, kernel_path):
    docs = list(mr_texts[0][:3000]) + ["Don't panic: it's Müller's café (naïve) — ok?", ""]
    index = VocabularyIndex(glove.key_to_index)
    for lowercase in (True, False):
        ids, ptr, _ = documents_to_ids(docs, index, compile_tokenizer(), lowercase)
        ref_ids, ref_ptr = regex_reference(docs, glove.key_to_index, lowercase)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(ptr, ref_ptr)


def test_documents_spanning_several_pieces(monkeypatch, kernel_path):
    import embedxfer.text._tokenize as tokenize_module

    monkeypatch.setattr(tokenize_module, "_PIECE_CHARS", 64)
    monkeypatch.setattr(tokenize_module, "usable_threads", lambda: 3)  # pieces in threads
    vocab = {w: i for i, w in enumerate(TRICKY_VOCAB)}
    rng = np.random.default_rng(7)
    docs = ["".join(rng.choice(PIECES, size=rng.integers(0, 40)).tolist()) for _ in range(200)]
    docs.append("ab " * 100)  # a document longer than a piece
    ids, ptr, _ = documents_to_ids(docs, VocabularyIndex(vocab), compile_tokenizer(), True)
    ref_ids, ref_ptr = regex_reference(docs, vocab, True)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(ptr, ref_ptr)


def test_falls_back_to_the_dictionary_when_words_share_a_hash(monkeypatch):
    import embedxfer.text._tokenize as tokenize_module

    monkeypatch.setattr(tokenize_module._WordTable, "build", classmethod(lambda *a: None))
    index = VocabularyIndex(VOCAB)
    docs = ["The film, it's good.", "don't"]
    ids, ptr, _ = documents_to_ids(docs, index, compile_tokenizer(), True)
    ref_ids, ref_ptr = reference_ids(docs)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(ptr, ref_ptr)


def test_character_classes_are_those_of_re():
    # The numpy path classifies code points with str.isalnum / str.isspace;
    # re's \w and \s must agree on every code point for its tokens to match.
    import sys

    word, space = re.compile(r"\w"), re.compile(r"\s")
    for cp in range(sys.maxunicode + 1):
        char = chr(cp)
        assert (char.isalnum() or char == "_") == bool(word.match(char)), hex(cp)
        assert char.isspace() == bool(space.match(char)), hex(cp)


@pytest.mark.parametrize("pattern", [r"\S+", r"\w+|[^\w\s]", r"."])
def test_nul_is_whitespace_with_any_token_pattern(pattern):
    from embedxfer.text._tokenize import (
        OOV_ID,
        VocabularyIndex,
        compile_tokenizer,
        documents_to_ids,
    )

    index = VocabularyIndex({"good": 0, "film": 1})
    compiled = compile_tokenizer(None, pattern)
    docs = ["good\x00film", "a \x00 b", "film"]
    ids, doc_ptr, _ = documents_to_ids(docs, index, compiled, True)
    assert ids.min() >= OOV_ID
    spaced, spaced_ptr, _ = documents_to_ids(
        [d.replace("\x00", " ") for d in docs], index, compiled, True
    )
    np.testing.assert_array_equal(ids, spaced)
    np.testing.assert_array_equal(doc_ptr, spaced_ptr)
    own = compile_tokenizer(lambda text: ["\x00", "good"])
    ids, _, _ = documents_to_ids(["x"], index, own, False)
    assert ids.tolist() == [OOV_ID, 0]


def test_frequent_words_are_in_the_small_table(glove):
    # Vector files list words by decreasing frequency: the first rows win the
    # slots of the direct-mapped table that most tokens are found in.
    table = VocabularyIndex(glove.key_to_index).hash_tables().get(False)
    top = np.arange(200)
    assert np.isin(top, table.hot_rows).mean() > 0.95
    slots_used = table.hot_rows >= 0
    assert np.median(table.hot_rows[slots_used]) < len(glove.key_to_index) / 4


@pytest.mark.parametrize("hot_bits", [8, 16])
def test_small_table_and_whole_table_give_the_regex_ids(
    glove, mr_texts, monkeypatch, hot_bits, kernel_path
):
    import embedxfer.text._tokenize as tokenize_module

    monkeypatch.setattr(tokenize_module, "_HOT_BITS", hot_bits)
    docs = list(mr_texts[0][:500]) + ["Zürich's naïve café: don't!", "", "ééééé's"]
    index = VocabularyIndex(glove.key_to_index)
    ids, ptr, _ = documents_to_ids(docs, index, compile_tokenizer(), True)
    ref_ids, ref_ptr = regex_reference(docs, glove.key_to_index, True)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(ptr, ref_ptr)


@pytest.mark.parametrize("tokenizer", [None, "split"])
def test_known_only_is_drop_oov(tokenizer, kernel_path):
    index = VocabularyIndex(VOCAB)
    docs = ["The film, it's good.", "", "zzz qqq", "don't stop the film"]
    compiled = compile_tokenizer(tokenizer)
    ids, ptr, _ = documents_to_ids(docs, index, compiled, True)
    known_ids, known_ptr, _ = documents_to_ids(docs, index, compiled, True, known_only=True)
    expected_ids, expected_ptr = drop_oov(ids, ptr)
    assert (expected_ids >= 0).all() and len(expected_ids) < len(ids)
    np.testing.assert_array_equal(known_ids, expected_ids)
    np.testing.assert_array_equal(known_ptr, expected_ptr)


def test_compiled_tokenizer_checks_its_arguments():
    from embedxfer.text import _native
    from embedxfer.text._tokenize import _Classes

    if not _native.available():
        pytest.skip("this install was built without the compiled kernels (no C compiler)")
    kernels = _native._KERNELS
    table = VocabularyIndex(VOCAB).hash_tables().get(False)
    slots, starts = table.slots()
    classes = _Classes.table()
    text = b"the film\x00don't"

    def call(text=text, classes=classes, slots=slots, starts=starts, ids_size=64, n_docs=2):
        ids = np.empty(ids_size, np.int64)
        doc_ptr = np.empty(n_docs + 1, np.int64)
        count = kernels.token_ids(
            text, classes, slots, starts, table.words, ids, doc_ptr, False, False
        )
        return None if count is None else (ids[:count].tolist(), doc_ptr.tolist())

    assert call() == ([VOCAB["the"], VOCAB["film"], VOCAB["do"], VOCAB["n't"]], [0, 2, 4])
    with pytest.raises(ValueError, match="too small"):
        call(ids_size=3)
    # Another number of documents than separators says so (one held a zero byte).
    assert call(n_docs=3) is None
    with pytest.raises(ValueError, match="at least one"):
        call(n_docs=0)
    with pytest.raises(ValueError, match="inconsistent"):
        call(classes=classes[:256])
    with pytest.raises(ValueError, match="inconsistent"):
        call(slots=slots[:-1], starts=starts[:-1])  # not a power of two
    with pytest.raises(TypeError, match="starts"):
        call(starts=starts.astype(np.int32))
    # A word's place outside the words' bytes is a miss, never a read out of bounds.
    long_vocab = {"abcdefghijkl": 0}
    long_table = VocabularyIndex(long_vocab).hash_tables().get(False)
    long_slots, long_starts = long_table.slots()
    ids = np.empty(8, np.int64)
    doc_ptr = np.empty(2, np.int64)
    args = (b"abcdefghijkl", classes, long_slots, long_starts + 10**6, long_table.words)
    assert kernels.token_ids(*args, ids, doc_ptr, False, False) == 1 and ids[0] == OOV_ID
    args = (b"abcdefghijkl", classes, long_slots, long_starts, long_table.words)
    assert kernels.token_ids(*args, ids, doc_ptr, False, False) == 1 and ids[0] == 0
    # ASCII documents lowercased in the kernel, as str.lower does.
    assert kernels.token_ids(b"ABCDEFGHIJKL", *args[1:], ids, doc_ptr, False, True) == 1
    assert ids[0] == 0


def test_slot_table_finds_every_word(glove):
    # Linear probing placed all at once: every word is found from its hash.
    from embedxfer.text._tokenize import _span_hashes, _windows

    table = VocabularyIndex(glove.key_to_index).hash_tables().get(False)
    slots, starts = table.slots()
    size = len(slots)
    assert size & (size - 1) == 0 and len(table.hashes) <= 2 * size // 3
    assert (slots["row"] >= 0).sum() == len(table.hashes)
    at = (table.hashes & np.uint64(size - 1)).astype(np.int64)
    found = np.full(len(at), -1)
    pending = np.arange(len(at))
    while len(pending):
        here = slots[at[pending]]
        hit = here["hash"] == table.hashes[pending]
        found[pending[hit]] = here["row"][hit]
        assert (here["row"][~hit] >= 0).all()  # no empty slot before the word
        pending = pending[~hit]
        at[pending] = (at[pending] + 1) % size
    np.testing.assert_array_equal(found, table.rows)
    # Each slot's place and length in the words' bytes give back its hash.
    used = slots["row"] >= 0
    nbytes = slots["nbytes"][used].astype(np.int64)
    again = _span_hashes(_windows(table.words), starts[used], nbytes)
    np.testing.assert_array_equal(again, slots["hash"][used])


def test_documents_longer_than_a_lookup_batch(kernel_path):
    # The compiled kernel looks tokens up 4,096 at a time: a document of many
    # more, with "n't" and "'s" tokens on every side of a batch's end.
    vocab = {w: i for i, w in enumerate(TRICKY_VOCAB)}
    index = VocabularyIndex(vocab)
    unit = ["do", "n't", " ", "a", "'s", ",", "ééééé", " ", "aaaaaaaaa", "."]
    rng = np.random.default_rng(11)
    docs = ["".join(rng.choice(PIECES, size=30000).tolist()), "".join(unit * 1500), "a b"]
    for lowercase in (True, False):
        ids, ptr, _ = documents_to_ids(docs, index, compile_tokenizer(), lowercase)
        ref_ids, ref_ptr = regex_reference(docs, vocab, lowercase)
        assert ptr[2] - ptr[1] > 4096 * 2
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(ptr, ref_ptr)


def test_slot_table_refuses_rows_beyond_32_bits(kernel_path):
    # Rows that do not fit a slot leave the lookup to the numpy code.
    vocab = {"the": 0, "film": 2**31 + 5, "good": 7}
    index = VocabularyIndex(vocab)
    assert index.hash_tables().get(False).slots() is None
    docs = ["the good zzz film", "film"]
    ids, ptr, _ = documents_to_ids(docs, index, compile_tokenizer(), True)
    assert ids.tolist() == [0, 7, OOV_ID, 2**31 + 5, 2**31 + 5] and ptr.tolist() == [0, 4, 5]
    known, known_ptr, _ = documents_to_ids(docs, index, compile_tokenizer(), True, known_only=True)
    assert known.tolist() == [0, 7, 2**31 + 5, 2**31 + 5] and known_ptr.tolist() == [0, 3, 4]


def test_compiled_tokenizer_survives_hostile_arguments():
    from embedxfer.text import _native
    from embedxfer.text._tokenize import _Classes

    if not _native.available():
        pytest.skip("this install was built without the compiled kernels (no C compiler)")
    kernels = _native._KERNELS
    classes = _Classes.table()
    table = VocabularyIndex({"abcdefghijkl": 0, "x": 1}).hash_tables().get(False)
    slots, starts = table.slots()
    ids = np.empty(64, np.int64)
    doc_ptr = np.empty(2, np.int64)
    # A UTF-8 sequence cut by the end of the memory: read as one byte, no further.
    cut = np.zeros(64, np.uint8)
    cut[-1] = 0xF0
    count = kernels.token_ids(cut[-1:], classes, slots, starts, table.words, ids, doc_ptr, 0, 0)
    assert count == 1 and ids[0] == OOV_ID
    # Places far past the words' bytes (the sum would overflow): a miss.
    far = np.full_like(starts, 2**63 - 5)
    args = (classes, slots, far, table.words, ids, doc_ptr, False, False)
    assert kernels.token_ids(b"abcdefghijkl", *args) == 1 and ids[0] == OOV_ID
    # Items of the right size but another type, or misaligned, are refused.
    with pytest.raises(TypeError, match="starts"):
        kernels.token_ids(
            b"x", classes, slots, starts.view(np.float64), table.words, ids, doc_ptr, False, False
        )
    raw = np.zeros(8 * 3 + 1, np.uint8)
    misaligned = np.frombuffer(raw.data, dtype=np.int64, count=3, offset=1)
    with pytest.raises((TypeError, ValueError)):
        kernels.token_ids(b"x", classes, slots, starts, table.words, ids, misaligned, False, False)
