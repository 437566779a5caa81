"""Fitted embedders and pipelines over Dask collections, on a ``distributed`` cluster.

A fitted estimator pickles to a few kilobytes and loads its model once per
process (:mod:`embedxfer._core.registry`), so it travels well: every function here
puts the estimator into the task graph once (one key that every partition
task depends on), each worker process loads the model on its first
partition and keeps it for the rest.

- :func:`transform`, :func:`predict`, :func:`predict_proba`: lazy Dask
  collections partition by partition, same index and order as the input.
- :func:`embed_to_parquet`: one Parquet file per partition, written
  atomically; a rerun redoes only the missing partitions.
- :func:`fit`: ``WordVectorEmbedder``'s corpus statistics (IDF, SIF word
  counts, common components) reduced over the partitions, equal to ``fit`` on
  the whole corpus.
- :func:`check_workers`: load the models on every worker now, so that a
  model missing on one machine fails at once, naming the worker and the path.
- :func:`local_cluster`: a ``LocalCluster`` of single-threaded worker
  processes without Dask's memory-trimming setting, which halves numpy speed.

Needs ``pip install 'embedxfer[dask]'``. ``import embedxfer`` does not import
Dask; this module does.

The plain Dask way works as well, with the same once-per-worker loading::

    vectors = texts.map_partitions(pipeline.predict, meta=("prediction", "i8"))
"""

import hashlib
import json
import os
import socket
import time
import uuid
import warnings
import weakref
from pathlib import Path

import numpy as np

from ._core.artefact import RECORD_FIELDS, file_problem, file_record
from ._core.atomic import process_alive, write_text_atomic
from ._core.embedder import embedders_within
from ._core.locks import LockHeldError, held_lock
from ._core.optional import install_hint
from ._core.param_validation import validate_params
from .exceptions import ModelUnavailableError, OutputFolderError

try:
    import dask
    import dask.dataframe as dd
    import pandas as pd
except ImportError as err:  # pragma: no cover - exercised without the extra
    raise ImportError(f"embedxfer.dask needs Dask ({err}); {install_hint('dask')}") from err

__all__ = [
    "ModelUnavailableError",
    "OutputFolderError",
    "check_workers",
    "embed_to_parquet",
    "fit",
    "local_cluster",
    "predict",
    "predict_proba",
    "transform",
]

MANIFEST = "_embedxfer.json"
# Held by the run writing the folder (Parquet readers skip names starting with "_").
LOCK = "_embedxfer.lock"
# Key of the job fingerprint in each part file's Parquet metadata.
_JOB_KEY = b"embedxfer.job"
# Longest embedder description kept in a part file's metadata.
_MAX_MODEL_CHARS = 500

# This machine, in the names of part temporaries (whose process is judged alive only here).
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
# Age at which another machine's part temporary is taken to be orphaned.
_ORPHAN_AGE = 24 * 3600

# Estimators already prepared in this process (deserialised once per worker).
_READY = weakref.WeakSet()


# -- the public functions ---------------------------------------------------------------


def transform(estimator, data, *, column=None):
    """Lazily transform a Dask collection of texts, partition by partition.

    Parameters
    ----------
    estimator : fitted estimator or Pipeline
        Its ``transform`` takes a list of texts (an embedder, or a pipeline
        starting with one).
    data : dask Series, DataFrame or Bag
        The texts; a DataFrame needs ``column``.
    column : str, default=None
        Text column of a DataFrame (default ``"text"``).

    Returns
    -------
    vectors : dask DataFrame
        One float column per output feature (``get_feature_names_out``), the
        same index and partitions as ``data``.

    Examples
    --------
    >>> import dask.dataframe as dd, pandas as pd
    >>> from embedxfer import WordVectorEmbedder
    >>> import embedxfer.dask as edask
    >>> texts = dd.from_pandas(pd.Series(["a good film", "dull"] * 3), npartitions=2)
    >>> embedder = WordVectorEmbedder("glove-6B-50d").fit(["a good film"])
    >>> edask.transform(embedder, texts).compute().shape
    (6, 50)
    """
    texts = _texts(data, column)
    names = [str(n) for n in _feature_names(estimator)]
    meta = pd.DataFrame({n: pd.Series(dtype=np.float32) for n in names})
    return texts.map_partitions(
        _apply_partition,
        _in_graph(estimator),
        "transform",
        names,
        meta=meta,
        enforce_metadata=False,
    )


