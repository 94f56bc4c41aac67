"""The contract every registered attack keeps, checked for each method of the registry (a new attack is covered
without editing this file), on small real crops and a tiny differentiable BIQA (`attack_fixtures.TinyBIQA`):

- the output is 8-bit RGB in [0, 1] of the input's shape, and `raw_after` is the score of that output;
- the distortion bound the attack declares (`Attack.budget`: Linf, L2 or MSE) holds, in every run of this file
  (defaults, every alternative setting, the stopping runs), and a method declares one at its defaults unless
  `UNBOUNDED` says why not or `BOUND_AT` names the settings under which it does;
- every setting `pp-attack --list` shows changes the result: a value the attack refuses (ParamError) must say in
  its message which `--set key=value` makes it effective, and with that dependency satisfied it must change the
  result (compared with the dependency alone);
- the same seed gives the same bytes;
- with objective `below`, an image that meets the goal is left alone and the attack stops near the goal, at the
  method's default step (and, where the step follows `iters`, the freezing is checked at a fixed step);
- in a run folder written by pp-attack's writer, the per-image log's score_after (and raw_after) is the BIQA
  score of the file actually written.

Every run gets the task's rules explicitly (`attack_fixtures.RULES`: threshold 50, the default OrganizerCodec).
Settings are the defaults, with costly integer settings capped generically (FAST); `SIZE`, `MODEL`, `STOP`,
`FIXED_STEP`, `SINGLE_STEP`, `REFINES`, `UNBOUNDED` and `BOUND_AT` hold the few per-method needs, each with its
reason.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from attack_fixtures import RULES, TinyBIQA, crops
from evaluator.common.imageio import load_rgb
from submission.attacks import ATTACKS, ParamError, get_attack
from submission.attacks.framework.params import ParamSpec

CODEC = RULES["codec"]

METHODS = sorted(ATTACKS)
#: generic caps on costly integer settings (any method with such a setting); UAPs train at 32 x 32
FAST: dict[str, int] = {"iters": 20, "height": 32, "width": 32}
#: image side per method (default 64)
SIZE: dict[str, int] = {"amifgsm": 192}  # NIQE (its bound) needs 2 x 2 patches of 96 pixels
#: BIQA per method (default the tiny model) and the settings that keep it fast there
MODEL: dict[str, tuple[str, dict[str, Any]]] = {
    # its quantization moves whole JPEG quantization steps, too coarse for the tiny model's response: on it
    # pgd-dct always writes the plain JPEG, whatever its settings; on brisque (the task's model) it works. Target
    # 40: two of the three crops score above it on brisque (at 50 only one, and its search ends at the first try)
    "pgd-dct": ("brisque", {"search_steps": 4, "lambda_steps": 3, "target": 40.0}),
}
#: extra settings for the stopping check, where the defaults cannot reach a goal 5 points down on the tiny model
STOP: dict[str, dict[str, Any]] = {
    "enhance-ifgsm": {"step": 1 / 255, "eps": 10 / 255},  # 0.025 steps overshoot by more than 5 points
    "korhonen": {"iters": 20},  # 10 Adam steps of 0.005 barely pass the goal even with objective 'lower'
}
#: methods whose default step follows `iters` (so twice the iterations take other steps from the start): the
#: stopping check runs at the default step, and the "twice the iterations change nothing" check at this fixed step
FIXED_STEP: dict[str, dict[str, Any]] = {
    "amifgsm": {"step": 1 / 255},  # default step eps(I) / iters
}
#: methods that take a single step: they cannot stop halfway, only leave an image that meets the goal alone
SINGLE_STEP = {"fgsm"}
#: methods whose `iters` keeps refining an image after it meets the goal (the others freeze it)
REFINES = {
    "cw-sensitivity": "CW keeps shrinking the distortion among the iterates that meet the goal",
    "pgd-l2": "iters is the PGD length at each budget of its binary search (the step is 2.5 eps / iters)",
}
#: methods that declare no distortion bound at their defaults, and why
UNBOUNDED: dict[str, str] = {
    "blur": "a Gaussian blur: the change is whatever the image's detail is",
    "jpeg": "a JPEG round trip at a low quality: the change is whatever the codec removes",
    "noise": "Gaussian noise has unbounded support",
    "enhance": "a global enhancement (contrast, sharpening): no bound is part of the method",
    "cw-sensitivity": "Carlini-Wagner: the distortion is a penalty (alpha) in the loss, not a constraint",
}
#: methods that declare a bound only under some settings: those settings (checked in addition to the defaults)
BOUND_AT: dict[str, dict[str, Any]] = {
    "korhonen": {"eps": 4 / 255},  # eps = 0 (default) is unbounded; eps > 0 a Linf bound
}
#: values for path settings (no generic alternative exists for a path): a factory (attack name, folder) -> value
PATHS: dict[str, Any] = {}


def _path_value(setting: str):
    def register(fn):
        PATHS[setting] = fn
        return fn

    return register


_MODELS: dict[str, Any] = {}


def model_for(name: str):
    key = MODEL.get(name, ("tiny", {}))[0]
    if key not in _MODELS:
        from evaluator.biqa import create

        _MODELS[key] = TinyBIQA() if key == "tiny" else create(key)
    return _MODELS[key]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread for this module: its tensors are tiny, and on a shared CPU the intra-op threads cost 3-5x
    in scheduling what they save (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("contract")


def images(name: str) -> torch.Tensor:
    return crops(SIZE.get(name, 64))


def originals(folder: Path, x: torch.Tensor, tag: str = "") -> list[Path]:
    """The batch as `<id>.png` files (what prepare() trains on and the run writer reads)."""
    d = folder / f"originals{x.shape[-1]}{tag}"
    if not d.is_dir():
        d.mkdir()
        for i, im in enumerate(x):
            Image.fromarray(np.round(im.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(d / f"img{i}.png")
    return sorted(d.glob("*.png"))


def fast(name: str) -> dict[str, Any]:
    specs = {s.name: s for s in get_attack(name).param_specs()}
    capped = {k: v for k, v in FAST.items() if k in specs and specs[k].type is int and v < specs[k].default}
    return {**capped, **MODEL.get(name, ("tiny", {}))[1]}


def build(name: str, folder: Path, **settings: Any):
    attack = get_attack(name)(**{**fast(name), **settings})
    attack.prepare(originals(folder, images(name)), model_for(name))
    return attack


_RUNS: dict[tuple, Any] = {}


def run(name: str, folder: Path, seed: int = 0, **settings: Any):
    """The AttackResult of `name` with FAST + settings on its images (memoized: the default run is reused). Every
    run's declared budget is checked here, so each setting of the file is also a budget check."""
    key = (name, seed, tuple(sorted((k, str(v)) for k, v in settings.items())))
    if key not in _RUNS:
        attack = build(name, folder, **settings)
        res = attack.run(images(name), model_for(name), ids=["a", "b", "c"], seed=seed, **RULES)
        if res.budget is not None:
            excess = res.budget.excess(images(name), res.x_adv, res.jpeg_bytes)
            assert (excess <= 1e-5).all(), (
                f"{name} with {settings}: declared {res.budget.norm.name} bound exceeded by {excess.tolist()}")
        _RUNS[key] = res
    return _RUNS[key]


