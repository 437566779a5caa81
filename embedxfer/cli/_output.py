"""``embed``'s output files: checked before the work, written atomically chunk by chunk."""

import os
from pathlib import Path

import numpy as np

from .._core.atomic import remove_orphaned_temporaries, temporary_path
from .._core.optional import PYARROW_INSTALL_HINT, import_optional
from ._errors import CLIError

# The id column of Parquet output: each document's position in the input.
ROW_COLUMN = "row"
_OUTPUT_KINDS = {".npy": "npy", ".parquet": "parquet", ".pq": "parquet"}


def output_kind(out):
    """``"npy"`` or ``"parquet"`` from the output's suffix."""
    kind = _OUTPUT_KINDS.get(out.suffix.lower())
    if kind is None:
        raise CLIError(f"output {out} must end in .npy or .parquet.")
    return kind


def is_same_file(path, other):
    """Whether ``path`` names the file ``other`` names (through links too), or will."""
    path = Path(path)
    try:
        if path.exists():
            return os.path.samefile(path, other)
    except OSError:
        return False
    return path.resolve() == Path(other).resolve()


def check_output_path(out, source, *, force):
    """Refuse to overwrite the input, or an existing output without ``--force``."""
    if source != "-" and is_same_file(out, source):
        raise CLIError(f"output {out} is the input file {source}; choose another output.")
    if out.is_dir():
        raise CLIError(f"output {out} is a folder; give a file name ending in .npy or .parquet.")
    if out.exists() and not force:
        raise CLIError(
            f"output {out} exists; pass --force to overwrite it, or choose another name."
        )


def require_writer(kind):
    """Check that the library writing ``kind`` output is installed."""
    if kind == "parquet":
        import_optional("pyarrow", f"writing Parquet output needs pyarrow; {PYARROW_INSTALL_HINT}")


def open_writer(out, kind, embedder, n_rows, model):
    """A writer of ``n_rows`` vectors of ``embedder`` into ``out``, of :func:`output_kind`.

    ``model`` is how the command line named the model; Parquet files record it.
    """
    if kind == "npy":
        return NpyWriter(out, n_rows, embedder.n_features_out_)
    return ParquetWriter(out, embedder.get_feature_names_out(), model)


class NpyWriter:
    """Write rows into a memory-mapped temporary .npy, renamed into place at the end."""

    def __init__(self, path, n_rows, n_cols):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        remove_orphaned_temporaries(path)
        self.tmp = temporary_path(path)
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


class ParquetWriter:
    """Write one row group per chunk to a temporary Parquet file, renamed at the end.

    The first column, ``row``, is each document's position in the input (as
    in the files ``embed --scheduler`` writes); the schema's metadata holds
    the model's name (``embedxfer.model``) and the embedxfer version.
    """

    def __init__(self, path, feature_names, model):
        import pyarrow as pa
        import pyarrow.parquet as pq

        path.parent.mkdir(parents=True, exist_ok=True)
        self.pa = pa
        self.path = path
        remove_orphaned_temporaries(path)
        self.tmp = temporary_path(path)
        self.names = [str(name) for name in feature_names]
        from .. import __version__

        schema = pa.schema(
            [(ROW_COLUMN, pa.int64())] + [(name, pa.float32()) for name in self.names],
            metadata={"embedxfer.model": str(model), "embedxfer.version": __version__},
        )
        self.schema = schema
        self.writer = pq.ParquetWriter(self.tmp, schema)

    def write(self, start, stop, block):
        block = np.asarray(block, dtype=np.float32)
        rows = self.pa.array(np.arange(start, stop, dtype=np.int64))
        columns = [rows] + [self.pa.array(block[:, j]) for j in range(block.shape[1])]
        self.writer.write_table(self.pa.Table.from_arrays(columns, schema=self.schema))

    def commit(self):
        self.writer.close()
        os.replace(self.tmp, self.path)

    def abort(self):
        try:
            self.writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def check_report_paths(data, reports):
    """Refuse report files that would overwrite the data or each other, before any work.

    ``reports`` maps each option (``"--json"``, ``"--plot"``) to its path or
    ``None``. A report may not be the ``data`` file, lie inside a ``data``
    folder (images), be a folder, or share its path with another report.
    """
    given = {option: Path(path) for option, path in reports.items() if path}
    data_path = Path(data)
    for option, path in given.items():
        if path.is_dir():
            raise CLIError(f"{option} {path} is a folder; give a file name.")
        if data_path.is_dir():
            if path.resolve().is_relative_to(data_path.resolve()):
                raise CLIError(
                    f"{option} {path} is inside the data folder {data}; write it elsewhere."
                )
        elif data_path.exists() and is_same_file(path, data_path):
            raise CLIError(f"{option} {path} is the data file {data}; choose another name.")
    named = list(given.items())
    for i, (option, path) in enumerate(named):
        for earlier, earlier_path in named[:i]:
            if is_same_file(path, earlier_path):
                raise CLIError(f"{earlier} and {option} both name {path}; give each its own file.")
