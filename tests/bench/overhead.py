"""Provides the trainer overhead benchmark: steps/s of tuitrain's real training loop (batched
metrics to SQLite + steering poll) vs the same loop with no instrumentation, and vs HF Trainer,
on the same model, data, batch, optimizer and precision.

    OMP_NUM_THREADS=2 python tests/bench/overhead.py                       # tiny CPU model
    python tests/bench/overhead.py --preset llama-350m --precision bf16 --fused   # GPU (~350M)

Each variant runs `--repeats` times, interleaved; steps/s is measured between step `--warmup`
and the last step and the median is reported. The last line is JSON with `overhead_ratio`
(instrumented / plain steps/s; 1.0 = free) and `vs_hf_trainer` (ours / HF steps/s).

Wall-clock ratios move by several % run to run on a shared machine, so the JSON also has a
direct measure: `instrumentation_fraction`, the time spent inside tuitrain's own per-step code
(metric buffer, flushes, steering poll: the trainer's `time/overhead_s` accounting) summed over
all steps, over the total step time, plus the system sampler's share (`sampler_fraction`: the
cost of one `SystemSampler.sample()` over its interval; it runs in the writer thread, but on a
CPU box it competes for the cores and the GIL, so it is counted). Also `mfu`, `tokens_per_s`
and the step-time split of the instrumented runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from tuitrain.config import parse, save_yaml, to_dict


def make_config(a: argparse.Namespace, log_every: int):
    """The benchmark's TrainConfig: a from-scratch GPT-2 on the stdlib byte corpus."""
    return parse(
        {
            "run": {"name": "bench", "seed": 0},
            "model": {
                "tokenizer": "bytes",
                "dtype": "auto",
                "arch": {
                    "type": a.arch,
                    "hidden_size": a.hidden,
                    "num_layers": a.layers,
                    "num_heads": a.heads or max(1, a.hidden // 64),
                    "intermediate_size": a.intermediate,
                    "max_position_embeddings": a.seq,
                },
            },
            "data": {
                "source": "python-stdlib",
                "max_bytes": max(200_000, a.batch * a.seq * (a.steps + 10) * 2),
                "max_seq_length": a.seq,
                "validation_split": 0.01,
            },
            "optimizer": {"name": "adamw", "lr": 3e-4, "fused": a.fused},
            "scheduler": {"name": "cosine", "warmup_steps": 10},
            "batch": {"size": a.batch, "grad_accum": a.accum},
            "training": {
                "max_steps": a.steps,
                "max_grad_norm": 1.0,
                "mixed_precision": {"fp32": "no"}.get(a.precision, a.precision),
                "eval_max_batches": 1,
                "log_every": log_every,
                "save_total_limit": 1,
            },
            "generation": {"enabled": False},
            "launch": {"cpu": a.cpu},
        }
    )


def reset_accelerate() -> None:
    """Forget the process-wide Accelerate state so the next variant builds its own."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


def sync() -> None:
    """Wait for queued GPU work, so a timestamp means the work is done."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def thread_cpu_s(tid: int | None) -> float:
    """CPU seconds of one thread of this process (Linux /proc), 0 where unreadable."""
    import os

    try:
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError, TypeError):
        return 0.0