def same(a, b) -> bool:
    return torch.equal(a.x_adv, b.x_adv) and a.jpeg_bytes == b.jpeg_bytes


# ---- output ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", METHODS)
def test_output_is_8bit_rgb_of_the_input_shape_and_raw_after_is_its_score(name, folder):
    x, model = images(name), model_for(name)
    res = run(name, folder)
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == torch.float32
    assert float(res.x_adv.min()) >= 0.0 and float(res.x_adv.max()) <= 1.0
    assert torch.equal(res.x_adv, torch.round(res.x_adv * 255) / 255), "not on the 8-bit grid"
    with torch.no_grad():
        assert torch.allclose(res.raw_after, model.raw_score(res.x_adv), atol=1e-4)
        assert torch.allclose(res.raw_before, model.raw_score(x), atol=1e-4)
    assert len(res.info) == x.shape[0]
    if res.jpeg_bytes is not None:
        for i, blob in enumerate(res.jpeg_bytes):
            decoded = torch.from_numpy(CODEC.decompress(blob)).permute(2, 0, 1).float() / 255
            assert torch.equal(decoded, res.x_adv[i])


BUDGET_CASES = [(name, {}) for name in METHODS] + [(name, s) for name, s in BOUND_AT.items()]


@pytest.mark.parametrize(("name", "settings"), BUDGET_CASES,
                         ids=[n + "".join(f"-{k}={v:.4g}" for k, v in s.items()) for n, s in BUDGET_CASES])
