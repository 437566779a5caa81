"""Access to the real labelled data sets beside the project (``../shared/data``).

``../shared`` only adds coverage: a user's clone has none, and the suite must
pass there too. Set ``EMBEDXFER_NO_SHARED=1`` to hide it, so that the suite
behaves exactly as on a fresh clone; ``.ci/run`` reruns that way the tests that
can read it (see ``_shared_data_users``).
"""

import os
from pathlib import Path

import pytest

#: Where ``../shared/data`` would be, whether or not it is there (or hidden).
SHARED_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_hidden():
    """Whether ``EMBEDXFER_NO_SHARED`` asks to behave as if ``../shared`` were absent."""
    return os.environ.get("EMBEDXFER_NO_SHARED", "").strip().lower() not in (
        "",
        "0",
        "false",
        "no",
    )


#: ``../shared/data``, or a path that does not exist when it is hidden, so that
#: every ``(DATA_DIR / name).exists()`` check sees a fresh clone.
DATA_DIR = (
    SHARED_DIR.parent / "shared-hidden-by-EMBEDXFER_NO_SHARED" if shared_hidden() else SHARED_DIR
)


def dataset_path(name, split="all"):
    """Path of a shared dataset's CSV file, or None when it is absent or hidden."""
    path = DATA_DIR / name / f"{split}.csv"
    return path if path.exists() else None


def has_dataset(name, split="all"):
    """Whether the shared dataset file is available (and not hidden)."""
    return dataset_path(name, split) is not None


def read_dataset(name, split="all"):
    """``(texts, labels)`` of a shared dataset, skipping the test when it is absent."""
    path = dataset_path(name, split)
    if path is None:
        pytest.skip(f"shared dataset {DATA_DIR / name / f'{split}.csv'} is not available")
    import pandas as pd

    frame = pd.read_csv(path, keep_default_na=False)
    return frame["text"].astype(str).tolist(), frame["label"].to_numpy()


def read_packaged_sms():
    """``(texts, labels)`` of the SMS Spam Collection the package ships (always there)."""
    import numpy as np

    from embedxfer.datasets import load_sms_spam

    data = load_sms_spam()
    return list(data.data), np.asarray(data.target)


def read_dataset_or_sms(name, split="all"):
    """``(texts, labels, source)``: the shared dataset when present, else the packaged SMS data.

    ``source`` is ``name`` or ``"sms_spam"``, so that a test can pick thresholds
    that fit the data it actually got.
    """
    if has_dataset(name, split):
        texts, labels = read_dataset(name, split)
        return texts, labels, name
    texts, labels = read_packaged_sms()
    return texts, labels, "sms_spam"


def sample_dataset(name, n=None, *, split="all", seed=0):
    """A seeded random sample (all rows shuffled when ``n`` is None) of a shared dataset.

    Some files are sorted by label (``mr``), so tests never take a prefix.
    """
    import numpy as np

    texts, labels = read_dataset(name, split)
    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(texts))[: n if n is not None else len(texts)]
    return [texts[i] for i in pick], labels[pick]


def sample_dataset_or_sms(name, n, *, split="all", seed=0):
    """``sample_dataset`` when the shared dataset is there, else ``n`` packaged SMS messages.

    The SMS sample is balanced (``n // 2`` ham and spam) when there is enough
    spam, so that small classifier fixtures see both classes often enough.
    """
    import numpy as np

    if has_dataset(name, split):
        return sample_dataset(name, n, split=split, seed=seed)
    texts, labels = read_packaged_sms()
    if n // 2 <= min(np.bincount(labels)):
        return balanced_subset(texts, labels, n // 2, seed=seed)
    pick = np.random.default_rng(seed).permutation(len(texts))[:n]
    return [texts[i] for i in pick], labels[pick]


def balanced_subset(texts, labels, per_class, seed=0):
    """``per_class`` documents of every label, drawn with a seed and shuffled."""
    import numpy as np

    rng = np.random.RandomState(seed)
    rows = np.concatenate(
        [
            rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
            for c in np.unique(labels)
        ]
    )
    rng.shuffle(rows)
    return [texts[i] for i in rows], labels[rows]
