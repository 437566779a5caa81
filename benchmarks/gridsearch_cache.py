"""What the embedding cache saves in a grid search over a downstream classifier.

``GridSearchCV(Pipeline([SentenceEmbedder, LogisticRegression]), 8 values
of C, cv=5)`` on real labelled sentences (SST-2 train, from the ``--data`` file),
run four ways: without a cache, with a memory cache, with a fresh disk cache,
and once more on the same disk cache (as a second run of a script would).
Each row gives the documents the encoder was asked for, its calls, the wall
time, and both as a multiple of one encoding of the corpus.

    python benchmarks/gridsearch_cache.py                      # 5,000 documents
    python benchmarks/gridsearch_cache.py --n 300              # all four, small
    python benchmarks/gridsearch_cache.py --modes memory,disk,disk-again

Without a cache the search encodes every training and test fold for every C
(about 40 encodings of the corpus plus the final refit): at 5,000 documents
on a small CPU that takes long, so measure ``none`` on a small ``--n`` and
scale, or leave it out. Encoder calls are counted in this process, so the
search runs with ``n_jobs=1``.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import DATA_DIR
from _machine import describe

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = DATA_DIR / "sst2" / "train.csv"
MODES = ("none", "memory", "disk", "disk-again")


def load_corpus(path, n, seed=0):
    import pandas as pd

    if not Path(path).is_file():
        sys.exit(f"data not found: {path}; pass --data (a CSV with text,label columns)")
    frame = pd.read_csv(path).dropna()
    order = np.random.default_rng(seed).permutation(len(frame))[:n]
    if len(order) < n:
        print(f"only {len(order)} documents available", file=sys.stderr)
    frame = frame.iloc[order]
    return frame.text.astype(str).tolist(), frame.label.to_numpy()


class EncodeCounter:
    """Wrap ``SentenceEmbedder`` to count encoded documents and time its steps.

    ``encode_seconds`` is time in ``_encode`` (the model), ``embed_seconds``
    time in ``transform`` (the model plus hashing and cache lookups); the rest
    of a search is the classifier and scikit-learn.
    """

    def __init__(self, cls):
        self.reset()
        encode, transform = cls._encode, cls.transform
        counter = self

        def counting_encode(self, docs):
            counter.calls += 1
            counter.docs += len(docs)
            start = time.perf_counter()
            try:
                return encode(self, docs)
            finally:
                counter.encode_seconds += time.perf_counter() - start

        def timed_transform(self, X):
            start = time.perf_counter()
            try:
                return transform(self, X)
            finally:
                counter.embed_seconds += time.perf_counter() - start

        cls._encode = counting_encode
        cls.transform = timed_transform

    def reset(self):
        self.calls = self.docs = 0
        self.encode_seconds = self.embed_seconds = 0.0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="documents (default 5000)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CSV with text,label")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated of {MODES}")
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--n-c", type=int, default=8, help="values of C (default 8)")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="disk cache folder (default: a fresh temporary folder, removed at the end)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    print(describe())
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes {sorted(unknown)}; choose from {MODES}")

    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline

    from embedxfer import EmbeddingCache, SentenceEmbedder

    docs, y = load_corpus(args.data, args.n)
    counter = EncodeCounter(SentenceEmbedder)
    folder = args.cache_dir or Path(tempfile.mkdtemp(prefix="embedxfer-bench-"))
    own_folder = args.cache_dir is None

    # Load the model and warm up before anything is timed.
    SentenceEmbedder(batch_size=args.batch_size).fit().transform(docs[:64])
    start = time.perf_counter()
    SentenceEmbedder(batch_size=args.batch_size).fit().transform(docs)
    one_encoding = time.perf_counter() - start

    grid = {"clf__C": np.logspace(-2, 3, args.n_c).tolist()}
    rows = []
    try:
        for mode in modes:
            cache = {
                "none": None,
                "memory": EmbeddingCache(),
                "disk": EmbeddingCache(folder),
                "disk-again": EmbeddingCache(folder),
            }[mode]
            if mode == "disk" and len(cache):
                cache.clear()
            pipe = Pipeline(
                [
                    ("embed", SentenceEmbedder(batch_size=args.batch_size, cache=cache)),
                    ("clf", LogisticRegression(max_iter=2000)),
                ]
            )
            search = GridSearchCV(pipe, grid, cv=args.cv, n_jobs=1)
            counter.reset()
            start = time.perf_counter()
            search.fit(docs, y)
            seconds = time.perf_counter() - start
            rows.append(
                (
                    mode,
                    counter.docs,
                    counter.calls,
                    counter.encode_seconds,
                    counter.embed_seconds,
                    seconds,
                    search.best_score_,
                )
            )
            print(
                f"{mode}: {counter.docs} documents encoded in {counter.calls} calls, "
                f"{seconds:.1f} s",
                file=sys.stderr,
                flush=True,
            )
    finally:
        if own_folder:
            shutil.rmtree(folder, ignore_errors=True)

    n = len(docs)
    print(
        f"\nGridSearchCV: {args.n_c} values of C x {args.cv} folds + refit, {n} documents "
        f"from {args.data.name}, SentenceEmbedder (all-MiniLM-L6-v2), torch "
        f"{torch.__version__} on CPU with {torch.get_num_threads()} threads."
    )
    print(f"One encoding of the corpus: {one_encoding:.1f} s.\n")
    print(
        "Columns: documents the model encoded (and calls), seconds in the model, seconds in "
        "the embedding step (model + hashing + cache lookups), seconds for the whole "
        "search (embedding + classifier fits + scikit-learn), and multiples of one "
        "encoding of the corpus.\n"
    )
    print(
        "| cache | documents encoded | encode calls | model (s) | embedding step (s) "
        "| whole search (s) | documents / corpus | embedding / one encoding "
        "| search / one encoding | best CV accuracy |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mode, n_docs, calls, encode_s, embed_s, seconds, score in rows:
        print(
            f"| {mode} | {n_docs} | {calls} | {encode_s:.1f} | {embed_s:.1f} | {seconds:.1f} "
            f"| {n_docs / n:.2f}x | {embed_s / one_encoding:.2f}x "
            f"| {seconds / one_encoding:.2f}x | {score:.4f} |"
        )


if __name__ == "__main__":
    main()
