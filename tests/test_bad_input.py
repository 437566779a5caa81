"""Bad files and bad input get a clear error (or a documented repair), never a wrong answer."""

import gzip
import os
import sqlite3
import time
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from embedxfer import EmbeddingCache, WordVectorEmbedder, load_vectors
from embedxfer._core.registry import clear_registry
from embedxfer.cli import main
from embedxfer.datasets import load_csv, load_text_lines
from embedxfer.text._vector_conversions import (
    converted_files,
    describe_conversion,
    prune_conversions,
)
from embedxfer.text._vector_sources import VectorFormatError

DIM = 4


def glove_lines(n=20, dim=DIM, seed=0):
    rng = np.random.default_rng(seed)
    return [f"w{i} " + " ".join(f"{v:.4f}" for v in rng.normal(size=dim)) for i in range(n)]


# ------------------------------------------------------------------ vector files
@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_non_finite_rows_are_dropped_with_a_count(tmp_path, bad):
    lines = glove_lines()
    lines[3] = "w3 0.1 " + bad + " 0.3 0.4"
    lines[7] = "w7 " + " ".join([bad] * DIM)
    path = tmp_path / "v.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    clear_registry()
    with pytest.warns(UserWarning, match="2 of 20 word vectors hold NaN or infinite values"):
        kv = load_vectors(str(path), cache_dir=tmp_path / "cache")
    assert "w3" not in kv.key_to_index and "w7" not in kv.key_to_index and len(kv) == 18
    assert np.isfinite(kv.vectors).all()
    X = WordVectorEmbedder(str(path)).fit(["w3 w1", "w7"]).transform(["w3 w1", "w7"])
    assert np.isfinite(X).all()
    np.testing.assert_allclose(X[0], kv["w1"], rtol=1e-6)


def test_in_memory_vectors_with_nan_are_refused(small_glove):
    from gensim.models import KeyedVectors

    kv = KeyedVectors(DIM)
    vectors = np.ones((3, DIM), np.float32)
    vectors[1, 2] = np.nan
    kv.add_vectors(["a", "b", "c"], vectors)
    with pytest.raises(ValueError, match="1 of 3 word vectors hold NaN.*'b'"):
        WordVectorEmbedder(kv).fit(["a b"])


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("gz", [False, True])
def test_header_claiming_more_than_the_file_holds_fails_fast(tmp_path, binary, gz):
    body = b"1000000000 300\nw " + (b"\x00" * 8 if binary else b"0.1 0.2\n")
    path = tmp_path / ("v.bin" if binary else "v.txt")
    path.write_bytes(gzip.compress(body) if gz else body)
    clear_registry()
    tracemalloc.start()
    start = time.perf_counter()
    fmt = "word2vec-bin" if binary else "word2vec-text"
    with pytest.raises(
        VectorFormatError, match=r"v\.(bin|txt): header announces 1000000000 vectors"
    ):
        load_vectors(str(path), format=fmt, cache_dir=tmp_path / "cache")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - start < 2 and peak < 50 * 2**20


def test_fasttext_header_claiming_too_much_fails_fast(tmp_path):
    import struct

    head = struct.pack("<ii", 793712314, 12) + struct.pack(
        "<12i", 300, 5, 5, 1, 5, 1, 1, 1, 2_000_000, 3, 6, 100
    )
    head += struct.pack("<d", 1e-4) + struct.pack("<iiiqq", 10, 10, 0, 100, -1)
    path = tmp_path / "ft.bin"
    path.write_bytes(head + b"x\x00" * 10)
    with pytest.raises(VectorFormatError, match="announces 10 words and 2000000 n-gram buckets"):
        load_vectors(str(path), cache_dir=tmp_path / "cache")


def _tiny_fasttext_bin(tmp_path, words=("good", "film", "great", "movie")):
    from gensim.models import FastText
    from gensim.models.fasttext import save_facebook_model

    model = FastText(
        sentences=[list(words)] * 5,
        vector_size=4,
        min_count=1,
        epochs=1,
        bucket=100,
        workers=1,
        seed=0,
    )
    path = tmp_path / "tiny.bin"
    save_facebook_model(model, str(path))
    return path


