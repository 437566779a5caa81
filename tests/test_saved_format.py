"""The saved format of torch classifiers is checked whole (embedxfer/_torch/persistence.py).

A SequenceClassifier over 3,000 GloVe words, trained two epochs, is saved once;
each test tampers with a copy of its folder.
"""

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("safetensors")
hypothesis = pytest.importorskip("hypothesis")
from _saved_folders import drop_records
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from embedxfer import SequenceClassifier
from embedxfer._core.artefact import file_record
from embedxfer._torch.persistence import SavedModelError, config_digest
from embedxfer.datasets import load_sms_spam
from embedxfer.exceptions import SavedModelWarning


@pytest.fixture(scope="module")
def saved(tmp_path_factory, small_glove):
    bunch = load_sms_spam()
    rng = np.random.default_rng(0)
    pick = rng.choice(len(bunch.data), 60, replace=False)
    texts = [bunch.data[i] for i in pick]
    labels = np.asarray(bunch.target)[pick]
    clf = SequenceClassifier(
        vectors=small_glove, architecture="cnn", hidden_size=8, epochs=2, random_state=0
    ).fit(texts, labels)
    folder = tmp_path_factory.mktemp("saved") / "clf"
    clf.save(folder)
    return folder, texts, clf.predict_proba(texts)


