"""Training loop, early stopping and persistence shared by the torch classifiers.

``TransformerClassifier`` (``_finetune.py``) and ``SequenceClassifier``
(``_sequence.py``) differ in the network they train; everything around the
network lives here: parameter checks, label encoding, class weights, the
validation split, the warm-up schedule, the epoch loop with early stopping,
mixed precision, seeding that leaves torch's global random state as it found
it, and the safetensors + JSON format of a saved classifier.
"""

import contextlib
import json
import numbers
import os
import sys
import time

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ._device import import_torch, resolve_device, resolve_dtype
from ._validation import check_documents

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
MAX_GRAD_NORM = 1.0


# ----------------------------------------------------------------- parameters
def check_number(
    name,
    value,
    *,
    low=None,
    high=None,
    integer=False,
    low_open=False,
    high_open=False,
    allow_none=False,
):
    """Check one numeric hyper-parameter and return it; errors name the way out."""
    if value is None and allow_none:
        return None
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an integer" if integer else "a number"
        raise TypeError(f"{name} must be {what}, got {value!r} ({type(value).__name__}).")
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high:
        lo = "" if low is None else f"{'(' if low_open else '['}{low}"
        hi = "" if high is None else f"{high}{')' if high_open else ']'}"
        raise ValueError(f"{name}={value!r} is out of range; expected a value in {lo}, {hi}.")
    return value


def check_unfreeze(unfreeze):
    """``unfreeze`` as ``"all"`` or an int >= 0 (the fine-tuning estimators' rule)."""
    if isinstance(unfreeze, str):
        if unfreeze != "all":
            raise ValueError(f"unfreeze={unfreeze!r}; expected an integer >= 0 or 'all'.")
        return unfreeze
    if isinstance(unfreeze, bool) or not isinstance(unfreeze, numbers.Integral) or unfreeze < 0:
        raise ValueError(f"unfreeze={unfreeze!r}; expected an integer >= 0 or 'all'.")
    return int(unfreeze)


def check_training_params(est, *, epochs):
    """Validate the hyper-parameters both torch classifiers share."""
    check_number("lr", est.lr, low=0, low_open=True)
    check_number("epochs", epochs, low=1, integer=True)
    check_number("batch_size", est.batch_size, low=1, integer=True)
    check_number("weight_decay", est.weight_decay, low=0)
    check_number("warmup_fraction", est.warmup_fraction, low=0, high=1, high_open=True)
    check_number(
        "validation_fraction",
        est.validation_fraction,
        low=0,
        high=1,
        low_open=True,
        high_open=True,
        allow_none=True,
    )
    check_number("n_iter_no_change", est.n_iter_no_change, low=1, integer=True)
    check_number("dropout", est.dropout, low=0, high=1, high_open=True)
    check_number("verbose", est.verbose, low=0, integer=True)
    cw = est.class_weight
    if not (cw is None or cw == "balanced" or isinstance(cw, dict)):
        raise ValueError(
            f"class_weight={cw!r}; expected None, 'balanced' or a dict {{label: weight}}."
        )


def resolve_precision(precision, device):
    """``"auto"`` -> bfloat16 autocast on a CUDA GPU that has it, float16 on older
    GPUs, float32 elsewhere. Returns the torch dtype for autocast (float32 = off)."""
    torch = import_torch()
    kind = device.split(":")[0]
    if precision == "auto":
        if kind != "cuda":
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return resolve_dtype(precision, device)


def autocast(device, amp_dtype):
    """Mixed precision on the GPU; a no-op context for float32."""
    torch = import_torch()
    if amp_dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=amp_dtype)


# --------------------------------------------------------------------- labels
def check_xy(X, y):
    """Documents as a list of str, ``y`` as a 1-D array of the same length."""
    docs = check_documents(X)
    if y is None:
        raise ValueError("y is None; a classifier needs one label per document.")
    y = column_or_1d(np.asarray(y), warn=True)
    _check_labels(y)
    if len(y) != len(docs):
        raise ValueError(
            f"X has {len(docs)} documents but y has {len(y)} labels; pass one label per document."
        )
    check_classification_targets(y)
    return docs, y


