"""Pick an embedder, its pooling and the classifier's C with GridSearchCV.
=======================================================================

The embedder is a step of the Pipeline, so the grid can swap whole
embedders (GloVe word vectors, the MiniLM sentence model) as well as their
parameters. Vectors are loaded once per process and shared by the clones
GridSearchCV makes; the sentence model's embeddings are cached in memory, so
every document is encoded once however many candidates and folds use it.

Data: the SMS Spam Collection shipped with embedxfer, or your own labelled
documents (``--csv reviews.csv``, a file with ``text`` and ``label`` columns).

    python examples/classify_gridsearch.py            # ~1 minute on 2 cores
    python examples/classify_gridsearch.py --quick    # a few seconds' check
"""

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
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
    return texts[keep], labels[keep], name


def describe(params):
    """A grid candidate as text, e.g. ``WordVectorEmbedder(pooling=mean), C=1.0``."""
    options = ", ".join(
        f"{key.split('__', 1)[1]}={value}"
        for key, value in params.items()
        if key.startswith("embed__")
    )
    return f"{type(params['embed']).__name__}({options}), C={params['clf__C']}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-docs", type=int, default=1000, help="documents to use")
    parser.add_argument("--quick", action="store_true", help="small run, word vectors only")
    parser.add_argument("--no-sentence", action="store_true", help="skip the MiniLM model")
    parser.add_argument(
        "--csv",
        type=Path,
        default=None,
        help="your labelled documents: a CSV file with text and label columns "
        "(default: the SMS Spam Collection shipped with embedxfer)",
    )
    args = parser.parse_args()
    n_docs = 300 if args.quick else args.n_docs

    texts, labels, name = load_data(args.csv, n_docs)
    X_train, X_test, y_train, y_test = train_test_split(
        texts, labels, test_size=0.25, stratify=labels, random_state=0
    )
    print(f"{name}: {len(X_train)} training and {len(X_test)} test documents")

    pipe = Pipeline(
        [
            ("embed", WordVectorEmbedder("glove-6B-50d")),
            ("scale", StandardScaler()),
            ("clf", LogisticRegression(max_iter=2000)),
        ]
    )
    grid = [
        {
            "embed": [WordVectorEmbedder("glove-6B-50d")],
            "embed__pooling": ["mean", "mean+max"],
            "embed__weighting": [None, "sif"],
            "clf__C": [0.01, 0.1] if args.quick else [0.01, 0.1, 1.0],
        }
    ]
    if not (args.quick or args.no_sentence):
        try:
            from embedxfer import SentenceEmbedder

            # Each candidate's pooling needs its own encoding pass; add "cls" to compare.
            grid.append(
                {
                    "embed": [SentenceEmbedder(model="all-MiniLM-L6-v2", cache="memory")],
                    "embed__pooling": ["mean"],
                    "clf__C": [0.01, 0.1, 1.0],
                }
            )
        except ImportError:
            print("(sentence-transformers not installed: word vectors only)")

    search = GridSearchCV(pipe, grid, cv=3, scoring="accuracy", n_jobs=1)
    started = time.perf_counter()
    search.fit(X_train, y_train)
    print(
        f"grid search: {len(search.cv_results_['params'])} candidates x 3 folds in "
        f"{time.perf_counter() - started:.0f}s\n"
    )

    results = search.cv_results_
    order = np.argsort(results["rank_test_score"])
    print(f"{'rank':>4}  {'cv accuracy':>13}  candidate")
    for i in order[:8]:
        print(
            f"{results['rank_test_score'][i]:>4}  {results['mean_test_score'][i]:.3f} ± "
            f"{results['std_test_score'][i]:.3f}  {describe(results['params'][i])}"
        )
    print(f"\nbest: {describe(search.best_params_)}")
    print(
        f"held-out test accuracy of the refitted best pipeline: {search.score(X_test, y_test):.3f}"
    )


if __name__ == "__main__":
    main()
