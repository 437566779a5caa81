"""scikit-image's bundled photos and textures: real images every install has."""

import numpy as np

# Classes of the fresh-clone check: scikit-image's bundled textures and a
# stained-tissue photo, each cut into patches.
TEXTURES = ("brick", "grass", "gravel", "immunohistochemistry")


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
