"""The organizer-side defenses (evaluator/defenses.py): a contract every catalogue entry meets, then what each one
is documented to do, on real photo crops and on synthetic images whose answer is known."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.ndimage
import skimage.data
from PIL import Image

from evaluator.codec import OrganizerCodec
from evaluator.config import load_task
from evaluator import defenses
from evaluator.defenses import (
    DEFENSES,
    OFFICIAL,
    SOCIAL_LONG_SIDE,
    Chain,
    DefenseError,
    apply,
    get,
    names,
    parse_chain,
)

#: the defenses the issue asks for (a subset of the registry, in this order; a new `_entries()` entry is tested by
#: the contract tests below, which run over every registered name)
ISSUE_NAMES = ["none", "jpeg95", "jpeg90", "jpeg75", "jpeg50", "webp80", "resize50", "resize75", "blur0.5",
               "blur1", "median3", "bits5", "social"]


def photo(h: int = 96, w: int = 128, name: str = "astronaut", top: int = 100, left: int = 150) -> np.ndarray:
    return np.ascontiguousarray(getattr(skimage.data, name)()[top : top + h, left : left + w, :3])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def high_frequency_energy(rgb: np.ndarray) -> float:
    """Mean squared Laplacian of the channels (interior only): the image's energy at the highest frequencies."""
    lap = scipy.ndimage.laplace(rgb.astype(np.float64), mode="reflect")
    return float(np.mean(lap[2:-2, 2:-2] ** 2))


IMAGES = {
    "photo": photo(),
    "odd": photo(37, 53, "coffee"),
    "tiny": photo(2, 3, "chelsea"),
    "pixel": photo(1, 1, "rocket"),
    "portrait-large": photo(450, 300, "astronaut", 0, 0),  # long side 450 > 384: social downscales it
}


# ---------------------------------------------------------------------------------------------- registry
def test_catalogue_holds_the_issue_names_in_order_each_documented() -> None:
    assert names() == list(DEFENSES) and len(set(names())) == len(names())
    assert [n for n in names() if n in ISSUE_NAMES] == ISSUE_NAMES  # every required name, in the issue's order
    assert OFFICIAL == "jpeg90"
    for name, d in DEFENSES.items():
        assert d.name == name and d.summary and get(name) is d
    assert get("jpeg75").params == {"quality": 75} and get("blur0.5").params == {"sigma": 0.5}
    with pytest.raises(TypeError):
        DEFENSES["mine"] = get("none")  # read-only


@pytest.mark.parametrize("bad, suggestion", [("jpg90", "jpeg90"), ("blur05", "blur0.5"), ("JPEG90", "jpeg90"),
                                             ("median", "median3"), ("xyz", None)])
def test_unknown_name_lists_the_known_ones_and_suggests_the_closest(bad: str, suggestion: str | None) -> None:
    for call in (lambda: get(bad), lambda: apply(bad, IMAGES["photo"]), lambda: parse_chain(f"resize75+{bad}")):
        with pytest.raises(DefenseError) as err:
            call()
        msg = str(err.value)
        assert f"unknown defense {bad!r}" in msg and ", ".join(names()) in msg
        if suggestion:
            assert f"did you mean {suggestion!r}" in msg
        else:
            assert "did you mean" not in msg


# ---------------------------------------------------------------------------------------------- contract
@pytest.mark.parametrize("image", list(IMAGES))
@pytest.mark.parametrize("name", names())
def test_every_defense_returns_uint8_rgb_of_the_documented_size_deterministically(name: str, image: str) -> None:
    rgb = IMAGES[image]
    before = rgb.copy()
    d = get(name)
    out = d(rgb)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8
    assert out.shape == (*d.output_size(*rgb.shape[:2]), 3)
    assert out.flags.c_contiguous and out.flags.writeable and not np.shares_memory(out, rgb)
    assert np.array_equal(rgb, before), "the input was modified"
    assert np.array_equal(out, d(rgb.copy())), "not deterministic"
    assert np.array_equal(out, apply(name, rgb))


