"""Optional dependencies (embedxfer/_core/optional.py)."""

import json

import pytest

from embedxfer._core.optional import import_optional, install_hint


def test_an_installed_module_is_returned():
    assert import_optional("json", "unused") is json
    assert import_optional("os.path", "unused").join("a", "b").endswith("b")


def test_a_missing_module_names_the_extra():
    message = f"this needs a module that does not exist; {install_hint('onnx')}"
    with pytest.raises(ImportError, match=r"pip install 'embedxfer\[onnx\]'") as info:
        import_optional("embedxfer_no_such_module", message)
    assert str(info.value) == message
    assert isinstance(info.value.__cause__, ImportError)