def predict(estimator, data, *, column=None):
    """Lazily ``predict`` over a Dask collection of texts (same index and order).

    Parameters
    ----------
    estimator : fitted Pipeline or classifier / clusterer taking texts
        Its ``predict`` takes a list of texts.
    data : dask Series, DataFrame or Bag
        The texts; a DataFrame needs ``column``.
    column : str, default=None
        Text column of a DataFrame (default ``"text"``).

    Returns
    -------
    predictions : dask Series named ``"prediction"``
        One prediction per text, with the index and partitions of ``data``.

    Examples
    --------
    >>> import dask.dataframe as dd, pandas as pd
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from embedxfer import WordVectorEmbedder
    >>> import embedxfer.dask as edask
    >>> pipe = make_pipeline(WordVectorEmbedder("glove-6B-50d"), LogisticRegression())
    >>> pipe = pipe.fit(["a good film", "a dull film"], ["pos", "neg"])
    >>> texts = dd.from_pandas(pd.Series(["good", "dull", "good"]), npartitions=2)
    >>> edask.predict(pipe, texts).compute().tolist()
    ['pos', 'neg', 'pos']
    """
    texts = _texts(data, column)
    classes = getattr(estimator, "classes_", None)
    dtype = np.asarray(classes).dtype if classes is not None else np.int64
    meta = pd.Series(dtype=dtype, name="prediction")
    return texts.map_partitions(
        _apply_partition,
        _in_graph(estimator),
        "predict",
        None,
        meta=meta,
        enforce_metadata=False,
    )


def predict_proba(estimator, data, *, column=None):
    """Lazily ``predict_proba`` over a Dask collection (one column per class).

    Parameters
    ----------
    estimator : fitted Pipeline or classifier taking texts
        Its ``predict_proba`` takes a list of texts.
    data : dask Series, DataFrame or Bag
        The texts; a DataFrame needs ``column``.
    column : str, default=None
        Text column of a DataFrame (default ``"text"``).

    Returns
    -------
    probabilities : dask DataFrame with columns ``classes_`` (as strings)
        One row per text, with the index and partitions of ``data``.

    Examples
    --------
    >>> import dask.dataframe as dd, pandas as pd
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from embedxfer import WordVectorEmbedder
    >>> import embedxfer.dask as edask
    >>> pipe = make_pipeline(WordVectorEmbedder("glove-6B-50d"), LogisticRegression())
    >>> pipe = pipe.fit(["a good film", "a dull film"], ["pos", "neg"])
    >>> texts = dd.from_pandas(pd.Series(["good", "dull", "good"]), npartitions=2)
    >>> list(edask.predict_proba(pipe, texts).compute().columns)
    ['neg', 'pos']
    """
    texts = _texts(data, column)
    names = [str(c) for c in estimator.classes_]
    meta = pd.DataFrame({n: pd.Series(dtype=np.float64) for n in names})
    return texts.map_partitions(
        _apply_partition,
        _in_graph(estimator),
        "predict_proba",
        names,
        meta=meta,
        enforce_metadata=False,
    )


