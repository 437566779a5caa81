"""The on-disk cache store: one SQLite file in WAL mode, one transaction per batch."""

import hashlib
import os
import sqlite3
import threading
import time
import warnings

import numpy as np

from ..exceptions import CacheWarning
from ._store import _KEY_BYTES, _ROW_BITS, CacheStore, layout_problem, shape_conflict

DB_NAME = "embeddings.sqlite"
# 2: each batch carries its rows' keys and a digest of its layout, keys and
# bytes (version 1 had neither; its batches are dropped when read, and their
# documents encoded again).
_SCHEMA_VERSION = 2
# Bound on parameters in one ``IN (...)`` query; SQLite builds before 3.32
# accept at most 999.
_SQL_BATCH = 900

# Vectors are stored one blob per written batch (a C-ordered n x d array),
# with a compact (fingerprint, key) -> (batch, row) index: reading 100k
# vectors is then a scan of small index rows plus a few large blob reads,
# several times faster and denser on disk than one blob row per document.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS fingerprints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL UNIQUE,
    n_features INTEGER NOT NULL,
    dtype TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fp INTEGER NOT NULL,
    n_rows INTEGER NOT NULL,
    data BLOB NOT NULL,
    keys BLOB,
    digest BLOB
);
CREATE INDEX IF NOT EXISTS batches_fp ON batches (fp);
CREATE TABLE IF NOT EXISTS entries (
    fp INTEGER NOT NULL,
    key BLOB NOT NULL,
    batch INTEGER NOT NULL,
    row INTEGER NOT NULL,
    PRIMARY KEY (fp, key)
) WITHOUT ROWID;
"""
# Above this many keys a lookup scans the fingerprint's whole index instead
# of issuing many ``IN (...)`` queries, when that index is not much larger.
_PAGE_SIZE = 65536
_SCAN_MIN_KEYS = 4 * _SQL_BATCH
_SELECT_CODES = f"SELECT key, (batch << {_ROW_BITS}) | row FROM entries "


def batch_digest(n_features, dtype, keys, data):
    """16 bytes of the SHA-256 of a batch's layout, keys and bytes: what ``put`` wrote,
    checked on reads.

    The layout and the keys are in it, so that an edited ``n_features`` or
    ``dtype``, or an index row pointed at another document's row, fails the
    check as an edited blob does. SHA-256 runs on the processor's SHA
    instructions where it has them (twice BLAKE2b's speed there).
    """
    h = hashlib.sha256(f"{int(n_features)}:{np.dtype(dtype).str}:".encode())
    h.update(keys)
    h.update(data)
    return h.digest()[:16]


def _named_error(filename, err):
    """An SQLite failure as an error that names the file and the way out."""
    text = str(err)
    if "readonly" in text or "unable to open" in text or "access permission" in text:
        return PermissionError(
            f"the embedding cache {filename!r} cannot be written ({text}); choose a "
            "writable folder, or cache=None."
        )
    if "disk is full" in text or "disk I/O" in text:
        return OSError(
            f"the embedding cache {filename!r} could not be written: {text}; free disk space, "
            "or clear() the cache, or use another folder."
        )
    if isinstance(err, sqlite3.DatabaseError) and not isinstance(err, sqlite3.OperationalError):
        return sqlite3.DatabaseError(
            f"{filename!r} is not a readable embedding cache ({text}); delete the folder or "
            "choose another one."
        )
    return type(err)(f"embedding cache {filename!r}: {text}")


def _naming_the_file(method):
    """Wrap SQLite errors of a store method (other than lock waits) with the file's name."""

    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as err:
            if "locked" in str(err) or "busy" in str(err) or self.filename in str(err):
                raise
            raise _named_error(self.filename, err) from err

    wrapper.__name__, wrapper.__doc__ = method.__name__, method.__doc__
    return wrapper


class SQLiteStore(CacheStore):
    """One SQLite file in WAL mode; one transaction per stored batch."""

    def __init__(self, filename, timeout):
        self.filename = filename
        self.timeout = timeout
        self.lock = threading.RLock()
        self._conn = None
        self._pid = None

    def connection(self):
        # A connection must not cross a fork: reopen in a child process.
        if self._conn is None or self._pid != os.getpid():
            self._conn = self._open()
            self._pid = os.getpid()
        return self._conn

    def close(self):
        with self.lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def _open(self):
        folder = os.path.dirname(self.filename)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            raise OSError(f"cannot create the cache folder {folder!r}: {err}") from err
        try:
            conn = sqlite3.connect(
                self.filename,
                timeout=self.timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as err:
            raise _named_error(self.filename, err) from err
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self._setup(conn)
                return conn
            except sqlite3.OperationalError as err:
                # Switching to WAL and creating tables race when several
                # processes open a new folder at once.
                if "locked" not in str(err) and "busy" not in str(err):
                    conn.close()
                    raise _named_error(self.filename, err) from err
                if time.monotonic() > deadline:
                    conn.close()
                    raise TimeoutError(
                        f"the embedding cache {self.filename!r} stayed locked for "
                        f"{self.timeout:.0f} s; another process holds it, or raise timeout."
                    ) from err
                time.sleep(0.05)
            except sqlite3.DatabaseError as err:
                conn.close()
                raise sqlite3.DatabaseError(
                    f"{self.filename!r} is not a readable embedding cache ({err}); delete "
                    "the folder or choose another one."
                ) from err

    def _setup(self, conn):
        # Large pages make reading big vector blobs faster (fewer overflow
        # pages to walk); only takes effect while the file is still empty.
        conn.execute(f"PRAGMA page_size={_PAGE_SIZE}")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise sqlite3.OperationalError(f"database is locked (journal mode {mode})")
        # In WAL mode NORMAL survives a killed process (only a power cut can
        # lose the last commits) and never leaves the file inconsistent.
        conn.execute("PRAGMA synchronous=NORMAL")
        with _transaction(conn, "BEGIN IMMEDIATE"):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (str(_SCHEMA_VERSION),)
                )
            elif row[0] == "1":
                # Version 1's batches have no digest: they read as damaged,
                # are dropped and encoded again.
                conn.execute("ALTER TABLE batches ADD COLUMN keys BLOB")
                conn.execute("ALTER TABLE batches ADD COLUMN digest BLOB")
                conn.execute(
                    "UPDATE meta SET value=? WHERE name='schema_version'", (str(_SCHEMA_VERSION),)
                )
            elif row[0] != str(_SCHEMA_VERSION):
                raise sqlite3.DatabaseError(
                    f"schema version {row[0]}, this embedxfer reads {_SCHEMA_VERSION}"
                )

    def _layout(self, conn, fingerprint):
        row = conn.execute(
            "SELECT id, n_features, dtype FROM fingerprints WHERE fingerprint=?", (fingerprint,)
        ).fetchone()
        if row is None:
            return None
        problem = layout_problem(row[1], row[2])
        if problem is not None:
            # Checked before anything is allocated from these numbers.
            raise sqlite3.DatabaseError(
                f"{self.filename!r} is not a readable embedding cache (fingerprint "
                f"{fingerprint!r}: {problem}); delete the folder or choose another one."
            )
        return (row[0], row[1], np.dtype(row[2]))

    @_naming_the_file
    def fetch(self, fingerprint, keys):
        found = np.zeros(len(keys), dtype=bool)
        with self.lock:
            conn = self.connection()
            # One read transaction: a consistent snapshot even while another
            # process writes or clears.
            with _transaction(conn, "BEGIN"):
                layout = self._layout(conn, fingerprint)
                if layout is None:
                    return None, found
                fp_id, n_features, dtype = layout
                where = self._locate(conn, fp_id, keys)
                get = where.get
                codes = np.fromiter((get(key, -1) for key in keys), np.int64, len(keys))
                vectors, damaged = self._gather(conn, keys, codes, (n_features, dtype), found)
            if damaged:
                self._drop(conn, fp_id, damaged)
        return vectors, found

    def _drop(self, conn, fp_id, batch_ids):
        """Remove damaged batches (and their fingerprint once it has none left), with a warning.

        Best effort: while another process holds the write lock the batches
        stay (they are never used, and a later read drops them), so that a
        read never fails for it.
        """
        try:
            with _transaction(conn, "BEGIN IMMEDIATE"):
                for start in range(0, len(batch_ids), _SQL_BATCH):
                    chunk = batch_ids[start : start + _SQL_BATCH]
                    marks = ",".join("?" * len(chunk))
                    conn.execute(
                        f"DELETE FROM entries WHERE fp=? AND batch IN ({marks})", (fp_id, *chunk)
                    )
                    conn.execute(f"DELETE FROM batches WHERE id IN ({marks})", chunk)
                remaining = conn.execute("SELECT 1 FROM batches WHERE fp=? LIMIT 1", (fp_id,))
                if remaining.fetchone() is None:
                    conn.execute("DELETE FROM entries WHERE fp=?", (fp_id,))
                    conn.execute("DELETE FROM fingerprints WHERE id=?", (fp_id,))
            dropped = "were dropped"
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) and "busy" not in str(err):
                raise
            dropped = "are left for a later read to drop (another process holds the file)"
        warnings.warn(
            f"embedding cache {self.filename!r}: {len(batch_ids)} stored batch(es) failed their "
            "checksum (the file was damaged, edited or written by an older embedxfer) and "
            f"{dropped}; their documents are encoded again.",
            CacheWarning,
            stacklevel=4,
        )

    def _locate(self, conn, fp_id, keys):
        """Map each stored key among ``keys`` to ``batch << 32 | row``."""
        if len(keys) >= _SCAN_MIN_KEYS:
            n_stored = conn.execute("SELECT count(*) FROM entries WHERE fp=?", (fp_id,)).fetchone()[
                0
            ]
            if n_stored <= 4 * len(keys):
                return dict(conn.execute(_SELECT_CODES + "WHERE fp=?", (fp_id,)))
        where = {}
        for start in range(0, len(keys), _SQL_BATCH):
            chunk = keys[start : start + _SQL_BATCH]
            where.update(
                conn.execute(
                    _SELECT_CODES + f"WHERE fp=? AND key IN ({','.join('?' * len(chunk))})",
                    (fp_id, *chunk),
                )
            )
        return where

    @staticmethod
    def _gather(conn, keys, codes, layout, found):
        """``(vectors or None, damaged batch ids)``: the rows of ``codes`` from batches that
        pass their digest and hold ``keys`` at those rows.

        The output is allocated at the first blob that passes, whose digest
        vouches for the stored layout: an edited ``n_features`` allocates
        nothing.
        """
        n_features, dtype = layout
        row_bytes = n_features * dtype.itemsize
        vectors, damaged = None, []
        targets = np.flatnonzero(codes >= 0)
        if not targets.size:
            return vectors, damaged
        wanted = np.frombuffer(b"".join(keys[i] for i in targets), np.uint8).reshape(-1, _KEY_BYTES)
        codes = codes[targets]
        order = np.argsort(codes >> _ROW_BITS, kind="stable")
        wanted = wanted[order]
        targets, codes = targets[order], codes[order]
        ids, starts = np.unique(codes >> _ROW_BITS, return_index=True)
        bounds = dict(zip(ids.tolist(), zip(starts, [*starts[1:], codes.size])))
        rows = codes & ((1 << _ROW_BITS) - 1)
        for first in range(0, ids.size, _SQL_BATCH):
            chunk = ids[first : first + _SQL_BATCH].tolist()
            # Iterated lazily: one batch blob in memory at a time.
            cursor = conn.execute(
                "SELECT id, n_rows, data, keys, digest FROM batches "
                f"WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for batch_id, n_rows, data, stored_keys, digest in cursor:
                start, stop = bounds[batch_id]
                # SQLite commits whole transactions, so a damaged batch cannot
                # come from an interrupted write: it is a file damaged or
                # edited since, or one written before batches had digests.
                if (
                    not isinstance(data, bytes)
                    or not isinstance(stored_keys, bytes)
                    or len(data) != n_rows * row_bytes
                    or len(stored_keys) != n_rows * _KEY_BYTES
                    or rows[start:stop].max() >= n_rows
                    or digest != batch_digest(n_features, dtype, stored_keys, data)
                ):
                    damaged.append(batch_id)
                    continue
                held = np.frombuffer(stored_keys, np.uint8).reshape(n_rows, _KEY_BYTES)
                if not np.array_equal(held[rows[start:stop]], wanted[start:stop]):
                    damaged.append(batch_id)  # the index points at another document's row
                    continue
                if vectors is None:
                    vectors = np.zeros((found.size, n_features), dtype)
                block = np.frombuffer(data, dtype=dtype).reshape(n_rows, n_features)
                vectors[targets[start:stop]] = block[rows[start:stop]]
                found[targets[start:stop]] = True
        return vectors, damaged

    @_naming_the_file
    def put(self, fingerprint, keys, vectors):
        n_features, dtype = vectors.shape[1], vectors.dtype
        if dtype.byteorder == ">":
            vectors = vectors.astype(dtype.newbyteorder("<"))
            dtype = vectors.dtype
        with self.lock:
            conn = self.connection()
            with _transaction(conn, "BEGIN IMMEDIATE"):
                layout = self._layout(conn, fingerprint)
                if layout is None:
                    conn.execute(
                        "INSERT INTO fingerprints (fingerprint, n_features, dtype, created) "
                        "VALUES (?, ?, ?, ?)",
                        (fingerprint, n_features, dtype.str, time.time()),
                    )
                    layout = self._layout(conn, fingerprint)
                fp_id = layout[0]
                if (layout[1], layout[2]) != (n_features, dtype):
                    raise shape_conflict(fingerprint, layout[1:], (n_features, dtype))
                data, key_bytes = vectors.tobytes(), b"".join(keys)
                batch_id = conn.execute(
                    "INSERT INTO batches (fp, n_rows, data, keys, digest) VALUES (?, ?, ?, ?, ?)",
                    (
                        fp_id,
                        len(keys),
                        data,
                        key_bytes,
                        batch_digest(n_features, dtype, key_bytes, data),
                    ),
                ).lastrowid
                before = conn.total_changes
                # Keys another process stored meanwhile keep their first vector.
                conn.executemany(
                    f"INSERT OR IGNORE INTO entries (fp, key, batch, row) "
                    f"VALUES ({fp_id}, ?, {batch_id}, ?)",
                    zip(keys, range(len(keys))),
                )
                if conn.total_changes == before:
                    conn.execute("DELETE FROM batches WHERE id=?", (batch_id,))

    @_naming_the_file
    def clear(self, fingerprint):
        with self.lock:
            conn = self.connection()
            with _transaction(conn, "BEGIN IMMEDIATE"):
                if fingerprint is None:
                    for table in ("entries", "batches", "fingerprints"):
                        conn.execute(f"DELETE FROM {table}")
                else:
                    layout = self._layout(conn, fingerprint)
                    if layout is not None:
                        conn.execute("DELETE FROM entries WHERE fp=?", (layout[0],))
                        conn.execute("DELETE FROM batches WHERE fp=?", (layout[0],))
                        conn.execute("DELETE FROM fingerprints WHERE id=?", (layout[0],))
            if fingerprint is None:
                try:  # give the space back; skipped while another process reads
                    conn.execute("VACUUM")
                except sqlite3.OperationalError:
                    pass

    @_naming_the_file
    def count(self):
        with self.lock:
            return self.connection().execute("SELECT count(*) FROM entries").fetchone()[0]

    @_naming_the_file
    def info(self):
        with self.lock:
            rows = (
                self.connection()
                .execute(
                    "SELECT f.fingerprint, f.n_features, f.dtype, "
                    "(SELECT count(*) FROM entries e WHERE e.fp = f.id) "
                    "FROM fingerprints f ORDER BY f.id"
                )
                .fetchall()
            )
        return [
            {
                "fingerprint": fingerprint,
                "entries": count,
                "n_features": n_features,
                "dtype": str(np.dtype(dtype)),
                "nbytes": count * n_features * np.dtype(dtype).itemsize,
            }
            for fingerprint, n_features, dtype, count in rows
        ]

    def stats(self):
        info = self.info()
        disk_bytes = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                disk_bytes += os.path.getsize(self.filename + suffix)
            except OSError:
                pass
        return {
            "entries": sum(item["entries"] for item in info),
            "nbytes": sum(item["nbytes"] for item in info),
            "disk_bytes": disk_bytes,
        }


class _transaction:
    """``BEGIN ... COMMIT``, rolled back on any error (a connection in autocommit mode)."""

    def __init__(self, conn, begin):
        self.conn = conn
        self.begin = begin

    def __enter__(self):
        self.conn.execute(self.begin)
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        return False
