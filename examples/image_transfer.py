"""Image transfer learning: frozen CNN features vs fine-tuning vs raw pixels.
==========================================================================

Compares, at several training-set sizes, on patches of scikit-image's bundled
textures, or on the ants-vs-bees photos of the PyTorch transfer-learning
tutorial (``--data-dir`` holding ``hymenoptera/train`` and ``hymenoptera/val``,
one subfolder per class):

- ``pixels+lr``  raw pixels (32 x 32 RGB) + logistic regression: no transfer;
- ``frozen+lr``  EfficientNet-Lite0 ImageNet features (``ImageEmbedder``) +
                 logistic regression: the network as a fixed feature extractor;
- ``ft0``        ``ImageClassifier(unfreeze=0)``: a softmax head on the frozen network;
- ``ftk``        ``ImageClassifier(unfreeze=k)``: the top ``k`` blocks train too
                 (``--k``, default 2), the early, generic blocks stay frozen;
- ``ftall``      ``ImageClassifier(unfreeze="all")``: the whole network trains.

Prints a table (validation accuracy, and training seconds including the
network's forward passes over the training images) and writes a PNG of
accuracy against the number of training images.

    python examples/image_transfer.py --quick --out image_transfer.png
    python examples/image_transfer.py --sizes 20,60,all --out image_transfer.png
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

METHODS = ("pixels+lr", "frozen+lr", "ft0", "ftk", "ftall")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        default="auto",
        choices=("auto", "hymenoptera", "textures"),
        help="auto: hymenoptera when --data-dir has it, else textures",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="a folder holding hymenoptera/train and hymenoptera/val",
    )
    parser.add_argument(
        "--sizes",
        default="20,60,all",
        help="comma-separated training sizes; 'all' for the whole train split",
    )
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--k", type=int, default=2, help="blocks that ftk unfreezes")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs of ftk / ftall (default: the classifier's own choice)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="textures, sizes 4,12, methods pixels+lr, frozen+lr, ftk, "
        "2 epochs (about a minute on 2 CPU cores)",
    )
    parser.add_argument("--out", type=Path, default=Path("image_transfer.png"))
    args = parser.parse_args(argv)
    if args.quick:
        args.data, args.sizes, args.epochs = "textures", "4,12", 2
        args.methods = "pixels+lr,frozen+lr,ftk"
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {METHODS}")
    return args


def texture_patches(size=170, per_image=9, seed=0):
    """Patches of scikit-image's bundled textures (and a tissue photo), half for training."""
    from skimage import data

    rng = np.random.default_rng(seed)
    train, test = ([], []), ([], [])
    for name in ("brick", "grass", "gravel", "immunohistochemistry"):
        image = getattr(data, name)()
        side = int(np.sqrt(per_image))
        patches = [
            image[r * size : (r + 1) * size, c * size : (c + 1) * size]
            for r in range(side)
            for c in range(side)
        ]
        order = rng.permutation(len(patches))
        for target, rows in ((train, order[: len(order) // 2]), (test, order[len(order) // 2 :])):
            target[0].extend(patches[i] for i in rows)
            target[1].extend([name] * len(rows))

    def as_array(images):
        out = np.empty(len(images), dtype=object)
        out[:] = images
        return out

    return as_array(train[0]), np.asarray(train[1]), as_array(test[0]), np.asarray(test[1])


def load_data(args):
    folder = args.data_dir / "hymenoptera" if args.data_dir is not None else None
    has_folder = folder is not None and folder.is_dir()
    if args.data == "hymenoptera" or (args.data == "auto" and has_folder):
        if not has_folder:
            sys.exit(
                f"no image folder {folder or 'hymenoptera'}; "
                "pass --data-dir pointing at the data sets"
            )
        from embedxfer.image import load_image_folder

        train_x, train_y = load_image_folder(folder / "train")
        test_x, test_y = load_image_folder(folder / "val")
        train_x, test_x = np.asarray(train_x, dtype=object), np.asarray(test_x, dtype=object)
        return "hymenoptera (ants vs bees, val split)", train_x, train_y, test_x, test_y
    return ("scikit-image texture patches", *texture_patches(seed=args.seed))


def training_sample(train_y, n, rng):
    """``n`` rows with every class represented (round-robin over shuffled classes)."""
    if n >= len(train_y):
        return np.arange(len(train_y))
    per_class = [rng.permutation(np.flatnonzero(train_y == c)) for c in np.unique(train_y)]
    order = [
        rows[i] for i in range(max(map(len, per_class))) for rows in per_class if i < len(rows)
    ]
    return np.sort(np.asarray(order[:n]))


class RawPixels:
    """Images as 32 x 32 RGB pixel vectors (a transformer for the no-transfer baseline)."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        from embedxfer.image._preprocess import to_rgb

        return np.stack(
            [np.asarray(to_rgb(x).resize((32, 32)), dtype=np.float32).ravel() / 255 for x in X]
        )


def make_method(name, args, seed):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    from embedxfer import ImageClassifier, ImageEmbedder

    if name == "pixels+lr":
        pixels = FunctionTransformer(RawPixels().transform)
        return make_pipeline(pixels, StandardScaler(), LogisticRegression(C=0.01, max_iter=3000))
    if name == "frozen+lr":
        # cache=True: each image is encoded once however many sizes use it.
        return make_pipeline(ImageEmbedder(cache=True), LogisticRegression(C=0.1, max_iter=3000))
    if name == "ft0":
        return ImageClassifier(unfreeze=0, random_state=seed)
    if name == "ftk":
        return ImageClassifier(unfreeze=args.k, epochs=args.epochs, random_state=seed)
    return ImageClassifier(unfreeze="all", epochs=args.epochs, random_state=seed)


def run(args):
    source, train_x, train_y, test_x, test_y = load_data(args)
    sizes = [len(train_y) if s.strip() == "all" else int(s) for s in args.sizes.split(",")]
    sizes = sorted({min(s, len(train_y)) for s in sizes})
    print(
        f"{source}: {len(train_y)} training images, {len(test_y)} test images, "
        f"{len(np.unique(train_y))} classes; sizes {sizes}; methods {args.methods}",
        flush=True,
    )
    rows = []
    for n in sizes:
        idx = training_sample(train_y, n, np.random.RandomState(args.seed))
        for name in args.methods:
            est = make_method(name, args, args.seed)
            start = time.perf_counter()
            est.fit(list(train_x[idx]), train_y[idx])
            seconds = time.perf_counter() - start
            accuracy = float(np.mean(est.predict(list(test_x)) == test_y))
            rows.append({"size": n, "method": name, "accuracy": accuracy, "fit_seconds": seconds})
            print(f"  n={n:<5} {name:<10} accuracy {accuracy:.3f}  fit {seconds:.1f}s", flush=True)
    return source, rows


def print_table(rows, methods):
    sizes = sorted({r["size"] for r in rows})
    get = {(r["size"], r["method"]): r for r in rows}
    print("\nAccuracy (training seconds)\n")
    print("| n train | " + " | ".join(methods) + " |")
    print("|" + "---|" * (len(methods) + 1))
    for n in sizes:
        cells = [f"{get[n, m]['accuracy']:.3f} ({get[n, m]['fit_seconds']:.1f}s)" for m in methods]
        print(f"| {n} | " + " | ".join(cells) + " |")


def plot(rows, methods, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for m in methods:
        mine = sorted((r for r in rows if r["method"] == m), key=lambda r: r["size"])
        ax.plot([r["size"] for r in mine], [r["accuracy"] for r in mine], marker="o", label=m)
    sizes = sorted({r["size"] for r in rows})
    ax.set(xscale="log", xlabel="training images", ylabel="test accuracy", title=title)
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    source, rows = run(args)
    print_table(rows, args.methods)
    plot(rows, args.methods, args.out, f"{source.split(' (')[0]}: transfer vs training images")
    print(f"\nplot written to {args.out}; total {time.perf_counter() - start:.0f}s")
    return rows


if __name__ == "__main__":
    main()
