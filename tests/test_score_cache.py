"""evaluator.scoring.score_cache: keys (content, rules, model, kit), persistence, bad files."""

from __future__ import annotations

import dataclasses

import pytest
from evaluator_fixtures import BrightnessBIQA

from evaluator.config import task_from_dict
from evaluator.scoring.score_cache import CacheKeyContext, ScoreCache, ScoreCacheError, model_hash, model_key, rules_hash

CTX = CacheKeyContext(rules="r1", model="m1", kit="0.1.0")


def test_values_persist_across_connections(tmp_path):
    path = tmp_path / "c" / "scores.sqlite"
    with ScoreCache(path, CTX) as cache:
        cache.put_many("jpeg", {"sha-a": {"score": 41.5, "jpeg_sha256": "x"}, "sha-b": {"score": float("inf")}})
    with ScoreCache(path, CTX) as cache:
        assert cache.get_many("jpeg", ["sha-a", "sha-b", "sha-c"]) == {
            "sha-a": {"score": 41.5, "jpeg_sha256": "x"}, "sha-b": {"score": float("inf")}}
        assert cache.get("clean", "sha-a") is None  # kinds are separate
        assert len(cache) == 2


@pytest.mark.parametrize("field", ["rules", "model", "kit"])
def test_any_other_key_part_misses(tmp_path, field):
    path = tmp_path / "scores.sqlite"
    with ScoreCache(path, CTX) as cache:
        cache.put_many("jpeg", {"sha-a": {"score": 1.0}})
    other = dataclasses.replace(CTX, **{field: "different"})
    with ScoreCache(path, other) as cache:
        assert cache.get("jpeg", "sha-a") is None
        if field != "kit":
            assert cache.get("jpeg", "sha-a", **{field: False}) is None  # stored with it, looked up without


def test_entries_stored_without_rules_and_model_survive_their_change(tmp_path):
    path = tmp_path / "scores.sqlite"
    with ScoreCache(path, CTX) as cache:
        cache.put_many("fidelity", {"a:b": {"psnr": 40.0}}, rules=False, model=False)
    with ScoreCache(path, CacheKeyContext(rules="r2", model="m2", kit="0.1.0")) as cache:
        assert cache.get("fidelity", "a:b", rules=False, model=False) == {"psnr": 40.0}


def test_a_file_that_is_not_a_cache_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "scores.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ScoreCacheError, match="delete the file and rerun"):
        ScoreCache(path, CTX)


def test_model_hash_follows_the_parameters_and_rules_hash_the_score_rules():
    assert model_hash(BrightnessBIQA(1.0)) == model_hash(BrightnessBIQA(1.0))
    assert model_hash(BrightnessBIQA(1.0)) != model_hash(BrightnessBIQA(0.5))
    base = rules_hash(task_from_dict({}))
    assert rules_hash(task_from_dict({"biqa": {"threshold": 70}, "gate": {"max_accuracy": 0.3}})) == base
    assert rules_hash(task_from_dict({"jpeg": {"quality": 80}})) != base
    assert rules_hash(task_from_dict({"jpeg": {"subsampling": "4:4:4"}})) != base
    assert rules_hash(task_from_dict({"biqa": {"model": "niqe"}})) != base


def _threads(n: int):
    import contextlib

    import torch

    @contextlib.contextmanager
    def ctx():
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    return ctx()


def test_cache_key_follows_the_thread_count_unless_the_model_is_thread_independent():
    """A model whose scores vary with the torch thread count in the last digits (KonCept512, a plain torch model)
    gets a cache key per count: a rerun with other --threads never serves a number computed another way; a model
    registered thread_independent keeps one key."""
    import torch

    from evaluator.biqa import create

    plain = BrightnessBIQA()  # not registered: thread_independent unknown -> keyed by the count
    brisque = create("brisque")
    with _threads(1):
        plain1, brisque1 = model_key(plain), model_key(brisque)
    with _threads(2):
        plain2, brisque2 = model_key(plain), model_key(brisque)
    assert plain1 != plain2
    assert brisque1 == brisque2
    assert model_key(plain) != model_hash(plain)  # the identity recorded in task.json stays the weights' hash
    assert torch.get_num_threads() >= 1
