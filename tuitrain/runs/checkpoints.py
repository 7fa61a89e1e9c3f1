"""Provides checkpoint verification, torch-free: the manifest (every file's size and SHA-256) a
step-N checkpoint records in its complete.json, written last, and the choice of the checkpoint a
resume starts from: the newest one that is complete and matches its manifest, naming every newer
one skipped and why. `tuitrain resume` checks before it launches; the trainer checks again.

A checkpoint saved before manifests existed (complete.json without "files") is accepted
unverified, with a note saying so: its files cannot be checked, and refusing it would strand
runs that resumed fine before.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

CKPT_DIR = "checkpoints"
BEST = "best"  # best-N: the best weights of the timeline whose best eval was step N
DONE_MARK = "complete.json"  # written last: a folder without it is a half-written checkpoint
FILES_KEY = "files"  # complete.json's manifest: {relative path: {"size": bytes, "sha256": hex}}
# Written into a finished checkpoint later (the doctor's pin): not part of what was saved.
UNLISTED = frozenset({DONE_MARK, "pinned.json"})
_CHUNK = 1 << 20


class CheckpointError(RuntimeError):
    """No checkpoint a resume can start from; the message lists each one and what is wrong."""


def sha256(path: Path) -> str:
    """The file's SHA-256 (hex), read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def manifest(ckpt_dir: str | Path) -> dict[str, dict]:
    """{relative path: {size, sha256}} of every file in the checkpoint folder (sorted)."""
    root = Path(ckpt_dir)
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel not in UNLISTED:
            out[rel] = {"size": p.stat().st_size, "sha256": sha256(p)}
    return out


def write_done(ckpt_dir: str | Path, info: dict) -> Path:
    """Write complete.json (the info and the manifest of everything saved so far): call it last.

    Written to a temporary name, flushed and renamed, so a crash leaves either no complete.json
    or a whole one."""
    d = Path(ckpt_dir)
    mark, tmp = d / DONE_MARK, d / (DONE_MARK + ".tmp")
    text = json.dumps({**info, FILES_KEY: manifest(d)})
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.rename(mark)
    return mark


@dataclass
class Verdict:
    """What a check of one step-N folder found."""

    step: int
    path: Path
    problems: list[str] = field(default_factory=list)  # empty: usable
    verified: bool = False  # False with no problems: an old checkpoint without a manifest

    @property
    def ok(self) -> bool:
        """Whether a resume may start from it."""
        return not self.problems

    def describe(self) -> str:
        """`step-300 is damaged (model.safetensors: incomplete)`."""
        return f"{self.path.name} is damaged ({'; '.join(self.problems)})"


def verify(ckpt_dir: str | Path, hashes: bool = True) -> Verdict:
    """Check one step-N folder against its manifest (sizes, then hashes unless hashes=False)."""
    d = Path(ckpt_dir)
    step = int(d.name.removeprefix("step-")) if d.name.removeprefix("step-").isdigit() else -1
    v = Verdict(step, d)
    mark = d / DONE_MARK
    if not mark.is_file():
        v.problems.append(f"{DONE_MARK}: missing (the save did not finish)")
        return v
    try:
        info = json.loads(mark.read_text())
    except (OSError, ValueError) as exc:
        v.problems.append(f"{DONE_MARK}: unreadable ({exc})")
        return v
    files = info.get(FILES_KEY) if isinstance(info, dict) else None
    if files is None:
        return v  # saved before manifests: accepted unverified (see the module docstring)
    for rel, want in files.items():
        p = d / rel
        if not p.is_file():
            v.problems.append(f"{rel}: missing")
            continue
        size = p.stat().st_size
        if size < want["size"]:
            v.problems.append(f"{rel}: incomplete ({size} of {want['size']} bytes)")
        elif size != want["size"]:
            v.problems.append(f"{rel}: {size} bytes, the manifest says {want['size']}")
        elif hashes and sha256(p) != want["sha256"]:
            v.problems.append(f"{rel}: content differs from the manifest (SHA-256)")
    v.verified = True
    return v


def best_dir(run_dir: str | Path, step: int) -> Path:
    """RUN_DIR/checkpoints/best-STEP: the best weights of the timeline whose best eval was STEP."""
    return Path(run_dir) / CKPT_DIR / f"{BEST}-{step}"


def best_steps(run_dir: str | Path) -> list[int]:
    """Steps of the complete best-N folders, oldest first."""
    root = Path(run_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    pre = BEST + "-"
    return sorted(
        int(d.name[len(pre) :])
        for d in root.glob(pre + "*")
        if d.name[len(pre) :].isdigit() and (d / DONE_MARK).is_file()
    )


def step_folders(run_dir: str | Path) -> list[Path]:
    """The run's step-N folders, complete or not, newest first."""
    root = Path(run_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    found = [d for d in root.glob("step-*") if d.is_dir() and d.name[5:].isdigit()]
    return sorted(found, key=lambda d: int(d.name[5:]), reverse=True)


def choose_resume(run_dir: str | Path, hashes: bool = True) -> tuple[Path, list[str]]:
    """(the newest usable step-N folder, notes on the newer ones skipped and on an unverified
    choice). Raises CheckpointError listing every folder and its problems when none is usable."""
    seen: list[Verdict] = []
    for d in step_folders(run_dir):
        v = verify(d, hashes=hashes)
        if v.ok:
            notes = [f"{s.describe()}; resuming from {d.name}" for s in seen]
            if not v.verified:
                notes.append(
                    f"{d.name} has no manifest (saved by an older tuitrain): resuming from it unverified"
                )
            return d, notes
        seen.append(v)
    where = Path(run_dir) / CKPT_DIR
    if not seen:
        raise CheckpointError(f"no complete checkpoint in {where}; start a new run instead")
    listed = "; ".join(s.describe() for s in seen)
    raise CheckpointError(
        f"no usable checkpoint in {where}: {listed}. Nothing was resumed; start a new run, or"
        " branch from another run's checkpoint"
    )