def test_declared_budget_holds(name, settings, folder):
    """(`run` checks the bound; here: that it is declared.) At the defaults a method declares a bound unless
    UNBOUNDED gives the reason or BOUND_AT the settings that make it bounded; under BOUND_AT's settings it must."""
    res = run(name, folder, **settings)
    if res.budget is not None:
        assert (res.budget.excess(images(name), res.x_adv, res.jpeg_bytes) <= 1e-5).all()
        return
    if settings:
        pytest.fail(f"{name} declares no distortion bound with {settings} (BOUND_AT says it does)")
    if name in UNBOUNDED:
        pytest.skip(f"{name} declares no distortion bound: {UNBOUNDED[name]}")
    if name in BOUND_AT:
        pytest.skip(f"{name} declares a bound only with {BOUND_AT[name]} (checked in its own case)")
    pytest.fail(f"{name} declares no distortion bound (Attack.budget returns None): declare one, or add the method "
                f"to UNBOUNDED (with the reason) or BOUND_AT (with the settings that bound it) in {__file__}")


# ---- settings --------------------------------------------------------------------------------------------------

def alternatives(spec: ParamSpec, base: Any, name: str, folder: Path) -> list[Any]:
    """Valid values other than `base`: the other choices, the flipped bool, numbers a factor 2 and 10 away (or
    spread over the range when the default is 0 or none), a prepared file or folder for a path."""
    if spec.type is Path:
        if spec.name not in PATHS:
            pytest.fail(f"{name}: path setting {spec.name!r} has no test value; add one to PATHS in {__file__}")
        return [PATHS[spec.name](name, folder)]
    if spec.choices:
        return [c for c in spec.choices if c != base]
    if spec.type is bool:
        return [not base]
    lo = spec.min if spec.min is not None else -np.inf
    hi = spec.max if spec.max is not None else np.inf
    if base is None or base == 0:
        span = (hi - lo) if np.isfinite(hi - lo) else 1.0
        start = lo if np.isfinite(lo) else 0.0
        values = [start + f * span for f in (0.01, 0.3, 0.7)]
    else:
        values = [base / 2, base * 2, base / 10, base * 10] if spec.type is float else [base // 2, base * 2,
                                                                                      base + 1, base // 10]
    kind = int if spec.type is int else float
    out = []
    for v in values:
        v = kind(v)
        if v != base and lo <= v <= hi and v not in out:
            out.append(v)
    if not out:
        pytest.fail(f"{name}: no alternative value for {spec.describe()}")
    return out


@_path_value("map")
def _map(name: str, folder: Path) -> Path:
    path = folder / f"map-{SIZE.get(name, 64)}.npy"
    np.save(path, np.full((SIZE.get(name, 64),) * 2, 0.5))
    return path


@_path_value("train_dir")
def _train_dir(name: str, folder: Path) -> Path:
    """Other training images: the crops mirrored left-right."""
    x = images(name).flip(-1)
    return originals(folder, x, tag="-mirrored")[0].parent


@_path_value("uap_file")
def _uap_file(name: str, folder: Path) -> Path:
    """A perturbation file of this method holding another delta (trained on the mirrored crops)."""
    path = folder / f"{name}-other.pt"
    if not path.exists():
        other = get_attack(name)(**{**fast(name), "uap_file": path, "train_dir": _train_dir(name, folder)})
        other.prepare([], model_for(name))
    return path


def remedy(name: str, exc: ParamError) -> dict[str, Any]:
    """The settings a refusal names as its fix ('add --set key=value'), typed; {} when it names none."""
    found = dict(re.findall(r"--set (\w+)=([^\s,;)]+)", str(exc)))
    return get_attack(name).parse_params(found) if found else {}


SETTINGS = [(name, spec.name) for name in METHODS for spec in get_attack(name).param_specs()]


@pytest.mark.parametrize(("name", "setting"), SETTINGS, ids=[f"{n}-{s}" for n, s in SETTINGS])
def test_every_listed_setting_changes_the_result(name, setting, folder):
    """Some value other than the default changes the result. A value the attack refuses must name the setting
    and the `--set` that makes it effective; with that dependency satisfied, the value must change the result
    compared with the dependency alone (before: a setting every value of which was refused passed unseen)."""
    cls = get_attack(name)
    spec = next(s for s in cls.param_specs() if s.name == setting)
    base = {**dataclasses.asdict(cls.Params()), **fast(name)}[setting]
    tried = []
    for value in alternatives(spec, base, name, folder):
        reference, fix = run(name, folder), {}
        try:
            changed = run(name, folder, **{setting: value})
        except ParamError as exc:
            assert setting in str(exc), exc
            fix = remedy(name, exc)
            assert fix and setting not in fix, f"{name}: refusing {setting}={value!r} names no --set fix: {exc}"
            reference = run(name, folder, **fix)
            changed = run(name, folder, **fix, **{setting: value})  # refused again: the named fix is wrong
        if not same(changed, reference):
            return
        tried.append(f"{value!r}{f' with {fix}' if fix else ''} same result")
    pytest.fail(f"{name}: {setting} (default {base!r}) never changes the result: {'; '.join(tried)}")


# ---- reproducibility -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", METHODS)
def test_same_seed_same_bytes(name, folder):
    """A fresh attack (its own `prepare`) with seed 0 writes the bytes of the first seed-0 run."""
    x, model = images(name), model_for(name)
    again = build(name, folder).run(x, model, ids=["a", "b", "c"], seed=0, **RULES)
    assert same(again, run(name, folder))


# ---- objective 'below' -----------------------------------------------------------------------------------------

OBJECTIVE_METHODS = [n for n in METHODS if any(s.name == "objective" and "below" in (s.choices or ())
                                               for s in get_attack(n).param_specs())]


@pytest.mark.parametrize("name", OBJECTIVE_METHODS)
def test_objective_below_stops_at_the_target(name, folder):
    """With the goal G = 5 points under the best image's score at rest (a goal every image meets: no effort), that
    image ends at G (1 point above for 8-bit rounding, 3 under for the last step) while objective 'lower' takes it
    further, having used fewer iterations than it had (where it records them), and twice the iterations leave it
    where it is (frozen: no momentum or optimizer state carries it on; at FIXED_STEP's step where the default step
    follows iters); images that meet G at rest stay as they are at rest. Single-step methods take their one step."""
    extra = {**STOP.get(name, {}), "objective": "below", "margin": 0.0}
    rest = run(name, folder, **extra, target=100.0)
    best = int(torch.argmax(rest.raw_after))
    goal = float(rest.raw_after[best]) - 5.0
    res = run(name, folder, **extra, target=goal)
    free = run(name, folder, **{**STOP.get(name, {}), "objective": "lower"})
    at_rest = rest.raw_after <= goal
    assert bool(at_rest.any()), f"{name}: no image meets the goal at rest; the check needs one"
    assert torch.allclose(res.raw_after[at_rest], rest.raw_after[at_rest], atol=0.05), (res.raw_after, goal)
    after = float(res.raw_after[best])
    if name in SINGLE_STEP:
        assert after == pytest.approx(float(free.raw_after[best]), abs=1e-4)  # its one step, taken in full
        return
    assert goal - 3.0 <= after <= goal + 1.0, f"{name}: goal {goal:.1f}, ended at {after:.1f}"
    assert float(free.raw_after[best]) < goal - 3.0, f"{name}: objective lower does not pass the goal either"
    iters = {s.name: s.default for s in get_attack(name).param_specs()}.get("iters")
    if iters is None or name in REFINES:
        return
    iters = {**fast(name), **extra}.get("iters", iters)
    if "iterations" in res.info[best]:
        assert res.info[best]["iterations"] < iters, f"{name}: used all {iters} iterations, never stopped"
    fixed = {**extra, **FIXED_STEP.get(name, {}), "target": goal}
    longer = run(name, folder, **{**fixed, "iters": 2 * iters})
    assert torch.equal(longer.x_adv[best], run(name, folder, **fixed).x_adv[best]), \
        f"{name}: moves on after meeting the goal"


# ---- the run writer's log --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", METHODS)
def test_logged_scores_are_those_of_the_written_files(name, folder, tmp_path):
    from submission.run_folder import RunSpec, Shard, attack_folder, log_path, open_run

    x, model = images(name), model_for(name)
    paths = originals(folder, x)
    attack = build(name, folder)
    spec = RunSpec(team="t", run=name, method=name, params=attack.params_dict(), biqa=MODEL.get(name, ("tiny",))[0],
                   seed=3)
    out = open_run(tmp_path / "runs" / name, spec, n_images=len(paths), shard=Shard(), originals=paths[0].parent)
    attack_folder(attack, model, paths, out, seed=3, shard=Shard(), batch_size=2, progress=False, **RULES)
    with log_path(out).open(newline="") as f:
        rows = {r["image"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == [p.stem for p in paths]
    for p in paths:
        written = out / f"{p.stem}.jpg"
        rgb = CODEC.decompress(written.read_bytes()) if written.exists() else load_rgb(out / p.name)
        with torch.no_grad():
            raw = float(model.raw_score(torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 255)[0])
        assert float(rows[p.stem]["score_after"]) == pytest.approx(min(max(raw, 0.0), 100.0), abs=0.5)
        assert float(rows[p.stem]["raw_after"]) == pytest.approx(raw, abs=0.5)


# ---- pgd-dct: lambda = 0 first ---------------------------------------------------------------------------------

def test_pgd_dct_writes_the_plain_jpeg_of_an_image_the_organizer_jpeg_already_puts_below_the_target(folder):
    """pgd-dct tries lambda = 0 (the plain quantization round(z_o), no perturbation) first: an image whose plain
    JPEG, recompressed by the task's codec, already scores below s_a is written as exactly that JPEG; the others
    get a lambda > 0 (the check needs both kinds: MODEL's target 40 splits the crops)."""
    from evaluator.codec import DCTCoefficients
    from submission.diff_jpeg import jpeg_forward

    res, x, model = run("pgd-dct", folder), images("pgd-dct"), model_for("pgd-dct")
    target = MODEL["pgd-dct"][1]["target"]
    tables = torch.from_numpy(CODEC.quant_tables().astype(np.float32))
    plain = [torch.round(c).numpy().astype(np.int16) for c in jpeg_forward(x, tables, CODEC.subsampling)]
    below = []
    for i in range(x.shape[0]):
        path = folder / f"plain{i}.jpg"
        CODEC.write_dct(path, DCTCoefficients(Y=plain[0][i], Cb=plain[1][i], Cr=plain[2][i], qt=None,
                                              height=x.shape[2], width=x.shape[3]))
        after = CODEC.roundtrip(CODEC.decompress(path.read_bytes()))
        with torch.no_grad():
            score = float(model.raw_score(torch.from_numpy(after).permute(2, 0, 1)[None].float() / 255)[0])
        if score < target:
            below.append(i)
            assert res.jpeg_bytes[i] == path.read_bytes() and res.info[i]["lambda"] == 0.0, i
        else:
            assert res.info[i]["lambda"] > 0.0 and res.jpeg_bytes[i] != path.read_bytes(), (i, res.info[i])
    assert 0 < len(below) < x.shape[0], f"scores vs target {target}: the check needs images on both sides"
