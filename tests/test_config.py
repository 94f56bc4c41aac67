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
        ("[preprocess]\nchain = \"jpg90\"\n", ["preprocess.chain", "unknown defense 'jpg90'", "did you mean 'jpeg90'",
                                              "known defenses: none, jpeg95, jpeg90", "social", "jpeg<Q>"]),
        ("[preprocess]\nchain = \"resize75+\"\n", ["preprocess.chain", "empty part"]),
        ("[preprocess]\nchain = \"\"\n", ["preprocess.chain", "is empty"]),
        ("[preprocess]\nchain = 90\n", ["preprocess.chain", "must be str"]),
        ("[preprocess]\nchain = \"resize75\"\n", ["preprocess.chain", "must end with the task's JPEG 'jpeg90'",
                                                  "resize75+jpeg90"]),
        ("[preprocess]\nchain = \"none\"\n", ["preprocess.chain", "must end with the task's JPEG 'jpeg90'"]),
        ("[preprocess]\nchain = \"jpeg75\"\n", ["preprocess.chain", "'jpeg90' (jpeg.quality = 90)"]),
        ("[jpeg]\nquality = 75\n[preprocess]\nchain = \"jpeg90\"\n", ["preprocess.chain", "'jpeg75'"]),
        ("[preprocess]\nchian = \"jpeg90\"\n", ["unknown key 'preprocess.chian'", "chain"]),
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


def test_the_official_chain_defaults_to_the_tasks_jpeg_and_may_add_steps_before_it(tmp_path):
    from evaluator.codec import OrganizerCodec
    from evaluator.defenses import PreprocessedCodec, official_codec

    assert TaskConfig().preprocess.chain == "jpeg90" and load_task(None).preprocess.chain == "jpeg90"
    q75 = load_task(write(tmp_path, "[jpeg]\nquality = 75\n"))
    assert q75.preprocess.chain == "jpeg75"  # a task file of before the key keeps its JPEG-only rule
    assert official_codec(q75) == OrganizerCodec(quality=75)
    odd = load_task(write(tmp_path, "[jpeg]\nquality = 83\n"))
    assert odd.preprocess.chain == "jpeg83" and official_codec(odd) == OrganizerCodec(quality=83)
    chained = load_task(write(tmp_path, "[preprocess]\nchain = \" resize75 + jpeg90 \"\n"))
    codec = official_codec(chained)
    assert isinstance(codec, PreprocessedCodec) and codec.chain == "resize75+jpeg90" and codec.quality == 90
    assert chained.to_dict()["preprocess"] == {"chain": "resize75+jpeg90"}  # canonical: one spelling, one cache key


def test_a_longer_official_chain_changes_the_cache_key_and_the_jpeg_only_chain_does_not(tmp_path):
    import hashlib
    import json

    from evaluator.scoring.score_cache import rules_hash

    def before(task: TaskConfig) -> str:  # rules_hash as it was before the key existed
        rules = task.to_dict()
        keyed = {"jpeg": rules["jpeg"], "biqa.model": rules["biqa"]["model"]}
        return hashlib.sha256(json.dumps(keyed, sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    default = load_task(None)
    assert rules_hash(default) == before(default)
    chained = load_task(write(tmp_path, "[preprocess]\nchain = \"blur1+jpeg90\"\n"))
    assert rules_hash(chained) != rules_hash(default)
