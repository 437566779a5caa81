"""Learning curves: how much does transfer learning help with little labelled data?
================================================================================

Compares, at several training-set sizes on a real dataset (the SMS Spam
Collection shipped with embedxfer, or one of yours under ``--data-dir``, such
as SST-2):

- ``tfidf+lr``    TF-IDF (words and bigrams) + logistic regression: no transfer;
- ``glove-cnn``   ``SequenceClassifier``: a CNN whose embeddings start from GloVe 6B 50d;
- ``frozen+lr``   frozen all-MiniLM-L6-v2 sentence vectors (``SentenceEmbedder``) +
                  logistic regression: the feature-based route;
- ``ft0``         ``TransformerClassifier(unfreeze=0)``: a softmax head on the frozen encoder;
- ``ft2``         ``TransformerClassifier(unfreeze=2)``: the top two layers train too;
- ``ftall``       ``TransformerClassifier(unfreeze="all")``: the whole network trains.

Prints a table (accuracy on a fixed test sample, and training seconds: fit
time including encoding the training texts, excluding model loading) and
writes a PNG with accuracy against training size and against training time.

    python examples/finetune_learning_curve.py --quick --out curve.png
    python examples/finetune_learning_curve.py --sizes 50,200,1000,all --out curve.png
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

METHODS = ("tfidf+lr", "glove-cnn", "frozen+lr", "ft0", "ft2", "ftall")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        default=None,
        help="dataset name under --data-dir, or sms_spam for the packaged "
        "SMS Spam Collection (default: sst2 when --data-dir has it, "
        "else sms_spam)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="a folder of data sets: one subfolder each, holding train.csv and "
        "test.csv (or all.csv) with text and label columns",
    )
    parser.add_argument(
        "--sizes",
        default="50,200,1000",
        help="comma-separated training sizes; 'all' for the whole split",
    )
    parser.add_argument(
        "--test-size",
        type=int,
        default=872,
        help="test documents (a fixed random sample of the test split)",
    )
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs of ft2 / ftall (default: the classifier's own choice, "
        "3 or enough for 40 steps on small sets)",
    )
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="training samples drawn per size (accuracy is averaged)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="sizes 50,200, 200 test documents, max_length 40 (a minute or two on 2 CPU cores)",
    )
    parser.add_argument("--out", type=Path, default=Path("finetune_learning_curve.png"))
    parser.add_argument("--csv", type=Path, default=None, help="also write the table as CSV")
    args = parser.parse_args(argv)
    if args.data is None:
        has_sst2 = args.data_dir is not None and (args.data_dir / "sst2").is_dir()
        args.data = "sst2" if has_sst2 else "sms_spam"
    if args.quick:
        args.sizes, args.test_size, args.max_length = "50,200", 200, 40
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    return args


def read_split(folder, split):
    import pandas as pd

    frame = pd.read_csv(folder / f"{split}.csv", keep_default_na=False)
    return frame["text"].astype(str).to_numpy(dtype=object), frame["label"].to_numpy()


def load_data(args):
    """Training pool and test sample; datasets without a test split are split 80/20."""
    folder = args.data_dir / args.data if args.data_dir is not None else None
    has_folder = folder is not None and folder.is_dir()
    packaged = args.data == "sms_spam" and not has_folder
    if not has_folder and not packaged:
        sys.exit(
            f"no dataset {folder or args.data}; pass --data-dir pointing at the data sets, "
            "or --data sms_spam for the packaged SMS Spam Collection"
        )
    rng = np.random.RandomState(args.seed)
    if packaged:
        from sklearn.model_selection import train_test_split

        from embedxfer.datasets import load_sms_spam

        sms = load_sms_spam()
        x = np.asarray(sms.data, dtype=object)
        y = sms.target_names[sms.target]
        train_x, test_x, train_y, test_y = train_test_split(
            x, y, test_size=0.2, stratify=y, random_state=args.seed
        )
    elif (folder / "train.csv").exists():
        train_x, train_y = read_split(folder, "train")
        test_split = "test" if (folder / "test.csv").exists() else "dev"
        test_x, test_y = read_split(folder, test_split)
    else:
        from sklearn.model_selection import train_test_split

        x, y = read_split(folder, "all")
        train_x, test_x, train_y, test_y = train_test_split(
            x, y, test_size=0.2, stratify=y, random_state=args.seed
        )
    if args.test_size < len(test_x):
        rows = rng.choice(len(test_x), args.test_size, replace=False)
        test_x, test_y = test_x[rows], test_y[rows]
    return train_x, train_y, test_x, test_y


def training_sample(train_y, n, rng):
    """``n`` rows with every class represented (round-robin over shuffled classes)."""
    if n >= len(train_y):
        return np.arange(len(train_y))
    per_class = [rng.permutation(np.flatnonzero(train_y == c)) for c in np.unique(train_y)]
    order = [
        rows[i] for i in range(max(map(len, per_class))) for rows in per_class if i < len(rows)
    ]
    return np.sort(np.asarray(order[:n]))


def make_method(name, args, seed):
    """A fresh estimator whose ``fit(texts, labels)`` / ``score`` run the method."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from embedxfer import SentenceEmbedder, SequenceClassifier, TransformerClassifier

    common = dict(max_length=args.max_length, random_state=seed)
    if name == "tfidf+lr":
        return make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
            LogisticRegression(C=10, max_iter=2000),
        )
    if name == "glove-cnn":
        return SequenceClassifier(architecture="cnn", epochs=8, random_state=seed)
    if name == "frozen+lr":
        return make_pipeline(
            SentenceEmbedder(max_length=args.max_length), LogisticRegression(C=1, max_iter=2000)
        )
    if name == "ft0":
        return TransformerClassifier(unfreeze=0, **common)
    if name == "ft2":
        return TransformerClassifier(unfreeze=2, epochs=args.epochs, **common)
    return TransformerClassifier(unfreeze="all", epochs=args.epochs, **common)


