"""The attack base and every pixel-domain method, on tiny real photo crops, with the default BIQA (brisque) and a
random-weight conv model: valid shapes and range, gradient attacks lower the raw score, bad settings refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from evaluator.biqa import create
from evaluator.biqa.base import BIQAInfo, BIQAModel
from evaluator.codec import OrganizerCodec
from submission.attacks import ATTACKS, AttackError, ParamError, get_attack
from submission.attacks.framework.budget import L2, MSE, Linf
from submission.attacks.framework.driver import image_seed
from submission.attacks.framework.objective import Objective

from attack_fixtures import RULES, TinyBIQA

# Settings for the brisque runs below (the contract of every registered method: tests/test_attack_contract.py).
FAST: dict[str, dict] = {
    "fgsm": {},
    "ifgsm": {"iters": 3},
    "mifgsm": {"iters": 3},
    "korhonen": {"iters": 3},
    "madc": {"iters": 2},
    "cw-sensitivity": {"iters": 4},
    "pgd-l2": {"search_steps": 2, "iters": 3, "lambda_steps": 3},
}
GRADIENT_LOWERING = ["fgsm", "ifgsm", "mifgsm", "korhonen", "madc", "cw-sensitivity", "pgd-l2"]
ISSUE_METHODS = ("identity", "jpeg", "blur", "noise", "enhance", "enhance-ifgsm", "fgsm", "ifgsm", "mifgsm",
                 "amifgsm", "korhonen", "madc", "cw-sensitivity", "pgd-l2", "pgd-dct", "uap-cumulative",
                 "uap-optimized", "uap-generative")


class RandomConvBIQA(BIQAModel):
    """A random-weight differentiable stand-in for a CNN BIQA: 40 + 100 * mean |tanh(conv(x))|."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        with torch.no_grad():
            for p in self.conv.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            self.conv.requires_grad_(False)
        self.info = BIQAInfo(name="random-conv")

    def raw_score(self, x: torch.Tensor) -> torch.Tensor:
        return 40.0 + 100.0 * torch.tanh(self.conv(x)).abs().mean(dim=(1, 2, 3))


