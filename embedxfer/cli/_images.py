"""Folders of images on the command line: ``embedxfer embed`` and ``evaluate``.

``embed FOLDER -o OUT.npy -m efficientnet-lite0`` embeds every image under
the folder (sorted paths, listed in ``OUT.paths.txt``); ``evaluate --data
FOLDER`` takes one sub-folder per class and cross-validates a logistic
regression on each image model's features beside raw pixels and the
majority class.
"""

import os
import time
from pathlib import Path

import numpy as np

from .._core.atomic import remove_orphaned_temporaries, signals_held, temporary_path
from ..image._models import DEFAULT_IMAGE_MODEL
from ._errors import CLIError
from ._model_names import DEMO_MODELS
from ._output import open_writer, require_writer
from ._progress import Progress, format_rate
from ._report import write_json

DEFAULT_IMAGE_MODELS = (DEFAULT_IMAGE_MODEL,)


def is_image_folder(path):
    """Whether ``path`` is a folder (the command line's sign of image input)."""
    return isinstance(path, (str, os.PathLike)) and os.path.isdir(path)


def _embedder(model, config):
    from ..image import ImageEmbedder

    return ImageEmbedder(
        model=model, batch_size=config.batch_size, device=config.device, cache=config.cache
    )


def _fitted_embedder(model, config):
    try:
        return _embedder(model, config).fit()
    except (ImportError, OSError, ValueError, TypeError) as err:
        raise CLIError(f"image model {model!r}: {err}") from None


def cmd_embed_images(config, out, out_kind):
    """Embed the images of ``config.input`` (a folder) into ``out``, in chunks."""
    from ..image import list_images

    _refuse_text_model(config.model, config.input)
    try:
        paths = list_images(config.input)
    except ValueError as err:
        raise CLIError(str(err)) from None
    _check_listable(paths, config.input)
    require_writer(out_kind)
    progress = Progress(config.model, quiet=config.quiet)
    started = time.perf_counter()
    embedder = _fitted_embedder(config.model, config)
    n, width = len(paths), embedder.n_features_out_
    progress.note(
        f"embedding {n} images with {config.model} ({width} dimensions), loaded in "
        f"{time.perf_counter() - started:.1f}s"
    )
    # The row order's only record: written beside the output, renamed in with it.
    listing = Path(f"{out}.paths.txt")
    remove_orphaned_temporaries(listing)
    writer = open_writer(out, out_kind, embedder, n, config.model)
    started = time.perf_counter()
    listing_tmp = temporary_path(listing)
    try:
        for start in range(0, n, config.chunk_size):
            stop = min(n, start + config.chunk_size)
            writer.write(start, stop, embedder.transform(paths[start:stop]))
            progress(stop, n, time.perf_counter() - started)
        listing_tmp.write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")
        # The matrix and its listing are renamed together: an interruption
        # between them would pair the new matrix with an older listing.
        with signals_held():
            writer.commit()
            os.replace(listing_tmp, listing)
    except BaseException:
        writer.abort()
        listing_tmp.unlink(missing_ok=True)
        raise
    elapsed = time.perf_counter() - started
    progress.note(
        f"wrote {out}: {n} x {width} float32 in {elapsed:.1f}s "
        f"({format_rate(n / elapsed if elapsed else float('inf'))} images/s); "
        f"row order in {listing}"
    )
    return 0


def _refuse_text_model(model, folder):
    """A text model named for a folder of images: say so, rather than what it lacks."""
    from ._model_names import _PATH_SUFFIXES, TFIDF_NAMES, known_model_names

    name = model.split(":")[0]
    text = name in known_model_names() or name in TFIDF_NAMES
    text = text or name.lower().endswith(_PATH_SUFFIXES)
    if text:
        raise CLIError(
            f"{folder} is a folder of images but -m {model} is a text model; pick an image "
            f"model (-m {DEFAULT_IMAGE_MODEL} or a timm name), or give a file of documents."
        )


def _check_listable(paths, folder):
    """Every path must fit one line of OUT.paths.txt, in UTF-8: checked before any work."""
    for path in paths:
        if "\n" in path or "\r" in path:
            raise CLIError(
                f"{folder}: the file name {path!r} holds a line break, which would break the "
                "one-name-a-line row order in OUT.paths.txt; rename the file."
            )
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            raise CLIError(
                f"{folder}: the file name {path.encode('utf-8', 'surrogateescape')!r} is not "
                "UTF-8, which OUT.paths.txt is written in; rename the file."
            ) from None