def fit(embedder, data, *, column=None):
    """Fit a ``WordVectorEmbedder`` on a Dask collection without gathering the texts.

    Each partition is tokenised on its worker into corpus statistics
    (document frequencies, word counts, the Gram matrix of pooled vectors),
    which are summed over the partitions; the fitted state then equals
    ``fit`` on the concatenated corpus (components: eigenvectors of the exact
    Gram matrix instead of an SVD of the stacked vectors, equal up to
    floating-point rounding, about 1e-5). SIF / uSIF components with corpus
    word frequencies take a second pass, since the weights depend on the
    whole corpus.

    Parameters
    ----------
    embedder : WordVectorEmbedder
        Fitted in place (its vectors are loaded here too, for their shape).
        A fit that fails or is interrupted leaves it as it was: its previous
        fit whole, or unfitted.
    data : dask Series, DataFrame or Bag
        The training texts; a DataFrame needs ``column``.
    column : str, default=None
        Text column of a DataFrame (default ``"text"``).

    Returns
    -------
    embedder : WordVectorEmbedder
        The same embedder, fitted.

    Examples
    --------
    >>> import dask.dataframe as dd, pandas as pd
    >>> from embedxfer import WordVectorEmbedder
    >>> import embedxfer.dask as edask
    >>> texts = dd.from_pandas(pd.Series(["a good film", "a dull film"] * 4), npartitions=2)
    >>> embedder = edask.fit(WordVectorEmbedder("glove-6B-50d", weighting="tfidf"), texts)
    >>> embedder.transform(["a good film"]).shape
    (1, 50)
    """
    from .text import _corpus_stats
    from .text._word import WordVectorEmbedder

    if not isinstance(embedder, WordVectorEmbedder):
        raise TypeError(
            f"embedxfer.dask.fit fits a WordVectorEmbedder's corpus statistics; got "
            f"{type(embedder).__name__}. Pretrained sentence models learn nothing from the "
            "corpus: fit them on a few documents."
        )
    texts = _texts(data, column)
    validate_params(embedder)
    # Fitted on a copy handed over at the end: a fit that fails or is
    # interrupted leaves the embedder's previous fit whole (or it unfitted).
    work = _corpus_stats.working_copy(embedder)
    _corpus_stats.start_fit(work)  # tokenising needs the resolved settings
    stats = _sum_over_partitions(_corpus_stats.partition_counts, texts, work)
    _corpus_stats.apply_counts(work, stats)
    if _corpus_stats.needs_gram(work):
        # The weights are final now: pool with them, on the workers.
        gram = _sum_over_partitions(_corpus_stats.partition_gram, texts, work)
        _corpus_stats.apply_gram(work, gram)
    return _corpus_stats.adopt(embedder, work)


def embed_to_parquet(
    embedder, data, folder, *, column=None, id_column=None, job=None, client=None, progress=None
):
    """Embed a Dask collection into one Parquet file per partition; resumable.

    Each partition is embedded on a worker and written there to
    ``folder/part-00000.parquet`` (a temporary file renamed into place),
    tagged in its Parquet metadata with the job's fingerprint, the model
    (``embedxfer.model``: the job's ``"model"`` entry, else the embedder's
    repr) and the embedxfer version; the job manifest
    ``folder/_embedxfer.json`` records each finished part's size, checksum
    and row count as it finishes. A rerun with the same job and folder skips
    the parts whose file matches its record: after a crash, a killed worker
    or Ctrl-C only the others are redone. The job includes the input: each
    run reads it once to count and digest every partition (texts and ids),
    so another input is refused, naming the first partition that differs. A
    file in the way that this job did not write (an input, another job's
    part) is never overwritten. One run at a time writes a folder (a lock
    on ``folder/_embedxfer.lock``); a second one is refused, naming the
    first. ``folder`` must be visible to every worker under the same path
    (local disk for a ``LocalCluster``, a shared file system on a real
    cluster).

    Parameters
    ----------
    embedder : fitted estimator with ``transform`` and ``get_feature_names_out``
        The embedder (or pipeline) whose vectors are written.
    data : dask DataFrame or Series
        The texts; a DataFrame needs ``column``.
    folder : str or path-like
        Where the Parquet files go; created if missing.
    column : str, default=None
        Text column of a DataFrame (default ``"text"``).
    id_column : str, default=None
        A column of ``data`` written beside the vectors; by default a
        ``row`` column with each document's position in ``data``.
    job : dict, default=None
        What identifies the job beside the embedder and the input's content
        (e.g. the input files' names and dates); kept in
        ``folder/_embedxfer.json``: a folder holding another job's output is
        refused rather than mixed.
    client : distributed.Client, default=None
        Default: the current client, or Dask's local scheduler if none.
    progress : callable, default=None
        Called as ``progress(partitions_done, n_partitions, documents_done,
        seconds)`` after each partition.

    Returns
    -------
    summary : dict
        ``n_partitions``, ``written`` and ``skipped`` partitions, ``documents``
        embedded in this run, ``seconds`` and ``n_empty`` (all-zero rows).
    """
    if client is None:
        client = _current_client()
    if client is not None:
        with client.as_current():
            return _embed_to_parquet(
                embedder, data, folder, column, id_column, job, client, progress
            )
    return _embed_to_parquet(embedder, data, folder, column, id_column, job, None, progress)


