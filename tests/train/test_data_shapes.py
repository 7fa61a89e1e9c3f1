"""Data in the shapes people have (ShareGPT with tool calls, OpenAI tool_calls, content as a list
of parts with per-message loss weights, plain pretraining text): which tokens carry the loss
(decoded back from the trainer's labels), the data summary's numbers (the editor's estimate and
the trainer agree exactly with the byte tokenizer), and every error message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tuitrain.config import ConfigError, parse, resolve
from tuitrain.data.estimate import data_summary, with_data
from tuitrain.data.sources import DataError
from tuitrain.data.summary import DATA_KEYS, summary_line
from tuitrain.train.data import ByteTokenizer, build_splits

TOK = ByteTokenizer()


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def cfg_for(path: str, **data):
    return parse(
        {
            "model": {"tokenizer": "bytes", "arch": {"max_position_embeddings": 512}},
            "data": {
                "train_file": path,
                "chat_template": "chatml",
                "max_seq_length": 512,
                "packing": False,
                "validation_split": 0.0,
                **data,
            },
        }
    )


def trained_text(splits, i: int = 0) -> str:
    """The text of unit i's tokens that carry loss."""
    b = splits.train.batch(torch.tensor([i]))
    ids, labels = b["input_ids"][0], b["labels"][0]
    return TOK.decode([int(t) for t, lab in zip(ids, labels, strict=True) if lab != -100])


def input_text(splits, i: int = 0) -> str:
    return TOK.decode(splits.train.batch(torch.tensor([i]))["input_ids"][0].tolist())


def same_counts(cfg, splits) -> dict:
    """The trainer's summary equals the editor's estimate (exact with bytes) on every count."""
    est = data_summary(cfg).as_dict()
    keys = ("records", "examples", "dropped", "truncated", "tokens_total")
    keys += ("tokens_in_examples", "loss_tokens", "format", "template")
    assert {k: splits.summary[k] for k in keys} == {k: est[k] for k in keys}
    assert set(DATA_KEYS) <= set(splits.summary)
    return splits.summary


SHAREGPT_TOOLS = {
    "conversations": [
        {"from": "human", "value": "Weather in Paris?"},
        {"from": "function_call", "value": '{"name": "weather", "arguments": {"city": "Paris"}}'},
        {"from": "observation", "value": '{"temp": 20}'},
        {"from": "gpt", "value": "It is 20 degrees."},
    ],
    "tools": '[{"name": "weather", "description": "Weather of a city"}]',
}


def test_sharegpt_function_calls_are_answers_observations_are_not(tmp_path):
    f = write_jsonl(tmp_path / "glaive.jsonl", [SHAREGPT_TOOLS] * 3)
    cfg = cfg_for(f)
    s = build_splits(cfg, TOK, cache_dir=tmp_path / "c")
    assert trained_text(s) == (
        '{"name": "weather", "arguments": {"city": "Paris"}}<|im_end|>\n'
        "It is 20 degrees.<|im_end|>\n"
    )
    text = input_text(s)
    assert '<|im_start|>tool\n{"temp": 20}<|im_end|>' in text  # in the input, not trained
    assert text.startswith('<|im_start|>system\nTools:\n{"name": "weather"')  # tools= rendered
    d = same_counts(cfg, s)
    assert (d["records"], d["examples"], d["dropped"], d["format"]) == (3, 3, 0, "chat")
    assert d["loss_tokens"] == 3 * len(trained_text(s).encode())


def test_openai_tool_calls_content_parts_and_loss_weights(tmp_path):
    row = {
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Add "}, {"type": "text", "value": "1+1"}],
            },
            {"role": "assistant", "content": "first try", "loss_weight": 0},
            {"role": "user", "content": "Use the tool."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}
                ],
            },
            {"role": "tool", "content": "2", "tool_call_id": "c1"},
            {"role": "assistant", "content": "It is 2.", "train": True},
        ],
        "tools": [{"type": "function", "function": {"name": "add"}}],
    }
    skip_last = json.loads(json.dumps(row))
    skip_last["messages"][-1] = {"role": "assistant", "content": "It is 2.", "weight": 0}
    f = write_jsonl(tmp_path / "oai.jsonl", [row, skip_last])
    cfg = cfg_for(f)
    s = build_splits(cfg, TOK, cache_dir=tmp_path / "c")
    call = '<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call><|im_end|>\n'
    assert trained_text(s, 0) == call + "It is 2.<|im_end|>\n"
    assert trained_text(s, 1) == call  # weight 0 on the last answer
    assert "<|im_start|>user\nAdd 1+1<|im_end|>" in input_text(s)  # parts joined in order
    assert "first try" in input_text(s) and "first try" not in trained_text(s)
    same_counts(cfg, s)


