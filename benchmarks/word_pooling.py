"""Documents per second for word-vector pooling: embedxfer against its peers.

Synthetic but realistic input: documents of Zipf-distributed words (about 40
tokens each, about 5% of them out of the vocabulary) and random float32
vectors for every vocabulary word, written once in word2vec binary format and
loaded through ``embedxfer.load_vectors`` (so the conversion cache is used).
Every method starts from the raw strings; all run in one process, alternating
round by round, and the medians are compared, so load from other processes
hits them alike.

    python benchmarks/word_pooling.py                       # 100k docs, 400k x 300
    python benchmarks/word_pooling.py --docs 20000 --rounds 3
    python benchmarks/word_pooling.py --docs 500 --vocab 2000 --dim 16 --rounds 1

Peers: embetter 0.7.0 ``GensimEncoder`` (``pip install embetter==0.7.0 skops
diskcache model2vec``; its ``[gensim]`` extra pins scipy < 1.13, so leave it
out), zeugma's ``EmbeddingTransformer`` (``pip install --no-deps zeugma``;
its package imports TensorFlow, so only its embeddings module is loaded),
fse (``pip install fse``; 1.0.0 does not build against numpy 2), a plain
per-document loop and scikit-learn's ``CountVectorizer`` followed by a
sparse product. Peers that are not installed, or do not import, are reported
and skipped. Ratios to the naive loop are paired: the median (and range) of
the ratios of the rounds, each round running every method once in rotating
order; the load average is printed before and after the rounds.

embedxfer tokenises and pools with its compiled kernels where the package
was built with them (a C compiler at install); without them it runs numpy
code, and pools with torch's ``embedding_bag`` when torch is already
imported. So the mean is timed three ways: "embedxfer mean" as installed,
"embedxfer mean (numpy code)" with the kernels turned off and scipy's
product, and "embedxfer mean (numpy code, torch imported)". The "float16
table" rows pool the same documents from the table rounded to float16
(``precision="float16"``); the agreement table gives their largest difference
and least cosine to float32's vectors, the memory table their peak.

Every row is also given as a multiple of the floor of mean pooling: the time
to read the vector rows pooling touches, each batch's distinct rows once from
memory and the repeats (frequent words) from cache, at read rates measured
here with BLAS over the table and over a cache-sized block. The simpler
floor (every touched byte at the sequential rate) is printed beside it; with
Zipf-distributed words most repeats come from cache, so it is not a bound.
"""

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# The most frequent tokens of English news text (GloVe's top ranks), so that
# punctuation and clitics are tokenised as in real text. Each is a single
# token for every tokenizer compared here except gensim's, which drops
# punctuation.
TOP_TOKENS = (
    "the , . of to and in a \" 's for - that on is was said with he as it by at ( ) from "
    "his an be has are have but were not this who they had i which will their : or its one "
    "after new been also we would two more ' first about up when year there all out she "
    "other people n't her percent than over into last some government time you years if no "
    "world can three do ; president only state million could us most against so them what "
    "him united during before may since many while where states because now city made like "
    "between did just national day country under such second then company group any "
    "through china four being down war back off south american minister police well "
    "including team international week officials still both even high part told those end "
    "former these make billion work our home school party house old later get another ? "
    "should take very my north security season york how public early"
).split()


# ----------------------------------------------------------------- data
class Data:
    """Documents, the vector file and what the methods share."""

    def __init__(self, docs, words, vectors_path, n_tokens, n_oov, what=None):
        self.docs = docs
        self.words = words
        self.vectors_path = vectors_path
        self.n_tokens = n_tokens
        self.n_oov = n_oov
        self.what = what or "Zipf-distributed words"


