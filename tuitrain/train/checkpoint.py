"""Provides checkpoints: Accelerate save_state into RUN_DIR/checkpoints/step-N with rotation,
best weights kept apart, LoRA adapters saved with save_pretrained, and the final export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

CKPT_DIR = "checkpoints"
BEST = "best"
DONE_MARK = "complete.json"  # written last: a folder without it is a half-written checkpoint


def ckpt_root(run_dir: Path) -> Path:
    """RUN_DIR/checkpoints."""
    return Path(run_dir) / CKPT_DIR


def periodic(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete step-N checkpoints, oldest first."""
    out = []
    root = ckpt_root(run_dir)
    if root.is_dir():
        for d in root.glob("step-*"):
            if (d / DONE_MARK).is_file() and d.name[5:].isdigit():
                out.append((int(d.name[5:]), d))
    return sorted(out)


def last_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    ckpts = periodic(run_dir)
    return ckpts[-1][1] if ckpts else None


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config")


def save(accelerator, model, run_dir: Path, step: int, limit: int, info: dict) -> Path:
    """Save the full training state at `step` on all ranks, then rotate (keep `limit`)."""
    d = ckpt_root(run_dir) / f"step-{step}"
    if accelerator.is_main_process and d.exists():
        shutil.rmtree(d)  # a stale folder from before a resume
    accelerator.wait_for_everyone()
    accelerator.save_state(str(d))  # every rank calls it: sharded setups save their part
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        if _is_peft(unwrapped):
            unwrapped.save_pretrained(str(d / "adapter"))
        (d / DONE_MARK).write_text(json.dumps({"step": step, **info}))
        for _, old in periodic(run_dir)[:-limit]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return d


def _trainable_state(model) -> dict[str, torch.Tensor]:
    return {
        n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad
    }


def save_best(accelerator, model, run_dir: Path, step: int, metric: str, value: float) -> None:
    """Keep the trainable weights of the best evaluation apart (adapter too for LoRA); rank 0 writes."""
    if not accelerator.is_main_process:
        return
    d = ckpt_root(run_dir) / BEST
    tmp = d.with_name(BEST + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    unwrapped = accelerator.unwrap_model(model)
    torch.save(_trainable_state(unwrapped), tmp / "trainable.pt")
    if _is_peft(unwrapped):
        unwrapped.save_pretrained(str(tmp / "adapter"))
    (tmp / DONE_MARK).write_text(json.dumps({"step": step, "metric": metric, "value": value}))
    shutil.rmtree(d, ignore_errors=True)
    tmp.rename(d)


def load_best(accelerator, model, run_dir: Path) -> dict | None:
    """Load the best trainable weights into `model` on every rank; returns best's info or None."""
    d = ckpt_root(run_dir) / BEST
    accelerator.wait_for_everyone()
    if not (d / DONE_MARK).is_file():
        return None
    state = torch.load(d / "trainable.pt", map_location="cpu", weights_only=True)
    unwrapped = accelerator.unwrap_model(model)
    params = dict(unwrapped.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
    return json.loads((d / DONE_MARK).read_text())


def export_final(accelerator, model, tok, run_dir: Path) -> Path | None:
    """RUN_DIR/final: save_pretrained of the model (the adapter only for LoRA) and tokenizer."""
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return None
    d = Path(run_dir) / "final"
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.save_pretrained(str(d))
    tok.save_pretrained(str(d))
    return d
