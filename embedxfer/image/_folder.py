"""Folders of images: one sub-folder per class (the layout users already have)."""

import os

import numpy as np

from .._core.safe_files import is_regular_file

# Larger files are not read as images (the largest photos are tens of megabytes).
MAX_IMAGE_BYTES = 256 << 20

# Extensions Pillow reads that image folders usually hold; others are ignored
# (a README.txt or .DS_Store beside the photos is not an error).
IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".gif",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
)


def is_image_file(name, extensions=IMAGE_EXTENSIONS):
    """Whether a file name has one of ``extensions`` (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in extensions


def list_images(folder, extensions=IMAGE_EXTENSIONS):
    """Sorted paths of the image files in ``folder`` and its sub-folders.

    Only regular files of at most ``MAX_IMAGE_BYTES`` are listed: devices,
    FIFOs and sockets named like images are skipped, and so are links to
    files outside ``folder`` and second names of a file already listed, so
    that no image is read twice (or under another class). Linked folders
    are not followed.

    Parameters
    ----------
    folder : str or os.PathLike
        The folder to walk.
    extensions : tuple of str, default=IMAGE_EXTENSIONS
        File name endings that count as images (``.jpg``, ``.png``, ...).

    Returns
    -------
    paths : list of str
        The image files' paths, sorted by folder, then by name.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from embedxfer.image import list_images
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("b.png", "a.jpg", "notes.txt"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> [pathlib.Path(p).name for p in list_images(folder)]
    ['a.jpg', 'b.png']
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder!r} is not a folder of images.")
    root_real = os.path.realpath(folder)
    paths, seen = [], set()
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not is_image_file(name, extensions):
                continue
            path = os.path.join(root, name)
            real = os.path.realpath(path)
            inside = os.path.commonpath([root_real, real]) == root_real
            if inside and real not in seen and is_regular_file(path, MAX_IMAGE_BYTES):
                seen.add(real)
                paths.append(path)
    if not paths:
        raise ValueError(f"{folder!r} holds no image files ({', '.join(extensions[:6])}, ...).")
    return paths


def load_image_folder(folder, extensions=IMAGE_EXTENSIONS):
    """Image paths and labels from a folder with one sub-folder per class.

    Parameters
    ----------
    folder : str or path-like
        ``folder/<class>/<image>``: the sub-folder names are the labels
        (torchvision's ``ImageFolder`` layout). Images deeper down belong to
        their top sub-folder's class; hidden files and non-image files are
        skipped.
    extensions : tuple of str
        File extensions counted as images.

    Returns
    -------
    paths : list of str
        Sorted by class, then by path.
    labels : ndarray of str
        The class of each path.

    Examples
    --------
    >>> import os, tempfile
    >>> from embedxfer.image import load_image_folder
    >>> root = tempfile.mkdtemp()
    >>> for name in ("ants/a.jpg", "bees/b.png", "bees/notes.txt"):
    ...     os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
    ...     open(os.path.join(root, name), "wb").close()
    >>> paths, labels = load_image_folder(root)
    >>> [os.path.basename(p) for p in paths], labels.tolist()
    (['a.jpg', 'b.png'], ['ants', 'bees'])
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder!r} is not a folder of images.")
    classes = sorted(
        entry.name
        for entry in os.scandir(folder)
        if entry.is_dir() and not entry.name.startswith(".")
    )
    paths, labels = [], []
    for name in classes:
        try:
            found = list_images(os.path.join(folder, name), extensions)
        except ValueError:
            continue  # an empty sub-folder is not a class
        paths.extend(found)
        labels.extend([name] * len(found))
    if len({*labels}) < 2:
        raise ValueError(
            f"{folder!r} needs one sub-folder of images per class (at least two), e.g. "
            f"{folder}/cats/1.jpg and {folder}/dogs/2.jpg; found "
            f"{len({*labels})} sub-folder(s) with images."
        )
    return paths, np.asarray(labels)
