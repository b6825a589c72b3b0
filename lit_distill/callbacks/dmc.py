"""DMCCallback: measures each source's Data-Model Compatibility during training and reshapes the mixture.

At fit start and every ``every_n_steps`` optimiser steps, on fixed probes drawn once per source (whole
problems, held out of sampling for the whole run, so DMC always measures data the student never trained on):

* R (relative difficulty: mean surprisal per trajectory over the pool's) and the pooled learnability from
  one no-grad forward pass over the probe trajectories (the same statistics code as the training loss),
  every rank scoring an even shard;
* C (capability) by greedy generation on the held-out probe questions, on its own cadence
  (``capability_every_n_steps``) and held fixed in between;
* Q (quality) once, from all of the source's trajectories against their reference answers.

Per-item statistics are all-reduced as float64 sums, so every rank computes the same DMC; rank 0's
weights are broadcast anyway, so floating-point differences can never split the ranks' data streams. The
new weights go to the sampler and apply from the next optimiser step. Everything is logged (``dmc/*``,
``mixture/*``) and a stacked-area figure of the mixture is written to TensorBoard and ``mixture.png``.
"""

from __future__ import annotations

import logging
import math
import time
from functools import partial

import lightning.pytorch as pl
import numpy as np
import torch

from lit_distill.callbacks.reporting import add_figure, log_metrics, mixture_figure
from lit_distill.callbacks.selection import SelectionCallback
from lit_distill.scorer import answer_rows, score_rows
from lit_distill.scoring.dmc import DMCConfig, ProbeItems, compute_dmc, quality
from lit_distill.scoring.policies import HardSwitchState, MixturePolicyConfig, next_mixture
from lit_distill.selection_data import PoolView, SelectionData, selection_data

log = logging.getLogger(__name__)
_NEEDS_CAPABILITY = ("A", "B", "E")


class DMCProbe:
    """The fixed probes of every source and the measurements DMC is computed from.

    Args:
        pool: The training pool.
        probe_size: Trajectories per source (forward terms: difficulty, learnability).
        probe_questions: Problems per source the student answers (capability).
        seed: Seed of the probe draw (fixed, so changes in DMC are changes of the student, not sampling noise).
    """

    def __init__(self, pool: PoolView, probe_size: int, probe_questions: int, seed: int) -> None:
        self.names = list(pool.names)
        splits = {n: pool.probe_split(s, probe_size, probe_questions, seed) for s, n in enumerate(self.names)}
        self.rows = {n: p.trajectories for n, p in splits.items()}
        self.questions = {n: p.questions for n, p in splits.items()}
        # Every row of every probe problem: the callback holds them out of sampling for the whole run.
        self.held_out = np.concatenate([p.held_out for p in splits.values()])
        self.quality = {}
        for s, n in enumerate(self.names):
            q = pool.quality[pool.rows(s)]
            self.quality[n] = quality(int((q == 1).sum()), int((q >= 0).sum()))

    def _per_source(self, rows_by_name: dict[str, np.ndarray], score) -> dict[str, np.ndarray]:
        """One ``score`` pass over every source's rows together (fewer, fuller batches), split back by source."""
        rows = np.concatenate([rows_by_name[n] for n in self.names])
        values = score(rows)
        bounds = np.cumsum([0] + [len(rows_by_name[n]) for n in self.names])
        return {n: values[bounds[i] : bounds[i + 1]] for i, n in enumerate(self.names)}

    def forward_terms(self, module, data: SelectionData, batch_size: int, top_k: int) -> dict[str, np.ndarray]:
        """Per-trajectory (ce_sum, n_tokens, brier_sum) of each source's probe (every rank takes part)."""
        return self._per_source(self.rows, partial(score_rows, module, data, batch_size=batch_size, top_k=top_k))

    def capability_terms(
        self, module, data: SelectionData, batch_size: int, max_new_tokens: int
    ) -> dict[str, np.ndarray]:
        """Per-question correctness (1/0) of the student's greedy answers (every rank takes part)."""
        answer = partial(answer_rows, module, data, batch_size=batch_size, max_new_tokens=max_new_tokens)
        return self._per_source(self.questions, answer)

    @staticmethod
    def items(forward: dict[str, np.ndarray], correct: dict[str, np.ndarray]) -> dict[str, ProbeItems]:
        return {
            n: ProbeItems(nll_sum=f[:, 0], n_tokens=f[:, 1], brier_sum=f[:, 2], correct=correct.get(n))
            for n, f in forward.items()
        }


