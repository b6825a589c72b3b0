"""The student: a Hugging Face causal LM (optionally LoRA through peft) behind one small nn.Module.

``Student.forward`` returns per-sequence token statistics (model/losses.py) instead of logits, so
training, DMC probes and LARK scoring share one code path and the LM head runs only on response tokens.
Keeping that path inside ``forward`` (and registering ``generate`` as an FSDP forward method) means a
sharded model unshards its root parameters for both, whoever calls them.

Build paths:
* ``path``: ``from_pretrained`` on a local directory or hub id (optionally a GGUF file in it);
* ``config``: a model config (``model_type`` plus its fields) for tiny students built from scratch.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from lit_distill.errors import load_local_or_hub
from lit_distill.model.losses import SequenceStats, sequence_statistics
from lit_distill.paths import resolve_path
from lit_distill.tokenizer import load_tokenizer, split_gguf  # load_tokenizer re-exported: its old home

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
__all__ = [
    "DTYPES",
    "LoraConfig",
    "Student",
    "StudentConfig",
    "apply_lora",
    "build_causal_lm",
    "eval_mode",
    "load_tokenizer",
]
LLAMA_LIKE_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class StudentConfig:
    """Which model to fine-tune and how to load it.

    Args:
        path: Local ``save_pretrained`` directory or hub id, loaded with ``from_pretrained``.
        config: Instead of ``path``: a model config (``model_type`` plus fields such as ``hidden_size``)
            to build a randomly initialised student; ``vocab_size`` defaults to the tokenizer's length.
        tokenizer: Tokenizer directory, hub id or ``.gguf`` file; defaults to ``path`` (with ``gguf_file``,
            the tokenizer and chat template embedded in that GGUF file).
        dtype: Parameter dtype: float32, bfloat16 or float16.
        attn_implementation: ``sdpa``, ``eager`` or ``flash_attention_2``.
        gradient_checkpointing: Recompute activations in the backward pass (less memory, ~30% slower).
        gguf_file: A GGUF file inside ``path`` to load (dequantised) instead of safetensors; its embedded
            tokenizer and chat template are used unless ``tokenizer`` is set.
        revision: Hub revision.
        trust_remote_code: Allow custom modelling code from the checkpoint.
        init_seed: Seed for the random initialisation of a ``config`` student.
        init_checkpoint: A lit-distill (Lightning) checkpoint whose student weights initialise this run. Unlike
            ``--ckpt_path`` (resume: optimiser, step, data stream), this starts a fresh run from those weights.
    """

    path: str | None = None
    config: dict[str, Any] | None = None
    tokenizer: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    attn_implementation: str | None = "sdpa"
    gradient_checkpointing: bool = False
    gguf_file: str | None = None
    revision: str | None = None
    trust_remote_code: bool = False
    init_seed: int = 0
    init_checkpoint: str | None = None

    @property
    def tokenizer_path(self) -> str:
        """Where the tokenizer comes from; for a GGUF student the ``.gguf`` file itself (``load_tokenizer``
        reads a path ending in ``.gguf`` with ``gguf_file=``), so every caller of this path gets it."""
        if self.tokenizer:
            return self.tokenizer
        if self.path is None:
            raise ValueError("student: set `tokenizer` (or `path`, whose tokenizer is then used)")
        if self.gguf_file:
            return f"{self.path.rstrip('/')}/{self.gguf_file}"
        return self.path


@dataclass
class LoraConfig:
    """LoRA adapters through peft (the base weights are frozen).

    Args:
        r: Adapter rank.
        alpha: Scaling numerator (the update is scaled by alpha / r).
        dropout: Dropout on the adapter input.
        target_modules: Module names to adapt (Llama/Qwen2 names by default).
        modules_to_save: Extra modules trained in full and saved with the adapter (e.g. ``lm_head``).
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(LLAMA_LIKE_TARGETS))
    modules_to_save: list[str] | None = None