@pytest.mark.parametrize("name", ISSUE_NAMES)
def test_only_social_changes_the_size_and_only_above_its_long_side(name: str) -> None:
    d = get(name)
    for h, w in ((96, 128), (384, 384), (1, 1)):
        assert d.output_size(h, w) == (h, w)
    expected = {(600, 800): (288, 384), (800, 500): (384, 240), (385, 10): (384, 10), (10, 2000): (2, 384)}
    for (h, w), small in expected.items():
        assert d.output_size(h, w) == (small if name == "social" else (h, w))


@pytest.mark.parametrize(
    "bad",
    [np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8),
     np.zeros((0, 8, 3), np.uint8), np.zeros((8, 0, 3), np.uint8), [[[0, 0, 0]]], None],
)
@pytest.mark.parametrize("name", names())
def test_bad_images_raise_a_defense_error_naming_the_defense(name: str, bad: object) -> None:
    with pytest.raises(DefenseError, match=rf"defense {name}: .*(uint8 RGB array|zero size)"):
        get(name)(bad)


def test_none_is_the_identity_and_returns_a_copy() -> None:
    rgb = IMAGES["photo"]
    out = get("none")(rgb)
    assert np.array_equal(out, rgb) and out is not rgb
    out[0, 0] = 0 if rgb[0, 0, 0] else 1
    assert not np.array_equal(out, rgb)


# ---------------------------------------------------------------------------------------------- JPEG
@pytest.mark.parametrize("image", ["photo", "odd", "portrait-large"])
def test_jpeg90_is_the_scoring_pipelines_codec_output_exactly(image: str) -> None:
    rgb = IMAGES[image]
    official = OrganizerCodec.from_task(load_task(None))
    assert official == OrganizerCodec()
    expected = official.decompress(official.compress(rgb))
    assert np.array_equal(get("jpeg90")(rgb), expected)
    assert np.array_equal(get("jpeg90")(rgb, official), expected)


@pytest.mark.parametrize("quality", [95, 75, 50])
def test_other_jpeg_qualities_go_through_the_organizer_codec(quality: int) -> None:
    rgb = IMAGES["photo"]
    codec = OrganizerCodec(quality=quality)
    assert np.array_equal(get(f"jpeg{quality}")(rgb), codec.decompress(codec.compress(rgb)))


def test_jpeg_defenses_follow_the_given_codecs_build_and_subsampling_but_keep_their_quality() -> None:
    rgb = IMAGES["photo"]
    task_codec = OrganizerCodec(quality=70, subsampling="4:4:4", libjpeg="9f")
    at_90 = OrganizerCodec(quality=90, subsampling="4:4:4", libjpeg="9f")
    out = get("jpeg90")(rgb, task_codec)
    assert np.array_equal(out, at_90.decompress(at_90.compress(rgb)))
    assert not np.array_equal(out, get("jpeg90")(rgb))  # 4:4:4 differs from the default 4:2:0


def test_jpeg_loss_grows_as_quality_drops() -> None:
    rgb = IMAGES["photo"]
    scores = [psnr(rgb, get(f"jpeg{q}")(rgb)) for q in (95, 90, 75, 50)]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 4
    assert scores[-1] > 25  # still a recognisable image