@pytest.fixture(scope="module")
def brisque() -> BIQAModel:
    return create("brisque")


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Two 64x48 crops of real photos that brisque scores well above 50."""
    from skimage import data

    a = data.astronaut()
    crops = [a[100:148, 200:264], a[250:298, 250:314]]
    return torch.stack([torch.from_numpy(np.ascontiguousarray(c)).permute(2, 0, 1) for c in crops]).float() / 255


def test_registry_holds_every_method_of_the_issue():
    for name in ISSUE_METHODS:
        assert get_attack(name).name == name
    for name, cls in ATTACKS.items():
        assert cls.paper and cls.summary, name
    with pytest.raises(AttackError, match="unknown attack method 'nope'.*ifgsm"):
        get_attack("nope")


@pytest.mark.parametrize("name", GRADIENT_LOWERING)
def test_gradient_attacks_lower_the_raw_score_on_brisque(name, brisque, photos):
    res = get_attack(name)(**FAST[name]).run(photos, brisque, ids=["a", "b"], **RULES)
    assert (res.raw_after < res.raw_before - 5).all(), (res.raw_before, res.raw_after)


@pytest.mark.parametrize("name", ["fgsm", "ifgsm", "mifgsm", "korhonen", "madc", "cw-sensitivity"])
def test_gradient_attacks_lower_a_random_weight_model(name, photos):
    model = RandomConvBIQA()
    params = dict(FAST[name])
    if name == "cw-sensitivity":
        params.update(target=0.0, margin=0.0, alpha=0.0, iters=10)  # never reached: pure descent
    res = get_attack(name)(**params).run(photos, model, **RULES)
    assert (res.raw_after < res.raw_before).all(), (res.raw_before, res.raw_after)


def test_ifgsm_follows_msu_defaults_and_stays_in_the_linf_ball(brisque, photos):
    attack = get_attack("ifgsm")()
    p = attack.params
    assert (p.eps, p.step, p.iters, p.objective) == (10 / 255, 1 / 255, 10, "lower")
    res = get_attack("ifgsm")(eps=3 / 255, iters=5).run(photos, brisque, **RULES)
    assert float((res.x_adv - photos).abs().max()) <= 3 / 255 + 1e-6
    assert res.info[0]["iterations"] == 5
    m = get_attack("mifgsm")()
    assert (m.params.momentum, m.params.eps, m.params.iters) == (1.0, 10 / 255, 10)


def test_objective_below_stops_moving_an_image_that_reached_the_goal(brisque, photos):
    before = brisque.raw_score(photos).detach()
    target = float(before.max()) + 20  # both images already 'margin' under it
    res = get_attack("ifgsm")(objective="below", target=target, margin=5.0).run(photos, brisque, **RULES)
    assert torch.equal(res.x_adv, photos)


def test_enhance_ifgsm_aims_below_target_30_from_the_enhanced_image(brisque, photos):
    attack = get_attack("enhance-ifgsm")(iters=10)
    assert (attack.params.target, attack.params.eps, attack.params.step) == (30.0, 0.025, 0.025)
    res = attack.run(photos, brisque, **RULES)
    enhanced = get_attack("enhance")().run(photos, brisque, **RULES).x_adv
    assert float((res.x_adv - enhanced).abs().max()) <= 0.025 + 1e-6
    assert (res.raw_after < 30).all() or all(i["iterations"] == 10 for i in res.info)


def test_madc_keeps_the_mse_budget(brisque, photos):
    res = get_attack("madc")(mse=2e-4, iters=3).run(photos, brisque, ids=["a", "b"], **RULES)
    mse = (res.x_adv - photos).pow(2).flatten(1).mean(1)
    assert torch.allclose(mse, torch.full_like(mse, 2e-4), rtol=0.05)


def test_pgd_l2_returns_integer_pixels_and_records_its_budget(brisque, photos):
    res = get_attack("pgd-l2")(**FAST["pgd-l2"]).run(photos, brisque, **RULES)
    q = res.x_adv * 255
    assert torch.allclose(q, torch.round(q), atol=1e-4)
    for info in res.info:
        assert info["eps"] in (2000.0, 1000.0)
        assert info["l2_8bit"] > 0
    assert (res.raw_after < 50).all()


def test_cw_sensitivity_accepts_a_map_file_and_refuses_a_wrong_one(tmp_path, brisque, photos):
    flat = tmp_path / "map.npy"
    np.save(flat, np.full((48, 64), 0.5))
    res = get_attack("cw-sensitivity")(iters=3, map=flat).run(photos, brisque, **RULES)
    assert res.x_adv.shape == photos.shape
    folder = tmp_path / "maps"
    folder.mkdir()
    Image.fromarray(np.full((48, 64), 128, np.uint8)).save(folder / "a.png")
    with pytest.raises(AttackError, match="b.png or b.npy"):
        get_attack("cw-sensitivity")(iters=2, map=folder).run(photos, brisque, ids=["a", "b"], **RULES)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.full((10, 10), 0.5))
    with pytest.raises(AttackError, match=r"\(H, W\) = \(48, 64\)"):
        get_attack("cw-sensitivity")(iters=2, map=bad).run(photos, brisque, **RULES)


def test_noise_is_reproducible_per_image_not_per_batch(brisque, photos):
    noise = get_attack("noise")()
    both = noise.run(photos, brisque, ids=["a", "b"], seed=7, **RULES).x_adv
    alone = noise.run(photos[1:], brisque, ids=["b"], seed=7, **RULES).x_adv
    assert torch.equal(both[1:], alone)
    other = noise.run(photos, brisque, ids=["a", "b"], seed=8, **RULES).x_adv
    assert not torch.equal(both, other)
    assert image_seed(7, "a") != image_seed(7, "b")


def test_through_jpeg_optimizes_the_differentiable_jpeg(brisque, photos):
    from submission.diff_jpeg import DiffJPEG

    res = get_attack("ifgsm")(through_jpeg=True, iters=3).run(photos, brisque, **RULES)
    with torch.no_grad():
        jpeg = DiffJPEG.from_codec(RULES["codec"])
        assert (brisque.raw_score(jpeg(res.x_adv)) < brisque.raw_score(jpeg(photos))).all()


class RecordingBIQA(TinyBIQA):
    """TinyBIQA that keeps every batch it scores."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def raw_score(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return super().raw_score(x)