def _check_labels(y):
    """Missing or mixed-type labels get an error naming the first bad one."""
    if y.dtype.kind == "f":
        missing = np.flatnonzero(np.isnan(y))
    elif y.dtype.kind == "O":
        missing = np.flatnonzero([v is None or (isinstance(v, float) and np.isnan(v)) for v in y])
    else:
        return
    if len(missing):
        raise ValueError(
            f"{len(missing)} labels are missing (first: label {missing[0]} is "
            f"{y[missing[0]]!r}); drop those documents or fill their labels before fitting."
        )
    if y.dtype.kind == "O":
        kinds = {type(v).__name__ for v in y}
        if len(kinds) > 1 and not all(
            isinstance(v, (int, np.integer, float, np.floating)) for v in y
        ):
            raise ValueError(
                f"labels mix types {sorted(kinds)}; convert them to one type (e.g. all str)."
            )


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
    if class_weight == "balanced":
        counts = np.bincount(y_idx, minlength=len(classes)).astype(np.float64)
        weights = len(y_idx) / (len(classes) * np.maximum(counts, 1))
        return weights.astype(np.float32)
    weights = np.ones(len(classes), dtype=np.float32)
    known = {label: i for i, label in enumerate(classes.tolist())}
    for label, weight in class_weight.items():
        key = label.item() if hasattr(label, "item") else label
        if key not in known:
            raise ValueError(
                f"class_weight names the label {label!r}, which is not in y; "
                f"the classes are {list(known)[:10]}."
            )
        weights[known[key]] = check_number(f"class_weight[{label!r}]", weight, low=0)
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


def draw_seed(random_state):
    """One 31-bit seed from ``random_state`` (None, int or RandomState)."""
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


@contextlib.contextmanager
def seeded_torch(seed, device):
    """Seed torch's global generators for dropout, then put them back.

    Dropout draws from torch's global generator and takes no ``generator``
    argument, so the fit seeds it inside ``torch.random.fork_rng``: the
    caller's random state is saved before and restored after, and nothing
    outside ``fit`` sees a change. (Two fits running at once in threads of one
    process would share the generator; joblib's default process-based
    backend does not.)
    """
    torch = import_torch()
    devices = []
    if device.startswith("cuda"):
        devices = [torch.device(device).index or 0]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


# ------------------------------------------------------------------ training
def make_optimizer(groups, weight_decay):
    """AdamW over ``[(params_with_names, lr), ...]``; no decay on biases and norms."""
    torch = import_torch()
    param_groups = []
    for named, lr in groups:
        decay = [p for n, p in named if not _no_decay(n, p)]
        no_decay = [p for n, p in named if _no_decay(n, p)]
        if decay:
            param_groups.append({"params": decay, "lr": lr, "weight_decay": weight_decay})
        if no_decay:
            param_groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0})
    return torch.optim.AdamW(param_groups)


def _no_decay(name, param):
    return param.ndim < 2 or "norm" in name.lower()


def warmup_linear_schedule(optimizer, total_steps, warmup_fraction):
    """Linear warm-up over ``warmup_fraction`` of the steps, then linear decay to 0."""
    torch = import_torch()
    warmup = int(round(warmup_fraction * total_steps))

    def factor(step):
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def progress(total, verbose, desc):
    """A tqdm bar when ``verbose`` and tqdm is installed, else a silent counter."""
    if verbose:
        try:
            from tqdm.auto import tqdm

            return tqdm(total=total, desc=desc, leave=False, file=sys.stderr)
        except ImportError:
            pass
    return _NoBar()


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix(self, **kwargs):
        pass

    def close(self):
        pass


