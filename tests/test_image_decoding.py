"""Images of every Pillow mode decode to the RGB picture they show (image/_preprocess.py)."""

import io
import warnings

import numpy as np
import pytest

pytest.importorskip("PIL")
from PIL import Image

from embedxfer.image import ImageReadError
from embedxfer.image._preprocess import to_rgb


def _png(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _gradient(height=48, width=64):
    """An 8-bit RGB picture with every gray level and some colour."""
    y, x = np.mgrid[0:height, 0:width]
    r = (x * 255 // (width - 1)).astype(np.uint8)
    g = (y * 255 // (height - 1)).astype(np.uint8)
    b = ((x + y) * 255 // (width + height - 2)).astype(np.uint8)
    return np.stack([r, g, b], axis=-1)


def _rgb(item):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Pillow warning leaks out of decoding
        return np.asarray(to_rgb(item), dtype=np.int16)


def test_sixteen_bit_png_is_the_eight_bit_picture():
    gray8 = _gradient()[..., 0]
    gray16 = Image.fromarray(gray8.astype(np.uint16) * 257)
    assert Image.open(io.BytesIO(_png(gray16))).mode.startswith("I")
    expected = np.repeat(gray8[..., None], 3, axis=-1)
    np.testing.assert_array_equal(_rgb(_png(gray16)), expected)
    # Pillow's own convert("RGB") clips to white: the failure this guards against
    clipped = np.asarray(Image.open(io.BytesIO(_png(gray16))).convert("RGB"))
    assert clipped.mean() > 250 > expected.mean() + 100


@pytest.mark.parametrize(
    "mode, make",
    [
        ("I", lambda g: Image.fromarray(g.astype(np.int32) * 257, "I")),
        (
            "I;16B",
            lambda g: Image.frombytes("I;16B", g.shape[::-1], (g.astype(">u2") * 257).tobytes()),
        ),
        ("F", lambda g: Image.fromarray(g.astype(np.float32) / 255, "F")),
        ("F 0-255", lambda g: Image.fromarray(g.astype(np.float32), "F")),
        ("L", lambda g: Image.fromarray(g, "L")),
        ("LA", lambda g: Image.fromarray(np.stack([g, g // 2], -1), "LA")),
    ],
)
def test_grayscale_modes_map_to_their_gray_levels(mode, make):
    gray = _gradient()[..., 0]
    image = make(gray)
    got = _rgb(image)
    assert got.shape == gray.shape + (3,)
    np.testing.assert_array_equal(got[..., 0], gray)
    np.testing.assert_array_equal(got[..., 1], got[..., 2])


@pytest.mark.parametrize("mode", ["RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "P"])
def test_colour_modes_round_trip_close_to_the_picture(mode):
    picture = _gradient()
    image = Image.fromarray(picture)
    image = image.quantize(256) if mode == "P" else image.convert(mode)
    # 8-bit LAB, HSV, YCbCr and a 256-colour palette are lossy, most in saturated corners
    tolerance = {"P": 20, "LAB": 40, "CMYK": 1, "RGBA": 0, "RGBX": 0}.get(mode, 12)
    error = np.abs(_rgb(image) - picture)
    assert error.max() <= tolerance and error.mean() < 4


def test_palette_with_transparency_and_one_bit_images():
    picture = _gradient()
    palette = Image.fromarray(picture).quantize(256)
    palette.info["transparency"] = 0
    got = _rgb(_png(palette))
    assert np.abs(got - picture).max() <= 20
    bits = Image.fromarray(picture[..., 0] > 127).convert("1")
    np.testing.assert_array_equal(np.unique(_rgb(_png(bits))), [0, 255])


def test_float_image_out_of_range_is_a_clear_error():
    image = Image.fromarray(np.full((8, 8), 1000.0, np.float32), "F")
    with pytest.raises(ImageReadError, match=r"mode F.*\[0, 1\] or \[0, 255\]"):
        to_rgb(image)
    with pytest.raises(ImageReadError, match="NaN"):
        to_rgb(Image.fromarray(np.full((8, 8), np.nan, np.float32), "F"))


def test_sixteen_bit_arrays_scale_like_sixteen_bit_files():
    gray = _gradient()[..., 0]
    np.testing.assert_array_equal(
        _rgb(gray.astype(np.uint16) * 257), np.repeat(gray[..., None], 3, -1)
    )


# -- memory bounded by the model's input, not by the picture ---------------------------


def test_a_thin_image_is_resized_only_where_it_is_cropped(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "thin.png"
    Image.fromarray(np.tile(np.arange(8000, dtype=np.uint16) % 256, (1, 1)).astype(np.uint8)).save(
        path
    )
    code = (
        "import resource, sys; import numpy as np\n"
        "from embedxfer.image import ImagePreprocess\n"
        "from embedxfer.image._preprocess import load_and_preprocess\n"
        "def peak(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024\n"
        "load_and_preprocess(np.zeros((300, 300, 3), np.uint8), ImagePreprocess())\n"
        "before = peak()\n"
        "array, err = load_and_preprocess(sys.argv[1], ImagePreprocess())\n"
        "assert err is None and array.shape == (3, 224, 224), err\n"
        "print(peak() - before)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    assert int(out.stdout) < 100, f"peak grew by {out.stdout.strip()} MiB"  # was 2 GB


def test_resampling_only_the_crop_equals_resize_then_crop():
    from embedxfer.image._preprocess import centre_crop, resize_and_crop, resize_shorter

    rng = np.random.default_rng(0)
    for height, width in [(300, 451), (640, 480), (257, 256), (256, 300), (60, 1000), (900, 50)]:
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        for interpolation in ("bilinear", "bicubic", "nearest"):
            got = np.asarray(resize_and_crop(image, 256, 224, interpolation), dtype=np.int16)
            full = np.asarray(centre_crop(resize_shorter(image, 256, interpolation), 224))
            error = np.abs(got - full.astype(np.int16))
            if max(height, width) <= 4 * min(height, width):
                assert error.max() == 0  # ordinary photos: exactly as torchvision
            else:  # strips (over 4:1): the same picture, resampled from the box
                assert error.mean() < 2, (height, width, interpolation, error.mean())


def test_too_many_pixels_is_a_clear_error_without_a_warning(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    data = _png(Image.fromarray(_gradient(100, 100)))
    with pytest.raises(ImageReadError, match=r"100 x 100 = 10000 pixels.*MAX_IMAGE_PIXELS"):
        _rgb(data)


def test_a_large_jpeg_is_decoded_at_a_reduced_scale(monkeypatch):
    import embedxfer.image._preprocess as pre

    buffer = io.BytesIO()
    Image.fromarray(np.repeat(np.repeat(_gradient(), 10, 0), 10, 1)).save(buffer, "JPEG")
    monkeypatch.setattr(pre, "_DRAFT_PIXELS", 1000)
    image = to_rgb(buffer.getvalue(), 100)
    assert min(image.size) >= 100 and image.size[0] < 640
    assert to_rgb(buffer.getvalue()).size == (640, 480)


# -- listing a folder reads regular files only, each once -----------------------------


def test_listing_skips_devices_fifos_loops_and_links_out(tmp_path):
    import os

    from embedxfer.image import list_images, load_image_folder

    for name in ("ants", "bees"):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.png").write_bytes(_png(Image.fromarray(_gradient())))
    os.symlink("/dev/zero", tmp_path / "ants" / "zero.png")
    os.mkfifo(tmp_path / "ants" / "pipe.jpg")
    os.symlink(tmp_path / "bees" / "bees.png", tmp_path / "ants" / "also-a-bee.png")
    os.symlink(tmp_path / "ants", tmp_path / "ants" / "loop")
    os.symlink(tmp_path / "ants" / "ants.png", tmp_path / "ants" / "twice.png")
    paths, labels = load_image_folder(tmp_path)
    assert [os.path.basename(p) for p in paths] == ["ants.png", "bees.png"]
    assert labels.tolist() == ["ants", "bees"]
    assert len(list_images(tmp_path)) == 2
    with pytest.raises(ValueError, match="not a regular file"):
        to_rgb(str(tmp_path / "ants" / "pipe.jpg"))
    with pytest.raises(ValueError, match="not a regular file"):
        to_rgb(str(tmp_path / "ants" / "zero.png"))


def test_training_keeps_at_most_a_four_to_one_centre_of_a_strip():
    from embedxfer.image._preprocess import limit_aspect

    strip = Image.fromarray(np.tile(np.arange(8000) % 256, (2, 1)).astype(np.uint8))
    cut = limit_aspect(strip)
    assert cut.size == (8, 2)
    np.testing.assert_array_equal(np.asarray(cut)[0], np.arange(3996, 4004) % 256)
    photo = Image.fromarray(_gradient())
    assert limit_aspect(photo) is photo