@pytest.mark.parametrize("name", ["lee_fasttext.bin", "non_ascii_fasttext.bin"])
def test_fasttext_files_of_the_first_format_still_load(tmp_path, name):
    # fastText's first releases wrote no magic number, pruned index or
    # quantisation flag: gensim reads them, and so must the header check.
    from gensim.models.fasttext import load_facebook_vectors
    from gensim.test.utils import datapath

    clear_registry()
    kv = load_vectors(datapath(name), format="fasttext-bin", cache_dir=tmp_path)
    reference = load_facebook_vectors(datapath(name))
    assert kv.index_to_key == reference.index_to_key
    np.testing.assert_allclose(kv.vectors, reference.vectors, rtol=1e-6)


def test_a_supervised_fasttext_model_is_named_as_such(tmp_path):
    from gensim.test.utils import datapath

    clear_registry()
    with pytest.raises(VectorFormatError, match="supervised fastText model .2 labels"):
        load_vectors(datapath("pang_lee_polarity_fasttext.bin"), cache_dir=tmp_path)


@pytest.mark.parametrize(
    "rows, match",
    [
        (10**9, "matrix header announces 1000000000 x 4 vectors"),
        (50, "matrix header announces 50 x 4 vectors"),  # gensim: an AssertionError
    ],
)
def test_fasttext_matrix_header_is_checked_before_gensim_allocates(tmp_path, rows, match):
    import struct

    path = _tiny_fasttext_bin(tmp_path)
    data = bytearray(path.read_bytes())
    at = data.find(struct.pack("<2q", 104, 4))  # 4 words and 100 buckets, of 4 dimensions
    assert at > 0
    data[at : at + 16] = struct.pack("<2q", rows, 4)
    path.write_bytes(bytes(data))
    clear_registry()
    tracemalloc.start()
    with pytest.raises(VectorFormatError, match=match) as info:
        load_vectors(str(path), cache_dir=tmp_path / "cache")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 2**20 and str(info.value).startswith(str(path))


def test_fasttext_truncated_in_its_vocabulary_or_matrix_is_named(tmp_path):
    import struct

    # Long words: the file is larger than the matrix alone, so only the
    # matrix header's position shows that the matrix is cut short.
    words = [c * 600 for c in "abcd"]
    path = _tiny_fasttext_bin(tmp_path, words)
    data = path.read_bytes()
    matrix = data.find(struct.pack("<2q", 104, 4)) + 16
    no_end_of_word = data[:92] + b"x" * (len(data) - 92)
    for content, match in (
        (no_end_of_word, "vocabulary ends before its 4 words"),
        (data[: matrix + 100], "needs 1,664 bytes, more than the 100 left"),
    ):
        path.write_bytes(content)
        clear_registry()
        with pytest.raises(VectorFormatError, match=match):
            load_vectors(str(path), cache_dir=tmp_path / "cache")


def test_gensim_assertions_on_a_fasttext_bin_become_vector_format_errors(tmp_path, monkeypatch):
    from gensim.models import fasttext

    path = _tiny_fasttext_bin(tmp_path)

    def inconsistent(*args, **kwargs):
        raise AssertionError("unexpected number of vectors")

    monkeypatch.setattr(fasttext, "load_facebook_vectors", inconsistent)
    clear_registry()
    with pytest.raises(VectorFormatError, match="tiny.bin: could not be read as fasttext-bin"):
        load_vectors(str(path), cache_dir=tmp_path / "cache")


def test_short_first_glove_line_is_named_not_a_wrong_dimension(tmp_path):
    lines = glove_lines()
    lines[0] = "good 0.1"
    path = tmp_path / "glove.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(VectorFormatError, match=r"'good 0.1' does not hold a word and 4 numbers"):
        load_vectors(str(path), cache_dir=tmp_path / "cache")


def test_corrupt_gzip_and_truncated_files_name_the_file(tmp_path, small_glove):
    path = tmp_path / "v.txt.gz"
    whole = gzip.compress("\n".join(glove_lines(200)).encode())
    path.write_bytes(whole[:10] + b"\xff" * 40 + whole[50:])
    clear_registry()
    with pytest.raises(VectorFormatError, match="v.txt.gz"):
        load_vectors(str(path), cache_dir=tmp_path / "cache")
    native = tmp_path / "mine.kv"
    small_glove.save(str(native))
    native.write_bytes(native.read_bytes()[:200])
    with pytest.raises(VectorFormatError, match="mine.kv"):
        load_vectors(str(native), allow_pickle=True)
    w2v = tmp_path / "w.bin"
    small_glove.save_word2vec_format(str(w2v), binary=True)
    w2v.write_bytes(w2v.read_bytes()[:-1000])
    with pytest.raises(VectorFormatError, match="w.bin"):
        load_vectors(str(w2v), cache_dir=tmp_path / "cache")


