"""Few labelled examples: contrastive fine-tuning (SetFit's recipe) against frozen vectors.
========================================================================================

With a handful of labelled documents per class, ``ContrastiveEmbedder``
fine-tunes all-MiniLM-L6-v2 on pairs drawn from them (same class: similar,
different classes: dissimilar), then a little further with a temporary
softmax head, and a logistic regression is fitted on its vectors; the
baseline is the same logistic regression on the frozen encoder's vectors
(``SentenceEmbedder``). Both are scored on a fixed test
sample, for a few random draws of the training examples.

Data: a CSV file with ``text`` and ``label`` columns (``--csv``), or by
default the SMS Spam Collection shipped with embedxfer.

    python examples/few_shot.py --quick
    python examples/few_shot.py --per-class 8 --seeds 0,1,2,3,4 --csv reviews.csv
"""

import argparse
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from embedxfer import ContrastiveEmbedder, SentenceEmbedder


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv", default=None, help="CSV file with text and label columns")
    parser.add_argument("--per-class", type=int, default=8, help="labelled examples per class")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training draws")
    parser.add_argument("--test-size", type=int, default=1000, help="fixed test documents")
    parser.add_argument("--pairs", type=int, default=40, help="pairs per labelled example")
    parser.add_argument(
        "--quick", action="store_true", help="one draw, 200 test documents, 10 pairs each"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.test_size, args.pairs = "0", 200, 10
    return args


def load(csv):
    if csv is None:
        from embedxfer.datasets import load_sms_spam

        bunch = load_sms_spam()
        return np.asarray(bunch.data, dtype=object), bunch.target_names[bunch.target]
    import pandas as pd

    frame = pd.read_csv(csv)
    return frame["text"].astype(str).to_numpy(), frame["label"].to_numpy()


def main(argv=None):
    args = parse_args(argv)
    texts, labels = load(args.csv)
    rng = np.random.default_rng(12345)
    order = rng.permutation(len(texts))
    test, pool = order[: args.test_size], order[args.test_size :]
    x_test, y_test = texts[test].tolist(), labels[test]
    classes = np.unique(labels)
    print(
        f"{len(classes)} classes, {args.per_class} labelled examples per class, "
        f"{len(test)} test documents, {args.pairs} pairs per example"
    )
    frozen = SentenceEmbedder(normalize=True).fit()
    frozen_test = frozen.transform(x_test)
    scores = {"frozen vectors + LR": [], "ContrastiveEmbedder + LR": []}
    seconds = {name: [] for name in scores}
    for seed in (int(s) for s in args.seeds.split(",")):
        draw = np.random.default_rng(seed)
        train = np.concatenate(
            [draw.choice(pool[labels[pool] == c], args.per_class, replace=False) for c in classes]
        )
        x_train, y_train = texts[train].tolist(), labels[train]

        start = time.perf_counter()
        head = LogisticRegression(max_iter=2000).fit(frozen.transform(x_train), y_train)
        seconds["frozen vectors + LR"].append(time.perf_counter() - start)
        scores["frozen vectors + LR"].append(np.mean(head.predict(frozen_test) == y_test))

        start = time.perf_counter()
        pipe = make_pipeline(
            ContrastiveEmbedder(pairs_per_example=args.pairs, random_state=seed),
            LogisticRegression(max_iter=2000),
        ).fit(x_train, y_train)
        seconds["ContrastiveEmbedder + LR"].append(time.perf_counter() - start)
        scores["ContrastiveEmbedder + LR"].append(np.mean(pipe.predict(x_test) == y_test))

    print(f"{'method':<28}{'accuracy':>10}{'std':>8}{'fit s':>8}")
    for name in scores:
        acc = np.asarray(scores[name])
        print(f"{name:<28}{acc.mean():>10.3f}{acc.std():>8.3f}{np.mean(seconds[name]):>8.1f}")


if __name__ == "__main__":
    main()
