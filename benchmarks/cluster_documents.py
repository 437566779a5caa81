"""Clustering documents: HybridEmbedder against LSA, GloVe and MiniLM (KMeans, ARI).

HybridEmbedder's rows use its default ``weights="auto"`` (the lexical view
weighed by what it can see on each corpus), except the "equal weights" row.

On BBC News (2,225 long articles, 5 topics), a fixed sample of AG News
(short news snippets, 4 topics) and the TREC-6 test questions (500, 6
question types): each recipe's L2-normalised vectors are
clustered by KMeans (k = the number of topics, n_init=10) and scored by the
adjusted Rand index against the topics, median over seeds. Label-free
recipes only. Encoding time is reported per recipe (wall clock, with the
machine's load average, since other work on the machine slows it down).

MiniLM vectors are kept in a disk cache (``--cache``, outside the
repository), so that a rerun clusters in seconds; the encoding time then
reported is the one measured when the vectors were computed, read back from
``timings.json`` in the cache folder and marked ``cached``.

    python benchmarks/cluster_documents.py --bbc path/to/bbc/all.csv \\
        --ag path/to/ag_news/test.csv
"""

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import DATA_DIR

DEFAULT_CACHE = Path(tempfile.gettempdir()) / "embedxfer-bench-cache"
RECIPES = (
    "LSA",
    "GloVe 50d mean",
    "MiniLM, first 256 tokens",
    "MiniLM chunked, max windows",
    "HybridEmbedder default",
    "HybridEmbedder default, equal weights",
    "HybridEmbedder LSA + GloVe",
    "StaticEmbedder (MiniLM distilled)",
    "StaticEmbedder adapted to the corpus",
)


def load(path, n=None, seed=0):
    """``(texts, labels)`` of a ``text,label`` CSV; ``n`` rows drawn at random, in file order."""
    import pandas as pd

    if not Path(path).is_file():
        return None
    frame = pd.read_csv(path, keep_default_na=False)
    if n and n < len(frame):
        index = np.sort(np.random.default_rng(seed).choice(len(frame), n, replace=False))
        frame = frame.iloc[index]
    return frame["text"].astype(str).tolist(), frame["label"].to_numpy()


def make_recipe(name, cache):
    """An unfitted transformer for ``name``; MiniLM blocks read and write ``cache``."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline

    from embedxfer import HybridEmbedder, SentenceEmbedder, StaticEmbedder, WordVectorEmbedder

    def lsa():
        return make_pipeline(
            TfidfVectorizer(sublinear_tf=True, stop_words="english"),
            TruncatedSVD(n_components=100, random_state=0),
        )

    if name == "LSA":
        return lsa()
    if name == "GloVe 50d mean":
        return WordVectorEmbedder()
    if name == "MiniLM, first 256 tokens":
        return SentenceEmbedder(normalize=True, cache=cache)
    if name == "MiniLM chunked, max windows":
        return SentenceEmbedder(
            long_documents="chunk", chunk_pooling="max", normalize=True, cache=cache
        )
    if name == "HybridEmbedder default":
        return HybridEmbedder(blocks=HybridEmbedder.default_blocks()).set_params(
            minilm__cache=cache
        )
    if name == "HybridEmbedder default, equal weights":
        return HybridEmbedder(blocks=HybridEmbedder.default_blocks(), weights=None).set_params(
            minilm__cache=cache
        )
    if name == "HybridEmbedder LSA + GloVe":
        return HybridEmbedder(blocks=[("lsa", lsa()), ("glove", WordVectorEmbedder())])
    if name == "StaticEmbedder (MiniLM distilled)":
        return StaticEmbedder()
    if name == "StaticEmbedder adapted to the corpus":
        # Unsupervised: fit reads the documents being clustered, never the topics. The
        # teacher's vectors come from the MiniLM cache.
        teacher = SentenceEmbedder(pooling="mean", cache=cache).fit()
        adapted = StaticEmbedder(adapt=True)
        adapted._teacher_vectors = lambda docs, device: teacher.transform(docs)
        return adapted
    raise ValueError(f"unknown recipe {name!r}; choose from {RECIPES}")


def encode(name, texts, cache, timings):
    """``(X, seconds, note)``: the recipe's vectors and how long encoding took."""
    recipe = make_recipe(name, cache)
    key = _cached_part(recipe, len(texts))
    cache.reset_stats()
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # truncation notices
        X = recipe.fit_transform(texts)
    seconds = time.perf_counter() - started
    stats = cache.stats()
    note = ""
    if stats["hits"] and not stats["misses"]:
        recorded = timings.get(key)
        if recorded:
            # The cached part was encoded earlier: add the time it took then.
            seconds += recorded["seconds"]
            note = f"cached; encoded at load {recorded['load']}"
        else:
            note = "cached; encoding time not recorded"
    elif stats["misses"]:
        timings[key] = {"seconds": seconds, "load": _load_average()}
        if stats["hits"]:
            note = "partly cached"
    return np.asarray(X.toarray() if hasattr(X, "toarray") else X), seconds, note


