"""Whole long documents: SentenceEmbedder long_documents="chunk" against "truncate".

On the BBC News articles (``--data``, five topics, median
several hundred tokens, longer than all-MiniLM-L6-v2's 256-token window) it
reports, for each setting, the encoding time, the 5-fold cross-validated
accuracy of a logistic regression and the adjusted Rand index of KMeans
(k = 5, mean over seeds) on the vectors.

    python benchmarks/long_documents.py --n 600 --backend onnx
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import DATA_DIR
from _machine import describe

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = DATA_DIR / "bbc_news" / "all.csv"


def load(path, n, seed=0):
    import pandas as pd

    if not path.is_file():
        sys.exit(f"data not found: {path}; pass --data")
    frame = pd.read_csv(path, keep_default_na=False)
    if n and n < len(frame):
        # Stratified sample: the same share of every topic.
        frame = frame.groupby("label", group_keys=False).sample(
            frac=n / len(frame), random_state=seed
        )
    return frame["text"].astype(str).tolist(), frame["label"].to_numpy()


def scores(X, y, seeds):
    from sklearn.cluster import KMeans
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import adjusted_rand_score
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.preprocessing import normalize

    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    acc = cross_val_score(LogisticRegression(max_iter=3000), X, y, cv=folds).mean()
    k = len(np.unique(y))
    Xn = normalize(X)
    aris = [
        adjusted_rand_score(y, KMeans(k, n_init=10, random_state=s).fit_predict(Xn))
        for s in range(seeds)
    ]
    return float(acc), float(np.mean(aris)), float(np.std(aris))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=600, help="articles (stratified); 0 = all")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--backend", default="onnx", choices=("torch", "onnx"))
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=5, help="KMeans seeds to average")
    args = parser.parse_args(argv)
    print(describe())

    import warnings

    from embedxfer import SentenceEmbedder

    texts, labels = load(args.data, args.n)
    base = SentenceEmbedder(backend=args.backend, batch_size=args.batch_size).fit()
    tokenizer = base._backend().tokenizer
    n_tokens = np.array([len(ids) for ids in tokenizer(texts)["input_ids"]])
    window = base.max_length_
    print(
        f"BBC News, {len(texts)} articles, {len(np.unique(labels))} topics; tokens per "
        f"article: median {np.median(n_tokens):.0f}, 90th percentile "
        f"{np.percentile(n_tokens, 90):.0f}; {np.mean(n_tokens > window):.0%} longer than "
        f"the {window}-token window. all-MiniLM-L6-v2 mean pooling, backend={args.backend!r}, "
        f"batch_size={args.batch_size}, chunk_overlap={args.overlap}."
    )
    print()
    print("| long_documents | encode s | LR accuracy (5-fold) | KMeans ARI (mean ± sd) |")
    print("|---|---:|---:|---:|")
    settings = [
        ("truncate", {}),
        ("chunk (mean)", {"long_documents": "chunk"}),
        ("chunk (max)", {"long_documents": "chunk", "chunk_pooling": "max"}),
    ]
    for label, params in settings:
        embedder = (
            base.set_params(
                long_documents="truncate", chunk_pooling="mean", chunk_overlap=args.overlap
            )
            .set_params(**params)
            .fit()
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the truncation warning is the point here
            start = time.perf_counter()
            X = embedder.transform(texts)
            seconds = time.perf_counter() - start
        acc, ari, sd = scores(X, labels, args.seeds)
        print(f"| {label} | {seconds:.1f} | {acc:.4f} | {ari:.3f} ± {sd:.3f} |")


if __name__ == "__main__":
    main()
