"""``evaluate --task classify``: cross-validated scores, learning curves and a summary."""

import numpy as np

from ._classifiers import (
    cross_validate_classifier,
    learning_curve,
    learning_curve_sizes,
    majority_baseline,
)
from ._report import format_table, jsonable, plot_learning_curves, short_source

_SCORE_NOTE = (
    "load s: loading the model (fit); encode s: embedding all documents once; "
    "cv s: cross-validation (for TF-IDF including vectorising in every fold); "
    "± one standard deviation over folds."
)


def run_classify(
    config, specs, encoded, sample, splitter, estimators, progress, plot, curve_points
):
    """Score every estimator on every model, print the tables; the JSON report."""
    texts_array = np.asarray(sample.texts, dtype=object)
    rows = [
        _score_row(estimator, spec, encoded, sample, texts_array, splitter, progress)
        for estimator in estimators
        for spec in specs
    ]
    majority = majority_baseline(sample.y, splitter)
    rows.append({"model": "(majority class)", "kind": "-", "estimator": "-", **majority})
    _print_scores(rows, multiple=len(estimators) > 1)

    estimator = estimators[0]
    y = sample.y
    n_train = len(y) - int(np.ceil(len(y) / config.cv))
    sizes = learning_curve_sizes(n_train, len(np.unique(y)), points=curve_points)
    curves = {}
    for spec in specs:
        progress.note(f"learning curve of {spec.label} ...")
        X = texts_array if spec.kind == "tfidf" else encoded[spec.label]["X"]
        curves[spec.label] = learning_curve(estimator, spec.kind, X, y, splitter, sizes)
    _print_curves(curves, sizes, estimator, config.cv)
    if plot is not None:
        title = (
            f"{short_source(sample.source)}: {len(y)} documents, {config.cv}-fold CV, {estimator}"
        )
        plot_learning_curves(curves, plot, title, reference=majority)
        print(f"\nLearning-curve plot (accuracy and macro-F1) written to {plot}")
    summary = _summary(rows, curves, sizes, estimator)
    if summary:
        print("\n" + summary)
    return {
        "task": "classify",
        "cv": config.cv,
        "results": [jsonable(row) for row in rows],
        "learning_curve": {label: jsonable(curve) for label, curve in curves.items()},
    }


def _score_row(estimator, spec, encoded, sample, texts_array, splitter, progress):
    """Cross-validated scores and costs of ``estimator`` on one model's vectors."""
    progress.note(f"cross-validating {estimator} on {spec.label} ...")
    y = sample.y
    if spec.kind == "tfidf":
        scores = cross_validate_classifier(estimator, "tfidf", texts_array, y, splitter)
        dim = _tfidf_width(sample.texts)
        row = {"dim": dim, "load_s": None, "encode_s": None, "docs_s": None}
    else:
        result = encoded[spec.label]
        scores = cross_validate_classifier(estimator, spec.kind, result["X"], y, splitter)
        row = {
            "dim": result["X"].shape[1],
            "load_s": result["load_s"],
            "encode_s": result["encode_s"],
            "docs_s": len(sample.texts) / max(result["encode_s"], 1e-9),
        }
    row.update(scores, model=spec.label, kind=spec.kind, estimator=estimator)
    return row


def _print_scores(rows, multiple):
    columns = [("model", "model", "s"), ("kind", "kind", "s")]
    if multiple:
        columns.append(("estimator", "classifier", "s"))
    columns += [
        ("dim", "dim", ",d"),
        ("load_s", "load s", ".1f"),
        ("encode_s", "encode s", ".1f"),
        ("docs_s", "docs/s", ",.0f"),
        ("cv_s", "cv s", ".1f"),
        ("accuracy", "accuracy", lambda r: f"{r['accuracy']:.3f} ± {r['accuracy_std']:.3f}"),
        ("f1_macro", "macro-F1", lambda r: f"{r['f1_macro']:.3f} ± {r['f1_macro_std']:.3f}"),
    ]
    print()
    print(format_table(rows, columns))
    print()
    print(_SCORE_NOTE)


def _print_curves(curves, sizes, estimator, cv):
    curve_rows = [
        {"model": label, **{f"n{n}": acc for n, acc in zip(curve["sizes"], curve["accuracy"])}}
        for label, curve in curves.items()
    ]
    curve_columns = [("model", "model", "s")] + [(f"n{n}", f"{n}", ".3f") for n in sizes]
    print()
    print(
        f"Learning curve: test accuracy ({estimator}) by number of training documents, "
        f"mean over {cv} folds"
    )
    print(format_table(curve_rows, curve_columns))


def _summary(rows, curves, sizes, estimator):
    """Two plain sentences: who scored best, and who learned most from few labels."""
    scored = [r for r in rows if r["kind"] != "-" and r["estimator"] == estimator]
    if len(scored) < 2:
        return ""
    best = max(scored, key=lambda r: r["f1_macro"])
    lines = [f"Summary: the best macro-F1 is {best['model']}'s ({best['f1_macro']:.3f})"]
    tfidf = next((r for r in scored if r["kind"] == "tfidf"), None)
    if tfidf is not None and tfidf is not best:
        lines[0] += f"; TF-IDF reaches {tfidf['f1_macro']:.3f}"
    lines[0] += "."
    i = min(2, len(sizes) - 1)
    few = sorted(curves.items(), key=lambda item: -item[1]["accuracy"][i])
    lines.append(
        f"With only {sizes[i]} labelled training documents, test accuracy is "
        + ", ".join(f"{label} {curve['accuracy'][i]:.3f}" for label, curve in few)
        + "."
    )
    return "\n".join(lines)


def _tfidf_width(texts):
    from sklearn.feature_extraction.text import TfidfVectorizer

    return len(TfidfVectorizer(sublinear_tf=True).fit(texts).vocabulary_)
