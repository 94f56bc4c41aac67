"""pp-attack: the participants' attack CLI (methods land with the attack issue)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pp-attack",
        description="Make a Pixel Privacy run folder by attacking the organizer's BIQA (white-box). "
        "Not implemented yet in this version of the kit: no attack method is available.",
    )
    parser.parse_args(argv)
    print("pp-attack: no attack methods are implemented yet in this version of the kit.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
