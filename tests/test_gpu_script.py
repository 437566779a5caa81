"""``.ci/gpu``: every GPU check runs, failures are counted, logs are kept.

The GPU itself is faked: a stand-in Python records the commands it is given,
so that the script's own logic is checked on any machine.
"""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "gpu"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="a bash script")


def _executable(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _run(tmp_path, python_body):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _executable(
        bin_dir / "nvidia-smi", "#!/bin/sh\necho 'name, memory.total'\necho 'Fake GPU, 1 MiB'\n"
    )
    calls = tmp_path / "calls.txt"
    # after ``python_body`` (which may exit), a run given ``--out`` (last)
    # writes its results file
    python = _executable(
        tmp_path / "python",
        f'#!/bin/bash\necho "$*" >> {calls}\n{python_body}\n'
        'case "$*" in *"--out "*) touch "${@: -1}";; esac\n',
    )
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env["PYTHON"] = str(python)
    done = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "logs")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    return done, calls.read_text().splitlines() if calls.exists() else []


def test_every_step_runs_and_failures_are_counted(tmp_path, monkeypatch):
    monkeypatch.setenv("GPU_FEW_SHOT_DEVICES", "cuda cpu")
    # the image benchmark fails; the steps after it still run
    done, calls = _run(tmp_path, 'case "$*" in *image_embed.py*) exit 3;; esac')
    assert done.returncode == 1, done.stdout + done.stderr
    assert "== image-embed: exit 3" in done.stdout
    assert "1 step(s) failed" in done.stdout
    steps = [c for c in calls if not c.startswith("-c ")]
    assert steps[0].startswith("-m pytest -m gpu -n 0")
    assert any("sentence_encode.py" in c for c in steps)
    few_shot = [c for c in steps if "few_shot.py" in c and "--device" in c]
    assert [c.split("--device ")[1].split()[0] for c in few_shot] == ["cuda", "cpu"]
    assert steps[-1].startswith("benchmarks/few_shot.py --summarize")


def test_the_few_shot_draw_runs_on_the_gpu_alone_by_default(tmp_path):
    done, calls = _run(tmp_path, "")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 step(s) failed" in done.stdout
    few_shot = [c for c in calls if "few_shot.py" in c and "--device" in c]
    assert len(few_shot) == 1 and "--device cuda" in few_shot[0]
    assert calls[-1].startswith("benchmarks/few_shot.py --summarize")


def test_no_summary_without_few_shot_results(tmp_path):
    done, calls = _run(tmp_path, 'case "$*" in *few_shot.py*) exit 1;; esac')
    assert done.returncode == 1
    assert not any("--summarize" in c for c in calls)
    logs = {p.name for p in (tmp_path / "logs").iterdir()}
    assert {"tests.log", "sentence-encode.log", "image-embed.log", "gpu.txt"} <= logs


def test_refuses_without_a_gpu(tmp_path):
    # the stand-in's CUDA check fails: nothing else runs
    done, calls = _run(tmp_path, 'case "$*" in -c*) exit 1;; esac')
    assert done.returncode == 1
    assert "no CUDA GPU visible to torch" in done.stderr
    assert len(calls) == 1


def test_a_step_over_its_limit_is_stopped_and_named(tmp_path, monkeypatch):
    monkeypatch.setenv("GPU_TESTS_S", "1")
    done, _ = _run(tmp_path, 'case "$*" in *"pytest -m gpu"*) sleep 30;; esac')
    assert "== tests: exit 124 (over its 1 s)" in done.stdout
    assert done.returncode == 1
