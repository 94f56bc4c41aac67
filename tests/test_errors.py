"""One error hierarchy (`evaluator.common.errors`): every error class of the kit is a KitError of its stage with
that stage's exit code, keeps the built-in base its callers catch, and the three CLIs share one exit-code table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evaluator.common import errors
from evaluator.common.errors import EXIT_CODES, KitError, exit_code_help

REPO = Path(__file__).resolve().parents[1]


def _classes():
    from evaluator.biqa import BIQAError, MissingWeightsError, UnknownBIQAError
    from evaluator.biqa.brisque import BrisqueModelError
    from evaluator.biqa.koncept512 import WeightsError
    from evaluator.biqa.niqe import NiqeParamsError, NiqeSizeError
    from evaluator.biqa.piqe import PiqeGradientError, PiqeSizeError
    from evaluator.codec import CodecError
    from evaluator.common.device import DeviceError
    from evaluator.common.imageio import CorruptImageError, ImageError
    from evaluator.config import TaskConfigError
    from evaluator.contracts.jury_package import PackageError
    from evaluator.defenses import DefenseError
    from evaluator.intake.runs import RunReadError, RunsDirError
    from evaluator.intake.safe_zip import ZipReadError
    from evaluator.outputs.codabench import SubmissionLayoutError
    from evaluator.outputs.jury_export import JuryExportError
    from evaluator.outputs.results_io import ResultsFolderError
    from evaluator.pipeline import PipelineError
    from evaluator.scoring.score_cache import ScoreCacheError
    from jury_app.votes.ballot import BallotError, BallotLockedError
    from jury_app.web.served_image import ServedImageError
    from jury_app.votes.store import StoreError
    from jury_app.votes.votes_csv import VotesFileError
    from submission.attacks import AttackError, ParamError
    from submission.run_folder import IncompleteRunError, RunFolderError

    E = errors
    return [  # class, stage, exit code, the built-in base it keeps
        (TaskConfigError, E.ConfigError, 2, ValueError), (UnknownBIQAError, E.ConfigError, 2, ValueError),
        (ImageError, E.IntakeError, 2, ValueError), (CorruptImageError, E.IntakeError, 2, ValueError),
        (RunsDirError, E.IntakeError, 2, ValueError), (RunReadError, E.IntakeError, 2, ValueError),
        (ZipReadError, E.IntakeError, 2, ValueError), (SubmissionLayoutError, E.IntakeError, 2, ValueError),
        (CodecError, E.JpegError, 2, ValueError),
        (AttackError, E.AttackError, 2, ValueError), (ParamError, E.AttackError, 2, ValueError),
        (RunFolderError, E.AttackError, 2, ValueError), (IncompleteRunError, RunFolderError, 5, ValueError),
        (DefenseError, KitError, 2, ValueError),
        (PipelineError, E.ResultsError, 2, RuntimeError), (ScoreCacheError, E.ResultsError, 2, RuntimeError),
        (ResultsFolderError, E.ResultsError, 2, OSError),
        (PackageError, E.JuryPackageError, 2, ValueError), (JuryExportError, E.JuryPackageError, 2, RuntimeError),
        (ServedImageError, E.JuryPackageError, 2, ValueError),
        (VotesFileError, E.VotesError, 2, ValueError), (StoreError, E.VotesError, 2, RuntimeError),
        (BallotError, E.VotesError, 2, ValueError), (BallotLockedError, E.VotesError, 2, ValueError),
        (E.OriginalsError, KitError, 3, ValueError),
        (BIQAError, E.ModelError, 4, ValueError), (MissingWeightsError, E.ModelError, 4, ValueError),
        (BrisqueModelError, BIQAError, 4, ValueError), (WeightsError, BIQAError, 4, ValueError),
        (NiqeParamsError, BIQAError, 4, ValueError), (NiqeSizeError, BIQAError, 4, ValueError),
        (PiqeSizeError, BIQAError, 4, ValueError), (PiqeGradientError, BIQAError, 4, ValueError),
        (DeviceError, E.ModelError, 4, ValueError),
    ]


@pytest.mark.parametrize("cls, stage, code, builtin", _classes(), ids=lambda v: getattr(v, "__name__", str(v)))
def test_every_error_is_a_kit_error_of_its_stage(cls, stage, code, builtin):
    assert issubclass(cls, stage) and issubclass(cls, KitError) and issubclass(cls, builtin)
    assert cls.exit_code == code and code in dict(EXIT_CODES)


def test_the_table_has_every_stage_code_once_and_each_code_a_meaning():
    codes = [code for code, _ in EXIT_CODES]
    assert codes == sorted(set(codes)) == [0, 1, 2, 3, 4, 5, 130]
    stages = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, KitError)]
    assert {c.exit_code for c in stages} <= set(codes)


@pytest.mark.parametrize("argv, main", [
    (["--help"], "evaluator.cli"), (["--help"], "submission.cli"), (["finalize", "--help"], "submission.cli"),
    (["--help"], "jury_app.cli"),
])
def test_each_cli_help_shows_the_one_table(argv, main, capsys):
    import importlib

    with pytest.raises(SystemExit) as ex:
        importlib.import_module(main).main(argv)
    assert ex.value.code == 0
    assert exit_code_help() in capsys.readouterr().out


POINTER = "the kit's one exit-code table: README.md, section \"The three command-line tools\""
CODE_ROW = re.compile(r"^\| (\d+) \| .* \|$", re.MULTILINE)


def _documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "data").glob("*.md"))]


def test_the_readme_shows_exactly_the_table():
    """README's table is the code's table row for row (no missing, extra, reordered or reworded row)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    rows = "\n".join(f"| {code} | {meaning} |" for code, meaning in EXIT_CODES)
    assert f"| code | meaning |\n|---|---|\n{rows}\n" in readme
    assert len(CODE_ROW.findall(readme)) == len(EXIT_CODES)


