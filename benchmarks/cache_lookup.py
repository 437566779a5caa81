"""Cost of a cache hit: hashing and looking up documents that are all cached.

Fills a memory and a disk :class:`embedxfer.EmbeddingCache` with random
vectors for synthetic documents, then times ``encode_with_cache`` when every
document is a hit (best of ``--repeats``), split into hashing and the rest.

    python benchmarks/cache_lookup.py                 # 100,000 documents, 384 features
    python benchmarks/cache_lookup.py --n-features 50
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe


def best_of(repeats, fn):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--n-features", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(describe())

    from embedxfer._cache import EmbeddingCache, encode_with_cache, hash_texts

    docs = [f"document {i}: " + "some words of text " * (1 + i % 12) for i in range(args.n)]
    vectors = np.random.default_rng(0).standard_normal((args.n, args.n_features))
    vectors = vectors.astype(np.float32)
    row = {doc: i for i, doc in enumerate(docs)}

    def encode(texts):
        return vectors[[row[t] for t in texts]]

    def never(texts):
        raise AssertionError("a document was not found in the cache")

    hashing = best_of(args.repeats, lambda: hash_texts(docs))
    print(
        f"{args.n} documents, {args.n_features} float32 features "
        f"({vectors.nbytes / 2**20:.0f} MiB of vectors)\n"
    )
    print(
        f"| store | fill (s) | all-hit lookup, best of {args.repeats} (s) | of which hashing (s) |"
    )
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for name, cache in [
            ("memory", EmbeddingCache(max_memory_mb=None)),
            ("disk", EmbeddingCache(folder)),
        ]:
            start = time.perf_counter()
            encode_with_cache(cache, "fp", docs, encode)
            fill = time.perf_counter() - start
            lookup = best_of(args.repeats, lambda c=cache: encode_with_cache(c, "fp", docs, never))
            print(f"| {name} | {fill:.2f} | {lookup:.3f} | {hashing:.3f} |")
            cache.close()


if __name__ == "__main__":
    main()
