"""evaluator.scoring.selection: population variance of post-JPEG scores across runs, top-k, ties by image id."""

from __future__ import annotations

import pytest

from evaluator.scoring.selection import SelectedImage, score_variances, select_images

SCORES = {
    "run-a": {"img3": 10.0, "img1": 20.0, "img2": 30.0, "img4": 50.0},
    "run-b": {"img3": 30.0, "img1": 20.0, "img2": 10.0, "img4": 52.0},
}


def test_variance_is_the_population_variance_across_runs():
    v = score_variances(SCORES, ["img1", "img2", "img3", "img4"])
    assert v == {"img1": 0.0, "img2": 100.0, "img3": 100.0, "img4": 1.0}  # ddof=1 would give 200 and 2


def test_top_k_by_variance_with_ties_broken_by_image_id():
    v = score_variances(SCORES, ["img1", "img2", "img3", "img4"])
    assert select_images(v, 3) == [
        SelectedImage("img2", 100.0, 1), SelectedImage("img3", 100.0, 2), SelectedImage("img4", 1.0, 3)]


def test_tie_break_does_not_depend_on_input_order():
    forward = {"b": 4.0, "a": 4.0, "c": 4.0}
    backward = dict(reversed(list(forward.items())))
    assert [s.image for s in select_images(forward, 2)] == ["a", "b"]
    assert select_images(forward, 2) == select_images(backward, 2)


def test_k_larger_than_the_images_selects_all_and_zero_selects_none():
    v = {"x": 1.0, "y": 2.0}
    assert [s.rank for s in select_images(v, 20)] == [1, 2]
    assert select_images(v, 0) == []
    with pytest.raises(ValueError, match="negative"):
        select_images(v, -1)


def test_a_single_run_gives_zero_variance_everywhere():
    v = score_variances({"only": {"a": 70.0, "b": 20.0}}, ["a", "b"])
    assert v == {"a": 0.0, "b": 0.0}
    assert [s.image for s in select_images(v, 1)] == ["a"]


def test_a_missing_score_is_an_error_naming_run_and_image():
    with pytest.raises(ValueError, match=r"run 'run-b' has no score for image 'img9'"):
        score_variances({"run-a": {"img9": 1.0}, "run-b": {}}, ["img9"])
