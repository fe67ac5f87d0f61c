"""Tests of mtlat_edu.robustness.corruptions: the 19 common corruptions of the M-TLAT paper (section 4.1).

* every corruption x severity keeps shape, dtype, device and the [0, 1] range;
* damage (mean absolute distance to the clean image) grows with the severity, except at the
  listed steps where the reference definition itself is not monotone;
* determinism for a seeded ``torch.Generator``; clear ValueErrors on bad input;
* uint8 input (levels 0..255): the same output as its float conversion, bit for bit;
* agreement with ``benchmarks/imagenet_c_reference.py`` (a per-image NumPy/SciPy port of
  Hendrycks & Dietterich's ``make_imagenet_c.py`` / ``make_cifar_c.py``) on real CIFAR-10 test
  images (skipped when /work/shared/data/cifar10-jpeg is absent) and on a 224 px photo, with the
  oracle replaying the same random draws (``TorchRNG``);
* hand-computed checks of the paper's four extra corruptions and of the ImageMagick kernel.

Run with ``-s`` to see the agreement figures (also tabulated in docs/corruptions.md).
"""
from __future__ import annotations

import functools
import io
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data, transform

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for benchmarks/
from benchmarks import imagenet_c_reference as oracle  # noqa: E402
from mtlat_edu.robustness.corruptions import ALL, CORRUPTIONS, DISPLAY, EXTRA, IMAGENET_C, corrupt  # noqa: E402
from mtlat_edu.robustness.corruptions import _ops, blur, digital, extra, noise, weather  # noqa: E402
from mtlat_edu.robustness.corruptions._common import interpolate_levels  # noqa: E402
from mtlat_edu.robustness.corruptions._tables import CIFAR, IMAGENET  # noqa: E402
from mtlat_edu.robustness.corruptions.frost_texture import NUM_TEXTURES, frost_stack, frost_texture, texture_size  # noqa: E402

from mtlat_edu.data import SHARED_CIFAR as CIFAR_DIR  # noqa: E402
DETERMINISTIC = {"defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression"}
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "colorwheel")


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------- data
@functools.lru_cache(maxsize=None)
def photo(name: str, size: int) -> np.ndarray:
    """A scikit-image sample photo, centre-cropped square and resized to ``size`` (uint8 HWC)."""
    a = getattr(data, name)()[..., :3]
    h, w = a.shape[:2]
    s = min(h, w)
    a = a[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    return np.round(transform.resize(a, (size, size), anti_aliasing=True) * 255).astype(np.uint8)


@functools.lru_cache(maxsize=None)
def cifar_images() -> tuple[np.ndarray, ...]:
    """The first test image of each CIFAR-10 class (32x32 RGB uint8)."""
    test = CIFAR_DIR / "test"
    return tuple(
        np.array(Image.open(sorted((test / c).glob("*.jpg"))[0]).convert("RGB"))
        for c in sorted(p.name for p in test.iterdir() if p.is_dir())
    )


def to_tensor(images) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1) for a in images]).float() / 255


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------- API
def test_public_names():
    assert IMAGENET_C == (
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
        "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
    )  # fmt: skip
    assert EXTRA == ("occlusion", "color_distortion", "translation", "rotation")
    assert ALL == IMAGENET_C + EXTRA
    assert list(CORRUPTIONS) == list(ALL) and all(callable(f) for f in CORRUPTIONS.values())
    # each name reaches the function of that name in its family's module (each function registers
    # itself under the name its decorator gives, with the family of its module)
    family = {"noise": noise, "blur": blur, "weather": weather, "digital": digital, "extra": extra}
    kinds = ["noise"] * 3 + ["blur"] * 4 + ["weather"] * 4 + ["digital"] * 4 + ["extra"] * 4
    assert [CORRUPTIONS.kind(n) for n in ALL] == kinds
    for name, kind in zip(ALL, kinds):
        assert CORRUPTIONS[name] is getattr(family[kind], name), name
        assert CORRUPTIONS[name].__name__ == name
    assert [DISPLAY[n] for n in ALL] == (
        "Gauss Shot Impul Defocus Glass Motion Zoom Snow Frost Fog Bright Contr Elastic Pixelate Jpeg "
        "Obstru Color Trans Rot"
    ).split()
    assert set(IMAGENET) == set(CIFAR) == set(IMAGENET_C)


# ------------------------------------------------------------------------ shape, dtype, range
@pytest.mark.parametrize("name", ALL)
def test_shape_dtype_range(name):
    for size in (32, 80):  # CIFAR table, ImageNet table (auto-selected)
        x = torch.rand(2, 3, size, size)
        for severity in (1, 2, 3, 4, 5, 2.5):
            y = corrupt(x, name, severity, gen(int(severity * 10)))
            assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
            assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
    x64 = torch.rand(2, 3, 33, 40, dtype=torch.float64)  # non-square, float64
    y64 = CORRUPTIONS[name](x64, 3, generator=gen(1), table="cifar")
    assert y64.shape == x64.shape and y64.dtype == torch.float64 and 0 <= y64.min() and y64.max() <= 1
    x16 = torch.rand(1, 3, 32, 32).half()
    y16 = corrupt(x16, name, 5, gen(2))
    assert y16.dtype == torch.float16 and y16.shape == x16.shape


