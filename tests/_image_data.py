"""The shared hymenoptera photos (ants and bees), when they are beside the project."""

from pathlib import Path

import numpy as np
import pytest
from _shared_data import DATA_DIR, shared_hidden


def hymenoptera(split):
    """``(paths, labels)`` of ``../shared/data/hymenoptera/<split>``; skips when absent."""
    root = Path(DATA_DIR) / "hymenoptera" / split
    if shared_hidden() or not root.is_dir():
        pytest.skip(f"shared image data {root} is not available")
    paths, labels = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(folder.iterdir()):
            if path.is_file():
                paths.append(str(path))
                labels.append(folder.name)
    return paths, np.asarray(labels)
