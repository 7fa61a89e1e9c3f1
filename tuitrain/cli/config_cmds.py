"""Provides `tuitrain validate` and `tuitrain schema`."""

from __future__ import annotations

import argparse
import json

from tuitrain.cli.exits import CommandError


def register(sub: argparse._SubParsersAction) -> None:
    """Add validate and schema."""
    from tuitrain.cli import add_config_source

    p = sub.add_parser("validate", help="check a config; print it resolved, with derived values")
    add_config_source(p)
    p.add_argument("--format", choices=("yaml", "json"), default="yaml")
    p.add_argument("-o", "--output", help="also write the resolved config to this file")
    p.set_defaults(handler=cmd_validate)
    p = sub.add_parser("schema", help="print the config's JSON Schema (for editor validation)")
    p.set_defaults(handler=cmd_schema)


def cmd_validate(args: argparse.Namespace) -> int:
    """Load, validate and print the resolved config and its derived values."""
    import sys

    from tuitrain.config import dump_yaml, save_yaml, to_dict
    from tuitrain.data.estimate import data_summary, load_with_data
    from tuitrain.data.summary import summary_lines

    r = load_with_data(args.config, env=args.env, sets=args.sets)
    if args.output:  # first: a path that cannot be written fails before any output
        try:
            save_yaml(r.config, args.output)
        except OSError as exc:
            raise CommandError(
                f"-o {args.output}: cannot write there ({exc.strerror or exc}); fix: give a file "
                "path in a folder you can write"
            ) from None
    derived = r.derived.as_dict()
    data = data_summary(r.config)  # computed by load_with_data: read from its cache
    if args.format == "json":
        print(
            json.dumps(
                {
                    "config": to_dict(r.config),
                    "derived": derived,
                    "data": data.as_dict() if data else None,
                    "warnings": r.warnings,
                },
                indent=2,
            )
        )
    else:
        print(dump_yaml(r.config), end="")
        print("# derived")
        for k, v in derived.items():
            print(f"#   {k}: {v}")
        if data is not None:
            print("# data (estimate)" if data.estimated else "# data")
            print(
                f"#   {data.format} records ({data.how})"
                + (f", template {data.template}" if data.template else "")
            )
            for line in summary_lines(data.as_dict(), data.estimated):
                print(f"#   {line}")
    for w in r.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"ok: {args.config} is valid", file=sys.stderr)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of the config."""
    from tuitrain.config.jsonschema import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0
