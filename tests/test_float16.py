"""Float16 vector tables (``WordVectorEmbedder(precision="float16")``).

Rows are rounded to float16 once and widened exactly to float32 as they are
read, so pooling a float16 table gives the float32 pooling of its widened
rows, on both paths; the document vectors stay within rounding of float32's.
"""

import os
import warnings

import numpy as np
import pytest
from _shared_data import read_dataset_or_sms
from gensim.models import KeyedVectors
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from embedxfer import WordVectorEmbedder
from embedxfer._core.registry import clear_registry
from embedxfer.exceptions import VectorFileWarning
from embedxfer.text import _native, _pooling
from embedxfer.text._pooling import segment_extreme, weighted_sum
from embedxfer.text._vector_conversions import describe_conversion, prune_conversions


@pytest.fixture(params=["f16c", "portable", "numpy"])
def half_path(request, monkeypatch):
    """The compiled kernels with F16C's conversions, with their portable code, or numpy."""
    path = request.param
    if path != "numpy" and not _native.available():
        pytest.skip("this install was built without the compiled kernels (no C compiler)")
    monkeypatch.setattr(_native, "ENABLED", path != "numpy")
    if path == "numpy":
        yield path
        return
    kernels = _native._KERNELS
    before = kernels.half_kernels()
    try:
        if kernels.half_kernels(path == "f16c") != path:
            pytest.skip("this processor has no F16C")
        yield path
    finally:
        kernels.half_kernels(before == "f16c")


@pytest.mark.parametrize("width", [16, 13])  # whole blocks of eight, and a ragged end
@pytest.mark.parametrize("op", ["max", "sum"])
def test_every_half_widens_exactly(op, width, half_path):
    every = np.arange(1 << 16, dtype=np.uint16)
    every = np.concatenate([every, np.zeros(-len(every) % width, np.uint16)])
    halves = every.view(np.float16).reshape(-1, width)
    expected = halves.astype(np.float32)
    one_row_each = np.arange(len(halves) + 1)
    if op == "max":
        got = segment_extreme(one_row_each[:-1], one_row_each, halves, "max")
    else:
        got = weighted_sum(one_row_each[:-1], one_row_each, halves)
        expected[expected == 0] = 0  # a sum starts from +0: -0 becomes +0
    nan = np.isnan(expected)
    assert np.isnan(got[nan]).all()
    np.testing.assert_array_equal(got[~nan].view(np.uint32), expected[~nan].view(np.uint32))


@pytest.fixture
def half_case():
    rng = np.random.default_rng(5)
    table = (rng.normal(size=(300, 37)) * 3).astype(np.float16)  # 37: ragged vector widths
    table[0, :4] = [6e-8, -0.0, 65504, -1e-5]  # a subnormal, a signed zero, the largest half
    lengths = rng.integers(0, 60, size=400)
    lengths[[3, 7]] = 0, 4000
    doc_ptr = np.concatenate([[0], np.cumsum(lengths)])
    ids = rng.integers(0, 302, size=doc_ptr[-1])  # rows 300 and 301 lie in extra
    weights = rng.uniform(0.1, 2, size=len(ids)).astype(np.float32)
    extra = rng.normal(size=(2, 37)).astype(np.float16)
    return table, extra, ids, doc_ptr, weights


@pytest.mark.parametrize("op", ["sum", "weighted sum", "max", "min"])
def test_a_float16_table_pools_as_its_float32_widening(half_case, op, half_path, monkeypatch):
    table, extra, ids, doc_ptr, weights = half_case
    monkeypatch.setattr(_pooling, "_TORCH_KERNELS", False)

    def pool(rows, more):
        if op in ("max", "min"):
            return segment_extreme(ids, doc_ptr, rows, op, extra=more)
        return weighted_sum(ids, doc_ptr, rows, weights if op == "weighted sum" else None, more)

    got = pool(table, extra)
    # One widened table: the numpy code adds a float32 table's extra rows after the others.
    wide = pool(np.vstack([table, extra]).astype(np.float32), None)
    np.testing.assert_array_equal(got, wide)
    assert got.dtype == np.float32
    # Many small runs of gathered rows (numpy code) give the same vectors.
    monkeypatch.setattr(_pooling, "_GATHERED_VALUES", 100)
    np.testing.assert_array_equal(pool(table, extra), got)


@pytest.mark.skipif(not _native.available(), reason="built without the compiled kernels")
@pytest.mark.parametrize("op", ["sum", "max"])
def test_compiled_and_numpy_code_agree_on_float16_tables(half_case, op, monkeypatch):
    table, extra, ids, doc_ptr, _ = half_case
    monkeypatch.setattr(_pooling, "_TORCH_KERNELS", False)
    pool = weighted_sum if op == "sum" else lambda *a, **k: segment_extreme(*a, "max", **k)
    compiled = pool(ids, doc_ptr, table, extra=extra)
    monkeypatch.setattr(_native, "ENABLED", False)
    np.testing.assert_array_equal(pool(ids, doc_ptr, table, extra=extra), compiled)