def _raw_pixels(paths):
    from ..image._preprocess import to_rgb

    return np.stack(
        [np.asarray(to_rgb(p).resize((32, 32)), dtype=np.float32).ravel() / 255 for p in paths]
    )


def cmd_evaluate_images(config):
    """Cross-validated accuracy of logistic regression on each image model's features."""
    from sklearn.model_selection import StratifiedKFold

    started = time.perf_counter()
    paths, labels = _load_sample(config)
    models = list(config.models)
    if models == list(DEMO_MODELS):  # the text default: use the image one
        models = list(DEFAULT_IMAGE_MODELS)
    classes, counts = np.unique(labels, return_counts=True)
    folds = min(config.cv, int(counts.min()))
    if folds < 2:
        raise CLIError(f"{config.data}: every class needs at least 2 images for cross-validation.")
    splitter = StratifiedKFold(folds, shuffle=True, random_state=config.seed)
    progress = Progress("evaluate", quiet=config.quiet)
    progress.note(
        f"{config.data}: {len(paths)} images, {len(classes)} classes "
        f"({', '.join(f'{c} {k}' for c, k in zip(classes, counts))}); "
        f"{folds}-fold cross-validation"
    )
    features = {}
    for model in models:
        features[model] = _embed_folder(model, paths, config, progress)
    rows = [
        _cross_validate(name, X, estimator, labels, splitter)
        for name, X, estimator in _candidates(models, features, paths)
    ]
    print(f"\n{config.data}: {len(paths)} images, {folds}-fold cross-validation\n")
    _print_table(rows)
    if config.json:
        write_json(
            config.json,
            {"data": str(config.data), "n_images": len(paths), "folds": folds, "results": rows},
        )
    progress.note(f"done in {time.perf_counter() - started:.0f}s")
    return 0


def _load_sample(config):
    """The image paths and labels of ``--data``, a random ``--max-docs`` of them if given."""
    from ..image import load_image_folder

    try:
        paths, labels = load_image_folder(config.data)
    except ValueError as err:
        raise CLIError(str(err)) from None
    if config.max_docs and config.max_docs < len(paths):
        rng = np.random.RandomState(config.seed)
        rows = np.sort(rng.choice(len(paths), config.max_docs, replace=False))
        paths, labels = [paths[i] for i in rows], labels[rows]
    return paths, labels


def _embed_folder(model, paths, config, progress):
    tick = time.perf_counter()
    try:
        X = _embedder(model, config).fit().transform(paths)
    except (ImportError, OSError, ValueError, TypeError) as err:
        raise CLIError(f"image model {model!r}: {err}") from None
    progress.note(f"{model}: {len(paths)} images embedded in {time.perf_counter() - tick:.1f}s")
    return X


def _candidates(models, features, paths):
    """``(name, X, estimator)``: each model's features, raw pixels and the majority class."""
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    candidates = [
        (f"{m} + logistic regression", features[m], LogisticRegression(C=0.1, max_iter=3000))
        for m in models
    ]
    candidates.append(
        (
            "raw pixels 32x32 + logistic regression",
            _raw_pixels(paths),
            make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=3000)),
        )
    )
    candidates.append(
        ("majority class", np.zeros((len(paths), 1)), DummyClassifier(strategy="most_frequent"))
    )
    return candidates


def _cross_validate(name, X, estimator, labels, splitter):
    from sklearn.model_selection import cross_validate

    scores = cross_validate(estimator, X, labels, cv=splitter, scoring=("accuracy", "f1_macro"))
    return {
        "features": name,
        "accuracy": float(scores["test_accuracy"].mean()),
        "accuracy_sd": float(scores["test_accuracy"].std()),
        "macro_f1": float(scores["test_f1_macro"].mean()),
    }


def _print_table(rows):
    print("| features | accuracy | macro-F1 |")
    print("|---|---|---|")
    for row in rows:
        print(
            f"| {row['features']} | {row['accuracy']:.3f} ± {row['accuracy_sd']:.3f} | "
            f"{row['macro_f1']:.3f} |"
        )