def _embed_to_parquet(embedder, data, folder, column, id_column, job, client, progress):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if id_column is not None and not hasattr(data, "columns"):
        raise ValueError("id_column needs a DataFrame holding that column.")
    try:
        with held_lock(folder / LOCK):
            return _run_job(embedder, data, folder, column, id_column, job, client, progress)
    except LockHeldError as err:
        raise OutputFolderError(
            f"{folder} is being written by another embed_to_parquet run ({err}); wait for "
            "it to finish, or write elsewhere."
        ) from None


def _run_job(embedder, data, folder, column, id_column, job, client, progress):
    """Write the parts ``folder``'s manifest does not prove written; the run's summary."""
    frame = _frame(data, column, id_column)
    parts = frame.to_delayed()
    lengths, digests = _input_identity(parts)
    job_record = {
        "embedder": _fingerprint(embedder),
        "features": [str(n) for n in _feature_names(embedder)],
        "n_partitions": len(parts),
        "id_column": id_column,
        "job": job,
        "lengths": lengths,
        "input": digests,
    }
    job_record = json.loads(json.dumps(job_record))
    job_id = _job_fingerprint(job_record)
    manifest = _read_manifest(folder)
    if manifest is not None:
        _check_same_job(folder, manifest, job_record, job_id)
    else:
        manifest = {**job_record, "job_id": job_id, "parts": {}}
        _write_json(folder / MANIFEST, manifest)
    _remove_orphaned_temporaries(folder)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(int).tolist()
    records = manifest["parts"]
    todo = [i for i in range(len(parts)) if not _complete(folder, i, records.get(str(i)))]
    for i in todo:
        _check_overwritable(_part_path(folder, i), job_id)
    spec = _in_graph(embedder)
    metadata = _part_metadata(embedder, job, job_id)
    tasks = [
        dask.delayed(_write_partition)(
            parts[i],
            spec,
            str(_part_path(folder, i)),
            offsets[i],
            id_column,
            metadata,
            dask_key_name=f"embedxfer-part-{i}-{uuid.uuid4().hex[:8]}",
        )
        for i in todo
    ]
    skipped = len(parts) - len(todo)
    started = time.perf_counter()
    recorder = _PartRecorder(folder / MANIFEST, manifest, todo)
    results = []

    def finished(i, result):
        recorder.add(i, result)
        results.append(result)
        if progress is not None:
            documents = sum(r["rows"] for r in results)
            progress(skipped + len(results), len(parts), documents, time.perf_counter() - started)

    try:
        _compute_parts(tasks, todo, client, finished)
    finally:
        recorder.flush()
    return {
        "n_partitions": len(parts),
        "written": len(todo),
        "skipped": skipped,
        "documents": sum(r["rows"] for r in results),
        "n_empty": sum(r["n_empty"] for r in results),
        "seconds": time.perf_counter() - started,
    }


