"""Provides model building: pretrained (local path / hub id) or from an arch config, LoRA/QLoRA."""

from __future__ import annotations

import torch

from tuitrain.config.paths import resolve_path
from tuitrain.config.schema import TrainConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Parameter-name segments of a classification head (BERT: classifier; GPT-2/Llama: score).
HEAD_NAMES = {"classifier", "pre_classifier", "score"}


def master_dtype(name: str) -> torch.dtype:
    """The dtype weights are loaded in: model.dtype, where auto means float32 master weights."""
    return torch.float32 if name == "auto" else DTYPES[name]


class SetupError(RuntimeError):
    """A config that cannot train on this machine; names the field and the fix."""


def _arch_config(cfg: TrainConfig, vocab: int, tok, num_labels: int):
    from transformers import AutoConfig

    a = cfg.model.arch
    inner = a.intermediate_size or 4 * a.hidden_size
    common = {
        "vocab_size": vocab,
        "pad_token_id": tok.pad_token_id,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "num_labels": num_labels,
    }
    if a.type == "gpt2":
        kw = {
            "n_embd": a.hidden_size,
            "n_layer": a.num_layers,
            "n_head": a.num_heads,
            "n_inner": inner,
            "n_positions": a.max_position_embeddings,
            "resid_pdrop": a.dropout,
            "embd_pdrop": a.dropout,
            "attn_pdrop": a.dropout,
        }
    elif a.type == "llama":
        kw = {
            "hidden_size": a.hidden_size,
            "num_hidden_layers": a.num_layers,
            "num_attention_heads": a.num_heads,
            "num_key_value_heads": a.num_heads,
            "intermediate_size": inner,
            "max_position_embeddings": a.max_position_embeddings,
            "attention_dropout": a.dropout,
        }
    else:
        kw = {
            "hidden_size": a.hidden_size,
            "num_hidden_layers": a.num_layers,
            "num_attention_heads": a.num_heads,
            "intermediate_size": inner,
            "max_position_embeddings": a.max_position_embeddings,
            "hidden_dropout_prob": a.dropout,
            "attention_probs_dropout_prob": a.dropout,
        }
    return AutoConfig.for_model(a.type, **common, **kw)


def pretrained_kwargs(cfg: TrainConfig) -> dict:
    """What `from_pretrained` gets from the config (besides the label maps)."""
    # The dtype is always explicit: transformers 5 loads in the checkpoint's dtype (bf16 for
    # most LLMs) when none is given, and "auto" promises float32 master weights.
    kwargs: dict = {
        "trust_remote_code": cfg.model.trust_remote_code,
        "dtype": master_dtype(cfg.model.dtype),
    }
    if cfg.peft.method == "qlora":
        from transformers import BitsAndBytesConfig

        four = cfg.peft.bits == 4
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=four,
            load_in_8bit=not four,
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_quant_type="nf4",
        )
    return kwargs


def _check_qlora() -> None:
    import importlib.util

    if not torch.cuda.is_available():
        raise SetupError(
            "peft.method: qlora needs a CUDA GPU and none is visible (use peft.method: lora on this machine)"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise SetupError(
            "peft.method: qlora needs bitsandbytes, which is not installed (pip install bitsandbytes, or use peft.method: lora)"
        )


def build_model(cfg: TrainConfig, tok, label_names: list[str] | None = None):
    """The model for cfg.model.task, with gradient checkpointing and LoRA/QLoRA applied."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    m = cfg.model
    seq_cls = m.task == "seq-cls"
    auto = AutoModelForSequenceClassification if seq_cls else AutoModelForCausalLM
    labels = {}
    if seq_cls:
        names = label_names or [str(i) for i in range(m.num_labels)]
        names = names + [str(i) for i in range(len(names), m.num_labels)]
        labels = {
            "num_labels": m.num_labels,
            "id2label": dict(enumerate(names)),
            "label2id": {n: i for i, n in enumerate(names)},
        }
    if cfg.peft.method == "qlora":
        _check_qlora()
    if m.name_or_path:
        model = auto.from_pretrained(
            resolve_path(m.name_or_path), **pretrained_kwargs(cfg), **labels
        )
        if getattr(model.config, "pad_token_id", None) is None and tok.pad_token_id is not None:
            model.config.pad_token_id = tok.pad_token_id
    else:
        vocab = m.arch.vocab_size or tok.vocab_size
        model = auto.from_config(_arch_config(cfg, vocab, tok, m.num_labels))
        if seq_cls:
            model.config.id2label, model.config.label2id = labels["id2label"], labels["label2id"]
        model = model.to(master_dtype(m.dtype))
    if m.gradient_checkpointing:
        # Non-reentrant checkpointing works with DDP and with frozen (LoRA) inputs.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = (
            False  # the cache is useless (and warned about) while checkpointing
        )
    if cfg.peft.method != "none":
        model = _apply_lora(cfg, model)
    return model


def _apply_lora(cfg: TrainConfig, model):
    from peft import LoraConfig, TaskType, get_peft_model, prepare_model_for_kbit_training

    p = cfg.peft
    if p.method == "qlora":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.model.gradient_checkpointing
        )
    elif cfg.model.gradient_checkpointing:
        model.enable_input_require_grads()  # frozen embeddings would otherwise cut the checkpointed graph
    task = TaskType.SEQ_CLS if cfg.model.task == "seq-cls" else TaskType.CAUSAL_LM
    lcfg = LoraConfig(
        r=p.r,
        lora_alpha=p.alpha,
        lora_dropout=p.dropout,
        target_modules=p.target_modules or None,
        task_type=task,
    )
    try:
        return get_peft_model(model, lcfg)
    except ValueError as exc:
        raise SetupError(
            f"peft.target_modules: {exc} (name modules of this model, e.g. q_proj, v_proj; or leave it empty)"
        ) from None


def is_head(name: str) -> bool:
    """Whether a parameter belongs to a classification head (for optimizer.head_lr)."""
    return any(seg in HEAD_NAMES for seg in name.split("."))


def count_params(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total
