"""Provides the training script of the two-process HF test: tiny GPT-2, TuiTrainCallback, and a
recorder that writes each rank's optimizer LR per step, so the test can compare the ranks.

Usage: accelerate launch --cpu --num_processes 2 hf_ddp_script.py RUNS_DIR OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import transformers  # noqa: E402

from tuitrain.integrations.hf import TuiTrainCallback  # noqa: E402


class Tokens(torch.utils.data.Dataset):
    """Random token sequences (nothing to download)."""

    def __init__(self, n: int = 512, length: int = 16, vocab: int = 64) -> None:
        self.x = torch.randint(0, vocab, (n, length), generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.x[i], "labels": self.x[i]}


class Recorder(transformers.TrainerCallback):
    """After TuiTrainCallback's on_step_end: this rank's LR for the next update, and the stop flag."""

    def __init__(self, out: str) -> None:
        self.out, self.rows = out, []

    def on_step_end(self, args, state, control, optimizer=None, **kw):
        self.rows.append(
            [state.global_step, optimizer.param_groups[0]["lr"], bool(control.should_training_stop)]
        )
        time.sleep(0.02)  # long enough steps for the test to steer the run

    def on_train_end(self, args, state, control, **kw):
        with open(os.path.join(self.out, f"rank{args.process_index}.json"), "w") as f:
            json.dump({"rows": self.rows, "world": args.world_size}, f)


def main() -> None:
    runs_dir, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        vocab_size=64,
        n_positions=32,
        n_embd=32,
        n_layer=1,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
    )
    args = transformers.TrainingArguments(
        output_dir=out, max_steps=3000, per_device_train_batch_size=4, learning_rate=1e-3,
        lr_scheduler_type="cosine", warmup_steps=5, logging_steps=5, save_strategy="no",
        report_to="none", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, seed=0,
    )  # fmt: skip
    callbacks = [TuiTrainCallback(runs_dir=runs_dir, name="hf-ddp"), Recorder(out)]
    transformers.Trainer(
        model=transformers.GPT2LMHeadModel(cfg),
        args=args,
        train_dataset=Tokens(),
        callbacks=callbacks,
    ).train()


if __name__ == "__main__":
    main()
