"""Temperature scaling: one scalar fitted on the validation split, so scores mean probabilities.

A network trained with a weighted loss is over- or under-confident; dividing its logits by a
temperature T minimises the validation negative log-likelihood without changing its ranking
(AUROC is unchanged), which is why it is the standard post-hoc fix (Guo et al., 2017).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 200) -> float:
    """The T > 0 that minimises NLL of ``softmax(logits / T)`` against ``labels``.

    ``logits`` is (N, C) float, ``labels`` (N,) int64. Optimised over log T so T stays positive.
    """
    if logits.ndim != 2 or labels.ndim != 1 or len(logits) != len(labels):
        raise ValueError("expected logits (N, C) and labels (N,)")
    logits = logits.detach().double()
    labels = labels.detach().long()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def negative_log_likelihood(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float
) -> float:
    """Mean NLL of the temperature-scaled probabilities: the quantity the fit minimises."""
    return float(F.cross_entropy(logits.double() / temperature, labels.long()))
