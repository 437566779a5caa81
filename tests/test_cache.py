"""Tests for embedxfer/_cache/: the embedding cache and its use by the embedders."""

import copy
import hashlib
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
from sklearn.base import clone

from embedxfer._cache import EmbeddingCache, encode_with_cache, hash_texts, resolve_cache
from embedxfer.exceptions import CacheWarning

N_FEATURES = 8


def fake_vectors(texts):
    """Deterministic float32 vectors derived from each text's hash."""
    rows = [
        np.frombuffer(hashlib.sha256(t.encode("utf-8")).digest()[:N_FEATURES], np.uint8)
        for t in texts
    ]
    return (np.asarray(rows, dtype=np.float32) / 255).reshape(len(texts), N_FEATURES)


class CountingEncoder:
    """``encode`` that records how many documents it was asked for."""

    def __init__(self):
        self.calls = []

    def __call__(self, texts):
        self.calls.append(list(texts))
        return fake_vectors(texts)

    @property
    def n_docs(self):
        return sum(len(call) for call in self.calls)


def corpus(n, prefix="doc"):
    return [f"{prefix} {i} " + "word " * (i % 7) for i in range(n)]


@pytest.fixture(params=["memory", "disk"])
def cache(request, tmp_path):
    if request.param == "memory":
        return EmbeddingCache(max_memory_mb=64)
    return EmbeddingCache(tmp_path / "cache")


