"""The binary search over a distortion budget eps in (0, eps_max], per image (Bonnet, Furon & Bas 2020: PGD at a
budget, `steps` runs in all, keep the smallest budget whose result is adversarial).

Round 0 attacks at hi = eps_max; each further round attacks at mid = (lo + hi) / 2 and, per image, sets hi = mid
if the result is adversarial, else lo = mid. The one rule the two users differ on is `late_success`:

- True (pgd-l2): an image that fails at eps_max still takes the first smaller budget that succeeds (PGD is not
  monotone in eps); `found` is "adversarial at some budget tried".
- False (pgd-dct): only images adversarial at eps_max take a smaller budget; the others keep the eps_max result,
  and the search stops early once no image succeeded at eps_max; `found` is "adversarial at eps_max".
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch


def search_budget(
    attempt: Callable[[torch.Tensor], tuple[Sequence[torch.Tensor], torch.Tensor]],
    eps_max: float,
    steps: int,
    n: int,
    device: torch.device,
    *,
    late_success: bool,
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Run the search. `attempt(eps)` ((N,) budgets) returns (tensors whose first dimension is the image, (N,) bool
    adversarial). Returns (the kept tensors, the (N,) budget each was found at (eps_max when none), (N,) found)."""
    hi = torch.full((n,), float(eps_max), device=device)
    lo = torch.zeros_like(hi)
    best, ok = attempt(hi)
    best = list(best)
    at_max = ok.clone()
    found = ok.clone()
    best_eps = hi.clone()
    for _ in range(steps - 1):
        if not late_success and not bool(at_max.any()):
            break
        mid = (lo + hi) / 2
        out, ok = attempt(mid)
        take = ok if late_success else ok & at_max
        best = [torch.where(take.view(-1, *([1] * (c.ndim - 1))), c, b) for c, b in zip(out, best)]
        best_eps = torch.where(take, mid, best_eps)
        found = found | take
        hi = torch.where(ok, mid, hi)
        lo = torch.where(ok, lo, mid)
    return best, best_eps, found
