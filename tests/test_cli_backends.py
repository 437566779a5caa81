"""The command line's sentence-model options for backends and long documents."""

import numpy as np
import pytest
from test_cli import run_cli

from embedxfer.cli._encode import build_embedder
from embedxfer.cli._model_names import parse_model
from embedxfer.datasets import load_sms_spam


@pytest.mark.parametrize(
    "text, settings, pooling",
    [
        ("all-MiniLM-L6-v2:onnx", {"backend": "onnx"}, None),
        ("all-MiniLM-L6-v2:onnx-int8", {"backend": "onnx", "precision": "int8"}, None),
        ("all-MiniLM-L6-v2:openvino", {"backend": "openvino"}, None),
        (
            "all-MiniLM-L6-v2:openvino-bf16",
            {"backend": "openvino", "precision": "bfloat16"},
            None,
        ),
        (
            "all-MiniLM-L6-v2:openvino-int8",
            {"backend": "openvino", "precision": "int8"},
            None,
        ),
        ("all-MiniLM-L6-v2:cls,chunk", {"long_documents": "chunk"}, "cls"),
        (
            "all-MiniLM-L6-v2:onnx-int8,chunk,max",
            {"backend": "onnx", "precision": "int8", "long_documents": "chunk"},
            "max",
        ),
        ("all-MiniLM-L6-v2", {}, None),
    ],
)
def test_parse_model_options(text, settings, pooling):
    spec = parse_model(text)
    assert spec.kind == "sentence" and spec.name == "all-MiniLM-L6-v2"
    assert spec.settings == settings and spec.pooling == pooling
    embedder = build_embedder(spec)
    params = embedder.get_params()
    assert {k: params[k] for k in settings} == settings


def test_runtime_options_are_refused_for_word_vectors():
    with pytest.raises(ValueError, match="not understood for word"):
        parse_model("glove-6B-50d:onnx")


def test_models_lists_backends(tmp_path):
    import importlib.util

    has_openvino = importlib.util.find_spec("openvino") is not None
    proc = run_cli("models", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "onnx, onnx-int8" in proc.stdout and "torch" in proc.stdout
    expected = "openvino            works" if has_openvino else "openvino            missing"
    assert expected in proc.stdout
    if has_openvino:
        has_nncf = importlib.util.find_spec("nncf") is not None
        assert ("openvino-int8 too with nncf" in proc.stdout) == has_nncf


@pytest.mark.parametrize(
    "flags, fast_int8",
    [
        ({"avx2", "fma"}, False),
        ({"avx2", "avx512f", "avx512_vnni"}, True),
        ({"avx2", "avx_vnni"}, True),
        ({"avx2", "amx_int8", "amx_bf16"}, True),
    ],
)
def test_cpu_flags_say_where_int8_dot_products_are(monkeypatch, flags, fast_int8):
    from embedxfer._core import device

    monkeypatch.setattr(device, "_cpu_flags", lambda: flags)
    assert device.cpu_has_int8_dot_products() == fast_int8
    assert device.cpu_has_bfloat16() == ("amx_bf16" in flags)


@pytest.mark.parametrize("fast_int8", [True, False])
def test_models_says_when_openvino_int8_is_slower_than_float32(monkeypatch, fast_int8):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from embedxfer._core import device
    from embedxfer.cli._models import _backend_lines

    monkeypatch.setattr(device, "cpu_has_int8_dot_products", lambda: fast_int8)
    (line,) = [line for line in _backend_lines() if line.startswith("openvino ")]
    assert "openvino-int8 too" in line
    assert ("slower than float32 here: no VNNI" in line) != fast_int8


@pytest.mark.slow
def test_embed_with_onnx_matches_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("sentence_transformers")
    texts = [t.replace("\n", " ") for t in load_sms_spam().data[:20]]
    (tmp_path / "docs.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    proc = run_cli(
        "embed", "docs.txt", "-o", "onnx.npy", "-m", "all-MiniLM-L6-v2:onnx", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    got = np.load(tmp_path / "onnx.npy")
    from embedxfer import SentenceEmbedder

    expected = SentenceEmbedder(device="cpu").fit().transform(texts)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
