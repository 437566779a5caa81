"""Verified artefacts: files kept on disk with a record of their size and checksum.

Converted vectors, ONNX exports and the parts of a Dask embedding job are
written once and read back many times, possibly after someone (or a crash)
changed them. Each is described by a manifest holding every file's size and
checksum; a reader trusts the files only when they match it.

The checksum is read on every load, so its speed is the load's floor. A file
is cut into 16 MiB blocks, each block's SHA-256 is taken where the block lies
in the page cache (memory-mapped, in a few threads: hashlib releases the
GIL), and the record holds the SHA-256 of those digests, ``sha256_tree``.
SHA-256 runs on the processor's SHA instructions where it has them. Records
written before (one BLAKE2b-128 digest of the whole file, ``blake2b``) are
still verified as they were.

The manifest vouches for its own entries too: ``manifest_sha256`` is the
SHA-256 of the rest of its content, so an entry the files' checksums do not
cover (a fastText conversion's ``min_n``, say) cannot change unnoticed.
Manifests written before that digest are stale: their artefacts are made
again. Files inside an artefact folder, and the folder itself, must not be
symbolic links.
"""

import hashlib
import json
import mmap
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

from .atomic import process_alive
from .safe_files import read_regular_file
from .threads import run_parallel, usable_threads

__all__ = [
    "MANIFEST",
    "MANIFEST_DIGEST",
    "RECORD_FIELDS",
    "artefact_folders",
    "discard_folder",
    "file_digest",
    "file_problem",
    "file_record",
    "manifest_digest",
    "read_manifest",
    "remove_orphaned_folders",
    "verify_folder",
    "write_manifest",
]

MANIFEST = "manifest.json"
# Manifests hold a few fields and file records: a few KB. The bound keeps a
# damaged or forged one from being read whole before it is checked.
_MAX_MANIFEST_BYTES = 16 << 20
# The manifest's entry holding the digest of all its other entries.
MANIFEST_DIGEST = "manifest_sha256"
RECORD_FIELDS = ("size", "sha256_tree", "block")
_BLOCK = 1 << 24
# Readers accept other block sizes (a later writer may choose one) within
# these bounds, which cap what a manifest can make a reader allocate.
_BLOCK_RANGE = (1 << 16, 1 << 26)


def file_digest(path):
    """Hex BLAKE2b-128 digest of a file's bytes."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while True:
            block = fh.read(1 << 24)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _block_digest(path, offset, block):
    with open(path, "rb") as fh:
        try:
            # Hashing the page cache in place skips copying each block out first,
            # a copy that also evicts the block from the caches (1.2x faster).
            view = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # a file system without mmap
            fh.seek(offset)
            return hashlib.sha256(fh.read(block)).digest()
        with view, memoryview(view) as data, data[offset : offset + block] as piece:
            return hashlib.sha256(piece).digest()


def tree_digest(path, size, block):
    """Hex SHA-256 of the SHA-256 digests of the ``block``-byte pieces of a file.

    The first ``size`` bytes are read; an empty file has no pieces.
    """
    offsets = [(path, offset, block) for offset in range(0, size, block)]
    digests = run_parallel(_block_digest, offsets, usable_threads())
    return hashlib.sha256(b"".join(digests)).hexdigest()


def file_record(path):
    """``{"size", "sha256_tree", "block"}`` of a file, as manifests keep it."""
    size = Path(path).stat().st_size
    return {"size": size, "sha256_tree": tree_digest(path, size, _BLOCK), "block": _BLOCK}


def _matches(path, record):
    size = path.stat().st_size
    if size != record.get("size"):
        return False
    if "sha256_tree" in record:
        block = record.get("block")
        if type(block) is not int or not _BLOCK_RANGE[0] <= block <= _BLOCK_RANGE[1]:
            return False
        return tree_digest(path, size, block) == record["sha256_tree"]
    return file_digest(path) == record.get("blake2b")


def file_problem(path, record, kept_in="the manifest"):
    """None when the file at ``path`` matches ``record`` (:func:`file_record`), else why not.

    The file must be a regular file under that name, not a symbolic link to
    one elsewhere. ``kept_in`` names where the record is kept, for the message.
    """
    path = Path(path)
    if not isinstance(record, dict):
        return f"{path.name} has no record"
    try:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            return f"{path.name} is a symbolic link, not a file of the folder"
        if not stat.S_ISREG(mode):
            return f"{path.name} is missing or not a regular file"
        if not _matches(path, record):
            return f"{path.name} does not match the size and checksum in {kept_in}"
    except FileNotFoundError:
        return f"{path.name} is missing or not a regular file"
    except OSError as err:
        return f"{path.name} is unreadable ({err.strerror or err})"
    return None


def manifest_digest(manifest):
    """Hex SHA-256 of ``manifest``'s content less its own digest, as canonical JSON."""
    content = json.loads(json.dumps(manifest, default=str))
    content.pop(MANIFEST_DIGEST, None)
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def write_manifest(folder, manifest, names, name=MANIFEST):
    """Write ``manifest``, its files' records (``names``) and its digest into ``folder``."""
    folder = Path(folder)
    manifest = dict(manifest, files={n: file_record(folder / n) for n in names})
    manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
    with open(folder / name, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True, default=str)
    return manifest