def build_causal_lm(cfg: StudentConfig, vocab_size: int | None = None) -> nn.Module:
    """Instantiate the HF causal LM described by ``cfg``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    dtype = DTYPES[cfg.dtype]
    if (cfg.path is None) == (cfg.config is None):
        raise ValueError("student: set exactly one of `path` (pretrained) or `config` (from scratch)")
    if cfg.path is not None:
        kwargs = {"dtype": dtype, "trust_remote_code": cfg.trust_remote_code, "revision": cfg.revision}
        if cfg.attn_implementation:
            kwargs["attn_implementation"] = cfg.attn_implementation
        path, gguf = split_gguf(resolve_path(cfg.path), cfg.gguf_file)  # `path` may name the .gguf file
        if not gguf:
            # A missing local folder is reported as such, not as the hub download from_pretrained then tries.
            return load_local_or_hub(AutoModelForCausalLM.from_pretrained, path, **kwargs)
        return _load_gguf(path, gguf, kwargs)
    fields = dict(cfg.config)
    model_type = fields.pop("model_type", None)
    if model_type is None:
        raise ValueError("student.config needs a `model_type` (e.g. llama, qwen2)")
    if vocab_size is not None:
        fields.setdefault("vocab_size", vocab_size)
    config = AutoConfig.for_model(model_type, **fields)
    if cfg.attn_implementation:
        config._attn_implementation = cfg.attn_implementation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model


def _load_gguf(path: str, gguf: str, kwargs: dict) -> nn.Module:
    """A GGUF checkpoint as a plain dense model in ``dtype``, trainable and ``save_pretrained``-able.

    Weights are dequantised at load (``GgufConfig(dequantize=True)``): GGUF blocks are not trainable and, with
    the ``kernels`` package installed, transformers would otherwise keep them packed. The quantizer is then
    detached, since nothing is quantized any more; left attached, ``save_pretrained`` (the export) refuses
    with "The model is quantized with gguf and is not serializable".
    """
    from transformers import AutoModelForCausalLM
    from transformers.utils.quantization_config import GgufConfig

    model = AutoModelForCausalLM.from_pretrained(
        path, gguf_file=gguf, quantization_config=GgufConfig(dequantize=True), **kwargs
    )
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    return model


def apply_lora(model: nn.Module, lora: LoraConfig) -> nn.Module:
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    config = PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        modules_to_save=lora.modules_to_save,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


class Student(nn.Module):
    """Wraps the causal LM; ``forward`` gives per-sequence statistics, ``generate`` decodes greedily."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    @property
    def base(self) -> nn.Module:
        """The underlying transformers model (inside a peft wrapper, with the adapters injected)."""
        return self.lm.get_base_model() if hasattr(self.lm, "get_base_model") else self.lm

    @property
    def config(self):
        return self.base.config

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        response_mask: torch.Tensor,
        *,
        top_k: int | None = None,
        chunk_size: int = 1024,
        position_ids: torch.Tensor | None = None,
        sequence_index: torch.Tensor | None = None,
        num_sequences: int | None = None,
    ) -> SequenceStats:
        """Per-sequence statistics of a padded batch, or of packed rows (``attention_mask=None`` with
        restarting ``position_ids``: transformers then builds block-diagonal causal attention)."""
        base = self.base
        # use_cache=False: a KV cache is useless here and would disable packed-sequence detection.
        out = base.get_decoder()(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        )
        return sequence_statistics(
            out.last_hidden_state,
            base.get_output_embeddings(),
            input_ids,
            response_mask,
            top_k=top_k,
            chunk_size=chunk_size,
            softcap=getattr(base.config, "final_logit_softcapping", None),
            sequence_index=sequence_index,
            num_sequences=num_sequences,
        )

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.lm.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


@contextlib.contextmanager
def eval_mode(module: nn.Module):
    """Eval mode and no gradients for scoring, restoring the previous training flag afterwards."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)
