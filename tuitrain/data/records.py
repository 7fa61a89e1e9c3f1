"""Provides record formats (text, prompt_completion, alpaca, chat / ShareGPT): detection, the
one conversion of a record to what is tokenised (a text, or a chat with the turns that carry
the loss), and the tokens of a chat with its loss mask.

Torch-free and tokenizer-agnostic (an `encode` callable is passed in), so the trainer's
`datasets.map` workers and the editor's estimate run the very same code on a record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tuitrain.data.chat import (
    ROLES,
    Conversation,
    RecordError,
    check_order,
    content_text,
    messages,
    tools_of,
)
from tuitrain.data.templates import Render, segments

__all__ = ["ROLES", "RecordError", "Conversation"]

FORMATS = ("text", "prompt_completion", "alpaca", "chat")
CHAT_FORMATS = ("prompt_completion", "alpaca", "chat")
SHAREGPT_FIELD = "conversations"
# A batch encoder: texts -> token ids of each (no special tokens added).
Encode = Callable[[list[str]], list[list[int]]]

_SETTING = {
    "prompt_field": "prompt",
    "completion_field": "completion",
    "instruction_field": "instruction",
    "input_field": "input",
    "output_field": "output",
    "messages_field": "messages",
    "text_field": "text",
}


def detect(row: dict, d) -> tuple[str, str]:
    """(format, how it was chosen) for a record, from data.format or the record's keys; `d` is
    the config's data group."""
    if d.format != "auto":
        return d.format, "set by data.format"
    keys = {k for k, v in row.items() if v is not None}  # datasets fills absent columns with None
    if d.messages_field in keys or SHAREGPT_FIELD in keys:
        key = d.messages_field if d.messages_field in keys else SHAREGPT_FIELD
        return "chat", f"detected from the {key!r} key"
    if d.prompt_field in keys and d.completion_field in keys:
        return (
            "prompt_completion",
            f"detected from the {d.prompt_field!r}/{d.completion_field!r} keys",
        )
    if d.instruction_field in keys and d.output_field in keys:
        return "alpaca", f"detected from the {d.instruction_field!r}/{d.output_field!r} keys"
    if d.text_field in keys:
        return "text", f"detected from the {d.text_field!r} key"
    raise RecordError(
        "data.format",
        f"cannot tell the format from the keys {sorted(keys)[:8]} (set data.format, or the "
        "field names: data.text_field, data.prompt_field/completion_field, "
        "data.instruction_field/output_field, data.messages_field)",
    )


def _setting(d, key: str) -> str:
    for name in _SETTING:
        if getattr(d, name, None) == key:
            return f"data.{name}"
    return "the matching data.*_field"


def _text(row: dict, key: str, what: str, d, required: bool = True) -> str:
    if key not in row or row[key] is None:
        if not required:
            return ""
        raise RecordError(key, f"missing ({what}; set {_setting(d, key)} if it has another name)")
    v = content_text(row[key], key) if isinstance(row[key], list) else row[key]
    if not isinstance(v, str):
        raise RecordError(key, f"must be a string, not {type(v).__name__}")
    if required and what.startswith("the answer") and not v.strip():
        raise RecordError(key, "empty answer (every record needs a non-empty answer)")
    return v


def text_of(row: dict, d) -> str:
    """The text of a text record (data.text_field)."""
    v = row.get(d.text_field)
    if v is None:
        raise RecordError(
            d.text_field,
            f"missing (set data.text_field to the key holding the text; keys: {sorted(row)[:8]})",
        )
    return v if isinstance(v, str) else str(v)


