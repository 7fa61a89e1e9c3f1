"""Provides the two-rank custom-loop script of test_api_ddp: plain torch.distributed (gloo), DDP,
`tuitrain.init()` on every rank, steer_lr, stop; each rank writes its LR trace for the test.

Usage: python -m torch.distributed.run --nproc_per_node 2 ddp_loop_script.py RUNS_DIR OUT_DIR
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch
import torch.distributed as dist

import tuitrain


def main() -> None:
    runs_dir, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    total = 100_000
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / total)
    run = tuitrain.init(name="ddp-loop", config={"lr": 0.01}, runs_dir=runs_dir)
    run.steer_lr(sched)
    rows = []
    x, y = torch.randn(64, 8), torch.randn(64, 1)
    for step in range(1, total):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        run.log({"loss": loss.detach(), "lr": opt.param_groups[0]["lr"]}, step=step)
        stop = False
        for cmd in run.poll(step):
            if cmd.kind == "stop":
                run.ack(cmd, step)
                stop = True
        rows.append([step, opt.param_groups[0]["lr"], stop])
        if stop:
            break
        time.sleep(0.01)
    run.finish("early_stopped")
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"rows": rows, "run_id": run.id, "dir": str(run.dir)}, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
