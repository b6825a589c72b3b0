"""Per-sequence token statistics and the training loss: the one code path for training, DMC and LARK.

``sequence_statistics`` turns final hidden states and a response mask into per-sequence sums (float64):

* ``ce_sum``    Σ_t −log softmax(z_t)[y_t] over the response tokens (full vocabulary, exact);
* ``brier_sum`` Σ_t (1 − 2 p̃_t(y_t) + Σ_{v∈S_t} p̃_t(v)²) with p̃ the softmax renormalised over the top-K
  logits S_t (methods.md 1.2; K = vocabulary size gives the exact ‖e_y − π‖²);
* ``n_tokens``  the number of response tokens.

The LM head is applied only to the response positions and in chunks of ``chunk_size`` tokens, so a long
sequence never materialises (T, V) logits; under autograd each chunk is checkpointed (recomputed in the
backward pass), which bounds the memory to one chunk of logits. Logits are cast to float32 before the
log-softmax and the top-K, whatever the model dtype.

``reduce_loss`` combines the per-sequence sums with per-example weights (methods.md 1.6):

* ``reference``: normalise within the micro-batch, Σ w·CE / Σ w·T (token) or Σ w·ℓ̄ / Σ w (sequence), as
  the LARK reference trainers do; at micro-batch size 1 the weights cancel.
* ``paper``: importance weights normalised once over the global batch, Σ w·CE / T_global (token) or
  Σ w·ℓ̄ / n_global (sequence), scaled so Lightning's division by accumulation steps and DDP's gradient
  averaging give exactly that global value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch.utils.checkpoint import checkpoint

WEIGHT_MODES = ("reference", "paper")
REDUCTIONS = ("token", "sequence")


@dataclass
class SequenceStats:
    """Per-sequence sums over response tokens (float64, shape [B])."""

    ce_sum: torch.Tensor
    n_tokens: torch.Tensor
    brier_sum: torch.Tensor | None = None

    @property
    def ce_mean(self) -> torch.Tensor:
        return self.ce_sum / self.n_tokens.clamp(min=1)


def brier_top_k(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Top-K renormalised Brier score per row: 1 − 2·p̃(y) + Σ p̃², with p̃(y) = 0 outside the top-K."""
    k = min(k, logits.shape[-1])
    top_values, top_index = logits.float().topk(k, dim=-1)
    p = torch.softmax(top_values, dim=-1)
    p_label = (p * (top_index == labels[:, None])).sum(-1)
    return 1.0 - 2.0 * p_label + (p * p).sum(-1)


def _chunk_ce(head: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor, y: torch.Tensor, softcap) -> torch.Tensor:
    logits = head(h).float()
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    return torch.logsumexp(logits, dim=-1) - logits.gather(-1, y[:, None]).squeeze(-1)