def _cached_part(recipe, n_documents):
    """Key of a recipe's cached MiniLM vectors (its settings' fingerprint), or None."""
    from embedxfer import HybridEmbedder, SentenceEmbedder

    if isinstance(recipe, HybridEmbedder):
        blocks = [block for _, block in recipe.blocks]
    else:
        blocks = [recipe]
    for block in blocks:
        if isinstance(block, SentenceEmbedder):
            return f"{block._cache_fingerprint()}/{n_documents}"
    return None


def aris(X, y, seeds):
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score
    from sklearn.preprocessing import normalize

    k = len(np.unique(y))
    Xn = normalize(X)
    return [
        adjusted_rand_score(y, KMeans(n_clusters=k, n_init=10, random_state=s).fit_predict(Xn))
        for s in range(seeds)
    ]


def chosen_k(X):
    """The number of clusters each criterion of ``choose_n_clusters`` picks in 2..10."""
    from embedxfer import choose_n_clusters

    choice = choose_n_clusters(X, range(2, 11), criterion="stability")
    by_silhouette = choice.candidates[int(np.argmax(choice.silhouettes))]
    return f"k chosen: silhouette {by_silhouette}, stability {choice.n_clusters}"


def _load_average():
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bbc", type=Path, default=DATA_DIR / "bbc_news" / "all.csv")
    parser.add_argument("--ag", type=Path, default=DATA_DIR / "ag_news" / "test.csv")
    parser.add_argument("--ag-n", type=int, default=2000, help="AG News rows drawn (seed 0)")
    parser.add_argument(
        "--trec", type=Path, default=DATA_DIR / "trec" / "test.csv", help="TREC-6 questions"
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=["bbc", "ag", "trec"],
        choices=["bbc", "ag", "trec"],
        help="which data sets to run",
    )
    parser.add_argument("--seeds", type=int, default=3, help="KMeans seeds (median ARI)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="MiniLM vector cache")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    parser.add_argument(
        "--choose-k",
        action="store_true",
        help="also choose k in 2..10 without the labels, by silhouette and by stability",
    )
    args = parser.parse_args(argv)

    from embedxfer import EmbeddingCache

    cache = EmbeddingCache(args.cache)
    timings_path = args.cache / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    print(f"load average at start: {_load_average()} ({os.cpu_count()} CPUs)")
    print(
        f"KMeans(k = topics, n_init=10) on L2-normalised vectors; ARI median of {args.seeds} "
        "seeds (min-max); encode s: wall-clock time to fit and encode every document."
    )
    sources = {
        "bbc": ("BBC News", lambda: load(args.bbc)),
        "ag": (f"AG News ({args.ag_n})", lambda: load(args.ag, args.ag_n)),
        "trec": ("TREC-6 questions", lambda: load(args.trec)),
    }
    datasets = [(sources[key][0], sources[key][1]()) for key in args.datasets]
    results = []
    for dataset, data in datasets:
        if data is None:
            print(f"\nskipped {dataset}: data not found (pass --bbc / --ag / --trec)")
            continue
        texts, y = data
        print(f"\n## {dataset}: {len(texts)} documents, {len(np.unique(y))} topics\n")
        print("| recipe | dim | encode s | ARI (median) | ARI min-max | note |")
        print("|---|---:|---:|---:|---:|---|")
        for name in args.recipes:
            X, seconds, note = encode(name, texts, cache, timings)
            timings_path.write_text(json.dumps(timings, indent=1))
            scores = aris(X, y, args.seeds)
            if args.choose_k:
                note = "; ".join(filter(None, [note, chosen_k(X)]))
            row = {
                "dataset": dataset,
                "recipe": name,
                "dim": X.shape[1],
                "encode_s": seconds,
                "ari": float(np.median(scores)),
            }
            results.append(row)
            print(
                f"| {name} | {X.shape[1]} | {seconds:.1f} | {row['ari']:.3f} | "
                f"{min(scores):.3f}-{max(scores):.3f} | {note} |",
                flush=True,
            )
    print(f"\nload average at end: {_load_average()}")
    _verdicts(results)
    return results


def _verdicts(results):
    def ari(dataset, recipe):
        return next(
            (
                r["ari"]
                for r in results
                if r["dataset"].startswith(dataset) and r["recipe"] == recipe
            ),
            None,
        )

    print()
    hybrid = ari("BBC", "HybridEmbedder default")
    if hybrid is not None:
        verdict = "PASS" if hybrid >= 0.93 else "FAIL"
        print(f"- {verdict}: BBC News ARI of the default HybridEmbedder {hybrid:.3f} (target 0.93)")
    hybrid, minilm = ari("AG", "HybridEmbedder default"), ari("AG", "MiniLM, first 256 tokens")
    if hybrid is not None and minilm is not None:
        verdict = "PASS" if hybrid >= minilm else "FAIL"
        print(
            f"- {verdict}: AG News ARI of the default HybridEmbedder {hybrid:.3f} vs MiniLM "
            f"{minilm:.3f}"
        )


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
