"""A SIMULATED jury, for the demo and for tests: scripted jurors cast ballots through the real vote store.

It is not a jury of people and its ranking says nothing about appeal; it exercises the whole pipeline end to end
(store, ranking, intervals, agreement) so `pp-jury rank` has something real to rank.

Preference model (documented, deliberately simple): juror j's utility for candidate c of image i is

    u_jc = SSIM(c, original_i) + sigma * e_jc,   e_jc ~ N(0, 1) i.i.d. (seeded by `seed`, juror and candidate),

the SSIM (skimage, channel_axis=-1, data_range=255) of the candidate's JPEG against the untouched original: a
juror who likes versions that look like the photo. Each juror picks the `most` highest utilities as "most
appealing" and the `least` lowest as "least appealing" (the task's numbers, shrunk for few candidates as the app
does), then finalizes. Run it on a copy of the jury package (the demo uses `demo_out/simulated_jury/`), never
on the package real jurors vote in: simulated jurors are ordinary jurors of the store it writes to, labelled
by their ids `simulated001`, `simulated002`, ... (`store.SIMULATED_PREFIX`). Several simulations may run at once
on one store (each adds its own jurors in one transaction, then votes), which is how the load tests drive it.

    pp-jury simulate JURY_DIR --originals DIR [--jurors 7] [--sigma 0.02] [--seed 0] [--store URL]
    python -m jury_app.testing.simulate JURY_DIR --originals DIR [--jurors 7] [--sigma 0.02] [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
from skimage.metrics import structural_similarity

from evaluator.common.imageio import load_rgb
from evaluator.contracts.jury_package import STORE_NAME, JuryPackage, load_package
from jury_app.votes.backends import open_store
from jury_app.votes.store import SIMULATED_PREFIX, VoteStoreBase

def _noise(seed: int, juror: str, candidate: str) -> float:
    digest = hashlib.sha256(f"{seed}:{juror}:{candidate}".encode()).digest()
    return float(np.random.default_rng(int.from_bytes(digest[:8], "big")).standard_normal())


def candidate_ssim(package: JuryPackage, originals: Path) -> dict[str, float]:
    """SSIM of every candidate's JPEG against its original `<originals>/<image>.png` (or .jpg)."""
    out: dict[str, float] = {}
    for im in package.images:
        matches = [originals / f"{im.image}{ext}" for ext in (".png", ".jpg")]
        path = next((p for p in matches if p.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"{originals}: no original {im.image}.png or .jpg; pass the run's --originals")
        ref = load_rgb(path)
        for c in im.candidates:
            img = load_rgb(c.file)
            out[c.id] = float(structural_similarity(ref, img, channel_axis=-1, data_range=255))
    return out


def simulate(directory: str | Path, originals: str | Path, jurors: int = 7, sigma: float = 0.02,
             seed: int = 0, store: VoteStoreBase | None = None) -> int:
    """Cast one finalized ballot per simulated juror and image into `store` (default DIR/votes.sqlite); returns
    ballots cast."""
    package = load_package(directory)
    store = store if store is not None else open_store(package)
    people = [j.juror for j in store.jurors() if not j.juror.startswith(SIMULATED_PREFIX)]
    if people:
        raise ValueError(f"{store.where} holds jurors who are not simulated ({', '.join(people[:3])}"
                         f"{', ...' if len(people) > 3 else ''}): scripted ballots would be counted with theirs. "
                         "Run the simulation on a copy of the package (without votes.sqlite) or with --store on a "
                         "store of its own; nothing was added.")
    quality = candidate_ssim(package, Path(originals))
    cast = 0
    for link in store.add_jurors(jurors, prefix=SIMULATED_PREFIX):
        juror = link.juror
        for im in package.images:
            ids = [c.id for c in im.candidates]
            rule = package.task.for_candidates(len(ids))
            ranked = sorted(ids, key=lambda c: quality[c] + sigma * _noise(seed, juror, c), reverse=True)
            most = ranked[: rule.most]
            least = ranked[len(ranked) - rule.least :] if rule.least else []
            store.save_ballot(juror, im.image, most, least)
            cast += 1
        store.finalize(juror)
    return cast


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jury_app.testing.simulate", description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="jury package folder (pp-evaluate's results/jury, or a copy)")
    parser.add_argument("--originals", type=Path, required=True, help="folder of the original images")
    parser.add_argument("--jurors", type=int, default=7, help="simulated jurors (2020: 7 people)")
    parser.add_argument("--sigma", type=float, default=0.02, help="preference noise (SSIM units)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        n = simulate(args.directory, args.originals, args.jurors, args.sigma, args.seed)
    except (OSError, ValueError) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    print(f"SIMULATED jury: {args.jurors} scripted jurors cast {n} ballots into {args.directory / STORE_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