def _compute_parts(tasks, todo, client, finished):
    """Compute the part-writing ``tasks``; ``finished(i, result)`` as each part is written.

    Each part is reported as it finishes, on a cluster and on Dask's local
    schedulers alike, so an interruption keeps the record of those done.
    """
    if client is not None:
        from distributed import as_completed

        futures = client.compute(tasks)
        index_of = {id(f): i for f, i in zip(futures, todo)}
        for future in as_completed(futures, loop=client.loop):
            finished(index_of[id(future)], future.result())
        return
    from dask.callbacks import Callback

    index_of = {task.key: i for task, i in zip(tasks, todo)}

    def posttask(key, result, dsk, state, worker_id):
        if key in index_of:
            finished(index_of[key], result)

    with Callback(posttask=posttask):
        dask.compute(*tasks)


def local_cluster(n_workers=None, **kwargs):
    """A ``distributed.LocalCluster`` of worker processes, one thread each, tuned for embedding.

    Dask's nannies set ``MALLOC_TRIM_THRESHOLD_=65536`` in every worker,
    which makes glibc serve every large numpy temporary by a fresh ``mmap``:
    word-vector pooling then runs at about half its speed (in one
    measurement, 0.97 s against 0.50 s for 50,000 documents). The cluster made here leaves
    that variable unset (numpy, OpenMP and BLAS stay at one thread per worker).

    Parameters
    ----------
    n_workers : int, default=None
        Worker processes; default one per core.
    **kwargs
        Passed to ``LocalCluster`` (e.g. ``memory_limit``).

    Returns
    -------
    cluster : distributed.LocalCluster
        The running cluster; pass it to ``distributed.Client``.
    """
    from distributed import LocalCluster

    options = {
        "n_workers": n_workers or os.cpu_count() or 1,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
        **kwargs,
    }
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return LocalCluster(**options)


def check_workers(estimator, client=None):
    """Load ``estimator``'s models on every worker now; return their load counts.

    Parameters
    ----------
    estimator : fitted estimator or Pipeline
        Every model it names is loaded, once per worker process.
    client : distributed.Client, default=None
        Default: the current client.

    Returns
    -------
    loads : dict
        Worker address -> ``{registry key: times loaded}`` in that process.

    Raises
    ------
    ModelUnavailableError
        Naming the first worker that cannot load a model, and the path.
    """
    client = client or _current_client()
    if client is None:
        raise ValueError("check_workers needs a distributed Client (none is running).")
    return client.run(_load_here, estimator)


# -- running on the workers ----------------------------------------------------------


def _apply_partition(texts, estimator, method, columns, partition_info=None):
    estimator = _ready_on_worker(estimator)
    number = partition_info["number"] if partition_info else None
    _check_missing(texts, f"partition {number}" if number is not None else "its partition")
    index = texts.index
    if len(texts) == 0:
        result = np.zeros((0, len(columns)) if columns is not None else 0)
    else:
        result = getattr(estimator, method)(texts)
    if hasattr(result, "to_numpy"):  # set_output(transform="pandas")
        result = result.to_numpy()
    if columns is None:
        return pd.Series(np.asarray(result), index=index, name="prediction")
    return pd.DataFrame(np.asarray(result), index=index, columns=columns)


def _part_metadata(embedder, job, job_id):
    """Parquet metadata of every part: the job, the model and the embedxfer version.

    The model is the job's ``"model"`` entry where it has one (the command
    line puts the model's name there), else the embedder's repr.
    """
    from . import __version__

    if isinstance(job, dict) and "model" in job:
        model = str(job["model"])
    else:
        model = " ".join(repr(embedder).split())[:_MAX_MODEL_CHARS]
    return {_JOB_KEY: job_id, b"embedxfer.model": model, b"embedxfer.version": __version__}


