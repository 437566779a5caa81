"""Saved estimator folders as earlier versions of ``save()`` wrote them."""

import json
from pathlib import Path


def drop_records(folder):
    """Make ``folder`` as ``save()`` wrote it before its two files recorded each other.

    ``config.json`` loses the weights' record (``files``) and the weights'
    header the config's digest; the tensors stay as they are.
    """
    from safetensors.torch import load_file, save_file

    folder = Path(folder)
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    del config["files"]
    path.write_text(json.dumps(config), encoding="utf-8")
    save_file(load_file(folder / "model.safetensors"), folder / "model.safetensors")
