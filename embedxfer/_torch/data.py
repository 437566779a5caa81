"""Training data of the torch classifiers: labels, class weights, validation split, batches.

``check_xy`` checks inputs and labels, ``TrainingData`` holds them encoded
with the class weights and the held-out rows; ``epoch_batches`` draws an
epoch's batches (grouped by length when lengths are given).
"""

import dataclasses
import numbers

import numpy as np
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from .._core.device import (
    import_torch,
)
from .._core.param_validation import Interval, InvalidParameterError, check_param
from .._core.validation import check_documents, check_label_types, missing_positions


# --------------------------------------------------------------------- labels
def check_xy(X, y, check_inputs=check_documents, noun="document"):
    """Inputs as a list, ``y`` as a 1-D array of the same length.

    ``check_inputs`` checks ``X`` and returns the list (documents by default,
    ``check_images`` for images); ``noun`` names one input in the messages.
    """
    inputs = check_inputs(X)
    if y is None:
        raise ValueError(f"y is None; a classifier needs one label per {noun}.")
    if not hasattr(y, "dtype"):  # a list: numpy would make mixed labels str
        _check_labels(np.asarray(y, dtype=object).ravel(), noun)
    y = column_or_1d(np.asarray(y), warn=True)
    _check_labels(y, noun)
    if len(y) != len(inputs):
        raise ValueError(
            f"X has {len(inputs)} {noun}s but y has {len(y)} labels; pass one label per {noun}."
        )
    check_classification_targets(y)
    return inputs, y


def _check_labels(y, noun="document"):
    """Missing or mixed-type labels get an error naming the first bad one."""
    if y.dtype.kind == "f":
        missing = np.flatnonzero(np.isnan(y))
    elif y.dtype.kind == "O":
        missing = missing_positions(y)
    else:
        return
    if len(missing):
        first = y[missing[0]]
        shown = "nan" if isinstance(first, (float, np.floating)) else repr(first)
        raise ValueError(
            f"{len(missing)} labels are missing (first: label {missing[0]} is {shown}); "
            f"drop those {noun}s or fill their labels before fitting."
        )
    if y.dtype.kind == "O":
        check_label_types(y)


def encode_labels(y):
    """``classes_`` (sorted) and integer targets; at least two classes."""
    classes, y_idx = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(
            f"y has a single class {classes[0]!r}; a classifier needs at least two classes."
        )
    return classes, y_idx.astype(np.int64)


def class_weight_vector(class_weight, classes, y_idx):
    """Per-class loss weights (float32 array) or ``None``."""
    if class_weight is None:
        return None
    if isinstance(class_weight, str) and class_weight == "balanced":
        # Every class occurs in y: ``classes`` come from it (encode_labels).
        labels = np.arange(len(classes))
        return compute_class_weight("balanced", classes=labels, y=y_idx).astype(np.float32)
    weights = np.ones(len(classes), dtype=np.float32)
    known = {label: i for i, label in enumerate(classes.tolist())}
    for label, weight in class_weight.items():
        key = label.item() if hasattr(label, "item") else label
        if key not in known:
            raise ValueError(
                f"class_weight names the label {label!r}, which is not in y; "
                f"the classes are {list(known)[:10]}."
            )
        weights[known[key]] = check_param(
            f"class_weight[{label!r}]", weight, [Interval(numbers.Real, 0, None, closed="left")]
        )
    if not weights.any():
        raise InvalidParameterError(
            f"class_weight={class_weight!r} weighs every class of y 0, which leaves no loss to "
            "train on; give a class a weight > 0."
        )
    return weights


def split_validation(y_idx, fraction, seed):
    """Train / validation index arrays; stratified when every class can be split."""
    n = len(y_idx)
    all_idx = np.arange(n)
    if fraction is None:
        return all_idx, None
    n_val = int(np.ceil(fraction * n))
    if n_val < 1 or n - n_val < 2:
        raise ValueError(
            f"validation_fraction={fraction} leaves no usable split of {n} documents; "
            "use more data or validation_fraction=None."
        )
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y_idx)
    stratify = y_idx if counts[counts > 0].min() >= 2 and n_val >= len(counts) else None
    train_idx, val_idx = train_test_split(
        all_idx, test_size=n_val, random_state=seed, stratify=stratify
    )
    return np.sort(train_idx), np.sort(val_idx)


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """The labelled inputs of one ``fit`` and their train / validation split."""

    inputs: list  # documents or images, in the caller's order
    classes: np.ndarray
    y_idx: np.ndarray  # class index of every input
    train_idx: np.ndarray
    val_idx: np.ndarray | None

    @property
    def y_train(self):
        return self.y_idx[self.train_idx]

    @property
    def y_val(self):
        return None if self.val_idx is None else self.y_idx[self.val_idx]


def epoch_batches(n, batch_size, generator, lengths=None, pool=50):
    """Index arrays of one epoch's batches, in random order.

    With ``lengths``, a random permutation is cut into pools of ``pool``
    batches, each pool is sorted by length and cut into batches, and the
    batches are shuffled: each batch holds documents of similar length (as
    Hugging Face's ``group_by_length``), which saves padding on the CPU,
    while the composition of the batches stays random.
    """
    torch = import_torch()
    order = torch.randperm(n, generator=generator).numpy()
    if lengths is None:
        return [order[s : s + batch_size] for s in range(0, n, batch_size)]
    lengths = np.asarray(lengths)
    batches = []
    chunk = batch_size * pool
    for s in range(0, n, chunk):
        part = order[s : s + chunk]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches.extend(part[b : b + batch_size] for b in range(0, len(part), batch_size))
    shuffled = torch.randperm(len(batches), generator=generator).numpy()
    return [batches[i] for i in shuffled]


def batch_ranges(n, batch_size):
    return [(s, min(n, s + batch_size)) for s in range(0, n, batch_size)]
