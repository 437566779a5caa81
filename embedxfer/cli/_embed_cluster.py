"""``embedxfer embed ... --scheduler``: embed many files on a Dask cluster.

One Parquet file a partition.

The command line's single-machine ``embed`` writes one output file; with
``--scheduler ADDRESS`` (an existing ``distributed`` scheduler) or
``--scheduler local:N`` (a ``LocalCluster`` of N worker processes) the
inputs are read as a Dask DataFrame and :func:`embedxfer.dask.embed_to_parquet`
writes ``OUTPUT/part-00000.parquet`` ... on the workers, resumable.
"""

import glob
import os
import time
from pathlib import Path

from .._core.embedder import CORPUS_FIT_STATISTICS, CORPUS_FIT_WHOLE
from .._core.optional import install_hint
from ..datasets import ColumnNotFoundError
from ..datasets._files import file_kind
from ._encode import build_embedder
from ._errors import CLIError, Terminated
from ._model_names import embedding_spec
from ._progress import Progress, format_duration, format_rate

READERS = ("csv", "tsv", "jsonl", "parquet")


def add_options(parser):
    """The ``embed`` subcommand's cluster options (and its further inputs)."""
    parser.add_argument(
        "more_inputs",
        nargs="*",
        metavar="INPUT",
        help="with --scheduler: more input files or quoted globs",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="embed on a Dask cluster: a scheduler address "
        "(tcp://host:8786) or local:N for N local worker processes; "
        "-o is then a folder of one Parquet file per partition, and a "
        "rerun writes only the partitions that are missing",
    )
    parser.add_argument(
        "--id-column",
        metavar="C",
        help="with --scheduler: a column written beside the vectors "
        "(default: 'row', each document's position in the input)",
    )
    parser.add_argument(
        "--blocksize",
        default="64MB",
        metavar="SIZE",
        help="with --scheduler: input bytes per partition (default: 64MB; "
        "Parquet files split between row groups)",
    )


def wanted(config):
    """Whether ``embed``'s arguments ask for the cluster path."""
    return bool(config.scheduler is not None or config.more_inputs or config.id_column)


def cmd_embed_on_cluster(config):
    """Run ``embed`` with ``--scheduler``; returns the exit status."""
    if config.scheduler is None:
        raise CLIError(
            "several inputs and --id-column need --scheduler (local:N for this "
            "machine); without it embed reads one file into one output."
        )
    edask = _import_dask()
    paths = expand_inputs([config.input, *config.more_inputs])
    spec = embedding_spec(config, ".")
    if config.cache is not None:
        raise CLIError(
            "--cache does not apply with --scheduler: the output folder itself "
            "resumes (finished partitions are kept)."
        )
    out = Path(config.output)
    if out.exists() and not out.is_dir():
        raise CLIError(f"with --scheduler, -o names a folder; {out} is a file.")
    refuse_inputs_in_output(paths, out)
    note = Progress(spec.label, quiet=config.quiet).note
    embedder = build_embedder(
        spec,
        batch_size=config.batch_size,
        device=config.device,
        normalize=config.normalize,
        allow_pickle=config.allow_pickle,
    )
    if embedder._corpus_fit() == CORPUS_FIT_WHOLE:
        raise CLIError(
            f"{spec.label} learns from every document at once, which --scheduler does not "
            "gather on one machine; embed without --scheduler."
        )
    with _connect(config.scheduler) as client:
        frame = read_inputs(paths, config.column or "text", config.id_column, config.blocksize)
        n_workers = len(client.scheduler_info(n_workers=-1)["workers"])
        note(
            f"{len(paths)} input file(s), {frame.npartitions} partitions, on {n_workers} "
            f"worker(s) at {client.scheduler.address}"
        )
        summary = _embed_partitions(config, edask, spec, embedder, frame, paths, client, note)
    _report(summary, out, note)
    return 0


def _import_dask():
    """``embedxfer.dask``, or an ImportError naming the extra."""
    try:
        import dask.dataframe  # noqa: F401
        import distributed  # noqa: F401

        from .. import dask as edask
    except ImportError as err:
        raise ImportError(f"--scheduler needs Dask ({err}); {install_hint('dask')}") from None
    return edask


def _embed_partitions(config, edask, spec, embedder, frame, paths, client, note):
    """Fit ``embedder`` and write the missing partitions; the summary of the run."""
    out = Path(config.output)
    started = time.perf_counter()
    try:
        if embedder._corpus_fit() == CORPUS_FIT_STATISTICS:
            edask.fit(embedder, frame, column="text")  # corpus statistics on the workers
        else:
            embedder.fit(["fit needs no corpus for this embedder"])
        note(
            f"{spec.label}: {embedder.n_features_out_} dimensions, ready in "
            f"{time.perf_counter() - started:.1f}s"
        )
        job = {
            "inputs": [_file_identity(p) for p in paths],
            "column": config.column or "text",
            "blocksize": config.blocksize,
            "model": spec.label,
        }
        return edask.embed_to_parquet(
            embedder,
            frame,
            out,
            column="text",
            id_column=config.id_column,
            job=job,
            client=client,
            progress=_partition_progress(config.quiet, note),
        )
    except edask.ModelUnavailableError as err:
        raise CLIError(str(err)) from None
    except (KeyboardInterrupt, Terminated):
        note(f"finished partitions are kept in {out}; run the same command again to resume.")
        raise


