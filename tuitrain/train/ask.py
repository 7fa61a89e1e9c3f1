"""Provides `python -m tuitrain.train.ask`: a short-lived process that answers one prompt with one
or more runs' checkpoints and stores each answer as a sample (source "ask").

    python -m tuitrain.train.ask --runs-dir runs --run=RUN [--run=RUN2] --prompt="..." \
        [--checkpoint best|last] [--max-new-tokens N] [--format text|json]

For each run: its config.yaml, its tokenizer and model (LoRA: base model + adapter) built as the
trainer builds them, the weights chosen by tuitrain.runs.ask (best weights if kept, else the
newest complete checkpoint), the prompt rendered with the run's chat template for
chat/instruction runs, and the run's generation settings (greedy unless
generation.temperature > 0). The CLI and the TUI start it through tuitrain.runs.ask and never
import torch. Exit codes as tuitrain.cli.exits; a failure is one `error: ...` line on stderr.
"""

from __future__ import annotations

import argparse
import sys

from tuitrain.runs.ask import (
    BAD_INPUT,
    CHECKPOINTS,
    FAILED,
    NOT_FOUND,
    AskError,
    Target,
    check_prompt,
    format_answers,
    plan,
    prompt_id,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tuitrain.train.ask", description=__doc__)
    p.add_argument("--runs-dir", default="runs", metavar="DIR")
    p.add_argument("--run", action="append", default=[], metavar="RUN", help="id or unique name")
    p.add_argument("--prompt", required=True)
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default="best")
    p.add_argument("--max-new-tokens", type=int, default=None, metavar="N")
    p.add_argument("--format", choices=("text", "json"), default="text")
    return p


def answer_with(store, t: Target, prompt: str, max_new_tokens: int | None) -> dict:
    """Load `t`'s weights, answer `prompt`, store the sample; returns what the process prints."""
    import torch

    from tuitrain.config import load_config
    from tuitrain.data.records import CHAT_FORMATS
    from tuitrain.samples.scores import score
    from tuitrain.train import checkpoint as ckpt
    from tuitrain.train.generate import answer, text_ids
    from tuitrain.train.model import build_model
    from tuitrain.train.tokenizer import build_tokenizer, encoder

    cfg = load_config(t.run_dir / "config.yaml").config
    g = cfg.generation
    if max_new_tokens is not None:
        g = g.model_copy(update={"max_new_tokens": max_new_tokens})
    torch.manual_seed(cfg.run.seed)  # a from-scratch model's init: replaced by the weights below
    tok = build_tokenizer(cfg)
    model = build_model(cfg, tok)
    if t.kind == "best":
        if cfg.peft.method != "none" and not cfg.model.name_or_path:
            # best-N holds the adapter only; a from-scratch base's frozen weights are in every
            # step-N checkpoint, not in any init this process could redo
            from tuitrain.runs.checkpoints import CheckpointError, choose_resume

            try:
                ckpt.copy_weights(model, choose_resume(t.run_dir, hashes=False)[0])
            except CheckpointError:
                raise AskError(f"run {t.run_id}: its best adapter has no checkpoint with the base weights beside it; use --checkpoint last", NOT_FOUND) from None  # fmt: skip
        unknown = ckpt.best_into(model, t.path)
        if unknown:
            raise AskError(f"{t.path} does not fit run {t.run_id}'s model: {', '.join(unknown[:3])}", FAILED)  # fmt: skip
    else:
        _, _, skipped = ckpt.copy_weights(model, t.path)
        if skipped:
            raise AskError(f"{t.path} does not fit run {t.run_id}'s model (missing {', '.join(skipped[:3])})", FAILED)  # fmt: skip
    cuda = torch.cuda.is_available() and not cfg.launch.cpu
    device = torch.device("cuda" if cuda else "cpu")
    if cfg.peft.method != "qlora":  # a quantised model was placed by from_pretrained
        model = model.to(device)
    model.eval()
    fmt = t.data_format or cfg.data.format
    messages, stop = None, None
    if fmt in CHAT_FORMATS:
        from tuitrain.train.sft import answer_end, chat_render

        render, _ = chat_render(cfg, tok)
        messages = [{"role": "user", "content": prompt}]
        ids = encoder(tok)([render(messages, True)])[0]
        stop = answer_end(cfg, tok) or None
    else:
        ids = text_ids(tok, prompt)
    torch.manual_seed(cfg.run.seed)
    a = answer(model, tok, ids, g, g.max_new_tokens, device, stop, cfg.run.seed)
    a["settings"]["checkpoint"] = t.label
    row = {
        "prompt_id": prompt_id(prompt),
        "source": "ask",
        "prompt": prompt,
        "messages": messages,
        "reference": None,
        "step": t.step,
        **a,
        **score(a["output"], None),
    }
    (sid,) = store.samples.add(t.run_id, [row])
    return {
        "run": t.run_id,
        "run_name": t.run_name,
        "step": t.step,
        "checkpoint": t.label,
        "sample_id": sid,
        "note": t.note,
        **{k: row[k] for k in ("prompt_id", "prompt", "output", "tokens", "seconds")},
        **{k: row[k] for k in ("settings", "repetition")},
    }


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Answer the prompt with each run's checkpoint; the exit code as tuitrain.cli.exits. Every
    refusal (bad prompt, no such run, no checkpoint) comes before torch is imported."""
    args = _parser().parse_args(argv)
    from tuitrain.config.errors import ConfigError
    from tuitrain.data.sources import DataError
    from tuitrain.store import Store, StoreError

    try:
        prompt = check_prompt(args.prompt, args.max_new_tokens)
        with Store(args.runs_dir) as store:
            targets = plan(store, args.run, args.checkpoint)  # every check before any load
            from tuitrain.train.model import SetupError  # imports torch

            try:
                answers = [answer_with(store, t, prompt, args.max_new_tokens) for t in targets]
            except SetupError as exc:
                print(f"error: {_first_line(exc)}", file=sys.stderr, flush=True)
                return BAD_INPUT
    except AskError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.code
    except (ConfigError, DataError) as exc:
        print(f"error: {_first_line(exc)}", file=sys.stderr, flush=True)
        return BAD_INPUT
    except (StoreError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return NOT_FOUND if isinstance(exc, FileNotFoundError) else FAILED
    except Exception as exc:  # one line for the caller to show; the traceback is of no use there
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return FAILED
    print(format_answers(answers, args.format), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
