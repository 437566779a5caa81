"""Checksum records of verified artefacts: block-tree SHA-256, and the older BLAKE2b records."""

import hashlib
import json
import os
import shutil

import pytest

from embedxfer._core import artefact
from embedxfer._core.artefact import (
    MANIFEST_DIGEST,
    discard_folder,
    file_digest,
    file_problem,
    file_record,
    manifest_digest,
    read_manifest,
    tree_digest,
    verify_folder,
    write_manifest,
)


def _reference_tree(data, block):
    pieces = [data[i : i + block] for i in range(0, len(data), block)]
    return hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in pieces)).hexdigest()


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096 + 17])
def test_tree_digest_is_sha256_of_the_blocks_sha256(tmp_path, size):
    data = bytes((i * 7919) % 251 for i in range(size))
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert tree_digest(path, size, 4096) == _reference_tree(data, 4096)


@pytest.mark.parametrize("size", [1, 4096, 3 * 4096 + 17])
def test_tree_digest_without_mmap_reads_the_blocks_alike(tmp_path, monkeypatch, size):
    data = bytes((i * 7919) % 251 for i in range(size))
    path = tmp_path / "f.bin"
    path.write_bytes(data)

    def no_mmap(*args, **kwargs):
        raise OSError("mmap not supported")

    monkeypatch.setattr(artefact.mmap, "mmap", no_mmap)
    assert tree_digest(path, size, 4096) == _reference_tree(data, 4096)


def test_tree_digest_does_not_depend_on_the_thread_count(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 1000)
    digests = set()
    for threads in (1, 2, 4):
        monkeypatch.setattr(artefact, "usable_threads", lambda n=threads: n)
        digests.add(tree_digest(path, path.stat().st_size, 1 << 12))
    assert len(digests) == 1


def test_record_holds_size_tree_digest_and_block(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 100)
    record = file_record(path)
    assert set(record) == set(artefact.RECORD_FIELDS)
    assert record["size"] == 100 and record["block"] == 1 << 24
    assert record["sha256_tree"] == _reference_tree(b"x" * 100, 1 << 24)
    assert file_problem(path, record) is None


@pytest.mark.parametrize("where", [0, 100_000, -1])
def test_one_changed_byte_in_any_block_is_found(tmp_path, monkeypatch, where):
    monkeypatch.setattr(artefact, "_BLOCK", 1 << 16)
    path = tmp_path / "f.bin"
    data = bytearray(b"abc" * 70_000)
    path.write_bytes(data)
    record = file_record(path)
    assert record["block"] == 1 << 16 and file_problem(path, record) is None
    data[where] ^= 1
    path.write_bytes(data)
    assert "does not match the size and checksum" in file_problem(path, record)


