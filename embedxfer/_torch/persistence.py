"""The saved format of a torch classifier: safetensors weights and a JSON config.

A fitted classifier is a folder with ``model.safetensors`` (the weights
``fit`` trained) and ``config.json`` (parameters, classes, fitted
attributes); pickling carries the same weights as safetensors bytes. No
pickle is ever read back.

The two files vouch for each other. ``config.json`` records the size and
checksum of ``model.safetensors`` (``files``), and the weights' header
holds the SHA-256 of the config's content (``config_sha256``), so a
changed weight, an edited field or two files from different saves are
refused instead of predicting something else; a folder with one record
and not the other is refused too. Folders saved before these records
existed carry neither: they are checked by their fields and tensor shapes
alone, and load with a warning.
"""

import hashlib
import json
import math
import os
import warnings

import numpy as np

from .._core.artefact import file_problem, file_record
from .._core.atomic import signals_held, temporary_path
from .._core.base import ParamsAddedLaterMixin
from .._core.safe_files import open_regular_file, read_regular_file
from ..exceptions import SavedModelError, SavedModelWarning

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
# The weights header's entry holding the config's digest, and the config's
# entry holding the weights' record; the digest covers every other entry.
CONFIG_DIGEST_KEY = "config_sha256"
FILES_KEY = "files"


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


# -- the schema of config.json ----------------------------------------------------------


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_str_list(v):
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _is_number_list(v):
    return isinstance(v, list) and all(_is_number(x) for x in v)


# field -> (what it must be, check)
INT = ("a non-negative integer", _is_int)
NUMBER = ("a finite number", _is_number)
OPTIONAL_NUMBER = ("a finite number or null", lambda v: v is None or _is_number(v))
STR = ("a string", lambda v: isinstance(v, str))
OPTIONAL_STR = ("a string or null", lambda v: v is None or isinstance(v, str))
BOOL = ("true or false", lambda v: isinstance(v, bool))
STRS = ("a list of strings", _is_str_list)
NUMBERS = ("a list of finite numbers", _is_number_list)
OPTIONAL_NUMBERS = ("a list of finite numbers or null", lambda v: v is None or _is_number_list(v))
OBJECT = ("a JSON object", lambda v: isinstance(v, dict))

_TOP_FIELDS = {
    "class": STR,
    "format_version": INT,
    "embedxfer_version": STR,
    "params": OBJECT,
    "unsaved_params": STRS,
    "classes": OBJECT,
    "fitted": OBJECT,
}
FITTED_FIELDS = {
    "loss_curve_": NUMBERS,
    "validation_loss_curve_": OPTIONAL_NUMBERS,
    "best_validation_loss_": OPTIONAL_NUMBER,
    "n_epochs_": INT,
    "n_iter_": INT,
    "fit_time_": NUMBER,
}


def _fitted_fields(estimator_class):
    """The ``fitted`` entries of ``estimator_class``'s saved format: name -> (kind, check)."""
    return getattr(estimator_class, "_fitted_fields", FITTED_FIELDS)


def _check_fields(config, fields, where, complain):
    for name, (kind, ok) in fields.items():
        if name not in config:
            complain(where + name, "is missing")
        if not ok(config[name]):
            complain(where + name, f"is {config[name]!r:.60}, expected {kind}")


def _check_classes(data, complain):
    values, dtype = data.get("values"), data.get("dtype")
    if not isinstance(values, list) or len(values) < 2:
        complain("classes.values", "is not a list of two or more classes")
    try:
        dtype = np.dtype(dtype) if isinstance(dtype, str) else None
    except TypeError:
        dtype = None
    kinds = {"b": bool, "i": int, "u": int, "f": (int, float)}
    if dtype is not None and dtype.kind in "OU":
        longest = max(len(v) if isinstance(v, str) else 0 for v in values)
        fits = all(isinstance(v, str) for v in values) and (
            dtype.kind == "O" or dtype.itemsize <= 4 * max(longest, 1)
        )
    elif dtype is not None and dtype.kind in kinds and dtype.itemsize <= 8:
        fits = all(
            isinstance(v, kinds[dtype.kind]) and (dtype.kind == "b") == isinstance(v, bool)
            for v in values
        )
    else:
        fits = False
    if not fits:
        complain(
            "classes.dtype",
            f"is {data.get('dtype')!r:.40}, expected bool, an integer, a float or a string "
            "dtype that fits the values",
        )
    if len(set(map(repr, values))) != len(values):
        complain("classes.values", "holds a class twice")


