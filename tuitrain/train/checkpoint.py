"""Provides checkpoints: Accelerate save_state into RUN_DIR/checkpoints/step-N with rotation and a
manifest (tuitrain.runs.checkpoints) written last, the verified choice a resume loads, best weights
kept apart (best-N, per timeline), LoRA adapters saved with save_pretrained, and the final export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from tuitrain.runs.checkpoints import (
    BEST,
    CKPT_DIR,
    DONE_MARK,
    best_dir,
    choose_resume,
    write_done,
)
from tuitrain.runs.lineage import complete_checkpoints, rotated

STATE_FILE = "train_state.json"  # the loop position and LR control: JSON, never a pickle


def ckpt_root(run_dir: Path) -> Path:
    """RUN_DIR/checkpoints."""
    return Path(run_dir) / CKPT_DIR


def periodic(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete step-N checkpoints, oldest first (the torch-free lister the CLI and TUI use)."""
    return complete_checkpoints(run_dir)


def resume_point(accelerator, run_dir: Path) -> tuple[Path, list[str]]:
    """The checkpoint a resume loads (the newest that matches its manifest) and the notes on
    damaged ones skipped; rank 0 checks and tells the others. CheckpointError when none is usable."""
    from tuitrain.runs.checkpoints import CheckpointError

    box: list = [None]
    if accelerator.is_main_process:
        try:
            path, notes = choose_resume(run_dir)
            box = [(str(path), notes)]
        except CheckpointError as exc:
            box = [str(exc)]
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        broadcast_object_list(box)  # every rank loads the same step (a collective)
    if isinstance(box[0], str):
        raise CheckpointError(box[0])
    return Path(box[0][0]), box[0][1]


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config")


def save(
    accelerator, model, run_dir: Path, step: int, limit: int, info: dict, stateful: dict
) -> Path:
    """Save the full training state at `step` on all ranks, then rotate (keep `limit`).

    `stateful`: name -> object with state_dict() of plain numbers (the loop position, the LR
    control), written as JSON so that loading it back runs no pickle."""
    d = ckpt_root(run_dir) / f"step-{step}"
    if accelerator.is_main_process and d.exists():
        shutil.rmtree(d)  # a stale folder from before a resume
    accelerator.wait_for_everyone()
    accelerator.save_state(str(d))  # every rank calls it: sharded setups save their part
    accelerator.wait_for_everyone()  # every rank's files exist before the manifest lists them
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        if _is_peft(unwrapped):
            unwrapped.save_pretrained(str(d / "adapter"))
        (d / STATE_FILE).write_text(json.dumps({k: o.state_dict() for k, o in stateful.items()}))
        write_done(d, {"step": step, **info})  # sizes and hashes of every file, written last
        for old in rotated(run_dir, limit):  # a checkpoint the doctor pinned stays
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return d


def load(accelerator, ckpt_dir: Path, stateful: dict) -> None:
    """Load a step-N checkpoint on every rank: Accelerate's state (model, optimizer, RNG: its
    loader reads them with weights_only=True) and `stateful` from train_state.json. A checkpoint
    from before that file keeps them in custom_checkpoint_{i}.pkl (plain numbers, in the order
    of `stateful`): read with weights_only=True, never Accelerate's weights_only=False."""
    d = Path(ckpt_dir)
    try:
        accelerator.load_state(str(d))
        f = d / STATE_FILE
        if f.is_file():
            saved = json.loads(f.read_text())
        else:
            saved = {
                name: torch.load(d / f"custom_checkpoint_{i}.pkl", weights_only=True)
                for i, name in enumerate(stateful)
            }
        for name, obj in stateful.items():
            obj.load_state_dict(saved[name])
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as exc:  # a damaged file the manifest could not catch (an old checkpoint)
        raise CheckpointLoadError(
            f"checkpoint {d} could not be loaded ({type(exc).__name__}: {exc}); resume from an"
            f" older one (delete {d.name}) or start a new run"
        ) from exc


class CheckpointLoadError(RuntimeError):
    """A checkpoint that passed its checks but cannot be loaded; names the folder."""


def _trainable_state(model) -> dict[str, torch.Tensor]:
    return {
        n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad
    }


