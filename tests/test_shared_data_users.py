"""The selection of tests that .ci/run reruns with the shared data sets hidden."""

from pathlib import Path

import pytest
from _shared_data_users import (
    READERS,
    fixtures_reading_shared_data,
    modules_reading_shared_data,
)

HERE = Path(__file__).parent


def _write(folder, files):
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")


def test_a_module_counts_through_any_import_at_any_depth(tmp_path):
    _write(
        tmp_path,
        {
            "test_direct.py": "from _shared_data import read_dataset\n",
            "test_local.py": "def test_x():\n    from _image_data import hymenoptera\n",
            "_helper.py": "import _shared_data\n",
            "_helper_of_helper.py": "from _helper import anything\n",
            "test_indirect.py": "import _helper_of_helper\n",
            "test_relative.py": "from . import _shared_data\n",
            "test_unrelated.py": "import numpy\nfrom embedxfer import _shared_data\n",
        },
    )
    assert modules_reading_shared_data(tmp_path) == READERS | {
        "test_direct",
        "test_local",
        "_helper",
        "_helper_of_helper",
        "test_indirect",
    }


def test_a_fixture_counts_by_its_code_or_by_the_fixtures_it_asks_for(tmp_path):
    conftest = tmp_path / "conftest.py"
    conftest.write_text(
        "import pytest\n"
        "import _image_data\n"
        "import _image_data as images\n"
        "from _shared_data import read_dataset_or_sms as read\n"
        "@pytest.fixture\n"
        "def texts():\n    return read('mr')\n"
        "@pytest.fixture\n"
        "def lengths(texts):\n    return [len(t) for t in texts]\n"
        "@pytest.fixture\n"
        "def photos():\n    return images.sample_photos()\n"
        "@pytest.fixture\n"
        "def textures():\n    return _image_data.texture_patches()\n"
        "@pytest.fixture\n"
        "def numbers():\n    return [1, 2]\n",
        encoding="utf-8",
    )
    assert fixtures_reading_shared_data(conftest) == {"texts", "lengths", "photos", "textures"}


def test_the_suite_marks_the_modules_that_read_the_data_and_no_others():
    modules = modules_reading_shared_data(HERE)
    assert {"test_word", "test_common", "test_saving", "conftest"} <= modules
    assert {"test_cli", "test_shared_data_users", "test_layout"}.isdisjoint(modules)
    assert "mr_texts" in fixtures_reading_shared_data(HERE / "conftest.py")


def test_a_test_asking_for_a_data_fixture_is_marked(request, mr_texts):
    assert request.node.get_closest_marker("shared_data") is not None


def test_a_test_reading_nothing_is_not_marked(request):
    assert request.node.get_closest_marker("shared_data") is None


@pytest.mark.parametrize("name", sorted(READERS))
def test_the_readers_exist(name):
    assert (HERE / f"{name}.py").is_file()