def train_epochs(
    *,
    epochs,
    batch_size,
    warmup_fraction,
    n_iter_no_change,
    verbose,
    n_train,
    y_train,
    batch_logits,
    parameters,
    optimizer,
    loss_fn,
    device,
    amp_dtype,
    seed,
    validate=None,
    snapshot=None,
    restore=None,
    lengths=None,
    desc="fit",
):
    """Run the epoch loop with early stopping; return the training history.

    Parameters
    ----------
    batch_logits : callable(index_array) -> logits tensor
        Forward pass of the network (in training mode) over a batch of
        training rows, numbered ``0 .. n_train - 1``.
    parameters : list of tensors
        What the optimizer updates (for gradient clipping).
    validate : callable() -> float, optional
        Validation loss; with it, training stops after ``n_iter_no_change``
        epochs without improvement and the best weights come back.
    snapshot, restore : callables
        Copy out / load back the trainable weights for early stopping.
    lengths : array of int, optional
        Token counts of the training rows; with them, batches group rows of
        similar length (see ``epoch_batches``) so that little padding is
        computed.
    """
    torch = import_torch()
    steps_per_epoch = int(np.ceil(n_train / batch_size))
    total_steps = steps_per_epoch * epochs
    scheduler = warmup_linear_schedule(optimizer, total_steps, warmup_fraction)
    scaler = None
    if amp_dtype == torch.float16:
        scaler = torch.amp.GradScaler(device.split(":")[0])
    shuffle = torch.Generator().manual_seed(seed)
    y_train = torch.as_tensor(y_train, dtype=torch.long, device=device)
    history = {"loss": [], "val_loss": [], "best_epoch": None, "n_iter": 0, "time": 0.0}
    best, best_state, bad_epochs = np.inf, None, 0
    bar = progress(total_steps, verbose, desc)
    start = time.perf_counter()
    try:
        for epoch in range(epochs):
            total, count = 0.0, 0
            for idx in epoch_batches(n_train, batch_size, shuffle, lengths):
                with autocast(device, amp_dtype):
                    logits = batch_logits(idx)
                loss = loss_fn(logits.float(), y_train[idx])
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(parameters, MAX_GRAD_NORM)
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(parameters, MAX_GRAD_NORM)
                    optimizer.step()
                scheduler.step()
                history["n_iter"] += 1
                total += loss.item() * len(idx)
                count += len(idx)
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{total / count:.4f}")
            history["loss"].append(total / count)
            message = f"epoch {epoch + 1}/{epochs}: loss {total / count:.4f}"
            if validate is not None:
                val_loss = float(validate())
                history["val_loss"].append(val_loss)
                message += f", validation loss {val_loss:.4f}"
                if val_loss < best:
                    best, bad_epochs = val_loss, 0
                    best_state = snapshot()
                    history["best_epoch"] = epoch + 1
                else:
                    bad_epochs += 1
            if verbose > 1:
                print(message, file=sys.stderr)
            if validate is not None and bad_epochs >= n_iter_no_change:
                break
    finally:
        bar.close()
    if best_state is not None and history["best_epoch"] != len(history["loss"]):
        restore(best_state)
    history["time"] = time.perf_counter() - start
    return history


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


def set_history(est, history):
    """Fitted attributes describing the training run."""
    est.loss_curve_ = list(history["loss"])
    est.validation_loss_curve_ = list(history["val_loss"]) or None
    est.best_validation_loss_ = min(history["val_loss"]) if history["val_loss"] else None
    est.n_epochs_ = len(history["loss"])
    est.n_iter_ = history["n_iter"]
    est.fit_time_ = history["time"]


def batch_ranges(n, batch_size):
    return [(s, min(n, s + batch_size)) for s in range(0, n, batch_size)]


# --------------------------------------------------------------- persistence
def tensors_to_bytes(tensors):
    """Serialise ``{name: tensor}`` as safetensors bytes (CPU, contiguous)."""
    from safetensors.torch import save

    return save({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()})


def bytes_to_tensors(blob):
    from safetensors.torch import load

    return load(bytes(blob))


