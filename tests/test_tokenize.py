import re

import numpy as np
import pytest

from embedxfer._tokenize import (
    DEFAULT_TOKEN_PATTERN,
    OOV_ID,
    VocabularyIndex,
    compile_tokenizer,
    documents_to_ids,
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
def test_regex_path_matches_per_document_reference(docs):
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
