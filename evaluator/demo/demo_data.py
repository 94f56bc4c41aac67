"""Build the demo set `data/demo/` from the real photos inside the scikit-image and scikit-learn wheels.

No network: the photos ship with the installed packages. Each photo gives 512x384 crops (at native scale and,
for the larger ones, after a downscale so the crop sees more of the scene), also mirrored; a crop is kept only
if the default BIQA scores it >= the task threshold, which is how the task's test set was defined ("high quality").
At most `per_photo` crops are kept per photo so no single scene dominates.

Writes `<out>/<image>.png` and, beside the folder, `<out>-manifest.csv` (`image, width, height, sha256, score`),
atomically. The manifest stays out of the originals folder, which holds originals only (`data/README.md`), so
`pp-evaluate --originals <out>` has nothing to warn about.

    python -m evaluator.demo.demo_data --out data/demo
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import logging
import sys
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from evaluator.biqa import create
from evaluator.common.errors import KitError
from evaluator.config import load_task
from evaluator.common.imageio import save_png, to_tensor
from evaluator.common.atomic import write_text_atomic

log = logging.getLogger(__name__)

WIDTH, HEIGHT = 512, 384

#: (package, path inside it, short name): the real RGB photographs that ship in the two wheels.
PHOTOS = (
    ("skimage", "data/astronaut.png", "astronaut"),
    ("skimage", "data/coffee.png", "coffee"),
    ("skimage", "data/motorcycle_left.png", "motorcycle_left"),
    ("skimage", "data/motorcycle_right.png", "motorcycle_right"),
    ("skimage", "data/rocket.jpg", "rocket"),
    ("skimage", "data/chelsea.png", "chelsea"),
    ("sklearn", "datasets/images/china.jpg", "china"),
    ("sklearn", "datasets/images/flower.jpg", "flower"),
)


@dataclass(frozen=True)
class Crop:
    image: str
    pixels: np.ndarray  # (384, 512, 3) uint8


def photo_path(package: str, relative: str) -> Path:
    """Path of a file inside an installed package, found without importing the package."""
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed; run `make install` first")
    return Path(list(spec.submodule_search_locations)[0]) / relative


def crops_of(name: str, rgb: np.ndarray) -> list[Crop]:
    """Deterministic 512x384 crops: a 3x2 grid of windows at each scale, each also mirrored left-right."""
    out: list[Crop] = []
    h, w = rgb.shape[:2]
    scales = [1.0]
    fit = max(WIDTH / w, HEIGHT / h)
    if fit > 1.0:  # too small for a native crop: upscaling would invent detail, so use the smallest zoom-out only
        scales = [fit]
    elif fit < 0.9:
        scales.append(fit)
    for si, scale in enumerate(scales):
        img = Image.fromarray(rgb)
        if scale != 1.0:
            size = (max(WIDTH, round(w * scale)), max(HEIGHT, round(h * scale)))
            img = img.resize(size, Image.Resampling.LANCZOS)
        arr = np.asarray(img)
        hh, ww = arr.shape[:2]
        xs = sorted({0, (ww - WIDTH) // 2, ww - WIDTH})
        ys = sorted({0, hh - HEIGHT})
        for y in ys:
            for x in xs:
                window = arr[y : y + HEIGHT, x : x + WIDTH]
                tag = f"{name}_s{si}_x{x}_y{y}"
                out.append(Crop(tag, np.ascontiguousarray(window)))
                out.append(Crop(tag + "_m", np.ascontiguousarray(window[:, ::-1])))
    return out


def candidate_crops() -> list[Crop]:
    """All candidate crops of all photos, in a fixed order."""
    crops: list[Crop] = []
    for package, relative, name in PHOTOS:
        with Image.open(photo_path(package, relative)) as im:
            rgb = np.asarray(im.convert("RGB"))
        crops.extend(crops_of(name, rgb))
    return crops


@torch.no_grad()
def score_crops(crops: list[Crop], model_name: str, batch: int = 8) -> list[float]:
    """Default-BIQA scores (0..100, higher = better) of the crops, in batches."""
    model = create(model_name)
    scores: list[float] = []
    for i in range(0, len(crops), batch):
        x = torch.cat([to_tensor(c.pixels) for c in crops[i : i + batch]])
        scores.extend(float(s) for s in model(x))
    return scores


def select(crops: list[Crop], scores: list[float], threshold: float, per_photo: int) -> list[tuple[Crop, float]]:
    """Keep crops scoring >= threshold, at most `per_photo` per photo (best first), in name order."""
    by_photo: dict[str, list[tuple[Crop, float]]] = {}
    for crop, score in zip(crops, scores):
        if score >= threshold:
            by_photo.setdefault(crop.image.split("_s")[0], []).append((crop, score))
    kept: list[tuple[Crop, float]] = []
    for items in by_photo.values():
        items.sort(key=lambda cs: (-cs[1], cs[0].image))
        kept.extend(items[:per_photo])
    return sorted(kept, key=lambda cs: cs[0].image)


def manifest_path(out: Path) -> Path:
    """The demo set's manifest: `<out>-manifest.csv` beside the folder (data/demo -> data/demo-manifest.csv)."""
    out = Path(out)
    return out.parent / f"{out.name}-manifest.csv"


def write_demo_set(out: Path, kept: list[tuple[Crop, float]]) -> None:
    """Write the PNGs and the manifest (`manifest_path(out)`), replaced atomically once every image is on disk.

    A manifest.csv that an older kit wrote inside the folder is removed (it made the originals index warn)."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for crop, score in kept:
        path = out / f"{crop.image}.png"
        save_png(path, crop.pixels)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        rows.append({"image": crop.image, "width": WIDTH, "height": HEIGHT, "sha256": digest, "score": f"{score:.4f}"})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["image", "width", "height", "sha256", "score"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(manifest_path(out), buf.getvalue())
    (out / "manifest.csv").unlink(missing_ok=True)


def build(out: Path, minimum: int = 20, per_photo: int = 4, task_path: str | None = None) -> list[tuple[Crop, float]]:
    """Build the demo set; raise RuntimeError if fewer than `minimum` crops pass the quality rule."""
    task = load_task(task_path)
    crops = candidate_crops()
    scores = score_crops(crops, task.biqa.model)
    kept = select(crops, scores, task.biqa.threshold, per_photo)
    if len(kept) < minimum:
        raise RuntimeError(
            f"only {len(kept)} of {len(crops)} crops score >= {task.biqa.threshold} with {task.biqa.model}; "
            f"need {minimum}: raise --per-photo or lower --minimum"
        )
    stale = {p.name for p in out.glob("*.png")} - {f"{c.image}.png" for c, _ in kept} if out.exists() else set()
    for name in stale:
        (out / name).unlink()
    write_demo_set(out, kept)
    log.info("wrote %d images (of %d candidate crops) to %s", len(kept), len(crops), out)
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluator.demo.demo_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/demo"), help="output folder (default data/demo)")
    parser.add_argument("--minimum", type=int, default=20, help="fail unless at least this many crops pass")
    parser.add_argument("--per-photo", type=int, default=4, help="at most this many crops per photo")
    parser.add_argument("--task", default=None, help="task.toml (default: the 2020 rules)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        kept = build(args.out, args.minimum, args.per_photo, args.task)
    except (RuntimeError, FileNotFoundError, KitError) as exc:  # too few crops, a missing wheel, the task or model
        print(f"demo_data: {exc}", file=sys.stderr)
        return 1
    print(f"demo set: {len(kept)} images of {WIDTH}x{HEIGHT} in {args.out}/ ({manifest_path(args.out)} lists them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