def sequence_statistics(
    hidden: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
    input_ids: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    top_k: int | None = None,
    chunk_size: int = 1024,
    softcap: float | None = None,
    sequence_index: torch.Tensor | None = None,
    num_sequences: int | None = None,
) -> SequenceStats:
    """Per-sequence CE (and optionally top-K Brier) sums over the response tokens.

    Args:
        hidden: Final hidden states [B, T, H] (after the last norm).
        head: The LM head (a module or function H -> V).
        input_ids: Token ids [B, T].
        response_mask: Bool [B, T], True at label positions (token t is predicted from position t-1).
        top_k: Brier top-K; ``None`` skips the Brier score (training does not need it).
        chunk_size: Response tokens per LM-head chunk.
        softcap: Final-logit soft-capping of the model, if it has one (Gemma-2 style).
        sequence_index: For packed rows, [B, T] index of the sequence each token belongs to (output row);
            by default row b is sequence b.
        num_sequences: Number of output rows when ``sequence_index`` is given.
    """
    sel = response_mask[:, 1:].bool()
    rows, cols = sel.nonzero(as_tuple=True)
    h = hidden[:, :-1][rows, cols]
    y = input_ids[:, 1:][rows, cols]
    batch = hidden.shape[0]
    if sequence_index is not None:
        rows = sequence_index[:, 1:][rows, cols]
        batch = int(num_sequences)
    n = y.shape[0]
    ce_parts, brier_parts = [], []
    use_checkpoint = torch.is_grad_enabled() and n > chunk_size
    for start in range(0, max(n, 1), chunk_size):
        hc, yc = h[start : start + chunk_size], y[start : start + chunk_size]
        if hc.shape[0] == 0:
            break
        if use_checkpoint:
            ce_parts.append(checkpoint(_chunk_ce, head, hc, yc, softcap, use_reentrant=False))
        else:
            ce_parts.append(_chunk_ce(head, hc, yc, softcap))
        if top_k is not None:
            with torch.no_grad():
                logits = head(hc.detach()).float()
                if softcap:
                    logits = softcap * torch.tanh(logits / softcap)
                brier_parts.append(brier_top_k(logits, yc, top_k))
    device = hidden.device
    zeros = torch.zeros(batch, dtype=torch.float64, device=device)
    ce = torch.cat(ce_parts) if ce_parts else hidden.new_zeros(0)
    ce_sum = zeros.index_add(0, rows, ce.double())
    n_tokens = zeros.index_add(0, rows, torch.ones_like(rows, dtype=torch.float64))
    brier_sum = None
    if top_k is not None:
        brier = torch.cat(brier_parts) if brier_parts else hidden.new_zeros(0)
        brier_sum = zeros.index_add(0, rows, brier.double())
    return SequenceStats(ce_sum=ce_sum, n_tokens=n_tokens, brier_sum=brier_sum)


def reduce_loss(
    stats: SequenceStats,
    weights: torch.Tensor | None = None,
    *,
    mode: Literal["reference", "paper"] = "reference",
    reduction: Literal["token", "sequence"] = "token",
    global_tokens: float | torch.Tensor | None = None,
    global_examples: float | torch.Tensor | None = None,
    micro_batches_per_step: int = 1,
) -> torch.Tensor:
    """The micro-batch loss whose gradient, averaged by Lightning and DDP, is the chosen objective.

    Args:
        stats: Per-sequence sums of this micro-batch.
        weights: Per-example weights [B]; ``None`` means 1.
        mode: ``reference`` (normalise within the micro-batch) or ``paper`` (normalise over the global batch).
        reduction: ``token`` (mean over tokens) or ``sequence`` (mean of per-sequence token means).
        global_tokens: Response tokens in the global batch (``paper``/token).
        global_examples: Examples in the global batch (``paper``/sequence).
        micro_batches_per_step: world size x accumulation steps; undoes their averaging in ``paper`` mode.
    """
    if mode not in WEIGHT_MODES or reduction not in REDUCTIONS:
        raise ValueError(f"mode must be in {WEIGHT_MODES} and reduction in {REDUCTIONS}")
    w = torch.ones_like(stats.ce_sum) if weights is None else weights.to(stats.ce_sum)
    if mode == "reference":
        if reduction == "token":
            denom = (w * stats.n_tokens).sum()
            total = (w * stats.ce_sum).sum()
        else:
            denom = w.sum()
            total = (w * stats.ce_mean).sum()
        # A micro-batch whose weights are all zero contributes a graph-connected zero (as the reference).
        return (total / denom if denom > 0 else total * 0.0).float()
    if reduction == "token":
        if global_tokens is None:
            raise ValueError("paper mode with token reduction needs global_tokens")
        value = (w * stats.ce_sum).sum() / torch.as_tensor(global_tokens, dtype=torch.float64)
    else:
        if global_examples is None:
            raise ValueError("paper mode with sequence reduction needs global_examples")
        value = (w * stats.ce_mean).sum() / torch.as_tensor(global_examples, dtype=torch.float64)
    return (value * micro_batches_per_step).float()
