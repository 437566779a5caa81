"""Progress of long work on stderr, and the rates and durations it prints."""

import shutil
import sys
import time

import numpy as np

from .._core.progress import progress_bar


class Progress:
    """Progress of an encoding on stderr.

    On a terminal: a tqdm bar updated after every chunk (every batch of a
    slow encoder), redrawn to the terminal's width; without tqdm, one line
    cut to that width. Elsewhere (a log file, a pipe): a line every 5 s.
    """

    def __init__(self, label, quiet=False, stream=None):
        self.label = label
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0
        self._bar = None
        self._no_tqdm = False

    def __call__(self, done, total, elapsed):
        if self.quiet:
            return
        if self.live and self._tqdm(done, total):
            return
        now = time.perf_counter()
        final = done >= total
        if not final and now - self._last < (0.2 if self.live else 5.0):
            return
        self._last = now
        rate = done / elapsed if elapsed > 0 else float("inf")
        left = (total - done) / rate if rate > 0 else 0.0
        pct = 100.0 * done / total if total else 100.0
        text = (
            f"  {self.label}: {done}/{total} documents ({pct:3.0f}%), "
            f"{format_rate(rate)} docs/s, {format_duration(elapsed)} elapsed"
            + ("" if final else f", ~{format_duration(left)} left")
        )
        if self.live:
            width = shutil.get_terminal_size().columns - 1
            # Cut to the width and clear the rest of the line: no wrapped lines,
            # no characters left over from a longer line before.
            self.stream.write("\r" + text[:width] + "\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _tqdm(self, done, total):
        """Move the tqdm bar to ``done``; False when tqdm is not installed."""
        if self._no_tqdm:
            return False
        if self._bar is None or self._bar.total != total or done < self._bar.n:
            self._close_bar()
            self._bar = progress_bar(
                total, f"  {self.label}", file=self.stream, unit="doc", leave=True
            )
            if self._bar is None:
                self._no_tqdm = True
                return False
        self._bar.update(done - self._bar.n)
        if done >= total:
            self._close_bar()
        return True

    def _close_bar(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def note(self, text):
        self._close_bar()
        if not self.quiet:
            print(text, file=self.stream, flush=True)


def format_rate(value):
    """A rate as ``1,234`` or ``12.3``; ``-`` when it is not finite."""
    if not np.isfinite(value):
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def format_duration(seconds):
    """Seconds as ``42s``, ``3m05s`` or ``1h02m``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def report_warnings(result, progress, label, n):
    """Note the zero vectors and the tallied warnings of an encoding."""
    if result.get("n_empty"):
        progress.note(
            f"  note: {result['n_empty']} of {n} documents got a zero vector for {label} "
            "(empty, or no word in the vocabulary)."
        )
    for _category, message, count in result.get("warnings", ()):
        more = f" (and {count - 1} more like it)" if count > 1 else ""
        progress.note(f"  warning: {message}{more}")