# ------------------------------------------------------------------------------ monotonicity
# Steps (s -> s+1) where the reference's own parameters do not increase the damage; everywhere
# else the mean absolute distance to the clean image must grow strictly.
NOT_MONOTONE_IN_REFERENCE = {
    ("glass_blur", "cifar"): {2: "levels 2->3 and 4->5 only raise sigma 0.25->0.4 with the same shuffle", 4: ""},
    ("glass_blur", "imagenet"): {3: "(1, 2, 3) -> (1.1, 3, 2): shuffle iterations drop from 3 to 2"},
    ("motion_blur", "cifar"): {3: "(6, 2) -> (8, 2): the extra taps weigh < 1e-7, images are identical"},
    ("snow", "imagenet"): {2: "flake threshold jumps 0.5 -> 0.9 (fewer flakes)"},
    ("frost", "cifar"): {3: "frost weight stays 0.4 while the image weight drops 0.9 -> 0.85", 4: "image weight drops 0.1, frost weight rises only 0.05"},
    ("frost", "imagenet"): {3: "frost weight stays 0.7 while the image weight drops 0.7 -> 0.65"},
    ("fog", "imagenet"): {3: "fog weight stays 2.5; only the fractal's decay changes"},
    ("elastic_transform", "cifar"): {1: "affine jitter falls 0.08 -> 0.03 of the size over the levels", 2: "", 3: "", 4: ""},
    ("elastic_transform", "imagenet"): {2: "levels 1-2 are large smooth warps (scale 488 px), 3-5 small local ones"},
}


@functools.lru_cache(maxsize=None)
def monotone_batch(table: str) -> torch.Tensor:
    if table == "cifar":
        return to_tensor([photo(n, 32) for n in PHOTOS])
    return to_tensor([photo(n, 224) for n in PHOTOS[:2]])


@pytest.mark.parametrize("table", ["cifar", "imagenet"])
@pytest.mark.parametrize("name", ALL)
def test_damage_grows_with_severity(name, table):
    x = monotone_batch(table)
    dist = [(corrupt(x, name, s, gen(0), table) - x).abs().mean().item() for s in range(1, 6)]
    exempt = NOT_MONOTONE_IN_REFERENCE.get((name, table), {})
    for s in range(1, 5):
        if s not in exempt:
            assert dist[s] > dist[s - 1], f"{name}/{table}: severity {s + 1} not worse than {s}: {dist}"
    assert dist[4] > 0


