"""`pp-evaluate codabench-bundle`: a complete results-only Codabench competition bundle from the originals.

    bundle.zip
      competition.yaml            version 2 (Codabench's `Yaml-Structure` page): title, image, terms, pages,
                                  one phase (result submissions), one task, one leaderboard (`LEADERBOARD_COLUMNS`)
      logo.png                    `image`: a thumbnail of the first original (or --logo)
      pages/overview.md, evaluation.md, submission.md, terms.md
      scoring_program/metadata.yaml   command: python -m evaluator.outputs.codabench /app/input /app/output
      scoring_program/<weights>   only with --biqa-weights (a model that needs weights: koncept512)
      reference_data/<id>.png     the originals (the scorer's INPUT/ref), and task.toml: the rules
      Dockerfile                  the image `docker_image` names: this kit and the organizer's library versions

The leaderboard's column keys are exactly the scorer's scores.json keys (`evaluator.outputs.codabench.SCORE_KEYS`)
and each stays under 36 characters (Codabench's `Column.key` is `max_length=36`); `pp-evaluate codabench-check` checks
both, and every
file the YAML names, before anyone uploads the bundle. The zip is written atomically (a temporary sibling, then
`os.replace`); its member names are fixed, or the originals' `<id>.png` names checked by `safe_member_name`.
"""

from __future__ import annotations

import argparse
import io
import math
import platform
import re
import sys
import zipfile
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import yaml

from evaluator.common.atomic import atomic_open
from evaluator.common.errors import ConfigError, EXIT_OK, KitError, ModelError, exit_code_help
from evaluator.config import TaskConfig, load_task
from evaluator.contracts.run_folder import REQUIRED_KEYS, RUN_JSON, Limits

COMPETITION_YAML = "competition.yaml"
LOGO = "logo.png"
PAGES_DIR = "pages"
SCORING_DIR = "scoring_program"
REFERENCE_DIR = "reference_data"
METADATA_YAML = "metadata.yaml"
TASK_TOML = "task.toml"
DOCKERFILE = "Dockerfile"
LEADERBOARD_KEY = "main"
SCORER_MODULE = "evaluator.outputs.codabench"
SCORING_COMMAND = f"python -m {SCORER_MODULE} /app/input /app/output"
DEFAULT_TITLE = "Pixel Privacy: Quality Camouflage for Social Images"
DEFAULT_IMAGE = "pixel-privacy-kit:latest"
#: Codabench's `leaderboards.models.Column`: `key` and `title` are CharField(max_length=36); a Leaderboard's title 64,
#: its key 36. A column key must stay UNDER 36 characters (at most `MAX_COLUMN_KEY` = 35), one short of the field.
CODABENCH_COLUMN_KEY_FIELD = 36
MAX_COLUMN_KEY, MAX_COLUMN_TITLE, MAX_LEADERBOARD_TITLE, MAX_LEADERBOARD_KEY = 35, 36, 64, 36
#: seconds per scoring run: Codabench's default queue gives at most 600 whatever the phase asks (own queue: more)
EXECUTION_TIME_LIMIT_S = 600
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed member times: the same inputs give the same members
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Column:
    """One leaderboard column: `key` (a scores.json key), `title`, `sorting` (asc: smaller is better), decimals."""

    key: str
    title: str
    sorting: str
    precision: int = 3


def leaderboard_columns(task: TaskConfig) -> tuple[Column, ...]:
    """The leaderboard, in index order. Codabench ranks by the first column (`primary_index` 0: accuracy after
    JPEG, lower is stronger camouflage) and breaks ties by the next ones in order (qualified, then fidelity)."""
    return (
        Column("accuracy", "Accuracy after JPEG", "asc"),
        Column("qualified", f"Qualified (accuracy < {task.gate.max_accuracy:g})", "desc", 0),
        Column("ssim", "SSIM", "desc", 4),
        Column("psnr", "PSNR (dB)", "desc", 2),
        Column("mean_score", "Mean BIQA score", "asc", 2),
        Column("accuracy_reduction", "Accuracy reduction", "desc"),
        Column("abs_gain", "MSU absolute gain", "desc", 4),
        Column("rel_gain", "MSU relative gain", "desc", 4),
        Column("robustness_score", "MSU robustness (lower=stronger)", "asc", 4),
        Column("wasserstein_score", "MSU Wasserstein score", "desc", 4),
        Column("energy_score", "MSU energy score", "desc", 4),
    )


