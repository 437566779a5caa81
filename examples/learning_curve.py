"""How many labelled documents do you need? Learning curves of transfer vs TF-IDF.
===============================================================================

Pretrained embeddings bring knowledge of the language learned elsewhere, so
they need fewer labelled examples than TF-IDF, which learns every word from
the training set. scikit-learn's ``learning_curve`` refits each pipeline on
growing training sets; the embedder is inside the pipeline, and
``cache="memory"`` makes the sentence model encode each document once across
all sizes and folds.

Data: the SMS Spam Collection shipped with embedxfer, or your own labelled
documents (``--csv reviews.csv``, a file with ``text`` and ``label`` columns).

    python examples/learning_curve.py --out plots/    # 1,000 documents, ~1 minute on 2 cores
    python examples/learning_curve.py --quick         # 300 documents, GloVe and TF-IDF
"""

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, learning_curve, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from embedxfer import WordVectorEmbedder


def load_data(csv, n_docs, seed=0):
    """``(texts, labels, name)``: the documents of ``csv``, else the packaged SMS spam data."""
    if csv is not None:
        from embedxfer.datasets import load_csv

        data, name = load_csv(csv), str(csv)
    else:
        from embedxfer.datasets import load_sms_spam

        data, name = load_sms_spam(), "SMS Spam Collection"
    texts, labels = np.asarray(data.data, dtype=object), np.asarray(data.target)
    keep, _ = train_test_split(
        np.arange(len(texts)), train_size=n_docs, stratify=labels, random_state=seed
    )
    return list(texts[keep]), labels[keep], name


def pipelines(quick):
    # Standardised embeddings with few training documents need a strong L2 penalty, the
    # stronger the more dimensions (C=0.1 for GloVe's 50, C=0.01 for MiniLM's 384).
    out = {
        "TF-IDF": make_pipeline(
            TfidfVectorizer(sublinear_tf=True), LogisticRegression(C=10.0, max_iter=2000)
        ),
        "GloVe 6B 50d": make_pipeline(
            WordVectorEmbedder("glove-6B-50d"),
            StandardScaler(),
            LogisticRegression(C=0.1, max_iter=2000),
        ),
    }
    if not quick:
        try:
            from embedxfer import SentenceEmbedder
        except ImportError:
            print("(sentence-transformers not installed: skipping all-MiniLM-L6-v2)")
        else:
            out["all-MiniLM-L6-v2"] = make_pipeline(
                SentenceEmbedder(model="all-MiniLM-L6-v2", cache="memory"),
                StandardScaler(),
                LogisticRegression(C=0.01, max_iter=2000),
            )
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-docs", type=int, default=1000, help="documents to use")
    parser.add_argument("--quick", action="store_true", help="300 documents, no sentence model")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path.cwd(),
        help="folder for learning_curve.png (default: the current folder)",
    )
    parser.add_argument(
        "--csv",
        type=Path,
        default=None,
        help="your labelled documents: a CSV file with text and label columns "
        "(default: the SMS Spam Collection shipped with embedxfer)",
    )
    args = parser.parse_args()

    texts, labels, name = load_data(args.csv, 300 if args.quick else args.n_docs)
    cv = StratifiedKFold(n_splits=3 if args.quick else 5, shuffle=True, random_state=0)
    n_train = len(texts) - len(texts) // cv.get_n_splits()
    sizes = np.unique(np.geomspace(20, n_train, num=5 if args.quick else 6).astype(int))
    print(
        f"{name}: {len(texts)} documents; {cv.get_n_splits()}-fold CV; training sizes "
        f"{sizes.tolist()}\n"
    )

    curves = {}
    for label, pipe in pipelines(args.quick).items():
        started = time.perf_counter()
        _, _, test_scores = learning_curve(
            pipe,
            texts,
            labels,
            train_sizes=sizes,
            cv=cv,
            scoring="accuracy",
            shuffle=True,
            random_state=0,
        )
        curves[label] = test_scores
        print(
            f"{label:<18} "
            + "  ".join(f"{s:.3f}" for s in test_scores.mean(axis=1))
            + f"   ({time.perf_counter() - started:.0f}s)"
        )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2), constrained_layout=True)
    for label, scores in curves.items():
        mean, std = scores.mean(axis=1), scores.std(axis=1)
        ax.plot(sizes, mean, marker="o", label=label)
        ax.fill_between(sizes, mean - std, mean + std, alpha=0.15)
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("labelled training documents")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{name}: learning curves")
    ax.grid(True, alpha=0.3)
    ax.legend()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "learning_curve.png"
    fig.savefig(path, dpi=120)
    print(f"\nplot written to {path}")


if __name__ == "__main__":
    main()
