"""`evaluator.common.jit.njit`: the compiled kernels import and compute where numba can write no cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_kernels_work_where_no_cache_folder_is_writable(tmp_path):
    """A copy of the package whose __pycache__ folders cannot be created, NUMBA_CACHE_DIR and the user cache
    folder pointing at a file: numba finds no cache locator (it raised RuntimeError at import before)."""
    shutil.copytree(ROOT / "evaluator", tmp_path / "evaluator", ignore=shutil.ignore_patterns("__pycache__"))
    for pkg in ("evaluator/scoring", "evaluator/biqa", "evaluator/common"):
        (tmp_path / pkg / "__pycache__").write_text("not a folder")
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "NUMBA_CACHE_DIR": str(blocker / "numba"),
           "XDG_CACHE_HOME": str(blocker), "HOME": str(blocker), "PYTHONDONTWRITEBYTECODE": "1"}
    code = ("import numpy as np, evaluator.biqa.brisque_fast, evaluator.scoring.fidelity_fast as f\n"
            "assert f.__file__.startswith(%r), f.__file__\n"
            "a = np.arange(8 * 9 * 3, dtype=np.uint8).reshape(8, 9, 3)\n"
            "print(f.ssim_uint8(a, a), f.psnr_uint8(a, a))\n") % str(tmp_path)
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1.0", "inf"]
    assert "NUMBA_CACHE_DIR" in done.stderr  # the warning says how to keep the compiled kernels