class BundleBuildError(ConfigError, ValueError):
    """The bundle cannot be written as asked (the message names the file or option and the fix)."""


def safe_member_name(name: str) -> bool:
    """A zip member name Codabench and every unzip tool extract where it says: relative, '/'-separated parts of
    `[A-Za-z0-9._-]` that start with a letter or digit (no '..', no absolute path, no backslash, no control)."""
    return bool(name) and all(_SAFE_NAME.match(part) for part in name.split("/"))


# -- pages ---------------------------------------------------------------------------------------------------------
def _sizes_line(sizes: Counter) -> str:
    return ", ".join(f"{w}x{h} ({n} image{'s' if n != 1 else ''})" for (w, h), n in sorted(sizes.items()))


def _overview(title: str, n: int, task: TaskConfig) -> str:
    return f"""# {title}

The MediaEval Pixel Privacy task "Quality Camouflage for Social Images" (Liu et al., MediaEval 2020): change each
photo so that a blind image quality model (BIQA) calls it low quality, while people still find it appealing.

- The test set: {n} high-quality photos (the BIQA `{task.biqa.model}` scores them at or above {task.biqa.threshold:g}
  on a 0..100 scale). Download them from this competition's *Files* tab (the phase's public data: the photos and
  `{TASK_TOML}`, the rules), or use the kit's demo set to practise.
- You submit a **run**: one changed version of every photo, plus `run.json` (see *Submission format*).
- The organizer JPEG-compresses every submitted image (quality {task.jpeg.quality}), scores it with the BIQA, and
  computes the share of images the BIQA still calls high quality (accuracy). A run **qualifies** when its accuracy
  is below {task.gate.max_accuracy:g} (see *Evaluation*).
- The leaderboard ranks runs by accuracy (lower is better), then by fidelity (SSIM, PSNR). The final ranking of
  the qualified runs is a jury's: people pick the most and least appealing versions of {task.selection.images}
  selected photos.

The attacks are white-box: the Pixel Privacy kit (`pp-attack`) imports the organizer's BIQA models and JPEG
codec, so what you attack is exactly what scores you; `pp-evaluate` scores a run exactly as this competition does.
"""