# ------------------------------------------------------------------------------ determinism
@pytest.mark.parametrize("name", ALL)
def test_deterministic_with_generator(name):
    x = to_tensor([photo("astronaut", 32), photo("coffee", 32)] * 4)
    a = corrupt(x, name, 3, gen(7))
    b = corrupt(x, name, 3, gen(7))
    assert torch.equal(a, b)
    torch.manual_seed(3)
    c = corrupt(x, name, 3)
    torch.manual_seed(3)
    assert torch.equal(c, corrupt(x, name, 3))
    if name not in DETERMINISTIC:
        assert not torch.equal(a, corrupt(x, name, 3, gen(8)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", ALL)
def test_cuda_matches_cpu(name):
    x = to_tensor([photo("astronaut", 64), photo("chelsea", 64)])
    cpu = corrupt(x, name, 4, gen(5))
    gpu = corrupt(x.cuda(), name, 4, gen(5))
    assert gpu.device.type == "cuda"
    assert (gpu.cpu() - cpu).abs().mean() < 1 / 255


# ------------------------------------------------------------------------------- bad inputs
def test_bad_inputs_raise_clear_errors():
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="name.*valid names: gaussian_noise"):
        corrupt(x, "gaussian", 1)
    for bad in (0, 0.99, 5.01, 6, float("nan"), "3", True, None):
        with pytest.raises(ValueError, match=r"severity.*\[1, 5\]"):
            corrupt(x, "fog", bad)
    with pytest.raises(ValueError, match=r"x: values must lie in \[0, 1\]"):
        corrupt(x * 2, "fog", 1)
    with pytest.raises(ValueError, match=r"x: values must lie in \[0, 1\]"):
        corrupt(torch.full((1, 3, 32, 32), float("nan")), "fog", 1)
    with pytest.raises(ValueError, match="x: expected a 4-d NCHW"):
        corrupt(x[0], "fog", 1)
    for bad in (torch.int64, torch.int16, torch.int8, torch.bool):  # 8-bit images are uint8, nothing else
        with pytest.raises(ValueError, match=r"x: expected dtype uint8 \(levels 0\.\.255\) or a floating-point dtype "
                                             r"\(values in \[0, 1\]\), got torch\." + str(bad).split(".")[1]):
            corrupt((x * 255).to(bad), "fog", 1)
    with pytest.raises(ValueError, match="x: expected 3"):
        corrupt(torch.rand(1, 1, 32, 32), "fog", 1)
    with pytest.raises(ValueError, match="x: expected 3"):
        corrupt(torch.zeros(1, 1, 32, 32, dtype=torch.uint8), "jpeg_compression", 1)
    with pytest.raises(ValueError, match="x: height and width must be at least 16 px"):
        corrupt(torch.zeros(1, 3, 15, 32, dtype=torch.uint8), "pixelate", 1)
    with pytest.raises(ValueError, match=r"x: expected an NCHW torch.Tensor, uint8 \(levels 0\.\.255\) or floating"):
        corrupt(np.zeros((1, 3, 32, 32)), "fog", 1)
    with pytest.raises(ValueError, match="table: expected 'imagenet', 'cifar' or None"):
        corrupt(x, "fog", 1, table="tiny")
    with pytest.raises(ValueError, match="generator"):
        corrupt(x, "fog", 1, generator=42)
    for name in ALL:  # every registry function validates on its own too
        with pytest.raises(ValueError, match="severity"):
            CORRUPTIONS[name](x, 7)



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_range_checked_in_the_8bit_conversion_refuses_every_bad_value(dtype):
    """Pixelate, JPEG and shot noise check the [0, 1] range inside their 8-bit conversion
    (``255 x`` of every cache-sized chunk in [0, 255]): the check must see every chunk and be
    exact at the edges, with the same message as the other corruptions."""
    tiny = torch.finfo(dtype).tiny * torch.finfo(dtype).eps  # the smallest positive (subnormal) value
    above = torch.nextafter(torch.tensor(1.0, dtype=dtype), torch.tensor(2.0, dtype=dtype)).item()
    for size in (32, 224):  # one chunk, several chunks (the bad value in the last image)
        x = torch.rand(5, 3, size, size, generator=gen(3), dtype=dtype)
        for bad in (float("nan"), -tiny, above, float("inf"), -1.0):
            y = x.clone()
            y[-1, 2, size - 1, size - 2] = bad
            for name in ("pixelate", "jpeg_compression", "shot_noise"):
                with pytest.raises(ValueError, match=r"x: values must lie in \[0, 1\]"):
                    corrupt(y, name, 3, gen(0))
        edge = x.clone()
        edge[0, 0, 0, :2] = torch.tensor([0.0, 1.0], dtype=dtype)
        for name in ("pixelate", "jpeg_compression", "shot_noise"):  # 0 and 1 themselves are fine
            assert corrupt(edge, name, 3, gen(0)).shape == edge.shape
    bad8 = (torch.randint(0, 256, (2, 3, 32, 32), generator=gen(4)).to(dtype) / 255)
    bad8[1, 1, 5, 5] = float("nan")  # on the 8-bit grid except one NaN: shot noise's grid test sees it
    with pytest.raises(ValueError, match=r"x: values must lie in \[0, 1\]"):
        corrupt(bad8, "shot_noise", 3, gen(0))
    for name in ALL:  # and every other corruption, through its wrapper
        with pytest.raises(ValueError, match=r"x: values must lie in \[0, 1\]"):
            corrupt(torch.full((1, 3, 32, 32), float("nan"), dtype=dtype), name, 3)

# ----------------------------------------------------------------------------- 8-bit input
def test_8bit_input_gives_the_output_of_its_float_conversion():
    """uint8 images (levels 0..255) are taken as they are: every corruption returns float32, the
    very output (bit for bit, same draws) of the float32 images ``j / 255``, whatever the layout
    of the uint8 tensor (an NHWC array seen as NCHW), and leaves the input untouched."""
    for n, h, w in ((1, 32, 32), (3, 33, 40), (4, 80, 80), (2, 224, 224)):  # 3 or 4k planes; both tables
        x8 = torch.randint(0, 256, (n, 3, h, w), generator=gen(n), dtype=torch.uint8)
        x8[0, 0, 0, :2] = torch.tensor([0, 255], dtype=torch.uint8)
        kept = x8.clone()
        xf = x8.float().div_(255)  # the package's datasets' conversion (data.ImageData.float_images)
        nhwc = x8.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # strided NCHW view
        for name in ALL:
            y8, yf = corrupt(x8, name, 3, gen(5)), corrupt(xf, name, 3, gen(5))
            assert y8.dtype == torch.float32 and y8.shape == x8.shape and torch.equal(y8, yf), (name, n, h)
            assert torch.equal(corrupt(nhwc, name, 3, gen(5)), yf), (name, n, h)
            assert torch.equal(x8, kept), name
    for name in ALL:  # an empty batch: float32 of the same shape
        y = corrupt(torch.zeros(0, 3, 32, 32, dtype=torch.uint8), name, 1)
        assert y.dtype == torch.float32 and y.shape == (0, 3, 32, 32)


def test_8bit_pixelate_and_jpeg_are_pil_image_by_image():
    """What the reference does with each 8-bit image, by hand: PIL's two BOX resizes (pixelate) and
    a JPEG save at the table's quality then open (JPEG), the result divided by 255."""
    for n, size in ((3, 32), (1, 224)):
        x8 = torch.randint(0, 256, (n, 3, size, size), generator=gen(30 + n), dtype=torch.uint8)
        px, q = (0.85, 58) if size == 32 else (0.4, 15)  # severity 3 of the cifar / imagenet table
        small = int(size * px)
        y_pix, y_jpeg = corrupt(x8, "pixelate", 3), corrupt(x8, "jpeg_compression", 3)
        for i in range(n):
            img = Image.fromarray(x8[i].permute(1, 2, 0).numpy())
            pix = np.array(img.resize((small, small), Image.BOX).resize((size, size), Image.BOX))
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=q)
            jpeg = np.array(Image.open(buf))
            for y, ref in ((y_pix, pix), (y_jpeg, jpeg)):
                assert torch.equal(y[i], torch.from_numpy(ref).permute(2, 0, 1).float() / 255), (size, i)


# ------------------------------------------------------------------ tables, continuous severity
def test_table_choice_and_override():
    x32 = to_tensor([photo("coffee", 32)])
    mean = x32.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(corrupt(x32, "contrast", 1), ((x32 - mean) * 0.75 + mean).clamp(0, 1))  # CIFAR
    assert torch.allclose(corrupt(x32, "contrast", 1, table="imagenet"), ((x32 - mean) * 0.4 + mean).clamp(0, 1))
    x96 = torch.rand(1, 3, 96, 96)
    m96 = x96.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(corrupt(x96, "contrast", 2), ((x96 - m96) * 0.3 + m96).clamp(0, 1))  # ImageNet
    assert torch.allclose(corrupt(x96, "contrast", 2, table="cifar"), ((x96 - m96) * 0.5 + m96).clamp(0, 1))