def run_python(code, *args, **kwargs):
    """Start ``python -c code`` (the code may use ``sys.argv[1:]``)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def open_db(folder):
    return sqlite3.connect(os.path.join(folder, "embeddings.sqlite"))


# -- the store ------------------------------------------------------------------


def test_get_put_round_trip(cache):
    got, missing = cache.get("fp", ["a", "b"])
    assert got is None
    np.testing.assert_array_equal(missing, [0, 1])
    vectors = fake_vectors(["a", "b"])
    cache.put("fp", ["a", "b"], vectors)
    got, missing = cache.get("fp", ["b", "c", "a"])
    np.testing.assert_array_equal(got[[0, 2]], vectors[[1, 0]])
    np.testing.assert_array_equal(got[1], 0)
    np.testing.assert_array_equal(missing, [1])
    assert got.dtype == np.float32
    assert len(cache) == 2


def test_encode_with_cache_matches_encoding_in_input_order(cache):
    docs = corpus(50)
    encoder = CountingEncoder()
    first = encode_with_cache(cache, "fp", docs, encoder)
    np.testing.assert_array_equal(first, fake_vectors(docs))
    assert encoder.n_docs == 50

    shuffled = [docs[i] for i in np.random.default_rng(0).permutation(50)] + ["new"]
    again = encode_with_cache(cache, "fp", shuffled, encoder)
    np.testing.assert_array_equal(again, fake_vectors(shuffled))
    assert encoder.calls[-1] == ["new"]
    assert encoder.n_docs == 51
    assert cache.stats()["hits"] == 50 and cache.stats()["misses"] == 51


def test_duplicates_are_encoded_once(cache):
    docs = ["x", "y", "x", "", "y", "x", ""]
    encoder = CountingEncoder()
    out = encode_with_cache(cache, "fp", docs, encoder)
    np.testing.assert_array_equal(out, fake_vectors(docs))
    assert encoder.calls == [["x", "y", ""]]
    assert len(cache) == 3


def test_fingerprints_never_share_vectors(cache):
    docs = corpus(10)
    encode_with_cache(cache, "model-a", docs, fake_vectors)
    other = CountingEncoder()
    out = encode_with_cache(cache, "model-b", docs, lambda t: other(t) + 1)
    np.testing.assert_array_equal(out, fake_vectors(docs) + 1)
    assert other.n_docs == 10
    assert {item["fingerprint"]: item["entries"] for item in cache.info()} == {
        "model-a": 10,
        "model-b": 10,
    }
    cache.clear("model-a")
    assert [item["fingerprint"] for item in cache.info()] == ["model-b"]
    assert cache.get("model-a", docs)[0] is None


def test_stats_clear_and_reset(cache):
    encode_with_cache(cache, "fp", corpus(20), fake_vectors)
    encode_with_cache(cache, "fp", corpus(30), fake_vectors)
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["entries"]) == (20, 30, 30)
    assert stats["nbytes"] == 30 * N_FEATURES * 4
    info = cache.info()
    assert info == [
        {
            "fingerprint": "fp",
            "entries": 30,
            "n_features": N_FEATURES,
            "dtype": "float32",
            "nbytes": 30 * N_FEATURES * 4,
        }
    ]
    cache.reset_stats()
    assert (cache.hits, cache.misses) == (0, 0)
    cache.clear()
    assert len(cache) == 0 and cache.info() == []
    encoder = CountingEncoder()
    encode_with_cache(cache, "fp", corpus(5), encoder)
    assert encoder.n_docs == 5


def test_chunks_are_stored_as_they_finish(cache):
    encoder = CountingEncoder()

    def fails_on_third_chunk(texts):
        if len(encoder.calls) == 2:
            raise KeyboardInterrupt
        return encoder(texts)

    docs = corpus(10)
    with pytest.raises(KeyboardInterrupt):
        encode_with_cache(cache, "fp", docs, fails_on_third_chunk, chunk_size=3)
    assert len(cache) == 6
    rerun = CountingEncoder()
    out = encode_with_cache(cache, "fp", docs, rerun, chunk_size=3)
    np.testing.assert_array_equal(out, fake_vectors(docs))
    assert rerun.calls == [docs[6:9], docs[9:]]


def test_other_dtypes_and_widths_round_trip(cache):
    docs = corpus(4)
    wide = np.arange(4 * 3, dtype=np.float64).reshape(4, 3)
    out = encode_with_cache(cache, "f64", docs, lambda t: wide[: len(t)])
    again = encode_with_cache(cache, "f64", docs, None)
    assert again.dtype == np.float64
    np.testing.assert_array_equal(out, again)


def test_no_cache_calls_encode_directly():
    encoder = CountingEncoder()
    out = encode_with_cache(None, lambda: pytest.fail("fingerprint computed"), ["a"], encoder)
    np.testing.assert_array_equal(out, fake_vectors(["a"]))
    assert encoder.calls == [["a"]]


def test_errors_name_the_problem(cache, tmp_path):
    with pytest.raises(ValueError, match=r"one row per document \(2\).*\(1, 8\)"):
        encode_with_cache(cache, "fp", ["a", "b"], lambda t: fake_vectors(t)[:1])
    assert len(cache) == 0
    with pytest.raises(TypeError, match="fingerprint must be a non-empty str"):
        encode_with_cache(cache, 3, ["a"], fake_vectors)
    encode_with_cache(cache, "fp", ["a"], fake_vectors)
    with pytest.raises(ValueError, match="fingerprint 'fp' already holds"):
        cache.put("fp", ["b"], np.zeros((1, 3), np.float32))
    with pytest.raises(TypeError, match="got int"):
        hash_texts(["a", 5])
    with pytest.raises(ValueError, match="chunk_size"):
        encode_with_cache(cache, "fp", ["a"], fake_vectors, chunk_size=0)
    with pytest.raises(ValueError, match="max_memory_mb must be a positive, finite number"):
        EmbeddingCache(max_memory_mb=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        EmbeddingCache(tmp_path / "file")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "embeddings.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError, match="not a readable embedding cache"):
        EmbeddingCache(tmp_path / "junk")


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda c: c.get("fp", "ab"), TypeError, r"get\(\) takes a list .* single str"),
        (
            lambda c: c.put("fp", "ab", np.ones((2, 3), np.float32)),
            TypeError,
            r"put\(\) takes a list .* single str",
        ),
        (lambda c: c.get("fp", b"ab"), TypeError, "single bytes"),
        (lambda c: c.get("fp", None), TypeError, r"get\(\) takes a list .* NoneType"),
        (lambda c: EmbeddingCache(max_memory_mb=float("inf")), ValueError, "finite"),
        (lambda c: EmbeddingCache(5), TypeError, "path must be a folder"),
    ],
)
def test_a_bare_string_or_a_bad_argument_is_refused(call, error, match):
    with pytest.raises(error, match=match):
        call(EmbeddingCache())


def test_memory_bound_evicts_least_recently_used():
    # 1024-row blocks of 256 float32 features: about 1 MiB each.
    cache = EmbeddingCache(max_memory_mb=2.5)
    blocks = [corpus(1024, prefix=f"block{b}") for b in range(3)]
    big = {b: np.full((1024, 256), b, np.float32) for b in range(4)}
    encode_with_cache(cache, "fp", blocks[0], lambda t: big[0][: len(t)])
    encode_with_cache(cache, "fp", blocks[1], lambda t: big[1][: len(t)])
    encode_with_cache(cache, "fp", blocks[0], None)  # block 0 is now the most recent
    encode_with_cache(cache, "fp", blocks[2], lambda t: big[2][: len(t)])
    stats = cache.stats()
    assert stats["memory_bytes"] <= stats["max_bytes"]
    assert stats["evictions"] == 1024 and len(cache) == 2048
    assert cache.get("fp", blocks[1])[0] is None
    np.testing.assert_array_equal(cache.get("fp", blocks[0])[0], big[0])
    # An evicted document is simply encoded again.
    out = encode_with_cache(cache, "fp", blocks[1][:5], lambda t: big[3][: len(t)])
    np.testing.assert_array_equal(out, big[3][:5])


def test_hashing_and_lookup_of_100k_documents(tmp_path):
    docs = corpus(100_000)
    vectors = np.random.default_rng(0).standard_normal((100_000, 64)).astype(np.float32)
    row = {doc: i for i, doc in enumerate(docs)}
    for cache in (EmbeddingCache(max_memory_mb=None), EmbeddingCache(tmp_path)):
        encode_with_cache(
            cache, "fp", docs, lambda t: vectors[[row[d] for d in t]], chunk_size=20_000
        )
        # Every document is a hit now: no encoder is needed (benchmarks/cache_lookup.py
        # times this lookup).
        out = encode_with_cache(cache, "fp", docs, None)
        np.testing.assert_array_equal(out, vectors)


# -- a handle, not a container ------------------------------------------------------


def test_deepcopy_and_clone_return_the_same_store(cache):
    from sklearn.preprocessing import FunctionTransformer

    assert copy.deepcopy(cache) is cache
    assert copy.copy(cache) is cache
    est = FunctionTransformer(kw_args={"cache": cache})
    assert clone(est).kw_args["cache"] is cache


def test_pickles_as_a_handle(tmp_path):
    memory = EmbeddingCache(max_memory_mb=64)
    encode_with_cache(memory, "fp", corpus(5000), lambda t: np.ones((len(t), 256), np.float32))
    blob = pickle.dumps(memory)
    assert len(blob) < 500  # no vectors dragged along (they are 5 MB)
    assert pickle.loads(blob) is memory

    disk = EmbeddingCache(tmp_path / "c")
    blob = pickle.dumps(disk)
    assert str(tmp_path / "c").encode() in blob and len(blob) < 500
    restored = pickle.loads(blob)
    assert restored.path == disk.path


def test_skops_and_joblib_store_a_handle_by_its_settings(tmp_path):
    import joblib
    import skops.io as sio

    memory = EmbeddingCache(max_memory_mb=64)
    disk = EmbeddingCache(tmp_path / "c", timeout=5.0)
    docs = corpus(2000)
    for cache in (memory, disk):
        encode_with_cache(cache, "fp", docs, lambda t: np.ones((len(t), 128), np.float32))
    blob = sio.dumps({"memory": memory, "disk": disk})
    assert len(blob) < 5000  # settings, not the 1 MB of vectors
    assert sio.get_untrusted_types(data=blob) == ["embedxfer.EmbeddingCache"]
    loaded = sio.loads(blob, trusted=["embedxfer.EmbeddingCache"])
    joblib.dump(disk, tmp_path / "disk.joblib")
    for restored, original in [
        (loaded["memory"], memory),
        (loaded["disk"], disk),
        (joblib.load(tmp_path / "disk.joblib"), disk),
    ]:
        assert (restored.path, restored.max_memory_mb) == (original.path, original.max_memory_mb)
        assert restored.timeout == original.timeout
        # The same store in this process: everything is found, nothing encoded.
        assert len(restored) == len(docs)
        vectors, missing = restored.get("fp", docs[:10])
        assert missing.size == 0 and restored.hits == 10
        np.testing.assert_array_equal(vectors, np.ones((10, 128), np.float32))


def test_skops_state_is_checked_before_use():
    import skops.io as sio

    blob = sio.dumps(EmbeddingCache())
    forged = EmbeddingCache.__new__(EmbeddingCache)
    with pytest.raises(ValueError, match="invalid token"):
        forged.__setstate__({"token": "../../etc", "max_memory_mb": 1})
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        forged.__setstate__({"path": "somewhere", "timeout": -1})
    assert sio.loads(blob, trusted=["embedxfer.EmbeddingCache"]).path is None


def test_resolve_cache(tmp_path):
    assert resolve_cache(None) is None and resolve_cache(False) is None
    shared = resolve_cache(True)
    assert resolve_cache("memory") is shared and shared.path is None
    folder = resolve_cache(str(tmp_path / "c"))
    assert resolve_cache(tmp_path / "c") is folder and folder.path == str(tmp_path / "c")
    mine = EmbeddingCache()
    assert resolve_cache(mine) is mine
    with pytest.raises(TypeError, match="cache must be None, True, 'memory', a folder"):
        resolve_cache(3)
    with pytest.raises(ValueError, match="names no folder"):
        resolve_cache("")


# -- several processes, and a process killed half way ---------------------------------

_WRITER = """
    import hashlib, os, sys, time
    import numpy as np
    from embedxfer._cache import EmbeddingCache, encode_with_cache

    folder, start, stop, chunk, pause, reps, go = sys.argv[1:8]
    if go != "-":  # start together with the other writers
        print("ready", flush=True)
        while not os.path.exists(go):
            time.sleep(0.005)
    docs = [f"doc {i} " + "word " * (i % 7) for i in range(int(start), int(stop))]

    def encode(texts):
        time.sleep(float(pause))
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[:8], np.uint8) for t in texts]
        out = (np.asarray(rows, dtype=np.float32) / 255).reshape(len(texts), 8)
        out = np.tile(out, (1, int(reps)))
        print("chunk", len(texts), flush=True)
        return out

    encode_with_cache(EmbeddingCache(folder), "fp", docs, encode, chunk_size=int(chunk))
    print("done", flush=True)