@pytest.mark.parametrize("codec", [OrganizerCodec(quality=75), OrganizerCodec(subsampling="4:2:2")],
                         ids=["quality75", "422"])
def test_through_jpeg_approximates_the_tasks_codec(photos, codec):
    """With through_jpeg the model scores DiffJPEG.from_codec(codec)(x) of the codec given to run (the task's),
    not a JPEG-90 4:2:0 of the attack's own (before: a jpeg_quality setting, default 90, and 4:2:0)."""
    from submission.diff_jpeg import DiffJPEG

    model = RecordingBIQA()
    res = get_attack("fgsm")(through_jpeg=True).run(photos, model, **{**RULES, "codec": codec})
    scored = model.seen[1]  # [0]: raw_before of x; [1]: the attack's scorer input at x
    with torch.no_grad():
        assert torch.allclose(scored, DiffJPEG.from_codec(codec)(photos), atol=1e-6)
        assert not torch.allclose(scored, DiffJPEG.from_codec(RULES["codec"])(photos), atol=1e-3)
    default = get_attack("fgsm")(through_jpeg=True).run(photos, TinyBIQA(), **RULES)
    assert not torch.equal(res.x_adv, default.x_adv)


def test_run_takes_the_task_rules_explicitly(photos):
    """No default threshold or codec: a call without them fails, and bad values are refused with the fix."""
    model, attack = TinyBIQA(), get_attack("ifgsm")(iters=1)
    with pytest.raises(TypeError, match="threshold"):
        attack.run(photos, model, codec=RULES["codec"])
    with pytest.raises(TypeError, match="codec"):
        attack.run(photos, model, threshold=50.0)
    for bad in (None, 0.0, 100.0, float("nan"), "50", True):
        with pytest.raises(AttackError, match=r"threshold=.*task\.biqa\.threshold"):
            attack.run(photos, model, threshold=bad, codec=RULES["codec"])
    with pytest.raises(AttackError, match=r"OrganizerCodec\.from_task\(task\)"):
        attack.run(photos, model, threshold=50.0, codec=90)
    below = get_attack("ifgsm")(objective="below", iters=3)  # aims at the threshold minus the margin, 10
    assert torch.equal(below.run(photos, model, threshold=99.0, codec=RULES["codec"]).x_adv, photos)  # met at rest
    assert not torch.equal(below.run(photos, model, threshold=10.0, codec=RULES["codec"]).x_adv, photos)