def run_tuitrain(a: argparse.Namespace, root: Path, extra: list[dict]) -> tuple[float, float]:
    """steps/s of the real Trainer (metrics to SQLite every log_every steps, steering poll each
    step); appends the run's own accounting (overhead share, step-time split, MFU) to `extra`."""
    from accelerate import Accelerator

    from tuitrain.config import resolve
    from tuitrain.store import Store
    from tuitrain.train.loop import Trainer
    from tuitrain.train.report import Reporter

    reset_accelerate()
    cfg = make_config(a, a.log_every)
    store = Store(root)
    run = store.create_run(to_dict(cfg), resolve(cfg).derived.as_dict(), name="bench-ours")
    run_dir = store.run_dir(run.id)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, run_dir / "config.yaml")
    acc = Accelerator(mixed_precision=cfg.training.mixed_precision, cpu=a.cpu)
    report = Reporter(run_dir, active=True)
    tr = Trainer(run_dir, cfg, acc, report, [False])
    tr.setup(resume=False)
    stamps: dict[int, tuple[float, float]] = {}
    drain = tr.buf.drain

    def stamped_drain():
        # Stamp each batch of metrics as it leaves the device (drain holds the loop's host sync).
        rows, rates = drain()
        if rows:
            stamps[rows[-1].step] = (time.perf_counter(), time.process_time())
        return rows, rates

    tr.buf.drain = stamped_drain
    writer_tid = getattr(getattr(report.writer, "_thread", None), "native_id", None)
    writer0 = thread_cpu_s(writer_tid)
    tr.run()
    writer_cpu = thread_cpu_s(writer_tid) - writer0  # before close: the thread is still there
    train_s = max(tr.buf.total_s, 1e-9)  # drained windows: every step, evals/saves excluded
    rate = tr.buf.total_tokens / train_s
    mfu = tr.flops.mfu(rate, tr.buf.total_span / max(1, tr.buf.total_tokens))
    extra.append(
        {
            "step_path_fraction": tr.timer.totals["overhead"] / train_s,
            "writer_thread_cpu_fraction": writer_cpu / train_s,
            "time": tr.timer.run_means(),
            "tokens_per_s": rate,
            "mfu": mfu,
            "mfu_note": tr.flops.note,
            "perf": tr.flops.as_dict(a.seq),
        }
    )
    report.finish("completed", None, {})
    report.close()
    store.close()
    lo = min(s for s in stamps if s >= a.warmup)
    return rates_between(a.steps - lo, stamps[lo], stamps[a.steps])


def rates_between(
    steps: int, t0: tuple[float, float], t1: tuple[float, float]
) -> tuple[float, float]:
    """(steps per wall second, steps per CPU second of this process) between two stamps."""
    return steps / (t1[0] - t0[0]), steps / (t1[1] - t0[1])


def stamp() -> tuple[float, float]:
    """(wall, process CPU) clocks after the device has finished its queued work."""
    sync()
    return time.perf_counter(), time.process_time()


def run_plain(a: argparse.Namespace) -> tuple[float, float]:
    """steps/s of the same loop with no metrics and no steering (same model, data, optimizer, LR)."""
    from accelerate import Accelerator

    from tuitrain.config.derived import compute
    from tuitrain.train.data import BatchPlan, ByteTokenizer, build_splits
    from tuitrain.train.model import build_model
    from tuitrain.train.optim import LRControl, build_optimizer

    reset_accelerate()
    cfg = make_config(a, a.log_every)
    torch.manual_seed(0)
    acc = Accelerator(mixed_precision=cfg.training.mixed_precision, cpu=a.cpu)
    tok = ByteTokenizer()
    splits = build_splits(cfg, tok)
    d = compute(cfg, len(splits.train))
    model = build_model(cfg, tok)
    opt = build_optimizer(cfg, model, d.scaled_lr)
    model, opt = acc.prepare(model, opt)
    lrc = LRControl(cfg, d.scaled_lr, d.total_steps, d.warmup_steps or 0)
    plan = BatchPlan(len(splits.train), cfg.batch.size, 0, 1, 0)
    batches = plan.batches(0)
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    t0 = None
    for step in range(a.steps):
        if step == a.warmup:
            t0 = stamp()
        lrc.apply(opt, step)
        for _ in range(a.accum):
            b = {
                k: v.to(acc.device, non_blocking=True)
                for k, v in splits.train.batch(next(batches)).items()
            }
            acc.backward(model(**b, use_cache=False).loss / a.accum)
        acc.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return rates_between(a.steps - a.warmup, t0, stamp())