def test_old_conversions_are_listed_and_pruned(tmp_path):
    cache = tmp_path / "cache"
    paths = []
    for i in range(2):
        p = tmp_path / f"v{i}.txt"
        p.write_text("\n".join(glove_lines(seed=i)) + "\n", encoding="utf-8")
        load_vectors(str(p), cache_dir=cache)
        paths.append(p)
    leftover = cache / ".v0-killed.abc"
    leftover.mkdir()
    os.utime(leftover, (time.time() - 7200, time.time() - 7200))
    (cache / "v9-0000000000000000").mkdir()  # an older version's folder: no manifest
    assert [describe_conversion(f)[1] for f in converted_files(cache)] == [
        True,
        True,
        False,
    ]
    paths[1].write_text("\n".join(glove_lines(seed=5)) + "\n", encoding="utf-8")
    os.utime(paths[1], ns=(time.time_ns(), time.time_ns() + 10**9))
    removed = prune_conversions(cache)
    assert leftover in removed and (cache / "v9-0000000000000000") in removed
    assert [describe_conversion(f) for f in converted_files(cache)] == [(paths[0].resolve(), True)]
    assert len(prune_conversions(cache, all=True)) == 1 and not converted_files(cache)


# ------------------------------------------------------------------------ inputs
@pytest.mark.parametrize("pattern", [r"\S+", r".+", r"[^ ]+", r"(?s).+?(?= |$)"])
def test_token_patterns_that_match_the_separator(small_glove, pattern):
    docs = ["good film", "bad film here", "", "film"]
    X = WordVectorEmbedder(small_glove, token_pattern=pattern).fit(docs).transform(docs)
    one = [
        WordVectorEmbedder(small_glove, token_pattern=pattern).fit([d]).transform([d])[0]
        for d in docs
    ]
    np.testing.assert_allclose(X, np.stack(one), rtol=1e-6)


@pytest.mark.parametrize("bad", [None, "a string", 42])
def test_tokenizer_returning_a_non_list_is_named(small_glove, bad):
    def tokenizer(text):
        return bad if text == "two" else text.split()

    with pytest.raises(TypeError, match="returned .* for document 1; a tokenizer must return"):
        WordVectorEmbedder(small_glove, tokenizer=tokenizer).fit(["one", "two"])


@pytest.mark.parametrize("bad", [1, None, b"film"])
def test_tokenizer_returning_a_non_str_token_is_named(small_glove, bad):
    def tokenizer(text):
        return ["good", bad] if text == "two" else text.split()

    with pytest.raises(TypeError, match="returned a token of type .* for document 1; a tokeni"):
        WordVectorEmbedder(small_glove, tokenizer=tokenizer).fit(["one", "two"])


def test_lone_surrogates_are_named_by_document(small_glove):
    with pytest.raises(ValueError, match="document 2 holds '\\\\udc80' at character 3"):
        WordVectorEmbedder(small_glove).fit(["ok", "fine", "bad\udc80 text"])


def test_labels_of_one_kind_in_several_types_are_accepted():
    # numpy.str_ is a str and numpy.int64 a number: a list mixing them with
    # Python's own is of one kind (as np.asarray reads it).
    from embedxfer._core.validation import check_label_types

    check_label_types(list(np.array(["spam", "ham"])) + ["ham"])
    check_label_types([1, np.int64(0), 2.0, np.float32(1), True])
    check_label_types([b"a", np.bytes_(b"b")])
    with pytest.raises(ValueError, match=r"labels mix types \['bytes', 'str'\]"):
        check_label_types(["a", b"b"])