def _evaluation(task: TaskConfig, task_text: str, columns: tuple[Column, ...], n: int, sizes: Counter) -> str:
    rows = "\n".join(f"| `{c.key}` | {c.title} | {'lower' if c.sorting == 'asc' else 'higher'} is better |"
                     for c in columns)
    return f"""# Evaluation

Every submitted image goes through exactly these steps (the kit's `python -m {SCORER_MODULE}`, the scoring
program of this competition; the rules below are `reference_data/{TASK_TOML}`):

1. **Validation.** The run must hold one image per original (the {n} ids listed in *Submission format*), each of
   its original's width and height, 8-bit RGB; otherwise the submission fails with every problem listed.
2. **JPEG.** The organizer compresses each image with libjpeg `{task.jpeg.libjpeg}` at quality
   {task.jpeg.quality}, chroma subsampling {task.jpeg.subsampling}, and decodes it again.
3. **BIQA.** The model `{task.biqa.model}` scores the decoded image on 0..100 (higher = better quality). A score
   >= {task.biqa.threshold:g} means high quality.
4. **Accuracy** = the share of images still scored >= {task.biqa.threshold:g} after JPEG. An original scored
   below the threshold is left out of every number. The run **qualifies** iff accuracy < {task.gate.max_accuracy:g}.
5. **Fidelity.** PSNR and SSIM compare the submitted image (before JPEG) with its original; a run's value is the
   mean over its images (PSNR is infinite when an image is unchanged: that cell stays empty on the leaderboard).
6. **MSU robustness scores** on s = score_clean/100 (original, no JPEG) and p = score/100 (after JPEG):
   `abs_gain = mean(s - p)`, `rel_gain = mean((s - p) / (s + 1))`,
   `robustness_score = mean(log10(max(1 - s, s) / max(|s - p|, 1e-6)))` (falls as the camouflage gets stronger),
   `wasserstein_score = W1(s, p) * sign(mean s - mean p)`, `energy_score = E(s, p) * sign(mean s - mean p)`.

## Leaderboard

Ranked by the first column, ties broken by the next ones in order.

| key | column | order |
|---|---|---|
{rows}

## The jury

After the submission deadline, the {task.selection.images} images whose post-JPEG scores vary most across the
scored runs go to a jury. Jurors see one version from every qualified run per image (letters shuffled, never a
run name{", and the original" if task.jury.show_original else ""}) and pick the {task.jury.most} most and
{task.jury.least} least appealing ones; runs are ranked by their "most appealing" picks, ties by fewer "least".

## Limits

- {n} images; sizes (width x height): {_sizes_line(sizes)}.
- One submission is one run. Per file at most {Limits().max_file_bytes // 1024**2} MiB, at most
  {Limits().max_pixels:,} pixels per image, {Limits().max_members} files and {Limits().max_total_bytes // 1024**3} GiB
  in all.

## The rules file (`{TASK_TOML}`)

```toml
{task_text.rstrip()}
```
"""


def _submission(ids: list[str], task: TaskConfig, sizes: dict[str, tuple[int, int]]) -> str:
    listing = "\n".join(f"| `{i}` | {sizes[i][0]}x{sizes[i][1]} |" for i in ids)
    keys = ", ".join(f"`{k}`" for k in REQUIRED_KEYS)
    return f"""# Submission format

Upload **one zip per run**. The zip holds, at its root (or inside one folder):

- for every original `<id>.png` exactly one `<id>.png` or `<id>.jpg` (lowercase extension) of the same width and
  height, 8-bit RGB: {len(ids)} images;
- `{RUN_JSON}`: one strict JSON object (UTF-8, no NaN or Infinity, no duplicate key) with at least the keys {keys}
  (`params` an object, `created` an ISO 8601 date-time such as `2026-01-31T12:00:00Z`, `seed` an integer or null);
- nothing else (`.DS_Store` and `__MACOSX/` are ignored).

The kit writes exactly this:

```bash
pp-attack ifgsm --originals originals/ --out runs/myteam-ifgsm --team myteam
cd runs/myteam-ifgsm && zip -r ../myteam-ifgsm.zip . && cd -
pp-evaluate --originals originals/ --runs runs --out results   # self-check: the numbers this competition computes
```

A submission that breaks the contract fails with every problem listed in its scoring log (the file, what is wrong,
what to do). The detailed results of a scored submission show the per-image scores and a gallery of originals next
to the scored (JPEG {task.jpeg.quality}) images.

## The images

| id | width x height |
|---|---|
{listing}
"""


def _terms(title: str) -> str:
    return f"""# Terms of participation ({title})

- The test photos are provided for this benchmark only; do not redistribute them or use them for anything else.
- Submit only images you produced from the provided photos with your own method. One account per team.
- Submitted images may be shown to jurors (without team or run names) and, after the competition, in the
  task's overview paper and its figures.
- The organizers may disqualify runs that break the submission contract, the rules on the *Evaluation* page, or
  these terms. Scores on the leaderboard are computed automatically; the final ranking of qualified runs is the
  jury's.
- The organizers may edit these terms before the competition opens; what is shown here when you register applies.
"""