@pytest.mark.skipif(not _native.available(), reason="built without the compiled kernels")
def test_the_kernels_refuse_mixed_tables(half_case):
    table, extra, ids, doc_ptr, _ = half_case
    kernels = _native._KERNELS
    out = np.empty((len(doc_ptr) - 1, table.shape[1]), np.float32)
    ids = ids.astype(np.int64)
    doc_ptr = doc_ptr.astype(np.int64)
    with pytest.raises(TypeError, match="another type"):
        kernels.pool_sum(table, extra.astype(np.float32), ids, doc_ptr, None, out)
    with pytest.raises(TypeError, match="float32 or float16"):
        kernels.pool_sum(table.view(np.int16), None, ids, doc_ptr, None, out)


@pytest.fixture(scope="module")
def texts():
    docs, labels, _ = read_dataset_or_sms("mr")
    pick = np.random.default_rng(0).permutation(len(docs))[:3000]  # the file is sorted by label
    return [docs[i] for i in pick], np.asarray(labels)[pick]


@pytest.mark.parametrize(
    "params",
    [
        {"pooling": "mean"},
        {"pooling": "max"},
        {"pooling": "mean+min"},
        {"weighting": "tfidf"},
        {"weighting": "sif"},
        {"pooling": "sum", "normalize": True},
    ],
)
def test_float16_vectors_stay_within_rounding_of_float32(texts, params, kernel_path):
    docs, _ = texts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # documents without a known word
        full = WordVectorEmbedder(**params).fit_transform(docs)
        half = WordVectorEmbedder(precision="float16", **params).fit_transform(docs)
    assert half.dtype == np.float32 and half.shape == full.shape
    assert not np.array_equal(half, full)  # the rounded table was used
    norms = np.linalg.norm(full, axis=1) * np.linalg.norm(half, axis=1)
    cosine = (full * half).sum(axis=1)[norms > 0] / norms[norms > 0]
    assert cosine.min() > 0.9999
    np.testing.assert_array_equal(norms == 0, np.linalg.norm(half, axis=1) == 0)


def test_float16_keeps_float32_accuracy_on_real_labels(texts):
    docs, labels = texts
    accuracy = {}
    for precision in ("float32", "float16"):
        model = make_pipeline(
            WordVectorEmbedder(precision=precision), LogisticRegression(max_iter=1000)
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            accuracy[precision] = cross_val_score(model, docs, labels, cv=3).mean()
    assert accuracy["float32"] > 0.6  # the task is learned at all
    assert abs(accuracy["float16"] - accuracy["float32"]) <= 0.005


@pytest.fixture
def vector_file(tmp_path, small_glove, monkeypatch):
    monkeypatch.setenv("EMBEDXFER_HOME", str(tmp_path / "home"))
    path = tmp_path / "w2v.txt"
    small_glove.save_word2vec_format(str(path), binary=False)
    clear_registry()
    yield path
    clear_registry()


def _float16_folders(home):
    return sorted((home / "vectors").glob("*-float16"))


def test_a_files_float16_table_is_written_once_then_memory_mapped(vector_file, small_glove):
    home = vector_file.parent / "home"
    docs = ["the film is good", "a bad film"]
    first = WordVectorEmbedder(str(vector_file), precision="float16").fit(docs)
    (folder,) = _float16_folders(home)
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "vectors.npy"]
    table = first._table(first.keyed_vectors_)
    assert isinstance(table, np.memmap) and table.dtype == np.float16
    np.testing.assert_array_equal(table, small_glove.vectors.astype(np.float16))
    assert describe_conversion(folder) == (vector_file.resolve(), True)

    clear_registry()
    stamp = (folder / "vectors.npy").stat().st_mtime_ns
    second = WordVectorEmbedder(str(vector_file), precision="float16").fit(docs)
    assert (folder / "vectors.npy").stat().st_mtime_ns == stamp  # read back, not rewritten
    np.testing.assert_array_equal(second.transform(docs), first.transform(docs))


def test_a_damaged_float16_table_is_written_again(vector_file):
    home = vector_file.parent / "home"
    docs = ["the film is good", "a bad film"]
    expected = WordVectorEmbedder(str(vector_file), precision="float16").fit_transform(docs)
    (folder,) = _float16_folders(home)
    data = bytearray((folder / "vectors.npy").read_bytes())
    data[-2:] = b"\x00\x7c"  # the last value becomes infinite: same size, other checksum
    (folder / "vectors.npy").write_bytes(bytes(data))
    assert describe_conversion(folder)[1] is False
    clear_registry()
    with pytest.warns(VectorFileWarning, match="ignoring the float16 table.*checksum"):
        again = WordVectorEmbedder(str(vector_file), precision="float16").fit_transform(docs)
    np.testing.assert_array_equal(again, expected)
    assert describe_conversion(folder)[1] is True


