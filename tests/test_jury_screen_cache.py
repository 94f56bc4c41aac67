"""The juror page's per-package image cache: each candidate is pre-sized once (not per request or juror), a
juror's bytes are exactly `stored_png` of the pre-sized pixels with that juror's key, the warm-up stops at the
byte bound, and the LRU keeps within it."""

from __future__ import annotations

from jury_app.testing.fixtures import make_demo_package
from evaluator.contracts.jury_package import load_package
from jury_app.web.screen_cache import ScreenCache
from jury_app.web.served_image import candidate_key, candidate_pixels, png_length, stored_png


def test_candidates_are_prepared_once_per_package_and_match_stored_png(tmp_path):
    package = load_package(make_demo_package(tmp_path / "jury", ["a", "b", "c"], 2, size=80))
    cache = ScreenCache(package, grid_side=40, full_side=64)
    cache.warm().join(timeout=60)
    assert cache.prepared == 6  # every candidate, once
    secret = bytes(range(32))
    for image in package.images:
        for c in image.candidates:
            for juror in ("juror001", "juror002"):
                key = candidate_key(secret, juror, c.id)
                grid = cache.grid(c.file).with_key(key)
                assert grid == stored_png(candidate_pixels(c.file, max_side=40), key)
                assert len(grid) == png_length(40, 40)
                full = cache.full(c.file).with_key(key)
                assert full == stored_png(candidate_pixels(c.file, max_side=64), key)
    assert cache.prepared == 6 + 6  # the grid was never prepared again; each full size once


def test_warm_up_stops_at_the_byte_bound_and_the_lru_stays_within_it(tmp_path):
    package = load_package(make_demo_package(tmp_path / "jury", ["a", "b", "c"], 4, size=32))
    one = 32 * (1 + 3 * 32) + 200  # rows of one candidate plus headers, roughly
    cache = ScreenCache(package, max_bytes=3 * one, grid_side=32)
    cache.warm().join(timeout=60)
    assert 1 <= cache.prepared <= 4 and cache._grid.bytes <= 3 * one
    for image in package.images:  # a request still gets every candidate; the LRU drops the oldest
        for c in image.candidates:
            assert cache.grid(c.file).width == 32
    assert cache._grid.bytes <= 3 * one and len(cache._grid.items) <= 3


def test_a_rewritten_package_gets_a_new_cache_even_with_the_same_mtime_and_old_ones_are_dropped(tmp_path):
    import os
    from types import SimpleNamespace

    from evaluator.contracts.jury_package import MANIFEST_NAME
    from jury_app.web.context import SCREEN_CACHES, screens

    root = make_demo_package(tmp_path / "jury", ["a", "b"], 1, size=16)
    manifest = root / MANIFEST_NAME
    original = manifest.read_bytes()
    first = screens(SimpleNamespace(package=load_package(root)))
    assert screens(SimpleNamespace(package=load_package(root))) is first  # same generation: same cache
    seen = [first]
    stamp = manifest.stat().st_mtime_ns
    for k in range(SCREEN_CACHES):  # new generations: another manifest in place (same size, mtime and inode)
        data = manifest.read_bytes().rstrip(b" \n")
        manifest.write_bytes(data + b" " * (k + 1) + b"\n" * (SCREEN_CACHES - k))
        os.utime(manifest, ns=(stamp, stamp))
        cache = screens(SimpleNamespace(package=load_package(root)))
        assert all(cache is not old for old in seen)
        seen.append(cache)
    assert screens(SimpleNamespace(package=load_package(root))) is seen[-1]
    # the first generation was dropped (at most SCREEN_CACHES kept): asking for it again builds a new cache
    manifest.write_bytes(original)
    assert screens(SimpleNamespace(package=load_package(root))) is not first
