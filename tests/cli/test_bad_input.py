"""Bad input, table-driven: every case is a real `tuitrain` command line (configs, --set values,
data files, arguments, runs dirs, sweep files) that must end with the right exit code, a message
naming the field / file / run, and no traceback. Commands run in-process (tuitrain.cli.main);
a few run as a real process. Nothing here starts training: each case fails before a launch.

`python tests/cli/test_bad_input.py` prints the counts: cases tried, clear, unclear, tracebacks."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tuitrain.cli import errors, exits, main

ROOT = Path(__file__).resolve().parents[2]
OK, FAILED, BAD, NOT_FOUND = exits.OK, exits.FAILED, exits.BAD_INPUT, exits.NOT_FOUND


@dataclass
class Case:
    """argv (with {d}: the case folder, {runs}: a runs dir with runs, {file}: a regular file,
    {done} / {empty}: run ids), the exit code, and what the message must name."""

    id: str
    argv: list[str]
    code: int
    names: tuple[str, ...]
    files: dict[str, str | bytes] = field(default_factory=dict)


CASES: list[Case] = []


def case(id: str, argv: str | list[str], code: int, *names: str, **files: str | bytes) -> None:
    args = argv.split() if isinstance(argv, str) else argv
    CASES.append(Case(id, args, code, names, {k.replace("__", "."): v for k, v in files.items()}))


def cfg(id: str, text: str | bytes, code: int, *names: str, ext: str = "yaml") -> None:
    """`tuitrain validate` of a config file holding `text`; the message names the file too."""
    name = f"{id}.{ext}"
    CASES.append(Case(f"config-{id}", ["validate", f"{{d}}/{name}"], code, (name, *names),
                      {name: text}))  # fmt: skip


def sets(id: str, items: list[str], code: int, *names: str) -> None:
    """`tuitrain validate` of a small valid config with --set overrides."""
    argv = ["validate", "{d}/base.yaml"] + [a for s in items for a in ("--set", s)]
    CASES.append(Case(f"set-{id}", argv, code, names, {"base.yaml": BASE}))


BASE = "model: {tokenizer: bytes}\ndata: {source: python-stdlib, max_bytes: 20000}\n"


GUARDED = BASE + "run: {seed: -1}\n"  # invalid: a case that must fail before loading it uses this


def bomb(levels: int = 9) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def with_base(extra: str) -> str:
    return BASE + extra


# ---- config files: hostile YAML ------------------------------------------------------------
cfg("alias-bomb", bomb(), BAD, "aliases")
cfg("alias-bomb-beside-fields", with_base(bomb()), BAD, "aliases")
cfg("alias-self", "a: &a [*a]\n", BAD, "contains itself")
cfg("alias-self-map", "a: &a {b: *a}\n", BAD, "contains itself")
for tag in ("python/object/new:dict {}", "python/object/apply:os.system ['true']",
            "python/name:os.system ''", "python/tuple [1, 2]", "python/object:object {}",
            "python/module:os ''", "binary aGVsbG8=", "set {a}", "omap [{a: 1}]",
            "timestamp 2001-12-14"):  # fmt: skip
    name = tag.split()[0].replace("/", "-").replace(":", "-")
    cfg(f"tag-{name}", with_base(f"run:\n  notes: !!{tag}\n"), BAD, "!!" + tag.split()[0])
cfg("tag-custom", with_base("run:\n  seed: !custom 3\n"), BAD, "!custom")
cfg("tag-top-level", "!!python/object/new:dict {}\n", BAD, "python/object/new:dict")
cfg("huge-file", "# padding\n" * 200_000, BAD, "larger than 1024 KiB")
cfg("huge-json", json.dumps({"run": {"notes": "x" * 2_000_000}}), BAD, "larger than", ext="json")
cfg("deep-yaml", "a: " + "[" * 200 + "]" * 200 + "\n", BAD, "nested")
cfg("deep-json", '{"a": ' + "[" * 5000 + "]" * 5000 + "}", BAD, "nested", ext="json")
cfg("not-utf8", b"\xff\xfe\x00bin\x00ary", BAD, "UTF-8")
cfg("top-level-list", "- a\n- b\n", BAD, "top level")
cfg("top-level-scalar", "42\n", BAD, "top level")
cfg("yaml-syntax", "run: {name: [unclosed\n", BAD, "not valid YAML")
cfg("yaml-tabs", "run:\n\tname: x\n", BAD, "YAML")
cfg("json-syntax", '{"run": {"name": }', BAD, "not valid JSON", ext="json")
cfg("duplicate-key", "run: {seed: 1}\nrun: {seed: 2}\n", BAD, "run")
# ---- config files: fields and bounds -------------------------------------------------------
cfg("max-steps-huge", with_base("training: {max_steps: 99999999999999999999999}\n"), BAD, "training.max_steps", "1000000000")  # fmt: skip
cfg("warmup-huge", with_base("scheduler: {warmup_steps: 10000000000}\n"), BAD, "scheduler.warmup_steps", "1000000000")  # fmt: skip
cfg("eval-every-huge", with_base("training: {eval_every: 10000000000}\n"), BAD, "training.eval_every")  # fmt: skip
cfg("save-every-huge", with_base("training: {save_every: 10000000000}\n"), BAD, "training.save_every")  # fmt: skip
cfg("log-every-huge", with_base("training: {log_every: 10000000000}\n"), BAD, "training.log_every")  # fmt: skip
cfg("eval-batches-huge", with_base("training: {eval_max_batches: 10000000000}\n"), BAD, "training.eval_max_batches")  # fmt: skip
cfg("step-size-huge", with_base("scheduler: {step_size: 10000000000}\n"), BAD, "scheduler.step_size")  # fmt: skip
cfg("save-limit-huge", with_base("training: {save_total_limit: 100000000}\n"), BAD, "training.save_total_limit")  # fmt: skip
cfg("epochs-huge", with_base("training: {epochs: 10000000}\n"), BAD, "training.epochs")
cfg("batch-zero", with_base("batch: {size: 0}\n"), BAD, "batch.size")
cfg("batch-huge", with_base("batch: {size: 99999999999}\n"), BAD, "batch.size")
cfg("eval-size-huge", with_base("batch: {eval_size: 99999999999}\n"), BAD, "batch.eval_size")
cfg("reference-batch-huge", with_base("batch: {reference_batch: 99999999999999}\n"), BAD, "batch.reference_batch")  # fmt: skip
cfg("max-samples-huge", BASE.replace("}", ", max_train_samples: 99999999999999}"), BAD, "data.max_train_samples")  # fmt: skip
cfg("top-k-huge", with_base("generation: {top_k: 99999999999}\n"), BAD, "generation.top_k")
cfg("machine-rank-huge", with_base("launch: {machine_rank: 5000}\n"), BAD, "launch.machine_rank")
cfg("port-huge", with_base("launch: {main_process_port: 70000}\n"), BAD, "launch.main_process_port")  # fmt: skip
cfg("patience-huge", with_base("early_stopping: {patience: 99999999999}\n"), BAD, "early_stopping.patience")  # fmt: skip
cfg("schedule-step-huge", with_base("steering: {schedule: [{step: 99999999999, stop: true}]}\n"), BAD, "steering.schedule.0.step")  # fmt: skip
cfg("schedule-two-actions", with_base("steering: {schedule: [{step: 5, stop: true, eval: true}]}\n"), BAD, "steering.schedule.0")  # fmt: skip
cfg("lr-inf", with_base("optimizer: {lr: .inf}\n"), BAD, "optimizer.lr")
cfg("lr-nan", with_base("optimizer: {lr: .nan}\n"), BAD, "optimizer.lr")
cfg("lr-negative", with_base("optimizer: {lr: -1}\n"), BAD, "optimizer.lr")
cfg("lr-text", with_base("optimizer: {lr: fast}\n"), BAD, "optimizer.lr", "number")
cfg("grad-norm-inf", with_base("training: {max_grad_norm: .inf}\n"), BAD, "training.max_grad_norm")  # fmt: skip
cfg("eta-min-nan", with_base("scheduler: {eta_min: .nan}\n"), BAD, "scheduler.eta_min")
cfg("optimizer-typo", with_base("optimizer: {name: adamww}\n"), BAD, "optimizer.name", "adamw")
cfg("unknown-key", with_base("optimizer: {lrr: 1e-3}\n"), BAD, "optimizer.lrr", "optimizer.lr")
cfg("unknown-group", with_base("optimiser: {lr: 1e-3}\n"), BAD, "optimiser", "optimizer")
cfg("heads-divide", with_base("model: {tokenizer: bytes, arch: {hidden_size: 100, num_heads: 3}}\n"), BAD, "num_heads")  # fmt: skip
cfg("val-split", BASE.replace("}", ", validation_split: 1.5}"), BAD, "data.validation_split")
cfg("seed-negative", with_base("run: {seed: -1}\n"), BAD, "run.seed")
cfg("both-warmups", with_base("scheduler: {warmup_steps: 5, warmup_ratio: 0.1}\n"), BAD, "warmup_steps", "warmup_ratio")  # fmt: skip
cfg("doctor-window", with_base("doctor: {window: 5}\n"), BAD, "doctor.window")
cfg("group-not-mapping", with_base("training: 5\n"), BAD, "training")
cfg("notes-too-long", with_base(f"run: {{notes: {'n' * 150_000}}}\n"), BAD, "run.notes", "100000")  # fmt: skip
cfg("template-too-long", BASE.replace("}", f", chat_template: '{'t' * 150_000}'}}"), BAD, "data.chat_template")  # fmt: skip
cfg("tag-too-long", with_base(f"run: {{tags: [{'t' * 150_000}]}}\n"), BAD, "run.tags.0")
cfg("name-too-long", with_base(f"run: {{name: {'x' * 300}}}\n"), BAD, "run.name")
cfg("envs-not-mapping", with_base("envs: [dev]\n"), BAD, "envs")
cfg("extends-number", with_base("extends: 5\n"), BAD, "extends")
cfg("extends-missing", with_base("extends: nowhere.yaml\n"), BAD, "extends", "nowhere.yaml")
cfg("extends-self", "extends: extends-self.yaml\n", BAD, "circular extends")
cfg("extends-pkg-missing", "extends: pkg:nosuchpkg/x.yaml\n", BAD, "nosuchpkg")
case("config-extends-1200-deep", "validate {d}/chain0.yaml", BAD, "extends chain", "chain0.yaml",
     **{f"chain{i}__yaml": f"extends: chain{i + 1}.yaml\n" for i in range(1200)},
     chain1200__yaml=BASE)  # fmt: skip
case("config-missing", "validate {d}/nope.yaml", BAD, "nope.yaml", "no such config file")
case("config-device", "validate /dev/zero", BAD, "/dev/zero", "not a regular file")
case("config-folder", "validate {d}", BAD, "folder")
case("config-env-missing", "validate {d}/env.yaml --env prod", BAD, "prod", "dev",
     env__yaml=with_base("envs: {dev: {training: {max_steps: 5}}}\n"))  # fmt: skip
case("config-pkg-missing", "validate pkg:nosuchpkg/x.yaml", BAD, "pkg:nosuchpkg/x.yaml")
# ---- --set overrides -----------------------------------------------------------------------
sets("max-steps-huge", ["training.max_steps=99999999999999999999999"], BAD, "training.max_steps", "1000000000")  # fmt: skip
sets("no-equals", ["training.max_steps"], BAD, "training.max_steps", "group.key=value")
sets("empty-key", ["=5"], BAD, "--set", "empty key")
sets("lr-text", ["optimizer.lr=abc"], BAD, "optimizer.lr")
sets("lr-inf", ["optimizer.lr=.inf"], BAD, "optimizer.lr")
sets("python-tag", ["run.notes=!!python/object/new:dict {}"], BAD, "run.notes", "python/object/new:dict")  # fmt: skip
sets("alias-bomb", ["run.tags=" + bomb(8).replace("\n", ", ").join("{}")], BAD, "run.tags")
sets("unknown-key", ["nope.key=1"], BAD, "nope")
sets("batch-negative", ["batch.size=-3"], BAD, "batch.size")
sets("steps-fraction", ["training.max_steps=1.5"], BAD, "training.max_steps")
sets("both-warmups", ["scheduler.warmup_steps=5", "scheduler.warmup_ratio=0.1"], BAD, "warmup_steps")  # fmt: skip
sets("group-replaced", ["optimizer=5"], BAD, "optimizer")
# ---- data files ----------------------------------------------------------------------------
DATA = "model: {tokenizer: bytes}\ndata: {train_file: %s}\n"
case("data-missing", "validate {d}/dm.yaml", BAD, "data.train_file", "missing.jsonl", dm__yaml=DATA % "missing.jsonl")  # fmt: skip
case("data-empty", "validate {d}/de.yaml", BAD, "data.train_file", "empty.jsonl", de__yaml=DATA % "empty.jsonl", empty__jsonl="")  # fmt: skip
case("data-bad-json-line", "validate {d}/dj.yaml", BAD, "bad.jsonl:2", dj__yaml=DATA % "bad.jsonl", bad__jsonl='{"text": "a"}\n{bad\n')  # fmt: skip
case("data-binary", "validate {d}/db.yaml", BAD, "data.train_file", "bin.jsonl", db__yaml=DATA % "bin.jsonl", bin__jsonl=b'{"text": "\xd0\x00\xff"}\n')  # fmt: skip
case("data-csv-no-column", "validate {d}/dc.yaml", BAD, "nocol.csv", "data.format", dc__yaml=DATA % "nocol.csv", nocol__csv="a,b\n1,2\n")  # fmt: skip
case("data-no-text-field", "validate {d}/dn.yaml", BAD, "nofield.jsonl", dn__yaml=DATA % "nofield.jsonl", nofield__jsonl='{"x": 1}\n')  # fmt: skip
case("data-text-field-missing", "validate {d}/dt.yaml", BAD, "tf.jsonl", dt__yaml="model: {tokenizer: bytes}\ndata: {train_file: tf.jsonl, format: text, text_field: body}\n", tf__jsonl='{"text": "a"}\n')  # fmt: skip
case("data-folder-not-dataset", "validate {d}/dd.yaml", BAD, "data.train_file", "save_to_disk", dd__yaml=DATA % "'.'")  # fmt: skip
case("data-validation-missing", "validate {d}/dv.yaml", BAD, "data.validation_file", dv__yaml="model: {tokenizer: bytes}\ndata: {train_file: ok.jsonl, validation_file: nov.jsonl}\n", ok__jsonl='{"text": "abc"}\n' * 5)  # fmt: skip
CHAT = (
    "model: {tokenizer: bytes}\ndata: {train_file: chat.jsonl, format: chat, chat_template: %s}\n"
)
CHATS = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n' * 4  # fmt: skip
case("template-sandbox-escape", "validate {d}/t1.yaml", BAD, "data.chat_template", "SecurityError", t1__yaml=CHAT % "\"{{ ''.__class__.__mro__[1].__subclasses__() }}\"", chat__jsonl=CHATS)  # fmt: skip
case("template-undefined", "validate {d}/t2.yaml", BAD, "data.chat_template", "nope", t2__yaml=CHAT % "'{{ nope.x.y }}'", chat__jsonl=CHATS)  # fmt: skip
case("template-syntax", "validate {d}/t3.yaml", BAD, "data.chat_template", t3__yaml=CHAT % "'{% for m in messages %}{{ m.content '", chat__jsonl=CHATS)  # fmt: skip
case("template-none", "validate {d}/t4.yaml", BAD, "data.chat_template", t4__yaml="model: {tokenizer: bytes}\ndata: {train_file: chat.jsonl, format: chat}\n", chat__jsonl=CHATS)  # fmt: skip
case("chat-not-a-list", "validate {d}/t5.yaml", BAD, "data.train_file", t5__yaml=CHAT % "chatml", badchat__jsonl='{"messages": "hi"}\n')  # fmt: skip
# ---- runs dirs -----------------------------------------------------------------------------
case("ls-missing-runs-dir", "ls --runs-dir {d}/none", NOT_FOUND, "{d}/none", "no such folder")
case("ls-missing-runs-dir-json", "ls --runs-dir {d}/none --format json", NOT_FOUND, "{d}/none")
case("ls-runs-dir-file", "ls --runs-dir {file}", BAD, "{file}", "is a file")
case("ls-runs-dir-file-before", "--runs-dir {file} ls", BAD, "{file}", "is a file")
case("run-runs-dir-file", "--runs-dir {file} run {d}/base.yaml --detach", BAD, "{file}", "is a file", base__yaml=GUARDED)  # fmt: skip
case("run-runs-dir-under-file", "run {d}/base.yaml --runs-dir {file}/sub --detach", BAD, "{file}", "is a file", base__yaml=GUARDED)  # fmt: skip
case("sweep-runs-dir-file", "sweep {d}/sw.yaml --runs-dir {file}", BAD, "{file}", sw__yaml="base: base.yaml\n", base__yaml=GUARDED)  # fmt: skip
GARBAGE_DB = b"this is not an SQLite database\n" * 100
case("ls-corrupt-database", "ls --runs-dir {d}", BAD, "{d}", "database", tuitrain__db=GARBAGE_DB)
case("show-corrupt-database", "show x --runs-dir {d}", BAD, "{d}", "database", tuitrain__db=GARBAGE_DB)  # fmt: skip
case("run-corrupt-database", "run {d}/base.yaml --detach --runs-dir {d}", BAD, "database", tuitrain__db=GARBAGE_DB, base__yaml=BASE)  # fmt: skip
case("show-runs-dir-missing", "show x --runs-dir {d}/none", NOT_FOUND, "'x'", "{d}/none")
case("show-no-database", "show x --runs-dir {d}", NOT_FOUND, "'x'", "tuitrain.db")
case("doctor-runs-dir-file", "doctor x --runs-dir {file}", BAD, "{file}")
case("watch-runs-dir-file", "watch x --runs-dir {file}", BAD, "{file}")
case("edit-runs-dir-file", "--runs-dir {file} edit", BAD, "{file}")
# ---- run references and arguments ----------------------------------------------------------
for command in ("show nope", "export nope", "rm nope -y", "ctl nope stop", "stop nope",
                "resume nope", "watch nope", "doctor nope", "branch nope", "rerun nope",
                "lr-race nope"):  # fmt: skip
    case(f"not-found-{command.split()[0]}", f"--runs-dir {{runs}} {command}", NOT_FOUND, "nope")
case("not-found-sweeps", "sweeps nope --runs-dir {runs}", NOT_FOUND, "nope")
case("not-found-sweep-promote", "sweep promote nope --runs-dir {runs}", NOT_FOUND, "nope")
case("not-found-race", "lr-race show nope --runs-dir {runs}", NOT_FOUND, "nope")
case("export-to-proc", "export {done} -o /proc/nope.csv --runs-dir {runs}", BAD, "/proc/nope.csv")
case("export-missing-folder", "export {done} -o {d}/missing/dir/x.csv --runs-dir {runs}", BAD, "missing/dir/x.csv", "No such file")  # fmt: skip
case("export-to-folder", "export {done} -o {d} --runs-dir {runs}", BAD, "-o {d}", "directory")
case("validate-to-proc", "validate {d}/base.yaml -o /proc/nope.yaml", BAD, "/proc/nope.yaml", base__yaml=BASE)  # fmt: skip
case("validate-to-folder", "validate {d}/base.yaml -o {d}", BAD, "-o {d}", base__yaml=BASE)  # fmt: skip
case("validate-under-file", "validate {d}/base.yaml -o {file}/x.yaml", BAD, "{file}/x.yaml", base__yaml=BASE)  # fmt: skip
case("export-format", "export {done} --format xml --runs-dir {runs}", BAD, "--format", "xml")
case("doctor-no-metrics", "doctor {empty} --runs-dir {runs}", FAILED, "{empty}", "no metrics")
case("doctor-no-metrics-json", "doctor {empty} --format json --runs-dir {runs}", FAILED, "no metrics")  # fmt: skip
case("doctor-factor-negative", "doctor {done} --rollback --factor -1 --runs-dir {runs}", BAD, "--factor")  # fmt: skip
case("doctor-factor-nan", "doctor {done} --rollback --factor nan --runs-dir {runs}", BAD, "--factor")  # fmt: skip
case("ctl-lr-text", "ctl {done} set-lr abc --runs-dir {runs}", BAD, "set-lr", "abc")
case("ctl-lr-negative", "ctl {done} set-lr -1 --runs-dir {runs}", BAD, "set-lr", "-1")
case("ctl-lr-inf", "ctl {done} set-lr inf --runs-dir {runs}", BAD, "set-lr", "inf")
case("ctl-lr-missing", "ctl {done} set-lr --runs-dir {runs}", BAD, "set-lr", "needs a value")
case("ctl-stop-value", "ctl {done} stop 5 --runs-dir {runs}", BAD, "stop", "takes no value")
case("ctl-timeout-nan", "ctl {done} stop --wait --timeout nan --runs-dir {runs}", BAD, "--timeout")
case("ctl-timeout-negative", "ctl {done} stop --wait --timeout -1 --runs-dir {runs}", BAD, "--timeout")  # fmt: skip
case("ctl-action", "ctl {done} frobnicate --runs-dir {runs}", BAD, "frobnicate")
case("stop-grace-negative", "stop {done} --grace -1 --runs-dir {runs}", BAD, "--grace")
case("stop-grace-nan", "stop {done} --grace nan --runs-dir {runs}", BAD, "--grace")
case("show-events-text", "show {done} --events many --runs-dir {runs}", BAD, "--events", "many")
case("lr-race-factors-negative", "lr-race {d}/bad.yaml --factors -1,1 --runs-dir {runs}", BAD, "--factors", "-1,1", bad__yaml="nope: 1\n")  # fmt: skip
case("lr-race-factors-one", "lr-race {d}/bad.yaml --factors 1 --runs-dir {runs}", BAD, "--factors", bad__yaml="nope: 1\n")  # fmt: skip
case("lr-race-factors-text", "lr-race {d}/bad.yaml --factors a,b --runs-dir {runs}", BAD, "--factors", bad__yaml="nope: 1\n")  # fmt: skip
case("lr-race-factors-twice", "lr-race {d}/bad.yaml --factors 1,1 --runs-dir {runs}", BAD, "--factors", bad__yaml="nope: 1\n")  # fmt: skip
case("lr-race-factors-inf", "lr-race {d}/bad.yaml --factors 1,inf --runs-dir {runs}", BAD, "--factors", bad__yaml="nope: 1\n")  # fmt: skip
case("lr-race-steps-zero", "lr-race {d}/bad.yaml --steps 0 --runs-dir {runs}", BAD, "--steps", bad__yaml="nope: 1\n")  # fmt: skip
case("lr-race-steps-huge", "lr-race {d}/bad.yaml --steps 99999999999999 --runs-dir {runs}", BAD, "--steps", bad__yaml="nope: 1\n")  # fmt: skip
case("lr-race-parallel-zero", "lr-race {d}/bad.yaml --parallel 0 --runs-dir {runs}", BAD, "--parallel", bad__yaml="nope: 1\n")  # fmt: skip
case("lr-race-extend-negative", "lr-race {d}/bad.yaml --extend -1 --runs-dir {runs}", BAD, "--extend", bad__yaml="nope: 1\n")  # fmt: skip
case("lr-race-config-invalid", "lr-race {d}/bad.yaml --runs-dir {runs}", BAD, "bad.yaml", "nope", bad__yaml="nope: 1\n")  # fmt: skip
case("lr-find-min-negative", "lr-find {d}/bad.yaml --min -1 --runs-dir {runs}", BAD, "--min", bad__yaml="nope: 1\n")  # fmt: skip
case("lr-find-max-nan", "lr-find {d}/bad.yaml --max nan --runs-dir {runs}", BAD, "--max", bad__yaml="nope: 1\n")  # fmt: skip
case("lr-find-steps-one", "lr-find {d}/bad.yaml --steps 1 --runs-dir {runs}", BAD, "--steps", bad__yaml="nope: 1\n")  # fmt: skip
case("run-config-missing", "run {d}/nope.yaml --runs-dir {runs}", BAD, "nope.yaml")
case("run-machine-rank", "run {d}/bad.yaml --machine-rank -1 --runs-dir {runs}", BAD, "--machine-rank", bad__yaml="nope: 1\n")  # fmt: skip
case("run-max-steps-huge", "run {d}/base.yaml --set training.max_steps=99999999999999999999999 --set run.seed=-1 --detach --runs-dir {runs}", BAD, "training.max_steps", base__yaml=BASE)  # fmt: skip
case("branch-max-steps-huge", "branch {done} --set training.max_steps=99999999999999999999999 --set run.seed=-1 --runs-dir {runs}", BAD, "training.max_steps")  # fmt: skip
case("branch-step-negative", "branch {done} --step -5 --runs-dir {runs}", BAD, "--step", "-5")
case("branch-step-huge", "branch {done} --step 99999999999999999999 --runs-dir {runs}", BAD, "--step")  # fmt: skip
case("unknown-command", "frobnicate", BAD, "frobnicate")
case("unknown-option", "ls --colour --runs-dir {runs}", BAD, "--colour")
# ---- sweep files ---------------------------------------------------------------------------
SWEEP_BASE = BASE + "training: {max_steps: 1}\ngeneration: {enabled: false}\n"
SW = "base: base.yaml\nmethod: grid\nspace: {optimizer.lr: [1e-3, 1e-2]}\nobjective: {metric: val_loss, mode: min}\n"  # fmt: skip


def sweep(id: str, text: str, code: int, *names: str, extra: str = "") -> None:
    argv = f"sweep {{d}}/{id}.yaml --runs-dir {{runs}} {extra}".split()
    # The base is tiny and 1 step long: were a case to pass validation, its trial ends at once.
    CASES.append(Case(f"sweep-{id}", argv, code, names,
                      {f"{id}.yaml": text, "base.yaml": SWEEP_BASE}))  # fmt: skip


sweep("sw-missing-base", SW.replace("base.yaml", "nowhere.yaml"), BAD, "nowhere.yaml")
sweep("sw-method", SW.replace("grid", "annealing"), BAD, "method", "tpe")
sweep("sw-mode", SW.replace("mode: min", "mode: lowest"), BAD, "objective.mode")
sweep("sw-n-trials", SW + "n_trials: -1\n", BAD, "n_trials")
sweep("sw-space-key", SW.replace("optimizer.lr", "optimizer.lrr"), BAD, "optimizer.lrr")
sweep("sw-space-dist", SW.replace("[1e-3, 1e-2]", "{type: gaussian, low: 1, high: 2}"), BAD, "optimizer.lr")  # fmt: skip
sweep("sw-space-bounds", SW.replace("[1e-3, 1e-2]", "{type: loguniform, low: 1e-2, high: 1e-3}"), BAD, "optimizer.lr")  # fmt: skip
sweep("sw-space-out-of-range", SW.replace("[1e-3, 1e-2]", "[1e-3, -5]"), BAD, "optimizer.lr")
sweep("sw-space-empty", SW.replace("{optimizer.lr: [1e-3, 1e-2]}", "{}"), BAD, "space")
sweep("sw-python-tag", SW + "seed: !!python/object/apply:os.system ['true']\n", BAD, "sw-python-tag.yaml", "python/object/apply")  # fmt: skip
sweep("sw-alias-bomb", SW + bomb(), BAD, "sw-alias-bomb.yaml", "aliases")
sweep("sw-unknown-key", SW + "trials: 5\n", BAD, "sw-unknown-key.yaml", "trials")
sweep("sw-parallel-text", SW, BAD, "--parallel", extra="--parallel lots")
sweep("sw-set-huge", SW, BAD, "training.max_steps", extra="--set training.max_steps=99999999999999999999999 --set run.seed=-1")  # fmt: skip
sweep("sw-top-level-list", "- a\n", BAD, "sw-top-level-list.yaml", "top level")
case("sweep-missing", "sweep {d}/nope.yaml --runs-dir {runs}", BAD, "nope.yaml")


# Cases that would launch were their check broken (run, branch, sweep with a valid config) carry a
# second error (run.seed=-1, reported in the same pass) so a regression fails here, not trains.
# ---- the harness -----------------------------------------------------------------------------
def make_world(base: Path) -> dict:
    """A runs dir with a finished run (metrics, its config.yaml) and a failed run that logged
    nothing, plus a regular file to pass where a folder belongs."""
    from tuitrain.store import Store

    runs = base / "runs"
    with Store(runs) as s:
        done = s.create_run({"optimizer": {"lr": 1e-3}}, {"total_steps": 10}, name="done")
        s.log_metrics(done.id, [(i, "loss", 1.0 / i, 1000.0 + i) for i in range(1, 11)])
        s.set_status(done.id, "completed")
        s.run_dir(done.id).mkdir(parents=True, exist_ok=True)
        (s.run_dir(done.id) / "config.yaml").write_text(BASE)  # what branch / rerun read
        empty = s.create_run({}, {}, name="empty")
        s.set_status(empty.id, "failed")
    (base / "afile").write_text("not a folder\n")
    return {"runs": str(runs), "file": str(base / "afile"), "done": done.id, "empty": empty.id}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("bad-input"))


def fill(text: str, keys: dict) -> str:
    """{d}, {runs}, ... filled in (str.format would choke on YAML's own braces)."""
    for k, v in keys.items():
        text = text.replace("{" + k + "}", v)
    return text


def run_case(c: Case, world: dict, d: Path) -> tuple[int, str, float]:
    """Run one case in-process: (exit code, stdout + stderr, seconds)."""
    d.mkdir(parents=True, exist_ok=True)
    for name, text in c.files.items():
        p = d / name
        p.write_bytes(text) if isinstance(text, bytes) else p.write_text(text, encoding="utf-8")
    keys = {**world, "d": str(d)}
    argv = [fill(a, keys) for a in c.argv]
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else FAILED
    return code, out.getvalue() + err.getvalue(), time.perf_counter() - t0


def judge(c: Case, code: int, text: str, world: dict, d: Path) -> str:
    """'clear', 'traceback' or 'unclear: why'."""
    if "Traceback (most recent call last)" in text or "internal error" in text:
        return "traceback"
    if code != c.code:
        return f"unclear: exit {code}, expected {c.code}"
    keys = {**world, "d": str(d)}
    missing = [fill(n, keys) for n in c.names if fill(n, keys) not in text]
    return f"unclear: does not name {missing}" if missing else "clear"


@pytest.fixture(autouse=True)
def _no_log_dir_writes(tmp_path, monkeypatch):
    # an internal error (a failure of this test) writes its traceback here, not in ~/.local
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_bad_input(c: Case, world, tmp_path):
    code, text, _ = run_case(c, world, tmp_path / "case")
    assert judge(c, code, text, world, tmp_path / "case") == "clear", text[-2000:]
    assert len(text.strip().splitlines()) <= 12, text  # a message, not a dump


def test_the_table_is_large_and_ids_unique():
    assert len(CASES) >= 100
    assert len({c.id for c in CASES}) == len(CASES)


HOSTILE = ("config-alias-bomb", "config-huge-file", "config-huge-json", "config-extends-1200-deep",
           "config-notes-too-long", "set-alias-bomb", "sweep-sw-alias-bomb")  # fmt: skip


def test_hostile_configs_fail_fast(world, tmp_path):
    """The alias bomb and the huge file are refused before expanding or reading them."""
    for c in CASES:
        if c.id in HOSTILE:
            code, _, seconds = run_case(c, world, tmp_path / c.id)
            assert code == BAD
            print(f"{c.id}: {seconds:.3f} s")  # shown with -s; tests/bench times these


# ---- real processes: the console script, a read-only runs dir, the safety net ----------------
def cli(*argv: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "tuitrain", *argv], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_runs_dir_that_is_a_file_as_a_process(world, tmp_path):
    (tmp_path / "base.yaml").write_text(GUARDED)
    p = cli("--runs-dir", world["file"], "run", "base.yaml", "--detach", cwd=tmp_path)
    assert p.returncode == BAD and "is a file" in p.stderr and "Traceback" not in p.stderr
    assert p.stdout == ""


@pytest.fixture
def read_only_runs(world, tmp_path):
    """A copy of the runs dir that cannot be written: a read-only bind mount as root (chmod
    does not stop root), chmod otherwise."""
    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    shutil.copy(Path(world["runs"]) / "tuitrain.db", src)  # no -wal / -shm: as after a clean close
    ro.mkdir()
    if os.geteuid() != 0:
        os.chmod(src / "tuitrain.db", 0o444)
        os.chmod(src, 0o555)
        yield src
        os.chmod(src, 0o755)
        return
    mount = shutil.which("mount")
    ok = mount and subprocess.run([mount, "--bind", str(src), str(ro)]).returncode == 0
    if not ok:
        pytest.skip("no read-only mount here (needs root with CAP_SYS_ADMIN)")
    try:
        if subprocess.run([mount, "-o", "remount,bind,ro", str(ro)]).returncode != 0:
            pytest.skip("cannot remount read-only here")
        yield ro
    finally:
        subprocess.run(["umount", str(ro)])


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "base.yaml", "--detach"],
        ["ctl", "{done}", "stop"],
        ["rm", "{done}", "-y"],
        ["resume", "{done}"],
        ["show", "{done}"],
        ["doctor", "{done}"],
        ["ls"],
    ],
    ids=lambda a: a[0],
)
def test_read_only_runs_dir(read_only_runs, world, tmp_path, argv):
    (tmp_path / "base.yaml").write_text(GUARDED)
    args = [fill(a, world) for a in argv]
    p = cli("--runs-dir", str(read_only_runs), *args, cwd=tmp_path)
    assert "Traceback" not in p.stderr
    if argv[0] in ("show", "doctor", "ls") and p.returncode == OK:
        return  # reading a read-only runs dir may work; if not, it must say why (below)
    assert p.returncode == BAD, p.stderr
    assert "read-only" in p.stderr and str(read_only_runs) in p.stderr, p.stderr
    assert p.stderr.count("\n") <= 2