def test_continuous_severity_interpolates_parameters():
    for table in (IMAGENET, CIFAR):
        for name, levels in table.items():
            for s in range(1, 6):
                assert interpolate_levels(levels, s) == tuple(levels[s - 1])
                assert interpolate_levels(levels, float(s)) == tuple(levels[s - 1])
    assert interpolate_levels(IMAGENET["defocus_blur"], 2.5) == pytest.approx((5.0, 0.5))
    assert interpolate_levels(CIFAR["shot_noise"], 4.2) == pytest.approx((75 + 0.2 * (50 - 75),))
    x = to_tensor([photo("rocket", 32)])
    for name in ALL:  # a float integer severity is the integer level
        assert torch.equal(corrupt(x, name, 2.0, gen(1)), corrupt(x, name, 2, gen(1)))
    for name in ("gaussian_noise", "contrast", "occlusion", "color_distortion", "rotation"):
        d = [(corrupt(x, name, s, gen(1)) - x).abs().mean().item() for s in (2, 2.5, 3)]
        assert d[0] < d[1] < d[2], (name, d)


# ------------------------------------------------------------------ agreement with the oracle
def _frost_pictures(table: str, size: int):
    """The package's frost textures as the full-size RGB uint8 'pictures' the oracle reads
    (the oracle itself shrinks them for the CIFAR table, as make_cifar_c.py does)."""
    side = texture_size(table, size)
    return [np.round(frost_texture(i, side).permute(1, 2, 0).numpy() * 255).astype(np.uint8) for i in range(NUM_TEXTURES)]


def agreement(name: str, images, table: str, severities) -> tuple[float, float]:
    """Mean and max |torch - oracle| in 0..255 units over images x severities, same random draws."""
    extra = {"frost_images": _frost_pictures(table, images[0].shape[0])} if name == "frost" else {}
    diffs = []
    for s in severities:
        for k, img in enumerate(images):
            y = corrupt(to_tensor([img]), name, s, gen(100 + k), table)[0].permute(1, 2, 0).double().numpy() * 255
            o = oracle.ORACLES[name](img, s, table, rng=oracle.TorchRNG(gen(100 + k)), **extra)
            diffs.append(np.abs(y - np.clip(o, 0, 255)))
    d = np.stack(diffs)
    return float(d.mean()), float(d.max())


@pytest.mark.parametrize("name", IMAGENET_C)
def test_agrees_with_oracle_on_cifar10(name):
    if not (CIFAR_DIR / "test").is_dir():
        pytest.skip(f"CIFAR-10 JPEG test images not found at {CIFAR_DIR}")
    mean, worst = agreement(name, cifar_images(), "cifar", range(1, 6))
    print(f"\nagreement cifar32   {name:18s} mean abs diff {mean:.1e}/255  max {worst:.0f}/255")
    assert mean < 0.5, (mean, worst)


@pytest.mark.parametrize("name", IMAGENET_C)
def test_agrees_with_oracle_on_224px_photo(name):
    severities = (2,) if name == "glass_blur" else range(1, 6)  # the oracle's Python swap loop is slow at 224 px
    mean, worst = agreement(name, [photo("astronaut", 224)], "imagenet", severities)
    print(f"\nagreement astro224  {name:18s} mean abs diff {mean:.1e}/255  max {worst:.0f}/255")
    assert mean < 0.5, (mean, worst)


def test_noise_statistics_match_reference_parameters():
    """Independent of the shared draws: the noise has the reference's spread."""
    x = torch.full((4, 3, 64, 64), 0.5)
    y = corrupt(x, "gaussian_noise", 3, gen(0), "imagenet")
    assert (y - x).std().item() == pytest.approx(0.18, rel=0.03)
    y = corrupt(x, "shot_noise", 1, gen(0), "cifar")  # Poisson(250) / 500
    assert (y - x).std().item() == pytest.approx(math.sqrt(0.5 * 500) / 500, rel=0.03)
    y = corrupt(x, "impulse_noise", 5, gen(0), "imagenet")
    assert (y == 1).float().mean().item() == pytest.approx(0.27 / 2, rel=0.05)
    assert (y == 0).float().mean().item() == pytest.approx(0.27 / 2, rel=0.05)


# ------------------------------------------------------------------ pieces of the reference
def test_reference_glass_swap_is_a_copy():
    """The reference's ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` on NumPy pixel views copies."""
    x = np.arange(2 * 2 * 3).reshape(2, 2, 3)
    x[0, 0], x[1, 1] = x[1, 1], x[0, 0]
    assert (x[0, 0] == x[1, 1]).all() and (x[1, 1] == [9, 10, 11]).all()


def test_imagemagick_motion_kernel_by_hand():
    """A white pixel blurred along angle 0: taps k_i = exp(-i^2/2s^2)/sum at x + i (one-sided)."""
    img = torch.zeros(1, 1, 9, 9)
    img[0, 0, 4, 6] = 255.0
    out = _ops.motion_blur(img, radius=2, sigma=1.0, angle_deg=torch.tensor([0.0]))[0, 0]
    k = np.exp(-np.arange(5) ** 2 / 2.0)
    k /= k.sum()
    expected = np.zeros((9, 9))
    for i in range(5):  # out(y, x) = sum_i k_i in(y, x + i): the trail lies to the left
        if 6 - i >= 0:
            expected[4, 6 - i] = 255 * k[i]
    assert np.allclose(out.numpy(), expected, atol=1e-4)
    down = _ops.motion_blur(img, radius=2, sigma=1.0, angle_deg=torch.tensor([90.0]))[0, 0]
    assert down[4, 6].item() == pytest.approx(255 * k[0], abs=1e-3) and down[2, 6].item() == pytest.approx(255 * k[2], abs=1e-3)


