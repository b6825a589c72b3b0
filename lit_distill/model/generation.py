"""Greedy decoding settings for generation-based evaluation (``model.generation`` in the config)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GenerationConfig:
    """Greedy decoding for evaluation.

    Args:
        max_new_tokens: Generation budget per answer.
        samples_to_log: Generated answers written to TensorBoard as text at each evaluation.
    """

    max_new_tokens: int = 256
    samples_to_log: int = 4
