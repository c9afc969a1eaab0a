"""Temperature scaling recovers the temperature that produced the labels."""

from __future__ import annotations

import torch

from training.calibration import fit_temperature, negative_log_likelihood


def test_fit_recovers_an_overconfidence_factor() -> None:
    generator = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 7, generator=generator) * 2
    labels = torch.multinomial(torch.softmax(true_logits, 1), 1, generator=generator).squeeze(1)
    overconfident = true_logits * 3.0  # a network three times too sure of itself
    temperature = fit_temperature(overconfident, labels)
    assert abs(temperature - 3.0) < 0.25
    assert negative_log_likelihood(overconfident, labels, temperature) < negative_log_likelihood(
        overconfident, labels, 1.0
    )


def test_calibration_never_changes_the_ranking() -> None:
    logits = torch.randn(50, 7)
    labels = torch.randint(0, 7, (50,))
    temperature = fit_temperature(logits, labels)
    assert torch.equal((logits / temperature).argmax(1), logits.argmax(1))