def _write_partition(frame, estimator, path, offset, id_column, metadata):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .text._word import EmptyDocumentWarning

    estimator = _ready_on_worker(estimator)
    texts = frame["text"]
    _check_missing(texts, f"{Path(path).name}", offset=offset)
    names = [str(n) for n in _feature_names(estimator)]
    if len(texts):
        with warnings.catch_warnings():
            # Counted in the summary instead (all-zero rows), once for the whole job.
            warnings.simplefilter("ignore", EmptyDocumentWarning)
            vectors = np.asarray(estimator.transform(texts), dtype=np.float32)
    else:
        vectors = np.zeros((0, len(names)), dtype=np.float32)
    if id_column is None:
        ids = pa.array(np.arange(offset, offset + len(texts), dtype=np.int64))
        id_name = "row"
    else:
        ids = pa.array(frame[id_column].to_numpy())
        id_name = str(id_column)
    columns = [ids] + [pa.array(vectors[:, j]) for j in range(vectors.shape[1])]
    table = pa.Table.from_arrays(columns, names=[id_name] + names)
    table = table.replace_schema_metadata(metadata)
    path = Path(path)
    tmp = _part_temporary(path)
    try:
        pq.write_table(table, tmp)
        record = file_record(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return {
        **record,
        "rows": len(texts),
        "n_empty": int(np.count_nonzero(~vectors.any(axis=1))),
    }


def _partition_identity(frame):
    """Row count and digest of one partition's texts (and ids), equal in every process."""
    # hash_pandas_object hashes a string's characters, whatever the string dtype.
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return len(frame), hashlib.sha256(hashes.tobytes()).hexdigest()[:32]


def _part_temporary(path):
    """``.part-00000.parquet.<pid>.<host>.<random>.tmp``: whose it is, to judge an orphan."""
    return path.with_name(f".{path.name}.{os.getpid()}.{_HOST}.{uuid.uuid4().hex[:8]}.tmp")


def _missing_rows(texts):
    """Rows of a partition's ``texts`` that are missing (None, NaN, pandas' NA)."""
    return np.flatnonzero(pd.isna(texts.to_numpy(dtype=object)))


def _check_missing(texts, where, offset=None):
    """Name a missing document by its place in the whole collection, not in the partition."""
    missing = _missing_rows(texts)
    if not len(missing):
        return
    pos = int(missing[0])
    label = texts.index[pos]
    place = f"document {offset + pos}" if offset is not None else f"the document at index {label!r}"
    raise ValueError(_missing_message(place, where, pos, texts.iloc[pos], len(missing)))


def _missing_message(place, where, pos, value, n_missing, before="embedding"):
    return (
        f"{place} ({where}, row {pos} of it) is {value!r} (missing); fill or drop missing "
        f"texts before {before} ({n_missing} in this partition)."
    )


class _MissingText(ValueError):
    """A missing text found while fitting: ``args`` are the partition, row, value, count.

    Raised on a worker, where the partition's offset in the collection is
    unknown; :func:`_sum_over_partitions` turns it into the message.
    """


def _partition_statistics(statistics, texts, embedder, number):
    """``statistics(texts, embedder)`` of partition ``number``, which must have no missing text."""
    missing = _missing_rows(texts)
    if len(missing):
        pos = int(missing[0])
        raise _MissingText(number, pos, texts.iloc[pos], len(missing))
    return statistics(texts, embedder)


def _sum_over_partitions(statistics, texts, embedder):
    """The sum of ``statistics`` over the partitions of ``texts``, computed on the workers."""
    spec = _in_graph(embedder)
    parts = texts.to_delayed()
    tasks = [
        dask.delayed(_partition_statistics)(statistics, part, spec, i)
        for i, part in enumerate(parts)
    ]
    try:
        return dask.compute(_tree_sum(tasks))[0]
    except _MissingText as err:
        number, pos, value, n_missing = err.args
        # Counted only now, to name the document: the earlier partitions' lengths.
        offset = int(sum(texts.partitions[:number].map_partitions(len).compute())) if number else 0
        place = f"document {offset + pos}"
        message = _missing_message(place, f"partition {number}", pos, value, n_missing, "fitting")
        raise ValueError(message) from None


def _ready_on_worker(estimator, worker=None):
    """Resolve ``device="auto"`` here (on the worker) and load the models, once."""
    if estimator in _READY:
        return estimator
    for embedder in embedders_within(estimator):
        embedder._resolve_device_here()
    _load_models(estimator, worker)
    _READY.add(estimator)
    return estimator


def _load_models(estimator, worker=None):
    for embedder in embedders_within(estimator):
        try:
            embedder._load_model()
        except Exception as err:
            raise ModelUnavailableError(
                f"worker {_where(worker)} cannot load the model {embedder._model_reference()!r} "
                f"of {type(embedder).__name__}: {type(err).__name__}: {err}. Every worker needs "
                "the same model files under the same path (or EMBEDXFER_HOME holding them)."
            ) from None


def _load_here(estimator, dask_worker=None):
    from ._core.registry import load_counts

    _ready_on_worker(estimator, dask_worker)
    return {repr(k): n for k, n in load_counts().items()}


def _where(worker=None):
    try:
        from distributed import get_worker

        address = (worker or get_worker()).address
    except (ImportError, ValueError):
        address = "(no worker)"
    return f"{address} (host {socket.gethostname()}, pid {os.getpid()})"


# -- helpers -------------------------------------------------------------------------


def _texts(data, column):
    if isinstance(data, dd.Series):
        return data
    if isinstance(data, dd.DataFrame):
        column = column or "text"
        if column not in data.columns:
            raise ValueError(
                f"no column {column!r} in the DataFrame (columns: {list(data.columns)}); "
                "pass column=..."
            )
        return data[column]
    import dask.bag as db

    if isinstance(data, db.Bag):
        parts = [dask.delayed(_bag_part)(p) for p in data.to_delayed()]
        return dd.from_delayed(parts, meta=pd.Series(dtype=object, name="text"))
    raise TypeError(
        f"expected a dask Series, DataFrame or Bag of texts, got {type(data).__name__}."
    )


def _bag_part(items):
    return pd.Series(list(items), dtype=object, name="text")


def _frame(data, column, id_column):
    texts = _texts(data, column)
    if id_column is None:
        return texts.to_frame(name="text")
    return data[[id_column]].assign(text=texts)


def _in_graph(estimator):
    # One key for the estimator, shared by every partition task: the graph
    # carries its pickle once, and each worker fetches it once.
    return dask.delayed(estimator, pure=True, traverse=False)


def _feature_names(estimator):
    return estimator.get_feature_names_out()


def _fingerprint(embedder):
    for step in embedders_within(embedder):
        return step._cache_fingerprint()
    return dask.base.tokenize(embedder)


def _tree_sum(items):
    items = list(items)
    while len(items) > 1:
        items = [
            dask.delayed(_add)(items[i], items[i + 1]) if i + 1 < len(items) else items[i]
            for i in range(0, len(items), 2)
        ]
    return items[0]


def _add(a, b):
    return a + b


def _part_path(folder, i):
    return Path(folder) / f"part-{i:05d}.parquet"


def _job_fingerprint(job_record):
    blob = json.dumps(job_record, sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def _input_identity(parts):
    """Each partition's row count, and each one's digest (:func:`_partition_identity`)."""
    identities = dask.compute(*[dask.delayed(_partition_identity)(p) for p in parts])
    return [int(n) for n, _ in identities], [digest for _, digest in identities]


def _check_same_job(folder, manifest, job_record, job_id):
    """Refuse a folder holding another job's output, naming another input as such."""
    if manifest.get("job_id") == job_id:
        return
    difference = _input_difference(manifest, job_record["lengths"], job_record["input"])
    if difference is not None:
        raise OutputFolderError(
            f"{folder} holds the vectors of another input ({difference}); write to an empty "
            "folder or delete that one first."
        )
    raise OutputFolderError(
        f"{folder} holds the output of another embedding job (other model or options); "
        "write to an empty folder or delete that one first."
    )


def _input_difference(manifest, lengths, digests):
    """How the input ``manifest`` records differs from this one, or None when it does not."""
    recorded = manifest.get("input")
    if not isinstance(recorded, list):
        return "its manifest records no digest of its input"
    if len(recorded) != len(digests):
        return f"{len(recorded)} partitions there, {len(digests)} now"
    pairs = zip(manifest["lengths"], lengths, recorded, digests)
    for i, (rows_there, rows, digest_there, digest) in enumerate(pairs):
        if rows_there != rows:
            return f"partition {i} had {rows_there} documents, {rows} now"
        if digest_there != digest:
            return f"partition {i} holds other documents"
    return None


def _remove_orphaned_temporaries(folder):
    """Delete part temporaries whose writer is gone; a running writer's are kept.

    A writer on this machine is gone when its process is; one on another
    machine (a shared file system) cannot be checked, so its temporaries go
    once they are a day old.
    """
    now = time.time()
    for tmp in Path(folder).glob(".part-*.tmp"):
        fields = tmp.name.split(".")  # "", part-00000, parquet, pid, host, random, tmp
        pid = int(fields[3]) if len(fields) == 7 and fields[3].isdigit() else None
        here = pid is not None and fields[4] == _HOST
        try:
            old = now - tmp.stat().st_mtime > _ORPHAN_AGE
        except OSError:  # renamed or removed by its writer meanwhile
            continue
        if old or (here and pid != os.getpid() and not process_alive(pid)):
            tmp.unlink(missing_ok=True)


def _complete(folder, i, record):
    """Whether part ``i`` is the file this job wrote: size and checksum as recorded."""
    if not isinstance(record, dict):
        return False
    return file_problem(_part_path(folder, i), record) is None


def _check_overwritable(path, job_id):
    """Refuse to write over a file this job did not write (an input, another job's part)."""
    if not path.exists() and not path.is_symlink():
        return
    import pyarrow.parquet as pq

    try:
        ours = path.is_file() and not path.is_symlink()
        ours = ours and (pq.read_schema(path).metadata or {}).get(_JOB_KEY) == job_id.encode()
    except Exception:  # unreadable: not provably ours
        ours = False
    if not ours:
        raise OutputFolderError(
            f"{path} was not written by this embedding job (an input, another job's output, "
            "or a damaged file); it is never overwritten: move it away or write elsewhere."
        )


def _read_manifest(folder):
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        problem = _manifest_problem(manifest)
    except (OSError, ValueError) as err:
        problem = f"unreadable ({type(err).__name__}: {err})"
    if problem is not None:
        raise OutputFolderError(
            f"the job manifest {path} is damaged ({problem}); delete {folder} (or that "
            "file and the part files) to start the job again, or write elsewhere."
        )
    return manifest


def _manifest_problem(manifest):
    if not isinstance(manifest, dict):
        return "not a JSON object"
    lengths = manifest.get("lengths")
    if not isinstance(manifest.get("job_id"), str):
        return "no job_id"
    if not isinstance(lengths, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in lengths
    ):
        return "lengths is not a list of row counts"
    if len(lengths) != manifest.get("n_partitions"):
        return "lengths does not match n_partitions"
    if not isinstance(manifest.get("parts"), dict):
        return "parts is not a JSON object"
    return None


class _PartRecorder:
    """Records each written part (size, checksum, rows) in the manifest, at most once a second."""

    def __init__(self, path, manifest, todo):
        self.path = path
        self.manifest = manifest
        for i in todo:  # about to be rewritten: no longer proven
            manifest["parts"].pop(str(i), None)
        self.dirty = bool(todo)
        self.written_at = 0.0

    def add(self, i, result):
        self.manifest["parts"][str(i)] = {k: result[k] for k in (*RECORD_FIELDS, "rows")}
        self.dirty = True
        if time.monotonic() - self.written_at > 1.0:
            self.flush()

    def flush(self):
        if self.dirty:
            _write_json(self.path, self.manifest)
            self.dirty = False
            self.written_at = time.monotonic()


def _write_json(path, payload):
    write_text_atomic(path, json.dumps(payload, indent=1), unique=True)


def _current_client():
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None
