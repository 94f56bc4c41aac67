"""What the server computes once per package for the juror page, not once per request.

Per candidate, the juror-independent parts of its served PNG (`PreparedPng`: decoded, pre-sized, rows, stored
deflate blocks and checksums) at two sizes: the grid (long side at most `SCREEN_SIDE`) and the full-size view (at
most `GRID_MAX_SIDE`). A juror's bytes are then `with_key(candidate_key(secret, juror, candidate))`: one copy.
The grid parts are kept in an LRU bounded by bytes (`max_bytes`, 3 bytes per pixel each) and warmed in a
background thread when the package is opened, in the order jurors meet the images, until the bound is reached;
the full-size parts (asked for one at a time, when a juror enlarges a candidate) in a small LRU.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from evaluator.contracts.jury_package import JuryPackage
from jury_app.web.served_image import GRID_MAX_SIDE, SCREEN_SIDE, PreparedPng, candidate_pixels, prepare_png

DEFAULT_MAX_BYTES = 256 << 20
FULL_ENTRIES = 8


class _Lru:
    def __init__(self, max_bytes: int, max_entries: int | None = None) -> None:
        self.max_bytes, self.max_entries = max_bytes, max_entries
        self.items: OrderedDict[str, PreparedPng] = OrderedDict()
        self.bytes = 0
        self.lock = threading.Lock()

    def get(self, key: str) -> PreparedPng | None:
        with self.lock:
            value = self.items.get(key)
            if value is not None:
                self.items.move_to_end(key)
            return value

    def put(self, key: str, value: PreparedPng) -> bool:
        """Keep `value`, dropping the least recently used entries over the bounds; False when it alone is over."""
        size = len(value.head) + len(value.tail)
        with self.lock:
            if key in self.items:
                return True
            if size > self.max_bytes:
                return False
            self.items[key] = value
            self.bytes += size
            while self.bytes > self.max_bytes or (self.max_entries and len(self.items) > self.max_entries):
                _, old = self.items.popitem(last=False)
                self.bytes -= len(old.head) + len(old.tail)
            return True

    def full(self, extra: int) -> bool:
        with self.lock:
            return self.bytes + extra > self.max_bytes


class ScreenCache:
    """The prepared PNGs of one package's candidates (see the module docstring); thread-safe."""

    def __init__(self, package: JuryPackage, *, max_bytes: int = DEFAULT_MAX_BYTES, grid_side: int = SCREEN_SIDE,
                 full_side: int = GRID_MAX_SIDE,
                 prepare: Callable[[Path, int], PreparedPng] | None = None) -> None:
        self.package, self.grid_side, self.full_side = package, grid_side, full_side
        self._grid = _Lru(max_bytes)
        self._full = _Lru(max_bytes, FULL_ENTRIES)
        self._prepare = prepare or (lambda path, side: prepare_png(candidate_pixels(path, max_side=side)))
        self.prepared = 0  # how many PreparedPng were computed (tests: once per candidate and size)

    def _get(self, lru: _Lru, path: Path, side: int) -> PreparedPng:
        key = str(path)
        value = lru.get(key)
        if value is None:
            value = self._prepare(path, side)
            self.prepared += 1
            lru.put(key, value)
        return value

    def grid(self, path: Path) -> PreparedPng:
        """The grid-sized parts of the candidate file `path`."""
        return self._get(self._grid, path, self.grid_side)

    def full(self, path: Path) -> PreparedPng:
        """The full-size parts of the candidate file `path`."""
        return self._get(self._full, path, self.full_side)

    def warm(self) -> threading.Thread:
        """Prepare the grid of every candidate, image by image, in a daemon thread, until the byte bound is
        reached; returns the thread (started)."""
        def run() -> None:
            try:
                _fill()
            except Exception:  # noqa: BLE001 - a broken file: the page that shows it reports it
                return

        def _fill() -> None:
            for image in self.package.images:
                for c in image.candidates:
                    if self._grid.get(str(c.file)) is not None:
                        continue
                    value = self._prepare(c.file, self.grid_side)
                    self.prepared += 1
                    if not self._grid.put(str(c.file), value) or self._grid.full(len(value.tail)):
                        return

        thread = threading.Thread(target=run, name="pp-jury-warm", daemon=True)
        thread.start()
        return thread
