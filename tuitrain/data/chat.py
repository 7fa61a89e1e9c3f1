"""Provides the chat form of a record: messages in the roles system / user / assistant / tool,
read from OpenAI / HF ({role, content}) or ShareGPT ({from, value}) lists, with content as a
string or a list of text parts, OpenAI tool calls, per-message loss weights and a check that
the turns come in an order a template can render and a model can learn from.

Every problem is a RecordError naming the message and the fix, so one bad record is reported
with its number like any other malformed record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

ROLES = ("system", "user", "assistant", "tool")
# Role / ShareGPT speaker names and the role each means (data.role_map adds to these).
KNOWN_ROLES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "function_call": "assistant",  # the model's call is an answer: trained
    "tool": "tool",
    "observation": "tool",  # a tool's result is input: not trained
}
TEXT_PARTS = ("text", "input_text", "output_text")
WEIGHT_KEYS = ("loss_weight", "train", "weight")


class RecordError(ValueError):
    """One malformed record: the field it concerns and what is wrong."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


@dataclass
class Conversation:
    """A record as a chat: messages for the template, which of them carry the loss, and the
    tool definitions the template is given."""

    messages: list[dict]
    trained: list[bool]
    tools: list | None = None


def content_text(value: object, where: str) -> str | None:
    """Text of a message's content: a string, or a list of parts whose text parts are joined
    in order; a non-text part (image, audio) is an error; None stays None."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and "type" in value:
        value = [value]
    if not isinstance(value, list):
        raise RecordError(where, f"must be a string or a list of parts, not {type(value).__name__}")
    texts = []
    for j, part in enumerate(value):
        if isinstance(part, str):
            texts.append(part)
            continue
        kind = part.get("type", "text") if isinstance(part, dict) else None
        if kind not in TEXT_PARTS:
            raise RecordError(
                f"{where}[{j}]",
                f"a {kind!r} part: this is a text-only model (remove non-text parts, or the record)",
            )
        text = next((part[k] for k in ("text", "value", "content") if k in part), None)
        if not isinstance(text, str):
            raise RecordError(f"{where}[{j}]", "a text part needs a 'text' (or 'value') string")
        texts.append(text)
    return "".join(texts)


def _weight(m: dict, where: str) -> bool | None:
    """A message's loss weight: True / False when set (loss_weight 0/1, train, weight 0/1)."""
    for key in WEIGHT_KEYS:
        if key not in m or m[key] is None:
            continue
        v = m[key]
        if isinstance(v, bool) or v in (0, 1):
            return bool(v)
        raise RecordError(
            f"{where}.{key}",
            f"must be 0 or 1 (or true/false), not {v!r}: a message is trained or not",
        )
    return None


def _tool_calls(value: object, where: str) -> list[dict]:
    """OpenAI-style tool calls, with JSON-string arguments read as objects (as templates expect)."""
    if not isinstance(value, list):
        raise RecordError(where, "must be a list of {type: function, function: {name, arguments}}")
    out = []
    for j, call in enumerate(value):
        fn = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise RecordError(f"{where}[{j}]", "needs function.name (and function.arguments)")
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError:
                pass  # kept as the text it is
        item = {"type": "function", "function": {"name": fn["name"], "arguments": args}}
        if isinstance(call.get("id"), str):
            item["id"] = call["id"]
        out.append(item)
    return out


def tools_of(value: object, key: str) -> list | None:
    """Tool definitions: a list, or a JSON string holding one (as ShareGPT files store them)."""
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise RecordError(key, "not valid JSON (a list of tool definitions)") from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise RecordError(key, "must be a list of tool definitions (or a JSON string of one)")
    return value


def messages(
    items: object, key: str, role_map: dict[str, str], need_answer: bool = True
) -> Conversation:
    """The chat of a message list (HF/OpenAI or ShareGPT), checked; `need_answer`: it must hold
    a trained assistant turn (not so for the prompt half of a prompt/completion record)."""
    if not isinstance(items, list) or not items:
        raise RecordError(key, "must be a non-empty list of messages")
    names = {**KNOWN_ROLES, **role_map}
    msgs: list[dict] = []
    trained: list[bool] = []
    for i, m in enumerate(items):
        where = f"{key}[{i}]"
        if not isinstance(m, dict):
            raise RecordError(where, "must be an object with role/content (or from/value)")
        if "role" in m:
            name, ckey = m.get("role"), "content"
        elif "from" in m:
            name, ckey = m.get("from"), "value"
        else:
            raise RecordError(where, "has no 'role' (or ShareGPT 'from')")
        role = names.get(str(name))
        if role is None:
            raise RecordError(
                f"{where}.{'role' if ckey == 'content' else 'from'}",
                f"unknown role {name!r} (known: {', '.join(sorted(names))}; "
                f"map it with data.role_map, e.g. [{name}=assistant])",
            )
        raw = m.get(ckey)
        if role == "tool" and isinstance(raw, dict) and "type" not in raw:
            content = json.dumps(raw, ensure_ascii=False)  # a structured result, as text
        else:
            content = content_text(raw, f"{where}.{ckey}")
        msg: dict = {"role": role, "content": content}
        calls = m.get("tool_calls")
        if calls:
            if role != "assistant":
                raise RecordError(
                    f"{where}.tool_calls", "only an assistant message makes tool calls"
                )
            msg["tool_calls"] = _tool_calls(calls, f"{where}.tool_calls")
        if msg["content"] is None and not calls:
            raise RecordError(f"{where}.{ckey}", "missing (every message needs its text)")
        if role == "assistant" and not calls and not msg["content"].strip():
            raise RecordError(f"{where}.{ckey}", "empty answer (assistant turns need text)")
        for extra in ("name", "tool_call_id"):
            if isinstance(m.get(extra), str):
                msg[extra] = m[extra]
        w = _weight(m, where)
        msgs.append(msg)
        trained.append(role == "assistant" if w is None else w)
    check_order([m["role"] for m in msgs], key)
    if need_answer and not any(
        t for t, m in zip(trained, msgs, strict=True) if m["role"] == "assistant"
    ):
        raise RecordError(
            key,
            "no trained assistant turn: nothing to learn from this record (an answer with loss weight 0 is not trained)",
        )
    return Conversation(msgs, trained)


ORDER_FIX = "fix the order: system first, then user and assistant turns, tool results after an assistant's call"


def check_order(roles: list[str], key: str) -> None:
    """Turns a template can render and a model can learn from: system messages first, then a
    user turn; an assistant answers a user or tool turn; a tool result follows an assistant's
    call (or another result); no two user turns in a row."""
    seen_other = False
    for i, role in enumerate(roles):
        prev = roles[i - 1] if i else None
        where = f"{key}[{i}].role"
        if role == "system":
            if seen_other:
                raise RecordError(
                    where, f"a system message after the conversation began ({ORDER_FIX})"
                )
            continue
        if not seen_other and role != "user":
            raise RecordError(
                where, f"the conversation starts with {role!r}, not with a user turn ({ORDER_FIX})"
            )
        seen_other = True
        if role == "user" and prev == "user":
            raise RecordError(where, f"two user turns in a row (merge them, or {ORDER_FIX})")
        if role == "assistant" and prev not in ("user", "tool"):
            raise RecordError(
                where,
                f"an assistant turn after {prev!r}: an answer follows a user or tool turn ({ORDER_FIX})",
            )
        if role == "tool" and prev not in ("assistant", "tool"):
            raise RecordError(
                where, f"a tool result after {prev!r}: it follows an assistant's call ({ORDER_FIX})"
            )
