"""benchmarks/bench_evaluate.py refuses a speed figure whose numbers are not the plain loop's."""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_evaluate as be  # noqa: E402


def test_verdict_passes_only_equal_numbers():
    assert be.verdict(0.0, "identical") is None
    assert be.verdict(0.01, "identical") is None
    assert "0.0200 > 0.01" in be.verdict(0.02, "identical")
    assert "jury selection differs" in be.verdict(0.0, "jury selection differs")
    assert be.verdict(math.nan, "identical") is not None  # a missing or NaN score is not agreement
