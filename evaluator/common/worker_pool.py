"""Worker processes for per-image work: an ordered map of a picklable function over jobs.

`pp-evaluate` decodes, JPEG-compresses and compares images in these processes while its main process runs the
BIQA model; one pool serves a whole evaluation (originals, runs, report gallery), forked at the first job that
needs it, so an evaluation served from the cache forks nothing. Results come back in job order, so whatever is
built from them does not depend on the number of workers.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch

#: The most worker processes `default_workers` picks (more rarely pays: the main process scores the images).
MAX_DEFAULT_WORKERS = 8


def cpu_count() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """Worker processes by default: one per CPU this process may run on (at most MAX_DEFAULT_WORKERS)."""
    return min(MAX_DEFAULT_WORKERS, cpu_count())


def max_workers() -> int:
    """The most worker processes a user may ask for: 4 per CPU (more only costs memory and switching)."""
    return 4 * cpu_count()


_context: Any = None  # the running job's `job_context()`: in a worker, its pool's context (set once at its start)


def job_context() -> Any:
    """The `context` of the pool running the current job (e.g. a model the jobs share), None outside a job."""
    return _context


def _worker_init(context: Any) -> None:
    """A worker runs single-threaded (its siblings and the main process use the other cores), keeps the pool's
    context for its jobs (inherited in memory where the pool forks) and ignores Ctrl-C: a terminal sends SIGINT to
    the whole process group, and the main process stops the work (cancels the queued jobs, waits for the running
    ones), instead of every worker printing a KeyboardInterrupt traceback and dying under the pool."""
    global _context
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    _context = context


class WorkerPool:
    """`run(fn, jobs)`: (tag, fn(*args)) per (tag, args) job, in job order, on `workers` processes (0: in this
    process), at most `ahead` jobs in flight (default 2 per worker). The pool starts at the first job sent to it,
    after `before_start()` (work done once in this process, which forked workers inherit). A job reads `context`
    (an object too large to send with every job, e.g. a model) through `job_context()`, in a worker and inline
    alike. Use it as a context manager, or call `close()`."""

    def __init__(self, workers: int, ahead: int | None = None, before_start: Callable[[], None] | None = None,
                 context: Any = None):
        self.workers = max(0, int(workers))
        self.ahead = max(1, ahead if ahead is not None else 2 * max(1, self.workers))
        self.before_start, self.context = before_start, context
        self.pool: ProcessPoolExecutor | None = None
        self.prepared = False

    def prepare(self) -> None:
        """Run `before_start` now (once; the first job would otherwise run it just before forking)."""
        if not self.prepared:
            self.prepared = True
            if self.before_start is not None:
                self.before_start()

    def _executor(self) -> ProcessPoolExecutor:
        if self.pool is None:
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            self.prepare()
            self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(method),
                                            initializer=_worker_init, initargs=(self.context,))
        return self.pool

    def _inline(self, fn: Callable[..., Any], args: tuple) -> Any:
        global _context
        saved, _context = _context, self.context
        try:
            return fn(*args)
        finally:
            _context = saved

    def run(self, fn: Callable[..., Any], jobs: Iterable[tuple[Any, tuple | None]], *,
            inline: bool = False) -> Iterator[tuple[Any, Any]]:
        """(tag, fn(*args)) per (tag, args) in job order; a job whose args are None yields (tag, None) and runs
        nothing. `inline=True` (or a pool of 0 workers) runs every job in this process."""
        if inline or self.workers <= 0:
            for tag, args in jobs:
                yield tag, None if args is None else self._inline(fn, args)
            return
        pending: deque = deque()  # (tag, future or None)
        try:
            for tag, args in jobs:
                pending.append((tag, None if args is None else self._executor().submit(fn, *args)))
                while pending and (pending[0][1] is None or len(pending) > self.ahead):
                    tag0, fut = pending.popleft()
                    yield tag0, None if fut is None else fut.result()
            while pending:
                tag0, fut = pending.popleft()
                yield tag0, None if fut is None else fut.result()
        finally:  # a consumer that stops early (or fails) leaves nothing running for it
            for _, fut in pending:
                if fut is not None:
                    fut.cancel()

    def close(self, cancel: bool = False) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=cancel)
            self.pool = None

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        self.close(cancel=kind is not None)


def check_picklable(value: Any, what: str) -> None:
    """Raise ValueError naming `what` when `value` cannot be sent to a worker process (a job that cannot be
    pickled fails in the pool's feeder thread, and can hang the pool's shutdown)."""
    try:
        pickle.dumps(value)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means the same thing here
        raise ValueError(f"{what} cannot be sent to worker processes ({exc})") from exc
