"""The BIQA registry (`evaluator.biqa.register`): one place per model, metadata that the kit reads, the task rules
validated against it, and "did you mean" for mistyped BIQA and attack names."""

from __future__ import annotations

import pytest
import torch

from evaluator import biqa
from evaluator.biqa import BIQAError, BIQAModel, register, spec
from evaluator.config import TaskConfigError, task_from_dict


@pytest.fixture()
def scratch_registry(monkeypatch):
    """A registry the test may add to (restored afterwards)."""
    monkeypatch.setattr(biqa.registry, "_REGISTRY", dict(biqa.registry._REGISTRY))
    return biqa.registry._REGISTRY


class Flat(BIQAModel):
    """Scores every image 250 (raw): the registry's score range decides the clip."""

    def __init__(self, name: str):
        super().__init__()
        self.info = spec(name).info()

    def raw_score(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0],), 250.0) + 0 * x.sum()


def test_a_registered_model_is_created_validated_and_clipped_by_its_metadata(scratch_registry):
    @register("flat", differentiable=False)
    def _flat(weights, random_seed):
        return Flat("flat")

    assert "flat" in biqa.available() and spec("flat").build is _flat
    model = biqa.create("flat")
    assert model.info.name == "flat" and not model.info.differentiable and not model.info.needs_weights
    assert model(torch.zeros(2, 3, 8, 8)).tolist() == [100.0, 100.0]  # forward clips to the registered range
    assert task_from_dict({"biqa": {"model": "flat"}}).biqa.model == "flat"  # the task rules accept it


def test_needs_weights_is_read_by_create(scratch_registry):
    @register("heavy", needs_weights=True, weights_help="the heavy checkpoint")
    def _heavy(weights, random_seed):
        return Flat("heavy")

    with pytest.raises(biqa.MissingWeightsError, match="the heavy checkpoint"):
        biqa.create("heavy")


@pytest.mark.parametrize("score_range", [(0.0, 200.0), (100.0, 0.0), (0, 1), (-100, 100), "0..100", (0, 50, 100)])
def test_registration_refuses_a_score_range_other_than_0_to_100(scratch_registry, score_range):
    """The kit reads scores on 0..100 (metrics divide by 100, --target in [0, 100]): no other range registers."""
    with pytest.raises(ValueError, match=r"map the model's score onto \[0, 100\]"):
        register("other", score_range=score_range)
    assert "other" not in biqa.available()
    register("same", score_range=(0, 100))(lambda weights, seed: None)  # ints are the same range
    assert spec("same").score_range == (0.0, 100.0)


def test_registration_has_no_higher_better_switch_and_refuses_twins(scratch_registry):
    """No `higher_better` parameter that is neither stored nor read: a lower-better score is registered mapped."""
    with pytest.raises(TypeError, match="higher_better"):
        register("raw-brisque", higher_better=False)
    with pytest.raises(ValueError, match="registered twice"):
        register("brisque")(lambda weights, seed: None)


def test_the_kit_models_carry_the_registry_metadata():
    """Registry-driven (a new entry is checked too, none has to be listed here); the kit's four are among them."""
    assert {"brisque", "koncept512", "niqe", "piqe"} <= set(biqa.available()) and biqa.available() == sorted(
        biqa.available())
    for name in biqa.available():
        entry = spec(name)
        assert entry.name == name and entry.info().name == name
        assert entry.weights_help if entry.needs_weights else not entry.weights_help, name  # shown when missing
    assert not spec("piqe").differentiable and spec("brisque").differentiable and spec("koncept512").differentiable
    assert spec("koncept512").needs_weights and not spec("brisque").needs_weights
    from evaluator.biqa.piqe import Piqe

    assert Piqe().info == spec("piqe").info()


@pytest.mark.parametrize("name, close", [("brisqe", "brisque"), ("konsept512", "koncept512"), ("NIQE", None)])
def test_unknown_biqa_names_get_a_suggestion(name, close):
    with pytest.raises(BIQAError) as exc:
        biqa.create(name)
    message = str(exc.value)
    assert f"unknown BIQA model {name!r}" in message and f"available: {', '.join(biqa.available())}" in message
    assert (f"did you mean {close!r}?" in message) if close else "did you mean" not in message
    with pytest.raises(TaskConfigError) as exc:
        task_from_dict({"biqa": {"model": name}}, "task.toml")
    assert "biqa.model" in str(exc.value) and ((f"did you mean {close!r}?" in str(exc.value)) if close else True)


def test_unknown_attack_names_get_a_suggestion():
    from submission.attacks import AttackError, get_attack

    with pytest.raises(AttackError, match=r"unknown attack method 'ifgms' \(did you mean 'ifgsm'\?\)"):
        get_attack("ifgms")
    with pytest.raises(AttackError) as exc:
        get_attack("zzzz")
    assert "did you mean" not in str(exc.value) and "pp-attack --list" in str(exc.value)