def _dockerfile() -> str:
    import importlib.metadata

    from evaluator.common.versions import LIBRARIES, library_versions

    versions = library_versions()
    torch_version = versions.get("torch", "not installed").split("+")[0]
    pins = " ".join(f"'{name}=={versions[name]}'" for name in LIBRARIES
                    if name != "torch" and versions.get(name, "not installed") != "not installed")
    try:
        importlib.metadata.version("pyyaml")
        pins += f" 'pyyaml=={importlib.metadata.version('pyyaml')}'"
    except importlib.metadata.PackageNotFoundError:
        pass
    py = ".".join(platform.python_version_tuple()[:2])
    torch_line = (f"RUN pip install 'torch=={torch_version}' --index-url https://download.pytorch.org/whl/cpu\n"
                  if torch_version != "not installed" else "")
    return f"""# The image this competition's scoring program runs in (competition.yaml: docker_image): the Pixel Privacy
# kit with the library versions the organizer used when building the bundle, so Codabench computes the same numbers as
# the organizer's pp-evaluate. Build it from a checkout of the kit (the build context), then push it where
# Codabench can pull it:
#   docker build -f Dockerfile -t IMAGE /path/to/pixel-privacy-kit && docker push IMAGE
FROM python:{py}-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# a C/C++ compiler: libsvm-official (a dependency of brisque) is published as a source distribution only, and the
# slim image has no compiler, so without it `pip install` fails while building that package
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ && rm -rf /var/lib/apt/lists/*
{torch_line}RUN pip install {pins}
COPY pyproject.toml README.md /opt/pixel-privacy-kit/
COPY evaluator /opt/pixel-privacy-kit/evaluator
COPY submission /opt/pixel-privacy-kit/submission
COPY jury_app /opt/pixel-privacy-kit/jury_app
RUN pip install /opt/pixel-privacy-kit && python -m {SCORER_MODULE} --help > /dev/null
WORKDIR /app/program
"""


def _logo(path: Path) -> bytes:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((256, 256))
        buf = io.BytesIO()
        im.save(buf, format="PNG")
    return buf.getvalue()


# -- the YAML --------------------------------------------------------------------------------------------------------
def competition_yaml(title: str, image: str, task: TaskConfig, n_images: int, start: str) -> dict:
    """competition.yaml's content (Codabench v2)."""
    columns = [{"title": c.title, "key": c.key, "index": i, "sorting": c.sorting, "precision": c.precision}
               for i, c in enumerate(leaderboard_columns(task))]
    return {
        "version": 2,
        "title": title,
        "description": (f"Quality camouflage: make the BIQA '{task.biqa.model}' call {n_images} photos low quality "
                        f"after JPEG-{task.jpeg.quality} while people still find them appealing."),
        "image": LOGO,
        "terms": f"{PAGES_DIR}/terms.md",
        "docker_image": image,
        "registration_auto_approve": False,
        "enable_detailed_results": True,
        "show_detailed_results_in_submission_panel": True,
        # a participant sees the gallery of their own run only: the terms promise submitted images go to jurors
        # without team names and into the paper after the competition, not to the other teams during it
        "show_detailed_results_in_leaderboard": False,
        "make_programs_available": True,
        "make_input_data_available": False,
        "pages": [
            {"title": "Overview", "file": f"{PAGES_DIR}/overview.md"},
            {"title": "Evaluation", "file": f"{PAGES_DIR}/evaluation.md"},
            {"title": "Submission format", "file": f"{PAGES_DIR}/submission.md"},
            {"title": "Terms", "file": f"{PAGES_DIR}/terms.md"},
        ],
        "phases": [{
            "index": 0,
            "name": "Test",
            "description": "Submit one run (a zip of the changed images and run.json) per submission.",
            "start": start,
            "max_submissions_per_day": 5,
            "max_submissions": 100,
            "execution_time_limit": EXECUTION_TIME_LIMIT_S,
            "public_data": REFERENCE_DIR,  # participants download the originals they attack (the Files tab)
            "tasks": [0],
        }],
        "tasks": [{
            "index": 0,
            "name": "Quality camouflage",
            "description": (f"Score a run: JPEG-{task.jpeg.quality} ({task.jpeg.libjpeg}, {task.jpeg.subsampling}), "
                            f"BIQA {task.biqa.model}, threshold {task.biqa.threshold:g}, gate "
                            f"{task.gate.max_accuracy:g}."),
            "scoring_program": SCORING_DIR,  # no ingestion_program: Codabench takes result submissions only
            "reference_data": REFERENCE_DIR,
        }],
        "leaderboards": [{
            "title": "Results",
            "key": LEADERBOARD_KEY,
            "submission_rule": "Force_Last",
            "columns": columns,
        }],
    }