"""


def check_store(folder, docs, reps=1):
    """The store is intact and every entry it returns is the right vector."""
    with open_db(folder) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    got, missing = EmbeddingCache(folder).get("fp", docs)
    found = np.setdiff1d(np.arange(len(docs)), missing)
    if found.size:
        expected = np.tile(fake_vectors([docs[i] for i in found]), (1, reps))
        np.testing.assert_array_equal(got[found], expected)
    return found.size


def test_two_processes_writing_at_once(tmp_path):
    folder, go = tmp_path / "shared", tmp_path / "go"
    # Overlapping ranges, small chunks: many interleaved write transactions.
    procs = [run_python(_WRITER, folder, a, b, 25, 0.005, 1, go) for a, b in [(0, 600), (300, 900)]]
    for proc in procs:
        assert proc.stdout.readline() == "ready\n", proc.stderr.read()
    go.touch()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    docs = corpus(900)
    assert check_store(folder, docs) == 900
    assert len(EmbeddingCache(folder)) == 900


def test_joblib_workers_share_a_disk_cache(tmp_path):
    from joblib import Parallel, delayed

    cache = EmbeddingCache(tmp_path / "c")
    docs = corpus(400)
    parts = [docs[:250], docs[150:]]
    results = Parallel(n_jobs=2, backend="loky")(
        delayed(encode_with_cache)(cache, "fp", part, fake_vectors, chunk_size=20) for part in parts
    )
    for part, result in zip(parts, results):
        np.testing.assert_array_equal(result, fake_vectors(part))
    encoder = CountingEncoder()
    encode_with_cache(cache, "fp", docs, encoder)
    assert encoder.n_docs == 0 and len(cache) == 400


def test_threads_share_a_cache(cache):
    from joblib import Parallel, delayed

    docs = corpus(2000)
    parts = [docs[i::2] + docs[:300] for i in range(4)]
    results = Parallel(n_jobs=2, backend="threading")(
        delayed(encode_with_cache)(cache, "fp", part, fake_vectors, chunk_size=50) for part in parts
    )
    for part, result in zip(parts, results):
        np.testing.assert_array_equal(result, fake_vectors(part))
    assert len(cache) == 2000


def wait_for_chunks(proc, n_chunks, timeout=60):
    deadline = time.monotonic() + timeout
    seen = 0
    while seen < n_chunks:
        line = proc.stdout.readline()
        assert line and time.monotonic() < deadline, proc.stderr.read()
        seen += line.startswith("chunk")


def test_killed_writer_leaves_whole_chunks_and_rerun_finishes(tmp_path):
    folder = tmp_path / "c"
    proc = run_python(_WRITER, folder, 0, 100, 10, 0.3, 1, "-")
    wait_for_chunks(proc, 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    docs = corpus(100)
    n_stored = check_store(folder, docs)
    assert 20 <= n_stored < 100 and n_stored % 10 == 0
    encoder = CountingEncoder()
    out = encode_with_cache(EmbeddingCache(folder), "fp", docs, encoder)
    np.testing.assert_array_equal(out, fake_vectors(docs))
    assert encoder.n_docs == 100 - n_stored


def test_killed_during_writes_never_leaves_a_partial_entry(tmp_path):
    docs = corpus(20_000)
    rng = np.random.default_rng(0)
    for attempt in range(3):
        # A new folder each time: on a fast machine a writer may finish all
        # chunks before the kill, and the next one would find nothing to write.
        folder = tmp_path / f"c{attempt}"
        # No pause and 2 MB per chunk: the process is most likely inside a
        # write when killed.
        proc = run_python(_WRITER, folder, 0, 20_000, 500, 0, 128, "-")
        wait_for_chunks(proc, 1)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        n_stored = check_store(folder, docs, reps=128)
        assert n_stored % 500 == 0 or n_stored == 20_000


# -- the embedders --------------------------------------------------------------------

WORDS = "the a cat dog sat on mat rug good bad movie film great awful plot".split()


def write_vectors(path, seed):
    rng = np.random.default_rng(seed)
    lines = [f"{w} " + " ".join(f"{v:.5f}" for v in rng.standard_normal(6)) for w in WORDS]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def word_vectors(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDXFER_HOME", str(tmp_path / "home"))
    path = tmp_path / "vectors.txt"
    write_vectors(path, seed=0)
    return path


def review_corpus(n=60, seed=0):
    rng = np.random.default_rng(seed)
    good, bad = ["good", "great"], ["bad", "awful"]
    docs, labels = [], []
    for i in range(n):
        label = i % 2
        words = list(rng.choice(WORDS[:13], size=5)) + list(rng.choice(good if label else bad, 2))
        docs.append(" ".join(words))
        labels.append(label)
    return docs, np.asarray(labels)


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_word_embedder_same_vectors_with_and_without_cache(word_vectors, tmp_path, kind):
    from embedxfer import WordVectorEmbedder

    cache = EmbeddingCache() if kind == "memory" else EmbeddingCache(tmp_path / "c")
    docs, _ = review_corpus()
    plain = WordVectorEmbedder(word_vectors, weighting="tfidf").fit(docs)
    cached = WordVectorEmbedder(word_vectors, weighting="tfidf", cache=cache).fit(docs)
    np.testing.assert_array_equal(cached.transform(docs), plain.transform(docs))
    np.testing.assert_array_equal(cached.transform(docs[::-1]), plain.transform(docs[::-1]))
    assert cache.stats()["hits"] == len(docs)


def test_word_embedder_changed_parameter_or_file_is_never_stale(word_vectors, tmp_path):
    from embedxfer import WordVectorEmbedder

    cache = EmbeddingCache(tmp_path / "c")
    docs, _ = review_corpus()
    first = WordVectorEmbedder(word_vectors, cache=cache).fit(docs).transform(docs)

    for params in ({"pooling": "max"}, {"weighting": "tfidf"}, {"normalize": True}):
        expected = WordVectorEmbedder(word_vectors, **params).fit(docs).transform(docs)
        got = WordVectorEmbedder(word_vectors, cache=cache, **params).fit(docs).transform(docs)
        np.testing.assert_array_equal(got, expected)

    # Fitted state: TF-IDF weights learned on other documents.
    other = review_corpus(seed=1)[0]
    expected = WordVectorEmbedder(word_vectors, weighting="tfidf").fit(other).transform(docs)
    got = WordVectorEmbedder(word_vectors, weighting="tfidf", cache=cache).fit(other)
    np.testing.assert_array_equal(got.transform(docs), expected)

    # The same path rewritten with other vectors.
    time.sleep(0.01)
    write_vectors(word_vectors, seed=1)
    expected = WordVectorEmbedder(word_vectors).fit(docs).transform(docs)
    got = WordVectorEmbedder(word_vectors, cache=cache).fit(docs).transform(docs)
    assert not np.allclose(expected, first)
    np.testing.assert_array_equal(got, expected)


def test_gridsearch_encodes_each_document_once(word_vectors, monkeypatch):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

    from embedxfer import WordVectorEmbedder

    encoded = []
    original = WordVectorEmbedder._encode

    def counting(self, docs):
        encoded.extend(docs)
        return original(self, docs)

    monkeypatch.setattr(WordVectorEmbedder, "_encode", counting)
    docs, y = review_corpus(80)
    embedder = WordVectorEmbedder(word_vectors, cache=EmbeddingCache())
    pipe = make_pipeline(embedder, LogisticRegression())
    search = GridSearchCV(pipe, {"logisticregression__C": [0.1, 1.0, 10.0, 100.0]}, cv=5)
    search.fit(docs, y)
    assert len(encoded) == len(set(docs))

    encoded.clear()
    pipe.set_params(wordvectorembedder__cache=None)
    uncached = GridSearchCV(pipe, {"logisticregression__C": [0.1, 1.0, 10.0, 100.0]}, cv=5)
    uncached.fit(docs, y)
    assert len(encoded) > 20 * len(docs)
    np.testing.assert_allclose(
        uncached.cv_results_["mean_test_score"], search.cv_results_["mean_test_score"]
    )


def test_gridsearch_with_two_workers_and_a_disk_cache(word_vectors, tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline

    from embedxfer import WordVectorEmbedder

    cache = EmbeddingCache(tmp_path / "c")
    docs, y = review_corpus(80)
    pipe = make_pipeline(WordVectorEmbedder(word_vectors, cache=cache), LogisticRegression())
    grid = {"logisticregression__C": [0.1, 1.0, 10.0, 100.0]}
    search = GridSearchCV(pipe, grid, cv=5, n_jobs=2).fit(docs, y)
    plain = make_pipeline(WordVectorEmbedder(word_vectors), LogisticRegression())
    expected = GridSearchCV(plain, grid, cv=5).fit(docs, y)
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], expected.cv_results_["mean_test_score"]
    )
    # Mean pooling learns nothing from the fold's documents: one fingerprint.
    assert len(cache) == len(set(docs))
    with open_db(tmp_path / "c") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.fixture(scope="module")
def sentences():
    return [
        "A quiet film about grief.",
        "The plot never holds together.",
        "An astonishing, funny and tender debut.",
        "Two hours I will not get back.",
        "A quiet film about grief.",
    ]


@pytest.mark.slow
def test_sentence_embedder_with_cache(sentences, tmp_path):
    pytest.importorskip("sentence_transformers")
    from embedxfer.text._encoder_loading import packaged_minilm_path
    from embedxfer.text._sentence import SentenceEmbedder

    if packaged_minilm_path() is None:
        pytest.skip("the packaged all-MiniLM-L6-v2 is not installed")
    cache = EmbeddingCache(tmp_path / "c")
    plain = SentenceEmbedder().fit()
    cached = SentenceEmbedder(cache=cache).fit()
    expected = plain.transform(sentences)
    first = cached.transform(sentences)
    np.testing.assert_allclose(first, expected, atol=1e-5)
    assert len(cache) == 4  # one duplicate
    np.testing.assert_array_equal(cached.transform(sentences[::-1]), first[::-1])
    assert cache.stats()["hits"] == 1 + 5

    changed = SentenceEmbedder(pooling="max", cache=cache).fit()
    np.testing.assert_allclose(
        changed.transform(sentences),
        SentenceEmbedder(pooling="max").fit().transform(sentences),
        atol=1e-5,
    )
    assert len(cache.info()) == 2


# -- what is read back is checked before it is trusted ---------------------------------


@pytest.mark.parametrize(
    "column, value, match",
    [
        ("n_features", 10**11, "n_features 100000000000"),
        ("n_features", 0, "n_features 0"),
        ("dtype", "|O", "not a numeric dtype"),
        ("dtype", "<U999999999", "not a numeric dtype"),
    ],
)
def test_tampered_layout_is_refused_before_allocating(tmp_path, column, value, match):
    cache = EmbeddingCache(tmp_path)
    cache.put("fp", ["a", "b"], np.ones((2, 4), np.float32))
    cache.close()
    with open_db(tmp_path) as db:
        db.execute(f"UPDATE fingerprints SET {column}=?", (value,))
    cache = EmbeddingCache(tmp_path)
    with pytest.raises(sqlite3.DatabaseError, match=f"embeddings.sqlite.*{match}"):
        cache.get("fp", ["a", "b"])
    cache.close()


def _encoder(width=4):
    """A deterministic encoder: each text's vector from its own digest."""

    def encode(texts):
        return np.stack(
            [
                np.frombuffer(hashlib.sha256(t.encode()).digest(), np.uint8)[:width].astype(
                    np.float32
                )
                for t in texts
            ]
        )

    return encode


