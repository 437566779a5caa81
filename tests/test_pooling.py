import numpy as np
import pytest

from embedxfer import WordVectorEmbedder
from embedxfer.text._pooling import segment_extreme, torch_pool, weighted_sum
from embedxfer.text._word import EmptyDocumentWarning


@pytest.fixture
def case():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    lengths = np.array([3, 0, 1, 7, 0, 2])
    doc_ptr = np.concatenate([[0], np.cumsum(lengths)])
    ids = rng.integers(0, 50, size=doc_ptr[-1])
    weights = rng.uniform(0.1, 2, size=len(ids)).astype(np.float32)
    return vectors, ids, doc_ptr, weights


def docs_of(ids, doc_ptr):
    return [ids[doc_ptr[i] : doc_ptr[i + 1]] for i in range(len(doc_ptr) - 1)]


def test_weighted_sum_matches_loop(case, kernel_path):
    vectors, ids, doc_ptr, weights = case
    got = weighted_sum(ids, doc_ptr, vectors, weights)
    expected = [
        (vectors[d] * weights[doc_ptr[i] : doc_ptr[i + 1], None]).sum(0)
        for i, d in enumerate(docs_of(ids, doc_ptr))
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert got.dtype == np.float32


@pytest.mark.parametrize("op", ["max", "min"])
def test_segment_extreme_matches_loop_and_gives_zeros_for_empty(case, op, kernel_path):
    vectors, ids, doc_ptr, _ = case
    got = segment_extreme(ids, doc_ptr, vectors, op)
    reduce = np.max if op == "max" else np.min
    expected = [reduce(vectors[d], 0) if len(d) else np.zeros(8) for d in docs_of(ids, doc_ptr)]
    np.testing.assert_allclose(got, expected)


def test_extra_rows_past_the_vocabulary(case, kernel_path):
    vectors, ids, doc_ptr, weights = case
    extra = np.full((2, 8), 9.0, np.float32)
    ids = ids.copy()
    ids[0] = 50  # first token of document 0 uses extra row 0
    table = np.vstack([vectors, extra])
    np.testing.assert_allclose(
        weighted_sum(ids, doc_ptr, vectors, weights, extra=extra),
        weighted_sum(ids, doc_ptr, table, weights),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        segment_extreme(ids, doc_ptr, vectors, "max", extra=extra),
        segment_extreme(ids, doc_ptr, table, "max"),
    )


@pytest.mark.parametrize("mode", ["sum", "max", "min"])
def test_torch_kernel_matches_numpy_on_cpu(case, mode):
    torch = pytest.importorskip("torch")
    vectors, ids, doc_ptr, weights = case
    table = torch.from_numpy(vectors)
    if mode == "sum":
        expected = weighted_sum(ids, doc_ptr, vectors, weights)
        got = torch_pool(ids, doc_ptr, table, "sum", weights)
    else:
        expected = segment_extreme(ids, doc_ptr, vectors, mode)
        got = torch_pool(ids, doc_ptr, table, mode)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_device_auto_is_cpu_without_a_gpu():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert WordVectorEmbedder(device="auto").fit(["a film"]).device_ == "cpu"
    with pytest.raises(ValueError, match="no CUDA device"):
        WordVectorEmbedder(device="cuda").fit(["a film"])


@pytest.mark.gpu
@pytest.mark.parametrize("pooling", ["mean", "sum", "max", "min", "mean+max"])
@pytest.mark.parametrize("weighting", [None, "tfidf", "sif"])
def test_gpu_pooling_matches_cpu(pooling, weighting):
    docs = ["a good film", "a dull, tedious film", "", "the cast is great but the plot is thin"]
    cpu = WordVectorEmbedder(pooling=pooling, weighting=weighting).fit(docs)
    gpu = WordVectorEmbedder(pooling=pooling, weighting=weighting, device="cuda").fit(docs)
    assert gpu.device_ == "cuda"
    with pytest.warns(EmptyDocumentWarning):
        on_gpu = gpu.transform(docs)
    with pytest.warns(EmptyDocumentWarning):
        on_cpu = cpu.transform(docs)
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-4, atol=1e-5)


