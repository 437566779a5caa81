"""Fixtures shared across the test modules: real data, real vectors, vector files."""

import functools
import os
from pathlib import Path

import numpy as np
import pytest
from _shared_data import read_dataset_or_sms
from _shared_data_users import (
    definitions_reading_shared_data,
    fixtures_reading_shared_data,
    modules_reading_shared_data,
)

_RUN_HOME = None


def pytest_configure(config):
    # Converted vector files go to a per-run folder, never to the user's cache.
    global _RUN_HOME
    if "EMBEDXFER_HOME" not in os.environ:
        import tempfile

        _RUN_HOME = tempfile.mkdtemp(prefix="embedxfer-test-home-")
        os.environ["EMBEDXFER_HOME"] = _RUN_HOME


def pytest_unconfigure(config):
    # A run's conversions, exports and distilled tables take hundreds of
    # megabytes; repeated runs must not fill the disk.
    if _RUN_HOME is not None:
        import shutil

        shutil.rmtree(_RUN_HOME, ignore_errors=True)
        os.environ.pop("EMBEDXFER_HOME", None)


def pytest_collection_modifyitems(config, items):
    _mark_tests_reading_shared_data(items)
    _skip_gpu_tests_without_cuda(items)


def _mark_tests_reading_shared_data(items):
    here = Path(__file__).parent
    modules = modules_reading_shared_data(here)
    conftest_fixtures = fixtures_reading_shared_data(here / "conftest.py")

    @functools.cache
    def reading(path):
        # The definitions of a test file that can read the data, and whether all can.
        if path.parent == here and path.stem in modules:
            return definitions_reading_shared_data(path, modules)
        return set(), False

    for item in items:
        names, everything = reading(item.path)
        own = {
            getattr(item, "originalname", item.name),
            getattr(getattr(item, "cls", None), "__name__", None),
        }
        asked = set(getattr(item, "fixturenames", ()))
        if everything or names & own or (names | conftest_fixtures) & asked:
            item.add_marker(pytest.mark.shared_data)


def _skip_gpu_tests_without_cuda(items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["compiled", "numpy"])
def kernel_path(request, monkeypatch):
    """Run a test on the compiled kernels, then on the numpy code they replace."""
    from embedxfer.text import _native

    if request.param == "compiled" and not _native.available():
        pytest.skip("this install was built without the compiled kernels (no C compiler)")
    monkeypatch.setattr(_native, "ENABLED", request.param == "compiled")
    return request.param


@pytest.fixture(scope="session")
def glove():
    """The packaged GloVe 6B 50d vectors (real, 400k words)."""
    from embedxfer import load_vectors

    return load_vectors("glove-6B-50d")


@pytest.fixture(scope="session")
def small_glove(glove):
    """The 5,000 most frequent GloVe words as a standalone KeyedVectors."""
    from gensim.models import KeyedVectors

    kv = KeyedVectors(glove.vector_size)
    kv.add_vectors(glove.index_to_key[:5000], np.asarray(glove.vectors[:5000]))
    return kv


@pytest.fixture(scope="session")
def mr_texts():
    """MR sentences when ../shared is there, else the packaged SMS messages."""
    texts, labels, _ = read_dataset_or_sms("mr")
    return texts, labels
