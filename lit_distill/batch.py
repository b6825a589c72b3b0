"""The training batch layout shared by the data layer (which builds batches) and the model (which reads them).

A training micro-batch (``data.collate.collate_train``) is a dict of tensors: the student's inputs below, plus
``loss_weight``, ``source``, ``index`` (pool row of each example), ``input_tokens``, ``global_tokens`` and
``global_examples`` (the whole optimiser step's response tokens and examples, for normalising the loss once).
Padded batches carry ``attention_mask``; packed ones carry ``position_ids``, ``sequence_index`` and
``num_sequences`` instead (absent keys read as None).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The keyword arguments of ``model.student.Student.forward`` that come from the batch.
STUDENT_INPUTS = (
    "input_ids",
    "attention_mask",
    "response_mask",
    "position_ids",
    "sequence_index",
    "num_sequences",
)


def student_inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of a training-format batch that ``Student.forward`` takes (None where absent)."""
    return {k: batch.get(k) for k in STUDENT_INPUTS}
