"""Writing the blinded jury package (`jury/`, the contract `evaluator/contracts/jury_package.py`): selected
images x qualified runs.

- Candidate ids come from `secrets.token_urlsafe` (16 characters, 96 random bits): never derived from a run
  name; an id that happens to contain the name of a run in the package (`evaluator.contracts.jury_package.run_name_in`, what
  `pp-jury serve` checks: the qualified runs, not the invalid or unqualified ones) is drawn again, at most
  `MAX_ID_DRAWS` times (then JuryExportError).
- `images/<id>.jpg` are the exact JPEG bytes that were scored (same sha256 as at scoring time), which libjpeg
  writes with a JFIF APP0 header only; the contract's `check_jpeg_metadata_free` refuses EXIF/XMP/ICC
  (APP1..APP15) and COM.
- Candidates are listed, and their files written, in the order of their random ids, and every file gets the
  same modification time, so neither the list nor the files' order or times follow the runs.
- With `picks.attention_every` = N > 0, every N-th image gets one planted attention check more
  (`evaluator.contracts.jury_package.attention_check_jpeg` of its original), drawn, checked, written and listed
  exactly like the other candidates; only key.json's "checks" names it.
- With fewer candidates than `most + least`, the picks shrink (`PickRule.for_candidates`) and the manifest says
  so (`PickRule.shrink_note`).
- Before the manifest is written, `evaluator.contracts.jury_package.blinding_problems` (the check `pp-jury serve` makes) runs
  on it with the package's run names; after, `evaluator.contracts.jury_package.check_servable` (all of `pp-jury serve`'s checks) runs
  on the written folder. Either failing raises JuryExportError: `pp-evaluate` never leaves a package that
  `pp-jury serve` refuses (an empty one, written when no run qualified, is the exception: nothing to judge).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluator.common.errors import JuryPackageError
from evaluator.common.imageio import save_png
from evaluator.contracts.jury_package import (MANIFEST_NAME, MIN_RUN_NAME_SEARCH, PackageError, PickRule,
                                              attention_check_jpeg, blinding_problems, build_manifest, check_jpeg_metadata_free,
                                              check_servable, make_folders, original_path, write_candidate,
                                              write_key, write_manifest)

MAX_ID_DRAWS = 1000  # random ids drawn for one candidate before giving up (new_candidate_id)


class JuryExportError(JuryPackageError, RuntimeError):
    """The jury package cannot be written faithfully (the message says which image and why)."""


def _names_in(cid: str, names: frozenset[str]) -> list[str]:
    """The run names (lower-case, MIN_RUN_NAME_SEARCH+ characters) that occur in `cid`, case-insensitively: the
    rule of `run_name_in`, found through the id's substrings (a 16-character id has 105 of 3+ characters), so its cost does not
    grow with the number of runs."""
    low = cid.lower()
    return [low[i:j] for i in range(len(low)) for j in range(i + MIN_RUN_NAME_SEARCH, len(low) + 1)
            if low[i:j] in names]


def new_candidate_id(taken: set[str], run_names: Sequence[str] | frozenset[str]) -> str:
    """A fresh random id: not in `taken`, and containing none of `run_names` (`run_name_in`, the server's rule).

    `run_names` are the runs in the package (the qualified ones: the runs of key.json, which `pp-jury serve`
    checks). Gives up after MAX_ID_DRAWS draws with a JuryExportError naming the run names that kept occurring.
    A 3-letter name occurs in a random id with probability about 14 x (2/64)**3 ~ 0.0004 (14 places, 2 of the
    64 id characters per letter), so only thousands of short names can exhaust the draws."""
    names = run_names if isinstance(run_names, frozenset) else _search_names(run_names)
    hits: dict[str, int] = {}
    for _ in range(MAX_ID_DRAWS):
        cid = secrets.token_urlsafe(12)
        found = _names_in(cid, names)
        if cid not in taken and not found:
            taken.add(cid)
            return cid
        for name in found:
            hits[name] = hits.get(name, 0) + 1
    worst = sorted(hits, key=lambda n: (-hits[n], n))[:5]
    raise JuryExportError(
        f"no random candidate id free of every run name in {MAX_ID_DRAWS} draws: the qualified runs' names "
        f"occur in the ids again and again (most often: {', '.join(repr(n) for n in worst) or 'none'}; "
        f"{len(names)} names of {MIN_RUN_NAME_SEARCH}+ characters). Rename or remove the runs with the shortest "
        "names and evaluate again.")


def _search_names(run_names: Sequence[str]) -> frozenset[str]:
    return frozenset(r.lower() for r in run_names if len(r) >= MIN_RUN_NAME_SEARCH)


@dataclass(frozen=True)
class JuryItem:
    """One candidate to export: the run and image it belongs to and its scored JPEG bytes' sha256."""

    run: str
    image: str
    jpeg_sha256: str


def write_jury_package(
    directory: Path,
    images: Sequence[str],
    items: Sequence[JuryItem],
    jpeg_of: Callable[[JuryItem], bytes],
    picks: PickRule,
    note: str | None,
    original_of: Callable[[str], np.ndarray],
    run_names: Sequence[str],
) -> dict[str, dict[str, str]]:
    """Write manifest.json, key.json, images/ (and originals/ when shown) into `directory`; return the key.

    `images` in the order jurors see them; `jpeg_of(item)` returns the JPEG bytes, checked against
    `item.jpeg_sha256`; `picks` the rule jurors follow (already shrunk to the candidates) and `note` why it was
    shrunk, if it was; `original_of(image)` the original's pixels (only called when `picks.show_original`, or
    for the images that get an attention check); the returned key holds the runs' candidates, not the checks;
    `run_names` the runs in the package (the qualified ones), which no candidate id may contain.
    """
    names = _search_names(run_names)
    show_original = picks.show_original
    directory.mkdir(parents=True, exist_ok=True)
    make_folders(directory, show_original)
    by_image: dict[str, list[JuryItem]] = {image: [] for image in images}
    for item in items:
        by_image[item.image].append(item)
    taken: set[str] = set()
    key: dict[str, dict[str, str]] = {}
    checks: dict[str, str] = {}
    listing: list[tuple[str, list[str]]] = []
    written: list[Path] = []
    every = picks.attention_every
    for index, image in enumerate(images):
        files: dict[str, bytes] = {}
        for item in by_image[image]:
            data = jpeg_of(item)
            digest = hashlib.sha256(data).hexdigest()
            if digest != item.jpeg_sha256:
                raise JuryExportError(
                    f"image {image!r}: re-encoding gave JPEG bytes (sha256 {digest[:12]}) that differ from the "
                    f"scored ones ({item.jpeg_sha256[:12]}); the codec is not deterministic here, so the jury "
                    "would not see what was scored. Delete OUT/.cache and rerun."
                )
            try:
                check_jpeg_metadata_free(data, f"jury image for {image!r}")
            except PackageError as exc:
                raise JuryExportError(str(exc)) from None
            cid = new_candidate_id(taken, names)
            files[cid] = data
            key[cid] = {"run": item.run, "image": image}
        if every and files and (index + 1) % every == 0:
            data = attention_check_jpeg(original_of(image))
            check_jpeg_metadata_free(data, f"attention check for {image!r}")
            cid = new_candidate_id(taken, names)
            files[cid] = data
            checks[cid] = image
        for cid in sorted(files):  # written and listed in random order, not in the runs' order
            written.append(write_candidate(directory, cid, files[cid]))
        if show_original:
            save_png(original_path(directory, image), original_of(image))
        listing.append((image, sorted(files)))
    manifest = build_manifest(picks, listing, note)
    problems = blinding_problems(manifest, run_names)
    if problems:  # cannot happen with ids from new_candidate_id; checked so that serve can never refuse
        raise JuryExportError(f"{directory / MANIFEST_NAME}: {problems[0]}; pp-jury serve would refuse this package. "
                              "This is a bug of the kit: please report it.")
    stamp = time.time_ns()
    for path in written:
        os.utime(path, ns=(stamp, stamp))
    write_manifest(directory, manifest)
    write_key(directory, key, checks)
    if listing:
        try:
            check_servable(directory)
        except PackageError as exc:
            raise JuryExportError(f"the jury package would be refused by `pp-jury serve`: {exc}") from exc
    return key