def read_manifest(folder, name=MANIFEST):
    """``(manifest, None)``, or ``({}, problem)`` when it cannot be trusted.

    That is when it is absent, a link, unreadable, nested too deeply to
    parse, not an object, or its content does not match its digest (or it
    has none: written before manifests carried one).
    """
    try:
        text = read_regular_file(
            Path(folder) / name, _MAX_MANIFEST_BYTES, follow_links=False
        ).decode("utf-8")
        manifest = json.loads(text)
    except (OSError, ValueError) as err:
        return {}, f"no readable manifest ({err})"
    except RecursionError:
        return {}, "no readable manifest (nested too deeply)"
    if not isinstance(manifest, dict):
        return {}, "the manifest is not a JSON object"
    if MANIFEST_DIGEST not in manifest:
        return {}, f"the manifest has no {MANIFEST_DIGEST} (written by an earlier version)"
    if manifest[MANIFEST_DIGEST] != manifest_digest(manifest):
        return {}, "the manifest's content does not match its digest (it was edited or damaged)"
    return manifest, None


def verify_folder(folder, expected, needed, name=MANIFEST):
    """Check a folder against its manifest; ``(manifest, problem)``, problem None when sound.

    Parameters
    ----------
    folder : path-like
    expected : dict
        Entries the manifest must hold with exactly these values (what the
        artefact was made from).
    needed : set of str
        The files the manifest must list; each must match its size and checksum.
    name : str, default="manifest.json"
    """
    folder = Path(folder)
    if folder.is_symlink():
        return {}, f"{folder} is a symbolic link, not a folder of its own"
    if not folder.is_dir():
        return {}, f"{folder} is not a folder"
    manifest, problem = read_manifest(folder, name)
    if problem is not None:
        return manifest, problem
    expected = json.loads(json.dumps(expected, default=str))
    for key, value in expected.items():
        if manifest.get(key) != value:
            return manifest, f"manifest {key}={manifest.get(key)!r}, expected {value!r}"
    files = manifest.get("files")
    if not isinstance(files, dict):
        return manifest, f"manifest's files is {files!r:.60}, not a record of the files"
    if set(files) != set(needed):
        return manifest, f"manifest lists files {sorted(files)}, expected {sorted(needed)}"
    for file_name, record in files.items():
        problem = file_problem(folder / file_name, record)
        if problem is not None:
            return manifest, problem
    return manifest, None


def artefact_folders(base):
    """The finished artefact folders in ``base``, sorted (temporaries ``.NAME.*`` left out)."""
    base = Path(base)
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))


def discard_folder(folder):
    """Remove an unsound artefact folder; a symbolic link is removed, never what it points to."""
    folder = Path(folder)
    if folder.is_symlink():
        try:
            folder.unlink()
        except FileNotFoundError:
            pass  # removed by another process meanwhile
    else:
        shutil.rmtree(folder, ignore_errors=True)


def install_folder(tmp, folder, expected, files):
    """Move the finished folder ``tmp`` onto ``folder``, replacing an unsound one there.

    ``files`` are the names the manifest ``expected`` must vouch for; a sound
    ``folder`` another process installed first is kept.
    """
    if verify_folder(folder, expected, set(files))[1] is None:
        return  # another process finished the same one first; theirs is as good
    if folder.exists() or folder.is_symlink():
        trash = Path(tempfile.mkdtemp(prefix=temporary_folder_prefix(folder.name), dir=tmp.parent))
        try:
            os.replace(folder, trash / "old")
        except FileNotFoundError:
            pass  # removed by another process meanwhile
        finally:
            shutil.rmtree(trash, ignore_errors=True)
    try:
        os.replace(tmp, folder)
    except OSError:
        if verify_folder(folder, expected, set(files))[1] is not None:
            raise


def temporary_folder_prefix(name):
    """The prefix of a temporary folder beside ``name``: ``.NAME.<pid>.``."""
    return f".{name}.{os.getpid()}."


def prepare_folder(base, what):
    """Create ``base`` for ``what`` and remove the temporaries killed writers left there.

    An unwritable ``base`` raises one ``OSError`` line naming ``what`` and the remedy.
    """
    base = Path(base)
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(
            f"cannot keep {what} in {base} ({err.strerror or err}); set EMBEDXFER_HOME to a "
            "writable folder."
        ) from None
    remove_orphaned_folders(base)
    return base


def remove_orphaned_folders(base, *, older_than=24 * 3600):
    """Remove temporary folders (``.NAME.<pid>.*``) in ``base`` left by killed writers.

    A folder is an orphan when its process is gone, or, for a process that
    cannot be checked (another machine on a shared file system), when it is
    older than ``older_than`` seconds. Returns the folders removed.
    """
    base = Path(base)
    removed = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    now = time.time()
    for path in entries:
        if not path.name.startswith(".") or path.is_symlink() or not path.is_dir():
            continue
        fields = path.name.split(".")
        pid = fields[2] if len(fields) > 3 else ""
        try:
            old = now - path.stat().st_mtime > older_than
        except OSError:
            continue
        if (pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid))) or old:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
