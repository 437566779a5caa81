"""``embedxfer evaluate``: compare embedders on labelled data; the run ``demo`` shares."""

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._core.optional import import_optional, install_hint
from ..datasets import load_csv, load_sms_spam
from ._availability import check_available, missing_extra
from ._classifiers import CLASSIFIERS, check_cv, describe_classifier, stratified_subsample
from ._classify import run_classify
from ._cluster import run_cluster
from ._clusterers import CLUSTERERS, check_cluster_size
from ._config import EvaluateConfig
from ._encode import encode_corpus
from ._errors import CLIError
from ._few_shot import add_few_shot_options, run_few_shot
from ._images import cmd_evaluate_images, is_image_folder
from ._model_names import DEMO_MODELS, parse_model
from ._options import add_kind_option
from ._output import check_report_paths
from ._progress import Progress, format_duration, report_warnings
from ._report import write_json

PACKAGED_DATA = {"sms_spam": "SMS Spam Collection v.1 (packaged with embedxfer, CC BY 4.0)"}


def add_parser(sub, parents):
    """Add the ``evaluate`` subcommand to the subparsers ``sub``."""
    p = sub.add_parser(
        "evaluate",
        parents=parents,
        help="compare embedders on labelled data (cross-validation, learning curve)",
        description="Cross-validated scores of a downstream estimator on each embedder's "
        "vectors, beside a TF-IDF baseline. Pretrained embedders learn nothing from the "
        "labels, so each document is encoded once per embedder and the estimator is "
        "cross-validated on the vectors; TF-IDF is refitted inside every fold.",
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="D",
        help="a CSV, TSV, JSONL or Parquet file with text and label columns, "
        "'sms_spam' for the dataset shipped with embedxfer, or a folder of images "
        "with one sub-folder per class",
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=list(DEMO_MODELS),
        metavar="M",
        help="models to compare, NAME[:OPTIONS] with options such as mean+max, "
        "sif, cls (default: %(default)s)",
    )
    add_kind_option(p, "embedder type for names that are not known (default: auto)")
    _add_task_options(p)
    add_few_shot_options(p)
    p.set_defaults(func=cmd_evaluate, config=EvaluateConfig)


def _add_task_options(p):
    p.add_argument("--task", choices=("classify", "cluster"), default="classify")
    p.add_argument(
        "--estimators",
        nargs="+",
        metavar="E",
        help=f"classify: {', '.join(CLASSIFIERS)} (default: logreg); "
        f"cluster: {', '.join(CLUSTERERS)} (default: kmeans)",
    )
    p.add_argument(
        "--choose-k",
        choices=("silhouette", "stability"),
        default="silhouette",
        help="cluster: how the number of clusters is chosen without the labels: the mean "
        "silhouette, or the stability of the clusters over random subsamples (default: "
        "%(default)s)",
    )
    p.add_argument(
        "--plot",
        metavar="PNG",
        help="write the learning curve (classify) or 2-D maps (cluster) as PNG",
    )


def cmd_evaluate(config):
    """``embedxfer evaluate``: compare embedders on a labelled dataset."""
    check_report_paths(config.data, {"--json": config.json, "--plot": config.plot})
    if is_image_folder(config.data):
        return cmd_evaluate_images(config)
    if config.per_class:
        if config.plot:
            _check_plot(config.plot)
        return run_few_shot(config, _load_sample(config, config.max_docs))
    return run_evaluation(config, config.models, max_docs=config.max_docs, plot=config.plot)


def load_labelled(data, text_column="text", label_column="label"):
    """``(texts, labels, target_names, description)`` for ``--data``."""
    if data in PACKAGED_DATA:
        bunch = load_sms_spam()
        return bunch.data, bunch.target, bunch.target_names, PACKAGED_DATA[data]
    path = Path(data)
    if not path.exists() and os.sep not in data and "." not in data:
        raise CLIError(
            f"--data {data!r} is neither a file nor a packaged dataset; packaged: "
            f"{', '.join(PACKAGED_DATA)}; or pass a CSV, TSV, JSONL or Parquet file."
        )
    bunch = load_csv(path, text_column=text_column, label_column=label_column)
    return bunch.data, bunch.target, None, str(path)


@dataclass
class LabelledSample:
    """The documents evaluated: a stratified sample of the labelled data."""

    texts: list
    y: np.ndarray
    names: list  # class names, in the order of np.unique(y)
    counts: np.ndarray  # documents per class
    source: str  # how the data is named in reports
    n_total: int  # documents before sampling


