"""Progress: the shared tqdm bar (embedxfer/_core/progress.py), the command line's
progress line (embedxfer/cli/_progress.py) and the chunks it reports on
(embedxfer/cli/_encode.py)."""

import io
import re

import numpy as np

from embedxfer.cli import _progress as cli_progress
from embedxfer.cli._encode import encode_chunks
from embedxfer.cli._progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


LABEL = "all-MiniLM-L6-v2:onnx-int8,chunk,max " * 3  # longer than the terminal


def test_line_without_tqdm_fits_the_terminal_and_clears_what_was_there(monkeypatch):
    monkeypatch.setattr(cli_progress, "progress_bar", lambda *a, **k: None)
    monkeypatch.setenv("COLUMNS", "40")
    stream = Terminal()
    progress = Progress(LABEL, stream=stream)
    for done in (32, 64, 800):
        progress._last = 0.0  # every call draws (no 0.2 s pause between draws here)
        progress(done, 800, done / 32)
    drawn = [part for part in stream.getvalue().split("\r") if part]
    assert len(drawn) == 3
    for line in drawn:
        assert line.rstrip("\n").endswith("\x1b[K")
        assert len(line.rstrip("\n").removesuffix("\x1b[K")) <= 39
    assert stream.getvalue().endswith("\n")


def test_tqdm_bar_on_a_terminal_moves_with_every_chunk():
    stream = Terminal()
    progress = Progress("glove-6B-50d", stream=stream)
    progress(32, 800, 0.1)
    assert progress._bar is not None and progress._bar.n == 32
    progress(64, 800, 0.2)
    assert progress._bar.n == 64
    progress(800, 800, 1.0)
    assert progress._bar is None  # closed, its last line kept
    assert "800/800" in stream.getvalue() and stream.getvalue().endswith("\n")
    progress.note("next")
    assert stream.getvalue().endswith("next\n")


def test_log_file_gets_plain_lines():
    stream = io.StringIO()
    Progress("glove-6B-50d", stream=stream)(800, 800, 1.0)
    assert re.fullmatch(
        r"  glove-6B-50d: 800/800 documents \(100%\), .* elapsed\n", stream.getvalue()
    )


class Recorder:
    """An embedder that notes the chunks it is given (slow or fast)."""

    def __init__(self, batch_size, seconds_per_doc=0.0):
        self.batch_size = batch_size
        self.seconds_per_doc = seconds_per_doc
        self.sizes = []

    def transform(self, texts):
        import time

        self.sizes.append(len(texts))
        time.sleep(self.seconds_per_doc * len(texts))
        return np.full((len(texts), 2), len(self.sizes), dtype=np.float32)


def test_chunks_start_at_one_batch_and_grow_in_whole_batches():
    texts = [f"doc {i}" for i in range(5000)]
    fast = Recorder(batch_size=16)
    chunks = list(encode_chunks(fast, texts, chunk_size=1024))
    assert fast.sizes[0] == 16 and max(fast.sizes) == 1024  # a fast encoder: big chunks
    assert [(a, b) for a, b, _ in chunks] == list(
        zip(np.cumsum([0, *fast.sizes[:-1]]), np.cumsum(fast.sizes))
    )
    slow = Recorder(batch_size=8, seconds_per_doc=0.005)
    list(encode_chunks(slow, texts[:120], chunk_size=1024))
    assert slow.sizes[0] == 8 and sum(slow.sizes) == 120
    assert all(size % 8 == 0 for size in slow.sizes[:-1])
    assert max(slow.sizes) < 1024  # about half a second each, not a whole chunk


def test_encode_corpus_goes_shortest_first_and_returns_input_order(glove):
    from embedxfer import WordVectorEmbedder
    from embedxfer.cli._encode import encode_corpus
    from embedxfer.cli._model_names import parse_model

    texts = [" ".join(["film"] * (i % 13) + ["good", "bad"][i % 2 :]) for i in range(300)]
    result = encode_corpus(parse_model("glove-6B-50d"), texts, chunk_size=64)
    expected = WordVectorEmbedder(vectors=glove).fit(texts).transform(texts)
    np.testing.assert_allclose(result["X"], expected, rtol=1e-6, atol=1e-7)
