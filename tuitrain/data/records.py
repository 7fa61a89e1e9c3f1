"""Provides record formats (text, prompt_completion, alpaca, chat / ShareGPT): detection, checks
that name the record and the field, and the tokens of a record with its answer mask.

Torch-free and tokenizer-agnostic (an `encode` callable is passed in), so the trainer's
`datasets.map` workers and the editor's size / truncation estimate run the very same code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tuitrain.data.templates import Render, segments

FORMATS = ("text", "prompt_completion", "alpaca", "chat")
CHAT_FORMATS = ("prompt_completion", "alpaca", "chat")
ROLES = ("system", "user", "assistant")
# ShareGPT speakers and the chat roles they mean.
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
SHAREGPT_FIELD = "conversations"
Message = dict[str, str]
# A batch encoder: texts -> token ids of each (no special tokens added).
Encode = Callable[[list[str]], list[list[int]]]


class RecordError(ValueError):
    """One malformed record: the field it concerns and what is wrong."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


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


def _text(row: dict, key: str, what: str, required: bool = True) -> str:
    if key not in row or row[key] is None:
        if not required:
            return ""
        raise RecordError(
            key, f"missing ({what}; set data.{_field_setting(key)} if it has another name)"
        )
    v = row[key]
    if not isinstance(v, str):
        raise RecordError(key, f"must be a string, not {type(v).__name__}")
    if required and what.startswith("the answer") and not v.strip():
        raise RecordError(key, "empty answer (every record needs a non-empty answer)")
    return v


def _field_setting(key: str) -> str:
    return {
        "prompt": "prompt_field",
        "completion": "completion_field",
        "instruction": "instruction_field",
        "input": "input_field",
        "output": "output_field",
        "messages": "messages_field",
        "text": "text_field",
    }.get(key, "the matching *_field")


def _chat(items: object, key: str) -> list[Message]:
    if not isinstance(items, list) or not items:
        raise RecordError(key, "must be a non-empty list of messages")
    out: list[Message] = []
    for i, m in enumerate(items):
        where = f"{key}[{i}]"
        if not isinstance(m, dict):
            raise RecordError(where, "must be an object with role/content (or from/value)")
        if "role" in m:
            role, content = m.get("role"), m.get("content")
            if role not in ROLES:
                raise RecordError(
                    f"{where}.role", f"wrong role {role!r} (use one of {', '.join(ROLES)})"
                )
            ckey = "content"
        elif "from" in m:
            speaker, content = m.get("from"), m.get("value")
            role = SHAREGPT_ROLES.get(str(speaker))
            if role is None:
                raise RecordError(
                    f"{where}.from",
                    f"wrong role {speaker!r} (ShareGPT uses human, gpt or system)",
                )
            ckey = "value"
        else:
            raise RecordError(where, "has no 'role' (or ShareGPT 'from')")
        if not isinstance(content, str):
            raise RecordError(f"{where}.{ckey}", "missing or not a string")
        if role == "assistant" and not content.strip():
            raise RecordError(f"{where}.{ckey}", "empty answer (assistant turns need text)")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in out):
        raise RecordError(key, "no assistant turn: nothing to learn from this record")
    return out


def to_messages(row: dict, fmt: str, d) -> list[Message]:
    """The record as chat messages (prompt_completion and alpaca become one user/assistant turn);
    RecordError names the field that is wrong."""
    if fmt == "chat":
        key = d.messages_field if row.get(d.messages_field) is not None else SHAREGPT_FIELD
        if row.get(key) is None:
            raise RecordError(d.messages_field, "missing (set data.messages_field)")
        return _chat(row[key], key)
    if fmt == "prompt_completion":
        p, c = row.get(d.prompt_field), row.get(d.completion_field)
        if isinstance(p, list) or isinstance(c, list):  # TRL's conversational prompt/completion
            prompt = _chat_prefix(p, d.prompt_field)
            answer = _chat(c, d.completion_field)
            return prompt + answer
        prompt = _text(row, d.prompt_field, "the prompt")
        answer = _text(row, d.completion_field, "the answer (completion)")
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    if fmt == "alpaca":
        instruction = _text(row, d.instruction_field, "the instruction")
        if not instruction.strip():
            raise RecordError(d.instruction_field, "empty instruction")
        extra = _text(row, d.input_field, "the input", required=False)
        answer = _text(row, d.output_field, "the answer (output)")
        user = instruction + ("\n\n" + extra if extra.strip() else "")
        return [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    raise RecordError("data.format", f"{fmt!r} records have no chat form")


def _chat_prefix(items: object, key: str) -> list[Message]:
    if not isinstance(items, list) or not items:
        raise RecordError(key, "must be a non-empty list of messages")
    msgs = []
    for i, m in enumerate(items):
        if (
            not isinstance(m, dict)
            or m.get("role") not in ROLES
            or not isinstance(m.get("content"), str)
        ):
            raise RecordError(f"{key}[{i}]", "must be {role: system|user|assistant, content: text}")
        msgs.append({"role": m["role"], "content": m["content"]})
    return msgs


@dataclass
class Tokens:
    """One tokenised record: ids, the answer mask (1 = an answer token), its length before
    truncation and how many answer tokens survived truncation (0: the record is dropped)."""

    ids: list[int]
    mask: list[int]
    length: int
    answer_tokens: int


def tokenise(messages: Sequence[Message], render: Render, encode: Encode, max_len: int) -> Tokens:
    """Tokens of a chat cut to max_len; each rendered piece is encoded on its own, so answer
    boundaries fall exactly between tokens (the mask is exact, not found back by offsets)."""
    pieces = segments(messages, render)
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