def run_evaluation(config, model_names, *, max_docs, plot, curve_points=7, skip_unavailable=False):
    """Encode a labelled sample with each model, then classify or cluster; print the report.

    With ``skip_unavailable``, models whose optional libraries are not
    installed are left out with a note naming the extra, instead of failing.
    """
    started = time.perf_counter()
    estimators = _estimators(config.task, config.estimators)
    if skip_unavailable:
        model_names = _installed_models(model_names, config.kind)
    specs = _model_specs(model_names, config.kind)
    if plot is not None:
        _check_plot(plot)
    sample = _load_sample(config, max_docs)
    if config.task == "cluster":
        check_cluster_size(estimators, len(sample.texts))
    splitter = check_cv(sample.y, config.cv) if config.task == "classify" else None
    _print_protocol(config, sample, estimators)
    sys.stdout.flush()
    progress = Progress("", quiet=config.quiet)
    encoded = _encode_models(config, specs, sample.texts, progress)
    if config.task == "classify":
        report = run_classify(
            config, specs, encoded, sample, splitter, estimators, progress, plot, curve_points
        )
    else:
        report = run_cluster(config, specs, encoded, sample, estimators, progress, plot)
    if config.json:
        report.update(
            data=sample.source,
            n_documents=len(sample.texts),
            classes=dict(zip(sample.names, sample.counts.tolist())),
            seed=config.seed,
        )
        write_json(config.json, report)
        print(f"Results written to {config.json}")
    print(f"Total time: {format_duration(time.perf_counter() - started)}")
    return 0


def _estimators(task, names):
    """The downstream estimators asked for (the task's first by default), checked."""
    choices = CLASSIFIERS if task == "classify" else CLUSTERERS
    estimators = names or [choices[0]]
    bad = [e for e in estimators if e not in choices]
    if bad:
        raise CLIError(
            f"--estimators {bad[0]!r} is not a {task} estimator; choose from {', '.join(choices)}."
        )
    return estimators


def _model_specs(model_names, kind):
    """The models to compare, resolved, each named once and available."""
    specs = [parse_model(name, kind) for name in model_names]
    labels = [spec.label for spec in specs]
    if len(set(labels)) != len(labels):
        raise CLIError(f"--models names a model twice: {labels}.")
    for spec in specs:
        check_available(spec)
    return specs


def _installed_models(model_names, kind):
    """``model_names`` without those this install cannot run, each left out with a note."""
    kept = []
    for name in model_names:
        spec = parse_model(name, kind)
        missing = missing_extra(spec)
        if missing is None:
            kept.append(name)
            continue
        module, extra = missing
        print(
            f"note: skipping {spec.label}: it needs {module} ({install_hint(extra)}).",
            file=sys.stderr,
        )
    return kept


def _check_plot(plot):
    import_optional("matplotlib", "--plot needs matplotlib; pip install matplotlib")
    if Path(plot).suffix.lower() != ".png":
        raise CLIError(f"--plot {plot}: the plot is written as PNG; end the name in .png.")


def _load_sample(config, max_docs):
    """``--data``, or a stratified sample of ``max_docs`` of its documents."""
    texts, y, target_names, source = load_labelled(
        config.data, config.text_column, config.label_column
    )
    n_total = len(texts)
    index = stratified_subsample(y, max_docs, random_state=config.seed)
    texts = [texts[i] for i in index]
    y = np.asarray(y)[index]
    classes, counts = np.unique(y, return_counts=True)
    names = [str(target_names[c]) if target_names is not None else str(c) for c in classes]
    return LabelledSample(texts, y, names, counts, source, n_total)


def _print_protocol(config, sample, estimators):
    """Print what the data is and how the models are compared."""
    n_total = sample.n_total
    description = (
        f"{len(sample.texts)} of {n_total} documents (stratified sample, seed {config.seed})"
        if len(sample.texts) < n_total
        else f"{n_total} documents"
    )
    print(
        f"Data: {sample.source}: {description}; {len(sample.names)} classes: "
        + ", ".join(f"{name} {count}" for name, count in zip(sample.names, sample.counts))
    )
    if config.task == "classify":
        print(
            f"Protocol: {config.cv}-fold stratified cross-validation; classifier: "
            + "; ".join(describe_classifier(e) for e in estimators)
            + "."
        )
        print(
            "Each embedder encodes every document once (it learns nothing from the labels) "
            "and the classifier is cross-validated on those vectors; TF-IDF is refitted "
            "inside every fold."
        )
    else:
        print(
            f"Protocol: cluster the L2-normalised vectors into {len(sample.names)} clusters (one "
            "per true label; HDBSCAN finds its own number, on 5 principal components) and "
            "score them against the labels. TF-IDF is reduced to 100 dimensions by "
            "truncated SVD (LSA)."
        )


def _encode_models(config, specs, texts, progress):
    """Each embedder's vectors of ``texts`` (TF-IDF is fitted later, inside the folds)."""
    encoded = {}
    for spec in specs:
        if spec.kind == "tfidf":
            continue
        progress.label = spec.label
        progress.note(f"encoding with {spec.label} ({spec.kind}) ...")
        result = encode_corpus(
            spec,
            texts,
            progress=progress,
            batch_size=config.batch_size,
            device=config.device,
            cache=config.cache,
            allow_pickle=config.allow_pickle,
        )
        report_warnings(result, progress, spec.label, len(texts))
        encoded[spec.label] = result
    return encoded
