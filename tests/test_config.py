"""Task rules: defaults, overrides, and every kind of bad task file."""

from pathlib import Path

import pytest

from evaluator.config import TaskConfig, TaskConfigError, load_task

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "task.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_repository_task_file_equals_defaults():
    cfg = load_task(REPO / "task.toml")
    assert cfg.to_dict() == TaskConfig().to_dict()
    assert (cfg.jpeg.quality, cfg.jpeg.libjpeg, cfg.jpeg.subsampling) == (90, "turbo210", "4:2:0")
    assert (cfg.biqa.model, cfg.biqa.threshold, cfg.gate.max_accuracy) == ("brisque", 50.0, 0.5)
    assert (cfg.selection.images, cfg.jury.most, cfg.jury.least, cfg.jury.show_original) == (20, 3, 2, False)


def test_partial_file_overrides_only_its_keys(tmp_path):
    cfg = load_task(write(tmp_path, "[jpeg]\nquality = 75\n[biqa]\nthreshold = 60.5\n"))
    assert cfg.jpeg.quality == 75 and cfg.biqa.threshold == 60.5
    assert cfg.jpeg.libjpeg == "turbo210" and cfg.selection.images == 20


def test_int_threshold_becomes_float(tmp_path):
    assert isinstance(load_task(write(tmp_path, "[biqa]\nthreshold = 40\n")).biqa.threshold, float)


def test_config_is_immutable():
    cfg = TaskConfig()
    with pytest.raises(Exception):
        cfg.jpeg.quality = 50  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("[jpeg]\nquality = 0\n", ["jpeg.quality", "1..100"]),
        ("[jpeg]\nquality = 101\n", ["jpeg.quality", "1..100"]),
        ("[jpeg]\nquality = 90.5\n", ["jpeg.quality", "must be int"]),
        ("[jpeg]\nquality = true\n", ["jpeg.quality", "must be int"]),
        ("[jpeg]\nlibjpeg = \"turbo999\"\n", ["jpeg.libjpeg", "turbo210", "6b"]),
        ("[jpeg]\nsubsampling = \"4:1:1\"\n", ["jpeg.subsampling", "4:2:0"]),
        ("[biqa]\nthreshold = 150\n", ["biqa.threshold", "between 0 and 100"]),
        ("[biqa]\nthreshold = \"50\"\n", ["biqa.threshold", "must be float"]),
        ("[biqa]\nmodel = \"vgg\"\n", ["biqa.model", "brisque", "koncept512"]),
        ("[gate]\nmax_accuracy = 1.5\n", ["gate.max_accuracy", "(0, 1]"]),
        ("[selection]\nimages = 0\n", ["selection.images", ">= 1"]),
        ("[jury]\nmost = 0\n", ["jury.most", ">= 1"]),
        ("[jury]\nleast = -1\n", ["jury.least", ">= 0"]),
        ("[jury]\nshow_original = 1\n", ["jury.show_original", "must be bool"]),
        ("[jpeg]\nqualty = 90\n", ["unknown key 'jpeg.qualty'", "quality"]),
        ("[jpge]\nquality = 90\n", ["unknown section [jpge]", "jpeg"]),
        ("jpeg = 90\n", ["'jpeg' must be a table"]),
        ("[jpeg\nquality = 90\n", ["not valid TOML"]),
    ],
)
def test_bad_task_file_names_key_and_allowed_values(tmp_path, text, fragments):
    path = write(tmp_path, text)
    with pytest.raises(TaskConfigError) as err:
        load_task(path)
    message = str(err.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_missing_task_file(tmp_path):
    with pytest.raises(TaskConfigError, match="task file not found"):
        load_task(tmp_path / "nope.toml")


def test_no_path_gives_defaults():
    assert load_task(None) == TaskConfig()
