"""One kit version (one fallback) and one library list for run.json and task.json."""

from __future__ import annotations

import importlib.metadata

from evaluator.common import versions


def test_kit_version_is_the_installed_one_or_the_one_fallback(monkeypatch):
    assert versions.kit_version() == importlib.metadata.version("pixel-privacy-kit")

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert versions.kit_version() == versions.UNKNOWN_VERSION == "0+unknown"
    assert set(versions.library_versions().values()) == {versions.library_versions()["python"], "0+unknown",
                                                          "not installed"}


def test_library_versions_list_python_the_kit_and_every_library():
    got = versions.library_versions()
    assert list(got) == ["python", "pixel-privacy-kit", *versions.LIBRARIES]
    assert got["pixel-privacy-kit"] == versions.kit_version()


def test_the_compiler_of_the_scoring_kernels_is_recorded():
    """numba compiles BRISQUE's features and PSNR/SSIM (evaluator/*/..._fast.py): its version changes numbers."""
    assert versions.library_versions()["numba"] == importlib.metadata.version("numba")