def _flip_a_byte(db):
    data = bytearray(db.execute("SELECT data FROM batches").fetchone()[0])
    data[5] ^= 0x40
    db.execute("UPDATE batches SET data=?", (bytes(data),))


def _halve_the_width_as_float64(db):
    db.execute("UPDATE fingerprints SET n_features=n_features/2, dtype='<f8'")


def _point_at_another_row(db):
    db.execute("UPDATE entries SET row=(row + 1) % 3")


def _forget_the_digest(db):
    db.execute("UPDATE batches SET digest=NULL")


def _huge_rows_as_float64(db):
    db.execute("UPDATE fingerprints SET n_features=?, dtype='<f8'", (1 << 20,))


@pytest.mark.parametrize(
    "damage",
    [
        _flip_a_byte,
        _halve_the_width_as_float64,
        _point_at_another_row,
        _forget_the_digest,
        _huge_rows_as_float64,
    ],
)
def test_damaged_vectors_are_dropped_and_encoded_again(tmp_path, damage):
    encode, docs = _encoder(), ["a", "b", "c"]
    cache = EmbeddingCache(tmp_path)
    expected = encode_with_cache(cache, "fp", docs, encode)
    cache.close()
    with open_db(tmp_path) as db:
        damage(db)
    cache = EmbeddingCache(tmp_path)
    with pytest.warns(CacheWarning, match="embeddings.sqlite.*1 stored batch.*encoded again"):
        again = encode_with_cache(cache, "fp", docs, encode)
    assert again.dtype == np.float32 and again.shape == (3, 4)
    np.testing.assert_array_equal(again, expected)
    # stored afresh: the next lookup is all hits, and quiet
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got, missing = cache.get("fp", docs)
    np.testing.assert_array_equal(got, expected)
    assert missing.size == 0
    cache.close()


