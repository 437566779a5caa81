"""The ``embedxfer`` command line: embed files, compare embedders, run the demo.

Subcommands::

    embedxfer embed --model M INPUT -o OUT.npy|OUT.parquet
    embedxfer evaluate --data D --models glove-6B-50d all-MiniLM-L6-v2 tfidf
    embedxfer demo [--quick]
    embedxfer models

Run ``embedxfer <subcommand> --help`` for the options. Errors print one line
to stderr and exit with status 1 (``--traceback`` shows the full trace).

One module per command (``_embed``, ``_embed_cluster`` for ``embed
--scheduler``, ``_images`` for folders of images, ``_evaluate`` with its
``_classify`` and ``_cluster`` tasks, ``_demo``, ``_models``), the parser
(``_parser``, ``_options``), the reports (``_report``: tables, plots, JSON;
``_progress``) and what the commands share: model names (``_model_names``,
``_availability``), encoding (``_encode``), downstream estimators
(``_classifiers``, ``_clusterers``) and output files (``_output``).
"""

from ._demo import DEMO_PLOT
from ._main import main
from ._parser import build_parser

__all__ = ["main", "build_parser", "DEMO_PLOT"]