# ------------------------------------------------------------- the fast paths (issue 13)
def test_shot_noise_table_sampler_is_exact_poisson():
    """8-bit images take the inverse-CDF table sampler: its counts are SciPy's inverse CDF of the
    generator's float64 uniforms (drawn in chunks, in order), with Poisson mean and variance."""
    from scipy.stats import poisson

    levels = torch.tensor([0, 1, 30, 128, 255], dtype=torch.uint8).repeat_interleave(20000).view(5, 1, 100, 200)
    for c in (3.0, 12.0, 100.0, 500.0):
        k = _ops.poisson_8bit(levels, c, gen(1))
        chunk = _ops.POISSON_CHUNK
        u = torch.cat([torch.rand(min(chunk, levels.numel() - a), dtype=torch.float64, generator=g)
                       for g in [gen(1)] for a in range(0, levels.numel(), chunk)])
        lam = levels.reshape(-1).double() / 255.0 * c
        assert np.array_equal(k.reshape(-1).numpy(), poisson.ppf(u.numpy(), lam.numpy()))
        for j in range(5):
            rate = float(levels[j, 0, 0, 0]) / 255.0 * c
            kj = k[j].double()
            assert kj.mean().item() == pytest.approx(rate, rel=0.03, abs=0.01)
            assert kj.var().item() == pytest.approx(rate, rel=0.05, abs=0.01)
        assert (k[0] == 0).all()  # rate 0
    small = _ops.poisson_8bit(torch.full((1, 1, 200, 200), 1, dtype=torch.uint8), 3.0, gen(2))
    assert (small == 0).double().mean().item() == pytest.approx(math.exp(-3 / 255), abs=0.002)
    cdf, guide, k_max, g = _ops.poisson_tables(500.0)
    rows = cdf.view(256, k_max)
    assert bool((rows[:, 1:-1] >= rows[:, :-2]).all()) and bool((rows[:, -1] == 2).all())


def test_shot_noise_uses_torch_poisson_off_the_8bit_grid():
    x = torch.full((2, 3, 32, 32), 0.5)  # 127.5 levels: not an 8-bit image
    assert _ops.levels_8bit(x) is None
    expected = (torch.poisson(x * 250, generator=gen(3)) / 250).clamp(0, 1)
    assert torch.equal(corrupt(x, "shot_noise", 2, gen(3), "cifar"), expected)
    on_grid = torch.full((2, 3, 32, 32), 128 / 255)
    assert torch.equal(_ops.levels_8bit(on_grid), torch.full((2, 3, 32, 32), 128, dtype=torch.uint8))
    y = corrupt(on_grid, "shot_noise", 2, gen(3), "cifar")  # Poisson(128/255 * 250) / 250
    assert (y - on_grid).std().item() == pytest.approx(math.sqrt(128 / 255 * 250) / 250, rel=0.05)


def test_motion_blur_batch_equals_images_one_by_one_and_the_shifted_sum():
    """Sorting by angle and running slices over the batch changes nothing per image; each image
    is the sum of its taps' shifted copies with edge pixels (ImageMagick), checked in NumPy."""
    x = torch.rand(9, 2, 20, 23, generator=gen(4)) * 255
    angles = torch.tensor([30.0, -45.0, 0.0, 44.9, -12.5, 30.0, 90.0, -135.0, 7.0])
    batch = _ops.motion_blur(x, 6, 2.5, angles)
    for i in range(9):
        one = _ops.motion_blur(x[i : i + 1], 6, 2.5, angles[i : i + 1])[0]
        assert torch.allclose(batch[i], one, atol=1e-4)
        k, oy, ox = _ops.motion_taps(6, 2.5, angles[i : i + 1])
        img = x[i].double().numpy()
        expected = np.zeros_like(img)
        for t in range(k.numel()):
            rows = np.clip(np.arange(20) + int(oy[0, t]), 0, 19)
            cols = np.clip(np.arange(23) + int(ox[0, t]), 0, 22)
            expected += float(k[t]) * img[:, rows][:, :, cols]
        assert np.abs(batch[i].double().numpy() - expected).max() < 1e-3
    unit = torch.rand(9, 2, 20, 23, generator=gen(5))  # levels taken per chunk = levels taken first
    assert torch.equal(_ops.motion_blur(unit, 6, 2.5, angles, levels=True),
                       _ops.motion_blur(_ops.to_uint8_levels(unit), 6, 2.5, angles))


def test_defocus_kernel_and_direct_filter_match_the_reference_disk():
    from mtlat_edu.robustness.corruptions.blur import crop_support, disk_kernel, disk_terms

    for radius, alias in ((0.3, 0.4), (1.5, 0.1), (6, 0.5), (10, 0.5)):
        assert np.abs(disk_kernel(radius, alias).numpy() - oracle.disk(radius, alias)).max() < 1e-7, radius
    small = crop_support(disk_kernel(1.5, 0.1))  # 3x3 disk blurred by a 3x3 Gaussian
    assert small.shape == (5, 5) and torch.equal(small.sum(), disk_kernel(1.5, 0.1).sum())
    x = torch.rand(5, 3, 24, 31, generator=gen(5))
    fft = _ops.correlate2d(x, small.float(), "mirror")
    assert torch.allclose(_ops.conv_same(x, small.float()), fft, atol=1e-5)
    for radius, alias in ((0.5, 0.6), (1, 0.2), (3, 0.1)):  # rank 1, 2, 3 kernels as separable passes
        terms = disk_terms(radius, alias)
        kernel = crop_support(disk_kernel(radius, alias)).float()
        assert len(terms) == {0.5: 1, 1: 2, 3: 3}[radius]
        assert torch.allclose(_ops.separable_correlate(x, terms, "mirror"), _ops.conv_same(x, kernel), atol=1e-5)