def test_missing_or_mixed_labels_are_named():
    pytest.importorskip("torch")
    from embedxfer import SequenceClassifier

    docs = ["good film", "bad film", "great", "awful"]
    for labels, match in [
        (pd.Series(["pos", None, "pos", "neg"]), "label 1 is (None|nan)"),
        (pd.Series(["pos", np.nan, "pos", "neg"]), "label 1 is nan"),
        (np.array([1.0, 0.0, np.nan, 1.0]), "label 2 is"),
        (pd.Series(["pos", 1, "neg", 0], dtype=object), "labels mix types"),
        (["pos", 1, "neg", 0], r"labels mix types \['int', 'str'\]"),
        (("pos", 1, "neg", 0), r"labels mix types \['int', 'str'\]"),
        (["pos", None, "pos", "neg"], "1 labels are missing .*label 1 is None"),
        (pd.Series(["pos", pd.NA, "pos", "neg"], dtype="string"), "label 1 is <NA>"),
        (pd.Series([1, 0, pd.NA, 1], dtype="Int64"), "label 2 is nan"),
    ]:
        with pytest.raises(ValueError, match=match):
            SequenceClassifier(epochs=1).fit(docs, labels)


# ------------------------------------------------------------------ command line
def embed(tmp_path, *args):
    return main(["-q", "embed", *map(str, args), "-m", "glove-6B-50d"])


def test_embed_refuses_to_overwrite_its_input(tmp_path, capsys):
    src = tmp_path / "docs.npy"  # a text file that happens to end in .npy
    src.write_text("a good film\nbad\n", encoding="utf-8")
    before = src.read_bytes()
    assert embed(tmp_path, src, "-o", src, "--force") == 1
    assert "is the input file" in capsys.readouterr().err
    assert src.read_bytes() == before
    link = tmp_path / "link.npy"
    link.symlink_to(src)
    assert embed(tmp_path, src, "-o", link, "--force") == 1
    assert src.read_bytes() == before


def test_embed_overwrites_an_existing_output_only_with_force(tmp_path, capsys):
    src = tmp_path / "docs.txt"
    src.write_text("a good film\nbad\n", encoding="utf-8")
    out = tmp_path / "out.npy"
    out.write_bytes(b"precious")
    assert embed(tmp_path, src, "-o", out) == 1
    assert "exists; pass --force" in capsys.readouterr().err and out.read_bytes() == b"precious"
    assert embed(tmp_path, src, "-o", out, "--force") == 0
    assert np.load(out).shape == (2, 50)


def test_lines_split_on_newline_only(tmp_path):
    text = "one\x0cstill one\r\ntwo\u2028same two\nthree\x1c\x1d\x85end\n\nfive"
    path = tmp_path / "docs.txt"
    path.write_bytes(text.encode("utf-8"))
    assert load_text_lines(path) == [
        "one\x0cstill one",
        "two\u2028same two",
        "three\x1c\x1d\x85end",
        "",
        "five",
    ]
    out = tmp_path / "o.npy"
    assert embed(tmp_path, path, "-o", out) == 0
    assert np.load(out).shape[0] == 5 == len(path.read_bytes().split(b"\n"))
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"text": "a\\u2028b"}\n{"text": "c\u2028d"}\n', encoding="utf-8")
    assert load_csv(jsonl, label_column=None).data == ["a\u2028b", "c\u2028d"]


def test_orphaned_temporary_output_is_removed(tmp_path):
    src = tmp_path / "docs.txt"
    src.write_text("a\nb\n", encoding="utf-8")
    orphan = tmp_path / ".out.npy.999999999.tmp"  # a pid that cannot be running
    orphan.write_bytes(b"half")
    assert embed(tmp_path, src, "-o", tmp_path / "out.npy") == 0
    assert not orphan.exists()


# -------------------------------------------------------------------- disk cache
def test_damaged_cache_file_is_named(tmp_path):
    folder = tmp_path / "cache"
    cache = EmbeddingCache(folder)
    cache.put("fp", ["a"], np.ones((1, 3), np.float32))
    cache.close()
    db = next(p for p in folder.iterdir() if p.suffix in (".sqlite", ".db", ".sqlite3"))
    for extra in folder.iterdir():
        if extra != db:
            extra.unlink()
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError, match=str(db.name)):
        EmbeddingCache(folder).get("fp", ["a"])


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0, reason="file permissions do not bind the root user"
)
def test_read_only_cache_location_is_named(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="ro"):
            EmbeddingCache(folder / "cache").put("fp", ["a"], np.ones((1, 3), np.float32))
    finally:
        folder.chmod(0o700)


