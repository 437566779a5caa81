"""Reports: aligned plain-text tables, PNG plots and JSON results, written atomically."""

import json
import re
from pathlib import Path

import numpy as np

from .._core.atomic import atomic_path, write_text_atomic
from .._core.optional import import_optional


def format_table(rows, columns):
    """Render ``rows`` (dicts) as an aligned plain-text table.

    ``columns`` is a list of ``(key, header, format)``; ``format`` is a
    format spec (``".3f"``) or a callable; missing values print as ``-``.
    """
    cells = [[header for _, header, _ in columns]]
    for row in rows:
        line = []
        for key, _, fmt in columns:
            value = row.get(key)
            if value is None or (isinstance(value, float) and np.isnan(value)):
                line.append("-")
            elif callable(fmt):
                line.append(fmt(row))
            else:
                line.append(format(value, fmt))
        cells.append(line)
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    numeric = [i > 0 and all(_numeric(line[i]) for line in cells[1:]) for i in range(len(columns))]

    def render(line):
        parts = [
            text.rjust(width) if right else text.ljust(width)
            for text, width, right in zip(line, widths, numeric)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(cells[0]), rule] + [render(line) for line in cells[1:]])


def _numeric(text):
    return text == "-" or bool(re.fullmatch(r"[-+]?[\d.,]+(?:\s*±\s*[\d.]+)?[a-z%]*", text))


def _pyplot():
    matplotlib = import_optional(
        "matplotlib",
        "writing plots needs matplotlib; pip install matplotlib (or 'embedxfer[plot]').",
    )
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(
    curves, path, title, reference=None, xlabel="training documents", over="folds"
):
    """Save accuracy and macro-F1 against training-set size, one line per model, as PNG.

    ``reference`` optionally maps ``"accuracy"`` / ``"f1_macro"`` to a
    baseline score drawn as a dashed line (e.g. the majority class); the
    band around each line is one standard deviation over ``over``.
    """
    plt = _pyplot()
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    sizes = None
    for label, curve in curves.items():
        sizes = curve["sizes"]
        for ax, key in zip(axes, ("accuracy", "f1_macro")):
            mean, std = curve[key], curve[key + "_std"]
            (line,) = ax.plot(sizes, mean, marker="o", label=label)
            ax.fill_between(sizes, mean - std, mean + std, alpha=0.15, color=line.get_color())
    for ax, key, name in zip(axes, ("accuracy", "f1_macro"), ("accuracy", "macro-F1")):
        if reference and reference.get(key) is not None:
            ax.axhline(
                reference[key], color="grey", linestyle="--", linewidth=1, label="majority class"
            )
        ax.set_xscale("log")
        if sizes is not None:
            ax.set_xticks(sizes)
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"test {name} (mean over {over})")
        ax.grid(True, which="major", alpha=0.3)
    axes[1].legend(loc="lower right")
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)


def plot_cluster_maps(maps, y, target_names, path, title):
    """Save one 2-D PCA map per model, documents coloured by their true label, as PNG."""
    from sklearn.decomposition import PCA

    plt = _pyplot()
    n = len(maps)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.4), constrained_layout=True, squeeze=False)
    classes = np.unique(y)
    colors = plt.get_cmap("tab10")
    for ax, (label, (X, score)) in zip(axes[0], maps.items()):
        points = PCA(n_components=2, random_state=0).fit_transform(X)
        for i, cls in enumerate(classes):
            mask = y == cls
            name = target_names[i] if target_names is not None else cls
            ax.scatter(
                points[mask, 0],
                points[mask, 1],
                s=6,
                alpha=0.6,
                color=colors(i % 10),
                label=str(name),
            )
        ax.set_title(f"{label}\n{score}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(loc="best", fontsize=8, markerscale=2)
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)


def _save(fig, path):
    """Write the figure atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format=path.suffix.lstrip(".") or "png")


def write_json(path, payload):
    """Write ``payload`` as indented JSON atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")


def jsonable(mapping):
    """A copy of ``mapping`` with numpy values as Python ones and NaN/inf as ``None``."""
    out = {}
    for key, value in mapping.items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not np.isfinite(value):
            value = None
        out[key] = value
    return out


def short_source(source):
    """The data's short name for plot titles: the file name, or the text before ``" ("``."""
    return source.split(" (")[0] if "(" in source else Path(source).name
