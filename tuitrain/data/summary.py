"""Provides the data summary of a run: what was read, what became examples, what was dropped or
truncated, and how many tokens carry the loss, as the trainer records it (an event at start, the
`data` object of `tuitrain show RUN --format json`) and as one line for `show` and the editor."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# The keys of the `data` object, in the order README lists them.
DATA_KEYS = (
    "records",
    "examples",
    "dropped",
    "truncated",
    "tokens_total",
    "tokens_in_examples",
    "loss_tokens",
    "format",
    "template",
    "tokenize_s",
    "cache_hit",
)


@dataclass
class DataReport:
    """Counts over the data files read (train, and validation when it is a file)."""

    format: str
    template: str | None = None
    how: str = ""  # "set by data.format", "detected from the 'messages' key"
    records: int = 0  # records read
    examples: int = 0  # training units made (examples, or blocks), train + validation
    dropped: int = 0  # records that became no example
    drop_reasons: dict[str, int] = field(default_factory=dict)
    truncated: int = 0  # examples cut at data.max_seq_length
    tokens_total: int = 0  # tokens of the records as read (eos separators included)
    tokens_in_examples: int = 0  # tokens inside the examples made
    loss_tokens: int | None = 0  # tokens whose label is trained (None: classification)
    tokenize_s: float = 0.0
    cache_hit: bool = False
    train_examples: int = 0
    val_examples: int = 0
    estimated: bool = False  # the editor's estimate (approximate token counts)

    def drop(self, reason: str, n: int = 1) -> None:
        """Count `n` records dropped for `reason`."""
        if n:
            self.dropped += n
            self.drop_reasons[reason] = self.drop_reasons.get(reason, 0) + n

    def add(self, other: DataReport) -> None:
        """Add another file's counts (validation) to these."""
        for k in ("records", "examples", "truncated", "tokens_total", "tokens_in_examples"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        if self.loss_tokens is not None and other.loss_tokens is not None:
            self.loss_tokens += other.loss_tokens
        for reason, n in other.drop_reasons.items():
            self.drop(reason, n)
        self.tokenize_s += other.tokenize_s
        self.cache_hit = self.cache_hit and other.cache_hit

    def as_dict(self) -> dict:
        """The `data` object (rounded seconds)."""
        out = asdict(self)
        out["tokenize_s"] = round(self.tokenize_s, 3)
        out.pop("estimated")
        return out


def _n(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.1f}M"
    if v >= 1e4:
        return f"{v / 1e3:.0f}k"
    return f"{v:,.0f}"


def share(part: float, whole: float) -> str:
    """'41%' (or '<1%' / '100%' at the edges, never a misleading 0% or 100%)."""
    if not whole:
        return "-"
    r = part / whole
    if 0 < r < 0.01:
        return "<1%"
    if 0.995 <= r < 1:
        return ">99%"
    return f"{r:.0%}"


def summary_lines(d: dict, approx: bool = False) -> list[str]:
    """The summary as short lines (each fits 76 columns): records and examples, tokens kept,
    the loss share, truncation and drops. `d` is a `data` object (DataReport.as_dict())."""
    a = "~" if approx else ""
    lines = [f"{d['records']:,} records -> {a}{_n(d['examples'])} examples"]
    total, kept, loss = (
        d.get("tokens_total") or 0,
        d.get("tokens_in_examples") or 0,
        d.get("loss_tokens"),
    )
    if total:
        lines.append(f"tokens in examples {a}{share(kept, total)} of {a}{_n(total)}")
    if loss is not None and kept:
        what = "answers only" if loss < kept else "every token"
        lines.append(f"loss on {what}: {a}{share(loss, kept)} of tokens")
    if d.get("truncated") or d.get("drop_reasons") or d.get("template"):
        lines.append(f"truncated {a}{_n(d['truncated'])} of {a}{_n(d['records'])} records")
    for reason, n in (d.get("drop_reasons") or {}).items():
        lines.append(f"dropped {a}{_n(n)}: {reason}")
    return lines


def summary_line(d: dict) -> str:
    """One line for `tuitrain show` and the run's start event."""
    head = f"{d['format']} records" + (f", template {d['template']}" if d.get("template") else "")
    parts = summary_lines(d)
    how = "cache hit" if d.get("cache_hit") else f"tokenised in {d.get('tokenize_s', 0):.1f} s"
    return f"{head}: " + "; ".join(parts) + f"; {how}"
