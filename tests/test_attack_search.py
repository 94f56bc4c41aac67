"""The one binary search over the budget (`submission.attacks.framework.search.search_budget`), used by pgd-l2
(late_success=True) and pgd-dct (late_success=False)."""

from __future__ import annotations

import pytest
import torch

from submission.attacks.framework.search import search_budget


def _attempts(rule):
    """attempt(eps) -> ([eps as an (N, 1) 'image'], rule(eps)), recording every budget tried."""
    tried = []

    def attempt(eps):
        tried.append(eps.clone())
        return [eps.view(-1, 1).clone()], rule(eps)

    return attempt, tried


@pytest.mark.parametrize("late", [True, False])
def test_monotone_images_find_the_smallest_budget_within_the_search_precision(late):
    need = torch.tensor([10.0, 700.0, 1999.0])  # adversarial iff eps >= need
    attempt, tried = _attempts(lambda eps: eps >= need)
    (best,), best_eps, found = search_budget(attempt, 2000.0, 8, 3, torch.device("cpu"), late_success=late)
    assert len(tried) == 8 and found.all()
    assert (best_eps >= need).all() and (best_eps - need < 2000.0 / 2 ** 7 + 1e-3).all()
    assert torch.equal(best[:, 0], best_eps)


def test_an_image_that_fails_at_eps_max_takes_a_later_success_only_with_late_success():
    """Not monotone: image 0 is adversarial only for 900 <= eps < 1100 (e.g. PGD whose step grows with eps),
    image 1 never. Budgets tried: 2000, 1000, 500, 750."""
    rule = lambda eps: torch.stack([(eps[0] >= 900.0) & (eps[0] < 1100.0), torch.tensor(False)])  # noqa: E731
    attempt, _ = _attempts(rule)
    (best,), best_eps, found = search_budget(attempt, 2000.0, 4, 2, torch.device("cpu"), late_success=True)
    assert found.tolist() == [True, False] and best_eps[0] == 1000.0 and best[0, 0] == 1000.0
    assert best_eps[1] == 2000.0 and best[1, 0] == 2000.0  # never found: keeps the eps_max result

    attempt, tried = _attempts(rule)
    (best,), best_eps, found = search_budget(attempt, 2000.0, 4, 2, torch.device("cpu"), late_success=False)
    assert found.tolist() == [False, False] and best_eps.tolist() == [2000.0, 2000.0]
    assert len(tried) == 1  # nothing adversarial at eps_max: the search stops


def test_one_step_is_the_eps_max_attempt_only():
    attempt, tried = _attempts(lambda eps: eps > 0)
    _, best_eps, found = search_budget(attempt, 5.0, 1, 2, torch.device("cpu"), late_success=True)
    assert len(tried) == 1 and best_eps.tolist() == [5.0, 5.0] and found.all()
