"""The kit's version and the library versions every output records (run.json and task.json, under `VERSIONS_KEY`).

`kit_version()` is also part of every score cache key (`evaluator.scoring.score_cache`): a new release never
reuses old numbers. Outside an installed kit (a bare checkout on PYTHONPATH) it is `UNKNOWN_VERSION`.
"""

from __future__ import annotations

import importlib.metadata
import platform

KIT_DISTRIBUTION = "pixel-privacy-kit"
UNKNOWN_VERSION = "0+unknown"
VERSIONS_KEY = "versions"
#: the libraries whose versions change the numbers (scores, codec, images) or the attacks
LIBRARIES = ("torch", "numpy", "scipy", "scikit-image", "pillow", "jpeglib", "brisque", "scikit-video", "numba")


def kit_version() -> str:
    """The installed kit's version; `UNKNOWN_VERSION` when it is not installed."""
    try:
        return importlib.metadata.version(KIT_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN_VERSION


def library_versions() -> dict[str, str]:
    """{"python", "pixel-privacy-kit", then each of `LIBRARIES`: its version or "not installed"}."""
    versions = {"python": platform.python_version(), KIT_DISTRIBUTION: kit_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
