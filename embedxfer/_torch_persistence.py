"""The saved format of a torch classifier: safetensors weights and a JSON config.

A fitted classifier is a folder with ``model.safetensors`` (the weights
``fit`` trained) and ``config.json`` (parameters, classes, fitted
attributes); pickling carries the same weights as safetensors bytes. No
pickle is ever read back.
"""

import json
import os

import numpy as np

from ._atomic import atomic_path, write_text_atomic

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1


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
    """Write ``config.json`` and ``model.safetensors`` into ``folder``, each atomically."""
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    with atomic_path(os.path.join(folder, WEIGHTS_NAME)) as tmp:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp))
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    write_text_atomic(os.path.join(folder, CONFIG_NAME), text)


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


class TrainedWeightsState:
    """Pickling of an estimator whose live torch objects (``_runtime``) never travel.

    A pickle carries the weights ``fit`` trained (``_trained_tensors()``) as
    safetensors bytes; they are turned back into a runtime by ``_rebuild``
    on first use (``_ensure_runtime``), on the device the ``device``
    parameter names here.
    """

    _runtime = None
    _pending_tensors = None

    def _ensure_runtime(self):
        from sklearn.utils.validation import check_is_fitted

        from ._device import resolve_device

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


def saved_config(estimator, fitted):
    """The ``config.json`` of a fitted estimator: its class, parameters, classes and ``fitted``.

    Parameters that JSON cannot hold are written as ``None`` and listed
    under ``unsaved_params``.
    """
    from . import __version__

    params, unsaved = params_to_json(estimator.get_params(deep=False))
    return {
        "class": type(estimator).__name__,
        "format_version": FORMAT_VERSION,
        "embedxfer_version": __version__,
        "params": params,
        "unsaved_params": unsaved,
        "classes": classes_to_json(estimator.classes_),
        "fitted": fitted,
    }


def estimator_from_folder(cls, folder, device, params):
    """``(estimator, config, tensors)`` from a folder ``write_folder`` wrote.

    The estimator has the saved parameters updated with ``params`` (and
    ``device``), ``classes_`` and the ``fitted`` attributes set; the caller
    rebuilds its network from ``tensors``. A saved GPU device that is not
    available here falls back to ``None`` (the best device here).
    """
    from ._device import resolve_device

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
    return est, config, tensors
