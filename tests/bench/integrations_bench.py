"""Provides the bring-your-own-script overhead benchmark: what TuiTrainCallback costs an HF Trainer
(steps/s with vs without it, logging every step: the worst case) and what `run.log()` +
`run.poll()` cost a custom loop per step.

    OMP_NUM_THREADS=1 python tests/bench/integrations_bench.py
    python tests/bench/integrations_bench.py --hidden 512 --layers 8 --steps 300   # on a GPU box

Trainer variants run `--repeats` times, interleaved; steps/s is measured from step `--warmup` to
the last and the median is reported. The last line is JSON (`callback_ratio`: with / without,
1.0 = free; `callback_us_per_step`: time inside its on_step_end + on_log, timed directly, which
a shared CPU does not blur; `api_us_per_step`: log of 4 metrics + poll, in microseconds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import transformers

import tuitrain
from tuitrain.integrations.hf import TuiTrainCallback


class Tokens(torch.utils.data.Dataset):
    """Random token sequences."""

    def __init__(self, n: int, length: int, vocab: int) -> None:
        self.x = torch.randint(0, vocab, (n, length), generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.x[i], "labels": self.x[i]}


class Clock(transformers.TrainerCallback):
    """Wall time at step `warmup` and at the end (so start-up is not counted)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.t0, self.t1, self.steps = warmup, 0.0, 0.0, 0

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.warmup:
            self.t0 = time.perf_counter()
        self.t1, self.steps = time.perf_counter(), state.global_step


class TimedCallback(TuiTrainCallback):
    """TuiTrainCallback with its per-step hooks timed: the direct measure of its cost."""

    spent = 0.0

    def on_step_end(self, *args, **kw):
        t = time.perf_counter()
        try:
            return super().on_step_end(*args, **kw)
        finally:
            TimedCallback.spent += time.perf_counter() - t

    def on_log(self, *args, **kw):
        t = time.perf_counter()
        try:
            return super().on_log(*args, **kw)
        finally:
            TimedCallback.spent += time.perf_counter() - t


def trainer_steps_per_s(a: argparse.Namespace, with_callback: bool, runs: Path) -> float:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        vocab_size=256,
        n_positions=a.seq,
        n_embd=a.hidden,
        n_layer=a.layers,
        n_head=4,
        bos_token_id=0,
        eos_token_id=0,
    )
    args = transformers.TrainingArguments(
        output_dir=str(runs / "out"), max_steps=a.steps, per_device_train_batch_size=a.batch,
        learning_rate=1e-3, lr_scheduler_type="cosine", logging_steps=1, save_strategy="no",
        report_to="none", disable_tqdm=True, dataloader_num_workers=0, seed=0,
    )  # fmt: skip
    clock = Clock(a.warmup)
    callbacks = [clock] + ([TimedCallback(runs_dir=runs, name="bench")] if with_callback else [])
    trainer = transformers.Trainer(
        model=transformers.GPT2LMHeadModel(cfg),
        args=args,
        train_dataset=Tokens(4096, a.seq, 256),
        callbacks=callbacks,
    )
    trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
    trainer.train()
    return (clock.steps - a.warmup) / (clock.t1 - clock.t0)


def api_us_per_step(runs: Path, steps: int) -> float:
    run = tuitrain.init(name="api-bench", runs_dir=runs)
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        run.log({"loss": 1.0 / step, "lr": 1e-3, "grad_norm": 0.5, "tokens_per_s": 1e5}, step=step)
        run.poll(step)
    dt = time.perf_counter() - t0
    run.finish()
    return dt / steps * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--api-steps", type=int, default=200_000)
    a = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    transformers.logging.set_verbosity_error()
    rates: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.repeats):
            for with_cb in (False, True):
                rates[with_cb].append(
                    trainer_steps_per_s(a, with_cb, Path(tmp) / f"r{i}{int(with_cb)}")
                )
        api = api_us_per_step(Path(tmp) / "api", a.api_steps)
    plain, steered = statistics.median(rates[False]), statistics.median(rates[True])
    print(
        f"HF Trainer, GPT-2 {a.layers}x{a.hidden}, batch {a.batch}x{a.seq}, logging every step, {a.repeats} repeats"
    )
    print(
        f"  without TuiTrainCallback: {plain:8.1f} steps/s  {sorted(round(r, 1) for r in rates[False])}"
    )
    print(
        f"  with TuiTrainCallback:    {steered:8.1f} steps/s  {sorted(round(r, 1) for r in rates[True])}"
    )
    per_step_us = TimedCallback.spent / (a.repeats * a.steps) * 1e6
    share = per_step_us / 1e6 * steered
    print(f"  ratio: {steered / plain:.4f} (CPU noise included)")
    print(
        f"  time inside the callback's per-step hooks: {per_step_us:.1f} us/step = {share:.3%} of a step"
    )
    print(
        f"custom loop: run.log(4 metrics) + run.poll(): {api:.2f} us per step over {a.api_steps} steps"
    )
    print(
        json.dumps(
            {
                "callback_ratio": round(steered / plain, 4),
                "steps_per_s_plain": round(plain, 2),
                "steps_per_s_callback": round(steered, 2),
                "callback_us_per_step": round(per_step_us, 2),
                "callback_share_of_step": round(share, 6),
                "api_us_per_step": round(api, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