def test_threads_and_blocks_do_not_change_the_results(monkeypatch, kernel_path):
    import embedxfer.text._pooling as pooling

    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(500, 24)).astype(np.float32)
    lengths = rng.integers(0, 30, size=3000)
    doc_ptr = np.concatenate([[0], np.cumsum(lengths)])
    ids = rng.integers(0, 500, size=doc_ptr[-1])
    weights = rng.uniform(0.1, 2, size=len(ids)).astype(np.float32)
    monkeypatch.setattr(pooling, "_TORCH_KERNELS", False)
    single = {
        "sum": weighted_sum(ids, doc_ptr, vectors, weights),
        "max": segment_extreme(ids, doc_ptr, vectors, "max"),
        "min": segment_extreme(ids, doc_ptr, vectors, "min"),
    }
    ids_before, weights_before = ids.copy(), weights.copy()
    monkeypatch.setattr(pooling, "n_threads", lambda work: 3)
    monkeypatch.setattr(pooling, "_PARALLEL_WORK", 0)  # the large-batch code path
    monkeypatch.setattr(pooling, "_SWEEP_BYTES", 1024)  # many small blocks
    np.testing.assert_array_equal(weighted_sum(ids, doc_ptr, vectors, weights), single["sum"])
    np.testing.assert_array_equal(segment_extreme(ids, doc_ptr, vectors, "max"), single["max"])
    np.testing.assert_array_equal(segment_extreme(ids, doc_ptr, vectors, "min"), single["min"])
    # The kernels never modify the caller's arrays.
    np.testing.assert_array_equal(ids, ids_before)
    np.testing.assert_array_equal(weights, weights_before)
    expected = [
        vectors[ids[a:b]].max(0) if b > a else np.zeros(24)
        for a, b in zip(doc_ptr[:-1], doc_ptr[1:])
    ]
    np.testing.assert_array_equal(single["max"], np.asarray(expected, np.float32))


def test_thread_count_follows_omp_num_threads(monkeypatch):
    import embedxfer.text._pooling as pooling

    assert pooling.n_threads(10) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert pooling.n_threads(1 << 30) == 1


def test_torch_kernel_when_torch_is_imported_gives_the_scipy_sums(glove, mr_texts, monkeypatch):
    # Once torch is imported, CPU weighted sums go through embedding_bag: the
    # same sums to the bit, weighted ones within float32 rounding, on real
    # vectors (a read-only memory map) and real text; no warning about it.
    import warnings

    import embedxfer.text._pooling as pooling
    from embedxfer.text import _native
    from embedxfer.text._tokenize import (
        VocabularyIndex,
        compile_tokenizer,
        documents_to_ids,
        drop_oov,
    )

    pytest.importorskip("torch")
    monkeypatch.setattr(_native, "ENABLED", False)  # they come first where built
    docs = list(mr_texts[0][:2000]) + ["", "zzzqqq"]
    index = VocabularyIndex(glove.key_to_index)
    ids, doc_ptr = drop_oov(*documents_to_ids(docs, index, compile_tokenizer(), True)[:2])
    vectors = glove.vectors
    weights = np.random.default_rng(0).uniform(0.1, 2, len(ids)).astype(np.float32)
    calls = []
    monkeypatch.setattr(
        pooling, "torch_pool", lambda *a, **k: calls.append(1) or torch_pool(*a, **k)
    )
    few = doc_ptr[doc_ptr <= 100]
    weighted_sum(ids[: few[-1]], few, vectors)
    assert not calls  # a small batch: torch's threads would cost more than they gain
    monkeypatch.setattr(pooling, "_PARALLEL_WORK", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast = [weighted_sum(ids, doc_ptr, vectors), weighted_sum(ids, doc_ptr, vectors, weights)]
    assert len(calls) == 2
    monkeypatch.setattr(pooling, "_TORCH_KERNELS", False)
    slow = [weighted_sum(ids, doc_ptr, vectors), weighted_sum(ids, doc_ptr, vectors, weights)]
    assert len(calls) == 2
    np.testing.assert_array_equal(fast[0], slow[0])
    np.testing.assert_allclose(fast[1], slow[1], rtol=1e-5, atol=1e-5)
    assert not fast[0][-2:].any()  # documents without a known word: zeros
    # Tables that are not C-ordered float32 stay on scipy's product (no copy per batch).
    monkeypatch.setattr(pooling, "_TORCH_KERNELS", True)
    small = np.asfortranarray(np.asarray(vectors[:5000]))
    keep = ids < 5000
    few_ptr = np.concatenate([[0], np.cumsum(keep)])[doc_ptr]
    weighted_sum(ids[keep], few_ptr, small)
    assert len(calls) == 2


def _torch_kernel_in_forked_child(queue):
    import embedxfer.text._pooling as pooling

    queue.put(pooling._imported_torch() is None)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_forked_children_keep_scipys_product():
    # GNU OpenMP, which torch's CPU threads use, may hang in a forked child.
    import multiprocessing

    import embedxfer.text._pooling as pooling

    pytest.importorskip("torch")
    assert pooling._imported_torch() is not None
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_torch_kernel_in_forked_child, args=(queue,))
    child.start()
    child.join(60)
    assert queue.get(timeout=5) is True
    assert pooling._imported_torch() is not None  # the parent is unchanged