def test_internal_error_is_one_line_and_logs_the_traceback(tmp_path, monkeypatch, capsys):
    """The safety net: a bug in a command prints one line and writes the traceback to a log file;
    TUITRAIN_DEBUG=1 prints it instead."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    try:
        {}["missing"]
    except KeyError as exc:
        bug = exc
    assert errors.user_error(bug) is None  # not a user mistake
    assert errors.internal_error(bug, ["ls"]) == FAILED
    err = capsys.readouterr().err
    assert "internal error: KeyError" in err and "Traceback" not in err
    log = tmp_path / "tuitrain" / "errors.log"
    assert str(log) in err and "Traceback (most recent call last)" in log.read_text()
    assert "tuitrain ls" in log.read_text()
    monkeypatch.setenv(errors.DEBUG_ENV, "1")
    assert errors.internal_error(bug, ["ls"]) == FAILED
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_every_command_has_a_runs_dir_use():
    """A new command must say how it uses --runs-dir (tuitrain.cli.runsdir.USES)."""
    import argparse

    from tuitrain.cli import build_parser, runsdir

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) <= set(runsdir.USES), set(sub.choices) - set(runsdir.USES)


def test_nothing_was_launched(world):
    """Every case failed before a launch: the runs dir holds only the two runs made above."""
    from tuitrain.store import Store

    with Store(world["runs"]) as s:
        assert {r.id for r in s.list_runs()} == {world["done"], world["empty"]}


def count() -> dict:
    """Run the whole table: how many cases, how many clear, unclear, with a traceback."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        world = make_world(base)
        os.environ["XDG_STATE_HOME"] = str(base / "state")
        verdicts, times = {}, {}
        for i, c in enumerate(CASES):
            d = base / f"c{i}"
            code, text, seconds = run_case(c, world, d)
            verdicts[c.id] = judge(c, code, text, world, d)
            times[c.id] = round(seconds, 3)
    kinds = [v.split(":")[0] for v in verdicts.values()]
    return {
        "tried": len(kinds),
        "clear": kinds.count("clear"),
        "unclear": kinds.count("unclear"),
        "tracebacks": kinds.count("traceback"),
        "not_clear": {k: v for k, v in verdicts.items() if v != "clear"},
        "seconds": {k: times[k] for k in HOSTILE},
        "slowest": max(times.items(), key=lambda kv: kv[1]),
    }


if __name__ == "__main__":
    print(json.dumps(count()))