def check_config(config, folder, estimator_class):
    """Check ``config.json`` against the saved format of ``estimator_class``.

    The common fields (:data:`FITTED_FIELDS` and the top level) and the
    class's own ``_saved_fields``; raises :class:`SavedModelError` naming the
    file and the first field that does not fit.
    """
    name = estimator_class.__name__
    path = os.path.join(folder, CONFIG_NAME)

    def complain(field, problem):
        raise SavedModelError(
            f"{path}: {field} {problem}; this is not a {name} saved by {name}.save()."
        )

    if not isinstance(config, dict):
        complain("the content", f"is a JSON {type(config).__name__}, expected an object")
    if config.get("class") != name:
        raise SavedModelError(
            f"{path}: class is {config.get('class')!r:.60}, not {name!r}; load it with the "
            "class that saved it."
        )
    if _is_int(config.get("format_version")) and config["format_version"] > FORMAT_VERSION:
        raise SavedModelError(
            f"{path}: format_version {config['format_version']} was written by a newer "
            "embedxfer; upgrade embedxfer to load it."
        )
    _check_fields(config, _TOP_FIELDS, "", complain)
    _check_fields(config, getattr(estimator_class, "_saved_fields", {}), "", complain)
    fitted_fields = _fitted_fields(estimator_class)
    _check_fields(config["fitted"], fitted_fields, "fitted.", complain)
    unknown = sorted(set(config["fitted"]) - set(fitted_fields))
    if unknown:
        complain(f"fitted.{unknown[0]}", f"is not a fitted attribute of {name}")
    known = set(estimator_class._get_param_names())
    unknown = sorted(set(config["params"]) - known)
    if unknown:
        complain(f"params.{unknown[0]}", f"is not a parameter of {name}")
    _check_classes(config["classes"], complain)
    files = config.get(FILES_KEY, {WEIGHTS_NAME: {}})
    if not (isinstance(files, dict) and set(files) == {WEIGHTS_NAME}):
        complain(FILES_KEY, f"is {files!r:.60}, expected the record of {WEIGHTS_NAME} alone")


def check_tensors(shapes, expected, folder, prefixes=()):
    """Check the tensor shapes of ``model.safetensors``'s header against ``expected``.

    ``shapes`` maps each tensor name in the file to its shape; ``expected``
    maps each tensor name to its shape (a tuple, ``None`` for any shape);
    names starting with one of ``prefixes`` may come too (their shapes are
    checked when the network loads them). A tensor missing, one too many or
    of another shape raises :class:`SavedModelError` naming the file and the
    tensor.
    """
    path = os.path.join(folder, WEIGHTS_NAME)
    for name, shape in expected.items():
        if name not in shapes:
            raise SavedModelError(f"{path}: tensor {name!r} is missing; save the model again.")
        got = tuple(shapes[name])
        if shape is not None and got != tuple(shape):
            raise SavedModelError(
                f"{path}: tensor {name!r} has shape {got}, expected {tuple(shape)} from "
                f"{CONFIG_NAME}; the two files do not belong together."
            )
    extra = sorted(n for n in set(shapes) - set(expected) if not n.startswith(tuple(prefixes)))
    if extra:
        raise SavedModelError(f"{path}: tensor {extra[0]!r} is not part of the saved format.")


def config_digest(config):
    """Hex SHA-256 of ``config``'s content, less its ``files`` record.

    Taken over canonical JSON (sorted keys, no spaces) of the config as JSON
    reads it back, so re-indenting the file keeps it and any changed value
    does not.
    """
    content = {k: v for k, v in json.loads(json.dumps(config)).items() if k != FILES_KEY}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def write_folder(folder, config, tensors):
    """Write ``config.json`` and ``model.safetensors`` into ``folder``, as one pair.

    Both are written whole under temporary names first (the weights with the
    config's digest in their header, the config with the weights' record),
    then renamed in one after the other while Ctrl-C and SIGTERM wait. So an
    interrupted save leaves the folder's earlier pair as it was; only a
    crash between the two renames leaves a mismatched pair, which is refused.
    """
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    weights_path = os.path.join(folder, WEIGHTS_NAME)
    config_path = os.path.join(folder, CONFIG_NAME)
    weights_tmp, config_tmp = temporary_path(weights_path), temporary_path(config_path)
    try:
        save_file(
            {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()},
            str(weights_tmp),
            metadata={CONFIG_DIGEST_KEY: config_digest(config)},
        )
        config = {**config, FILES_KEY: {WEIGHTS_NAME: file_record(weights_tmp)}}
        config_tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", "utf-8")
        with signals_held():
            os.replace(weights_tmp, weights_path)
            os.replace(config_tmp, config_path)
    finally:
        weights_tmp.unlink(missing_ok=True)
        config_tmp.unlink(missing_ok=True)