def params_to_json(params):
    """``get_params()`` as JSON, and the names of parameters JSON cannot hold.

    Such parameters (a ``RandomState`` instance, an in-memory
    ``KeyedVectors``) are saved as ``None``: the trained weights do not need
    them, only a later re-fit would.
    """
    out, unsaved = {}, []
    for key, value in params.items():
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if key == "class_weight" and isinstance(value, dict):
            value = {"__pairs__": [[_plain(k), float(v)] for k, v in value.items()]}
        value = _plain(value)
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            unsaved.append(key)
            value = None
        out[key] = value
    return out, unsaved


def params_from_json(params):
    params = dict(params)
    cw = params.get("class_weight")
    if isinstance(cw, dict) and "__pairs__" in cw:
        params["class_weight"] = dict(cw["__pairs__"])
    return params


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    return value


def classes_to_json(classes):
    return {"values": [_plain(c) for c in classes.tolist()], "dtype": classes.dtype.str}


def classes_from_json(data):
    dtype = np.dtype(data["dtype"])
    if dtype.kind == "O":
        arr = np.empty(len(data["values"]), dtype=object)
        arr[:] = data["values"]
        return arr
    return np.asarray(data["values"], dtype=dtype)


def write_folder(folder, config, tensors):
    """Write ``config.json`` and ``model.safetensors`` into ``folder``."""
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    save_file(
        {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()},
        os.path.join(folder, WEIGHTS_NAME),
    )
    with open(os.path.join(folder, CONFIG_NAME), "w", encoding="utf-8") as fh:
        json.dump(config, fh, indent=2, sort_keys=True)
        fh.write("\n")


def read_folder(folder, expected_class):
    """Read back what ``write_folder`` wrote, checking it is the expected class."""
    from safetensors.torch import load_file

    config_path = os.path.join(folder, CONFIG_NAME)
    if not os.path.isfile(config_path):
        raise FileNotFoundError(
            f"{folder!r} has no {CONFIG_NAME}; pass a folder written by {expected_class}.save()."
        )
    with open(config_path, encoding="utf-8") as fh:
        config = json.load(fh)
    if config.get("class") != expected_class:
        raise ValueError(
            f"{folder!r} holds a {config.get('class')!r}, not a {expected_class}; "
            f"load it with {config.get('class')}.load()."
        )
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{folder!r} was written by a newer embedxfer (format "
            f"{config['format_version']}); upgrade embedxfer to load it."
        )
    tensors = load_file(os.path.join(folder, WEIGHTS_NAME), device="cpu")
    return config, tensors


