"""The selection of tests that .ci/run reruns with the shared data sets hidden."""

from pathlib import Path

import pytest
from _shared_data_users import (
    READERS,
    definitions_reading_shared_data,
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


def test_a_test_counts_by_its_code_its_helpers_constants_and_fixtures(tmp_path):
    module = tmp_path / "test_module.py"
    module.write_text(
        "import pytest\n"
        "import _image_data as images\n"
        "from _shared_data import has_dataset, read_dataset\n"
        "from _helper import helped\n"
        "HAVE_SST2 = has_dataset('sst2')\n"
        "LIMIT = 3\n"
        "def load():\n    return read_dataset('sst2')\n"
        "def unrelated():\n    return LIMIT\n"
        "@pytest.fixture(name='texts')\n"
        "def _texts():\n    return load()\n"
        "@pytest.fixture\n"
        "def numbers():\n    return [1, 2]\n"
        "def test_direct():\n    read_dataset('mr')\n"
        "def test_through_a_helper():\n    load()\n"
        "@pytest.mark.skipif(not HAVE_SST2, reason='')\n"
        "def test_through_a_decorator():\n    pass\n"
        "def test_through_a_fixture(texts):\n    pass\n"
        "@pytest.mark.usefixtures('texts')\n"
        "def test_through_usefixtures():\n    pass\n"
        "def test_imports_inside():\n    from _shared_data import DATA_DIR\n"
        "def test_module_alias():\n    images.hymenoptera()\n"
        "def test_another_helper_module():\n    helped()\n"
        "class TestGroup:\n    def test_x(self):\n        load()\n"
        "def test_unrelated(numbers):\n    unrelated()\n",
        encoding="utf-8",
    )
    names, everything = definitions_reading_shared_data(module, READERS | {"_helper"})
    tests = {name for name in names if name.startswith(("test_", "Test"))}
    assert tests == {
        "test_direct",
        "test_through_a_helper",
        "test_through_a_decorator",
        "test_through_a_fixture",
        "test_through_usefixtures",
        "test_imports_inside",
        "test_module_alias",
        "test_another_helper_module",
        "TestGroup",
    }
    assert {"HAVE_SST2", "load", "_texts", "texts"} <= names
    assert not {"LIMIT", "unrelated", "numbers"} & names
    assert not everything


@pytest.mark.parametrize(
    "module_code",
    [
        "pytestmark = pytest.mark.skipif(not has_dataset('mr'), reason='')\n",
        "if has_dataset('mr'):\n    def test_made_here():\n        pass\n",
    ],
)
def test_module_code_reading_the_data_makes_every_test_count(tmp_path, module_code):
    module = tmp_path / "test_module.py"
    module.write_text(
        "import pytest\nfrom _shared_data import has_dataset\n" + module_code,
        encoding="utf-8",
    )
    assert definitions_reading_shared_data(module)[1]


def test_the_suite_marks_the_modules_that_read_the_data_and_no_others():
    modules = modules_reading_shared_data(HERE)
    assert {"test_word", "test_common", "test_image", "conftest"} <= modules
    assert {"test_cli", "test_saving", "test_shared_data_users"}.isdisjoint(modules)
    assert "mr_texts" in fixtures_reading_shared_data(HERE / "conftest.py")


def test_the_suite_marks_the_tests_that_read_the_data_within_a_module():
    modules = modules_reading_shared_data(HERE)
    names, everything = definitions_reading_shared_data(HERE / "test_common.py", modules)
    assert not everything
    assert {"data", "fitted", "test_refit_equals_a_fresh_fit"} <= names
    assert not {"test_sklearn_api_checks", "make", "FAST_PARAMS"} & names
    names, _ = definitions_reading_shared_data(HERE / "test_sentence.py", modules)
    assert "test_beats_tfidf_on_sst2_with_100_training_examples" in names
    assert "test_pickle_is_small_and_works_in_a_fresh_process" not in names


def test_a_test_asking_for_a_data_fixture_is_marked(request, mr_texts):
    assert request.node.get_closest_marker("shared_data") is not None


def test_a_test_reading_nothing_is_not_marked(request):
    assert request.node.get_closest_marker("shared_data") is None


@pytest.mark.parametrize("name", sorted(READERS))
def test_the_readers_exist(name):
    assert (HERE / f"{name}.py").is_file()