def _copy(saved, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(saved[0], folder)
    return folder


def _edit_config(folder, edit):
    path = folder / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config = edit(config) or config
    path.write_text(json.dumps(config), encoding="utf-8")


def test_untouched_folder_loads_and_predicts_the_same(saved):
    folder, texts, expected = saved
    loaded = SequenceClassifier.load(folder)
    np.testing.assert_array_equal(loaded.predict_proba(texts), expected)


def _change(path, function):
    """An edit of ``config.json`` that sets ``path`` to ``function(value there, or None)``."""

    def edit(config):
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        node[last] = function(node.get(last))

    return edit


def _set(path, value):
    return _change(path, lambda _: value)


@pytest.mark.parametrize(
    "edit, field",
    [
        (_set("fitted.predict", 1), "fitted.predict"),
        (_set("fitted.n_epochs_", "2"), "fitted.n_epochs_"),
        (_set("format_version", "1"), "format_version"),
        (_set("format_version", True), "format_version"),
        (_set("classes.dtype", "<U999999999"), "classes.dtype"),
        (_set("classes.dtype", "|V8"), "classes.dtype"),
        (_set("classes.values", [0, 1, 2]), "classes.dtype|tensor 'out.weight'"),
        (_set("params.predict", 1), "params.predict"),
        (_set("params.hidden_size", "big"), "params"),
        (_set("vocabulary_", ["a", "b"]), "tensor 'embedding.weight'"),
        (_set("oov_rate_", float("nan")), "oov_rate_"),
        (lambda c: c.pop("vector_size_") and None, "vector_size_"),
        (lambda c: [c], "the content"),
    ],
)
def test_tampered_config_is_one_error_naming_file_and_field(saved, tmp_path, edit, field):
    folder = _copy(saved, tmp_path)
    _edit_config(folder, edit)
    with pytest.raises(SavedModelError, match=field) as info:
        SequenceClassifier.load(folder)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and str(folder) in message


def test_wrong_shapes_and_missing_tensors_are_named(saved, tmp_path):
    # The shapes are what protect a folder saved without the files' records.
    from safetensors.torch import load_file, save_file

    folder = _copy(saved, tmp_path)
    drop_records(folder)
    path = folder / "model.safetensors"
    tensors = load_file(path)
    save_file({**tensors, "out.bias": tensors["out.bias"][:1]}, path)
    with pytest.raises(SavedModelError, match=r"model.safetensors.*'out.bias' has shape"):
        SequenceClassifier.load(folder)
    save_file({k: v for k, v in tensors.items() if k != "out.weight"}, path)
    with pytest.raises(SavedModelError, match="'out.weight' is missing"):
        SequenceClassifier.load(folder)
    save_file({k: v for k, v in tensors.items() if not k.startswith("convs.0")}, path)
    with pytest.raises(SavedModelError, match=r"'convs\.0\.(weight|bias)' is missing"):
        SequenceClassifier.load(folder)


def test_a_folder_saved_without_records_loads_and_predicts_the_same(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    drop_records(folder)
    with pytest.warns(SavedModelWarning, match=f"{folder}.*without checksums.*save"):
        loaded = SequenceClassifier.load(folder)
    np.testing.assert_array_equal(loaded.predict_proba(saved[1]), saved[2])


def _reseal(folder, edit):
    """Edit ``config.json`` and recompute both records, as only a forger would."""
    from safetensors.torch import load_file, save_file

    _edit_config(folder, lambda config: (edit(config), config.pop("files"))[0])
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    path = folder / "model.safetensors"
    save_file(load_file(path), path, metadata={"config_sha256": config_digest(config)})
    config["files"] = {"model.safetensors": file_record(path)}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")


def test_one_record_without_the_other_is_refused(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _copy(saved, tmp_path)
    path = folder / "model.safetensors"
    tensors = load_file(path)
    # The weights changed, their record removed, the header's digest left as it was.
    with open(path, "r+b") as fh:
        fh.seek(-5, os.SEEK_END)
        byte = fh.read(1)
        fh.seek(-5, os.SEEK_END)
        fh.write(bytes([byte[0] ^ 0x40]))
    _edit_config(folder, lambda config: config.pop("files") and None)
    with pytest.raises(SavedModelError, match="no 'files' record") as info:
        SequenceClassifier.load(folder)
    assert str(info.value).startswith(str(folder / "config.json"))
    # The weights rewritten without the digest, the config's record of them recomputed.
    folder = _copy(saved, tmp_path / "other")
    save_file(
        {**tensors, "out.bias": tensors["out.bias"] + 1}, path := folder / "model.safetensors"
    )
    _edit_config(folder, lambda config: config.update(files={path.name: file_record(path)}))
    with pytest.raises(SavedModelError, match="header has no 'config_sha256'") as info:
        SequenceClassifier.load(folder)
    assert str(info.value).startswith(str(path))


@pytest.mark.parametrize("records", [True, False], ids=["resealed", "saved without records"])
def test_encoder_shapes_are_checked_before_the_network_is_built(
    saved, tmp_path, monkeypatch, records
):
    folder = _copy(saved, tmp_path)

    def edit(config):
        config["params"]["hidden_size"] = 10**7
        config["n_features_out_"] = 3 * 10**7

    if records:
        _reseal(folder, edit)
    else:
        drop_records(folder)
        _edit_config(folder, edit)
    built = []
    monkeypatch.setattr(SequenceClassifier, "_new_net", lambda self, *args: built.append(args))
    with pytest.raises(SavedModelError, match=r"'convs\.0\.weight' has shape \(8, "):
        SequenceClassifier.load(folder)
    _edit_config(folder, lambda config: config.update(n_features_out_=24))
    with pytest.raises(SavedModelError, match="n_features_out_ is 24, but a cnn of hidden_size"):
        SequenceClassifier.load(folder)
    assert built == []


@pytest.mark.parametrize("architecture", ["bigru", "bilstm", "cnn"])
def test_expected_tensors_are_those_of_the_network(architecture):
    from embedxfer.text._sequence_networks import SequenceNet

    net = SequenceNet(7, 5, architecture, 3, 2, 0.0, padding_idx=0)
    width = net.n_features
    config = {
        "params": {"architecture": architecture, "hidden_size": 3},
        "classes": {"values": ["a", "b"]},
        "vocabulary_": ["w"] * 5,
        "vector_size_": 5,
        "n_features_out_": width,
    }
    expected, prefixes = SequenceClassifier._expected_tensors(config)
    assert prefixes == ()
    assert expected == {k: tuple(v.shape) for k, v in net.state_dict().items()}


def test_weights_that_are_a_fifo_are_refused_without_blocking(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    (folder / "model.safetensors").unlink()
    os.mkfifo(folder / "model.safetensors")

    def hung(*_):
        raise TimeoutError("load() blocked on a FIFO")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        with pytest.raises(SavedModelError, match="model.safetensors: .*not a regular file"):
            SequenceClassifier.load(folder)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_config_nested_too_deeply_is_refused_by_name(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(SavedModelError, match="config.json: not readable JSON") as info:
        SequenceClassifier.load(folder)
    assert len(str(info.value).splitlines()) == 1


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_links_inside_the_folder_are_refused(saved, tmp_path, name):
    folder = _copy(saved, tmp_path)
    outside = tmp_path / f"outside-{name}"
    shutil.move(folder / name, outside)
    (folder / name).symlink_to(outside)
    with pytest.raises(SavedModelError, match="symbolic link") as info:
        SequenceClassifier.load(folder)
    assert str(info.value).startswith(str(folder / name))


def test_a_link_to_the_folder_itself_loads(saved, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(saved[0], target_is_directory=True)
    loaded = SequenceClassifier.load(link)
    np.testing.assert_array_equal(loaded.predict_proba(saved[1]), saved[2])


def test_reindented_config_still_loads(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    path = folder / "config.json"
    path.write_text(json.dumps(json.loads(path.read_text()), indent=7), encoding="utf-8")
    loaded = SequenceClassifier.load(folder)
    np.testing.assert_array_equal(loaded.predict_proba(saved[1]), saved[2])


@pytest.mark.parametrize(
    "edit",
    # Each is well formed and fits the tensors, and each changes the predictions.
    [
        _set("lowercase_", False),
        _change("vocabulary_", lambda words: words[::-1]),
        _change("classes.values", lambda classes: classes[::-1]),
    ],
    ids=["lowercase_ flipped", "vocabulary_ reversed", "classes reversed"],
)
def test_an_edited_field_that_fits_the_tensors_is_refused(saved, tmp_path, edit):
    folder = _copy(saved, tmp_path)
    _edit_config(folder, edit)
    with pytest.raises(SavedModelError, match="not what save\\(\\) wrote") as info:
        SequenceClassifier.load(folder)
    assert str(folder / "config.json") in str(info.value)


def test_changed_weights_are_refused_by_checksum(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _copy(saved, tmp_path)
    path = folder / "model.safetensors"
    tensors = load_file(path)
    save_file({**tensors, "out.bias": tensors["out.bias"] + 1}, path, metadata={})
    with pytest.raises(SavedModelError, match="does not match the size and checksum") as info:
        SequenceClassifier.load(folder)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and str(path) in message


def test_config_and_weights_of_two_saves_are_refused(saved, small_glove, tmp_path):
    folder, texts, _ = saved
    # Same settings and data as the fixture's, another seed: tensors of the same shapes.
    other = SequenceClassifier(
        vectors=small_glove, architecture="cnn", hidden_size=8, epochs=2, random_state=1
    ).fit(texts, SequenceClassifier.load(folder).predict(texts))
    other_folder = other.save(tmp_path / "other")
    mixed = _copy(saved, tmp_path)
    shutil.copy(tmp_path / "other" / "model.safetensors", mixed / "model.safetensors")
    with pytest.raises(SavedModelError, match="checksum"):
        SequenceClassifier.load(mixed)
    # With the config's record of the weights removed, the weights' record of the config refuses.
    _edit_config(mixed, lambda config: config.pop("files") and None)
    with pytest.raises(SavedModelError, match="no 'files' record"):
        SequenceClassifier.load(mixed)
    assert SequenceClassifier.load(other_folder).predict(texts[:2]).shape == (2,)


_SAVE_THEN_TERMINATED = """
import os, pickle, signal, sys
classifier = pickle.loads(open(sys.argv[1], "rb").read())
rename = os.replace
def replace_then_terminated(src, dst):
    rename(src, dst)
    if str(dst).endswith("model.safetensors"):
        os.kill(os.getpid(), signal.SIGTERM)
os.replace = replace_then_terminated
if sys.argv[3] == "handled":
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
classifier.save(sys.argv[2])
"""


@pytest.mark.parametrize("stop", ["ctrl-c while writing", "handled", "default"])
def test_a_save_interrupted_over_an_earlier_one_keeps_a_whole_pair(
    saved, small_glove, tmp_path, monkeypatch, stop
):
    from embedxfer._torch import persistence

    folder, texts, expected = saved
    kept = _copy(saved, tmp_path)
    other = SequenceClassifier(
        vectors=small_glove, architecture="cnn", hidden_size=8, epochs=2, random_state=1
    ).fit(texts, SequenceClassifier.load(folder).predict(texts))
    if stop == "ctrl-c while writing":  # once the new weights are written, before the config

        def interrupted(path):
            raise KeyboardInterrupt

        monkeypatch.setattr(persistence, "file_record", interrupted)
        with pytest.raises(KeyboardInterrupt):
            other.save(kept)
    else:  # SIGTERM (with a handler, or the default) as the new weights are renamed in
        blob = tmp_path / "other.pkl"
        blob.write_bytes(pickle.dumps(other))
        proc = subprocess.run(
            [sys.executable, "-c", _SAVE_THEN_TERMINATED, str(blob), str(kept), stop],
            capture_output=True,
            text=True,
            timeout=300,
        )
        # The signal waited for the config: the new pair is whole.
        assert proc.returncode == (143 if stop == "handled" else -signal.SIGTERM), proc.stderr
        expected = other.predict_proba(texts)
    loaded = SequenceClassifier.load(kept)
    np.testing.assert_allclose(loaded.predict_proba(texts), expected, rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in kept.iterdir()) == ["config.json", "model.safetensors"]


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_a_pickle_in_place_of_the_weights_is_refused_unread(saved, tmp_path, capsys):
    folder = _copy(saved, tmp_path)
    (folder / "model.safetensors").write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(SavedModelError, match="model.safetensors: not a safetensors file"):
        SequenceClassifier.load(folder)
    assert "unpickled" not in capsys.readouterr().out
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    with pytest.raises(SavedModelError, match="not a safetensors file"):
        SequenceClassifier.load(folder)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
_FIELDS = [
    "format_version",
    "classes",
    "classes.values",
    "classes.dtype",
    "fitted",
    "fitted.loss_curve_",
    "fitted.n_iter_",
    "fitted.fit_time_",
    "params",
    "unsaved_params",
    "vocabulary_",
    "n_pretrained_",
    "vector_size_",
    "lowercase_",
    "n_features_out_",
]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(field=st.sampled_from(_FIELDS), value=_JSON)
# Well formed, fits the tensors, changes the predictions: only the config's digest catches it.
@example(field="lowercase_", value=False)
def test_any_value_in_any_field_loads_faithfully_or_fails_cleanly(saved, tmp_path, field, value):
    folder = tmp_path / "prop"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(saved[0], folder)
    _edit_config(folder, _set(field, value))
    try:
        loaded = SequenceClassifier.load(folder)
    except SavedModelError as err:
        assert str(folder) in str(err)
        return
    # accepted: then it predicts what the saved model predicted
    np.testing.assert_array_equal(loaded.predict_proba(saved[1]), saved[2])
