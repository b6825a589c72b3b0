"""Held-out prompts with reference answers, for generation-based evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from lit_distill.data.collate import pad_left


@dataclass
class PromptSet:
    """Tokenised prompts (with the generation prompt) and their reference answers.

    ``source`` indexes ``names`` (the evaluation set each prompt belongs to).
    """

    names: list[str]
    prompts: list[np.ndarray]
    answers: list[str]
    source: np.ndarray

    def __len__(self) -> int:
        return len(self.prompts)


class ShardedPrompts(Dataset):
    """This rank's share of a prompt set; padded items (invalid) keep all ranks in step."""

    def __init__(self, prompts: PromptSet, indices: np.ndarray, valid: np.ndarray) -> None:
        self.prompts, self.indices, self.valid = prompts, indices, valid

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        j = int(self.indices[i])
        return {
            "ids": self.prompts.prompts[j],
            "answer": self.prompts.answers[j],
            "source": int(self.prompts.source[j]),
            "valid": bool(self.valid[i]),
        }


class PromptCollator:
    """Left-pads prompts for batched greedy generation."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: Sequence[dict]) -> dict:
        ids, mask = pad_left([it["ids"] for it in items], self.pad_id)
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "answers": [it["answer"] for it in items],
            "source": torch.tensor([it["source"] for it in items], dtype=torch.long),
            "valid": torch.tensor([it["valid"] for it in items], dtype=torch.bool),
        }
