"""Provides chat templates: the one lookup (data.chat_template, else the tokenizer's own from
its files), rendering as Hugging Face's `apply_chat_template` does, and the trained spans of a
rendered chat.

Torch-free: the trainer and the editor's estimate both find the template with `lookup` and
render a record with `segments`, so they cannot disagree on what a record becomes.
Rendering follows `apply_chat_template`: a sandboxed Jinja environment with trim_blocks /
lstrip_blocks and loop controls, `messages`, `tools`, `add_generation_prompt` and the
tokenizer's special tokens as variables, `raise_exception` and a `tojson` that keeps non-ASCII.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

Message = dict
# A renderer: (messages, add_generation_prompt) -> text; tools are bound when it is made.
Render = Callable[[Sequence[Message], bool], str]

# Tools and tool calls written the Hermes / Qwen way, so a built-in template keeps them.
_TOOLS = (
    "{% if tools %}{{ '<|im_start|>system\nTools:\n' }}"
    "{% for tool in tools %}{{ tool | tojson }}{{ '\n' }}{% endfor %}{{ '<|im_end|>\n' }}{% endif %}"
)
_CALLS = (
    "{% if message.tool_calls %}{% for call in message.tool_calls %}"
    "{{ '<tool_call>\n' }}{{ (call.function if call.function is defined else call) | tojson }}"
    "{{ '\n</tool_call>' }}{% endfor %}{% endif %}"
)
BUILTIN_TEMPLATES: dict[str, str] = {
    # ChatML (Qwen, many SFT recipes): the answer ends with <|im_end|>, which the model learns.
    "chatml": (
        _TOOLS + "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + (message['content'] or '') }}"
        + _CALLS
        + "{{ '<|im_end|>' + '\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    # A plain-text layout for tokenizers without special tokens.
    "plain": (
        "{% if tools %}{{ 'Tools:\n' }}{% for tool in tools %}{{ tool | tojson }}{{ '\n' }}"
        "{% endfor %}{{ '\n' }}{% endif %}"
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
        "{% elif message['role'] == 'user' %}{{ '### User:\n' + message['content'] + '\n\n' }}"
        "{% elif message['role'] == 'tool' %}{{ '### Tool:\n' + message['content'] + '\n\n' }}"
        "{% else %}{{ '### Assistant:\n' + (message['content'] or '') }}"
        + _CALLS
        + "{{ '\n\n' }}{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '### Assistant:\n' }}{% endif %}"
    ),
}


class TemplateError(ValueError):
    """A chat template that is missing or cannot render the records; names the field and the fix."""


@dataclass(frozen=True)
class Template:
    """The chat template a config uses: a label to show, its Jinja source, special tokens."""

    label: str  # "chatml", "custom Jinja", "tokenizer's"
    source: str
    specials: tuple[tuple[str, str], ...] = ()

    def renderer(self, tools: list | None = None) -> Render:
        """A renderer for this template (tools passed to it as HF's `tools=`)."""
        return jinja_renderer(self.source, dict(self.specials), tools)


def _tokenizer_files(cfg) -> Path | None:
    """The local folder of the model's tokenizer files (a path, a pkg: path or a hub id already
    in the local cache); None for the byte tokenizer or when there is none."""
    name = cfg.model.name_or_path
    if cfg.model.tokenizer == "bytes" or not name:
        return None
    try:
        from tuitrain.config.paths import resolve_path

        folder = Path(resolve_path(name))
    except ValueError:
        return None
    if folder.is_dir():
        return folder
    try:  # a hub id: only what is already downloaded (nothing is fetched here)
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(name, "tokenizer_config.json")
    except Exception:  # noqa: BLE001 - not installed, or not a valid repo id
        return None
    return Path(hit).parent if isinstance(hit, str) else None


def _read_json(path: Path) -> dict:
    try:
        raw = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def tokenizer_template(folder: Path | None) -> tuple[str | None, dict[str, str]]:
    """(chat template, special tokens) from a tokenizer's files: chat_template.jinja or
    tokenizer_config.json's chat_template (a named list: its default), and the bos/eos/pad/unk
    strings of tokenizer_config.json and special_tokens_map.json."""
    if folder is None:
        return None, {"bos_token": "", "eos_token": ""}
    conf = _read_json(folder / "tokenizer_config.json")
    specials: dict[str, str] = {}
    for raw in (_read_json(folder / "special_tokens_map.json"), conf):
        for k in ("bos_token", "eos_token", "pad_token", "unk_token"):
            v = raw.get(k)
            v = v.get("content") if isinstance(v, dict) else v
            if isinstance(v, str):
                specials[k] = v
    specials.setdefault("bos_token", "")
    specials.setdefault("eos_token", "")
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8"), specials
    tmpl = conf.get("chat_template")
    if isinstance(tmpl, list):  # named templates: the default one
        tmpl = next((t.get("template") for t in tmpl if t.get("name") == "default"), None)
    return (tmpl if isinstance(tmpl, str) else None), specials


def lookup(cfg) -> Template:
    """The config's chat template: data.chat_template (a built-in name or a Jinja string)
    wins over the tokenizer's own; neither is a TemplateError."""
    own, specials = tokenizer_template(_tokenizer_files(cfg))
    label, source = template_source(cfg.data.chat_template, own)
    return Template(label, source, tuple(sorted(specials.items())))


def template_source(name_or_jinja: str | None, tokenizer_template: str | None) -> tuple[str, str]:
    """(label, Jinja source): data.chat_template (a built-in name or a Jinja string) wins over
    the tokenizer's own template; neither is a TemplateError."""
    if name_or_jinja:
        if name_or_jinja in BUILTIN_TEMPLATES:
            return name_or_jinja, BUILTIN_TEMPLATES[name_or_jinja]
        if "{" not in name_or_jinja:
            raise TemplateError(
                f"data.chat_template: {name_or_jinja!r} is neither a built-in template "
                f"({', '.join(BUILTIN_TEMPLATES)}) nor a Jinja string (use one of the built-ins, or a template with {{% ... %}})"
            )
        return "custom Jinja", name_or_jinja
    if tokenizer_template:
        return "tokenizer's", tokenizer_template
    raise TemplateError(
        "data.chat_template: the tokenizer has no chat template and data.chat_template is empty "
        "(set data.chat_template to a built-in such as chatml, or to a Jinja string)"
    )


def _tojson(x, indent=None, separators=None, sort_keys=False, ensure_ascii=False) -> str:
    return json.dumps(
        x, indent=indent, separators=separators, sort_keys=sort_keys, ensure_ascii=ensure_ascii
    )


@lru_cache(maxsize=16)
def _compile(source: str):
    from jinja2.exceptions import TemplateError as JinjaError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(f"the template raised: {message}")

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.globals["raise_exception"] = raise_exception
    env.filters["tojson"] = _tojson
    try:
        return env.from_string(source)
    except JinjaError as exc:
        raise TemplateError(
            f"data.chat_template: not a valid Jinja template ({exc}); fix it or use a built-in such as chatml"
        ) from None


def jinja_renderer(
    source: str, special_tokens: dict[str, str] | None = None, tools: list | None = None
) -> Render:
    """A renderer for a Jinja chat template (special tokens such as bos_token as variables).
    A template that fails while rendering is a TemplateError with the template's own message."""
    tmpl = _compile(source)
    extra = dict(special_tokens or {})
    if tools:
        extra["tools"] = tools

    def render(messages: Sequence[Message], add_generation_prompt: bool) -> str:
        try:
            return tmpl.render(
                messages=list(messages), add_generation_prompt=add_generation_prompt, **extra
            )
        except TemplateError:
            raise
        except Exception as exc:  # noqa: BLE001 - Jinja raises anything the template does
            raise TemplateError(f"{type(exc).__name__}: {exc}") from None

    return render


def spans(
    messages: Sequence[Message], trained: Sequence[bool], render: Render
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered chat and the character spans of its trained turns. An assistant turn's span
    starts after the generation prompt and runs to where the rendering up to it ends (so what
    the template writes after the content, e.g. <|im_end|>, is learned too); another trained
    turn spans its whole rendering. A template that does not render a chat as the
    concatenation of its prefixes cannot be masked this way and is an error."""
    full = render(messages, False)
    out: list[tuple[int, int]] = []
    for i, m in enumerate(messages):
        if not trained[i]:
            continue
        before = render(messages[:i], m["role"] == "assistant")
        upto = render(messages[: i + 1], False)
        if not (upto.startswith(before) and full.startswith(upto)):
            raise TemplateError(
                "the template does not render a chat as the concatenation of its turns, "
                "so answer tokens cannot be found (use a built-in such as chatml, or set data.train_on_prompt: true)"
            )
        out.append((len(before), len(upto)))
    return full, out


def segments(
    messages: Sequence[Message], render: Render, trained: Sequence[bool] | None = None
) -> list[tuple[str, bool]]:
    """The rendered chat cut into (text, carries loss) pieces, in order; by default the
    assistant turns carry the loss."""
    if trained is None:
        trained = [m["role"] == "assistant" for m in messages]
    full, cuts = spans(messages, trained, render)
    out: list[tuple[str, bool]] = []
    pos = 0
    for a, b in cuts:
        if a > pos:
            out.append((full[pos:a], False))
        if b > a:
            out.append((full[a:b], True))
        pos = max(pos, b)
    if pos < len(full):
        out.append((full[pos:], False))
    return out


def end_marker(render: Render) -> str:
    """What the template writes after an answer's content (e.g. '<|im_end|>'), to cut samples there."""
    probe = "\x00answer\x00"
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": probe}]
    text = render(msgs, False)
    tail = text[text.index(probe) + len(probe) :] if probe in text else ""
    return tail.strip()
