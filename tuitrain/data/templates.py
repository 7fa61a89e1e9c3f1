"""Provides chat templates (built-ins and Jinja strings) and the answer spans of a rendered chat.

Torch-free: the trainer renders records with it, and the editor uses it to show which template a
config uses and how long its examples are. Rendering follows Hugging Face's `apply_chat_template`
(a sandboxed Jinja environment with trim_blocks/lstrip_blocks, `messages`, `add_generation_prompt`
and the tokenizer's special tokens as variables).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

Message = dict[str, str]
# A renderer: (messages, add_generation_prompt) -> text.
Render = Callable[[Sequence[Message], bool], str]

BUILTIN_TEMPLATES: dict[str, str] = {
    # ChatML (Qwen, many SFT recipes): the answer ends with <|im_end|>, which the model learns.
    "chatml": (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    # A plain-text layout for tokenizers without special tokens.
    "plain": (
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
        "{% elif message['role'] == 'user' %}{{ '### User:\n' + message['content'] + '\n\n' }}"
        "{% else %}{{ '### Assistant:\n' + message['content'] + '\n\n' }}{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '### Assistant:\n' }}{% endif %}"
    ),
}


class TemplateError(ValueError):
    """A chat template that is missing or cannot render the records; names the field and the fix."""


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


@lru_cache(maxsize=16)
def _compile(source: str):
    from jinja2.exceptions import TemplateError as JinjaError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(f"data.chat_template raised: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(source)
    except JinjaError as exc:
        raise TemplateError(
            f"data.chat_template: not a valid Jinja template ({exc}); fix it or use a built-in such as chatml"
        ) from None


def jinja_renderer(source: str, special_tokens: dict[str, str] | None = None) -> Render:
    """A renderer for a Jinja chat template (special tokens such as bos_token as variables)."""
    tmpl = _compile(source)
    extra = dict(special_tokens or {})

    def render(messages: Sequence[Message], add_generation_prompt: bool) -> str:
        return tmpl.render(
            messages=list(messages), add_generation_prompt=add_generation_prompt, **extra
        )

    return render


def answer_spans(messages: Sequence[Message], render: Render) -> tuple[str, list[tuple[int, int]]]:
    """The rendered chat and the character spans of its assistant turns (each with what the
    template puts after the content, e.g. <|im_end|>, so the model learns to stop).

    Turn i's span starts where the rendering of the turns before it, with the generation prompt,
    ends, and stops where the rendering up to turn i ends; a template that does not render a
    chat as the concatenation of its prefixes cannot be masked this way and is an error."""
    full = render(messages, False)
    spans: list[tuple[int, int]] = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render(messages[:i], True)
        upto = render(messages[: i + 1], False)
        if not (upto.startswith(before) and full.startswith(upto)):
            raise TemplateError(
                "data.chat_template: the template does not render a chat as the concatenation of its turns, "
                "so answer tokens cannot be found (use a built-in such as chatml, or set data.train_on_prompt: true)"
            )
        spans.append((len(before), len(upto)))
    return full, spans


def segments(messages: Sequence[Message], render: Render) -> list[tuple[str, bool]]:
    """The rendered chat cut into (text, is_answer) pieces, in order."""
    full, spans = answer_spans(messages, render)
    out: list[tuple[str, bool]] = []
    pos = 0
    for a, b in spans:
        if a > pos:
            out.append((full[pos:a], False))
        out.append((full[a:b], True))
        pos = b
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
