"""The monitor's Commands pane: a set_lr applied during the warmup shows the trainer's words
(the set LR is the warmup's target), one applied after it only its step."""

from __future__ import annotations

from pathlib import Path

from tuitrain.config import load_config, to_dict
from tuitrain.store import Store
from tuitrain.tui.widgets.run_panes import command_text

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


def test_set_lr_in_warmup_shows_the_target_rule(tmp_path):
    r = load_config(DEMO)
    with Store(tmp_path / "runs") as s:
        run = s.create_run(to_dict(r.config), {**r.derived.as_dict(), "warmup_steps": 100})
        early = s.send_command(run.id, "set_lr", {"lr": 2e-4})
        s.claim_commands(run.id)
        said = "0.0002 is the target (reached at step 100); warmup 90%: 0.00018 now"
        s.ack_command(early, 90, said)
        late = s.send_command(run.id, "set_lr", {"lr": 1e-4})
        s.claim_commands(run.id)
        s.ack_command(late, 150, "lr 0.0002 -> 0.0001 from step 151")
        cmds = {c.id: c for c in s.commands(run.id)}
    warmup = run.derived["warmup_steps"]
    assert said in command_text(cmds[early], warmup=warmup)
    assert "applied @150" in command_text(cmds[late], warmup=warmup)
    assert "->" not in command_text(cmds[late], warmup=warmup)