def test_a_read_never_waits_on_a_writer_to_drop_damage(tmp_path):
    encode, docs = _encoder(), ["a", "b", "c"]
    cache = EmbeddingCache(tmp_path, timeout=0.5)
    cache.put("fp", docs[:2], encode(docs[:2]))
    cache.put("fp", docs[2:], encode(docs[2:]))
    with open_db(tmp_path) as db:
        db.execute("UPDATE batches SET digest=NULL WHERE id=(SELECT min(id) FROM batches)")
    writer = open_db(tmp_path)
    writer.isolation_level = None
    writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.warns(CacheWarning, match="left for a later read to drop"):
            got, missing = cache.get("fp", docs)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert list(missing) == [0, 1]
    np.testing.assert_array_equal(got[2], encode(docs[2:])[0])
    with pytest.warns(CacheWarning, match="were dropped"):
        cache.get("fp", docs)
    cache.close()


def test_a_version_1_cache_is_read_as_unverified_and_rebuilt(tmp_path):
    # The layout of version 1, whose batches had neither keys nor a digest.
    encode, docs = _encoder(), ["a", "b"]
    with sqlite3.connect(tmp_path / "embeddings.sqlite") as db:
        db.executescript(
            """
            CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT INTO meta VALUES ('schema_version', '1');
            CREATE TABLE fingerprints (id INTEGER PRIMARY KEY AUTOINCREMENT,
                fingerprint TEXT NOT NULL UNIQUE, n_features INTEGER NOT NULL,
                dtype TEXT NOT NULL, created REAL NOT NULL);
            CREATE TABLE batches (id INTEGER PRIMARY KEY AUTOINCREMENT, fp INTEGER NOT NULL,
                n_rows INTEGER NOT NULL, data BLOB NOT NULL);
            CREATE TABLE entries (fp INTEGER NOT NULL, key BLOB NOT NULL,
                batch INTEGER NOT NULL, row INTEGER NOT NULL, PRIMARY KEY (fp, key))
                WITHOUT ROWID;
            INSERT INTO fingerprints VALUES (1, 'fp', 4, '<f4', 0);
            """
        )
        db.execute("INSERT INTO batches VALUES (1, 1, 2, ?)", (np.zeros((2, 4), "<f4").tobytes(),))
        db.executemany("INSERT INTO entries VALUES (1, ?, 1, ?)", zip(hash_texts(docs), range(2)))
    cache = EmbeddingCache(tmp_path)
    with pytest.warns(CacheWarning):
        got = encode_with_cache(cache, "fp", docs, encode)
    np.testing.assert_array_equal(got, encode(docs))
    assert cache.get("fp", docs)[1].size == 0
    cache.close()


