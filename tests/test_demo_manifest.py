"""The demo set's manifest lives beside the originals folder, so indexing the demo originals warns about nothing."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from evaluator.demo.demo_data import Crop, manifest_path, write_demo_set
from evaluator.intake.runs import index_originals


def _crops(n: int) -> list:
    rng = np.random.default_rng(0)
    return [(Crop(image=f"photo_s{i}", pixels=rng.integers(0, 256, (384, 512, 3), dtype=np.uint8)), 60.0 + i)
            for i in range(n)]


def test_demo_set_indexes_without_a_warning_and_lists_its_images_beside_the_folder(tmp_path: Path, caplog):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "manifest.csv").write_text("image\n")  # what an older kit left inside the folder
    write_demo_set(out, _crops(2))
    assert manifest_path(out) == tmp_path / "demo-manifest.csv"
    lines = manifest_path(out).read_text().splitlines()
    assert lines[0] == "image,width,height,sha256,score" and len(lines) == 3
    assert sorted(p.name for p in out.iterdir()) == ["photo_s0.png", "photo_s1.png"]
    with caplog.at_level(logging.WARNING):
        assert sorted(index_originals(out)) == ["photo_s0", "photo_s1"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
