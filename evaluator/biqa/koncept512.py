"""KonCept512 (Hosu et al. 2020, KonIQ-10k), the task's official BIQA, in the layout of the organizers' PyTorch
reproduction (ZhengyuZhao/koniq-PyTorch), so their checkpoint loads into `KonCept512` as is.

    score = fc(flatten(base(x)))     x: (N, 3, 384, 512), already normalized to [-1, 1]
    base  = Sequential(Inception-ResNet-v2 children conv2d_1a .. avgpool_1a)     keys base.0 .. base.15
    fc    = Linear(1536,2048) ReLU BN Dropout(.25) Linear(2048,1024) ReLU BN Dropout(.25)
            Linear(1024,256) ReLU BN Dropout(.5) Linear(256,1)                   keys fc.0 .. fc.12

State dict: 1327 entries (207 of them BatchNorm `num_batches_tracked`), 59,889,136 values.
`avgpool_1a` is AvgPool2d(8): at 384x512 the last map is 10x14 and the pool keeps only its top-left 8x8 cells.
That is a quirk of the original, and the checkpoint was trained with it, so it stays.

`KonCept512BIQA` is the kit's BIQA wrapper: RGB [0,1] in; resize to 384x512 (H x W) when the size differs,
bilinear with antialiasing (`F.interpolate(..., antialias=True)`, which follows PIL's BILINEAR resize, the
resize the organizers used, via torchvision's `Resize` on PIL images, at 512x384, aspect ratio not kept);
normalize (x - 0.5) / 0.5; the head output is the score, the KonIQ MOS on the 0..100 scale the task thresholds
at 50. `raw_score` is the unclipped head output, `forward` its clip to [0, 100].
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from evaluator.biqa.base import BIQAModel
from evaluator.biqa.inception_resnet_v2 import InceptionResNetV2, backbone_children
from evaluator.biqa.registry import BIQAError, MissingWeightsError, check_seed, missing_weights_message, spec

logger = logging.getLogger(__name__)

INPUT_SIZE: tuple[int, int] = (384, 512)  # (H, W) the checkpoint was trained at
N_STATE_ENTRIES = 1327
N_STATE_VALUES = 59_889_136
_SHOW = 5  # how many offending names an error message lists


class WeightsError(BIQAError):
    """A KonCept512 weights file that cannot be used; the message names the file, the problem and the fix."""


class KonCept512(nn.Module):
    """The checkpoint's module: normalized (N, 3, 384, 512) in, (N,) scores out."""

    def __init__(self) -> None:
        super().__init__()
        self.base = nn.Sequential(*backbone_children(InceptionResNetV2(num_classes=1001)))
        self.fc = nn.Sequential(
            nn.Linear(1536, 2048),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(2048),
            nn.Dropout(p=0.25),
            nn.Linear(2048, 1024),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(1024),
            nn.Dropout(p=0.25),
            nn.Linear(1024, 256),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(256),
            nn.Dropout(p=0.5),
            nn.Linear(256, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.base(x).flatten(1))[:, 0]


def expected_shapes() -> dict[str, torch.Size]:
    """Name -> shape of every state-dict entry of `KonCept512`, computed without allocating weights."""
    with torch.device("meta"):
        net = KonCept512()
    return {k: v.shape for k, v in net.state_dict().items()}


def _first(names: list[str]) -> str:
    more = f" (and {len(names) - _SHOW} more)" if len(names) > _SHOW else ""
    return ", ".join(repr(n) for n in names[:_SHOW]) + more


def load_koncept512_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read and check a KonCept512 checkpoint; see `read_koncept512_checkpoint` (this drops the hash)."""
    return read_koncept512_checkpoint(path)[0]


def read_koncept512_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """Read and check a KonCept512 checkpoint; return its state dict with `KonCept512`'s key names.

    Accepts a plain state dict, one saved from `nn.DataParallel` (`module.` prefix), and either wrapped as
    `{"state_dict": ...}`. Loaded with `torch.load(weights_only=True, map_location="cpu")`: no code runs.
    BatchNorm `num_batches_tracked` counters may be absent (checkpoints from PyTorch < 0.4.1); they are not used
    in eval mode. Raises `WeightsError` naming the file and the problem: missing, unreadable, not a mapping,
    non-tensor values, missing / unexpected keys, shape mismatches, non-finite values.
    Returns (state dict, sha256 hex of the exact bytes that were loaded).
    """
    path = Path(path)
    where = f"KonCept512 weights {str(path)!r}"
    if not path.is_file():
        raise WeightsError(f"{where}: no such file; pass the organizer's checkpoint with --biqa-weights PATH")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"{where}: cannot be read ({exc.strerror}); check the path and its permissions") from exc
    sha = hashlib.sha256(data).hexdigest()
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files; all mean the same here
        raise WeightsError(
            f"{where}: cannot be read as a torch checkpoint (truncated, corrupt, or holding objects that "
            f"weights_only loading refuses): {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            "; download the file again and check its sha256"
        ) from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise WeightsError(
            f"{where}: holds a {type(obj).__name__}, not a state dict (a mapping of names to tensors); "
            "save it with torch.save(model.state_dict(), path)"
        )
    keys = [str(k) for k in obj]
    if keys and all(k.startswith("module.") for k in keys):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    state = dict(obj)
    bad = sorted(str(k) for k, v in state.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise WeightsError(
            f"{where}: non-tensor values at {_first(bad)}; the file is not a KonCept512 state dict (if it wraps "
            "the weights under another key, re-save them with torch.save(checkpoint[KEY], path))"
        )

    expected = expected_shapes()
    missing = sorted(k for k in expected if k not in state and not k.endswith("num_batches_tracked"))
    unexpected = sorted(str(k) for k in state if k not in expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_first(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_first(unexpected)}")
        raise WeightsError(
            f"{where}: not the KonCept512 layout (base.* = Inception-ResNet-v2 of Cadene's pretrainedmodels, "
            f"fc.* = KonIQ head): {'; '.join(parts)}"
        )
    wrong = [
        f"{k}: expected {tuple(expected[k])}, got {tuple(v.shape)}" for k, v in state.items() if v.shape != expected[k]
    ]
    if wrong:
        raise WeightsError(f"{where}: {len(wrong)} shape mismatches: {_first(wrong)}; not a KonCept512 checkpoint")
    nonfinite = sorted(k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if nonfinite:
        raise WeightsError(f"{where}: NaN or infinite values in {_first(nonfinite)}; the checkpoint is damaged")
    return state, sha


class KonCept512BIQA(BIQAModel):
    """KonCept512 as a kit BIQA: RGB (N, 3, H, W) in [0, 1] -> (N,) KonIQ MOS in [0, 100], threshold 50.

    Needs its weights: `weights=PATH` loads the checkpoint (`read_koncept512_checkpoint`). Without one it refuses
    (`MissingWeightsError`), unless `random_seed=N` asks explicitly for a random network: initialized from
    `torch.manual_seed(N)` (the caller's random state is left as it was), the same in every process, and marked
    in `info.random_weights_seed` (`info.random_weights_note()`: its scores are meaningless: tests and shape checks).
    """

    def __init__(self, weights: str | Path | None = None, random_seed: int | None = None) -> None:
        super().__init__()
        if weights is None and random_seed is None:
            raise MissingWeightsError(missing_weights_message(spec("koncept512")))
        if weights is not None and random_seed is not None:
            raise BIQAError("koncept512: give either weights or random_seed (--random-weights), not both")
        if random_seed is not None:
            check_seed(random_seed)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(random_seed)
                self.net = KonCept512()
            logger.warning("koncept512: RANDOM weights from seed %d (no weights file): scores are meaningless",
                           random_seed)
            sha = None
        else:
            self.net = KonCept512()
            state, sha = read_koncept512_checkpoint(weights)
            self.net.load_state_dict(state, strict=False)  # keys checked above; num_batches_tracked may be absent
        self.info = spec("koncept512").info(weights_sha256=sha, random_weights_seed=random_seed)
        # channels_last (NHWC): oneDNN's / cuDNN's fast convolution layout; the values are those of the default
        # layout up to float rounding (benchmarks/bench_koncept512.py prints the difference), the state dict the same
        self.net.to(memory_format=torch.channels_last)

    @staticmethod
    def preprocess(x: torch.Tensor) -> torch.Tensor:
        """Resize to 384x512 (bilinear, antialiased, only when the size differs), then (x - 0.5) / 0.5, in
        channels_last memory format (values unchanged)."""
        if tuple(x.shape[-2:]) != INPUT_SIZE:
            x = F.interpolate(x, size=INPUT_SIZE, mode="bilinear", align_corners=False, antialias=True)
        return ((x - 0.5) / 0.5).contiguous(memory_format=torch.channels_last)

    def raw_score(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.net(self.preprocess(x))