@pytest.mark.parametrize("path", [None, "disk"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_vectors_are_never_stored(tmp_path, path, bad):
    cache = EmbeddingCache(tmp_path if path else None)
    vectors = np.ones((3, 4), np.float32)
    vectors[1, 2] = bad
    with pytest.raises(ValueError, match="NaN or infinite values in row 1"):
        cache.put("fp", ["a", "b", "c"], vectors)
    got, missing = cache.get("fp", ["a", "b", "c"])
    assert got is None and list(missing) == [0, 1, 2]
    cache.close()


# A memory cache pickled (protocol 4) by embedxfer 0.1.0 before the cache module
# became a package: pickles name the function that rebuilds the cache by module.
_CACHE_PICKLED_BEFORE_THE_SPLIT = (
    b"\x80\x04\x95W\x00\x00\x00\x00\x00\x00\x00\x8c\x10embedxfer._cache\x94\x8c\x15"
    b"_rebuild_memory_cache\x94\x93\x94\x8c 3973256d3d8148ee9f1dbdd0fd4201da\x94K@\x86\x94R\x94."
)


def test_a_cache_pickled_before_the_module_split_loads(tmp_path):
    cache = pickle.loads(_CACHE_PICKLED_BEFORE_THE_SPLIT)
    assert isinstance(cache, EmbeddingCache) and cache.max_memory_mb == 64
    cache.put("fp", ["a"], np.ones((1, 2), dtype=np.float32))
    assert len(cache) == 1
    # New pickles name the same module, for both kinds of cache.
    for new in (EmbeddingCache(max_memory_mb=8), EmbeddingCache(tmp_path)):
        data = pickle.dumps(new)
        assert b"embedxfer._cache\x94" in data and b"_embedding_cache" not in data
        loaded = pickle.loads(data)
        assert repr(loaded) == repr(new) and (new.path is not None or loaded is new)


def test_both_stores_implement_the_store_interface(tmp_path):
    from embedxfer._cache import CacheStore

    for cache in (EmbeddingCache(max_memory_mb=8), EmbeddingCache(tmp_path)):
        store = cache._store
        assert isinstance(store, CacheStore)
        store.put("fp", hash_texts(["x", "y"]), np.eye(2, dtype=np.float32))
        vectors, found = store.fetch("fp", hash_texts(["y", "z"]))
        assert found.tolist() == [True, False] and vectors[0].tolist() == [0.0, 1.0]
        assert store.count() == 2 and store.info()[0]["entries"] == 2