def test_a_stale_float16_table_is_pruned(vector_file):
    home = vector_file.parent / "home"
    WordVectorEmbedder(str(vector_file), precision="float16").fit(["the film"])
    (folder,) = _float16_folders(home)
    assert prune_conversions() == []
    stat = vector_file.stat()
    os.utime(vector_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the source changed
    assert describe_conversion(folder)[1] is False
    assert folder in prune_conversions()
    assert not folder.exists()


def test_in_memory_vectors_are_rounded_in_memory(small_glove, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDXFER_HOME", str(tmp_path))
    embedder = WordVectorEmbedder(small_glove, precision="float16").fit(["the film"])
    table = embedder._table(small_glove)
    assert table.dtype == np.float16 and not isinstance(table, np.memmap)
    assert not (tmp_path / "vectors").exists()
    tokens = embedder.transform_tokens(["the film"])
    np.testing.assert_array_equal(
        tokens[0], table[[small_glove.key_to_index[w] for w in ("the", "film")]]
    )


def test_vectors_beyond_float16_range_are_refused_in_fit():
    kv = KeyedVectors(3)
    kv.add_vectors(["good", "film"], np.array([[1, 2, 3], [1, 7e4, 0]], np.float32))
    with pytest.raises(ValueError, match=r"precision='float16'.*70000.*beyond float16's range"):
        WordVectorEmbedder(kv, precision="float16").fit(["good film"])
    WordVectorEmbedder(kv).fit(["good film"])  # float32 holds them


def test_subword_rows_are_rounded_too(tmp_path, kernel_path):
    from embedxfer import train_word_vectors

    docs, _, _ = read_dataset_or_sms("mr")
    path = tmp_path / "ft.kv"
    kv = train_word_vectors(
        docs[:2000], method="fasttext", vector_size=16, min_count=2, epochs=1, path=path
    )
    queries = ["the filmmakingly movie", "qqqzzzxx the"]
    got = (
        WordVectorEmbedder(str(path), oov="subword", allow_pickle=True, precision="float16")
        .fit(queries)
        .transform(queries)
    )
    rows = [kv["the"], kv.get_vector("filmmakingly"), kv["movie"]]
    expected = np.mean([r.astype(np.float16).astype(np.float32) for r in rows], axis=0)
    np.testing.assert_allclose(got[0], expected, rtol=1e-6, atol=1e-7)


def test_the_embedding_cache_keeps_the_precisions_apart(small_glove):
    docs = ["the film is good"]
    full = WordVectorEmbedder(small_glove).fit(docs)
    half = WordVectorEmbedder(small_glove, precision="float16").fit(docs)
    assert full._cache_fingerprint() != half._cache_fingerprint()


def test_pickles_from_before_precision_existed_load_as_float32():
    docs = ["the film is good", "a dull plot"]
    fitted = WordVectorEmbedder().fit(docs)
    state = fitted.__getstate__()
    # As those pickles were: no parameter, none among the fitted ones.
    del state["precision"]
    state["_fitted_params"] = {k: v for k, v in state["_fitted_params"].items() if k != "precision"}
    old = WordVectorEmbedder.__new__(WordVectorEmbedder)
    old.__setstate__(state)
    assert old.precision == "float32" and clone(old).precision == "float32"
    np.testing.assert_array_equal(old.transform(docs), fitted.transform(docs))


def test_an_unwritable_place_for_the_table_is_one_clear_error(vector_file, monkeypatch):
    from embedxfer.text import _vector_sources

    blocker = vector_file.parent / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setattr(_vector_sources, "float16_folder", lambda target: blocker / "t-float16")
    with pytest.raises(OSError, match="cannot write a float16 table in .*EMBEDXFER_HOME"):
        WordVectorEmbedder(str(vector_file), precision="float16").fit(["the film"])


def test_writing_a_table_removes_what_killed_writers_left(vector_file):
    WordVectorEmbedder(str(vector_file)).fit(["the film"])  # the conversion exists first
    orphan = vector_file.parent / "home" / "vectors" / ".w2v-float16.999999999.x"
    orphan.mkdir()  # a pid that cannot be running
    (orphan / "vectors.npy").write_bytes(b"\0" * 64)
    clear_registry()
    WordVectorEmbedder(str(vector_file), precision="float16").fit(["the film"])
    assert not orphan.exists()


def test_a_float64_table_is_still_summed_in_float64(kernel_path):
    # Only float16 tables are gathered as float32 first; 1e8 + 1 is not a float32.
    vectors = np.array([[1e8 + 1.0], [-1e8]])
    got = weighted_sum(np.array([0, 1]), np.array([0, 2]), vectors)
    np.testing.assert_array_equal(got, [[1.0]])