def run_hf(a: argparse.Namespace, root: Path) -> tuple[float, float]:
    """steps/s of transformers.Trainer with the same settings (logging every log_every steps)."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from tuitrain.train.data import ByteTokenizer, build_splits
    from tuitrain.train.model import build_model

    reset_accelerate()
    cfg = make_config(a, a.log_every)
    tok = ByteTokenizer()
    splits = build_splits(cfg, tok)
    torch.manual_seed(0)
    model = build_model(cfg, tok)

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return len(splits.train)

        def __getitem__(self, i):
            return {k: v[i] for k, v in splits.train.tensors.items()}

    stamps: dict[int, tuple[float, float]] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step in (a.warmup, a.steps):
                stamps[state.global_step] = stamp()

    args = TrainingArguments(
        output_dir=str(root / "hf"), per_device_train_batch_size=a.batch, gradient_accumulation_steps=a.accum, learning_rate=3e-4, weight_decay=0.01,
        lr_scheduler_type="cosine", warmup_steps=10, max_steps=a.steps, max_grad_norm=1.0, logging_steps=a.log_every, save_strategy="no",
        eval_strategy="no", report_to=[], bf16=a.precision == "bf16", fp16=a.precision == "fp16", use_cpu=a.cpu, dataloader_num_workers=0,
        seed=0, disable_tqdm=True, optim="adamw_torch_fused" if a.fused else "adamw_torch",
    )  # fmt: skip
    Trainer(model=model, args=args, train_dataset=DS(), callbacks=[Clock()]).train()
    return rates_between(a.steps - a.warmup, stamps[a.warmup], stamps[a.steps])


def sampler_cost(root: Path, calls: int) -> dict | None:
    """Median wall and CPU seconds of one SystemSampler.sample() (the first call, which opens
    NVML, excluded) and its interval; None where tuitrain.telemetry.sysinfo is absent."""
    try:
        from tuitrain.telemetry.sysinfo import DEFAULT_INTERVAL_S, SystemSampler
    except ImportError:
        return None
    root.mkdir(parents=True, exist_ok=True)
    sampler = SystemSampler(root)
    try:
        keys = sorted(sampler.sample())
        walls, cpus = [], []
        for _ in range(calls):
            t0, c0 = time.perf_counter(), time.process_time()
            sampler.sample()
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
    finally:
        close = getattr(sampler, "close", None)
        if close is not None:
            close()
    return {
        "wall_s": statistics.median(walls),
        "cpu_s": statistics.median(cpus),
        "interval_s": DEFAULT_INTERVAL_S,
        "keys": len(keys),
        "gpu_keys": sum(k.startswith("sys/gpu") for k in keys),
    }


PRESETS = {
    # configs/demo.yaml's model, batch and log interval.
    "demo": {"arch": "gpt2", "hidden": 128, "layers": 3, "heads": 4, "seq": 64, "batch": 16,
             "log_every": 5},
    # Llama-style, ~346M parameters (byte vocabulary: nearly all of it in the blocks).
    "llama-350m": {"arch": "llama", "hidden": 1024, "layers": 24, "heads": 16, "intermediate": 3328,
                   "seq": 1024, "batch": 8},
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the variants interleaved and print the figures; the last line is JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=tuple(PRESETS), default=None, help="model/batch preset")
    p.add_argument("--arch", choices=("gpt2", "llama"), default="gpt2")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=None, help="default hidden / 64")
    p.add_argument("--intermediate", type=int, default=None, help="MLP width (default 4 x hidden)")
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--accum", type=int, default=1)
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="mixed precision (autocast over fp32 master weights)",
    )
    p.add_argument(
        "--bf16", dest="precision", action="store_const", const="bf16", help="= --precision bf16"
    )
    p.add_argument(
        "--fused",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fused AdamW kernel (optimizer.fused, the config default / HF optim=adamw_torch_fused)",
    )
    p.add_argument(
        "--sampler-calls", type=int, default=50, help="SystemSampler.sample() calls to time"
    )
    p.add_argument("--cpu", action="store_true", default=not torch.cuda.is_available())
    p.add_argument("--no-hf", action="store_true", help="skip the HF Trainer variant")
    a = p.parse_args(argv)
    if a.preset:
        given = argv if argv is not None else sys.argv[1:]
        for k, v in PRESETS[a.preset].items():
            opt = "--" + k.replace("_", "-")
            if not any(t == opt or t.startswith(opt + "=") for t in given):  # given wins
                setattr(a, k, v)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results: dict[str, list[tuple[float, float]]] = {"plain": [], "tuitrain": [], "hf_trainer": []}
    extra: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for r in range(a.repeats):
            results["plain"].append(run_plain(a))
            results["tuitrain"].append(run_tuitrain(a, root / f"r{r}", extra))
            if not a.no_hf:
                results["hf_trainer"].append(run_hf(a, root / f"r{r}"))
            line = ", ".join(
                f"{k} {v[-1][0]:.2f} steps/s ({v[-1][1]:.2f}/cpu-s)"
                for k, v in results.items()
                if v
            )
            print(f"repeat {r + 1}: {line}", file=sys.stderr, flush=True)
        sampler = sampler_cost(root / "sampler", a.sampler_calls)  # once, after the repeats
    results = {k: v for k, v in results.items() if v}
    wall = {k: statistics.median(x[0] for x in v) for k, v in results.items()}
    cpu = {k: statistics.median(x[1] for x in v) for k, v in results.items()}
    from tuitrain.train.data import ByteTokenizer
    from tuitrain.train.model import build_model

    params = sum(p.numel() for p in build_model(make_config(a, 1), ByteTokenizer()).parameters())
    on_gpu = torch.cuda.is_available() and not a.cpu
    device = torch.cuda.get_device_name(0) if on_gpu else f"cpu x{torch.get_num_threads()} threads"
    hf = "hf_trainer" in wall
    step_path = [x["step_path_fraction"] for x in extra]
    if sampler is not None:
        # Its share of the wall clock, and per step at the instrumented loop's rate.
        sampler["fraction"] = sampler["wall_s"] / sampler["interval_s"]
        sampler["s_per_step"] = sampler["wall_s"] / (sampler["interval_s"] * wall["tuitrain"])
        print(
            f"system sampler: {1e3 * sampler['wall_s']:.3f} ms wall / {1e3 * sampler['cpu_s']:.3f} ms "
            f"CPU per sample() ({sampler['keys']} metrics, {sampler['gpu_keys']} GPU) every "
            f"{sampler['interval_s']:g} s = {1e6 * sampler['s_per_step']:.2f} us per step at "
            f"{wall['tuitrain']:.2f} steps/s ({100 * sampler['fraction']:.4f}% of the time)",
            file=sys.stderr,
        )
    share = sampler["fraction"] if sampler else 0.0
    fractions = [f + share for f in step_path]
    mfus = [x["mfu"] for x in extra if x["mfu"] is not None]
    out = {
        "overhead_ratio": round(wall["tuitrain"] / wall["plain"], 4),
        # Direct measure (median of the repeats; all of them in instrumentation_fractions).
        "instrumentation_fraction": round(statistics.median(fractions), 6),
        "instrumentation_fractions": [round(f, 6) for f in fractions],
        "step_path_fraction": round(statistics.median(step_path), 6),
        "sampler_fraction": round(share, 6) if sampler else None,
        "sampler_s_per_call": round(sampler["wall_s"], 7) if sampler else None,
        "sampler_cpu_s_per_call": round(sampler["cpu_s"], 7) if sampler else None,
        "sampler_s_per_step": round(sampler["s_per_step"], 9) if sampler else None,
        "writer_thread_cpu_fraction": round(statistics.median(x["writer_thread_cpu_fraction"] for x in extra), 6),
        "time_split_s": {k: round(statistics.median(x["time"][k] for x in extra), 6) for k in extra[0]["time"]},
        "tokens_per_s": round(statistics.median(x["tokens_per_s"] for x in extra), 1),
        "mfu": round(statistics.median(mfus), 4) if mfus else None,
        "mfu_note": extra[0]["mfu_note"], "flops_per_token": extra[0]["perf"]["flops_per_token"],
        "vs_hf_trainer": round(wall["tuitrain"] / wall["hf_trainer"], 4) if hf else None,
        # Per CPU-second of this process: steadier than wall time on a shared CPU (meaningless on GPU).
        "overhead_ratio_cpu": None if on_gpu else round(cpu["tuitrain"] / cpu["plain"], 4),
        "vs_hf_trainer_cpu": None if on_gpu or not hf else round(cpu["tuitrain"] / cpu["hf_trainer"], 4),
        "steps_per_s": {k: round(v, 3) for k, v in wall.items()},
        "steps_per_cpu_s": {k: round(v, 3) for k, v in cpu.items()},
        "runs": {k: [round(x[0], 3) for x in v] for k, v in results.items()},
        "model_params": params, "device": device, "precision": a.precision, "fused": a.fused, "arch": a.arch,
        "batch": a.batch, "accum": a.accum, "seq": a.seq, "steps": a.steps, "warmup": a.warmup, "log_every": a.log_every,
    }  # fmt: skip
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
