"""``embedxfer demo``: GloVe, MiniLM and TF-IDF on the SMS spam data shipped with embedxfer."""

import sys

from .._core.optional import install_hint
from ._config import DemoConfig, EvaluateConfig
from ._evaluate import run_evaluation
from ._installed import has_module
from ._model_names import DEMO_MODELS

DEMO_PLOT = "embedxfer-demo.png"


def add_parser(sub, parents):
    """Add the ``demo`` subcommand to the subparsers ``sub``."""
    p = sub.add_parser(
        "demo",
        parents=parents,
        help="the main job: GloVe, MiniLM and TF-IDF on real SMS spam data",
        description="Compare the packaged GloVe 6B 50d vectors, the packaged "
        "all-MiniLM-L6-v2 sentence model and a TF-IDF baseline on the SMS Spam Collection "
        "shipped with embedxfer (or --data), on a stratified sample of 2,000 documents "
        "(--max-docs): cross-validated accuracy and macro-F1, timings, and a learning curve "
        "(PNG). Runs offline.",
    )
    p.add_argument(
        "--data",
        metavar="D",
        default="sms_spam",
        help="labelled data: 'sms_spam' (default, shipped) or a CSV/JSONL/Parquet file",
    )
    p.add_argument(
        "--plot",
        metavar="PNG",
        default=DEMO_PLOT,
        help="where to write the learning curve (default: %(default)s)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="300 documents, 3 folds: a check that everything works, in well under a minute",
    )
    p.set_defaults(func=cmd_demo, config=DemoConfig, max_docs_default=2000)


def cmd_demo(config):
    """``embedxfer demo``: GloVe 6B 50d, MiniLM and TF-IDF on the packaged SMS spam data."""
    max_docs = config.max_docs or (300 if config.quick else config.max_docs_default)
    plot, quick = config.plot, config.quick
    cv = 3 if quick and config.cv == 5 else config.cv
    config = EvaluateConfig.from_config(config, cv=cv, models=DEMO_MODELS)
    if plot == DEMO_PLOT and not has_module("matplotlib"):
        print(
            f"note: matplotlib is not installed, so no plot is written ({install_hint('plot')}).",
            file=sys.stderr,
        )
        plot = None
    return run_evaluation(
        config,
        list(DEMO_MODELS),
        max_docs=max_docs,
        plot=plot,
        curve_points=5 if quick else 7,
        skip_unavailable=True,
    )