# ------------------------------------------------------------------ input files, round two
def test_corrupt_gzip_documents_are_a_user_error(tmp_path, capsys):
    path = tmp_path / "docs.txt.gz"
    whole = gzip.compress(("a good film\n" * 200).encode())
    path.write_bytes(whole[:10] + b"\xff" * 20 + whole[30:])
    with pytest.raises(ValueError, match="docs.txt.gz looks gzip-compressed"):
        load_text_lines(path)
    assert main(["embed", str(path), "-o", str(tmp_path / "o.npy"), "-m", "glove-6B-50d"]) == 1
    err = capsys.readouterr().err
    assert "gzip" in err and len(err.strip().splitlines()) == 1


def test_csv_fields_longer_than_the_csv_module_default(tmp_path):
    import csv

    long_text = "word " * 60_000  # 300,000 characters, over csv's 131,072
    pd.DataFrame({"text": [long_text, "short"], "label": [0, 1]}).to_csv(
        tmp_path / "long.csv", index=False
    )
    before = csv.field_size_limit()
    bunch = load_csv(tmp_path / "long.csv")
    assert bunch.data == [long_text, "short"]
    assert csv.field_size_limit() == before


def test_documents_file_that_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "docs.txt"
    os.mkfifo(fifo)
    with pytest.raises((ValueError, FileNotFoundError), match="docs.txt"):
        load_text_lines(fifo)


def _image_folder(tmp_path, name):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "ok.png")
    Image.new("RGB", (8, 8)).save(os.path.join(os.fsencode(folder), name))
    return folder


@pytest.mark.parametrize("name", [b"two\nlines.png", b"latin-\xe9.png"])
def test_image_names_that_cannot_be_listed_are_refused_before_any_work(tmp_path, capsys, name):
    pytest.importorskip("PIL")
    folder = _image_folder(tmp_path, name)
    out = tmp_path / "out.npy"
    assert main(["embed", str(folder), "-o", str(out), "-m", "efficientnet-lite0"]) == 1
    err = capsys.readouterr().err
    assert "OUT.paths.txt" in err and "rename the file" in err
    assert not out.exists() and not list(tmp_path.glob("out.npy*"))


def test_image_folder_given_to_a_text_model(tmp_path, capsys):
    pytest.importorskip("PIL")
    folder = _image_folder(tmp_path, b"b.png")
    assert main(["embed", str(folder), "-o", str(tmp_path / "o.npy"), "-m", "glove-6B-50d"]) == 1
    err = capsys.readouterr().err
    assert "folder of images" in err and "text model" in err and "timm" not in err.split(";")[0]


@pytest.mark.parametrize("header", ["3 -4", "-3 4", "3 0", "0 4"])
def test_word2vec_header_with_a_bad_count_or_dimension(tmp_path, header):
    path = tmp_path / "v.txt"
    path.write_text(header + "\n" + "\n".join(glove_lines(3)) + "\n", encoding="utf-8")
    with pytest.raises(VectorFormatError, match=r"v.txt: the word2vec header announces"):
        load_vectors(str(path), cache_dir=tmp_path / "cache")


def test_vector_file_rewritten_with_size_and_mtime_restored_is_converted_again(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("\n".join(glove_lines(20, seed=0)) + "\n", encoding="utf-8")
    clear_registry()
    first = np.array(load_vectors(str(path), cache_dir=tmp_path / "cache")["w3"])
    stat = path.stat()
    time.sleep(0.01)
    # other values, same size: every digit of every vector replaced
    words, _, values = path.read_bytes().partition(b" ")
    path.write_bytes(words + b" " + values.translate(bytes.maketrans(b"0123456789", b"9876543210")))
    assert path.stat().st_size == stat.st_size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    clear_registry()
    with pytest.warns(UserWarning, match="ignoring the converted vectors.*ctime_ns"):
        second = np.array(load_vectors(str(path), cache_dir=tmp_path / "cache")["w3"])
    assert not np.allclose(first, second)


def test_cli_main_puts_the_environment_back(monkeypatch, tmp_path):
    # Called in a Python process, main() must not leave other libraries quiet.
    import os

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")
    missing = tmp_path / "missing.txt"
    assert main(["embed", str(missing), "-o", str(tmp_path / "o.npy"), "-m", "glove-6B-50d"]) == 1
    assert "HF_HUB_DISABLE_PROGRESS_BARS" not in os.environ
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "info"
