"""Provides the link between a sweep spec and configs: the base config data, dotted-path checks
against TrainConfig, and each trial's validated config (parse + resolve before any launch)."""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from tuitrain.config import ConfigError, ConfigIssue, Resolved, TrainConfig, parse, resolve
from tuitrain.config.loader import anchor_paths, apply_env, deep_merge, read_with_extends
from tuitrain.config.overrides import apply_sets, set_dotted
from tuitrain.sweep.spec import SweepSpec


def field_at(path: str) -> tuple[type[BaseModel], str]:
    """(group model, field name) for a dotted path like optimizer.lr; ConfigError if unknown."""
    model: type[BaseModel] = TrainConfig
    parts = path.split(".")
    for i, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            scope = ".".join(parts[:i]) or "the top level"
            guess = difflib.get_close_matches(part, list(fields), n=1, cutoff=0.6)
            fix = (
                f"did you mean {'.'.join([*parts[:i], guess[0]])!r}?"
                if guess
                else f"fields in {scope}: {', '.join(fields)}"
            )
            raise ConfigError([ConfigIssue(f"space.{path}", f"{path} is not a config field", fix)])
        ann = fields[part].annotation
        last = i == len(parts) - 1
        is_group = isinstance(ann, type) and issubclass(ann, BaseModel)
        if last:
            if is_group:
                raise ConfigError(
                    [
                        ConfigIssue(
                            f"space.{path}",
                            f"{path} is a group, not a field",
                            f"search a field inside it, e.g. {path}.{next(iter(ann.model_fields))}",
                        )
                    ]
                )
            return model, part
        if not is_group:
            raise ConfigError(
                [
                    ConfigIssue(
                        f"space.{path}",
                        f"{'.'.join(parts[: i + 1])} is a field and has no sub-fields",
                        f"use space key {'.'.join(parts[: i + 1])}",
                    )
                ]
            )
        model = ann
    raise AssertionError("unreachable")


def base_data(spec: SweepSpec, spec_file: str | Path | None) -> dict:
    """The base config as plain data: base file (+ extends), env overlay, inline config, set."""
    folder = Path(spec_file).resolve().parent if spec_file else Path.cwd()
    data: dict = {}
    if spec.base:
        bp = Path(spec.base).expanduser()
        bp = bp if bp.is_absolute() else folder / bp
        if not bp.is_file():
            raise ConfigError(
                [
                    ConfigIssue(
                        "base",
                        f"base config not found: {spec.base}",
                        f"paths are relative to the sweep file's folder {folder}",
                        file=str(spec_file),
                    )
                ]
            )
        data, _ = read_with_extends(bp)
        anchor_paths(data, bp.resolve().parent)
        data = apply_env(data, spec.env, str(bp))
    elif spec.env:
        raise ConfigError(
            [
                ConfigIssue(
                    "env",
                    "env: needs a base: config file with envs:",
                    "remove env:",
                    file=str(spec_file),
                )
            ]
        )
    if spec.config:
        data = deep_merge(data, spec.config)
    data.pop("envs", None)
    if spec.set:
        data = apply_sets(data, spec.set)
    anchor_paths(data, folder)
    return data


def check_space(spec: SweepSpec, base: dict, file: str | None = None) -> None:
    """Every space key is a config field, and every value it can take is valid for that field
    on its own (cross-field clashes surface per trial instead)."""
    issues: list[ConfigIssue] = []
    for path, p in spec.space.items():
        try:
            field_at(path)
        except ConfigError as exc:
            issues.extend(exc.issues)
            continue
        if p.type == "choice":
            probes = list(p.values or [])
        elif p.type == "int":
            probes = [int(p.low), int(p.high)]  # type: ignore[arg-type]
        else:
            probes = [p.low, p.high]
        for value in probes:
            data = copy.deepcopy(base)
            data.pop("extends", None)
            set_dotted(data, path, value)
            # Field-level validation only (pydantic): a clash with another field (bytes tokenizer
            # with a pretrained model, ...) may vanish with other sampled values, so it fails
            # that trial instead of the whole sweep.
            try:
                TrainConfig.model_validate(data)
            except ValidationError as exc:
                for e in exc.errors():
                    if ".".join(str(x) for x in e["loc"]) == path:
                        msg = e["msg"].removeprefix("Value error, ")
                        issues.append(
                            ConfigIssue(
                                f"space.{path}",
                                f"value {value!r} is not valid for {path}: {msg}",
                                "change the values or range",
                                file,
                            )
                        )
    for k, params in enumerate(spec.enqueue):
        for name in params:
            if name not in spec.space:
                issues.append(
                    ConfigIssue(
                        f"enqueue.{k}.{name}",
                        f"{name} is not in space:",
                        f"use one of: {', '.join(spec.space)}",
                        file,
                    )
                )
    if issues:
        raise ConfigError(issues)


def trial_config(
    base: dict,
    params: dict[str, Any],
    extra: dict[str, Any] | None = None,
    source: str | None = None,
) -> Resolved:
    """Base data + sampled params (+ launcher settings) -> a validated, resolved config."""
    data = copy.deepcopy(base)
    for path, value in {**params, **(extra or {})}.items():
        set_dotted(data, path, value)
    cfg = parse(data, file=source)
    return resolve(cfg, source)


def describe_params(params: dict[str, Any]) -> str:
    """Short text for params: lr=0.001 layers=2 (last path part only)."""
    out = []
    for k, v in params.items():
        text = f"{v:.3g}" if isinstance(v, float) else str(v)
        out.append(f"{k.rsplit('.', 1)[-1]}={text}")
    return " ".join(out)
