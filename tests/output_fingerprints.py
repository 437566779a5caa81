"""Fingerprints of every estimator's outputs, to show that a refactor changes none.

Hashes (SHA-256, first 16 hex digits, with dtype and shape) of the vectors,
probabilities and saved-model files of WordVectorEmbedder, SentenceEmbedder
(torch and ONNX backends), TransformerClassifier, SequenceClassifier,
ContrastiveEmbedder,
ImageEmbedder and ImageClassifier, on the packaged SMS Spam messages and
scikit-image's textures with the packaged models. A saved model's
``fit_time_`` is left out (it is a duration, not an output).

Run it on the commit before a change and on the commit after, on the same
machine (float results depend on the torch build and the CPU)::

    git stash; python tests/output_fingerprints.py /tmp/before.json; git stash pop
    python tests/output_fingerprints.py /tmp/after.json --compare /tmp/before.json

``--compare`` prints every fingerprint that differs and exits 1 if any does.
"""

import argparse
import hashlib
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def array_fingerprint(array):
    array = np.ascontiguousarray(np.asarray(array))
    return f"{hashlib.sha256(array.tobytes()).hexdigest()[:16]} {array.dtype} {array.shape}"


def saved_fingerprint(estimator):
    """Fingerprints of the files ``estimator.save`` writes."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        estimator.save(folder)
        for path in sorted(folder.rglob("*")):
            if not path.is_file():
                continue
            data = path.read_bytes()
            # The fit time varies between runs, and so do the records that cover it: the
            # config's record of the weights file and the weights header's digest of the config.
            if path.name == "config.json":
                config = json.loads(data)
                config.get("fitted", {}).pop("fit_time_", None)
                config.pop("files", None)
                data = json.dumps(config, sort_keys=True).encode()
            elif path.suffix == ".safetensors":
                import torch
                from safetensors.torch import load_file

                tensors = load_file(path)
                data = b"".join(
                    name.encode() + tensors[name].contiguous().view(torch.uint8).numpy().tobytes()
                    for name in sorted(tensors)
                )
            out[path.name] = hashlib.sha256(data).hexdigest()[:16]
    return out


def text_fingerprints():
    from embedxfer import (
        ContrastiveEmbedder,
        SentenceEmbedder,
        SequenceClassifier,
        TransformerClassifier,
        WordVectorEmbedder,
    )
    from embedxfer.datasets import load_sms_spam

    texts, labels = load_sms_spam(return_X_y=True)
    texts, labels = [str(t) for t in texts[:400]], np.asarray(labels)[:400]
    short, test = texts[:40], texts[300:340]
    out = {}
    for params in [
        {},
        {"weighting": "tfidf"},
        {"weighting": "sif"},
        {"weighting": "usif"},
        {"pooling": "max"},
        {"pooling": "mean+max", "normalize": True},
        {"weighting": "sif", "n_components": 1},
    ]:
        embedder = WordVectorEmbedder("glove-6B-50d", **params).fit(texts)
        out[f"word {params}"] = array_fingerprint(embedder.transform(texts))
    for params in [
        {},
        {"pooling": "cls"},
        {"pooling": "max"},
        {"pooling": "model"},
        {"layers": [-1, -2], "layer_combine": "concat"},
        {"backend": "onnx"},
        {"backend": "onnx", "precision": "int8"},
    ]:
        embedder = SentenceEmbedder(**params).fit(short)
        out[f"sentence {params}"] = array_fingerprint(embedder.transform(short))
    for params in [{"unfreeze": 0}, {"unfreeze": 1, "epochs": 1}]:
        clf = TransformerClassifier(random_state=0, max_length=32, **params)
        clf.fit(texts[:80], labels[:80])
        out[f"finetune {params} proba"] = array_fingerprint(clf.predict_proba(test))
        out[f"finetune {params} transform"] = array_fingerprint(clf.transform(test))
        out[f"finetune {params} saved"] = saved_fingerprint(clf)
    for params in [{"architecture": "bigru"}, {"architecture": "cnn"}]:
        clf = SequenceClassifier(random_state=0, epochs=2, **params)
        clf.fit(texts[:200], labels[:200])
        out[f"sequence {params} proba"] = array_fingerprint(clf.predict_proba(test))
        out[f"sequence {params} saved"] = saved_fingerprint(clf)
    few = np.r_[np.flatnonzero(labels == labels[0])[:12], np.flatnonzero(labels != labels[0])[:12]]
    for params in [{}, {"loss": "supcon", "unfreeze": 1}]:
        embedder = ContrastiveEmbedder(random_state=0, pairs_per_example=4, max_length=32, **params)
        embedder.fit([texts[i] for i in few], labels[few])
        out[f"contrastive {params} transform"] = array_fingerprint(embedder.transform(test))
        out[f"contrastive {params} saved"] = saved_fingerprint(embedder)
    return out


def image_fingerprints():
    from _image_samples import texture_patches

    from embedxfer.image import ImageClassifier, ImageEmbedder

    (X, y), (X_test, _) = texture_patches(per_image=4)
    out = {}
    for params in [{}, {"pooling": "max"}, {"layer": -2}]:
        embedder = ImageEmbedder(device="cpu", **params).fit(X)
        out[f"image embed {params}"] = array_fingerprint(embedder.transform(X_test))
    for params in [{"unfreeze": 0, "epochs": 2}, {"unfreeze": 1, "epochs": 1, "head_epochs": 1}]:
        clf = ImageClassifier(random_state=0, device="cpu", batch_size=8, **params).fit(X, y)
        out[f"image clf {params} proba"] = array_fingerprint(clf.predict_proba(X_test))
        out[f"image clf {params} saved"] = saved_fingerprint(clf)
    return out


def compare(new, reference):
    differ = [k for k in sorted(set(new) | set(reference)) if new.get(k) != reference.get(k)]
    for key in differ:
        print(f"DIFFERS {key}\n  before {reference.get(key)}\n  after  {new.get(key)}")
    print(f"{len(reference)} fingerprints, {len(differ)} differ")
    return 1 if differ else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("output", help="JSON file to write the fingerprints to")
    parser.add_argument("--compare", metavar="BEFORE", help="fingerprints to compare with")
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fingerprints = {**text_fingerprints(), **image_fingerprints()}
    Path(args.output).write_text(json.dumps(fingerprints, indent=1, sort_keys=True) + "\n")
    if args.compare:
        return compare(fingerprints, json.loads(Path(args.compare).read_text()))
    print(f"{len(fingerprints)} fingerprints written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