def prepare_texts(path, vectors, n_docs):
    """Real documents: the ``text`` column of a CSV file, repeated in order up to ``n_docs``."""
    import csv

    from embedxfer import load_vectors
    from embedxfer.text._tokenize import VocabularyIndex, compile_tokenizer, documents_to_ids

    with open(path, encoding="utf-8", newline="") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    docs = (texts * (n_docs // max(len(texts), 1) + 1))[:n_docs]
    kv = load_vectors(vectors)
    index = VocabularyIndex(kv.key_to_index)
    ids, _, _ = documents_to_ids(docs, index, compile_tokenizer(), index.is_lowercase)
    what = f"{len(texts):,} real texts from {Path(path).name}, repeated in order"
    return Data(docs, kv.index_to_key, vectors, len(ids), int((ids < 0).sum()), what)


def load_data(args, results):
    if args.texts:
        return prepare_texts(args.texts, args.vectors, args.docs)
    return prepare(args.docs, args.vocab, args.dim, args.seed, results)


def random_words(rng, n, exclude=()):
    """``n`` distinct lowercase alphabetic words of 2 to 12 letters."""
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    # English letter frequencies, so that words look like words to the regex.
    freq = np.array(
        [
            8.2,
            1.5,
            2.8,
            4.3,
            12.7,
            2.2,
            2.0,
            6.1,
            7.0,
            0.2,
            0.8,
            4.0,
            2.4,
            6.7,
            7.5,
            1.9,
            0.1,
            6.0,
            6.3,
            9.1,
            2.8,
            1.0,
            2.4,
            0.2,
            2.0,
            0.1,
        ]
    )
    seen = set(exclude)
    out = []
    while len(out) < n:
        m = int((n - len(out)) * 1.2) + 16
        lengths = np.clip(rng.poisson(6.5, m), 2, 12)
        chars = letters[rng.choice(26, size=(m, 12), p=freq / freq.sum())]
        raw = chars.tobytes()
        for i, length in enumerate(lengths.tolist()):
            word = raw[i * 12 : i * 12 + length].decode("ascii")
            if word not in seen:
                seen.add(word)
                out.append(word)
                if len(out) == n:
                    break
    return out


def make_vocabulary(vocab_size, rng):
    top = list(dict.fromkeys(TOP_TOKENS))[: max(vocab_size // 4, 1)]
    return top + random_words(rng, vocab_size - len(top), exclude=top)


def make_documents(words, n_docs, rng, mean_length=40, oov_rate=0.05):
    """Zipf (Zipf-Mandelbrot, s=1) word ranks; a share of out-of-vocabulary words."""
    ranks = np.arange(1, len(words) + 1, dtype=np.float64)
    cdf = np.cumsum(1.0 / (ranks + 2.7))
    cdf /= cdf[-1]
    lengths = np.maximum(rng.poisson(mean_length, n_docs), 1)
    n_tokens = int(lengths.sum())
    picks = np.minimum(np.searchsorted(cdf, rng.random(n_tokens)), len(words) - 1)
    oov_words = random_words(rng, max(len(words) // 20, 50), exclude=words)
    is_oov = rng.random(n_tokens) < oov_rate
    table = np.asarray(words + oov_words, dtype=object)
    picks[is_oov] = len(words) + rng.integers(0, len(oov_words), int(is_oov.sum()))
    tokens = table[picks].tolist()
    ends = np.cumsum(lengths).tolist()
    docs, start = [], 0
    for end in ends:
        docs.append(" ".join(tokens[start:end]))
        start = end
    # Some capitals, as in real text (every method lowercases).
    for i in range(0, n_docs, 3):
        docs[i] = docs[i][:1].upper() + docs[i][1:]
    return docs, n_tokens, int(is_oov.sum())


def write_word2vec_binary(path, words, vectors):
    tmp = path.with_suffix(".part")
    with open(tmp, "wb") as fh:
        fh.write(f"{len(words)} {vectors.shape[1]}\n".encode())
        for word, row in zip(words, vectors):
            fh.write(word.encode("utf-8") + b" " + row.tobytes() + b"\n")
    os.replace(tmp, path)


def write_word2vec_text(path, words, vectors):
    tmp = path.with_suffix(".part")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(f"{len(words)} {vectors.shape[1]}\n")
        for start in range(0, len(words), 10000):
            block = vectors[start : start + 10000]
            lines = [
                w + " " + " ".join(f"{x:.6g}" for x in row)
                for w, row in zip(words[start : start + 10000], block.tolist())
            ]
            fh.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def random_vectors(n, dim, seed):
    rng = np.random.default_rng(seed + 1)
    return rng.standard_normal((n, dim), dtype=np.float32) * np.float32(0.4)


def prepare(docs, vocab, dim, seed=0, results=RESULTS):
    """Make (or reuse) the documents and the word2vec binary file."""
    results.mkdir(parents=True, exist_ok=True)
    tag = f"v{vocab}-d{dim}-s{seed}"
    vectors_path = results / f"synthetic-{tag}.bin"
    docs_path = results / f"docs-{tag}-n{docs}.json"
    rng = np.random.default_rng(seed)
    words = make_vocabulary(vocab, rng)
    if not vectors_path.exists():
        write_word2vec_binary(vectors_path, words, random_vectors(vocab, dim, seed))
    if docs_path.exists():
        stored = json.loads(docs_path.read_text(encoding="utf-8"))
        return Data(stored["docs"], words, vectors_path, stored["n_tokens"], stored["n_oov"])
    texts, n_tokens, n_oov = make_documents(words, docs, np.random.default_rng(seed + 2))
    tmp = docs_path.with_suffix(".part")
    tmp.write_text(json.dumps({"docs": texts, "n_tokens": n_tokens, "n_oov": n_oov}))
    os.replace(tmp, docs_path)
    return Data(texts, words, vectors_path, n_tokens, n_oov)


# -------------------------------------------------------------- methods
def naive_loop(kv, agg):
    """The loop a user writes first: split, look each word up, ``np.mean``."""
    key_to_index, vectors, dim = kv.key_to_index, kv.vectors, kv.vector_size
    reduce = np.mean if agg == "mean" else np.max

    def transform(docs):
        out = np.zeros((len(docs), dim), dtype=np.float32)
        for i, doc in enumerate(docs):
            ids = [key_to_index[w] for w in doc.lower().split() if w in key_to_index]
            if ids:
                out[i] = reduce(vectors[ids], axis=0)
        return out

    return transform


def sklearn_count_product(kv, docs):
    """``CountVectorizer(vocabulary=...)`` counts, rows scaled to sum 1, times the vectors."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.preprocessing import normalize

    vectorizer = CountVectorizer(
        vocabulary=kv.key_to_index, tokenizer=str.split, token_pattern=None, dtype=np.float32
    ).fit(docs[:10])
    vectors = kv.vectors

    def transform(batch):
        counts = normalize(vectorizer.transform(batch), norm="l1")
        return np.asarray(counts @ vectors, dtype=np.float32)

    return transform


class _Kernels:
    """The pooling path of one row: ``"installed"``, ``"numpy"`` or ``"numpy+torch"``."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        from embedxfer.text import _native, _pooling

        self.saved = _native.ENABLED, _pooling._TORCH_KERNELS
        _native.ENABLED = self.path == "installed"
        _pooling._TORCH_KERNELS = self.path != "numpy"

    def __exit__(self, *exc):
        from embedxfer.text import _native, _pooling

        _native.ENABLED, _pooling._TORCH_KERNELS = self.saved


def embedxfer_method(path, docs, kernels="installed", **params):
    """WordVectorEmbedder's transform on one pooling path (see ``_Kernels``)."""
    from embedxfer import WordVectorEmbedder

    if kernels == "numpy+torch":
        import torch  # noqa: F401  (imported before timing, as in a process that uses it)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty documents are counted, not a problem here
        embedder = WordVectorEmbedder(str(path), **params).fit(docs)

    def transform(batch):
        with _Kernels(kernels), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return embedder.transform(batch)

    return transform


def embetter_method(kv):
    from embetter.text import GensimEncoder

    encoder = GensimEncoder(kv, agg="mean", lowercase=True).fit(["x"])
    return encoder.transform


def zeugma_method(kv):
    import importlib.util
    import types

    spec = importlib.util.find_spec("zeugma")
    if spec is None:
        raise ImportError("zeugma is not installed (pip install --no-deps zeugma)")
    if "zeugma" not in sys.modules:
        # zeugma/__init__.py imports its Keras transformers (TensorFlow); the
        # embedding transformer itself needs only gensim, so load it alone.
        package = types.ModuleType("zeugma")
        package.__path__ = [str(Path(spec.origin).parent)]
        sys.modules["zeugma"] = package
    from zeugma.embeddings import EmbeddingTransformer

    return EmbeddingTransformer(kv, aggregation="average").transform


def fse_method(kv):
    from fse import Average, IndexedList

    model = Average(kv)

    def transform(docs):
        sentences = IndexedList([doc.lower().split() for doc in docs])
        model.train(sentences)
        return np.asarray(model.sv.vectors[: len(docs)], dtype=np.float32)

    return transform


# name, what it computes (for comparisons), factory(data, kv) -> transform
METHODS = [
    ("embedxfer mean", "mean", lambda d, kv: embedxfer_method(d.vectors_path, d.docs)),
    (
        "embedxfer mean (numpy code)",
        "mean",
        lambda d, kv: embedxfer_method(d.vectors_path, d.docs, kernels="numpy"),
    ),
    (
        "embedxfer mean (numpy code, torch imported)",
        "mean",
        lambda d, kv: embedxfer_method(d.vectors_path, d.docs, kernels="numpy+torch"),
    ),
    (
        "embedxfer mean (float16 table)",
        "mean",
        lambda d, kv: embedxfer_method(d.vectors_path, d.docs, precision="float16"),
    ),
    (
        "embedxfer tfidf",
        "tfidf",
        lambda d, kv: embedxfer_method(d.vectors_path, d.docs, weighting="tfidf"),
    ),
    (
        "embedxfer sif",
        "sif",
        lambda d, kv: embedxfer_method(d.vectors_path, d.docs, weighting="sif"),
    ),
    (
        "embedxfer max",
        "max",
        lambda d, kv: embedxfer_method(d.vectors_path, d.docs, pooling="max"),
    ),
    (
        "embedxfer max (float16 table)",
        "max",
        lambda d, kv: embedxfer_method(d.vectors_path, d.docs, pooling="max", precision="float16"),
    ),
    ("naive loop mean", "mean", lambda d, kv: naive_loop(kv, "mean")),
    ("naive loop max", "max", lambda d, kv: naive_loop(kv, "max")),
    ("sklearn CountVectorizer + product", "mean", lambda d, kv: sklearn_count_product(kv, d.docs)),
    ("embetter 0.7.0 GensimEncoder", "mean*", lambda d, kv: embetter_method(kv)),
    ("zeugma EmbeddingTransformer", "mean*", lambda d, kv: zeugma_method(kv)),
    ("fse Average", "mean*", lambda d, kv: fse_method(kv)),
]
# Not comparable value for value: embetter tokenises with gensim (drops
# punctuation), zeugma does not lowercase, fse keeps its own vocabulary order.


def build_methods(data, kv, names=None):
    built, skipped = {}, {}
    for name, kind, factory in METHODS:
        if names and name not in names:
            continue
        try:
            built[name] = (kind, factory(data, kv))
        except Exception as err:
            skipped[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
    return built, skipped


def _load_average():
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def paired(times, reference, name):
    """``reference``'s time over ``name``'s, round by round: median and range."""
    ratios = [r / t for r, t in zip(times[reference], times[name])]
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def time_methods(methods, docs, rounds):
    """Median seconds per method; the order rotates every round."""
    names = list(methods)
    times = {name: [] for name in names}
    outputs = {}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            gc.collect()
            start = time.perf_counter()
            out = methods[name][1](docs)
            times[name].append(time.perf_counter() - start)
            outputs[name] = out
            print(f"  round {r + 1}: {name:36s} {times[name][-1]:8.3f} s", file=sys.stderr)
    return {name: statistics.median(t) for name, t in times.items()}, times, outputs


def agreement(outputs):
    """Largest absolute difference of each method from its reference, and the
    smallest cosine between their rows (rows of zeros left out)."""
    rows = []
    pairs = [
        ("embedxfer mean (float16 table)", "embedxfer mean"),
        ("embedxfer max (float16 table)", "embedxfer max"),
        ("embedxfer mean", "naive loop mean"),
        ("embedxfer mean (numpy code)", "naive loop mean"),
        ("embedxfer mean (numpy code, torch imported)", "naive loop mean"),
        ("sklearn CountVectorizer + product", "naive loop mean"),
        ("embedxfer max", "naive loop max"),
        ("embetter 0.7.0 GensimEncoder", "naive loop mean"),
        ("zeugma EmbeddingTransformer", "naive loop mean"),
    ]
    for a, b in pairs:
        if a in outputs and b in outputs:
            x, y = np.asarray(outputs[a], dtype=np.float64), np.asarray(outputs[b], np.float64)
            diff = float(np.nanmax(np.abs(x - y))) if x.shape == y.shape else float("nan")
            n_nan = int(np.isnan(x).any(axis=1).sum())
            rows.append((a, b, diff, _least_cosine(x, y), n_nan))
    return rows


def _least_cosine(x, y):
    if x.shape != y.shape:
        return float("nan")
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    both = (nx > 0) & (ny > 0) & np.isfinite(nx) & np.isfinite(ny)
    if not both.any():
        return float("nan")
    return float(((x[both] * y[both]).sum(axis=1) / (nx[both] * ny[both])).min())


# --------------------------------------------------------- inside embedxfer
def read_rates(vectors, threads, seconds=0.3):
    """Bytes per second the fastest reader here (BLAS dot) streams, from memory and from cache.

    ``memory``: the whole table, as many threads as pooling uses; ``cache``:
    one block of 8 MB (in the last-level cache, past a core's L2) read again
    and again. Best of a few tries: the machine is shared.
    """
    from concurrent.futures import ThreadPoolExecutor

    flat = np.asarray(vectors).reshape(-1)
    chunk = 1 << 22

    def read(lo, hi):
        for i in range(lo, hi, chunk):
            part = flat[i : min(i + chunk, hi)]
            np.dot(part, part)

    def rate(lo, hi, repeat):
        bounds = np.linspace(lo, hi, threads + 1).astype(np.int64)
        best = 0.0
        for _ in range(3):
            start = time.perf_counter()
            with ThreadPoolExecutor(threads) as pool:
                for _ in range(repeat):
                    list(pool.map(read, bounds[:-1], bounds[1:]))
            best = max(best, (hi - lo) * 4 * repeat / (time.perf_counter() - start))
        return best

    read(0, len(flat))  # the pages of a memory-mapped table are mapped once
    block = min(len(flat), (8 << 20) // 4)
    return {"memory": rate(0, len(flat), 1), "cache": rate(0, block, 40)}


def embedxfer_split(data, kv, rounds):
    """Tokenisation + id mapping vs pooling, with the embedder's own kernels, and the floor.

    The floor of pooling is the time to read the vector rows it touches:
    each batch's distinct rows once from memory, and the repeats (frequent
    words) at the rate the cache gives; both rates measured here with BLAS.
    """
    from embedxfer import WordVectorEmbedder
    from embedxfer.text import _native, _pooling
    from embedxfer.text._tokenize import VocabularyIndex, compile_tokenizer, documents_to_ids

    batch_size = WordVectorEmbedder().batch_size
    index = VocabularyIndex(kv.key_to_index)
    compiled = compile_tokenizer()
    batches = [data.docs[i : i + batch_size] for i in range(0, len(data.docs), batch_size)]
    vectors = kv.vectors
    halves = WordVectorEmbedder(data.vectors_path, precision="float16")._table(kv)

    def tokenise(kernels):
        def run():
            with _Kernels(kernels):
                return [
                    documents_to_ids(b, index, compiled, index.is_lowercase, known_only=True)[:2]
                    for b in batches
                ]

        return run

    tokenise("installed")()  # builds the hash tables once, as the first transform does
    found = tokenise("numpy")()
    n_in = sum(len(ids) for ids, _ in found)
    n_distinct = sum(len(np.unique(ids)) for ids, _ in found)

    def mean(kernels, table=vectors):
        def run():
            with _Kernels(kernels):
                for ids, doc_ptr in found:
                    out = _pooling.weighted_sum(ids, doc_ptr, table)
                    out /= np.maximum(np.diff(doc_ptr), 1).astype(np.float32)[:, None]

        return run

    def maximum(kernels):
        def run():
            with _Kernels(kernels):
                for ids, doc_ptr in found:
                    _pooling.segment_extreme(ids, doc_ptr, vectors, "max")

        return run

    steps = [
        ("tokenise", tokenise("installed")),
        ("pool mean", mean("installed")),
        ("pool max", maximum("installed")),
        ("pool mean, float16", mean("installed", halves)),
    ]
    if _native.available():
        steps += [
            ("tokenise, numpy", tokenise("numpy")),
            ("pool mean, scipy", mean("numpy")),
            ("pool max, numpy", maximum("numpy")),
        ]
    if "torch" in sys.modules:
        steps.append(("pool mean, torch", mean("numpy+torch")))
    timings = {key: [] for key, _ in steps}
    for r in range(rounds):
        for key, fn in steps[r % len(steps) :] + steps[: r % len(steps)]:
            gc.collect()
            start = time.perf_counter()
            fn()
            timings[key].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in timings.items()}
    threads = _pooling.n_threads(n_in * vectors.shape[1])
    rates = read_rates(vectors, threads)
    row_bytes = vectors.shape[1] * vectors.dtype.itemsize
    touched = n_in * row_bytes
    distinct = n_distinct * row_bytes
    floor = distinct / rates["memory"] + (touched - distinct) / rates["cache"]
    return {
        "seconds": med,
        "times": timings,
        "n_in_vocabulary_tokens": n_in,
        "n_distinct_rows": n_distinct,
        "read_bandwidth_gb_s": rates["memory"] / 1e9,
        "cache_bandwidth_gb_s": rates["cache"] / 1e9,
        "touched_gb": touched / 1e9,
        "distinct_gb": distinct / 1e9,
        "floor_read_s": floor,
        "floor_read_float16_s": floor / 2,
        "floor_sequential_s": touched / rates["memory"],
        "threads": threads,
        "compiled_kernels": _native.available(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


# ---------------------------------------------------------------- loading
LOAD_SNIPPET = """
import sys, time, json
import gensim.models  # imported before timing: the load itself is measured
from embedxfer import load_vectors
source, cache_dir, convert = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
start = time.perf_counter()
kv = load_vectors(source, cache_dir=cache_dir, convert=convert)
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "shape": [len(kv), kv.vector_size]}))
"""


LOAD_REPEATS = 3


def _samples_text(samples):
    return " ".join(f"{t:.3f}" for t in samples)


def load_times(data, kv, results, text_rows, packaged=True, repeats=LOAD_REPEATS):
    """Seconds to load each format in a fresh process (the page cache is warm).

    A second load is timed ``repeats`` times, each in a fresh process: one
    sample of it varies by a tenth of a second between runs on a shared
    machine, as much as the gap to its target. Rows are ``(label, median
    seconds, shape, every sample)``.
    """
    import shutil

    text_path = results / f"{data.vectors_path.stem}-{text_rows}.txt"
    if not text_path.exists():
        print(f"  writing {text_path.name} (once)", file=sys.stderr)
        rows = min(text_rows, len(kv))
        write_word2vec_text(text_path, kv.index_to_key[:rows], np.asarray(kv.vectors[:rows]))
    cache = Path(tempfile.mkdtemp(prefix="load-", dir=results))
    cases = [
        ("word2vec binary, parsed (no conversion)", data.vectors_path, False),
        ("word2vec binary, first load (parse + convert)", data.vectors_path, True),
        ("word2vec binary, second load (converted, mmap)", data.vectors_path, True),
        ("word2vec text, parsed (no conversion)", text_path, False),
        ("word2vec text, first load (parse + convert)", text_path, True),
        ("word2vec text, second load (converted, mmap)", text_path, True),
    ]
    if packaged:
        cases += [
            ("packaged GloVe 6B 50d, first load (convert)", "glove-6B-50d", True),
            ("packaged GloVe 6B 50d, second load (mmap)", "glove-6B-50d", True),
        ]
    rows = []
    try:
        for label, source, convert in cases:
            second = "second load" in label
            samples, shape, failure = [], None, None
            for _ in range(repeats if second else 1):
                proc = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        LOAD_SNIPPET,
                        str(source),
                        str(cache),
                        "1" if convert else "0",
                    ],
                    capture_output=True,
                    text=True,
                )
                if proc.returncode:
                    failure = proc.stderr.strip().splitlines()[-1][:100]
                    break
                out = json.loads(proc.stdout.strip().splitlines()[-1])
                samples.append(out["seconds"])
                shape = "x".join(map(str, out["shape"]))
            if failure is not None:
                rows.append((label, None, failure, []))
                continue
            seconds = statistics.median(samples)
            rows.append((label, seconds, shape, samples))
            print(f"  {label}: {_samples_text(samples)} s", file=sys.stderr)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return rows, text_path


# ----------------------------------------------------------------- memory
def _rss_kib(field):
    """``VmRSS`` / ``VmHWM`` of this process in KiB (Linux), else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    scale = 1 if platform.system() != "Darwin" else 1 / 1024  # ru_maxrss: bytes on macOS
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale)


def child_memory(args):
    """In a fresh process: peak memory of one method's transform."""
    import tracemalloc

    data = load_data(args, Path(args.results))
    from embedxfer import load_vectors

    kv = load_vectors(str(data.vectors_path))
    methods, skipped = build_methods(data, kv, [args.child_memory])
    if not methods:
        print(json.dumps({"skipped": skipped.get(args.child_memory, "unknown method")}))
        return
    transform = methods[args.child_memory][1]
    transform(data.docs[:50])  # first-call setup (hash tables, caches) is not the peak
    gc.collect()
    try:  # reset the peak RSS to the current RSS (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    before = _rss_kib("VmRSS")
    tracemalloc.start()
    transform(data.docs)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    after = _rss_kib("VmHWM")
    print(json.dumps({"traced_peak": peak, "rss_before_kb": before, "rss_peak_kb": after}))


def memory_table(args, names):
    rows = []
    for name in names:
        cmd = [
            sys.executable,
            __file__,
            "--child-memory",
            name,
            "--docs",
            str(args.docs),
            "--vocab",
            str(args.vocab),
            "--dim",
            str(args.dim),
            "--seed",
            str(args.seed),
            "--results",
            str(args.results),
        ]
        if getattr(args, "texts", None):
            cmd += ["--texts", str(args.texts), "--vectors", str(args.vectors)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode or not lines:
            rows.append((name, None, None, None))
            continue
        out = json.loads(lines[-1])
        if "skipped" in out:
            continue
        rows.append(
            (
                name,
                out["traced_peak"] / 2**20,
                out["rss_peak_kb"] / 2**10,
                (out["rss_peak_kb"] - out["rss_before_kb"]) / 2**10,
            )
        )
        print(f"  memory {name}: traced peak {out['traced_peak'] / 2**20:.0f} MiB", file=sys.stderr)
    return rows


# ------------------------------------------------------------------ report
def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt(x, digits=3):
    return (
        "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--vocab", type=int, default=400_000)
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default=str(RESULTS), help="folder for data and results")
    parser.add_argument(
        "--text-rows",
        type=int,
        default=None,
        help="rows of the word2vec text file for load times (default: all)",
    )
    parser.add_argument("--methods", default=None, help="comma-separated subset of methods")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory table")
    parser.add_argument("--no-load", action="store_true", help="skip the load-time table")
    parser.add_argument(
        "--texts",
        default=None,
        help="a CSV file with a 'text' column: real documents instead of synthetic ones "
        "(repeated in order up to --docs; no load-time table)",
    )
    parser.add_argument(
        "--vectors", default="glove-6B-50d", help="the vectors for --texts (name or path)"
    )
    parser.add_argument("--child-memory", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    results = Path(args.results)
    # Converted vector files go next to the data, not to the user's cache.
    os.environ.setdefault("EMBEDXFER_HOME", str(results / "home"))
    if args.child_memory:
        return child_memory(args)
    print(describe())

    import embedxfer
    from embedxfer import load_vectors

    start = time.perf_counter()
    data = load_data(args, results)
    print(f"data ready in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    kv = load_vectors(str(data.vectors_path))
    names = args.methods.split(",") if args.methods else None
    methods, skipped = build_methods(data, kv, names)
    n = len(data.docs)
    if args.texts:
        source = f"{len(kv):,} x {kv.vector_size} vectors {args.vectors!r}"
    else:
        source = f"{args.vocab:,} x {args.dim} float32 vectors loaded from word2vec binary"

    print("# Word-vector pooling benchmark\n")
    print(
        f"{n:,} documents ({data.n_tokens / n:.1f} tokens each, {data.n_oov / data.n_tokens:.1%} "
        f"out of vocabulary, {data.what}), {source} through load_vectors. "
        f"embedxfer {embedxfer.__version__}, "
        f"numpy {np.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"median of {args.rounds} rounds, methods alternating.\n"
    )
    print(
        "```\npython benchmarks/word_pooling.py "
        + " ".join(sys.argv[1:] if argv is None else argv)
        + "\n```\n"
    )

    load_before = _load_average()
    medians, all_times, outputs = time_methods(methods, data.docs, args.rounds)
    load_after = _load_average()
    split = embedxfer_split(data, kv, args.rounds)
    floor = split["floor_read_s"]
    naive = medians.get("naive loop mean")
    rows = []
    for name in sorted(medians, key=medians.get):
        rate = n / medians[name]
        spread = f"{min(all_times[name]):.3f}-{max(all_times[name]):.3f}"
        rows.append(
            (
                name,
                methods[name][0],
                f"{medians[name]:.3f}",
                spread,
                f"{rate:,.0f}",
                f"{medians[name] / floor:.2f}x",
                paired(all_times, "naive loop mean", name) if naive else "n/a",
            )
        )
    print("## Documents per second from raw strings\n")
    print(f"Load average {load_before:.1f} before the rounds, {load_after:.1f} after (1 min).\n")
    header = ["method", "pooling", "median s", "range s", "docs/s", "x floor", "vs naive mean"]
    print(table(header, rows))
    print(
        "\nmean*: a mean with the peer's own tokenisation (see the agreement table). x floor: "
        "the median over the floor of mean pooling (below). vs naive mean: median of the "
        "ratios of the rounds (each round runs every method once, in rotating order), and "
        "their range."
    )
    for name, why in skipped.items():
        print(f"\n- skipped {name}: {why}")
    print()
    agree = agreement(outputs)
    if agree:
        print("## Agreement with the naive loop (largest absolute difference)\n")
        print(
            table(
                ["method", "reference", "max abs diff", "least cosine", "rows with NaN"],
                [(a, b, f"{d:.2e}", f"{c:.6f}", k) for a, b, d, c, k in agree],
            )
        )
        print(
            "\nembetter tokenises with gensim (punctuation dropped; NaN for documents without "
            "a known word); zeugma does not lowercase: their differences are expected."
        )
        if args.texts:
            print(
                "With real texts the naive loop's whitespace split gives other tokens than "
                'the default pattern ("it\'s" against "it" "\'s"), so it differs too.'
            )
        print()

    s = split["seconds"]
    print("## Where embedxfer's time goes\n")
    split_rows = []
    installed = "compiled kernels" if split["compiled_kernels"] else "numpy code: not built"
    for label, seconds in [
        (f"embedxfer mean, whole transform ({installed})", medians.get("embedxfer mean")),
        ("embedxfer mean, whole transform, numpy code", medians.get("embedxfer mean (numpy code)")),
        (
            "embedxfer mean, whole transform, numpy code, torch imported",
            medians.get("embedxfer mean (numpy code, torch imported)"),
        ),
        (f"tokenise + map to ids, unknown tokens left out ({installed})", s["tokenise"]),
        ("tokenise + map to ids, numpy code", s.get("tokenise, numpy")),
        (f"pool mean, ids given ({installed})", s["pool mean"]),
        ("pool mean, ids given, scipy sparse product", s.get("pool mean, scipy")),
        ("pool mean, ids given, torch embedding_bag", s.get("pool mean, torch")),
        (f"pool mean, ids given, float16 table ({installed})", s["pool mean, float16"]),
        (f"pool max, ids given ({installed})", s["pool max"]),
        ("pool max, ids given, numpy position sweep", s.get("pool max, numpy")),
        ("floor: distinct rows from memory, repeats from cache", floor),
        ("the same floor for a float16 table", split["floor_read_float16_s"]),
        ("touched bytes at the sequential rate (a simpler floor)", split["floor_sequential_s"]),
    ]:
        if seconds is not None:
            split_rows.append(
                (label, fmt(seconds), f"{n / seconds:,.0f}", f"{seconds / floor:.2f}x")
            )
    print(table(["step", "seconds", "docs/s", "x floor"], split_rows))
    load = split["load_average"]
    print(
        f"\n{split['n_in_vocabulary_tokens']:,} in-vocabulary tokens, "
        f"{split['touched_gb']:.2f} GB of vector rows read, {split['distinct_gb']:.2f} GB of "
        f"them distinct within a batch; read rates (BLAS, {split['threads']} threads, best "
        f"of 3): {split['read_bandwidth_gb_s']:.1f} GB/s from memory, "
        f"{split['cache_bandwidth_gb_s']:.1f} GB/s from cache. Pooling threads used: "
        f"{split['threads']}. Load average after: "
        + ("n/a" if load is None else f"{load[0]:.1f}")
        + ".\n"
    )

    load_rows = []
    if not args.no_load and not args.texts:
        text_rows = args.text_rows or args.vocab
        load_rows, _ = load_times(data, kv, results, text_rows)
        print("## Load time per format (fresh process, warm page cache)\n")
        print(
            table(
                ["source", "seconds", "vectors", "runs"],
                [
                    (label, fmt(sec), shape, _samples_text(samples))
                    for label, sec, shape, samples in load_rows
                ],
            )
        )
        print(
            f"\nA second load is the median of {LOAD_REPEATS} fresh processes; runs lists "
            "each one.\n"
        )

    if not args.no_memory:
        mem = memory_table(args, list(methods))
        print("## Peak memory of one transform (fresh process per method)\n")
        print(
            table(
                ["method", "traced peak MiB", "peak RSS MiB", "RSS growth MiB"],
                [(m, fmt(a, 0), fmt(b, 0), fmt(c, 0)) for m, a, b, c in mem],
            )
        )
        print(
            "\ntraced: Python and numpy allocations during the transform (tracemalloc). Peak "
            "RSS: the process's high-water mark during it (VmHWM, reset just before), which "
            "includes the pages of the memory-mapped vectors it touched; growth: peak RSS "
            "minus the RSS before the transform.\n"
        )

    print("## Targets\n")
    checks = []

    def check(label, value, target, ok):
        checks.append((label, value, target, "PASS" if ok else "FAIL"))

    def ratio(a, b):
        return medians[b] / medians[a] if a in medians and b in medians else None

    for label, a, b, target in [
        ("mean from raw strings vs naive loop", "embedxfer mean", "naive loop mean", 10.0),
        (
            "mean from raw strings vs embetter",
            "embedxfer mean",
            "embetter 0.7.0 GensimEncoder",
            5.0,
        ),
        ("max from raw strings vs naive loop", "embedxfer max", "naive loop max", 2.0),
    ]:
        r = ratio(a, b)
        if r is None:
            missing = b if b not in medians else a
            checks.append((label, "n/a", f">= {target}x", f"SKIPPED ({missing} not run)"))
        else:
            rounds = [tb / ta for ta, tb in zip(all_times[a], all_times[b])]
            value = (
                f"{statistics.median(rounds):.2f}x paired (rounds {min(rounds):.2f}-"
                f"{max(rounds):.2f}x; ratio of the medians {r:.2f}x)"
            )
            check(label, value, f">= {target}x", statistics.median(rounds) >= target)
    for label, seconds, target in [
        ("pooling alone vs read floor", s["pool mean"], 1.3),
        ("mean from raw strings vs read floor", medians.get("embedxfer mean"), 2.0),
    ]:
        if seconds is None:
            checks.append((label, "n/a", f"<= {target}x", "SKIPPED (not run)"))
        else:
            within = seconds / floor
            check(label, f"{within:.2f}x the floor", f"<= {target}x", within <= target)
    for label, sec, _, samples in load_rows:
        if label.startswith("word2vec binary, second") and sec is not None:
            value = f"{sec:.3f} s (median of {_samples_text(samples)})"
            check("second load of a converted file", value, "< 0.5 s", sec < 0.5)
    for label, value, target, verdict in checks:
        print(f"- {verdict}: {label}: {value} (target {target})")
    record = {
        "args": vars(args),
        "medians": medians,
        "times": all_times,
        "skipped": skipped,
        "split": split,
        "load": load_rows,
        "checks": checks,
    }
    out = results / f"word_pooling-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(record, indent=1, default=str))
    print(f"\n(raw numbers: {out})")


if __name__ == "__main__":
    main()
