"""LARKCallback: rescores trajectories with the current student and re-selects among each problem's candidates.

At fit start (the student at initialisation, as the paper's offline selection) and every ``every_n_steps``
optimiser steps, the callback scores the pool, or a random subset of problems (always with all of a chosen
problem's candidates, since g-hat is defined per problem), with one no-grad forward pass per trajectory.
Scoring is sharded across ranks and the float64 statistics all-reduced; the per-problem maths
(rho, g-hat, chi-squared top-B weights: scoring/lark.py) then runs identically everywhere and rank 0's result
is broadcast, so every rank applies the same weights. The weights reach the data module:

* ``sample`` mode: within-source sampling weights. A problem's selected candidates share the mass its K
  candidates had (weight q_k * K), unselected candidates are never drawn, unscored problems are unchanged.
* ``loss`` mode: sampling is unchanged; the loss weight of a selected candidate is B * q_k (mean 1 within a
  problem, methods.md 1.6) and 0 for an unselected one; ``DistillModule.weight_mode`` decides how the weights
  are normalised (``reference`` or ``paper``).

Logged at each refresh: ``lark/rho_mean``, ``lark/selected_share/<source>``,
``lark/selected_share_teacher/<teacher>``, ``lark/loss_selected`` and ``lark/loss_unselected`` (the mean
per-token loss of the two groups), ``lark/seconds``, a g-hat histogram, and the paper's diagnostic
``lark/ghat_vs_loss_drop_spearman``: the rank correlation between g-hat at the previous refresh and each
trajectory's realised loss decrease since then (trajectories scored at both refreshes).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Literal

import lightning.pytorch as pl
import numpy as np
import torch

from lit_distill.callbacks.probing import ScoringError, score_rows
from lit_distill.callbacks.reporting import log_metrics, logger_step
from lit_distill.distributed import broadcast_object
from lit_distill.scoring.lark import score_pool, select_pool
from lit_distill.scoring.stats import spearman

log = logging.getLogger(__name__)
RULES = ("chi2", "softmax", "hard", "random")


class LARKCallback(pl.Callback):
    """Online LARK trajectory selection (methods.md section 1).

    Args:
        budget: Trajectories kept per problem (B): LARK's one hyperparameter (3 in the paper's examples).
        rule: ``chi2`` (LARK's chi-squared-regularised weights), ``softmax`` (softmax of g-hat / temperature
            over the top-B), ``hard`` (top-B, uniform), or ``random`` (B random candidates, uniform: a baseline).
        mode: ``sample`` (selection decides what is drawn) or ``loss`` (selection weights the loss).
        every_n_steps: Optimiser steps between refreshes; 0 scores only at fit start (offline LARK).
        problems_per_refresh: Problems rescored per refresh (random, with all their candidates); None = all.
        sources: Sources whose problems are scored; default all.
        temperature: For the ``softmax`` rule.
        top_k: Brier top-K (50 in the reference).
        batch_size: Trajectories per scoring forward pass.
        at_start: Score and select at fit start.
        seed: Seed of the problem subsets and of the ``random`` rule.
    """

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
        if budget < 1 or every_n_steps < 0:
            raise ValueError("budget must be >= 1 and every_n_steps >= 0")
        self.budget = budget
        self.rule = rule
        self.mode = mode
        self.every_n_steps = every_n_steps
        self.problems_per_refresh = problems_per_refresh
        self.source_names = sources
        self.temperature = temperature
        self.top_k = top_k
        self.batch_size = batch_size
        self.at_start = at_start
        self.seed = seed
        # State (saved in checkpoints).
        self.history: list[dict] = []
        self.last: dict[str, np.ndarray] | None = None  # rows, L, g_hat of the previous refresh
        self.last_step = -1
        self.seconds = 0.0

    # ---- hooks ---------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.history or not self.at_start:
            return  # resumed (weights are in the data module's state) or no start-up selection
        self._refresh(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if (
            self.every_n_steps
            and (batch_idx + 1) % trainer.accumulate_grad_batches == 0
            and step % self.every_n_steps == 0
            and step != self.last_step
            and step < trainer.max_steps
        ):
            self._refresh(trainer, pl_module)

    # ---- one refresh ---------------------------------------------------------------------------------
    def _rows_to_score(self, pool, step: int) -> np.ndarray:
        names = self.source_names or pool.names
        problems = pool.problems_of_sources([pool.source_index(n) for n in names])
        n = self.problems_per_refresh
        if n is not None and n < len(problems):
            rng = np.random.default_rng([self.seed, step, 0x1A2C])
            problems = np.sort(rng.choice(problems, size=n, replace=False))
        return pool.problem_rows(problems)

    def _select(self, pool, rows: np.ndarray, ce_mean: np.ndarray, brier_mean: np.ndarray, step: int):
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

    def _refresh(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        started = time.perf_counter()
        dm = trainer.datamodule
        pool = dm.pool
        step = trainer.global_step
        try:
            rows = self._rows_to_score(pool, step)
            stats = score_rows(pl_module, dm, rows, self.batch_size, self.top_k)
            n_tokens = stats[:, 1]
            scored = n_tokens > 0
            ce_mean = np.where(scored, stats[:, 0] / np.maximum(n_tokens, 1), np.nan)
            brier_mean = np.where(scored, stats[:, 2] / np.maximum(n_tokens, 1), np.nan)
            scores, selection = self._select(pool, rows, ce_mean, brier_mean, step)
        except Exception as e:
            raise ScoringError(f"LARK scoring failed at step {step}: {e}") from e
        selected = rows[selection.rows]
        weights = np.zeros(len(rows))
        weights[selection.rows] = selection.weights
        # Rank 0's weights everywhere: the ranks' streams must never diverge.
        weights = broadcast_object(weights, trainer.strategy)
        self._apply(dm, pool, rows, weights)
        self._log(trainer, pool, rows, selected, weights, ce_mean, scores, started)
        self.last = {"rows": rows, "L": ce_mean, "g_hat": scores.g_hat, "rho": scores.rho}
        self.last_step = step

    def _apply(self, dm, pool, rows: np.ndarray, weights: np.ndarray) -> None:
        problems = pool.problem_of[rows]
        _, inverse, counts = np.unique(problems, return_inverse=True, return_counts=True)
        if self.mode == "sample":
            # q * K keeps each problem's total sampling mass equal to its candidate count, as before selection.
            dm.set_sample_weights(rows, weights * counts[inverse])
            empty = [n for s, n in enumerate(pool.names) if not dm.sampler.drawable()[s]]
            if empty:
                log.warning("LARK selected no trajectory of source(s) %s; they are not drawn until reselected", empty)
        else:
            dm.set_loss_weights(rows, weights * self.budget)

    def _log(self, trainer, pool, rows, selected, weights, ce_mean, scores, started: float) -> None:
        elapsed = time.perf_counter() - started
        self.seconds += elapsed
        chosen = weights > 0
        total = weights.sum()
        metrics = {
            "lark/seconds": elapsed,
            "lark/rho_mean": float(np.nanmean(scores.rho)),
            "lark/scored": float(len(rows)),
            "lark/loss_selected": float(np.nansum(ce_mean * weights) / max(total, 1e-30)),
        }
        if (~chosen).any():
            metrics["lark/loss_unselected"] = float(np.nanmean(ce_mean[~chosen]))
        src = pool.source_of[rows]
        for s, name in enumerate(pool.names):
            metrics[f"lark/selected_share/{name}"] = float(weights[src == s].sum() / max(total, 1e-30))
        teachers = np.array([pool.teachers[int(r)] or "unknown" for r in rows])
        for t in np.unique(teachers):
            metrics[f"lark/selected_share_teacher/{t}"] = float(weights[teachers == t].sum() / max(total, 1e-30))
        if self.last is not None:
            common, prev_i, now_i = np.intersect1d(self.last["rows"], rows, return_indices=True)
            if len(common) >= 3:
                drop = self.last["L"][prev_i] - ce_mean[now_i]
                metrics["lark/ghat_vs_loss_drop_spearman"] = spearman(self.last["g_hat"][prev_i], drop)
                log_drop = np.log(self.last["L"][prev_i]) - np.log(ce_mean[now_i])
                metrics["lark/rho_vs_log_loss_drop_spearman"] = spearman(self.last["rho"][prev_i], log_drop)
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
            "step %d LARK: scored %d trajectories, kept %d (budget %d, %s/%s), rho %.3f [%.1fs]",
            trainer.global_step, len(rows), len(selected), self.budget, self.rule, self.mode,
            metrics["lark/rho_mean"], elapsed,
        )  # fmt: skip

    # ---- state ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        last = None if self.last is None else {k: torch.from_numpy(np.asarray(v)) for k, v in self.last.items()}
        return {"history": self.history, "last": last, "last_step": self.last_step, "seconds": self.seconds}

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state["history"])
        self.last = None if state["last"] is None else {k: v.numpy() for k, v in state["last"].items()}
        self.last_step = int(state["last_step"])
        self.seconds = float(state["seconds"])