class DMCCallback(SelectionCallback):
    """Dynamic DMC-driven dataset mixture (methods.md section 3).

    Args:
        every_n_steps: Optimiser steps between evaluations (the forward-only terms R and learnability).
        dmc: Which DMC variant and its constants (A = Q(1-C)exp(-kappa(R-1)) by default; B, C and E are
            the alternatives of methods.md 3.2). R is the mean summed NLL per trajectory over the pool's.
        policy: How DMC becomes weights: ``power`` (weights ~ DMC^(1/T) after shrinking by the bootstrap se,
            with a coverage floor and EMA) or ``hard`` switching with se hysteresis.
        capability_every_n_steps: Steps between capability (generation) measurements; default
            ``every_n_steps``; 0 measures it only at fit start.
        probe_size: Trajectories per source in the fixed probe (forward terms); all candidates of their
            problems are held out of training.
        probe_questions: Problems per source whose questions the student answers (capability); held out of
            training with all their candidates.
        batch_size: Sequences per scoring forward pass / prompts per generation batch.
        max_new_tokens: Generation budget for capability; default the model's evaluation budget.
        top_k: Brier top-K for the pooled learnability (variant C).
        apply: Reshape the mixture (True) or only measure and log (False).
        apply_at_start: Use the DMC at step 0 for the first steps (static DMC selection); otherwise keep the
            configured initial mixture until the first periodic evaluation.
        seed: Seed of the probe draw (which problems are held out).
    """

    metric_prefix = "dmc"
    label = "DMC scoring"

    def __init__(
        self,
        every_n_steps: int = 100,
        dmc: DMCConfig | None = None,
        policy: MixturePolicyConfig | None = None,
        capability_every_n_steps: int | None = None,
        probe_size: int = 64,
        probe_questions: int = 32,
        batch_size: int = 32,
        max_new_tokens: int | None = None,
        top_k: int = 50,
        apply: bool = True,
        apply_at_start: bool = True,
        seed: int = 0,
    ) -> None:
        if every_n_steps < 1:
            raise ValueError(f"dmc.every_n_steps must be >= 1, got {every_n_steps}")
        if capability_every_n_steps is not None and capability_every_n_steps < 0:
            raise ValueError(
                f"dmc.capability_every_n_steps must be >= 0 (0 = only at fit start), got {capability_every_n_steps}"
            )
        sizes = {"probe_size": probe_size, "probe_questions": probe_questions, "batch_size": batch_size}
        for key, value in {**sizes, "top_k": top_k, "max_new_tokens": max_new_tokens}.items():
            if value is not None and value < 1:
                raise ValueError(f"dmc.{key} must be >= 1, got {value}")
        super().__init__(every_n_steps, at_start=True)
        self.config = dmc or DMCConfig()
        self.policy = policy or MixturePolicyConfig()
        self.capability_every = every_n_steps if capability_every_n_steps is None else capability_every_n_steps
        self.probe_size = probe_size
        self.probe_questions = probe_questions
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.top_k = top_k
        self.apply = apply
        self.apply_at_start = apply_at_start
        self.seed = seed
        self.needs_capability = self.config.variant in _NEEDS_CAPABILITY
        # State (saved in checkpoints).
        self.history: list[dict] = []
        self.hard_state = HardSwitchState()
        self.capability: dict[str, float] = {}
        self.correct: dict[str, np.ndarray] = {}
        self.capability_step = -1
        self.probe: DMCProbe | None = None

    # ---- setup ---------------------------------------------------------------------------------------
    def _prepare(self, dm: SelectionData) -> None:
        if self.probe is not None:
            return
        self.probe = DMCProbe(dm.pool_view, self.probe_size, self.probe_questions, self.seed)
        restored = getattr(self, "_restored_probes", None)
        if restored is not None and any(
            key in restored and not np.array_equal(restored[key], now) for key, now in self._probe_state().items()
        ):
            raise ValueError(
                "the pool changed since the checkpoint: the DMC probes drawn now differ from the saved ones"
            )
        # Held out for the whole run (also when only monitoring): DMC must measure unseen data, or the most
        # drawn source gets the lowest probe loss and capability measures memorisation (methods.md 3.6).
        dm.hold_out(self.probe.held_out)
        held = {s.name: s.held_out for s in dm.pool_view.summary()}
        log.info("DMC probes held out of training (rows per source): %s", held)
        for n in self.probe.names:
            if self.needs_capability and len(self.probe.questions[n]) == 0:
                raise ValueError(
                    f"DMC variant {self.config.variant} needs the student's pass rate, but source '{n}' has no "
                    "reference answers; use variant C, or give the source an `answer` field"
                )

    # ---- schedule (SelectionCallback) ---------------------------------------------------------------
    def prepare(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._prepare(selection_data(trainer.datamodule, self.label))

    def run(self, trainer: pl.Trainer, pl_module: pl.LightningModule, at_start: bool) -> None:
        self._evaluate(trainer, pl_module, apply=self.apply and (self.apply_at_start or not at_start))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_fit_end(trainer, pl_module)
        if trainer.is_global_zero and self.history:
            self._write_figure(trainer)

    # ---- one evaluation ------------------------------------------------------------------------------
    def _measure(self, trainer, pl_module) -> dict[str, ProbeItems]:
        dm = selection_data(trainer.datamodule, self.label)
        forward = self.probe.forward_terms(pl_module, dm, self.batch_size, self.top_k)
        step = trainer.global_step
        due = self.capability_step < 0 or (
            self.capability_every > 0 and step - self.capability_step >= self.capability_every
        )
        if self.needs_capability and due:
            budget = self.max_new_tokens or pl_module.generation.max_new_tokens
            self.correct = self.probe.capability_terms(pl_module, dm, self.batch_size, budget)
            self.capability_step = step
        return self.probe.items(forward, self.correct)

    def _evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule, apply: bool) -> None:
        started = time.perf_counter()
        dm = selection_data(trainer.datamodule, self.label)
        names = dm.source_names
        items = self._measure(trainer, pl_module)  # failures become a ScoringError in SelectionCallback._run
        results = compute_dmc(items, self.probe.quality, self.config)
        previous = dm.current_source_weights()
        weights = previous
        if apply:
            scores = np.array([results[n].value for n in names])
            se = np.array([results[n].se for n in names])
            # Compute on rank 0 and broadcast, so the ranks' streams can never diverge.
            new, hard = next_mixture(self.policy, previous, scores, se, self.hard_state)
            weights, self.hard_state = self.decide(trainer, (new, hard))
            dm.set_source_weights(weights)
        step = trainer.global_step
        elapsed = time.perf_counter() - started
        self.history.append(
            {
                "step": step,
                "weights": [float(w) for w in weights],
                "dmc": [results[n].value for n in names],
                "se": [results[n].se for n in names],
                "capability": [results[n].capability for n in names],
                "difficulty": [results[n].difficulty for n in names],
                "quality": [results[n].quality for n in names],
                "seconds": elapsed,
            }
        )
        self._log(trainer, results, weights, elapsed)

    def _log(self, trainer, results, weights, elapsed: float) -> None:
        if not trainer.is_global_zero:
            return
        names = trainer.datamodule.source_names
        metrics = {}
        for n, w in zip(names, weights, strict=True):
            r = results[n]
            metrics.update(
                {
                    f"dmc/{n}": r.value,
                    f"dmc/se/{n}": r.se,
                    f"dmc/quality/{n}": r.quality,
                    f"dmc/difficulty/{n}": r.difficulty,
                    f"dmc/learnability/{n}": r.learnability,
                    f"mixture/{n}": float(w),
                }
            )
            if not math.isnan(r.capability):
                metrics[f"dmc/capability/{n}"] = r.capability
        log_metrics(trainer, {k: float(v) for k, v in metrics.items() if not math.isnan(float(v))})
        table = ", ".join(f"{n} {results[n].value:.3f}->{w:.2f}" for n, w in zip(names, weights, strict=True))
        log.info("step %d DMC (value->weight): %s [%.1fs]", trainer.global_step, table, elapsed)
        self._write_figure(trainer)  # the stacked-area figure grows with every update, not only at fit end

    def _write_figure(self, trainer: pl.Trainer) -> None:
        names = trainer.datamodule.source_names
        steps = [h["step"] for h in self.history]
        weights = np.array([h["weights"] for h in self.history])
        fig = mixture_figure(steps, weights, names, trainer.global_step, f"DMC-{self.config.variant} mixture")
        add_figure(trainer, "mixture/stacked", fig, "mixture.png")

    # ---- state ---------------------------------------------------------------------------------------
    def selection_state(self) -> dict:
        return {
            "history": self.history,
            "hard_state": self.hard_state.state_dict(),
            "correct": {n: torch.from_numpy(c) for n, c in self.correct.items()},
            "capability_step": self.capability_step,
            **{key: torch.from_numpy(rows) for key, rows in self._probe_state().items()},
        }

    def _probe_state(self) -> dict[str, np.ndarray]:
        """The probe rows as flat arrays (checkpointed, and compared on resume)."""
        if self.probe is None:
            return {}
        p = self.probe
        return {
            "probe_trajectories": np.concatenate([p.rows[n] for n in p.names]),
            "probe_questions": np.concatenate([p.questions[n] for n in p.names]),
            "probe_held_out": p.held_out,
        }

    def load_selection_state(self, state: dict) -> None:
        self.history = list(state["history"])
        self.hard_state.load_state_dict(state["hard_state"])
        self.correct = {n: c.numpy() for n, c in state["correct"].items()}
        self.capability_step = int(state["capability_step"])
        self._restored_probes = {k: v.numpy() for k, v in state.items() if k.startswith("probe_")}
