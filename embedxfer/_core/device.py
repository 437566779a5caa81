"""Device and precision choice for the torch-backed estimators."""

from .optional import import_optional, install_hint
from .param_validation import Hint, Rule

# Precision names. ``PRECISIONS`` are torch dtypes (the encoders' weights);
# the training estimators add "auto" (bfloat16 or float16 autocast on a GPU,
# float32 on the CPU); the ONNX backend runs float32 or dynamic int8.
PRECISIONS = ("float32", "float16", "bfloat16")
AUTO_PRECISIONS = ("auto", *PRECISIONS)
ONNX_PRECISIONS = ("float32", "int8")


def _torch_device_problem(device):
    """None when ``device`` is a ``torch.device`` (without importing torch), else ``""``."""
    if type(device).__module__ == "torch" and type(device).__name__ == "device":
        return None
    return ""


# The ``device`` entry of an estimator's ``_parameter_constraints``: whether the
# device exists is only known once torch is imported (``resolve_device``).
DEVICE_CONSTRAINT = [
    None,
    str,
    Rule(_torch_device_problem, "a torch.device"),
    Hint("Use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."),
]


def resolve_device(device=None, *, accelerators=("cuda", "mps"), torch_optional=False):
    """Resolve ``None``/``"auto"`` to ``"cuda"``, then ``"mps"``, then ``"cpu"``.

    An explicit device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``)
    is checked against what torch can see and returned unchanged.

    Parameters
    ----------
    device : None, str or torch.device
    accelerators : tuple of {"cuda", "mps"}, default=("cuda", "mps")
        What ``"auto"`` tries, in order, before the CPU.
    torch_optional : bool, default=False
        For estimators whose CPU path needs no torch: without torch
        installed, None and ``"auto"`` resolve to ``"cpu"`` instead of
        raising ``ImportError``. ``"cpu"`` never imports torch.
    """
    if isinstance(device, str) and device == "cpu":
        return device
    try:
        import torch
    except ImportError:
        if torch_optional and (device is None or device == "auto"):
            return "cpu"
        raise

    if device is None or device == "auto":
        mps = getattr(torch.backends, "mps", None)
        available = {
            "cuda": torch.cuda.is_available,
            "mps": lambda: mps is not None and mps.is_available(),
        }
        return next((name for name in accelerators if available[name]()), "cpu")
    if not isinstance(device, str):
        device = str(device)
    kind = device.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but torch sees no CUDA device; use device='cpu' or 'auto'."
        )
    if kind == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ValueError(f"device={device!r} but MPS is not available; use 'cpu' or 'auto'.")
    if kind not in ("cpu", "cuda", "mps", "xpu"):
        raise ValueError(
            f"device={device!r} is not understood; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."
        )
    return device


def _cpu_flags():
    """The CPU's feature flags from ``/proc/cpuinfo`` (Linux); empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_bfloat16():
    """Whether the CPU multiplies bfloat16 matrices natively (AMX or AVX512-BF16).

    Read from the CPU's feature flags (``/proc/cpuinfo``, Linux only): there
    bfloat16 products run at 2-16x float32's rate; elsewhere torch emulates
    them, slower than float32.
    """
    return bool(_cpu_flags() & {"amx_bf16", "avx512_bf16"})


def cpu_has_int8_dot_products():
    """Whether the CPU has int8 dot-product instructions (VNNI, AVX-VNNI or AMX).

    Read as :func:`cpu_has_bfloat16` is. Without them int8 products take
    several instructions each: OpenVINO's calibrated int8 then runs slower
    than float32, while ONNX Runtime's dynamic int8 still gains.
    """
    return bool(_cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def resolve_dtype(precision, device, *, cpu_bfloat16=False):
    """Map a precision name to a torch dtype, refusing half precision on the CPU.

    With ``cpu_bfloat16`` (inference only), ``"bfloat16"`` is accepted on a
    CPU that has native bfloat16 products (:func:`cpu_has_bfloat16`).
    """
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; expected one of {PRECISIONS}.")
    if precision != "float32" and device.split(":")[0] == "cpu":
        if precision == "bfloat16" and cpu_bfloat16:
            if cpu_has_bfloat16():
                return torch.bfloat16
            raise ValueError(
                "precision='bfloat16' on the CPU needs native bfloat16 products (AMX or "
                "AVX512-BF16), which this CPU lacks; use precision='float32'."
            )
        raise ValueError(
            f"precision={precision!r} needs a GPU; on the CPU use precision='float32'."
        )
    return getattr(torch, precision)


def import_torch():
    """Import torch or explain which extra installs it."""
    return import_optional(
        "torch",
        f"this estimator needs torch; install it with {install_hint('transformers')} (text "
        f"encoders) or {install_hint('image')} (images)",
    )
