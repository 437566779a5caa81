"""The home folder and the offline switch (embedxfer/_core/environment.py)."""

import pytest

from embedxfer._core.environment import OFFLINE_VARIABLES, home_folder, offline


@pytest.fixture
def clean_environment(monkeypatch):
    for var in (*OFFLINE_VARIABLES, "EMBEDXFER_HOME"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_home_folder_follows_embedxfer_home(clean_environment, tmp_path):
    clean_environment.setenv("EMBEDXFER_HOME", str(tmp_path))
    assert home_folder("vectors") == tmp_path / "vectors"
    assert home_folder() == tmp_path


def test_home_folder_defaults_to_the_user_cache(clean_environment):
    import platformdirs

    assert str(home_folder("onnx")).startswith(platformdirs.user_cache_dir("embedxfer"))


@pytest.mark.parametrize("var", OFFLINE_VARIABLES)
@pytest.mark.parametrize("value, expected", [("1", True), ("yes", True), ("0", False), ("", False)])
def test_every_offline_variable_counts(clean_environment, var, value, expected):
    assert not offline()
    clean_environment.setenv(var, value)
    assert offline() is expected


def test_false_in_any_case_is_online(clean_environment):
    clean_environment.setenv("HF_HUB_OFFLINE", "FALSE")
    assert not offline()