def test_clipped_zoom_is_bilinear_align_corners_on_the_centre_crop():
    import torch.nn.functional as F

    x = torch.rand(3, 2, 40, 70, generator=gen(6))
    for z in (1.0, 1.06, 1.17, 1.3):
        h_top, h_ch, h_out, h_trim = _ops._zoom_axis(40, z)
        w_top, w_ch, w_out, w_trim = _ops._zoom_axis(70, z)
        crop = x[..., h_top : h_top + h_ch, w_top : w_top + w_ch]
        up = F.interpolate(crop.double(), size=(h_out, w_out), mode="bilinear", align_corners=True)
        expected = up[..., h_trim : h_trim + 40, w_trim : w_trim + 70].float()
        assert torch.allclose(_ops.clipped_zoom(x, z), expected, atol=1e-5), z
        rows, cols_t = _ops.zoom_matrices(40, 70, z, torch.float32, torch.device("cpu"))  # zoom_blur <= 64 px
        assert torch.allclose(rows @ x @ cols_t, expected, atol=1e-5), z



def test_small_zoom_blur_is_the_mean_of_the_clipped_zooms():
    """Images up to 64 px: every plane's rows side by side, two plain matrix products per zoom;
    the result is the reference's ``(x + sum_z clipped_zoom(x, z)) / (len(zooms) + 1)``."""
    from mtlat_edu.robustness.corruptions.blur import zoom_factors

    x = torch.rand(5, 3, 20, 28, generator=gen(15))
    for severity in (1, 5):
        stop, step = CIFAR["zoom_blur"][severity - 1]
        zooms = zoom_factors(stop, step)
        expected = (x + sum(_ops.clipped_zoom(x, float(z)) for z in zooms)) / (len(zooms) + 1)
        assert torch.allclose(corrupt(x, "zoom_blur", severity, table="cifar"), expected.clamp(0, 1), atol=1e-6)
    for h, z in ((20, 1.06), (32, 1.25), (64, 1.11)):  # the banded row blocks hold the whole row map
        rows = _ops.zoom_matrices(h, h, z, torch.float32, torch.device("cpu"))[0]
        assembled = torch.zeros_like(rows)
        for r0, r1, s0, s1, block in _ops.zoom_row_blocks(h, z, torch.float32, torch.device("cpu")):
            assembled[r0:r1, s0:s1] = block
        assert torch.equal(assembled, rows), (h, z)


def test_bilinear_sample_in_place_equals_the_copying_path():
    """Elastic's resamplings turn their own coordinate tensors into the grid in place: same
    samples as the copying path, whose inputs stay untouched; an integer grid returns pixels."""
    x = torch.rand(2, 3, 9, 11, generator=gen(16))
    ys = torch.rand(2, 9, 11, generator=gen(17), dtype=torch.float64) * 12 - 1.5
    xs = torch.rand(2, 9, 11, generator=gen(18), dtype=torch.float64) * 14 - 1.5
    for mode in ("reflect", "mirror", "nearest"):
        ys0, xs0 = ys.clone(), xs.clone()
        copied = _ops.bilinear_sample(x, ys, xs, mode)
        assert torch.equal(ys, ys0) and torch.equal(xs, xs0)
        assert torch.equal(_ops.bilinear_sample(x, ys0, xs0, mode, overwrite=True), copied), mode
    yy, xx = torch.meshgrid(torch.arange(9.0, dtype=torch.float64), torch.arange(11.0, dtype=torch.float64), indexing="ij")
    same = _ops.bilinear_sample(x, yy.expand(2, 9, 11).clone(), xx.expand(2, 9, 11).clone(), "reflect", overwrite=True)
    assert torch.allclose(same, x, atol=1e-6)

def test_batched_pillow_pixelate_equals_pillow_per_image_and_the_torch_port():
    from mtlat_edu.robustness.corruptions.digital import pillow_box_resize, pillow_pixelate

    x8 = (torch.rand(4, 3, 33, 40, generator=gen(7)) * 255).round().to(torch.uint8)
    for c in (0.95, 0.65, 0.25):
        sh, sw = int(33 * c), int(40 * c)
        ours = pillow_pixelate(x8, sh, sw)
        torch_port = pillow_box_resize(pillow_box_resize(x8.float(), sh, sw), 33, 40)
        assert torch.equal(ours.float(), torch_port), c
        for i in range(4):
            img = Image.fromarray(x8[i].permute(1, 2, 0).numpy())
            ref = np.array(img.resize((sw, sh), Image.BOX).resize((40, 33), Image.BOX))
            assert np.array_equal(ours[i].permute(1, 2, 0).numpy(), ref), (c, i)



