"""Models that need weights: refused without them (driven by the registry's `needs_weights`), random weights only
on the explicit, seeded opt-in, and that opt-in stamped into task.json, runs.csv and report.html."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from evaluator_fixtures import BrightnessBIQA, darken, write_originals, write_run
from torch import nn

from evaluator import biqa
from evaluator.biqa import BIQAError, MissingWeightsError, ModelSpec
from evaluator.biqa.base import BIQAInfo, BIQAModel
from evaluator.config import TaskConfig
from evaluator.contracts.results import RUNS_COLUMNS
from evaluator.pipeline import PipelineError, evaluate

NEED_WEIGHTS = [n for n in biqa.available() if biqa.spec(n).needs_weights]
NO_WEIGHTS = [n for n in biqa.available() if not biqa.spec(n).needs_weights]


class ToyBIQA(BIQAModel):
    """A 3 -> 1 linear layer on the mean colour, randomly initialized: the smallest model with weights."""

    def __init__(self, seed: int | None) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 1)
        self.info = BIQAInfo(name="toy", needs_weights=True, random_weights_seed=seed)

    def raw_score(self, x: torch.Tensor) -> torch.Tensor:
        return 50 + 10 * self.fc(x.mean(dim=(2, 3)))[:, 0]


def _toy_spec(name: str, needs_weights: bool, records_seed: bool = True) -> ModelSpec:
    def build(weights: Path | None, seed: int | None) -> BIQAModel:
        return ToyBIQA(seed if records_seed else None)

    return ModelSpec(name, build, needs_weights=needs_weights, weights_help="a toy checkpoint (.pt)")


# ---------------------------------------------------------------- the registry


def test_the_registry_knows_which_models_need_weights() -> None:
    assert "koncept512" in NEED_WEIGHTS and {"brisque", "niqe", "piqe"} <= set(NO_WEIGHTS)  # and any new entry
    help_text = biqa.spec("koncept512").weights_help
    for needle in ("torch.save", "state dict", "module.", "'state_dict'", "weights_only=True"):
        assert needle in help_text


@pytest.mark.parametrize("name", NEED_WEIGHTS)
def test_a_model_that_needs_weights_is_refused_without_them(name: str) -> None:
    with pytest.raises(MissingWeightsError) as info:
        biqa.create(name)
    message = str(info.value)
    for needle in (repr(name), "needs a weights file", "--biqa-weights PATH", biqa.spec(name).weights_help,
                   "--random-weights SEED"):
        assert needle in message, (needle, message)


def test_koncept512_class_refuses_without_weights_too() -> None:
    from evaluator.biqa.koncept512 import KonCept512BIQA

    with pytest.raises(MissingWeightsError, match="--biqa-weights"):
        KonCept512BIQA()
    with pytest.raises(BIQAError, match="not both"):
        KonCept512BIQA(weights="w.pth", random_seed=0)


def test_the_refusal_follows_needs_weights_not_the_name(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = dict(biqa.registry._REGISTRY)
    registry["toy"] = _toy_spec("toy", needs_weights=True)
    registry["koncept512"] = _toy_spec("koncept512", needs_weights=False)  # same name, no weights needed
    monkeypatch.setattr(biqa.registry, "_REGISTRY", registry)
    with pytest.raises(MissingWeightsError, match="'toy' needs a weights file.*a toy checkpoint"):
        biqa.create("toy")
    assert isinstance(biqa.create("koncept512"), ToyBIQA)


def test_random_weights_are_seeded_and_leave_the_callers_random_state_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    toy = _toy_spec("toy", needs_weights=True)
    monkeypatch.setattr(biqa.registry, "_REGISTRY", {**biqa.registry._REGISTRY, "toy": toy})
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a, b, c = (biqa.create("toy", random_weights_seed=s) for s in (5, 5, 6))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.fc.weight, b.fc.weight) and torch.equal(a.fc.bias, b.fc.bias)
    assert not torch.equal(a.fc.weight, c.fc.weight)
    assert a.info.random_weights_seed == 5 and "--random-weights 5" in a.info.random_weights_note()
    assert not a.training and not any(p.requires_grad for p in a.parameters())


def test_a_builder_that_ignores_the_seed_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _toy_spec("toy", needs_weights=True, records_seed=False)
    monkeypatch.setattr(biqa.registry, "_REGISTRY", {**biqa.registry._REGISTRY, "toy": spec})
    with pytest.raises(BIQAError, match="ignored random_weights_seed=3"):
        biqa.create("toy", random_weights_seed=3)


@pytest.mark.parametrize("seed", [-1, 2**64, True, 1.5, "0"])
def test_bad_seeds_are_refused(seed: object) -> None:
    with pytest.raises(BIQAError, match=r"--random-weights .*integer in \[0, 18446744073709551615\]"):
        biqa.create("koncept512", random_weights_seed=seed)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", NO_WEIGHTS)
def test_random_weights_for_a_model_without_weights_is_refused(name: str) -> None:
    with pytest.raises(BIQAError, match="drop --random-weights"):
        biqa.create(name, random_weights_seed=0)


def test_weights_and_random_weights_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BIQAError, match="not both"):
        biqa.create("koncept512", weights=tmp_path / "w.pth", random_weights_seed=0)


# ---------------------------------------------------------------- the stamp in every output


def _random(model: BIQAModel, seed: int | None, needs_weights: bool = True) -> BIQAModel:
    model.info = dataclasses.replace(model.info, needs_weights=needs_weights, random_weights_seed=seed)
    return model


@pytest.fixture()
def folders(tmp_path: Path) -> Path:
    originals = write_originals(tmp_path / "originals", {"a": 0.7, "b": 0.65, "c": 0.75})
    (tmp_path / "runs").mkdir()
    write_run(tmp_path / "runs", "dark", {k: darken(v, 0.5) for k, v in originals.items()})
    write_run(tmp_path / "runs", "incomplete", {"a": originals["a"]})  # an invalid run is stamped too
    return tmp_path


def _evaluate(d: Path, model: BIQAModel) -> tuple[dict, list[dict[str, str]], str]:
    evaluate(d / "originals", d / "runs", d / "out", TaskConfig(), model, batch_size=2, progress=False)
    with (d / "out" / "runs.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return (json.loads((d / "out" / "task.json").read_text()), rows,
            (d / "out" / "report.html").read_text(encoding="utf-8"))


def test_random_weights_are_stamped_into_task_json_runs_csv_and_the_report(folders: Path) -> None:
    meta, rows, page = _evaluate(folders, _random(BrightnessBIQA(), 7))
    assert meta["model"]["random_weights_seed"] == 7 and meta["model"]["needs_weights"] is True
    assert "RANDOM weights (--random-weights 7" in meta["warning"]
    assert list(rows[0]) == list(RUNS_COLUMNS) and RUNS_COLUMNS[-1] == "random_weights_seed"
    assert {r["run"]: r["random_weights_seed"] for r in rows} == {"dark": "7", "incomplete": "7"}
    assert "RANDOM BIQA WEIGHTS" in page and "--random-weights 7" in page
    assert page.index("RANDOM BIQA WEIGHTS") < page.index("<h2>")  # a banner on top, before any number


def test_real_weights_leave_no_stamp(folders: Path) -> None:
    model = BrightnessBIQA()
    model.info = dataclasses.replace(model.info, needs_weights=True, weights_sha256="ab" * 32)
    meta, rows, page = _evaluate(folders, model)
    assert meta["model"]["random_weights_seed"] is None and "warning" not in meta
    assert [r["random_weights_seed"] for r in rows] == ["", ""]
    assert "RANDOM BIQA WEIGHTS" not in page and "class='banner'" not in page


def test_the_pipeline_refuses_a_model_that_needs_weights_and_has_none(folders: Path) -> None:
    with pytest.raises(PipelineError, match="'brightness' needs weights and has none loaded"):
        evaluate(folders / "originals", folders / "runs", folders / "out", TaskConfig(),
                 _random(BrightnessBIQA(), None), progress=False)
    assert not (folders / "out" / "runs.csv").exists()
