"""LARKCallback: rescores trajectories with the current student and re-selects among each problem's candidates.

At the start of training (the student at initialisation, as the paper's offline selection) the callback
scores every problem of the selected sources, so no problem trains on unselected candidates; then every
``every_n_steps`` optimiser steps it rescores either all problems or, with ``problems_per_refresh``, the next
chunk of a seeded rotation: each cycle of ``ceil(problems / problems_per_refresh)`` refreshes rescores every
problem exactly once (always with all of a problem's candidates, since g-hat is defined per problem). Each
trajectory costs one no-grad forward pass. The schedule is ``SelectionCallback``'s.
Scoring is sharded across ranks and the float64 statistics all-reduced; the per-problem maths
(rho, g-hat, chi-squared top-B weights: scoring/lark.py) then runs identically everywhere and rank 0's result
is broadcast, so every rank applies the same weights. The weights reach the data module:

* ``sample`` mode: within-source sampling weights, which the sampler turns into draw frequencies (a pass
  draws each example in proportion to its weight). A selected candidate gets weight q_k * K, so a problem
  keeps the K draws per pass its K candidates had at weight 1 and shares them in proportion to q;
  unselected candidates are never drawn.
* ``loss`` mode: sampling is unchanged; the loss weight of a selected candidate is B * q_k (mean 1 within a
  problem, methods.md 1.6) and 0 for an unselected one; ``DistillModule.weight_mode`` decides how the weights
  are normalised (``reference`` or ``paper``).

Logged at each refresh: ``lark/rho_mean``, ``lark/selected_share/<source>``,
``lark/selected_share_teacher/<teacher>``, ``lark/loss_selected`` and ``lark/loss_unselected`` (the mean
per-token loss of the two groups), ``lark/seconds``, a g-hat histogram, and the paper's diagnostic
``lark/ghat_vs_loss_drop_spearman``: the rank correlation between each trajectory's g-hat when it was last
scored and its realised loss decrease since then, with ``lark/loss_vs_loss_drop_spearman`` (the same for
the loss alone) as its baseline, since g-hat grows with the loss and so does an absolute drop.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Literal

import lightning.pytorch as pl
import numpy as np
import torch

from lit_distill.callbacks.reporting import log_metrics, logger_step
from lit_distill.callbacks.selection import SelectionCallback
from lit_distill.scorer import score_rows
from lit_distill.scoring.lark import score_pool, select_pool
from lit_distill.scoring.stats import spearman
from lit_distill.selection_data import PoolView, SelectionData, selection_data

log = logging.getLogger(__name__)
RULES = ("chi2", "softmax", "hard", "random")


def loss_drop_diagnostics(prev_loss, prev_g_hat, prev_rho, loss) -> dict[str, float]:
    """Rank correlations of each trajectory's earlier scores with its realised loss decrease since then.

    All arguments are per-trajectory arrays over the same rows; rows never scored before (NaN) are skipped.
    ``loss_vs_loss_drop`` is the baseline that ``ghat_vs_loss_drop`` must beat to say more than "high loss
    falls more".
    """
    seen = np.isfinite(prev_loss) & np.isfinite(loss)
    if seen.sum() < 3:
        return {}
    drop = prev_loss[seen] - loss[seen]
    log_drop = np.log(prev_loss[seen]) - np.log(loss[seen])
    return {
        "lark/ghat_vs_loss_drop_spearman": spearman(prev_g_hat[seen], drop),
        "lark/loss_vs_loss_drop_spearman": spearman(prev_loss[seen], drop),
        "lark/rho_vs_log_loss_drop_spearman": spearman(prev_rho[seen], log_drop),
    }


class LARKCallback(SelectionCallback):
    """Online LARK trajectory selection (methods.md section 1).

    Args:
        budget: Trajectories kept per problem (B): LARK's one hyperparameter (3 in the paper's examples).
        rule: ``chi2`` (LARK's chi-squared-regularised weights), ``softmax`` (softmax of g-hat / temperature
            over the top-B), ``hard`` (top-B, uniform), or ``random`` (B random candidates, uniform: a baseline).
        mode: ``sample`` (selection decides what is drawn) or ``loss`` (selection weights the loss).
        every_n_steps: Optimiser steps between refreshes; 0 scores only at the start (offline LARK).
        problems_per_refresh: Problems rescored per refresh, the next chunk of a seeded rotation (with all
            their candidates), so every problem is rescored once every ``ceil(problems / this)`` refreshes;
            None = all at every refresh. The start-up selection always scores every problem.
        sources: Sources whose problems are scored; default all.
        temperature: For the ``softmax`` rule.
        top_k: Brier top-K (50 in the reference).
        batch_size: Trajectories per scoring forward pass.
        at_start: Score and select every problem before the first step. Without it, problems keep uniform
            weights until the rotation first reaches them.
        seed: Seed of the rotation order and of the ``random`` rule.
    """

    metric_prefix = "lark"
    label = "LARK scoring"

    def __init__(
        self,
        budget: int = 3,
        rule: Literal["chi2", "softmax", "hard", "random"] = "chi2",
        mode: Literal["sample", "loss"] = "sample",
        every_n_steps: int = 200,
        problems_per_refresh: int | None = None,
        sources: list[str] | None = None,
        temperature: float = 1.0,
        top_k: int = 50,
        batch_size: int = 32,
        at_start: bool = True,
        seed: int = 0,
    ) -> None:
        if rule not in RULES or mode not in ("sample", "loss"):
            raise ValueError(f"rule must be one of {RULES} and mode 'sample' or 'loss'")
        if budget < 1:
            raise ValueError(f"lark.budget must be >= 1 (trajectories kept per problem), got {budget}")
        if problems_per_refresh is not None and problems_per_refresh < 1:
            raise ValueError("lark.problems_per_refresh must be >= 1 (or null for all problems)")
        if every_n_steps < 0:
            raise ValueError(f"lark.every_n_steps must be >= 0 (0 = only at fit start), got {every_n_steps}")
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"lark.temperature must be a finite number > 0, got {temperature}")
        if top_k < 1 or batch_size < 1:
            raise ValueError(f"lark.top_k and lark.batch_size must be >= 1, got {top_k}, {batch_size}")
        super().__init__(every_n_steps=every_n_steps, at_start=at_start)
        self.budget = budget
        self.rule = rule
        self.mode = mode
        self.problems_per_refresh = problems_per_refresh
        self.source_names = sources
        self.temperature = temperature
        self.top_k = top_k
        self.batch_size = batch_size
        self.seed = seed
        # State (saved in checkpoints).
        self.history: list[dict] = []
        self.rotation = 0  # rotation chunks rescored so far
        # Each row's statistics when it was last scored (NaN = never), for the loss-drop diagnostics.
        self.last: dict[str, np.ndarray] | None = None

    # ---- one refresh ---------------------------------------------------------------------------------
    def _problems(self, pool: PoolView) -> np.ndarray:
        names = self.source_names or pool.names
        return pool.problems_of_sources([pool.source_index(n) for n in names])

    def rotation_chunk(self, problems: np.ndarray, index: int) -> np.ndarray:
        """Problems of rotation chunk ``index``: cycle ``c`` is a seeded permutation cut into chunks."""
        n = self.problems_per_refresh
        chunks = math.ceil(len(problems) / n)
        cycle, k = divmod(index, chunks)
        order = np.random.default_rng([self.seed, cycle, 0x1A2C]).permutation(len(problems))
        return np.sort(problems[order[k * n : (k + 1) * n]])

    def _rows_to_score(self, pool: PoolView, at_start: bool) -> np.ndarray:
        problems = self._problems(pool)
        n = self.problems_per_refresh
        if not at_start and n is not None and n < len(problems):
            problems = self.rotation_chunk(problems, self.rotation)
        return pool.problem_rows(problems)

    def _select(self, pool: PoolView, rows: np.ndarray, ce_mean: np.ndarray, brier_mean: np.ndarray, step: int):
        problems = pool.problem_of[rows]
        scores = score_pool(problems, ce_mean, brier_mean)
        energies = scores.g_hat
        rule = self.rule
        if rule == "random":  # baseline: B candidates uniformly at random per problem, equal weights
            energies = np.random.default_rng([self.seed, step, 0x5EED]).random(len(rows))
            rule = "hard"
        selection = select_pool(
            problems,
            pool.candidate_id[rows],
            energies,
            self.budget,
            rule=rule,
            temperature=self.temperature,
            strict=False,
        )
        return scores, selection

    def run(self, trainer: pl.Trainer, pl_module: pl.LightningModule, at_start: bool) -> None:
        started = time.perf_counter()
        dm = selection_data(trainer.datamodule, self.label)
        pool = dm.pool_view
        step = trainer.global_step
        rows = self._rows_to_score(pool, at_start)
        stats = score_rows(pl_module, dm, rows, self.batch_size, self.top_k)
        n_tokens = stats[:, 1]
        scored = n_tokens > 0
        ce_mean = np.where(scored, stats[:, 0] / np.maximum(n_tokens, 1), np.nan)
        brier_mean = np.where(scored, stats[:, 2] / np.maximum(n_tokens, 1), np.nan)
        scores, selection = self._select(pool, rows, ce_mean, brier_mean, step)
        selected = rows[selection.rows]
        weights = np.zeros(len(rows))
        weights[selection.rows] = selection.weights
        weights = self.decide(trainer, weights)  # rank 0's weights everywhere: the streams must never split
        self._apply(dm, pool, rows, weights)
        if self.last is None:
            self.last = {k: np.full(len(pool), np.nan, dtype=np.float32) for k in ("L", "g_hat", "rho")}
        diagnostics = loss_drop_diagnostics(
            self.last["L"][rows], self.last["g_hat"][rows], self.last["rho"][rows], ce_mean
        )
        self._log(trainer, pool, rows, selected, weights, ce_mean, scores, diagnostics)
        self.history[-1]["lark/seconds"] = time.perf_counter() - started  # logged by SelectionCallback
        for key, value in (("L", ce_mean), ("g_hat", scores.g_hat), ("rho", scores.rho)):
            self.last[key][rows] = value
        if not at_start and self.problems_per_refresh is not None:
            self.rotation += 1

    def _apply(self, dm: SelectionData, pool: PoolView, rows: np.ndarray, weights: np.ndarray) -> None:
        problems = pool.problem_of[rows]
        _, inverse, counts = np.unique(problems, return_inverse=True, return_counts=True)
        if self.mode == "sample":
            # Draw frequency follows the weight, so q * K gives a problem the K draws per pass its K candidates
            # had at weight 1 (its share of the source is unchanged) and splits them in proportion to q.
            dm.set_sample_weights(rows, weights * counts[inverse])
            drawable = dm.drawable_sources()
            empty = [n for s, n in enumerate(pool.names) if not drawable[s]]
            if empty:
                log.warning("LARK selected no trajectory of source(s) %s; they are not drawn until reselected", empty)
        else:
            dm.set_loss_weights(rows, weights * self.budget)

    def _log(self, trainer, pool, rows, selected, weights, ce_mean, scores, diagnostics) -> None:
        chosen = weights > 0
        total = weights.sum()
        metrics = {
            "lark/rho_mean": float(np.nanmean(scores.rho)),
            "lark/scored": float(len(rows)),
            "lark/loss_selected": float(np.nansum(ce_mean * weights) / max(total, 1e-30)),
            **diagnostics,
        }
        if (~chosen).any():
            metrics["lark/loss_unselected"] = float(np.nanmean(ce_mean[~chosen]))
        src = pool.source_of[rows]
        for s, name in enumerate(pool.names):
            metrics[f"lark/selected_share/{name}"] = float(weights[src == s].sum() / max(total, 1e-30))
        teachers = np.array([pool.teachers[int(r)] or "unknown" for r in rows])
        for t in np.unique(teachers):
            metrics[f"lark/selected_share_teacher/{t}"] = float(weights[teachers == t].sum() / max(total, 1e-30))
        metrics = {k: v for k, v in metrics.items() if not math.isnan(v)}
        log_metrics(trainer, metrics)
        if trainer.is_global_zero:
            finite = scores.g_hat[np.isfinite(scores.g_hat)]
            for logger in trainer.loggers:
                writer = getattr(logger, "experiment", None)
                if hasattr(writer, "add_histogram") and len(finite):
                    writer.add_histogram("lark/g_hat", finite, global_step=logger_step(trainer))
        self.history.append({"step": trainer.global_step, "scored": len(rows), "selected": len(selected), **metrics})
        log.info(
            "step %d LARK: scored %d trajectories, kept %d (budget %d, %s/%s), rho %.3f",
            trainer.global_step, len(rows), len(selected), self.budget, self.rule, self.mode,
            metrics["lark/rho_mean"],
        )  # fmt: skip

    # ---- state ---------------------------------------------------------------------------------------
    def selection_state(self) -> dict:
        last = None if self.last is None else {k: torch.from_numpy(v) for k, v in self.last.items()}
        return {"history": self.history, "last": last, "rotation": self.rotation}

    def load_selection_state(self, state: dict) -> None:
        self.history = list(state["history"])
        self.last = None if state["last"] is None else {k: v.numpy().copy() for k, v in state["last"].items()}
        self.rotation = int(state.get("rotation", 0))