def test_shorter_or_longer_file_is_refused(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc" * 10)
    record = file_record(path)
    path.write_bytes(b"abc" * 10 + b"\0")
    assert file_problem(path, record) is not None
    path.write_bytes(b"abc" * 9)
    assert file_problem(path, record) is not None


def test_records_written_before_still_verify(tmp_path):
    # Artefacts made by earlier versions record one BLAKE2b digest of the file.
    path = tmp_path / "f.bin"
    path.write_bytes(b"old artefact")
    old = {"size": path.stat().st_size, "blake2b": file_digest(path)}
    assert file_problem(path, old) is None
    path.write_bytes(b"old artefacT")
    assert "does not match" in file_problem(path, old)


@pytest.mark.parametrize("block", [0, -1, True, 1.5, "16", 1 << 40, 1 << 10])
def test_a_block_size_outside_the_bounds_is_refused_unread(tmp_path, monkeypatch, block):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    record = dict(file_record(path), block=block)
    monkeypatch.setattr(artefact, "tree_digest", lambda *a: pytest.fail("read the file"))
    assert "does not match" in file_problem(path, record)


def test_verify_folder_reads_current_records(tmp_path):
    (tmp_path / "a.npy").write_bytes(b"1" * 10)
    (tmp_path / "b.json").write_text("{}")
    write_manifest(tmp_path, {"kind": "test"}, ["a.npy", "b.json"])
    files = json.loads((tmp_path / "manifest.json").read_text())["files"]
    assert all("sha256_tree" in r and "blake2b" not in r for r in files.values())
    assert verify_folder(tmp_path, {"kind": "test"}, {"a.npy", "b.json"})[1] is None
    (tmp_path / "a.npy").write_bytes(b"2" * 10)
    assert (
        "a.npy does not match" in verify_folder(tmp_path, {"kind": "test"}, {"a.npy", "b.json"})[1]
    )


def _sound_folder(tmp_path):
    folder = tmp_path / "art"
    folder.mkdir()
    (folder / "a.npy").write_bytes(b"1" * 10)
    write_manifest(folder, {"kind": "test", "min_n": 3}, ["a.npy"])
    assert verify_folder(folder, {"kind": "test"}, {"a.npy"})[1] is None
    return folder


def test_manifest_records_the_digest_of_its_content(tmp_path):
    folder = _sound_folder(tmp_path)
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    assert manifest[MANIFEST_DIGEST] == manifest_digest(manifest)
    # An entry no file checksum covers, edited by hand: the digest catches it.
    path.write_text(json.dumps(dict(manifest, min_n=6)))
    assert "does not match its digest" in verify_folder(folder, {"kind": "test"}, {"a.npy"})[1]
    assert read_manifest(folder)[0] == {}
    # Re-indented, the same content: still sound.
    path.write_text(json.dumps(manifest, indent=5))
    assert verify_folder(folder, {"kind": "test"}, {"a.npy"})[1] is None


def test_a_manifest_written_before_the_digest_is_stale(tmp_path):
    folder = _sound_folder(tmp_path)
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest[MANIFEST_DIGEST]
    path.write_text(json.dumps(manifest))
    assert "no manifest_sha256" in verify_folder(folder, {"kind": "test"}, {"a.npy"})[1]


def test_a_manifest_nested_too_deeply_is_a_problem_not_an_error(tmp_path):
    folder = _sound_folder(tmp_path)
    (folder / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    manifest, problem = read_manifest(folder)
    assert manifest == {} and "nested too deeply" in problem


def test_a_huge_manifest_is_refused_unread(tmp_path, monkeypatch):
    folder = _sound_folder(tmp_path)
    monkeypatch.setattr(artefact, "_MAX_MANIFEST_BYTES", 1000)
    (folder / "manifest.json").write_text(" " * 1001)
    manifest, problem = read_manifest(folder)
    assert manifest == {} and "more than the 1000" in problem


def test_a_files_entry_that_is_not_a_record_is_a_problem_not_an_error(tmp_path):
    folder = _sound_folder(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = 5
    manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    _, problem = verify_folder(folder, {}, ["a.npy"])
    assert problem == "manifest's files is 5, not a record of the files"


@pytest.mark.parametrize("name", ["a.npy", "manifest.json"])
def test_links_inside_an_artefact_folder_are_refused(tmp_path, name):
    folder = _sound_folder(tmp_path)
    outside = tmp_path / f"outside-{name}"
    shutil.move(folder / name, outside)
    (folder / name).symlink_to(outside)
    problem = verify_folder(folder, {"kind": "test"}, {"a.npy"})[1]
    assert "symbolic link" in problem


def test_an_artefact_folder_that_is_a_link_is_refused_and_discarded(tmp_path):
    real = _sound_folder(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert "symbolic link" in verify_folder(link, {"kind": "test"}, {"a.npy"})[1]
    discard_folder(link)
    assert not link.is_symlink() and (real / "a.npy").exists()


def test_a_fifo_in_an_artefact_folder_is_refused_without_blocking(tmp_path):
    folder = _sound_folder(tmp_path)
    (folder / "manifest.json").unlink()
    os.mkfifo(folder / "manifest.json")
    assert "not a regular file" in read_manifest(folder)[1]
    (folder / "a.npy").unlink()
    os.mkfifo(folder / "a.npy")
    assert "not a regular file" in file_problem(folder / "a.npy", {"size": 10})
