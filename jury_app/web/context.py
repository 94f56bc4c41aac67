"""What both pages share: the jury package folder, the loaded package, the vote store, served image bytes.

`screen_images(ctx, juror, image)` (the grid) and `full_image` (one candidate enlarged) are everything a juror's
browser receives of an image's candidates: their decoded pixels as uncompressed PNGs of one length per image and
size, with a private chunk keyed per juror (`blind_screen` in `jury_app/web/served_image.py`), prepared once per
package (`jury_app/web/screen_cache.py`). `guarded_login` checks every token it is given; a right one is accepted whatever
came before it, and every wrong one is logged, escaped, on the logger `pp-jury.login` (the server's stderr). Each
page has its own `LoginGuard`, so wrong tokens on one page never change what the other answers.

The folder comes from the environment variable PP_JURY_DIR (set by `pp-jury serve`), else from the first
argument after `--` of `streamlit run jury_app/app.py -- DIR`. The vote store is the URL in PP_JURY_STORE (set by
`pp-jury serve --store URL`; `jury_app.votes.backends.store_url`), else DIR/votes.sqlite. Nothing a juror needs
lives in this process alone: progress, layouts and the images' secret are read from the store, so a juror who
reaches another replica (a new session) resumes where the store says and receives the same image bytes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from evaluator.contracts.jury_package import MANIFEST_NAME, JuryImage, JuryPackage, PackageError, load_package
from jury_app.web.served_image import candidate_key, served_bytes
from jury_app.votes.backends import open_store, store_url
from jury_app.votes.store import StoreError, VoteStoreBase
from jury_app.votes.tokens import LoginGuard, log_safe, token_owner
from jury_app.web.screen_cache import ScreenCache

ENV_DIR = "PP_JURY_DIR"
HINT = "Appealing could mean that you would like to share the image with your friends on social media."
LOCAL_CLIENT = "local"

log = logging.getLogger("pp-jury.login")
if not log.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(asctime)s pp-jury: %(levelname)s %(message)s"))
    log.addHandler(_handler)
    log.setLevel(logging.INFO)


@dataclass(frozen=True)
class JuryContext:
    package: JuryPackage
    store: VoteStoreBase
    image_secret: bytes
    juror_guard: LoginGuard
    organizer_guard: LoginGuard


def package_dir() -> Path | None:
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR])
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    return Path(args[0]) if args else None


@st.cache_resource(show_spinner=False)
def _open(directory: str, manifest_mtime_ns: int, url: str | None = None) -> JuryContext:
    package = load_package(directory)
    store = open_store(package, url)
    return JuryContext(package=package, store=store, image_secret=store.image_secret(),
                      juror_guard=LoginGuard(), organizer_guard=LoginGuard())


def jury_context() -> JuryContext:
    """The package and store, or an error on the page (and stop) when the folder is not a jury package."""
    directory = package_dir()
    if directory is None:
        st.error(f"No jury package given: start the app with `pp-jury serve DIR` (or set {ENV_DIR}).")
        st.stop()
    try:
        mtime = (directory / MANIFEST_NAME).stat().st_mtime_ns
        return _open(str(directory.resolve()), mtime, store_url())
    except (OSError, PackageError, StoreError) as exc:
        st.error(f"The jury package or its vote store cannot be opened: {exc}")
        st.stop()
        raise  # unreachable: st.stop raises


@st.cache_data(show_spinner=False, max_entries=2048)
def image_bytes(path: str) -> bytes:
    """Metadata-free, grid-sized bytes of the reference original (cached by path; the package is read-only)."""
    return served_bytes(Path(path))[0]


SCREEN_CACHES = 2  # packages (generations) whose ScreenCache is kept: each holds up to 2 x DEFAULT_MAX_BYTES


@st.cache_resource(show_spinner=False, max_entries=SCREEN_CACHES)
def _screen_cache(directory: str, manifest_sha256: str, _package: JuryPackage) -> ScreenCache:
    """The package's ScreenCache, made once per package (and manifest version), warmed in the background."""
    cache = ScreenCache(_package)
    cache.warm()
    return cache


def screens(ctx: JuryContext) -> ScreenCache:
    """The ScreenCache of this package generation: keyed by the SHA-256 of its manifest (a new generation has new
    random candidate ids, so a package rewritten in place never serves the old generation's images, whatever the
    file system's mtime resolution or inode reuse); only the last `SCREEN_CACHES` generations are kept."""
    root = ctx.package.root
    digest = hashlib.sha256((root / MANIFEST_NAME).read_bytes()).hexdigest()
    return _screen_cache(str(root), digest, ctx.package)


def screen_images(ctx: JuryContext, juror: str, image: JuryImage) -> dict[str, bytes]:
    """candidate id -> the grid PNG bytes this juror receives for it: one length per image, keyed per juror
    (`blind_screen` of the grid-sized pixels; the juror-independent parts come from the package's ScreenCache)."""
    cache = screens(ctx)
    return {c.id: cache.grid(c.file).with_key(candidate_key(ctx.image_secret, juror, c.id))
            for c in image.candidates}


def full_image(ctx: JuryContext, juror: str, image: JuryImage, candidate: str) -> bytes:
    """The full-size PNG of one candidate for this juror (same layout and key as the grid's, larger pixels)."""
    c = next(c for c in image.candidates if c.id == candidate)
    return screens(ctx).full(c.file).with_key(candidate_key(ctx.image_secret, juror, c.id))


def client_address() -> str:
    """The connection's address as Streamlit sees it (`local` for loopback; behind a reverse proxy: the proxy's)."""
    ip = st.context.ip_address
    return ip if isinstance(ip, str) and ip else LOCAL_CLIENT


def guarded_login(guard: LoginGuard, token: str, verify: Callable[[str], str | None], what: str
                  ) -> tuple[str | None, float]:
    """(who, 0) when `verify(token)` accepts it, whatever wrong tokens came before from this client (a shared
    address, e.g. a reverse proxy's, must not let one client lock the others out); (None, 0) for a wrong token;
    (None, seconds) for a wrong token that came while this client has to wait after too many wrong ones in a row:
    it is refused with that wait and not counted. Every wrong token is logged on one line: client address,
    failures in a row and the token's owner part, escaped (never the secret part)."""
    client = client_address()
    who = verify(token)
    if who is not None:
        return who, 0.0
    owner = token_owner(token)
    shown = f"owner part {log_safe(owner)}" if owner is not None else f"malformed, {len(token)} characters"
    wait = guard.wait(client)
    if wait > 0:
        log.warning("wrong %s token from client %s (%s) during its wait (%.1f s left): refused, not counted",
                    what, log_safe(client), shown, wait)
        return None, wait
    failures = guard.failed(client)
    delay = guard.delay_after(failures)
    log.warning("wrong %s token from client %s (%s); %d wrong in a row%s", what, log_safe(client), shown,
                failures, f"; its wrong tokens are refused for {delay:.0f} s" if delay else "")
    return None, 0.0