def save_best(accelerator, model, run_dir: Path, step: int, metric: str, value: float) -> Path:
    """Keep the trainable weights of the best evaluation apart (adapter too for LoRA); rank 0 writes.

    Named by step, not overwritten: a resume from an older checkpoint must find the best of *its*
    timeline (the step recorded in that checkpoint), never one a later, abandoned step wrote."""
    d = best_dir(run_dir, step)
    if not accelerator.is_main_process:
        return d
    tmp = d.with_name(d.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    unwrapped = accelerator.unwrap_model(model)
    torch.save(_trainable_state(unwrapped), tmp / "trainable.pt")
    if _is_peft(unwrapped):
        unwrapped.save_pretrained(str(tmp / "adapter"))
    (tmp / DONE_MARK).write_text(json.dumps({"step": step, "metric": metric, "value": value}))
    shutil.rmtree(d, ignore_errors=True)
    tmp.rename(d)
    return d


def prune_best(accelerator, run_dir: Path, current: int, upto: int | None = None) -> None:
    """Delete best-N folders nobody can need: kept are `current` (the live best step) and the best
    step each retained periodic checkpoint recorded (a resume from it restores that one). With
    `upto` (a resume from step `upto`), every best-N with N > upto is from an abandoned timeline."""
    if not accelerator.is_main_process:
        return
    keep = {current}
    for step, d in periodic(run_dir):
        if upto is None or step <= upto:
            info = json.loads((d / DONE_MARK).read_text())
            keep.add(int(info.get("best_step", -1)))
    root = ckpt_root(run_dir)
    for d in root.glob(BEST + "-*") if root.is_dir() else ():
        tail = d.name[len(BEST) + 1 :].removesuffix(".tmp")
        if not tail.isdigit() or d.name.endswith(".tmp") or int(tail) not in keep:
            shutil.rmtree(d, ignore_errors=True)


def load_best(accelerator, model, run_dir: Path, step: int) -> dict | None:
    """Load the best weights of step `step` into `model` on every rank; returns their info or None."""
    d = best_dir(run_dir, step)
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


def copy_best(accelerator, parent_dir: Path, run_dir: Path, step: int) -> bool:
    """A branch inherits its parent's best weights of `step` (its timeline's best so far)."""
    src, dst = best_dir(parent_dir, step), best_dir(run_dir, step)
    if accelerator.is_main_process and (src / DONE_MARK).is_file() and not dst.exists():
        shutil.copytree(src, dst)
    accelerator.wait_for_everyone()
    return (dst / DONE_MARK).is_file()


def _norm(name: str) -> str:
    # Full model and LoRA-wrapped names of the same tensor: drop peft's wrapping.
    return name.removeprefix("base_model.model.").replace(".base_layer.", ".")


def load_weights(accelerator, model, ckpt_dir: Path) -> tuple[int, int, list[str]]:
    """Copy the tensors of a step-N checkpoint's model that fit (same name and shape) into
    `model`; returns (loaded, tensors in the model, names skipped). For branch --weights-only."""
    out = copy_weights(accelerator.unwrap_model(model), ckpt_dir)
    accelerator.wait_for_everyone()
    return out


def copy_weights(model, ckpt_dir: Path) -> tuple[int, int, list[str]]:
    """load_weights for a plain (unwrapped) model in one process (`tuitrain ask`)."""
    from safetensors.torch import load_file

    files = sorted(Path(ckpt_dir).glob("model*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no model weights (model.safetensors) in {ckpt_dir}")
    saved: dict[str, torch.Tensor] = {}
    for f in files:
        saved.update({_norm(k): v for k, v in load_file(str(f)).items()})
    target = model.state_dict(keep_vars=True)
    loaded, missing, done = 0, [], set()
    with torch.no_grad():
        for name, t in target.items():
            src = saved.get(_norm(name))
            if src is not None and tuple(src.shape) == tuple(t.shape):
                t.copy_(src.to(t.dtype))
                loaded += 1
                done.add(t.data_ptr())
            else:
                missing.append((name, t))
    # A tied tensor (lm_head = embeddings) is saved once; it is loaded through its twin.
    skipped = [n for n, t in missing if t.data_ptr() not in done]
    return len(target) - len(skipped), len(target), skipped


def best_into(model, best: Path) -> list[str]:
    """Load a best-N folder's trainable weights into a plain model (`tuitrain ask`); returns the
    saved names the model has no parameter for."""
    state = torch.load(Path(best) / "trainable.pt", map_location="cpu", weights_only=True)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            if name in params and tuple(params[name].shape) == tuple(value.shape):
                params[name].copy_(value)
    return [n for n, v in state.items() if n not in params or params[n].shape != v.shape]


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