def test_amifgsm_bound_one_over_niqe_sets_the_distortion():
    """eps(I) = eps_scale / NIQE(I) in [0, 1] units with steps eps(I) / T: the written image reaches the bound
    (to one 8-bit level) and never exceeds it, so AMI-FGSM differs from MI-FGSM (before: byte-identical, the bound
    0.06..0.13 was out of reach of 10 steps of 1/255)."""
    from skimage import data

    x = torch.from_numpy(np.ascontiguousarray(data.astronaut()[:192, :192])).permute(2, 0, 1)[None].float() / 255
    model = RandomConvBIQA()
    res = get_attack("amifgsm")(iters=4).run(x, model, **RULES)
    niqe = float(create("niqe").niqe(x)[0])
    eps = 1.0 / niqe
    assert res.info[0]["niqe"] == pytest.approx(niqe, rel=1e-4)
    assert res.info[0]["eps"] == pytest.approx(eps, rel=1e-4)
    linf = float((res.x_adv - x).abs().max())
    assert eps - 1 / 255 <= linf <= eps + 1e-6
    assert float(res.raw_after[0]) < float(res.raw_before[0])
    mi = get_attack("mifgsm")(iters=4).run(x, model, **RULES)
    assert float((mi.x_adv - x).abs().max()) <= 4 / 255 + 1e-6 < linf
    # half the numerator, half the bound
    half = get_attack("amifgsm")(iters=4, eps_scale=0.5).run(x, model, **RULES)
    assert 0.5 * eps - 1 / 255 <= float((half.x_adv - x).abs().max()) <= 0.5 * eps + 1e-6
    # a fixed step of 1/255 with a bound smaller than the steps' reach: the bound clips
    clipped = get_attack("amifgsm")(iters=10, step=1 / 255, eps_scale=3 / 255 * niqe).run(x, model, **RULES)
    assert float((clipped.x_adv - x).abs().max()) == pytest.approx(3 / 255, abs=1e-6)


# ---- parameters ----------------------------------------------------------------------------------------------

def test_parse_params_types_fractions_and_bools():
    cls = get_attack("mifgsm")
    v = cls.parse_params({"eps": "4/255", "iters": "7", "normalize": "false", "objective": "below"})
    assert v == {"eps": 4 / 255, "iters": 7, "normalize": False, "objective": "below"}
    assert cls(**v).params_dict()["eps"] == 4 / 255


@pytest.mark.parametrize(
    "assignments, message",
    [
        ({"epsilon": "1"}, "unknown parameter 'epsilon'.*eps"),
        ({"iters": "ten"}, "iters='ten' is not an integer"),
        ({"eps": "abc"}, "eps='abc' is not a number"),
        ({"eps": "1/0"}, "eps='1/0' is not a number"),
        ({"normalize": "maybe"}, "normalize='maybe' is not true/false"),
        ({"objective": "up"}, "not allowed; choose one of lower, below, toward"),
        ({"eps": "2"}, "above the maximum 1"),
        ({"iters": "0"}, "below the minimum 1"),
        ({"target": "101"}, "above the maximum 100"),
        ({"eps": "nan"}, "finite"),
    ],
)
def test_bad_parameters_are_refused_with_the_key_and_the_fix(assignments, message):
    with pytest.raises(ParamError, match=message):
        get_attack("mifgsm").parse_params(assignments)


def test_constructor_refuses_unknown_or_ill_typed_settings():
    with pytest.raises(ParamError, match="unknown parameter 'foo'"):
        get_attack("ifgsm")(foo=1)
    with pytest.raises(ParamError, match="must be int"):
        get_attack("ifgsm")(iters=2.5)
    with pytest.raises(ParamError, match="must be bool"):
        get_attack("ifgsm")(through_jpeg=1)
    assert get_attack("ifgsm")(eps=1).params.eps == 1.0  # an int is a fine float


def test_run_refuses_a_bad_batch(brisque):
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        get_attack("ifgsm")().run(torch.rand(3, 8, 8), brisque, **RULES)
    with pytest.raises(AttackError, match="1 ids for a batch of 2"):
        get_attack("identity")().run(torch.rand(2, 3, 16, 16), brisque, ids=["a"], **RULES)


# ---- objective and distortion --------------------------------------------------------------------------------

def test_objectives():
    raw = torch.tensor([80.0, 45.0, 20.0])
    assert torch.equal(Objective("lower", 50, 10).loss(raw), raw)
    assert torch.equal(Objective("below", 50, 10).loss(raw), torch.tensor([40.0, 5.0, 0.0]))
    assert torch.equal(Objective("toward", 30, 10).loss(raw), torch.tensor([50.0, 15.0, 10.0]))
    assert Objective("below", 50, 10).reached(raw).tolist() == [False, False, True]
    with pytest.raises(ParamError, match="outside"):
        Objective("below", 120.0, 0.0)
    with pytest.raises(ParamError, match="unknown"):
        Objective("sideways")


