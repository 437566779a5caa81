"""Real images for the tests: scikit-image's bundled photos and the shared hymenoptera set."""

from pathlib import Path

import numpy as np
import pytest
from _shared_data import DATA_DIR, shared_hidden

# Classes of the fresh-clone check: scikit-image's bundled textures and a
# stained-tissue photo, each cut into patches.
TEXTURES = ("brick", "grass", "gravel", "immunohistochemistry")


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


def sample_photos():
    """scikit-image's cat, coffee cup and rocket photos (uint8 RGB arrays)."""
    from skimage import data

    return [data.chelsea(), data.coffee(), data.rocket()]


def texture_patches(size=170, per_image=9, seed=0):
    """Labelled patches of scikit-image's bundled textures, split half / half per class.

    Each source image is cut into ``per_image`` non-overlapping
    ``size`` x ``size`` patches (grayscale ones stay 2-D arrays, so the
    grayscale path is exercised); the patches of every class are shuffled and
    split in two.
    """
    from skimage import data

    rng = np.random.default_rng(seed)
    train, test = ([], []), ([], [])
    for name in TEXTURES:
        image = getattr(data, name)()
        side = int(np.sqrt(per_image))
        patches = [
            image[r * size : (r + 1) * size, c * size : (c + 1) * size]
            for r in range(side)
            for c in range(side)
        ]
        order = rng.permutation(len(patches))
        half = len(patches) // 2
        for target, rows in ((train, order[:half]), (test, order[half:])):
            target[0].extend(patches[i] for i in rows)
            target[1].extend([name] * len(rows))
    return (train[0], np.asarray(train[1])), (test[0], np.asarray(test[1]))
