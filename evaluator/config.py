"""Task rules: `task.toml` loaded into a typed, immutable `TaskConfig`.

Every key has a default: the 2020 task's rules, the defaults of the dataclasses below (the repository's
`task.toml` spells them out; `tests/test_config.py` checks the two agree). A task file overrides some of them.
An unknown key, a wrong type or an impossible value raises `TaskConfigError` naming the file, the key and what
is allowed; `biqa.model` must be a name of the BIQA registry (`evaluator.biqa.available()`), and
`preprocess.chain` names of the defense catalogue (`evaluator.defenses`) ending with `jpeg<jpeg.quality>`.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluator.common.errors import ConfigError
from evaluator.contracts.jury_package import PickRule



class TaskConfigError(ConfigError, ValueError):
    """A task file that cannot be used: the message names the file, the key and the allowed values."""


@dataclass(frozen=True)
class JpegRules:
    quality: int = 90
    libjpeg: str = "turbo210"
    subsampling: str = "4:2:0"


@dataclass(frozen=True)
class BiqaRules:
    model: str = "brisque"
    threshold: float = 50.0


@dataclass(frozen=True)
class GateRules:
    max_accuracy: float = 0.5


@dataclass(frozen=True)
class SelectionRules:
    images: int = 20


@dataclass(frozen=True)
class PreprocessRules:
    """[preprocess] chain: the official organizer pre-processing, a chain of `evaluator.defenses` names applied
    left to right ('jpeg90', 'resize75+jpeg90'); it must end with the task's JPEG, `jpeg<jpeg.quality>`. Missing:
    `jpeg<jpeg.quality>` (2020: 'jpeg90', JPEG-90 only)."""

    chain: str = "jpeg90"


@dataclass(frozen=True)
class TaskConfig:
    jpeg: JpegRules = field(default_factory=JpegRules)
    biqa: BiqaRules = field(default_factory=BiqaRules)
    gate: GateRules = field(default_factory=GateRules)
    selection: SelectionRules = field(default_factory=SelectionRules)
    jury: PickRule = field(default_factory=PickRule)  # [jury]: the contract's pick rule (most, least, show_original)
    preprocess: PreprocessRules = field(default_factory=PreprocessRules)
    source: str = "<defaults>"

    def to_dict(self) -> dict[str, Any]:
        """The rules as plain data (for `task.json` and cache keys)."""
        d = dataclasses.asdict(self)
        d.pop("source")
        if not d["jury"]["attention_every"]:
            del d["jury"]["attention_every"]  # off (the default): task.json and cache keys read as before checks
        return d


def _check_type(where: str, key: str, value: Any, kind: type) -> Any:
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise TaskConfigError(
            f"{where}: key '{key}' must be {kind.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def _require(where: str, key: str, ok: bool, allowed: str, value: Any) -> None:
    if not ok:
        raise TaskConfigError(f"{where}: key '{key}' = {value!r} is not allowed; allowed: {allowed}")


def _validate(cfg: TaskConfig, where: str) -> None:
    from evaluator.codec import LIBJPEG_BUILDS, SUBSAMPLINGS  # imported here: numpy and jpeglib load on first use

    j, b, g, s, y = cfg.jpeg, cfg.biqa, cfg.gate, cfg.selection, cfg.jury
    _require(where, "jpeg.quality", 1 <= j.quality <= 100, "an integer 1..100", j.quality)
    _require(where, "jpeg.libjpeg", j.libjpeg in LIBJPEG_BUILDS, ", ".join(LIBJPEG_BUILDS), j.libjpeg)
    _require(where, "jpeg.subsampling", j.subsampling in SUBSAMPLINGS, ", ".join(SUBSAMPLINGS), j.subsampling)
    from evaluator.biqa import available  # the registry (imported here: torch is not needed to read a task file)
    from evaluator.common.text import did_you_mean

    _require(where, "biqa.model", b.model in available(), ", ".join(available()) + did_you_mean(b.model, available()),
             b.model)
    _require(where, "biqa.threshold", 0 < b.threshold < 100, "a number strictly between 0 and 100", b.threshold)
    _require(where, "gate.max_accuracy", 0 < g.max_accuracy <= 1, "a number in (0, 1]", g.max_accuracy)
    _require(where, "selection.images", s.images >= 1, "an integer >= 1", s.images)
    _require(where, "jury.most", y.most >= 1, "an integer >= 1", y.most)
    _require(where, "jury.least", y.least >= 0, "an integer >= 0", y.least)
    _require(where, "jury.attention_every", y.attention_every >= 0,
             "an integer >= 0 (0: no attention checks; N: a planted check every N images)", y.attention_every)
    _validate_chain(cfg, where)


def _validate_chain(cfg: TaskConfig, where: str) -> str:
    """`preprocess.chain`: known defense names joined by '+', ending with the task's JPEG `jpeg<jpeg.quality>` (the
    scored image is that JPEG file, the one jurors see, and attacks aim through `jpeg.quality`); returns its
    canonical spelling (no spaces)."""
    from evaluator.defenses import DefenseError, parse_chain  # the catalogue (numpy, scipy: loaded on first use)

    text = cfg.preprocess.chain
    key = f"{where}: key 'preprocess.chain'"
    try:
        chain = parse_chain(text, key)
    except DefenseError as exc:
        raise TaskConfigError(str(exc)) from exc
    last = f"jpeg{cfg.jpeg.quality}"
    if chain.defenses[-1].name != last:
        raise TaskConfigError(
            f"{key} = {text!r} must end with the task's JPEG '{last}' (jpeg.quality = {cfg.jpeg.quality}): the scored "
            f"image is that JPEG file (the one jurors see) and attacks aim through jpeg.quality; write e.g. '{last}' "
            f"or 'resize75+{last}', or set jpeg.quality to the quality of the chain's last JPEG"
        )
    return chain.name


def task_from_dict(data: dict[str, Any], where: str = "<dict>") -> TaskConfig:
    """Build a `TaskConfig` from nested tables like those of `task.toml`; missing keys keep their defaults."""
    if not isinstance(data, dict):
        raise TaskConfigError(f"{where}: expected a table of sections, got {type(data).__name__}")
    sections = {f.name: f.type for f in dataclasses.fields(TaskConfig) if f.name != "source"}
    defaults = TaskConfig()
    built: dict[str, Any] = {}
    for name, table in data.items():
        if name not in sections:
            raise TaskConfigError(
                f"{where}: unknown section [{name}]; allowed sections: {', '.join(sections)}"
            )
        if not isinstance(table, dict):
            raise TaskConfigError(f"{where}: '{name}' must be a table [{name}], got {type(table).__name__}")
    for name in sections:
        current = getattr(defaults, name)
        table = data.get(name, {})
        fields = {f.name: f for f in dataclasses.fields(current)}
        values = {}
        for key, value in table.items():
            if key not in fields:
                raise TaskConfigError(
                    f"{where}: unknown key '{name}.{key}'; allowed keys in [{name}]: {', '.join(fields)}"
                )
            kind = type(getattr(current, key))
            values[key] = _check_type(where, f"{name}.{key}", value, kind)
        built[name] = dataclasses.replace(current, **values)
    if "chain" not in data.get("preprocess", {}):  # the 2020 rule: the task's JPEG only, at jpeg.quality
        built["preprocess"] = PreprocessRules(chain=f"jpeg{built['jpeg'].quality}")
    cfg = TaskConfig(**built, source=where)
    _validate(cfg, where)
    return dataclasses.replace(cfg, preprocess=PreprocessRules(chain=_validate_chain(cfg, where)))  # canonical


def load_task(path: str | Path | None = None) -> TaskConfig:
    """Load the task rules from `path` (TOML); `None` gives the 2020 defaults."""
    if path is None:
        return TaskConfig()
    p = Path(path)
    if not p.is_file():
        raise TaskConfigError(f"{p}: task file not found; pass an existing task.toml (see the repository's task.toml)")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TaskConfigError(f"{p}: not valid TOML ({exc}); fix the syntax or start from the repository's task.toml") from exc
    return task_from_dict(data, str(p))