def test_pixelate_cpu_path_equals_pillow_per_image():
    """The CPU path (8-bit conversion into Pillow's band layout, Pillow's downscale as four
    bands of one "RGBX" image, the upscale gathered straight into the float output) against
    PIL image by image, for plane counts that are and are not multiples of 4, in both float
    dtypes; and the pieces against the 8-bit reference path."""
    from mtlat_edu.robustness.corruptions.digital import box_upsample_into, pillow_box_down, pillow_pixelate

    for n, h, w, dtype in ((1, 33, 40, torch.float32), (3, 32, 32, torch.float64), (4, 224, 224, torch.float32)):
        x8 = torch.randint(0, 256, (n, 3, h, w), generator=gen(n), dtype=torch.uint8)
        x = x8.to(dtype) / 255
        for severity, table in ((1, "cifar"), (5, "cifar"), (3, "imagenet")):
            c = (CIFAR if table == "cifar" else IMAGENET)["pixelate"][severity - 1][0]
            sh, sw = int(h * c), int(w * c)
            y = corrupt(x, "pixelate", severity, table=table)
            assert y.dtype == dtype
            for i in range(n):
                img = Image.fromarray(x8[i].permute(1, 2, 0).numpy())
                ref = np.array(img.resize((sw, sh), Image.BOX).resize((w, h), Image.BOX))
                assert torch.equal(y[i], torch.from_numpy(ref).permute(2, 0, 1).to(dtype) / 255), (n, severity, i)
            small = pillow_box_down(x8, sh, sw)
            assert small.shape == (n * 3, sh, sw)
            out = torch.empty(n, 3, h, w, dtype=dtype)
            assert box_upsample_into(out, small) is out
            assert torch.equal(out, pillow_pixelate(x8, sh, sw).to(dtype) / 255)


def test_8bit_conversion_in_hwc_order_equals_torch():
    """JPEG's conversion writes the levels straight in NHWC order (CPU: NumPy, strided writes;
    elsewhere and for strided input: torch); same levels as ``round(255 x)``, permuted."""
    for dtype in (torch.float32, torch.float64):
        x = torch.rand(30, 3, 17, 19, generator=gen(14), dtype=dtype)
        x[0, :, 0, :3] = torch.tensor([0.0, 1.0, 0.5 / 255], dtype=dtype)
        levels = torch.mul(x, 255.0).round_().to(torch.uint8)
        for t, ref in ((x, levels), (x[:, :, :, 2:9], levels[:, :, :, 2:9])):
            hwc = _ops.to_uint8_hwc(t, check=True)
            assert hwc.is_contiguous() and torch.equal(hwc, ref.permute(0, 2, 3, 1)), dtype

def test_uint8_conversions_by_numpy_equal_torch():
    """On the CPU the 8-bit conversions go through NumPy; they must give torch's own levels and
    floats: ``round(255 x)`` (half to even) and ``float(j) / 255`` in the float dtype; the
    8-bit grid test of shot noise finds the levels, or None for other values."""
    for dtype in (torch.float32, torch.float64):
        x = torch.rand(30, 3, 17, 19, generator=gen(12), dtype=dtype)
        x[0, 0, 0, :6] = torch.tensor([0.0, 1.0, 0.5 / 255, 1.5 / 255, 254.5 / 255, 0.25], dtype=dtype)
        levels = torch.mul(x, 255.0).round_().to(torch.uint8)
        assert torch.equal(_ops.to_uint8(x), levels), dtype
        assert torch.equal(_ops.to_uint8(x[:, :, :, 2:9]), levels[:, :, :, 2:9]), dtype  # strided: torch path
        assert _ops.to_uint8(x[:1, :, :, :1].expand(1, 3, 17, 1))[0, 0, 3, 0] == levels[0, 0, 3, 0]
        assert torch.equal(_ops.levels_8bit(levels.to(dtype) / 255), levels), dtype  # 8-bit images
        assert _ops.levels_8bit(x) is None and _ops.levels_8bit(x[:, :, :, 2:9]) is None, dtype  # off the grid
        j = torch.arange(256, dtype=torch.uint8).repeat(6).view(6, 1, 16, 16)
        assert torch.equal(_ops.from_uint8(j, dtype), j.to(dtype).div_(255.0)), dtype
        out = torch.empty(6, 1, 16, 16, dtype=dtype)
        assert _ops.from_uint8(j, dtype, out) is out and torch.equal(out, j.to(dtype).div_(255.0)), dtype


def test_batched_plasma_fractal_equals_the_reference_map_by_map():
    """One map at a time the batched diamond-square recursion is the reference's, bit for bit,
    given the same uniform draws (the oracle replays them through ``TorchRNG``)."""
    from mtlat_edu.robustness.corruptions.weather import plasma_fractal

    for mapsize, decay in ((32, 2.0), (256, 1.7)):
        ours = plasma_fractal(1, mapsize, decay, gen(13), torch.device("cpu"))[0]
        ref = oracle.plasma_fractal(mapsize, decay, oracle.TorchRNG(gen(13)))
        assert np.array_equal(ours.numpy(), ref), mapsize


def test_frost_is_the_weighted_sum_with_a_random_window_at_both_sizes():
    """Small images take one gather of windows, large ones a slice per image: both are
    ``c0 * x + c1 * window`` with the window drawn (picture, top, left) from the generator."""
    for side, table in ((32, "cifar"), (136, "imagenet")):
        x = torch.rand(3, 3, side, side, generator=gen(10))
        c_img, c_frost = (CIFAR if table == "cifar" else IMAGENET)["frost"][2]
        layers = frost_stack(table, side, side, "cpu", torch.float32)
        g = gen(11)
        idx = torch.randint(0, NUM_TEXTURES, (3,), generator=g)
        top = torch.randint(0, layers.shape[-2] - side, (3,), generator=g)
        left = torch.randint(0, layers.shape[-1] - side, (3,), generator=g)
        y = corrupt(x, "frost", 3, gen(11), table)
        for k in range(3):
            window = layers[idx[k], :, top[k] : top[k] + side, left[k] : left[k] + side]
            assert torch.equal(y[k], (c_img * x[k] + c_frost * window).clamp(0, 1)), (side, k)


