"""``embedxfer evaluate --per-class N ...``: methods that learn from a few labels per class.

Frozen vectors, ``TransformerClassifier(unfreeze="all")`` and
``ContrastiveEmbedder`` learn from the labels differently, so they cannot be
compared by encoding the corpus once: each is fitted on ``N`` labelled
documents per class, drawn several times, and scored on a fixed held-out set
(the SetFit paper's protocol).
"""

import time

import numpy as np
from sklearn.metrics import f1_score

from ._errors import CLIError
from ._options import positive_int
from ._report import format_table, plot_learning_curves, write_json

FEW_SHOT_METHODS = ("frozen", "transformer", "contrastive")
_DESCRIPTIONS = {
    "frozen": "LogisticRegression on frozen SentenceEmbedder vectors",
    "transformer": 'TransformerClassifier(unfreeze="all")',
    "contrastive": "ContrastiveEmbedder + LogisticRegression",
}
_MAX_TEST = 1000


def add_few_shot_options(p):
    """The ``--per-class`` options of ``evaluate``."""
    p.add_argument(
        "--per-class",
        nargs="+",
        type=positive_int,
        metavar="N",
        help="instead of cross-validating embeddings, fit methods that learn from the "
        "labels on N labelled documents per class (e.g. 8 16 32 64) and score them on a "
        "fixed held-out set",
    )
    p.add_argument(
        "--few-shot-methods",
        nargs="+",
        choices=FEW_SHOT_METHODS,
        default=list(FEW_SHOT_METHODS),
        metavar="M",
        help=f"with --per-class: {', '.join(FEW_SHOT_METHODS)} (default: all)",
    )
    p.add_argument(
        "--draws",
        type=positive_int,
        default=3,
        metavar="K",
        help="with --per-class: random draws of the training documents (default: 3)",
    )
    p.add_argument(
        "--encoder",
        default="all-MiniLM-L6-v2",
        metavar="M",
        help="with --per-class: the transformer encoder every method uses (default: %(default)s)",
    )


def split_few_shot(y, per_class, draws, seed):
    """The fixed test rows, and the training rows of every ``(n, draw)``.

    The test set is a stratified share of the data, at most 1,000 rows, kept
    aside before any draw; each draw takes ``n`` rows of every class from the
    rest.
    """
    y = np.asarray(y)
    classes, counts = np.unique(y, return_counts=True)
    largest = max(per_class)
    if len(classes) < 2:
        raise CLIError(f"the labels hold a single class ({classes[0]!r}); need at least two.")
    if counts.min() < largest + 2:
        raise CLIError(
            f"class {classes[counts.argmin()]!r} has {counts.min()} documents; --per-class "
            f"{largest} needs {largest + 2} or more per class (training and test)."
        )
    rng = np.random.default_rng(seed)
    share = min(0.5, _MAX_TEST / len(y))
    test = np.concatenate(
        [
            rng.choice(
                np.flatnonzero(y == c),
                max(1, min(int(round(share * k)), k - largest)),
                replace=False,
            )
            for c, k in zip(classes, counts)
        ]
    )
    pool = np.setdiff1d(np.arange(len(y)), test)
    train = {}
    for n in per_class:
        for draw in range(draws):
            pick = np.random.default_rng([seed, n, draw])
            train[n, draw] = np.concatenate(
                [pick.choice(pool[y[pool] == c], n, replace=False) for c in classes]
            )
    return np.sort(test), train


def _model(method, encoder, seed, device):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from .. import ContrastiveEmbedder, SentenceEmbedder, TransformerClassifier

    head = LogisticRegression(max_iter=3000)
    if method == "frozen":
        return make_pipeline(
            SentenceEmbedder(model=encoder, normalize=True, device=device, cache=True), head
        )
    if method == "transformer":
        return TransformerClassifier(
            model=encoder, unfreeze="all", random_state=seed, device=device
        )
    return make_pipeline(ContrastiveEmbedder(model=encoder, random_state=seed, device=device), head)


def run_few_shot(config, sample):
    """Fit every method on every draw, print the table (and the JSON); return 0."""
    per_class = sorted(set(config.per_class))
    test, train = split_few_shot(sample.y, per_class, config.draws, config.seed)
    texts = np.asarray(sample.texts, dtype=object)
    x_test, y_test = texts[test].tolist(), sample.y[test]
    print(
        f"Data: {sample.source}: {len(sample.texts)} documents, {len(sample.names)} classes; "
        f"fixed test set of {len(test)} documents (stratified, seed {config.seed})."
    )
    print(
        f"Protocol: N labelled documents per class drawn {config.draws} times from the rest; "
        f"encoder {config.encoder}; methods: "
        + "; ".join(_DESCRIPTIONS[m] for m in config.few_shot_methods)
        + "."
    )
    rows = []
    for n in per_class:
        for method in config.few_shot_methods:
            scores, f1s, seconds = [], [], []
            for draw in range(config.draws):
                rows_n = train[n, draw]
                model = _model(method, config.encoder, config.seed + draw, config.device)
                start = time.perf_counter()
                model.fit(texts[rows_n].tolist(), sample.y[rows_n])
                seconds.append(time.perf_counter() - start)
                predicted = model.predict(x_test)
                scores.append(float(np.mean(predicted == y_test)))
                f1s.append(float(f1_score(y_test, predicted, average="macro")))
                if not config.quiet:
                    print(f"  n={n} {method} draw {draw}: accuracy {scores[-1]:.3f}", flush=True)
            rows.append(
                {
                    "per_class": n,
                    "method": method,
                    "accuracy": float(np.mean(scores)),
                    "accuracy_std": float(np.std(scores)),
                    "f1_macro": float(np.mean(f1s)),
                    "f1_macro_std": float(np.std(f1s)),
                    "fit_s": float(np.mean(seconds)),
                    "scores": scores,
                }
            )
    print(
        format_table(
            rows,
            [
                ("per_class", "per class", "d"),
                ("method", "method", "s"),
                ("accuracy", "accuracy", ".3f"),
                ("accuracy_std", "std", ".3f"),
                ("fit_s", "fit s", ".1f"),
            ],
        )
    )
    if config.json:
        write_json(
            config.json,
            {"data": sample.source, "n_test": len(test), "draws": config.draws, "results": rows},
        )
        print(f"Results written to {config.json}")
    if config.plot:
        plot_learning_curves(
            _curves(rows, config.few_shot_methods),
            config.plot,
            f"{sample.source}: {len(test)} test documents",
            xlabel="labelled documents per class",
            over="draws",
        )
        print(f"Learning-curve plot (accuracy and macro-F1) written to {config.plot}")
    return 0


def _curves(rows, methods):
    """The table's rows as ``plot_learning_curves``'s curves: one per method, by N."""
    curves = {}
    for method in methods:
        found = [r for r in rows if r["method"] == method]
        curves[_DESCRIPTIONS[method]] = {
            "sizes": [r["per_class"] for r in found],
            **{
                key: np.array([r[key] for r in found])
                for key in ("accuracy", "accuracy_std", "f1_macro", "f1_macro_std")
            },
        }
    return curves
