"""What both pages share: the jury package folder, the loaded package, the vote store, served image bytes.

The folder comes from the environment variable PP_JURY_DIR (set by `pp-jury serve`), else from the first
argument after `--` of `streamlit run jury_app/app.py -- DIR`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from jury_app.package import JuryPackage, PackageError, load_package
from jury_app.served_image import served_bytes
from jury_app.store import VoteStore

ENV_DIR = "PP_JURY_DIR"
HINT = "Appealing could mean that you would like to share the image with your friends on social media."


@dataclass(frozen=True)
class JuryContext:
    package: JuryPackage
    store: VoteStore


def package_dir() -> Path | None:
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR])
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    return Path(args[0]) if args else None


@st.cache_resource(show_spinner=False)
def _open(directory: str, manifest_mtime_ns: int) -> JuryContext:
    package = load_package(directory)
    return JuryContext(package=package, store=VoteStore(package))


def jury_context() -> JuryContext:
    """The package and store, or an error on the page (and stop) when the folder is not a jury package."""
    directory = package_dir()
    if directory is None:
        st.error(f"No jury package given: start the app with `pp-jury serve DIR` (or set {ENV_DIR}).")
        st.stop()
    try:
        mtime = (directory / "manifest.json").stat().st_mtime_ns
        return _open(str(directory.resolve()), mtime)
    except (OSError, PackageError) as exc:
        st.error(f"The jury package cannot be opened: {exc}")
        st.stop()
        raise  # unreachable: st.stop raises


@st.cache_data(show_spinner=False, max_entries=2048)
def image_bytes(path: str) -> bytes:
    """Metadata-free, grid-sized bytes for an image of the package (cached by path; the package is read-only)."""
    return served_bytes(Path(path))[0]
