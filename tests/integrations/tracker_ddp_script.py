"""Provides the two-rank script of test_accelerate_tracker: `Accelerator(log_with=TuiTrainTracker)`,
accelerator.log on the main process, tracker.poll/steer_lr on every rank; each rank writes its LR
trace for the test.

Usage: accelerate launch --multi_gpu --num_processes 2 tracker_ddp_script.py RUNS_DIR OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch
from accelerate import Accelerator

from tuitrain.integrations.accelerate import TuiTrainTracker


def main() -> None:
    runs_dir, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    tracker = TuiTrainTracker(runs_dir=runs_dir, name="tracked-ddp")
    acc = Accelerator(log_with=tracker)
    acc.init_trackers("tests", config={"lr": 0.01, "ranks": acc.num_processes})
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    model, opt, sched = acc.prepare(model, opt, sched)
    tracker.steer_lr(sched.scheduler)
    rows = []
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    for step in range(1, 100_000):
        loss = torch.nn.functional.mse_loss(model(x), y)
        acc.backward(loss)
        opt.step()
        sched.step()
        opt.zero_grad()
        acc.log({"loss": loss.detach(), "lr": opt.param_groups[0]["lr"]}, step=step)
        stop = False
        for cmd in tracker.poll(step):
            if cmd.kind == "stop":
                tracker.ack(cmd, step)
                stop = True
        rows.append([step, opt.param_groups[0]["lr"], stop])
        if stop:
            break
        time.sleep(0.01)
    tracker.finish("early_stopped")
    acc.end_training()
    with open(os.path.join(out, f"rank{acc.process_index}.json"), "w") as f:
        json.dump({"rows": rows}, f)


if __name__ == "__main__":
    main()