def test_chunked_paths_equal_whole_batch(monkeypatch):
    """Cache-sized chunks are an implementation detail: results do not depend on the chunk size."""
    from mtlat_edu.robustness.corruptions import digital, weather

    x = to_tensor([photo(n, 32) for n in PHOTOS])
    names = ("defocus_blur", "zoom_blur", "motion_blur", "snow", "frost", "fog", "elastic_transform", "pixelate",
             "jpeg_compression")  # fmt: skip
    whole = {n: corrupt(x, n, 4, gen(9)) for n in names}
    monkeypatch.setattr(_ops, "CACHE_BYTES", 3 * 32 * 32 * 4)  # one image per chunk
    monkeypatch.setattr(digital, "CODEC_CHUNK_BYTES", 2 * 3 * 32 * 32 * 4)
    monkeypatch.setattr(weather, "PLASMA_CHUNK_BYTES", 1)
    monkeypatch.setattr(_ops, "chunk_size", lambda t, budget=None: 1)
    for n in names:
        assert torch.allclose(corrupt(x, n, 4, gen(9)), whole[n], atol=1e-6), n


def test_frost_textures_are_deterministic_8bit_pictures():
    a, b = frost_texture(0), frost_texture.__wrapped__(0)
    assert torch.equal(a, b) and a.shape == (3, 640, 640)
    assert torch.equal(torch.round(a * 255), a * 255) and 0.3 < a.mean().item() < 0.7
    assert not torch.equal(frost_texture(0), frost_texture(1))
    cifar = frost_stack("cifar", 32, 32, "cpu", torch.float32)
    assert cifar.shape == (NUM_TEXTURES, 3, 128, 128)  # 640 px pictures shrunk to a fifth


# -------------------------------------------------------------------------- extra corruptions
def test_occlusion_is_one_grey_square_of_the_paper_size():
    for size, severity, side in ((224, 1, 60), (224, 5, 127), (224, 3, round(93.5)), (32, 1, 9), (32, 5, 18)):
        x = torch.rand(3, 3, size, size) * 0.4  # no 0.5 values
        y = corrupt(x, "occlusion", severity, gen(severity))
        grey = (y == 0.5).all(dim=1)
        for g in grey:
            rows, cols = g.any(dim=1).nonzero(), g.any(dim=0).nonzero()
            assert g.sum().item() == side * side
            assert rows.max() - rows.min() + 1 == side and cols.max() - cols.min() + 1 == side
        assert torch.equal(y[~grey.unsqueeze(1).expand_as(y)], x[~grey.unsqueeze(1).expand_as(x)])


def test_color_distortion_raises_one_channel():
    x = torch.rand(6, 3, 32, 32) * 0.6
    for severity, delta in ((1, 0.08), (5, 0.30), (3, 0.19)):
        y = corrupt(x, "color_distortion", severity, gen(severity))
        changed = (y != x).flatten(2).any(dim=2)
        assert (changed.sum(dim=1) == 1).all()
        assert torch.allclose((y - x)[changed], torch.full_like((y - x)[changed], delta), atol=1e-6)


def _bilinear_zero(img: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
    """Bilinear sampling of (C, H, W) with zeros outside (taps outside count as 0)."""
    c, h, w = img.shape
    y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
    fy, fx = sy - y0, sx - x0
    out = np.zeros((c,) + sy.shape)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yy, xx = y0 + dy, x0 + dx
            ok = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            out += np.where(ok, img[:, yy.clip(0, h - 1), xx.clip(0, w - 1)], 0) * wy * wx
    return out


def test_translation_shifts_by_the_paper_distance():
    x = to_tensor([photo("coffee", 224), photo("astronaut", 224)]).double()
    for severity, dist in ((1, 15.0), (5, 62.0), (2, 15 + 47 / 4)):
        y = corrupt(x, "translation", severity, gen(severity)).numpy()
        angles = torch.rand((2,), generator=gen(severity), dtype=torch.float64).numpy() * 2 * math.pi
        yy, xx = np.mgrid[0:224, 0:224].astype(float)
        for k in range(2):
            tx, ty = dist * math.cos(angles[k]), dist * math.sin(angles[k])
            expected = _bilinear_zero(x[k].numpy(), yy - ty, xx - tx)
            assert np.abs(y[k] - expected).max() < 1e-5
    small = corrupt(to_tensor([photo("coffee", 32)]), "translation", 5, gen(0))
    assert (small[0].sum(dim=0) == 0).sum() >= 8 * 32 * 0.5  # ~62 * 32/224 = 8.9 px shifted out


def test_rotation_turns_by_the_paper_angle_with_zero_outside():
    x = to_tensor([photo("chelsea", 224), photo("rocket", 224)]).double()
    for severity, degrees in ((1, 8.0), (5, 40.0), (4, 32.0)):
        y = corrupt(x, "rotation", severity, gen(severity)).numpy()
        sign = (torch.randint(0, 2, (2,), generator=gen(severity)) * 2 - 1).numpy()
        c = (224 - 1) / 2
        yy, xx = np.mgrid[0:224, 0:224].astype(float)
        for k in range(2):
            t = math.radians(sign[k] * degrees)  # counter-clockwise on screen for a positive angle
            sx = c + math.cos(t) * (xx - c) - math.sin(t) * (yy - c)
            sy = c + math.sin(t) * (xx - c) + math.cos(t) * (yy - c)
            expected = _bilinear_zero(x[k].numpy(), sy, sx)
            assert np.abs(y[k] - expected).mean() < 1e-3
            assert np.abs(y[k] - expected).max() < 2e-2
            assert (y[k][:, 0, 0] == 0).all() and (y[k][:, -1, -1] == 0).all()