def _partition_progress(quiet, note):
    """The ``progress`` callback of ``embed_to_parquet``: a line per finished partition."""

    def progress(done, total, documents, seconds):
        if quiet:
            return
        rate = documents / seconds if seconds > 0 else float("nan")
        note(
            f"  partitions {done}/{total}, {documents} documents this run, "
            f"{format_rate(rate)} docs/s, {format_duration(seconds)} elapsed"
        )

    return progress


def _report(summary, out, note):
    """Note what the run wrote."""
    if not summary["written"]:
        note(f"all {summary['n_partitions']} partitions are already in {out}; nothing to do.")
        return
    seconds = summary["seconds"]
    rate = summary["documents"] / seconds if seconds > 0 else float("nan")
    skipped = f" ({summary['skipped']} already there)" if summary["skipped"] else ""
    note(
        f"wrote {summary['written']} of {summary['n_partitions']} partitions to {out}"
        f"{skipped}: {summary['documents']} documents in {seconds:.1f}s "
        f"({format_rate(rate)} docs/s)"
    )
    if summary["n_empty"]:
        note(
            f"  note: {summary['n_empty']} of {summary['documents']} documents got a zero "
            "vector (empty, or no word in the vocabulary)."
        )


def expand_inputs(patterns):
    """Files named or matched by ``patterns`` (globs), in order, each once."""
    paths = []
    for pattern in patterns:
        if pattern == "-":
            raise CLIError("--scheduler reads files, not stdin.")
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise CLIError(f"no file matches {pattern!r}.")
        for match in matches:
            path = Path(match)
            if not path.is_file():
                raise FileNotFoundError(f"input {match} is not a file.")
            kind = file_kind(path)
            if kind not in READERS:
                raise CLIError(
                    f"{path}: --scheduler reads Parquet, CSV, TSV or JSON Lines, not {kind} files."
                )
            if path not in paths:
                paths.append(path)
    return paths


def refuse_inputs_in_output(paths, out):
    """Refuse an input inside the output folder, or the same file as one in it."""
    folder = out.resolve()
    written = [p for p in out.iterdir() if p.is_file()] if out.is_dir() else []
    for path in paths:
        inside = folder == path.resolve() or folder in path.resolve().parents
        if inside or any(os.path.samefile(path, w) for w in written):
            raise CLIError(
                f"input {path} is inside the output folder {out}, whose files the job "
                "writes; move the input or choose another output folder."
            )


def read_inputs(paths, column, id_column, blocksize):
    """One Dask DataFrame with a ``text`` column (and ``id_column``), in input order."""
    import dask.dataframe as dd

    wanted = [column] + ([id_column] if id_column and id_column != column else [])
    frames = []
    for path in paths:
        kind = file_kind(path)
        if kind == "parquet":
            frame = dd.read_parquet(
                str(path), blocksize=_bytes(blocksize), split_row_groups="infer"
            )
        elif kind == "jsonl":
            frame = dd.read_json(str(path), lines=True, blocksize=_bytes(blocksize))
        else:
            frame = dd.read_csv(
                str(path),
                blocksize=_bytes(blocksize),
                sep="\t" if kind == "tsv" else ",",
                dtype={column: "object"},
                keep_default_na=False,
            )
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise ColumnNotFoundError(
                f"{path} has no column {missing[0]!r}; its columns are "
                f"{', '.join(map(str, frame.columns))}. Choose one with --column / --id-column."
            )
        frame = frame[wanted]
        if column != "text":
            frame = frame.rename(columns={column: "text"})
        frames.append(frame)
    return frames[0] if len(frames) == 1 else dd.concat(frames)


def _bytes(size):
    from dask.utils import parse_bytes

    return parse_bytes(size)


def _file_identity(path):
    stat = Path(path).stat()
    return [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]


class _connect:
    """A ``distributed.Client`` for ``local:N`` (a LocalCluster of N processes) or an address."""

    def __init__(self, scheduler):
        self.scheduler = scheduler

    def __enter__(self):
        from distributed import Client

        self.cluster = None
        if self.scheduler == "local" or self.scheduler.startswith("local:"):
            text = self.scheduler.partition(":")[2] or str(os.cpu_count() or 1)
            if not text.isdigit() or int(text) < 1:
                raise CLIError(f"--scheduler {self.scheduler}: expected local:N with N >= 1.")
            from ..dask import local_cluster

            self.cluster = local_cluster(int(text))
            self.client = Client(self.cluster)
        else:
            try:
                self.client = Client(self.scheduler, timeout="20s")
            except OSError as err:
                raise CLIError(
                    f"cannot reach the Dask scheduler {self.scheduler} ({err})."
                ) from None
        return self.client

    def __exit__(self, *exc):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        return False