# ---------------------------------------------------------------------------------------------- the others
def test_webp80_is_a_lossy_pillow_webp_round_trip() -> None:
    rgb = IMAGES["photo"]
    out = get("webp80")(rgb)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="WEBP", quality=80)
    assert np.array_equal(out, np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    assert 28 < psnr(rgb, out) < float("inf")
    assert not np.array_equal(get("webp80")(rgb), get("jpeg90")(rgb))


@pytest.mark.parametrize("name", ["resize50", "resize75"])
def test_resize_round_trip_keeps_size_smooth_content_and_removes_what_the_small_grid_cannot_hold(name: str) -> None:
    y, x = np.mgrid[0:64, 0:96]
    ramp = np.stack([x * 2, y * 3, x + y], axis=-1).astype(np.uint8)  # a smooth image
    out = get(name)(ramp)
    assert out.shape == ramp.shape
    assert np.abs(out[4:-4, 4:-4].astype(int) - ramp[4:-4, 4:-4]).max() <= 2
    checker = ((x + y) % 2 * 255).astype(np.uint8)[..., None].repeat(3, axis=-1)  # the highest frequency
    gone = get(name)(checker)
    assert gone.shape == checker.shape
    assert gone[8:-8, 8:-8].std() < 0.1 * checker.std()  # antialiased: the checkerboard averages to gray
    assert abs(gone[8:-8, 8:-8].mean() - 127.5) < 10


def test_resize50_loses_more_than_resize75() -> None:
    rgb = IMAGES["photo"]
    assert psnr(rgb, get("resize50")(rgb)) < psnr(rgb, get("resize75")(rgb)) < float("inf")


def test_blur_reduces_high_frequency_energy_more_with_a_larger_sigma_and_keeps_flat_images() -> None:
    rgb = IMAGES["photo"]
    e0, e_half, e_one = (high_frequency_energy(im) for im in (rgb, get("blur0.5")(rgb), get("blur1")(rgb)))
    assert e_one < e_half < 0.8 * e0
    assert e_one < 0.5 * e0
    flat = np.full((20, 30, 3), 77, np.uint8)
    for name in ("blur0.5", "blur1"):
        assert np.array_equal(get(name)(flat), flat)


@pytest.mark.parametrize("sigma", [0.5, 1.0])
def test_blur_attenuates_a_checkerboard_by_the_gaussians_response_at_nyquist(sigma: float) -> None:
    """A 0/255 checkerboard is 127.5 + 127.5 (-1)^(x+y); the normalised sampled Gaussian g multiplies that
    component by r = sum_k g(k) (-1)^k / sum_k g(k) along each axis, so the blurred std is 127.5 r^2."""
    k = np.arange(-4 * int(np.ceil(sigma)), 4 * int(np.ceil(sigma)) + 1)
    g = np.exp(-(k**2) / (2 * sigma**2))
    r = float(np.sum(g * (-1.0) ** k) / np.sum(g))
    y, x = np.mgrid[0:64, 0:96]
    checker = ((x + y) % 2 * 255).astype(np.uint8)[..., None].repeat(3, axis=-1)
    inner = get("blur0.5" if sigma == 0.5 else "blur1")(checker)[8:-8, 8:-8].astype(np.float64)
    assert inner.std() == pytest.approx(127.5 * r * r, abs=0.6)  # rounding to integers moves it by <= 0.5


def test_blur_is_scipys_gaussian_rounded() -> None:
    rgb = IMAGES["odd"]
    ref = scipy.ndimage.gaussian_filter(rgb.astype(np.float64), sigma=(1, 1, 0), mode="reflect")
    assert np.array_equal(get("blur1")(rgb), np.clip(np.rint(ref), 0, 255).astype(np.uint8))


def test_median3_removes_an_isolated_impulse_and_keeps_a_step_edge() -> None:
    img = np.full((15, 17, 3), 128, np.uint8)
    img[7, 8] = (255, 0, 255)
    img[0, 0] = (0, 255, 0)  # in a corner too (reflect borders)
    assert np.array_equal(get("median3")(img), np.full_like(img, 128))
    step = np.zeros((15, 17, 3), np.uint8)
    step[:, 9:] = 200
    assert np.array_equal(get("median3")(step), step)


def test_bits5_leaves_32_levels_spanning_0_to_255_within_half_a_step() -> None:
    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=-1)
    out = get("bits5")(ramp)
    levels = np.unique(out)
    assert len(levels) == 32 and levels[0] == 0 and levels[-1] == 255
    assert np.array_equal(levels, np.rint(np.arange(32) * 255 / 31).astype(np.uint8))
    assert np.abs(out.astype(int) - ramp).max() <= 4  # half of 255 / 31
    assert np.array_equal(get("bits5")(out), out)  # idempotent: levels map to themselves
    assert len(np.unique(get("bits5")(IMAGES["photo"]))) <= 32


def test_social_downscales_the_long_side_to_384_then_compresses_at_85() -> None:
    rgb = IMAGES["portrait-large"]  # 450 x 300 (H x W)
    out = get("social")(rgb)
    assert out.shape == (SOCIAL_LONG_SIDE, 256, 3)
    small = np.asarray(Image.fromarray(rgb).resize((256, SOCIAL_LONG_SIDE), Image.Resampling.BICUBIC))
    codec = OrganizerCodec(quality=85)
    assert np.array_equal(out, codec.decompress(codec.compress(np.ascontiguousarray(small))))


