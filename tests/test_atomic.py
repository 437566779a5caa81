"""Atomic writes (embedxfer/_core/atomic.py)."""

import os
import subprocess
import sys

import pytest

from embedxfer._core.atomic import (
    atomic_path,
    remove_orphaned_temporaries,
    replace_folder,
    temporary_path,
    write_text_atomic,
)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_temporary_names_sit_beside_the_target(tmp_path):
    target = tmp_path / "x.npy"
    assert temporary_path(target) == tmp_path / f".x.npy.{os.getpid()}.tmp"
    a, b = temporary_path(target, unique=True), temporary_path(target, unique=True)
    assert a != b and a.parent == tmp_path and a.name.startswith(".x.npy.")


def test_replace_folder_keeps_a_concurrent_writers_folder(tmp_path):
    theirs, mine = tmp_path / "done", tmp_path / ".mine"
    theirs.mkdir()
    (theirs / "model.onnx").write_text("theirs")
    mine.mkdir()
    (mine / "model.onnx").write_text("mine")
    replace_folder(mine, theirs, done=theirs / "model.onnx")
    assert (theirs / "model.onnx").read_text() == "theirs"
    with pytest.raises(OSError):
        replace_folder(tmp_path / ".missing", tmp_path / "nowhere")


def test_only_temporaries_of_dead_processes_are_removed(tmp_path):
    target = tmp_path / "out.npy"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = tmp_path / f".out.npy.{int(dead.stdout)}.tmp"
    mine = temporary_path(target)
    other = tmp_path / ".other.npy.1.tmp"
    for path in (orphan, mine, other):
        path.write_text("")
    remove_orphaned_temporaries(target)
    assert not orphan.exists() and mine.exists() and other.exists()
