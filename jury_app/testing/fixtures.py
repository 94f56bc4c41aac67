"""A small, real jury package for tests, benchmarks and trying the app without running `pp-evaluate`."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
from PIL import Image

from evaluator.contracts.jury_package import (PickRule, attention_check_jpeg, build_manifest, make_folders,
                                              original_path, write_candidate, write_key, write_manifest)


def _demo_rgb(image_index: int, run_index: int, size: int) -> np.ndarray:
    """A smooth colour field per image, with a run-specific stripe pattern so versions differ visibly."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    hue = (image_index * 0.173) % 1.0
    r = 0.5 + 0.5 * np.sin(2 * np.pi * (x + hue))
    g = 0.5 + 0.5 * np.sin(2 * np.pi * (y + 2 * hue))
    b = 0.5 + 0.5 * np.cos(2 * np.pi * (x * y + hue))
    rgb = np.stack([r, g, b], axis=-1)
    stripes = 0.08 * np.sin(2 * np.pi * (run_index + 1) * 3 * x)[..., None]
    return np.clip((rgb + stripes) * 255.0, 0, 255).astype(np.uint8)


def _jpeg_bytes(rgb: np.ndarray, comment: str | None) -> bytes:
    buf = io.BytesIO()
    kwargs = {"quality": 90}
    if comment is not None:
        kwargs["comment"] = comment.encode()
    Image.fromarray(rgb).save(buf, format="JPEG", **kwargs)
    return buf.getvalue()


def make_demo_package(
    directory: str | Path,
    runs: list[str] | tuple[str, ...],
    images: int | list[str] | tuple[str, ...],
    *,
    most: int = 3,
    least: int = 2,
    show_original: bool = False,
    size: int = 48,
    seed: int = 0,
    leak_run_in_metadata: bool = False,
    attention_every: int = 0,
) -> Path:
    """Write a jury package (format in `evaluator.contracts.jury_package`) with one candidate per (run, image).

    `images` is a count (ids img00, img01, ...) or explicit ids. Candidate ids are random hex drawn from
    `seed`, never derived from run names. `leak_run_in_metadata=True` writes the run name into each JPEG's
    comment segment, so tests can check the app strips it before serving. `attention_every=N` plants an
    attention check (`attention_check_jpeg` of the image's original) in every N-th image, as pp-evaluate does.
    """
    root = Path(directory)
    make_folders(root, show_original)
    image_ids = [f"img{i:02d}" for i in range(images)] if isinstance(images, int) else list(images)
    rng = random.Random(seed)
    listing: list[tuple[str, list[str]]] = []
    key: dict[str, dict[str, str]] = {}
    checks: dict[str, str] = {}
    for i, image_id in enumerate(image_ids):
        cids = []
        for r, run in enumerate(runs):
            cid = f"{rng.getrandbits(64):016x}"
            write_candidate(root, cid, _jpeg_bytes(_demo_rgb(i, r, size), run if leak_run_in_metadata else None))
            cids.append(cid)
            key[cid] = {"run": run, "image": image_id}
        if attention_every and (i + 1) % attention_every == 0:
            cid = f"{rng.getrandbits(64):016x}"
            write_candidate(root, cid, attention_check_jpeg(_demo_rgb(i, -1, size)))
            cids.append(cid)
            checks[cid] = image_id
        rng.shuffle(cids)
        if show_original:
            Image.fromarray(_demo_rgb(i, -1, size)).save(original_path(root, image_id), format="PNG")
        listing.append((image_id, cids))
    write_manifest(root, build_manifest(PickRule(most=most, least=least, show_original=show_original,
                                                 attention_every=attention_every), listing))
    write_key(root, key, checks)
    return root