def read_folder(folder, estimator_class):
    """Read back what ``write_folder`` wrote, checked against ``estimator_class``'s format.

    ``config.json`` is checked by :func:`check_config`; ``model.safetensors``
    must be a safetensors file (read as raw tensors, never unpickled) that
    matches the size and checksum the config records, and whose header holds
    the config's digest; a folder with one record and not the other is
    refused. The tensors' names and shapes in the header are checked against
    ``estimator_class._expected_tensors(config)`` before any tensor is read.
    Both files must be regular files of the folder itself, not links. Every
    problem raises :class:`SavedModelError` naming the file and field.
    Returns ``(config, tensors, metadata)``: ``metadata`` is the weights
    header's string entries, checked against the config by
    :func:`check_pairing` once the parameters are.
    """
    from safetensors import safe_open

    name = estimator_class.__name__
    config_path = os.path.join(folder, CONFIG_NAME)
    if not os.path.lexists(config_path):
        raise FileNotFoundError(
            f"{folder!r} has no {CONFIG_NAME}; pass a folder written by {name}.save()."
        )
    try:
        config = json.loads(read_regular_file(config_path, follow_links=False))
    except (OSError, ValueError, RecursionError) as err:
        # RecursionError: JSON nested deeper than the interpreter's stack.
        reason = "nested too deeply" if isinstance(err, RecursionError) else err
        raise SavedModelError(f"{config_path}: not readable JSON ({reason}).") from None
    check_config(config, folder, estimator_class)
    weights_path = os.path.join(folder, WEIGHTS_NAME)
    problem = _safetensors_problem(weights_path)
    if problem is None and FILES_KEY in config:
        record = config[FILES_KEY].get(WEIGHTS_NAME)
        mismatch = file_problem(weights_path, record, kept_in=CONFIG_NAME)
        if mismatch is not None:
            raise SavedModelError(
                f"{weights_path}: {mismatch}; it was changed or damaged after save(); "
                "save the model again."
            )
    if problem is None:
        try:
            with safe_open(weights_path, framework="pt", device="cpu") as fh:
                metadata = fh.metadata() or {}
                names = list(fh.keys())  # a safetensors handle is not iterable
                shapes = {key: tuple(fh.get_slice(key).get_shape()) for key in names}
                _check_records(config, metadata, folder)
                try:
                    expected, prefixes = estimator_class._expected_tensors(config)
                except ValueError as err:
                    raise SavedModelError(f"{config_path}: {err}") from None
                check_tensors(shapes, expected, folder, prefixes)
                tensors = {key: fh.get_tensor(key) for key in names}
        except SavedModelError:
            raise
        except Exception as err:  # safetensors raises its own types on a damaged file
            problem = f"{type(err).__name__}: {err}"
    if problem is not None:
        raise SavedModelError(
            f"{weights_path}: not a safetensors file ({problem}); save the model again."
        )
    return config, tensors, metadata


def _check_records(config, metadata, folder):
    """Refuse a folder that carries one of the two files' records of each other but not both.

    ``save()`` has always written both or neither, so one alone means the other
    was removed, which would otherwise switch its check off.
    """
    if (FILES_KEY in config) == (CONFIG_DIGEST_KEY in metadata):
        return
    if CONFIG_DIGEST_KEY in metadata:
        raise SavedModelError(
            f"{os.path.join(folder, CONFIG_NAME)}: has no {FILES_KEY!r} record of "
            f"{WEIGHTS_NAME}, though the weights' header holds {CONFIG_DIGEST_KEY!r} and "
            "save() writes both; it was edited after save(); save the model again."
        )
    raise SavedModelError(
        f"{os.path.join(folder, WEIGHTS_NAME)}: its header has no {CONFIG_DIGEST_KEY!r}, "
        f"though {CONFIG_NAME} records the weights and save() writes both; the weights were "
        "replaced after save(); save the model again."
    )


def check_pairing(config, metadata, folder):
    """Refuse a ``config.json`` whose content differs from what was saved with the weights.

    The weights' header holds the digest of the config ``save`` wrote
    (:func:`config_digest`); weights without it were saved before the digest
    existed (their config has no ``files`` record either, see
    :func:`read_folder`): they load with a :class:`SavedModelWarning`.
    """
    saved = metadata.get(CONFIG_DIGEST_KEY)
    if saved is None:
        warnings.warn(
            f"{folder}: saved by an earlier embedxfer, without checksums of its files, so "
            "changed weights or fields cannot be detected; save() it again to add them.",
            SavedModelWarning,
            stacklevel=4,
        )
    elif saved != config_digest(config):
        raise SavedModelError(
            f"{os.path.join(folder, CONFIG_NAME)}: its content is not what save() wrote beside "
            f"{WEIGHTS_NAME} (a field was edited, or the two files come from different saves); "
            "save the model again, or pass changed parameters to load()."
        )