def test_a_weight_turns_the_loss_on_for_a_user_turn(tmp_path):
    row = {
        "messages": [
            {"role": "user", "content": "Q", "train": True},
            {"role": "assistant", "content": "A"},
        ]
    }
    s = build_splits(
        cfg_for(write_jsonl(tmp_path / "w.jsonl", [row])), TOK, cache_dir=tmp_path / "c"
    )
    assert trained_text(s) == "<|im_start|>user\nQ<|im_end|>\nA<|im_end|>\n"


def test_role_map_maps_other_speakers(tmp_path):
    row = {"conversations": [{"from": "asker", "value": "Hi"}, {"from": "bot", "value": "Yo"}]}
    f = write_jsonl(tmp_path / "m.jsonl", [row])
    with pytest.raises(
        DataError, match=r"record 1: conversations\[0\].from: unknown role 'asker'.*data.role_map"
    ):
        build_splits(cfg_for(f), TOK, cache_dir=tmp_path / "c")
    s = build_splits(
        cfg_for(f, role_map={"asker": "user", "bot": "assistant"}), TOK, cache_dir=tmp_path / "c"
    )
    assert trained_text(s) == "Yo<|im_end|>\n"


def test_text_blocks_train_every_token_and_per_record_counts_truncation(tmp_path):
    lines = [f"pretraining text number {i} " * 12 for i in range(300)]
    f = tmp_path / "c4.jsonl"
    f.write_text("".join(json.dumps({"text": t}) + "\n" for t in lines))
    blocks = cfg_for(str(f), max_seq_length=128)
    s = build_splits(blocks, TOK, cache_dir=tmp_path / "c")
    d = same_counts(blocks, s)
    assert d["tokens_total"] == sum(len(t) + 1 for t in lines)  # each text + its eos
    assert d["tokens_in_examples"] / d["tokens_total"] >= 0.99 and d["truncated"] == 0
    assert d["loss_tokens"] == d["tokens_in_examples"] == d["examples"] * 128
    assert all(len(t) > 128 for t in lines)
    per = cfg_for(str(f), max_seq_length=128, text_mode="per_record")
    p = build_splits(per, TOK, cache_dir=tmp_path / "c")
    dp = same_counts(per, p)
    assert (dp["examples"], dp["truncated"], dp["tokens_in_examples"]) == (300, 300, 300 * 128)
    assert "truncated 300 of 300 records" in summary_line(dp)
    assert any("100% of examples truncated (300 of 300" in m for k, m in p.notes if k == "warning")


def test_role_order_is_checked_with_record_number_and_fix(tmp_path):
    def chat(*roles):
        return {"messages": [{"role": r, "content": f"{r} text"} for r in roles]}

    rows = [
        chat("user", "assistant"),
        chat("assistant", "user", "assistant"),
        chat("user", "user", "assistant"),
        chat("user", "assistant", "system", "user", "assistant"),
        chat("user", "tool", "assistant"),
        chat("user", "assistant", "assistant"),
    ]
    cfg = cfg_for(write_jsonl(tmp_path / "o.jsonl", rows))
    for run in (
        lambda: build_splits(cfg, TOK, cache_dir=tmp_path / "c"),
        lambda: data_summary(cfg),
    ):
        with pytest.raises(DataError) as info:
            run()
        msg = str(info.value)
        assert "5 malformed records" in msg
        assert "record 2: messages[0].role: the conversation starts with 'assistant'" in msg
        assert "record 3: messages[1].role: two user turns in a row" in msg
        assert "record 4: messages[2].role: a system message after the conversation began" in msg
        assert "record 5: messages[1].role: a tool result after 'user'" in msg
        assert "record 6: messages[2].role: an assistant turn after 'assistant'" in msg
        assert "fix the order: system first" in msg


def test_non_text_parts_are_refused_as_a_text_only_model(tmp_path):
    row = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image", "url": "x.png"},
                ],
            },
            {"role": "assistant", "content": "A cat."},
        ]
    }
    cfg = cfg_for(write_jsonl(tmp_path / "img.jsonl", [row]))
    want = r"record 1: messages\[0\].content\[1\]: a 'image' part: this is a text-only model"
    with pytest.raises(DataError, match=want):
        build_splits(cfg, TOK, cache_dir=tmp_path / "c")
    with pytest.raises(DataError, match=want):
        data_summary(cfg)


