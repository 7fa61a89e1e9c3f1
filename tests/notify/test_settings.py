"""Settings: URLs from TUITRAIN_NOTIFY (spaces or commas), notify.yaml with events per target,
errors that name the file, the field and the fix, and redaction of every secret part."""

from __future__ import annotations

import pytest

from tuitrain.notify.settings import (
    EVENTS,
    NotifySettingsError,
    Target,
    load,
    redact,
    scrub,
    split_urls,
)


def test_env_urls_split_on_spaces_and_commas_but_not_inside_a_url():
    text = "ntfy://ntfy.sh/a-topic, json://h.example:8080/x  mailto://u:p@mail.example?to=a@x.io,b@y.io"
    assert split_urls(text) == [
        "ntfy://ntfy.sh/a-topic",
        "json://h.example:8080/x",
        "mailto://u:p@mail.example?to=a@x.io,b@y.io",
    ]


def test_file_and_env_together(tmp_path):
    f = tmp_path / "notify.yaml"
    f.write_text(
        "targets:\n"
        "  - ntfy://ntfy.sh/topic-one\n"
        "  - {url: 'json://127.0.0.1:9/hook', events: [crashed, failed]}\n"
        "events: {new_best: true, completed: false}\n"
        "min_severity: critical\n"
        "rate_limit: {per_run: 2, window_s: 60}\n"
    )
    s = load({"TUITRAIN_NOTIFY_CONFIG": str(f), "TUITRAIN_NOTIFY": "ntfy://ntfy.sh/env-topic"})
    assert [t.url for t in s.targets] == [
        "ntfy://ntfy.sh/topic-one",
        "json://127.0.0.1:9/hook",
        "ntfy://ntfy.sh/env-topic",
    ]
    assert s.targets[1].wants("crashed") and not s.targets[1].wants("completed")
    assert s.enabled("new_best") and not s.enabled("completed") and s.enabled("crashed")
    assert (s.min_severity, s.rate_per_run, s.rate_window_s) == ("critical", 2, 60.0)
    assert str(f) in s.source and "TUITRAIN_NOTIFY" in s.source


def test_defaults_without_anything(tmp_path):
    s = load({"HOME": str(tmp_path)})
    assert not s.configured
    assert {k for k, v in s.events.items() if not v} == {"stopped", "new_best"}
    assert set(s.events) == set(EVENTS)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("targets: [nonsense]\n", "targets[0]: '***' is not an Apprise URL"),
        ("events: [completed, exploded]\n", "unknown event 'exploded'"),
        ("min_severity: loud\n", "min_severity must be one of info, warning, critical"),
        ("retries: 2.5\n", "retries must be a whole number"),
        ("colour: red\n", "unknown key 'colour'"),
        (
            "targets: [{url: 'ntfy://ntfy.sh/x', events: [nope]}]\n",
            "targets[0].events: unknown event",
        ),
        ("- a\n- b\n", "expected a mapping"),
    ],
)
def test_bad_file_names_file_field_and_fix(tmp_path, text, says):
    f = tmp_path / "notify.yaml"
    f.write_text(text)
    with pytest.raises(NotifySettingsError) as err:
        load({"TUITRAIN_NOTIFY_CONFIG": str(f)})
    assert str(f) in str(err.value) and says in str(err.value)


def test_missing_named_file_and_bad_env_url(tmp_path):
    with pytest.raises(NotifySettingsError, match="no such file"):
        load({"TUITRAIN_NOTIFY_CONFIG": str(tmp_path / "nope.yaml")})
    with pytest.raises(NotifySettingsError, match="TUITRAIN_NOTIFY: .* is not an Apprise URL"):
        load({"HOME": str(tmp_path), "TUITRAIN_NOTIFY": "hooks.example/secret"})


def test_redact_hides_tokens_keeps_scheme_and_host():
    assert redact("ntfy://ntfy.sh/my-secret-topic") == "ntfy://ntfy.sh/***"
    assert redact("json://user:pw@127.0.0.1:8080/hook?x=1") == "json://***@127.0.0.1:8080/***"
    assert redact("slack://T0KENA/T0KENB/T0KENC") == "slack://***/***"  # the host is a token
    assert redact("tgram://123456:ABCDEF/987") == "tgram://***/***"
    assert redact("not a url") == "***"


def test_scrub_removes_every_secret_part_from_error_text():
    t = Target("tgram://123456:ABCDEFsecret/98765")
    text = "error posting to https://api.telegram.org/bot123456:ABCDEFsecret/sendMessage chat 98765"
    out = scrub(text, [t])
    assert "ABCDEFsecret" not in out and "123456" not in out and "98765" not in out