# ------------------------------------------------------------------- mixin
class TorchClassifierMixin:
    """Prediction, pickling and save/load for a classifier with a torch network.

    Subclasses provide ``_logits_numpy(docs)`` (float32 logits),
    ``_trained_tensors()`` (``{name: tensor}`` of what ``fit`` trained),
    ``_rebuild(tensors, device)`` (recreate the network from those tensors)
    and ``_extra_config()``; ``_runtime`` holds the live torch objects and
    is never pickled.
    """

    _runtime = None
    _pending_tensors = None

    # prediction -------------------------------------------------------
    def _ensure_runtime(self):
        check_is_fitted(self)
        if self._runtime is None:
            tensors = self._pending_tensors
            if tensors is None:
                raise RuntimeError(
                    f"this {type(self).__name__} has lost its weights; fit it again."
                )
            if isinstance(tensors, (bytes, bytearray)):
                tensors = bytes_to_tensors(tensors)
            self._rebuild(tensors, resolve_device(self.device))
            self._pending_tensors = None
        return self._runtime

    def embed(self, X):
        """Alias of :meth:`transform`.

        Parameters
        ----------
        X : iterable of str
            Documents.

        Returns
        -------
        vectors : ndarray of shape (n_samples, n_features_out_), float32
        """
        return self.transform(X)

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : iterable of str
            Documents.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), float32
            Rows sum to 1; columns follow ``classes_``.
        """
        logits = self._logits_numpy(self._check_predict_docs(X))
        logits = logits - logits.max(axis=1, keepdims=True)
        proba = np.exp(logits)
        proba /= proba.sum(axis=1, keepdims=True)
        return proba.astype(np.float32)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`.

        Parameters
        ----------
        X : iterable of str
            Documents.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes), float32
        """
        logits = self._logits_numpy(self._check_predict_docs(X)).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        logits -= np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return logits.astype(np.float32)

    def predict(self, X):
        """Most probable class of each document.

        Parameters
        ----------
        X : iterable of str
            Documents.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        logits = self._logits_numpy(self._check_predict_docs(X))
        return self.classes_[np.argmax(logits, axis=1)]

    def _check_predict_docs(self, X):
        check_is_fitted(self)
        return check_documents(X, allow_empty=True)

    # pickling ---------------------------------------------------------
    def __getstate__(self):
        # object.__getstate__ returns the instance's own __dict__: copy it first.
        state = dict(super().__getstate__())
        runtime = state.pop("_runtime", None)
        if runtime is not None:
            state["_pending_tensors"] = tensors_to_bytes(self._trained_tensors())
        elif isinstance(state.get("_pending_tensors"), dict):
            state["_pending_tensors"] = tensors_to_bytes(state["_pending_tensors"])
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self._runtime = None

    # save / load ------------------------------------------------------
    def save(self, folder):
        """Write the fitted classifier to ``folder`` (created if needed).

        The folder holds ``model.safetensors`` (the weights ``fit`` trained)
        and ``config.json`` (parameters, classes and a reference to the
        pretrained source the untouched weights come from); no pickle.
        Parameters that JSON cannot hold (a ``RandomState`` instance, an
        in-memory ``KeyedVectors``) are written as ``None`` and listed under
        ``unsaved_params``; prediction does not need them.

        Parameters
        ----------
        folder : str or path-like
            Destination folder.

        Returns
        -------
        folder : str
        """
        self._ensure_runtime()
        folder = os.fspath(folder)
        from . import __version__

        params, unsaved = params_to_json(self.get_params(deep=False))

        config = {
            "class": type(self).__name__,
            "format_version": FORMAT_VERSION,
            "embedxfer_version": __version__,
            "params": params,
            "unsaved_params": unsaved,
            "classes": classes_to_json(self.classes_),
            "fitted": {
                "loss_curve_": self.loss_curve_,
                "validation_loss_curve_": self.validation_loss_curve_,
                "best_validation_loss_": self.best_validation_loss_,
                "n_epochs_": self.n_epochs_,
                "n_iter_": self.n_iter_,
                "fit_time_": self.fit_time_,
            },
        }
        config.update(self._extra_config())
        write_folder(folder, config, self._trained_tensors())
        return folder

    @classmethod
    def load(cls, folder, *, device=None, **params):
        """Load a classifier written by :meth:`save`.

        Parameters
        ----------
        folder : str or path-like
            Folder written by :meth:`save`.
        device : str, default=None
            Where to run it; ``None`` keeps the saved ``device`` parameter
            (``None``/``"auto"`` picks a GPU when there is one, else the CPU),
            so a model trained on a GPU loads on a CPU-only machine.
        **params
            Parameters to change from the saved ones, e.g. ``model=`` the
            base model's folder on this machine, or ``batch_size``.

        Returns
        -------
        estimator : fitted instance
        """
        folder = os.fspath(folder)
        config, tensors = read_folder(folder, cls.__name__)
        saved = params_from_json(config["params"])
        unknown = set(params) - set(saved)
        if unknown:
            raise TypeError(
                f"{cls.__name__}.load() got unknown parameters {sorted(unknown)}; "
                f"expected some of {sorted(saved)}."
            )
        params = {**saved, **params}
        if device is not None:
            params["device"] = device
        elif params.get("device") not in (None, "auto", "cpu"):
            try:
                resolve_device(params["device"])
            except ValueError:
                params["device"] = None
        est = cls(**params)
        est.classes_ = classes_from_json(config["classes"])
        for key, value in config["fitted"].items():
            setattr(est, key, value)
        est._load_extra_config(config, folder)
        est._rebuild(tensors, resolve_device(est.device))
        return est