@pytest.mark.parametrize(
    "template, says",
    [
        ("{{ messages[0].nope.deeper }}", "UndefinedError: 'dict object' has no attribute 'nope'"),
        (
            "{{ raise_exception('roles must alternate') }}",
            "the template raised: roles must alternate",
        ),
    ],
)
def test_a_template_that_fails_is_reported_under_chat_template(tmp_path, template, says):
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    cfg = cfg_for(write_jsonl(tmp_path / "t.jsonl", [row, row]), chat_template=template)
    for run in (
        lambda: build_splits(cfg, TOK, cache_dir=tmp_path / "c"),
        lambda: data_summary(cfg),
    ):
        with pytest.raises(DataError) as info:
            run()
        assert info.value.field == "data.chat_template"
        assert "t.jsonl record 1:" in str(info.value) and says in str(info.value)
        assert "(and 1 more records)" in str(info.value)
    with pytest.raises(ConfigError) as ce:
        with_data(resolve(cfg))
    assert ce.value.issues[0].path == "data.chat_template"


@pytest.mark.parametrize("name", ["bad.jsonl", "bad.txt", "bad.csv", "bad.json"])
def test_a_file_that_is_not_utf8_names_the_file_line_and_byte(tmp_path, name):
    good = {"bad.csv": b"text\n", "bad.json": b'[{"text": "ok"},\n'}.get(name, b'{"text": "ok"}\n')
    if name == "bad.txt":
        good = b"ok line\n"
    tail = b'{"text": "caf\xe4"}]\n' if name == "bad.json" else b"caf\xe4\n"
    p = tmp_path / name
    p.write_bytes(good + tail)
    cfg = cfg_for(str(p))
    want = f"{p}: not UTF-8 text at line 2 (byte offset {len(good) + (13 if name == 'bad.json' else 3)}: 0xe4)"
    for run in (
        lambda: build_splits(cfg, TOK, cache_dir=tmp_path / "c"),
        lambda: data_summary(cfg),
    ):
        with pytest.raises(DataError) as info:
            run()
        assert want in str(info.value), str(info.value)
        assert "save the file as UTF-8" in str(info.value)


def test_zero_examples_are_refused_with_the_right_advice(tmp_path):
    long_prompt = {"prompt": "x" * 300, "completion": "y"}
    chat = cfg_for(write_jsonl(tmp_path / "long.jsonl", [long_prompt] * 3), max_seq_length=64)
    for run in (
        lambda: build_splits(chat, TOK, cache_dir=tmp_path / "c"),
        lambda: data_summary(chat),
    ):
        with pytest.raises(
            DataError, match="raise data.max_seq_length, or trim the prompts"
        ) as info:
            run()
        assert info.value.field == "data.max_seq_length" and "all 3 records" in str(info.value)
    with pytest.raises(ConfigError) as ce:
        with_data(resolve(chat))
    assert ce.value.issues[0].path == "data.max_seq_length"
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("just a few words\n")
    text = cfg_for(str(tiny), max_seq_length=64)
    for run in (
        lambda: build_splits(text, TOK, cache_dir=tmp_path / "c"),
        lambda: data_summary(text),
    ):
        with pytest.raises(
            DataError, match="less than one block of max_seq_length=64 .lower data.max_seq_length"
        ):
            run()


def test_role_map_setting_takes_a_mapping_or_pairs_and_names_bad_roles(tmp_path):
    f = write_jsonl(tmp_path / "x.jsonl", [{"text": "t"}])
    assert cfg_for(f, role_map={"bot": "assistant"}).data.role_map == ["bot=assistant"]
    assert cfg_for(f, role_map=["bot = assistant"]).data.role_map == ["bot=assistant"]
    with pytest.raises(ConfigError, match="data.role_map: 'bot=robot': write name=role"):
        cfg_for(f, role_map=["bot=robot"])


def test_a_tools_field_that_is_not_json_is_a_record_error(tmp_path):
    row = {**SHAREGPT_TOOLS, "tools": "[{not json"}
    cfg = cfg_for(write_jsonl(tmp_path / "t.jsonl", [row]))
    with pytest.raises(DataError, match=r"record 1: tools: not valid JSON"):
        data_summary(cfg)
