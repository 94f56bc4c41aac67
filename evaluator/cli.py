"""pp-evaluate: the organizer scoring CLI (lands with the evaluator issue)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pp-evaluate",
        description="Score Pixel Privacy runs as the organizer does. "
        "Not implemented yet in this version of the kit: the scoring pipeline is not available.",
    )
    parser.parse_args(argv)
    print("pp-evaluate: the scoring pipeline is not implemented yet in this version of the kit.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