def test_distortions_project_onto_their_balls():
    torch.manual_seed(0)
    d = torch.randn(4, 3, 8, 8)
    assert float(Linf().measure(Linf().project(d, 0.1)).max()) <= 0.1 + 1e-7
    eps = torch.tensor([0.5, 1.0, 2.0, 100.0])
    p = L2().project(d, eps)
    assert torch.allclose(L2().measure(p)[:3], eps[:3], rtol=1e-5)
    assert torch.equal(p[3], d[3])  # inside the ball: unchanged
    assert torch.allclose(MSE().measure(MSE().project(d, 1e-3)), torch.full((4,), 1e-3), rtol=1e-5)
    g = torch.randn(2, 3, 4, 4)
    assert torch.allclose(L2().measure(L2().direction(g)), torch.ones(2))
    assert torch.equal(Linf().direction(g), g.sign())


def test_list_params_describe_every_setting():
    for name, cls in ATTACKS.items():
        for spec in cls.param_specs():
            text = spec.describe()
            assert spec.name in text and "default" in text, (name, text)
            spec.check(spec.default, name)  # every default is valid


def test_paths_params_parse(tmp_path: Path):
    v = get_attack("cw-sensitivity").parse_params({"map": str(tmp_path), "alpha": "5"})
    assert v["map"] == tmp_path and v["alpha"] == 5.0
    assert get_attack("cw-sensitivity").parse_params({"map": "none"}) == {"map": None}


def test_gradient_attacks_work_under_no_grad(brisque, photos):
    with torch.no_grad():
        res = get_attack("ifgsm")(iters=2).run(photos, brisque, **RULES)
    assert (res.raw_after < res.raw_before).all()


@pytest.mark.parametrize("name", ["ifgsm", "mifgsm"])
def test_objective_below_stops_at_the_goal_even_with_momentum(name, brisque, photos):
    """Once an image is `margin` under the target it is frozen: the momentum of MI-FGSM does not carry it on
    (before the fix every image ended near the unconstrained attack's score, whatever the target)."""
    before = brisque.raw_score(photos).detach()
    target = float(before.min()) - 10.0
    attack = get_attack(name)(objective="below", target=target, margin=5.0, iters=10)
    res = attack.run(photos, brisque, **RULES)
    free = get_attack(name)(iters=10).run(photos, brisque, **RULES)
    assert (free.raw_after < target - 40).all()  # unconstrained, the attack goes far past the goal
    assert (res.raw_after <= target - 5.0).all()
    assert (res.raw_after > target - 25.0).all(), res.raw_after
    longer = get_attack(name)(objective="below", target=target, margin=5.0, iters=20).run(photos, brisque, **RULES)
    assert torch.equal(longer.x_adv, res.x_adv)


def test_cw_sensitivity_honours_its_objective(photos):
    """The objective it shows is the one it optimizes (before: the 'below' hinge whatever the setting): 'toward' a
    target above the scores raises them, 'lower' lowers them past where 'below' stops."""
    model = TinyBIQA()
    before = model.raw_score(photos).detach()
    up = get_attack("cw-sensitivity")(objective="toward", target=100.0, margin=0.0, alpha=0.0, iters=10)
    assert (up.run(photos, model, **RULES).raw_after > before).all()
    goal = float(before.min()) - 2.0
    below = get_attack("cw-sensitivity")(objective="below", target=goal + 1.0, margin=1.0, iters=30)
    below = below.run(photos, model, **RULES)
    lower = get_attack("cw-sensitivity")(objective="lower", alpha=0.0, iters=30).run(photos, model, **RULES)
    assert (below.raw_after <= goal + 0.5).all() and (lower.raw_after < below.raw_after).all()
