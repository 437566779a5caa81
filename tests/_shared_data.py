"""Access to the real labelled data sets beside the project (``../shared/data``)."""

from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


def read_dataset(name, split="all"):
    """``(texts, labels)`` of a shared dataset, skipping the test when it is absent."""
    path = DATA_DIR / name / f"{split}.csv"
    if not path.exists():
        pytest.skip(f"shared dataset {path} is not available")
    import pandas as pd

    frame = pd.read_csv(path, keep_default_na=False)
    return frame["text"].astype(str).tolist(), frame["label"].to_numpy()


def sample_dataset(name, n=None, *, split="all", seed=0):
    """A seeded random sample (all rows shuffled when ``n`` is None) of a shared dataset.

    Some files are sorted by label (``mr``), so tests never take a prefix.
    """
    import numpy as np

    texts, labels = read_dataset(name, split)
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(texts))[: n if n is not None else len(texts)]
    return [texts[i] for i in pick], labels[pick]


def balanced_subset(texts, labels, per_class, seed=0):
    """``per_class`` documents of every label, drawn with a seed and shuffled."""
    import numpy as np

    rng = np.random.RandomState(seed)
    rows = np.concatenate([
        rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
        for c in np.unique(labels)
    ])
    rng.shuffle(rows)
    return [texts[i] for i in rows], labels[rows]
