import gzip
import os
import shutil
import time

import numpy as np
import pytest
from _shared_data import read_dataset_or_sms
from gensim.models import FastText, KeyedVectors
from gensim.models.fasttext import FastTextKeyedVectors

from embedxfer import load_vectors, train_word_vectors
from embedxfer._core.artefact import manifest_digest
from embedxfer._core.registry import clear_registry, loaded_keys
from embedxfer.exceptions import ModelUnavailableError, VectorFormatError
from embedxfer.text._vector_formats import detect_format
from embedxfer.text._vector_sources import source_identity


@pytest.fixture(scope="module")
def vector_files(tmp_path_factory, small_glove):
    """The same real GloVe vectors written in every supported format."""
    d = tmp_path_factory.mktemp("vectors")
    files = {}
    small_glove.save_word2vec_format(str(d / "w2v.bin"), binary=True)
    files["word2vec-bin"] = d / "w2v.bin"
    with open(d / "w2v.bin", "rb") as src, gzip.open(d / "w2v.bin.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    files["word2vec-bin-gz"] = d / "w2v.bin.gz"
    small_glove.save_word2vec_format(str(d / "w2v.txt"), binary=False)
    files["word2vec-text"] = d / "w2v.txt"
    with open(d / "w2v.txt", "rb") as src, gzip.open(d / "w2v.txt.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    files["word2vec-text-gz"] = d / "w2v.txt.gz"
    lines = (d / "w2v.txt").read_text(encoding="utf-8").splitlines()[1:]
    (d / "glove.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    files["glove-text"] = d / "glove.txt"
    small_glove.save(str(d / "native.kv"))
    files["gensim"] = d / "native.kv"
    return files


@pytest.mark.parametrize(
    "kind",
    [
        "word2vec-bin",
        "word2vec-bin-gz",
        "word2vec-text",
        "word2vec-text-gz",
        "glove-text",
        "gensim",
    ],
)
def test_every_format_round_trips(vector_files, small_glove, kind, tmp_path):
    path = vector_files[kind]
    expected_format = kind.replace("-gz", "")
    assert detect_format(path) == expected_format
    kv = load_vectors(str(path), cache_dir=tmp_path, allow_pickle=kind == "gensim")
    assert kv.index_to_key == small_glove.index_to_key
    np.testing.assert_allclose(np.asarray(kv.vectors), small_glove.vectors, rtol=1e-6, atol=1e-6)


def test_text_file_is_converted_once_then_memory_mapped(vector_files, tmp_path):
    path = str(vector_files["glove-text"])
    clear_registry()
    first = load_vectors(path, cache_dir=tmp_path)
    converted = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert len(converted) == 1
    # plain data only: .npy arrays, a JSON vocabulary and a JSON manifest (no pickle)
    assert sorted(p.name for p in converted[0].iterdir()) == [
        "manifest.json",
        "vectors.npy",
        "vocabulary.json",
    ]
    clear_registry()
    start = time.perf_counter()
    second = load_vectors(path, cache_dir=tmp_path)
    assert time.perf_counter() - start < 5  # generous: behaviour, not a benchmark
    assert isinstance(second.vectors, np.memmap)
    np.testing.assert_array_equal(np.asarray(first.vectors), np.asarray(second.vectors))


def test_changed_file_is_reconverted(tmp_path, small_glove):
    path = tmp_path / "v.txt"
    small_glove.save_word2vec_format(str(path), binary=False)
    first = load_vectors(str(path), cache_dir=tmp_path / "cache")
    time.sleep(0.01)
    kv2 = KeyedVectors(small_glove.vector_size)
    kv2.add_vectors(["alpha", "beta"], np.ones((2, small_glove.vector_size), np.float32))
    kv2.save_word2vec_format(str(path), binary=False)
    os.utime(path, ns=(time.time_ns(), time.time_ns()))
    second = load_vectors(str(path), cache_dir=tmp_path / "cache")
    assert len(first) == 5000 and second.index_to_key == ["alpha", "beta"]


def test_source_loaded_once_per_process(vector_files, tmp_path):
    clear_registry()
    a = load_vectors(str(vector_files["word2vec-bin"]), cache_dir=tmp_path)
    b = load_vectors(str(vector_files["word2vec-bin"]), cache_dir=tmp_path)
    assert a is b
    assert sum(k[0] == "vectors" for k in loaded_keys()) == 1


def test_packaged_glove_names(glove):
    assert glove.vector_size == 50 and len(glove) == 400_000
    assert load_vectors("glove-wiki-gigaword-50") is not None
    np.testing.assert_array_equal(load_vectors("glove-wiki-gigaword-50")["king"], glove["king"])
    # The genuine GloVe: king - man + woman is closest to queen.
    best = glove.most_similar(positive=["king", "woman"], negative=["man"], topn=1)[0][0]
    assert best == "queen"


def test_packaged_glove_loads_row_major(tmp_path):
    from pathlib import Path

    from embedxfer.text._vector_conversions import _rows_are_contiguous
    from embedxfer.text._vector_sources import _load_uncached, packaged_glove_files

    npy = packaged_glove_files()[0].resolve()
    # The loader itself, past the registry: the process's count of GloVe loads
    # (checked by tests/test_word.py) stays one.
    kv = _load_uncached("glove-6B-50d", "auto", tmp_path, convert=True)
    assert len(kv) == 400_000 and kv.index_to_key[0] == "the"
    # Gathering word rows needs each vector in one piece: a column-major package
    # file is converted, a row-major one is mapped where it is installed.
    assert kv.vectors.flags["C_CONTIGUOUS"]
    mapped_in_place = Path(kv.vectors.filename).resolve() == npy
    assert mapped_in_place == _rows_are_contiguous(npy)
    np.testing.assert_array_equal(kv.vectors[:100], np.load(npy, mmap_mode="r")[:100])


def test_row_major_packaged_glove_is_memory_mapped_where_it_is_installed(tmp_path, monkeypatch):
    import json
    from pathlib import Path

    import embedxfer.text._vector_sources as vectors_module
    from embedxfer.text._vector_conversions import (
        _read_converted,
        _source_manifest,
        converted_files,
    )
    from embedxfer.text._vector_sources import _load_uncached

    real_npy, words = vectors_module.packaged_glove_files()
    npy = tmp_path / "installed" / "glove_6B_50d_emb.npy"
    npy.parent.mkdir()
    np.save(npy, np.ascontiguousarray(np.load(real_npy, mmap_mode="r")))
    monkeypatch.setattr(vectors_module, "packaged_glove_files", lambda: (npy, words))
    cache = tmp_path / "cache"
    kv = _load_uncached("glove-6B-50d", "auto", cache, convert=True)
    assert isinstance(kv.vectors, np.memmap) and Path(kv.vectors.filename).resolve() == npy
    # Only the word list is converted: no 80 MB copy of the vectors in the cache.
    (folder,) = converted_files(cache)
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "vocabulary.json"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "packaged" and manifest["size"] == npy.stat().st_size
    expected = _source_manifest(npy, "packaged-glove")
    assert _read_converted(folder, expected, warn=False) is not None
    # A checksum that does not match the installed file: the conversion is not trusted.
    manifest = dict(manifest, source_blake2b="0" * 32)
    manifest = dict(manifest, manifest_sha256=manifest_digest(manifest))
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert _read_converted(folder, expected, warn=False) is None


def test_keyed_vectors_object_passes_through(small_glove):
    assert load_vectors(small_glove) is small_glove
    assert source_identity(small_glove).startswith("object:5000x50:")


def test_fasttext_bin_gives_subword_vectors(tmp_path):
    from gensim.models.fasttext import save_facebook_model

    texts, _, _ = read_dataset_or_sms("mr")
    sentences = [t.split() for t in texts[:2000]]
    model = FastText(sentences=sentences, vector_size=16, min_count=2, epochs=1, seed=0, workers=1)
    path = tmp_path / "ft.bin"
    save_facebook_model(model, str(path))
    assert detect_format(path) == "fasttext-bin"
    kv = load_vectors(str(path), cache_dir=tmp_path / "cache")
    assert isinstance(kv, FastTextKeyedVectors)
    assert "filmmakingly" not in kv.key_to_index
    assert np.any(kv.get_vector("filmmakingly") != 0)
    np.testing.assert_allclose(kv["film"], model.wv["film"], rtol=1e-5, atol=1e-6)


def test_train_word_vectors_saves_native_files(tmp_path):
    texts, _, _ = read_dataset_or_sms("mr")
    for method in ("word2vec", "fasttext"):
        path = tmp_path / f"{method}.kv"
        kv = train_word_vectors(
            texts[:3000], method=method, vector_size=20, min_count=3, epochs=1, path=path
        )
        loaded = load_vectors(str(path), allow_pickle=True)  # our own file
        assert loaded.index_to_key == kv.index_to_key
        np.testing.assert_allclose(np.asarray(loaded.vectors), kv.vectors)
        assert isinstance(loaded, FastTextKeyedVectors) == (method == "fasttext")


def test_train_word_vectors_rejects_bad_input():
    with pytest.raises(ValueError, match="method"):
        train_word_vectors(["a b"], method="glove")
    with pytest.raises(ValueError, match="single string"):
        train_word_vectors("a b c")
    with pytest.raises(ValueError, match="document 1"):
        train_word_vectors(["a b", None])


def test_empty_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with pytest.raises(VectorFormatError, match="empty"):
        load_vectors(str(path))


def test_unknown_format_names_file_and_content(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello world this is not a vector file\n")
    with pytest.raises(VectorFormatError, match=r"notes\.txt: unknown vector format.*hello world"):
        load_vectors(str(path))


def test_truncated_binary_file(vector_files, tmp_path):
    data = vector_files["word2vec-bin"].read_bytes()
    path = tmp_path / "cut.bin"
    path.write_bytes(data[: len(data) // 2])
    # refused from the header before reading (the file is half the announced size) ...
    with pytest.raises(VectorFormatError, match=r"cut\.bin: header announces 5000 vectors"):
        load_vectors(str(path), cache_dir=tmp_path)
    # ... or, when only the last row is cut short, by the reader, still naming the file
    path.write_bytes(data[:-10])
    with pytest.raises(VectorFormatError, match=r"cut\.bin.*word2vec-bin"):
        load_vectors(str(path), cache_dir=tmp_path)


def test_truncated_text_file(vector_files, tmp_path):
    text = vector_files["word2vec-text"].read_text(encoding="utf-8")
    path = tmp_path / "cut.txt"
    path.write_text(text[: len(text) // 2], encoding="utf-8")
    with pytest.raises(VectorFormatError, match=r"cut\.txt"):
        load_vectors(str(path), cache_dir=tmp_path)


def test_corrupt_text_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("the 0.1 0.2 0.3\ncat 0.1 oops 0.3\n")
    with pytest.raises(VectorFormatError, match=r"bad\.txt.*'cat 0\.1 oops"):
        load_vectors(str(path), cache_dir=tmp_path)


def test_missing_file_and_unknown_name():
    with pytest.raises(FileNotFoundError, match="Close known names: glove-wiki-gigaword-50"):
        load_vectors("glove-wiki-gigaword-5O")
    with pytest.raises(FileNotFoundError, match="neither an existing file"):
        load_vectors("/no/such/vectors.bin")


def test_catalogue_name_offline_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("GENSIM_DATA_DIR", str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match="local copy"):
        load_vectors("word2vec-google-news-300")
    assert time.perf_counter() - start < 10


def test_catalogue_name_uses_local_gensim_data(monkeypatch, tmp_path, small_glove):
    folder = tmp_path / "glove-twitter-25"
    folder.mkdir()
    small_glove.save_word2vec_format(str(folder / "glove-twitter-25.gz"), binary=False)
    monkeypatch.setenv("GENSIM_DATA_DIR", str(tmp_path))
    kv = load_vectors("glove-twitter-25", cache_dir=tmp_path / "cache")
    assert kv.index_to_key == small_glove.index_to_key


def test_bad_arguments():
    with pytest.raises(ValueError, match="format="):
        load_vectors("glove-6B-50d", format="xml")
    with pytest.raises(TypeError, match="KeyedVectors"):
        load_vectors(42)