def test_compiled_kernels_give_numpy_sums_to_the_bit(glove, mr_texts, monkeypatch):
    # On real vectors (a read-only memory map) and real text: plain and
    # weighted sums, max and min, with per-batch extra rows, threads or not.
    import embedxfer.text._pooling as pooling
    from embedxfer.text import _native
    from embedxfer.text._tokenize import VocabularyIndex, compile_tokenizer, documents_to_ids

    if not _native.available():
        pytest.skip("this install was built without the compiled kernels (no C compiler)")
    docs = list(mr_texts[0][:1500]) + ["", "zzzqqq"]
    index = VocabularyIndex(glove.key_to_index)
    ids, doc_ptr, _ = documents_to_ids(docs, index, compile_tokenizer(), True, known_only=True)
    vectors = glove.vectors
    rng = np.random.default_rng(1)
    weights = rng.uniform(0.1, 2, len(ids)).astype(np.float32)
    extra = rng.normal(size=(3, vectors.shape[1])).astype(np.float32)
    with_extra = ids.copy()
    with_extra[::7] = len(vectors) + rng.integers(0, 3, len(ids[::7]))
    monkeypatch.setattr(pooling, "_TORCH_KERNELS", False)

    def results():
        return [
            weighted_sum(ids, doc_ptr, vectors),
            weighted_sum(ids, doc_ptr, vectors, weights),
            weighted_sum(with_extra, doc_ptr, vectors, weights, extra=extra),
            segment_extreme(ids, doc_ptr, vectors, "max"),
            segment_extreme(with_extra, doc_ptr, vectors, "min", extra=extra),
        ]

    compiled = results()
    monkeypatch.setattr(pooling, "_PARALLEL_WORK", 0)  # several threads
    threaded = results()
    monkeypatch.setattr(_native, "ENABLED", False)
    reference = results()
    for k, (got, again, expected) in enumerate(zip(compiled, threaded, reference)):
        np.testing.assert_array_equal(again, got)
        if k == 2:
            # scipy adds a document's extra rows after its vocabulary rows; the
            # kernel adds every row in token order: the same sum, rounded apart.
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        else:
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("op", ["max", "min"])
def test_extremes_are_numpy_s_to_the_bit(op, kernel_path):
    # NaN on either side gives NaN; a tie keeps the later row (the sign of a zero).
    vectors = np.array(
        [[1, np.nan, 3, 0.0, -0.0], [2, 5, np.nan, -0.0, 0.0], [0, 1, 2, 0.0, 0.0]], np.float32
    )
    ids = np.array([0, 1, 2, 2, 0, 1, 0, 1, 0, 2, 1])
    doc_ptr = np.array([0, 3, 5, 7, 11])
    got = segment_extreme(ids, doc_ptr, vectors, op)
    ufunc = np.maximum if op == "max" else np.minimum
    expected = []
    for a, b in zip(doc_ptr[:-1], doc_ptr[1:]):
        row = vectors[ids[a]].copy()
        for t in ids[a + 1 : b]:
            row = ufunc(row, vectors[t])
        expected.append(row)
    np.testing.assert_array_equal(got.view(np.uint32), np.asarray(expected).view(np.uint32))


def test_compiled_pooling_writes_into_out_and_checks_its_arguments():
    from embedxfer.text import _native

    if not _native.available():
        pytest.skip("this install was built without the compiled kernels (no C compiler)")
    kernels = _native._KERNELS
    vectors = np.arange(12, dtype=np.float32).reshape(4, 3)
    ids = np.array([0, 3, 1], dtype=np.int64)
    doc_ptr = np.array([0, 2, 3], dtype=np.int64)
    out = np.full((2, 3), -1, np.float32)
    assert weighted_sum(ids, doc_ptr, vectors, out=out) is out
    np.testing.assert_array_equal(out, [vectors[0] + vectors[3], vectors[1]])
    bad = [
        ((vectors, None, np.array([0, 4, 1]), doc_ptr, None, out), IndexError, "outside"),
        ((vectors, None, np.array([0, -1, 1]), doc_ptr, None, out), IndexError, "outside"),
        ((vectors, None, ids, np.array([0, 4, 3]), None, out), ValueError, "rising"),
        ((vectors, None, ids, np.array([0, 2, 1]), None, out), ValueError, "rising"),
        ((vectors, None, ids, doc_ptr, None, np.zeros((3, 3), np.float32)), ValueError, "agree"),
        ((vectors, None, ids, doc_ptr, np.ones(2, np.float32), out), ValueError, "agree"),
        ((vectors.astype(np.float64), None, ids, doc_ptr, None, out), TypeError, "vectors"),
        ((vectors, None, ids.astype(np.int32), doc_ptr, None, out), TypeError, "ids"),
        ((vectors.view(np.int32), None, ids, doc_ptr, None, out), TypeError, "vectors"),
        ((vectors, None, ids.astype(np.float64), doc_ptr, None, out), TypeError, "ids"),
        ((vectors, None, ids, doc_ptr, None, out[:, :2]), (BufferError, ValueError), ""),
    ]
    for args, error, message in bad:
        with pytest.raises(error, match=message):
            kernels.pool_sum(*args)
    readonly = out.copy()
    readonly.flags.writeable = False
    with pytest.raises((BufferError, ValueError), match="read-only"):
        kernels.pool_extreme(vectors, None, ids, doc_ptr, True, readonly)
