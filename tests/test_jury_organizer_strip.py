"""The organizer page's per-image strip order: ranked runs only (a candidate outside the ranking, e.g. a planted
attention-check image, or one the key does not know, is skipped), by most picks, then fewer least, then run."""

from __future__ import annotations

from pathlib import Path

from jury_app.ranking.ranking import ImageRunCount
from jury_app.web.organizer_page import strip_order


def test_strip_orders_ranked_runs_by_most_then_least_and_skips_candidates_outside_the_ranking():
    counts = {r: ImageRunCount("img1", r, most, least, 4)
              for r, most, least in (("a", 1, 0), ("b", 3, 2), ("c", 3, 1), ("check", 9, 0))}
    candidates = [("a", Path("a.jpg")), ("b", Path("b.jpg")), (None, Path("unknown.jpg")),
                  ("check", Path("check.jpg")), ("c", Path("c.jpg")), ("d", Path("d.jpg"))]
    order = strip_order(candidates, counts, ranked={"a", "b", "c", "d"})
    assert order == [("c", Path("c.jpg")), ("b", Path("b.jpg")), ("a", Path("a.jpg")), ("d", Path("d.jpg"))]
    assert strip_order(candidates, counts, ranked=set()) == []
