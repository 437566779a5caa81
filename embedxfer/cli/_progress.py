"""Progress of long work on stderr, and the rates and durations it prints."""

import sys
import time

import numpy as np


class Progress:
    """Progress of an encoding on stderr: a live line on a terminal, sparse lines otherwise."""

    def __init__(self, label, quiet=False, stream=None):
        self.label = label
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last = 0.0

    def __call__(self, done, total, elapsed):
        if self.quiet:
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
            self.stream.write("\r" + text.ljust(78) + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def note(self, text):
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
