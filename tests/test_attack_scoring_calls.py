"""pp-attack's run writer scores each original once: the score the attack already returned (`raw_before`) is
logged as `score_before`, clipped to the model's range, instead of scoring the original again."""

from __future__ import annotations

import csv

import torch

from attack_fixtures import RULES, TinyBIQA, crops
from evaluator.common.imageio import save_png, to_uint8
from submission.attacks import get_attack
from submission.run_folder import RunSpec, Shard, attack_folder, log_path, open_run


class CountingBIQA(TinyBIQA):
    """TinyBIQA that records every image it scores (as uint8 bytes), to count how often an original is scored."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[bytes] = []

    def raw_score(self, x: torch.Tensor) -> torch.Tensor:
        for image in x.detach():
            self.seen.append(to_uint8(image[None]).tobytes())
        return super().raw_score(x)


def test_each_original_is_scored_once_and_logged_with_the_attacks_score(tmp_path):
    x = crops(48)
    folder = tmp_path / "originals"
    folder.mkdir()
    paths = []
    for i in range(len(x)):
        paths.append(folder / f"img{i}.png")
        save_png(paths[-1], to_uint8(x[i : i + 1]))
    model = CountingBIQA()
    attack = get_attack("blur")()
    spec = RunSpec(team="t", run="blur", method="blur", params=attack.params_dict(), biqa="tiny", seed=0)
    out = open_run(tmp_path / "runs" / "blur", spec, n_images=len(paths), shard=Shard(), originals=folder)
    attack_folder(attack, model, paths, out, seed=0, shard=Shard(), batch_size=3, progress=False, **RULES)

    originals = [to_uint8(x[i : i + 1]).tobytes() for i in range(len(x))]
    assert [model.seen.count(o) for o in originals] == [1, 1, 1]  # before the fix: 2 (the attack, then the log)
    with log_path(out).open(newline="") as f:
        rows = {r["image"]: r for r in csv.DictReader(f)}
    with torch.no_grad():
        expected = TinyBIQA()(x)
    for i in range(len(x)):
        row = rows[f"img{i}"]
        assert float(row["score_before"]) == min(max(float(row["raw_before"]), 0.0), 100.0)
        assert abs(float(row["score_before"]) - float(expected[i])) < 1e-4
