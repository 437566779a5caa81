"""TF-IDF and word embeddings side by side: a FeatureUnion.
========================================================

TF-IDF knows exactly which words (and word pairs) a document uses, but
nothing about words it did not see in training; pretrained GloVe vectors
know that "superb" is close to "excellent" but blur the details. A
FeatureUnion concatenates both views and one classifier weighs them.

Data: the SMS Spam Collection shipped with embedxfer, or your own labelled
documents (``--csv reviews.csv``, a file with ``text`` and ``label`` columns).

    python examples/feature_union.py           # 4,000 documents, ~30 s on 2 cores
    python examples/feature_union.py --quick   # 500 documents
"""

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_validate, train_test_split
from sklearn.pipeline import FeatureUnion, make_pipeline
from sklearn.preprocessing import Normalizer

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
    if n_docs < len(texts):
        keep, _ = train_test_split(
            np.arange(len(texts)), train_size=n_docs, stratify=labels, random_state=seed
        )
        texts, labels = texts[keep], labels[keep]
    return texts, labels, name


def tfidf():
    return TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)


def glove():
    # Unit-length rows, like TF-IDF's, so neither block dominates by scale.
    return make_pipeline(WordVectorEmbedder("glove-6B-50d", weighting="sif"), Normalizer())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-docs", type=int, default=4000, help="documents to use")
    parser.add_argument("--quick", action="store_true", help="500 documents")
    parser.add_argument(
        "--csv",
        type=Path,
        default=None,
        help="your labelled documents: a CSV file with text and label columns "
        "(default: the SMS Spam Collection shipped with embedxfer)",
    )
    args = parser.parse_args()

    texts, labels, name = load_data(args.csv, 500 if args.quick else args.n_docs)
    print(f"{name}: {len(texts)} documents, 5-fold cross-validation\n")
    models = {
        "TF-IDF (1-2 grams)": tfidf(),
        "GloVe 6B 50d, SIF": glove(),
        "TF-IDF + GloVe": FeatureUnion([("tfidf", tfidf()), ("glove", glove())]),
    }
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    print(f"{'features':<20} {'accuracy':>15} {'macro-F1':>15} {'time':>6}")
    for label, features in models.items():
        pipe = make_pipeline(features, LogisticRegression(C=10.0, max_iter=3000))
        started = time.perf_counter()
        scores = cross_validate(pipe, list(texts), labels, cv=cv, scoring=("accuracy", "f1_macro"))
        acc, f1 = scores["test_accuracy"], scores["test_f1_macro"]
        print(
            f"{label:<20} {acc.mean():.3f} ± {acc.std():.3f} {f1.mean():.3f} ± {f1.std():.3f} "
            f"{time.perf_counter() - started:5.1f}s"
        )

    union = models["TF-IDF + GloVe"].fit(list(texts))
    names = union.get_feature_names_out()
    n_glove = sum(n.startswith("glove__") for n in names)
    print(f"\nthe union has {len(names)} features: {len(names) - n_glove} TF-IDF + {n_glove} GloVe")


if __name__ == "__main__":
    main()
