"""Provides the typed training config: one pydantic group per concern, every field with help and bounds."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_serializer,
    model_validator,
)

from tuitrain.steering.kinds import KINDS, LR_KINDS

# Each field's description is its one-line help text, shown by the editor, `tuitrain validate`
# and the JSON Schema. Typical ranges come from ../shared/DOMAIN.md: guidance, never limits.


# Bounds every field shares (README "Reliability"): counts of steps stop at what a run can
# reach, and no text field holds more than a chat template needs (validation stays fast).
MAX_STEPS = 1_000_000_000
MAX_TEXT_CHARS = 100_000


class Group(BaseModel):
    """Base for config groups: unknown keys are errors, assignments are validated, numbers are
    finite and text fields are at most MAX_TEXT_CHARS long."""

    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        populate_by_name=True,
        allow_inf_nan=False,
        str_max_length=MAX_TEXT_CHARS,
    )


class RunGroup(Group):
    """Run identity and reproducibility."""

    name: str | None = Field(
        None,
        max_length=200,
        description="Run name shown in lists; default: derived from the config file name.",
    )
    seed: int = Field(
        42,
        ge=0,
        le=2**32 - 1,
        description="Random seed for weights, data order and sampling. Any integer; fix it to compare runs.",
    )
    deterministic: bool = Field(
        False, description="Use deterministic kernels (slower); for exact reproducibility checks."
    )
    tags: list[str] = Field(
        default_factory=list,
        description="Free-form labels shown in the runs list and usable by sweeps.",
    )
    notes: str = Field("", description="A note stored with the run (what you are trying).")
    kind: Literal["train", "lr_find"] = Field(
        "train",
        description="train: a normal run; lr_find: an LR range test (`tuitrain lr-find`): the LR ramps over the lr_find group, no eval, no checkpoints.",
    )


class ArchGroup(Group):
    """Architecture for a small model built from scratch (used when model.name_or_path is empty)."""

    type: Literal["gpt2", "llama", "bert"] = Field(
        "gpt2",
        description="Model family to build from scratch: gpt2 or llama for causal LM, bert for classification.",
    )
    hidden_size: int = Field(
        128, ge=8, le=65536, description="Width of the model. Tiny demo: 64-256; 125M models: 768."
    )
    num_layers: int = Field(
        4,
        ge=1,
        le=512,
        description="Number of transformer blocks. Tiny demo: 2-6; 125M models: 12.",
    )
    num_heads: int = Field(
        4,
        ge=1,
        le=1024,
        description="Attention heads; must divide hidden_size. Typically hidden_size / 64.",
    )
    intermediate_size: int | None = Field(
        None, ge=8, le=262144, description="MLP width; default 4 x hidden_size."
    )
    max_position_embeddings: int = Field(
        512,
        ge=16,
        le=1_048_576,
        description="Longest sequence the model can see; at least data.max_seq_length.",
    )
    vocab_size: int | None = Field(
        None,
        ge=2,
        le=1_000_000,
        description="Vocabulary size; default: the tokenizer's (259 for bytes).",
    )
    dropout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Dropout inside the model. 0.0-0.1 for LMs; 0.1-0.5 for small data.",
    )

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ArchGroup:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must divide hidden_size ({self.hidden_size}); "
                f"try num_heads={max(1, self.hidden_size // 64)}"
            )
        return self


class ModelGroup(Group):
    """Which model to train and how to load it."""

    name_or_path: str | None = Field(
        None,
        description="Local path or hub id of a pretrained model; empty builds model.arch from scratch.",
    )
    task: Literal["causal-lm", "seq-cls"] = Field(
        "causal-lm",
        description="causal-lm: next-token prediction; seq-cls: sequence classification (adds a head).",
    )
    num_labels: int = Field(
        2, ge=2, le=100_000, description="Classes for seq-cls (ignored for causal-lm)."
    )
    tokenizer: Literal["auto", "bytes"] = Field(
        "auto",
        description="auto: the model's own tokenizer; bytes: raw UTF-8 bytes (256 ids + specials), for from-scratch models.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="Weight dtype at load. auto: float32 master weights on every transformers version (mixed precision casts compute).",
    )
    trust_remote_code: bool = Field(
        False, description="Run model code shipped with the checkpoint. Only for sources you trust."
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in backward: ~30% slower, much less memory."
    )
    arch: ArchGroup = Field(
        default_factory=ArchGroup,
        description="From-scratch architecture (used when name_or_path is empty).",
    )


class DataGroup(Group):
    """Training data: files or a built-in corpus, record format, chat template, tokenisation and splits."""

    source: Literal["file", "python-stdlib"] = Field(
        "file",
        description="file: data.train_file; python-stdlib: this Python's own library source (no download), tokenised by model.tokenizer.",
    )
    train_file: str | None = Field(
        None,
        description="Training data: .jsonl, .json, .csv, .parquet, .txt or a folder saved with datasets' save_to_disk.",
    )
    validation_file: str | None = Field(
        None,
        description="Validation data in the same format; default: split off validation_split of train.",
    )
    format: Literal["auto", "text", "prompt_completion", "alpaca", "chat"] = Field(
        "auto",
        description="Record format: text (text, + label for seq-cls), prompt_completion, alpaca (instruction/input/output), chat (messages or ShareGPT conversations); auto detects it from the first record.",
    )
    file_format: Literal["auto", "jsonl", "json", "csv", "parquet", "txt", "arrow"] = Field(
        "auto",
        description="File type; auto picks it from the extension (a folder is read as a save_to_disk dataset).",
    )
    text_field: str = Field(
        "text", min_length=1, description="Column/key holding the input text (format text)."
    )
    label_field: str = Field(
        "label",
        min_length=1,
        description="Column/key holding the class label for seq-cls (int or string).",
    )
    prompt_field: str = Field(
        "prompt", min_length=1, description="prompt_completion: key of the prompt."
    )
    completion_field: str = Field(
        "completion",
        min_length=1,
        description="prompt_completion: key of the completion (the answer the loss is on).",
    )
    instruction_field: str = Field(
        "instruction", min_length=1, description="alpaca: key of the instruction."
    )
    input_field: str = Field(
        "input", min_length=1, description="alpaca: key of the optional input (context)."
    )
    output_field: str = Field(
        "output", min_length=1, description="alpaca: key of the output (the answer the loss is on)."
    )
    messages_field: str = Field(
        "messages",
        min_length=1,
        description="chat: key of the message list ({role, content}); ShareGPT {from, value} lists under 'conversations' are found too.",
    )
    role_map: list[str] = Field(
        default_factory=list,
        description="chat: more role / ShareGPT 'from' names as name=role (role: system, user, assistant or tool), e.g. [bot=assistant]; a YAML mapping works too. human, gpt, function_call, observation are known.",
    )
    tools_field: str = Field(
        "tools",
        min_length=1,
        description="chat: key of a record's tool definitions (a list, or a JSON string of one), passed to the chat template as tools=.",
    )
    chat_template: str | None = Field(
        None,
        description="Template for chat/instruction records: a built-in name (chatml, plain) or a Jinja string; empty: the tokenizer's own.",
    )
    train_on_prompt: bool = Field(
        False,
        description="chat/instruction formats: also compute the loss on prompt tokens; off: answers only (labels -100 elsewhere).",
    )
    max_seq_length: int = Field(
        128,
        ge=8,
        le=1_048_576,
        description="Tokens per example; longer inputs are truncated (or packed). 128-512 for fine-tuning; 2048+ for LLMs.",
    )
    text_mode: Literal["blocks", "per_record"] = Field(
        "blocks",
        description="causal-lm text records: blocks joins them (eos between) and cuts max_seq_length blocks, so every token is trained on; per_record: one example per record, longer ones truncated.",
    )
    packing: bool = Field(
        True,
        description="causal-lm chat/instruction examples: pack whole examples into max_seq_length blocks, position ids reset per example; off: one padded example each.",
    )
    allow_cross_attention: bool = Field(
        False,
        description="Packing chat/instruction data on a model that cannot keep packed examples apart: pack anyway (examples see earlier ones); off: an error.",
    )
    validation_split: float = Field(
        0.05,
        ge=0.0,
        lt=1.0,
        description="Fraction held out for validation when no validation_file. 0.05-0.1 typical.",
    )
    max_bytes: int = Field(
        2_000_000,
        ge=1000,
        le=10_000_000_000,
        description="python-stdlib source: how many bytes of library source to read.",
    )
    max_train_samples: int | None = Field(
        None,
        ge=1,
        le=10_000_000_000,
        description="Cap on training examples (quick experiments); empty: all.",
    )
    num_workers: int = Field(
        0,
        ge=0,
        le=256,
        description="Worker processes for tokenising (datasets map) and the DataLoader; 0: the main process. Size to CPU cores.",
    )

    @field_validator("role_map", mode="before")
    @classmethod
    def _role_map_pairs(cls, v: object) -> object:
        if isinstance(v, dict):  # {bot: assistant} as written in YAML
            v = [f"{k}={r}" for k, r in v.items()]
        if isinstance(v, list):
            for item in v:
                name, _, role = str(item).partition("=")
                if not name.strip() or role.strip() not in ("system", "user", "assistant", "tool"):
                    raise ValueError(
                        f"{item!r}: write name=role, role one of system, user, assistant, tool (e.g. bot=assistant)"
                    )
            v = [
                f"{str(i).partition('=')[0].strip()}={str(i).partition('=')[2].strip()}" for i in v
            ]
        return v

    @field_validator("format", mode="before")
    @classmethod
    def _format_is_the_record_format(cls, v: object) -> object:
        if isinstance(v, str) and v in ("jsonl", "json", "csv", "parquet", "txt", "arrow"):
            raise ValueError(
                f"this is the record format (auto, text, prompt_completion, alpaca, chat); "
                f"put the file type in data.file_format: {v}"
            )
        return v


class PeftGroup(Group):
    """Parameter-efficient fine-tuning (LoRA / QLoRA)."""

    method: Literal["none", "lora", "qlora"] = Field(
        "none",
        description="none: train all weights; lora: low-rank adapters; qlora: adapters on a 4/8-bit base (CUDA + bitsandbytes).",
    )
    r: int = Field(
        8,
        ge=1,
        le=4096,
        description="LoRA rank. 4-8 simple classification; 16 generation; 32-64 complex reasoning.",
    )
    alpha: float = Field(
        16.0, gt=0, description="LoRA alpha; the update is scaled by alpha/r. About 2 x r."
    )
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA path. 0.0-0.1.")
    target_modules: list[str] | None = Field(
        None,
        description="Module names to adapt (e.g. q_proj, v_proj); empty: peft's default for the model type.",
    )
    bits: Literal[4, 8] | None = Field(
        None, description="Quantisation of the base model for qlora: 4 or 8 bits."
    )


class OptimizerGroup(Group):
    """Optimizer and learning rate."""

    name: Literal["adamw", "adam", "sgd", "rmsprop", "lion"] = Field(
        "adamw",
        description="adamw: default for transformers; sgd: small data/CNNs; lion: sign-based, use ~3-10x lower LR.",
    )
    lr: float = Field(
        5e-5,
        gt=0,
        le=10.0,
        description="Peak learning rate. Fine-tune 1e-5..5e-5; from scratch ~3e-4; small nets with Adam ~1e-3.",
    )
    weight_decay: float = Field(
        0.01,
        ge=0.0,
        le=10.0,
        description="Decoupled weight decay. 0.01-0.1 for AdamW; ~1e-4 for SGD.",
    )
    beta1: float = Field(
        0.9, ge=0.0, lt=1.0, description="Adam/Lion first-moment decay. 0.9 (Lion: 0.9)."
    )
    beta2: float = Field(
        0.999,
        ge=0.0,
        lt=1.0,
        description="Adam/Lion second-moment decay. 0.999 (0.95 for large LMs; Lion 0.99).",
    )
    eps: float = Field(1e-8, gt=0, le=1.0, description="Adam epsilon. 1e-8, usually left alone.")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD/RMSprop momentum. 0.9 typical.")
    nesterov: bool = Field(False, description="Nesterov momentum for SGD.")
    head_lr: float | None = Field(
        None,
        gt=0,
        le=10.0,
        description="Separate LR for a new classification head (layer-wise LR), e.g. 5e-4 with a 1e-5 body; batch.lr_scaling scales it like optimizer.lr.",
    )
    fused: bool = Field(
        True,
        description="Use the fused AdamW/Adam kernel (CUDA and CPU); falls back to the default kernel where unsupported.",
    )


class SchedulerGroup(Group):
    """Learning-rate schedule, counted in optimizer steps."""

    name: Literal["constant", "linear", "cosine", "step", "exponential", "plateau"] = Field(
        "cosine", description="Shape after warmup. cosine to a floor is the common default."
    )
    warmup_steps: int | None = Field(
        None,
        ge=0,
        le=MAX_STEPS,
        description="Warmup length in optimizer steps (~10% of steps, e.g. 1000). Excludes warmup_ratio: a later layer (extends child, --env, --set, editor) setting one clears the other; one file setting both is an error.",
    )
    warmup_ratio: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Warmup as a fraction of total steps (0.03-0.1 typical). Excludes warmup_steps: a later layer (extends child, --env, --set, editor) setting one clears the other; one file setting both is an error.",
    )
    warmup_start_factor: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Warmup starts at this fraction of the LR (0 or 0.1 typical).",
    )
    eta_min: float = Field(
        0.0, ge=0.0, description="LR floor for cosine/linear decay, e.g. 1e-6 or 1e-5."
    )
    step_size: int = Field(
        1000,
        ge=1,
        le=MAX_STEPS,
        description="step: multiply the LR by gamma every step_size optimizer steps.",
    )
    gamma: float = Field(
        0.1,
        gt=0.0,
        le=1.0,
        description="step: factor per step_size (0.1 or 0.5); exponential: factor per optimizer step (e.g. 0.999).",
    )
    plateau_patience: int = Field(
        3,
        ge=0,
        le=1_000_000,
        description="plateau: evaluations without improvement before the LR is cut. ~3.",
    )
    plateau_factor: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="plateau: multiply the LR by this when the metric stalls. ~0.5.",
    )


class BatchGroup(Group):
    """Batch size, accumulation and LR scaling."""

    size: int = Field(
        8,
        ge=1,
        le=1_000_000,
        description="Micro batch per device. Limited by memory; 4-32 for 7B models on one GPU.",
    )
    grad_accum: int = Field(
        1,
        ge=1,
        le=65536,
        description="Micro batches per optimizer step; effective batch = size x grad_accum x processes.",
    )
    lr_scaling: Literal["none", "linear", "sqrt"] = Field(
        "none",
        description="Rescale optimizer.lr by effective/reference batch: linear (x B/Bref) or sqrt (x sqrt(B/Bref)).",
    )
    reference_batch: int = Field(
        256,
        ge=1,
        le=1_000_000_000,
        description="The effective batch optimizer.lr was tuned for (lr_scaling). Often 256.",
    )
    eval_size: int | None = Field(
        None, ge=1, le=1_000_000, description="Batch size for evaluation; default: batch.size."
    )


class TrainingGroup(Group):
    """Length, precision and cadence of the training loop."""

    epochs: int = Field(
        3, ge=1, le=100_000, description="Passes over the data. Fine-tune 2-5; small data 5-20."
    )
    max_steps: int | None = Field(
        None,
        ge=1,
        le=MAX_STEPS,
        description="Stop after this many optimizer steps; overrides epochs.",
    )
    max_grad_norm: float = Field(
        1.0,
        ge=0.0,
        description="Clip gradients to this global norm (0 disables). 0.5-1.0 standard.",
    )
    mixed_precision: Literal["no", "fp16", "bf16"] = Field(
        "no",
        description="bf16 on Ampere+ GPUs (no loss scaling); fp16 needs loss scaling; no on CPU.",
    )
    eval_every: int | None = Field(
        None,
        ge=1,
        le=MAX_STEPS,
        description="Evaluate every N optimizer steps; empty: at the end of each epoch.",
    )
    eval_max_batches: int | None = Field(
        None,
        ge=1,
        le=MAX_STEPS,
        description="Cap evaluation to N batches (fast, noisier val_loss); empty: the whole split.",
    )
    save_every: int | None = Field(
        None,
        ge=1,
        le=MAX_STEPS,
        description="Checkpoint every N optimizer steps; empty: at each evaluation.",
    )
    save_total_limit: int = Field(
        2,
        ge=1,
        le=10_000,
        description="Keep at most this many periodic checkpoints (best is kept apart).",
    )
    save_best: bool = Field(
        False,
        description="Keep the best evaluation's trainable weights in checkpoints/best-N (a full copy per improvement; on with early_stopping.restore_best).",
    )
    log_every: int = Field(
        1,
        ge=1,
        le=MAX_STEPS,
        description="Report train metrics every N optimizer steps (values stay on the device in between).",
    )


class EarlyStoppingGroup(Group):
    """Stop when the monitored validation metric stops improving."""

    enabled: bool = Field(
        False,
        description="Stop training when the monitored metric has not improved for patience evaluations.",
    )
    monitor: Literal["val_loss", "val_perplexity", "val_accuracy"] = Field(
        "val_loss",
        description="Metric to watch: val_loss (any task), val_perplexity (causal-lm), val_accuracy (seq-cls).",
    )
    mode: Literal["auto", "min", "max"] = Field(
        "auto",
        description="min: lower is better; max: higher is better; auto: max for accuracy, else min.",
    )
    patience: int = Field(
        5, ge=1, le=1_000_000, description="Evaluations without improvement before stopping. 3-10."
    )
    min_delta: float = Field(
        1e-4, ge=0.0, description="Smallest change that counts as an improvement, e.g. 1e-4."
    )
    restore_best: bool = Field(
        True,
        description="With enabled: keep the best evaluation's weights and load them at the end (before the final export).",
    )


class ChatMessage(Group):
    """One chat message of a generation prompt."""

    role: Literal["system", "user", "assistant"] = Field(
        "user", description="Who speaks: system, user or assistant."
    )
    content: str = Field("", description="The message text.")


class GenerationGroup(Group):
    """Sample generations at each evaluation (causal-lm only)."""

    enabled: bool = Field(
        True, description="Generate samples from prompts at each evaluation (causal-lm)."
    )
    prompts: list[str | list[ChatMessage]] = Field(
        default_factory=list,
        description="Prompts to complete at each evaluation; chat/instruction runs render them with the chat template (a string is one user message, or give a list of {role, content}).",
    )
    val_prompts: int = Field(
        2,
        ge=0,
        le=100,
        description="chat/instruction runs: also answer the first N held-out validation prompts at each evaluation (0: none).",
    )
    max_new_tokens: int = Field(
        64, ge=1, le=65536, description="Tokens to generate per prompt. 32-256."
    )
    temperature: float = Field(
        0.0,
        ge=0.0,
        le=10.0,
        description="0 = greedy, the default: the most likely token each time, so steps and runs compare. >0 samples (with top_k/top_p): low is conservative, high is diverse, 0.7-1.0.",
    )
    top_k: int = Field(
        50,
        ge=0,
        le=1_000_000,
        description="Sampling only (temperature > 0): keep the k most likely tokens (0 disables). ~50.",
    )
    top_p: float = Field(
        0.95,
        gt=0.0,
        le=1.0,
        description="Sampling only (temperature > 0): keep the smallest token set with this cumulative probability. 0.9-0.95.",
    )


class LaunchGroup(Group):
    """How `accelerate launch` starts the training processes."""

    num_processes: int = Field(
        1, ge=1, le=4096, description="Training processes in all (usually one per GPU)."
    )
    num_machines: int = Field(1, ge=1, le=1024, description="Machines in a multi-node run.")
    machine_rank: int = Field(
        0, ge=0, le=1023, description="This machine's rank in a multi-node run (0 = main)."
    )
    main_process_ip: str | None = Field(
        None, description="Address of the rank-0 machine (multi-node)."
    )
    main_process_port: int = Field(
        29500, ge=1, le=65535, description="Port for the process group rendezvous."
    )
    accelerate_config: str | None = Field(
        None,
        description="An accelerate config file (from `accelerate config`); its settings apply first.",
    )
    gpu_ids: str | None = Field(
        None, description="GPUs to use, e.g. 0,1 or all; empty: all visible."
    )
    cpu: bool = Field(False, description="Force training on CPU even when GPUs are present.")


DOCTOR_AUTO_ACTIONS = (
    "scale_lr_on_spike",
    "scale_lr_on_oscillation",
    "decay_lr_on_stall",
    "stop_on_overfit",
)


class DoctorGroup(Group):
    """The doctor: live diagnosis of the symptoms in DOMAIN.md, with optional automatic remedies."""

    enabled: bool = Field(
        True,
        description="Diagnose the run live in the trainer (rank 0); each diagnosis that opens or closes becomes a `doctor` event.",
    )
    interval_s: float = Field(
        5.0,
        ge=0.5,
        le=3600.0,
        description="Seconds between the trainer's diagnoses (each reads downsampled series: a few ms).",
    )
    window: int = Field(
        100,
        ge=10,
        le=100_000,
        description="Recent logged steps the detectors compare with (median/MAD baseline). 50-200.",
    )
    min_points: int = Field(
        20, ge=5, le=100_000, description="Logged steps needed before the step detectors speak."
    )
    grad_z: float = Field(
        6.0,
        gt=0.0,
        description="exploding_gradients: robust z-score of log grad norm (median/MAD of the window) that is a spike.",
    )
    grad_ratio: float = Field(
        5.0,
        gt=1.0,
        description="exploding_gradients: ...and at least this many times the window's median grad norm.",
    )
    spike_z: float = Field(
        6.0, gt=0.0, description="loss_spike: robust z-score of the loss against the window."
    )
    spike_rise: float = Field(
        0.25,
        gt=0.0,
        description="loss_spike: ...and at least this relative jump above the window's median (0.25 = 25%).",
    )
    oscillation_noise: float = Field(
        0.1,
        gt=0.0,
        description="oscillation: step-to-step noise of the detrended loss as a fraction of its level.",
    )
    slow_after: float = Field(
        0.25,
        gt=0.0,
        le=1.0,
        description="slow_convergence: judged once this fraction of the steps after warmup is done.",
    )
    slow_min_drop: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="slow_convergence: by then the loss should have fallen at least this fraction from its start.",
    )
    stall_after: float = Field(
        0.5,
        ge=0.0,
        lt=1.0,
        description="late_stall: only after this fraction of training.",
    )
    stall_span: float = Field(
        0.2,
        gt=0.0,
        le=1.0,
        description="late_stall: progress is measured over this last fraction of the steps so far (at least the window).",
    )
    stall_min_drop: float = Field(
        0.01,
        ge=0.0,
        lt=1.0,
        description="late_stall: the loss fell less than this fraction over that span...",
    )
    stall_lr_ratio: float = Field(
        0.7,
        gt=0.0,
        le=1.0,
        description="late_stall: ...while the LR is still at least this fraction of its peak.",
    )
    overfit_evals: int = Field(
        3,
        ge=1,
        le=1_000_000,
        description="overfitting: evaluations in a row with validation loss above its best.",
    )
    overfit_min_rise: float = Field(
        0.02,
        ge=0.0,
        description="overfitting: validation loss at least this fraction above its best (0.02 = 2%).",
    )
    underfit_level: float = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="underfitting: losses still above this fraction of the chance-level loss (ln vocab, ln classes) late in training.",
    )
    clip_fraction: float = Field(
        0.9,
        gt=0.0,
        le=1.0,
        description="clipping_saturated: share of recent steps whose pre-clip grad norm exceeds max_grad_norm.",
    )
    clip_ratio: float = Field(
        3.0,
        ge=1.0,
        description="clipping_saturated: a warning when the median pre-clip norm is this many times max_grad_norm (else info).",
    )
    throughput_ratio: float = Field(
        0.5,
        gt=0.0,
        lt=1.0,
        description="throughput_drop: recent steps/s or tokens/s below this fraction of the run's steady level.",
    )
    repetition_level: float = Field(
        0.3,
        gt=0.0,
        le=1.0,
        description="repetitive_answers: mean samples/repetition (share of repeated n-grams in the answers) of an eval that is too high...",
    )
    repetition_rise: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="repetitive_answers: ...and this far above its lowest earlier eval (a model that repeated from the start is no change).",
    )
    auto: list[Literal[DOCTOR_AUTO_ACTIONS]] = Field(  # type: ignore[valid-type]
        default_factory=list,
        description="Remedies the doctor applies without asking: scale_lr_on_spike, scale_lr_on_oscillation, decay_lr_on_stall, stop_on_overfit. Empty: none.",
    )
    auto_max: int = Field(
        3, ge=0, le=1000, description="At most this many automatic actions per run."
    )
    persist_steps: int = Field(
        10,
        ge=0,
        le=1_000_000,
        description="Steps a warning's evidence must persist (found at every check) before it opens; critical evidence opens at once. 0: at once.",
    )
    hold_steps: int = Field(
        50,
        ge=0,
        le=1_000_000,
        description="Steps an open diagnosis must stay absent before it closes; one that returns sooner stays the same episode (no flapping).",
    )


class LRFindGroup(Group):
    """The LR range test (used when run.kind is lr_find): an exponential LR ramp, stopped at divergence."""

    min_lr: float = Field(
        1e-7, gt=0, le=10.0, description="LR of the first update of the range test. 1e-7 typical."
    )
    max_lr: float = Field(
        1.0, gt=0, le=100.0, description="LR of the last update of the range test. 1 typical."
    )
    steps: int = Field(
        100,
        ge=2,
        le=100_000,
        description="Optimizer steps of the range test (the LR ramp); it ends early when the loss diverges. 100-300.",
    )
    stop_factor: float = Field(
        4.0,
        gt=1.0,
        description="End the range test when the smoothed loss passes this many times its minimum. 4 (fastai, Lightning).",
    )

    @model_validator(mode="after")
    def _range_rises(self) -> LRFindGroup:
        if self.max_lr <= self.min_lr:
            raise ValueError(
                f"lr_find.max_lr ({self.max_lr:g}) must be above lr_find.min_lr ({self.min_lr:g}); e.g. min 1e-7, max 1"
            )
        return self


STEER_ACTIONS = KINDS  # the one table: tuitrain.steering.kinds (a leaf); a field per kind below


class ScheduledAction(Group):
    """One intervention the trainer applies after optimizer step `step` (as a command would be)."""

    step: int = Field(
        ...,
        ge=0,
        le=MAX_STEPS,
        description="Apply after this optimizer step (the step a command applied at).",
    )
    set_lr: float | None = Field(
        None,
        gt=0,
        le=10.0,
        description="Set the LR of the next update (the schedule keeps its shape).",
    )
    scale_lr: float | None = Field(
        None, gt=0, le=1e6, description="Multiply the LR multiplier by this factor, e.g. 0.5."
    )
    stop: bool = Field(False, description="Stop here: evaluate, save, end as early_stopped.")
    checkpoint: bool = Field(False, description="Save a checkpoint here.")
    eval: bool = Field(False, description="Evaluate here.")

    @model_validator(mode="after")
    def _one_action(self) -> ScheduledAction:
        chosen = [a for a in STEER_ACTIONS if getattr(self, a) not in (None, False)]
        if len(chosen) != 1:
            raise ValueError(
                f"each schedule entry takes exactly one action of {', '.join(STEER_ACTIONS)} "
                f"(got {', '.join(chosen) or 'none'}), e.g. {{step: 800, scale_lr: 0.5}}"
            )
        return self

    @model_serializer(mode="wrap")
    def _compact(self, handler):
        # Written as people write it: {step: 812, scale_lr: 0.5}, not five keys per entry.
        return {k: v for k, v in handler(self).items() if k == "step" or v not in (None, False)}

    @property
    def action(self) -> tuple[str, float | None]:
        """(kind, value): value is the LR or factor for set_lr / scale_lr, else None."""
        for a in STEER_ACTIONS:
            v = getattr(self, a)
            if v not in (None, False):
                return a, (float(v) if a in LR_KINDS else None)
        raise AssertionError("validated: one action")


class SteeringGroup(Group):
    """Scripted interventions: what `tuitrain rerun` replays, or an LR plan written by hand."""

    schedule: list[ScheduledAction] = Field(
        default_factory=list,
        description="Interventions at given steps, e.g. [{step: 812, scale_lr: 0.5}, {step: 1400, stop: true}].",
    )


# The events of tuitrain.notify.settings.EVENTS (a test keeps them equal).
NotifyEvent = Literal[
    "completed", "failed", "diverged", "crashed", "early_stopped", "stopped", "stalled", "doctor",
    "doctor_action", "sweep_finished", "race_finished", "new_best",
]  # fmt: skip


class NotifyGroup(Group):
    """Which notifications this run sends. Targets (URLs with tokens) never live in a run's config:
    they come from TUITRAIN_NOTIFY or ~/.config/tuitrain/notify.yaml."""

    enabled: bool = Field(
        True, description="Send this run's notifications (to the targets set up outside the run)."
    )
    events: list[NotifyEvent] | None = Field(
        None,
        description="Only these events for this run, e.g. [crashed, completed]; null: the user's choice in notify.yaml.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_targets(cls, data: object) -> object:
        if isinstance(data, dict) and {"url", "urls", "targets", "command"} & set(data):
            raise ValueError(
                "notification targets are secrets and never go in a run's config (it is copied "
                "into the runs directory): set TUITRAIN_NOTIFY or ~/.config/tuitrain/notify.yaml; "
                "here only `enabled` and `events`"
            )
        return data


METRICS_BY_TASK: dict[str, tuple[str, ...]] = {
    "causal-lm": ("val_loss", "val_perplexity"),
    "seq-cls": ("val_loss", "val_accuracy"),
}


class TrainConfig(Group):
    """A complete training config: one group per concern."""

    run: RunGroup = Field(default_factory=RunGroup, description="Run identity and reproducibility.")
    model: ModelGroup = Field(
        default_factory=ModelGroup, description="Which model to train and how to load it."
    )
    data: DataGroup = Field(
        default_factory=DataGroup, description="Training data and tokenisation."
    )
    peft: PeftGroup = Field(default_factory=PeftGroup, description="LoRA / QLoRA adapters.")
    optimizer: OptimizerGroup = Field(
        default_factory=OptimizerGroup, description="Optimizer and learning rate."
    )
    scheduler: SchedulerGroup = Field(
        default_factory=SchedulerGroup, description="Learning-rate schedule."
    )
    batch: BatchGroup = Field(
        default_factory=BatchGroup, description="Batch size and accumulation."
    )
    training: TrainingGroup = Field(
        default_factory=TrainingGroup, description="Training length, precision, cadence."
    )
    early_stopping: EarlyStoppingGroup = Field(
        default_factory=EarlyStoppingGroup, description="Early stopping on a validation metric."
    )
    generation: GenerationGroup = Field(
        default_factory=GenerationGroup, description="Sample generations (causal-lm)."
    )
    launch: LaunchGroup = Field(
        default_factory=LaunchGroup, description="Processes, machines and GPUs."
    )
    doctor: DoctorGroup = Field(
        default_factory=DoctorGroup, description="Live diagnosis of training symptoms."
    )
    lr_find: LRFindGroup = Field(
        default_factory=LRFindGroup, description="LR range test (run.kind lr_find)."
    )
    steering: SteeringGroup = Field(
        default_factory=SteeringGroup, description="Scripted interventions (replayed by rerun)."
    )
    notify: NotifyGroup = Field(
        default_factory=NotifyGroup, description="Which notifications this run sends (no targets)."
    )


GROUPS: tuple[str, ...] = tuple(TrainConfig.model_fields)