def _turn(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def to_conversation(row: dict, fmt: str, d) -> Conversation:
    """The record as a chat (prompt_completion and alpaca become one user/assistant turn);
    RecordError names the field that is wrong."""
    if fmt == "chat":
        key = d.messages_field if row.get(d.messages_field) is not None else SHAREGPT_FIELD
        if row.get(key) is None:
            raise RecordError(d.messages_field, "missing (set data.messages_field)")
        conv = messages(row[key], key, role_map(d))
        system = row.get("system")
        if isinstance(system, str) and system.strip() and conv.messages[0]["role"] != "system":
            conv.messages.insert(0, _turn("system", system))  # ShareGPT's record-level system
            conv.trained.insert(0, False)
        conv.tools = tools_of(row.get(d.tools_field), d.tools_field)
        return conv
    if fmt == "prompt_completion":
        p, c = row.get(d.prompt_field), row.get(d.completion_field)
        if _is_chat(p) or _is_chat(c):  # TRL's conversational prompt/completion
            prompt = messages(p, d.prompt_field, role_map(d), False) if _is_chat(p) else None
            if prompt is None:
                raise RecordError(d.prompt_field, "must be a list of messages like the completion")
            msgs = prompt.messages + _answer_turns(c, d)
            trained = [False] * len(prompt.messages) + [True] * (len(msgs) - len(prompt.messages))
            check_order([m["role"] for m in msgs], d.prompt_field)
            return Conversation(msgs, trained, tools_of(row.get(d.tools_field), d.tools_field))
        prompt = _text(row, d.prompt_field, "the prompt", d)
        answer = _text(row, d.completion_field, "the answer (completion)", d)
        return Conversation([_turn("user", prompt), _turn("assistant", answer)], [False, True])
    if fmt == "alpaca":
        instruction = _text(row, d.instruction_field, "the instruction", d)
        if not instruction.strip():
            raise RecordError(d.instruction_field, "empty instruction")
        extra = _text(row, d.input_field, "the input", d, required=False)
        answer = _text(row, d.output_field, "the answer (output)", d)
        user = instruction + ("\n\n" + extra if extra.strip() else "")
        msgs = [_turn("user", user), _turn("assistant", answer)]
        system = row.get("system")
        if isinstance(system, str) and system.strip():
            msgs.insert(0, _turn("system", system))
        return Conversation(msgs, [m["role"] == "assistant" for m in msgs])
    raise RecordError("data.format", f"{fmt!r} records have no chat form")


def role_map(d) -> dict[str, str]:
    """data.role_map (name=role pairs) as a dict."""
    return dict(item.split("=", 1) for item in d.role_map)


def _is_chat(v: object) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(m, dict) for m in v)


def _answer_turns(items: object, d) -> list[dict]:
    """The completion side of a conversational prompt/completion record: assistant turns only."""
    if not _is_chat(items):
        raise RecordError(d.completion_field, "must be a list of assistant messages")
    out = []
    for i, m in enumerate(items):
        where = f"{d.completion_field}[{i}]"
        if m.get("role") != "assistant":
            raise RecordError(f"{where}.role", "a completion holds assistant messages only")
        text = content_text(m.get("content"), f"{where}.content")
        if not text or not text.strip():
            raise RecordError(f"{where}.content", "empty answer (assistant turns need text)")
        out.append(_turn("assistant", text))
    return out


@dataclass
class Tokens:
    """One tokenised record: ids, the loss mask (1 = the token carries loss), its length before
    truncation and how many loss tokens survived truncation (0: the record is dropped)."""

    ids: list[int]
    mask: list[int]
    length: int
    answer_tokens: int


def tokenise(conv: Conversation, render: Render, encode: Encode, max_len: int) -> Tokens:
    """Tokens of a chat cut to max_len; each rendered piece is encoded on its own, so loss
    boundaries fall exactly between tokens (the mask is exact, not found back by offsets)."""
    pieces = segments(conv.messages, render, conv.trained)
    encoded = encode([t for t, _ in pieces])
    ids: list[int] = []
    answers: list[int] = []
    for (_, answer), toks in zip(pieces, encoded, strict=True):
        ids.extend(toks)
        answers.extend([1 if answer else 0] * len(toks))
    kept = answers[:max_len]
    return Tokens(ids[:max_len], kept, len(ids), sum(kept))


def pack_plan(lengths: Sequence[int], max_len: int) -> list[tuple[int, int]]:
    """Whole examples packed in order into blocks of at most max_len tokens (next fit): the
    (first, end) example range of each block. Deterministic, so the editor's estimate and the
    trainer count the same blocks."""
    blocks: list[tuple[int, int]] = []
    start, used = 0, 0
    for i, n in enumerate(lengths):
        if used and used + n > max_len:
            blocks.append((start, i))
            start, used = i, 0
        used += n
    if len(lengths) > start:
        blocks.append((start, len(lengths)))
    return blocks


def text_blocks(d, task: str) -> bool:
    """Whether text records are concatenated and cut into blocks (data.text_mode, causal LM)."""
    return task == "causal-lm" and d.text_mode == "blocks"