@pytest.mark.parametrize("path", _documents(), ids=lambda p: p.name)
def test_no_other_document_holds_a_copy_of_the_table(path):
    if path.name == "README.md" and path.parent == REPO:
        return
    text = path.read_text(encoding="utf-8")
    assert not [row for row in CODE_ROW.finditer(text) if int(row.group(1)) in dict(EXIT_CODES)
                and "exit" in text[max(0, row.start() - 2000):row.start()].lower()], f"{path}: an exit-code table"


@pytest.mark.parametrize("path", ["docs/jury.md", "docs/design.md", "submission/cli.py"])
def test_every_other_mention_of_the_exit_codes_points_to_the_one_table(path):
    text = " ".join((REPO / path).read_text(encoding="utf-8").split())
    assert POINTER in text
    for mention in re.finditer(r"Exit codes[^:]*:", text):
        assert text[mention.end():].lstrip().startswith(POINTER), (path, text[mention.start():mention.end() + 80])


def test_the_readme_evaluate_section_points_to_the_table_and_restates_no_code_meaning():
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    mentions = [m.end() for m in re.finditer(r"Exit codes:", readme)]
    assert mentions and all(readme[end:].lstrip().startswith("the table above") for end in mentions)


def test_an_unexpected_model_failure_is_not_reported_as_weights_that_do_not_load(monkeypatch, tmp_path):
    """pp-evaluate reports a ModelError (exit 4) with its own message; any other exception while
    building the model is a bug of the kit and is not disguised as one (it propagates: traceback, exit 1)."""
    import evaluator.biqa
    from evaluator.cli import main
    from evaluator_fixtures import write_originals

    write_originals(tmp_path / "originals", {"a": 0.7})
    (tmp_path / "runs").mkdir()
    args = ["--originals", str(tmp_path / "originals"), "--runs", str(tmp_path / "runs"), "--out",
            str(tmp_path / "out"), "--no-progress"]

    def broken(*a, **k):
        raise KeyError("a bug")

    monkeypatch.setattr(evaluator.biqa, "create", broken)
    with pytest.raises(KeyError):
        main(args)

    def refused(*a, **k):
        raise evaluator.biqa.BIQAError("weights do not fit")

    monkeypatch.setattr(evaluator.biqa, "create", refused)
    assert main(args) == 4