def test_social_only_compresses_an_image_that_is_already_small() -> None:
    rgb = IMAGES["photo"]
    codec = OrganizerCodec(quality=85)
    assert np.array_equal(get("social")(rgb), codec.decompress(codec.compress(rgb)))


# ---------------------------------------------------------------------------------------------- chains
def test_a_chain_applies_its_defenses_left_to_right() -> None:
    rgb = IMAGES["photo"]
    chain = parse_chain(" resize75 + jpeg90 ")
    assert isinstance(chain, Chain) and chain.name == "resize75+jpeg90"
    assert [d.name for d in chain.defenses] == ["resize75", "jpeg90"]
    expected = get("jpeg90")(get("resize75")(rgb))
    assert np.array_equal(chain(rgb), expected) and np.array_equal(apply("resize75+jpeg90", rgb), expected)
    assert not np.array_equal(apply("jpeg90+resize75", rgb), expected)  # order matters
    social_then_blur = parse_chain("social+blur1")
    assert social_then_blur.output_size(600, 800) == (288, 384)
    assert social_then_blur(np.zeros((600, 800, 3), np.uint8)).shape == (288, 384, 3)
    assert parse_chain("none").name == "none"


@pytest.mark.parametrize(
    "text, message",
    [("", "is empty"), ("   ", "is empty"), ("+", "empty part"), ("jpeg90+", "empty part"),
     ("jpeg90++blur1", "empty part"), ("none+jpeg90", "combines 'none'"), (90, "must be a string"),
     (["jpeg90"], "must be a string")],
)
def test_malformed_chains_are_refused_with_the_key_named(text: object, message: str) -> None:
    with pytest.raises(DefenseError, match=message) as err:
        parse_chain(text, "task.toml: key 'defense.official'")
    assert str(err.value).startswith("task.toml: key 'defense.official'")


@pytest.mark.parametrize("quality", [1, 83, 100])
def test_a_chain_may_name_any_jpeg_quality_through_the_organizer_codec(quality: int) -> None:
    rgb = IMAGES["photo"]
    codec = OrganizerCodec(quality=quality)
    chain = parse_chain(f"jpeg{quality}")
    assert chain.name == f"jpeg{quality}" and chain.defenses[0].params == {"quality": quality}
    assert np.array_equal(chain(rgb), codec.decompress(codec.compress(rgb)))


@pytest.mark.parametrize("text", ["jpeg0", "jpeg101", "jpeg090", "jpeg-5", "jpeg", "jpeg9.5"])
def test_jpeg_names_outside_1_to_100_are_unknown_and_the_message_says_which_are_known(text: str) -> None:
    with pytest.raises(DefenseError, match=r"unknown defense .*known defenses: none, .*jpeg<Q> for any JPEG quality"):
        parse_chain(text)


@pytest.mark.parametrize("name", sorted(defenses.DEFENSES) + ["jpeg37"])
def test_every_defense_pickles_to_the_same_catalogue_entry(name):
    """The scoring pipeline's worker processes receive the official chain by pickling: each defense (a closure
    inside) travels by name and comes back as the same catalogue entry, with the same output."""
    import pickle

    entry = defenses.lookup(name)
    assert pickle.loads(pickle.dumps(entry)) is entry
    chain = defenses.parse_chain(f"{name}+jpeg90" if name != "none" else "jpeg90")
    again = pickle.loads(pickle.dumps(chain))
    rgb = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    assert np.array_equal(again(rgb), chain(rgb))


@pytest.mark.parametrize("shape", [(384, 512, 3), (7, 5, 3), (1, 4, 3), (2, 2, 3), (3, 1, 3), (1, 1, 3),
                                   (100, 33, 3)])
def test_the_3x3_median_equals_scipys_median_filter_exactly(shape) -> None:
    import scipy.ndimage

    from evaluator.defenses import median3x3

    rng = np.random.default_rng(sum(shape))
    for levels in (256, 256, 3):  # also few levels: ties everywhere
        img = rng.integers(0, levels, shape, dtype=np.uint8)
        assert np.array_equal(median3x3(img), scipy.ndimage.median_filter(img, size=(3, 3, 1), mode="reflect"))