def _dump(data: dict) -> bytes:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110).encode("utf-8")


@dataclass(frozen=True)
class BundleSummary:
    path: Path
    n_images: int
    members: tuple[str, ...]
    command: str


def build_bundle(originals: Path, out: Path, *, task_path: Path | None = None, title: str = DEFAULT_TITLE,
                 image: str = DEFAULT_IMAGE, biqa_weights: Path | None = None, logo: Path | None = None,
                 start: str | None = None) -> BundleSummary:
    """Write the bundle zip `out` (atomically) for the originals in `originals` and the rules in `task_path`."""
    from evaluator.biqa import spec
    from evaluator.intake.runs import index_originals

    originals = Path(originals)
    task = load_task(task_path)
    task_text = Path(task_path).read_text(encoding="utf-8") if task_path else _default_task_text(task)
    if not title.strip() or len(title) > 200:
        raise BundleBuildError(f"--title {title!r}: must be 1..200 characters; pass a shorter, non-empty title")
    if not image.strip() or any(c.isspace() for c in image):
        raise BundleBuildError(f"--image {image!r}: must be a Docker image name without spaces, e.g. "
                               "registry.example.org/pixel-privacy:1.0")
    needs = spec(task.biqa.model).needs_weights
    if needs and biqa_weights is None:
        raise ModelError(f"{task.source}: biqa.model = '{task.biqa.model}' needs a weights file, or the bundle's "
                         "scorer refuses every submission; pass --biqa-weights PATH (it goes into scoring_program/)")
    if biqa_weights is not None and not Path(biqa_weights).is_file():
        raise ModelError(f"{biqa_weights}: weights file not found; pass --biqa-weights an existing file")
    headers = index_originals(originals)
    ids = sorted(headers)
    for i in ids:
        if not safe_member_name(f"{i}.png"):
            raise BundleBuildError(f"{originals / (i + '.png')}: the image id {i!r} is not a safe zip member name "
                                   "(letters, digits, '.', '_', '-', starting with a letter or digit); rename it")
    sizes = {i: (headers[i].width, headers[i].height) for i in ids}
    command = SCORING_COMMAND
    weights_name = None
    if biqa_weights is not None:
        weights_name = Path(biqa_weights).name
        if not safe_member_name(weights_name) or weights_name == METADATA_YAML:
            weights_name = "biqa_weights.pth"
        command += f" --biqa-weights /app/program/{weights_name}"
    start = start or datetime.now(timezone.utc).strftime("%Y-%m-%d 00:00:00")
    columns = leaderboard_columns(task)
    text_members: dict[str, bytes] = {
        COMPETITION_YAML: _dump(competition_yaml(title, image, task, len(ids), start)),
        f"{PAGES_DIR}/overview.md": _overview(title, len(ids), task).encode(),
        f"{PAGES_DIR}/evaluation.md": _evaluation(task, task_text, columns, len(ids), Counter(sizes.values())).encode(),
        f"{PAGES_DIR}/submission.md": _submission(ids, task, sizes).encode(),
        f"{PAGES_DIR}/terms.md": _terms(title).encode(),
        f"{SCORING_DIR}/{METADATA_YAML}": _dump({"command": command}),
        f"{REFERENCE_DIR}/{TASK_TOML}": task_text.encode(),
        DOCKERFILE: _dockerfile().encode(),
        LOGO: _logo(Path(logo) if logo else originals / f"{ids[0]}.png"),
    }
    file_members = {f"{REFERENCE_DIR}/{i}.png": originals / f"{i}.png" for i in ids}
    if weights_name is not None:
        file_members[f"{SCORING_DIR}/{weights_name}"] = Path(biqa_weights)
    out = Path(out)
    if out.is_dir():
        raise BundleBuildError(f"{out}: is a folder; pass --out a .zip file path")
    if not out.parent.is_dir():
        raise BundleBuildError(f"{out.parent}: folder not found; create it or pass another --out")
    names = sorted([*text_members, *file_members])
    try:
        with atomic_open(out, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in names:
                info = zipfile.ZipInfo(name, _ZIP_TIME)
                info.external_attr = 0o100644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                if name in text_members:
                    zf.writestr(info, text_members[name])
                else:
                    with open(file_members[name], "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                        while chunk := src.read(1 << 20):
                            dst.write(chunk)
    except OSError as exc:
        raise BundleBuildError(f"{out}: cannot be written ({exc}); pass a writable --out") from exc
    return BundleSummary(out, len(ids), tuple(names), command)


def _default_task_text(task: TaskConfig) -> str:
    """The 2020 defaults as a task.toml (every key spelled out)."""
    lines = ["# Task rules (the kit's defaults: MediaEval Pixel Privacy 2020)."]
    for section, values in task.to_dict().items():
        lines.append(f"\n[{section}]")
        for key, value in values.items():
            if isinstance(value, bool):
                shown = "true" if value else "false"
            elif isinstance(value, str):
                shown = f'"{value}"'
            elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
                shown = str(int(value))
            else:
                shown = repr(value)
            lines.append(f"{key} = {shown}")
    return "\n".join(lines) + "\n"


# -- the command -----------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pp-evaluate codabench-bundle",
        description="Write a complete results-only Codabench competition bundle (competition.yaml version 2, "
        "scoring program, reference data, pages, Dockerfile) from the originals and the task rules; check it "
        "with `pp-evaluate codabench-check BUNDLE` before uploading it.",
        epilog=exit_code_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--originals", required=True, type=Path, help="folder of the original <id>.png images")
    parser.add_argument("--out", required=True, type=Path, help="the bundle zip to write (replaced atomically)")
    parser.add_argument("--task", type=Path, default=None, help="task rules (task.toml); default: the 2020 rules")
    parser.add_argument("--title", default=DEFAULT_TITLE, help=f"competition title (default: {DEFAULT_TITLE!r})")
    parser.add_argument("--image", default=DEFAULT_IMAGE,
                        help="Docker image with the kit installed, built from the bundle's Dockerfile and pushed "
                             f"where Codabench can pull it, with your account or registry, e.g. "
                             f"docker.io/you/pixel-privacy:1.0 (competition.yaml docker_image; the default "
                             f"{DEFAULT_IMAGE} is a placeholder that codabench-check refuses)")
    parser.add_argument("--biqa-weights", type=Path, default=None,
                        help="weights file of a model that needs one (koncept512); copied into scoring_program/")
    parser.add_argument("--logo", type=Path, default=None, help="competition logo (default: the first original)")
    parser.add_argument("--start", default=None, help="phase start, 'YYYY-MM-DD HH:MM:SS' UTC (default: today)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.start is not None:
            try:
                datetime.strptime(args.start, "%Y-%m-%d %H:%M:%S")
            except ValueError:
                raise BundleBuildError(f"--start {args.start!r}: expected 'YYYY-MM-DD HH:MM:SS'") from None
        summary = build_bundle(args.originals, args.out, task_path=args.task, title=args.title, image=args.image,
                               biqa_weights=args.biqa_weights, logo=args.logo, start=args.start)
    except KitError as exc:
        print(f"pp-evaluate codabench-bundle: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    print(f"wrote {summary.path}: {summary.n_images} originals, {len(summary.members)} files; scoring command: "
          f"{summary.command}")
    print(f"next: pp-evaluate codabench-check {summary.path} --submission RUN.zip; build and push the image "
          f"named in competition.yaml from the bundle's {DOCKERFILE}; upload the zip on Codabench")
    return EXIT_OK