def _safetensors_problem(path):
    """None when ``path`` starts as a safetensors file does: a length, then a JSON header.

    It must be a regular file of the folder itself: a FIFO would block the
    reader, and a link would read a file from elsewhere.
    """
    try:
        with open_regular_file(path, follow_links=False) as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(9)
    except ValueError as err:
        return str(err)
    except OSError as err:
        return err.strerror or str(err)
    if len(head) < 9:
        return "too short"
    length = int.from_bytes(head[:8], "little")
    if head[8:9] != b"{" or length > size - 8:
        return "no safetensors header"
    return None


class TrainedWeightsState(ParamsAddedLaterMixin):
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

        from .._core.device import resolve_device

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
    from .. import __version__

    # An opt-in that lets a file run code is the running program's to give:
    # the saved value is the safe one (ProcessOptInsMixin).
    opt_ins = getattr(estimator, "_PROCESS_OPT_INS", {})
    params, unsaved = params_to_json({**estimator.get_params(deep=False), **opt_ins})
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
    """``(estimator, config, tensors)`` from a folder ``write_folder`` wrote, all checked.

    ``config.json`` is checked against ``cls``'s saved format and the tensors
    against the shapes ``cls._expected_tensors(config)`` names; the estimator
    has the saved parameters updated with ``params`` (and ``device``), checked
    by its parameter table, and ``classes_`` and the ``fitted`` attributes
    set; the caller rebuilds its network from ``tensors``. A saved GPU device
    that is not available here falls back to ``None`` (the best device here).
    """
    from .._core.device import resolve_device
    from .._core.param_validation import validate_params

    params_given = dict(params)
    config, tensors, metadata = read_folder(folder, cls)
    saved = {**cls._params_added_later, **params_from_json(config["params"])}
    # Never from the file, whatever it says: only ``load(..., allow_pickle=True)``.
    saved.update({k: v for k, v in getattr(cls, "_PROCESS_OPT_INS", {}).items() if k in saved})
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
    unsaved = set(config["unsaved_params"]) - set(params_given)
    try:
        validate_params(est, [p for p in est._parameter_constraints if p not in unsaved])
    except ValueError as err:
        raise SavedModelError(f"{os.path.join(folder, CONFIG_NAME)}: params: {err}") from None
    # Last, so that a malformed field is named by the checks above.
    check_pairing(config, metadata, folder)
    est.classes_ = classes_from_json(config["classes"])
    for key in _fitted_fields(cls):
        setattr(est, key, config["fitted"][key])
    return est, config, tensors


class SavedWeightsMixin(TrainedWeightsState):
    """``save`` and ``load`` in the project's format: safetensors weights beside a JSON config.

    An estimator supplies ``_saved_fitted_attributes`` (its fitted attributes
    for ``config.json``) and, where it keeps more, ``_extra_config`` and
    ``_load_extra_config``; ``_trained_tensors`` and ``_rebuild`` come from
    ``TrainedWeightsState``'s contract.
    """

    def _saved_fitted_attributes(self):
        """``{name: value}`` of the fitted attributes ``config.json`` holds under ``fitted``."""
        raise NotImplementedError

    def _extra_config(self):
        """More top-level ``config.json`` entries (none by default)."""
        return {}

    def _load_extra_config(self, config, folder):
        """Set the attributes ``_extra_config`` wrote (nothing by default)."""

    def save(self, folder):
        """Write the fitted estimator to ``folder`` (created if needed).

        The folder holds ``model.safetensors`` (the weights ``fit`` trained)
        and ``config.json`` (parameters, fitted attributes and a reference to
        the pretrained source the untouched weights come from); no pickle.
        Parameters that JSON cannot hold (a ``RandomState`` instance, an
        in-memory ``KeyedVectors``) are written as ``None`` and listed under
        ``unsaved_params``; using the loaded estimator does not need them.

        Parameters
        ----------
        folder : str or path-like
            Destination folder.

        Returns
        -------
        folder : str
            The folder written.
        """
        self._ensure_runtime()
        folder = os.fspath(folder)
        config = saved_config(self, self._saved_fitted_attributes())
        config.update(self._extra_config())
        write_folder(folder, config, self._trained_tensors())
        return folder

    @classmethod
    def load(cls, folder, *, device=None, **params):
        """Load an estimator written by :meth:`save`.

        The folder's files are checked (sizes, checksums, tensor names and
        shapes) before anything is built from them.

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
        from .._core.device import resolve_device

        folder = os.fspath(folder)
        est, config, tensors = estimator_from_folder(cls, folder, device, params)
        est._load_extra_config(config, folder)
        try:
            est._rebuild(tensors, resolve_device(est.device))
        except (RuntimeError, KeyError) as err:  # load_state_dict on a mismatched network
            message = " ".join(str(err).split())[:300]
            raise SavedModelError(
                f"{os.path.join(folder, WEIGHTS_NAME)}: the tensors do not fit the network "
                f"({message})."
            ) from None
        return est