def warm_up(methods, args):
    """Load the models once so that the timings measure training, not loading."""
    x = np.array(["a warm-up sentence", "another one"], dtype=object)
    for name in methods:
        if name != "tfidf+lr":
            make_method(name, args, 0).fit(x, np.array([0, 1]))


def run(args):
    train_x, train_y, test_x, test_y = load_data(args)
    sizes = [len(train_y) if s.strip() == "all" else int(s) for s in args.sizes.split(",")]
    sizes = sorted({min(s, len(train_y)) for s in sizes})
    print(
        f"{args.data}: {len(train_y)} training documents, {len(test_y)} test documents, "
        f"{len(np.unique(train_y))} classes; sizes {sizes}; methods {args.methods}",
        flush=True,
    )
    warm_up(args.methods, args)
    rows = []
    for n in sizes:
        for name in args.methods:
            accs, secs = [], []
            for r in range(args.repeats):
                rng = np.random.RandomState(args.seed + 1000 * r)
                idx = training_sample(train_y, n, rng)
                est = make_method(name, args, args.seed + r)
                start = time.perf_counter()
                est.fit(train_x[idx], train_y[idx])
                secs.append(time.perf_counter() - start)
                accs.append(float(np.mean(est.predict(test_x) == test_y)))
            rows.append(
                {
                    "size": n,
                    "method": name,
                    "accuracy": float(np.mean(accs)),
                    "accuracy_sd": float(np.std(accs)),
                    "fit_seconds": float(np.mean(secs)),
                }
            )
            print(
                f"  n={n:<6} {name:<10} accuracy {rows[-1]['accuracy']:.3f}  "
                f"fit {rows[-1]['fit_seconds']:.1f}s",
                flush=True,
            )
    return rows


def print_table(rows, methods):
    sizes = sorted({r["size"] for r in rows})
    get = {(r["size"], r["method"]): r for r in rows}
    header = "| n train | " + " | ".join(methods) + " |"
    print("\nAccuracy (training seconds)\n")
    print(header)
    print("|" + "---|" * (len(methods) + 1))
    for n in sizes:
        cells = [f"{get[n, m]['accuracy']:.3f} ({get[n, m]['fit_seconds']:.1f}s)" for m in methods]
        print(f"| {n} | " + " | ".join(cells) + " |")


def plot(rows, methods, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for m in methods:
        mine = sorted((r for r in rows if r["method"] == m), key=lambda r: r["size"])
        sizes = [r["size"] for r in mine]
        acc = [r["accuracy"] for r in mine]
        secs = [max(r["fit_seconds"], 1e-2) for r in mine]
        left.plot(sizes, acc, marker="o", label=m)
        right.plot(secs, acc, marker="o", label=m)
        for n, x, y in zip(sizes, secs, acc):
            right.annotate(
                f"n={n}", (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7, alpha=0.7
            )
    all_sizes = sorted({r["size"] for r in rows})
    left.set(
        xscale="log",
        xlabel="training documents",
        ylabel="test accuracy",
        title="accuracy vs training size",
    )
    left.set_xticks(all_sizes, [str(n) for n in all_sizes])
    left.minorticks_off()
    right.set(
        xscale="log",
        xlabel="training time (s, log)",
        ylabel="test accuracy",
        title="accuracy vs training time",
    )
    for ax in (left, right):
        ax.grid(alpha=0.3)
    left.legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    # Some test sentences exceed max_length; the truncation notice would repeat per fit.
    warnings.filterwarnings("ignore", message=".*longer than max_length")
    start = time.perf_counter()
    rows = run(args)
    print_table(rows, args.methods)
    if args.csv:
        import csv

        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    plot(rows, args.methods, args.out, f"{args.data}: transfer learning vs labelled data")
    print(f"\nplot written to {args.out}; total {time.perf_counter() - start:.0f}s")
    return rows


if __name__ == "__main__":
    main()
