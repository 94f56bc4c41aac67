"""pp-jury: the jury CLI (lands with the jury issue)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pp-jury",
        description="Run the blind jury of Pixel Privacy. "
        "Not implemented yet in this version of the kit: the jury app is not available.",
    )
    parser.parse_args(argv)
    print("pp-jury: the jury app is not implemented yet in this version of the kit.", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
