"""One error hierarchy for the kit, one exit-code table for its three command-line tools.

Every error the kit raises on purpose is a `KitError`, of the subclass of the stage that raised it; the subclass
carries the exit code that pp-attack, pp-evaluate and pp-jury return for it (each CLI catches `KitError`, prints
the message, which names the file, what is wrong and what to do, and exits with `exc.exit_code`). Anything else
that reaches a CLI is a bug of the kit: a traceback and exit code 1. Errors that callers also catch as built-in
types keep that type among their bases (`TaskConfigError` is a `ValueError`, `ResultsFolderError` an `OSError`).

    KitError                       1  (the base; each stage sets its code)
      ConfigError                  2  bad arguments or task rules: evaluator.config.TaskConfigError
      IntakeError                  2  a runs folder, run, submission or image file that cannot be read:
                                      evaluator.intake (RunsDirError, RunReadError, ZipReadError),
                                      evaluator.common.imageio.ImageError, Codabench's SubmissionLayoutError
      JpegError                    2  the organizer codec refused its input: evaluator.codec.CodecError
      AttackError                  2  an attack that cannot run as asked: submission (ParamError, RunFolderError)
        IncompleteRunError         5  pp-attack finalize found images missing: submission.run_folder
      evaluator.defenses.DefenseError  2  a defense that cannot run as asked (benchmarks only)
      ResultsError                 2  a results folder or score cache that cannot be used: PipelineError,
                                      ScoreCacheError, ResultsFolderError
      JuryPackageError             2  a jury package that cannot be written or read: PackageError, JuryExportError,
                                      jury_app's ServedImageError
      VotesError                   2  a votes file, vote store or ballot that cannot be used: jury_app (VotesFileError,
                                      StoreError, BallotError)
      OriginalsError               3  the originals folder or an original image cannot be used
      ModelError                   4  a BIQA that cannot be built or placed: evaluator.biqa.BIQAError (weights
                                      missing or not loading), evaluator.common.device.DeviceError
        evaluator.biqa.UnknownBIQAError  2  a BIQA name the registry does not know (bad input, as in the task file)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_ORIGINALS = 3
EXIT_MODEL = 4
EXIT_INCOMPLETE = 5
EXIT_INTERRUPTED = 130

#: The exit codes of pp-attack, pp-evaluate and pp-jury (one table; `exit_code_help` prints it in each --help).
EXIT_CODES = (
    (EXIT_OK, "success (pp-evaluate: every run was handled; an invalid run is a result, see its 'error' in runs.csv)"),
    (EXIT_FAILURE, "unexpected error: a bug of the kit (please report it with the traceback)"),
    (EXIT_USAGE, "bad input: arguments, task file, an unknown BIQA or attack name, attack parameters, a folder to write that cannot be "
                 "used (--out), a runs folder, jury package, votes file or vote store; nothing was overwritten"),
    (EXIT_ORIGINALS, "the originals: a folder that is missing or holds no image, or an original that cannot be read"),
    (EXIT_MODEL, "the BIQA model: weights missing or not loading (--biqa-weights, --random-weights), "
                 "or a --device that is not available"),
    (EXIT_INCOMPLETE, "an incomplete run: pp-attack finalize found images missing (rerun the shards it names)"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C): what was written before is left as it was"),
)


def exit_code_help() -> str:
    """The exit-code table as the `exit codes:` section of a --help text."""
    import textwrap

    lines = ["exit codes (pp-attack, pp-evaluate and pp-jury share them):"]
    for code, meaning in EXIT_CODES:
        lines.extend(textwrap.wrap(meaning, width=112, initial_indent=f"  {code:<4}", subsequent_indent=" " * 6))
    return "\n".join(lines)


class KitError(Exception):
    """An error the kit raises on purpose; `exit_code` is what a CLI returns for it (`EXIT_CODES`)."""

    exit_code = EXIT_FAILURE


class ConfigError(KitError):
    """Bad command-line arguments or task rules."""

    exit_code = EXIT_USAGE


class IntakeError(KitError):
    """A runs folder, run or submission that cannot be read."""

    exit_code = EXIT_USAGE


class JpegError(KitError):
    """The organizer codec (the JPEG-90 stage) cannot compress or decode what it was given."""

    exit_code = EXIT_USAGE


class AttackError(KitError, ValueError):
    """An attack that cannot run as asked: unknown method, bad parameter, missing file, unusable run folder (the
    message says which)."""

    exit_code = EXIT_USAGE


class ResultsError(KitError):
    """A results folder or score cache that cannot be used."""

    exit_code = EXIT_USAGE


class JuryPackageError(KitError):
    """A jury package that cannot be written or read."""

    exit_code = EXIT_USAGE


class VotesError(KitError):
    """A votes file, vote store or ballot that cannot be used."""

    exit_code = EXIT_USAGE


class OriginalsError(KitError, ValueError):
    """The originals folder or an original image cannot be used: the message names the folder or file and the fix."""

    exit_code = EXIT_ORIGINALS


class ModelError(KitError):
    """A BIQA model that cannot be built or placed: weights missing or not loading, device (an unknown name is
    `evaluator.biqa.UnknownBIQAError`, exit 2)."""

    exit_code = EXIT_MODEL
