"""Provides the monitor's system strip (GPU/CPU/RAM/disk and the step-time breakdown) and system chart lines."""

from __future__ import annotations

import re

from rich.markup import escape
from textual.widgets import Static

from tuitrain.tui.widgets.chart import Line

SYS = "sys/"
TIMES = ("time/data_s", "time/compute_s", "time/overhead_s")
PERF_KEYS = (*TIMES, "mfu")
_GPU = re.compile(r"^sys/gpu(\d+)_util$")
_NODE = re.compile(r"^sys/node(\d+)_")  # a multi-node run's other machines (tuitrain.train.nodes)
SEP = " │ "
HINT = "  g: chart"


def gpu_indices(names) -> list[int]:
    """GPU indices that have a utilisation series or value, in order."""
    return sorted({int(m.group(1)) for n in names if (m := _GPU.match(n))})


def wanted(name: str) -> bool:
    """Whether a metric belongs to the strip (the monitor keeps these among its latest values)."""
    return name.startswith(SYS) or name in PERF_KEYS


def _n(v: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def _watts(w: float) -> str:
    return f"{w / 1000:.1f}kW" if w >= 1000 else f"{w:.0f}W"


def _gb(v: float | None) -> str:
    """61G, 1.2G (small values keep a decimal)."""
    if v is None:
        return "-"
    return f"{v:.1f}" if v < 10 else f"{v:.0f}"


# -- the text ------------------------------------------------------------------------------


def perf_texts(latest: dict[str, float]) -> list[str]:
    """The step-time breakdown and MFU, richest first; [] before the trainer logs any."""
    parts = [latest.get(k) for k in TIMES]
    mfu = latest.get("mfu")
    if all(p is None for p in parts) and mfu is None:
        return []
    mfu_full = f"  MFU {mfu * 100:.1f}%" if mfu is not None else ""
    mfu_short = f" MFU {mfu * 100:.0f}%" if mfu is not None else ""
    if all(p is None for p in parts):
        return [mfu_full.strip(), mfu_short.strip()]
    data, compute, other = (p or 0.0 for p in parts)
    step = data + compute + other
    full = (
        f"step {_secs(step)} = data {_secs(data)} + compute {_secs(compute)}"
        f" + other {_secs(other)}{mfu_full}"
    )
    share = (lambda v: f"{100 * v / step:.0f}%") if step > 0 else (lambda v: "-")
    short = f"step {_secs(step)} data {share(data)} other {share(other)}{mfu_short}"
    return [full, short]


def _secs(v: float) -> str:
    """Seconds per step: 0.123s, 12ms, 1.5s."""
    if v >= 1:
        return f"{v:.2f}s"
    if v >= 0.01:
        return f"{v:.3f}s"
    return f"{v * 1000:.1f}ms"


def system_texts(latest: dict[str, float]) -> list[str]:
    """GPU (or, without GPUs, CPU/RAM/disk) text, richest first; [] without any sys/ value.
    A multi-node run's other nodes (`sys/node{K}_...`) follow as one summary each."""
    own, nodes = _machine_texts(latest), _node_texts(latest)
    if not nodes:
        return own
    if not own:
        return nodes
    return [o + SEP + nodes[0] for o in own[:-1]] + [own[-1] + SEP + n for n in nodes]


def _node_texts(latest: dict[str, float]) -> list[str]:
    """The other nodes: `node1 8 GPUs 87% 61/640G ...` each, richest first; [] on one node."""
    per: dict[int, dict[str, float]] = {}
    for name, v in latest.items():
        if m := _NODE.match(name):
            per.setdefault(int(m.group(1)), {})[SYS + name[m.end() :]] = v
    if not per:
        return []
    cells = {k: _machine_texts(per[k]) for k in sorted(per)}
    full = "  ".join(f"node{k} {t[-1]}" for k, t in cells.items() if t)
    utils = [
        u
        for vals in per.values()
        for i in gpu_indices(vals)
        if (u := vals.get(f"sys/gpu{i}_util")) is not None
    ]
    n = len(per)
    tail = f" gpu {min(utils):.0f}-{max(utils):.0f}%" if utils else ""
    return [full, f"+{n} node{'s' if n > 1 else ''}{tail}"]


def _machine_texts(latest: dict[str, float]) -> list[str]:
    """One machine's GPU (or CPU/RAM/disk) text, richest first."""
    gpus = gpu_indices(latest)
    if gpus:
        return _gpu_texts(latest, gpus)
    cpu = latest.get("sys/cpu_percent")
    used, total = latest.get("sys/ram_used_gb"), latest.get("sys/ram_total_gb")
    disk = latest.get("sys/disk_free_gb")
    if cpu is None and used is None and disk is None:
        return []
    return [
        f"CPU {_n(cpu)}%  RAM {_gb(used)}/{_gb(total)}G  disk {_gb(disk)}G free",
        f"cpu {_n(cpu)}% ram {_gb(used)}/{_gb(total)}G disk {_gb(disk)}G",
    ]


def _gpu_texts(latest: dict[str, float], gpus: list[int]) -> list[str]:
    def get(i: int, field: str) -> float | None:
        return latest.get(f"sys/gpu{i}_{field}")

    def cell_full(i: int) -> str:
        pw = get(i, "power_w")
        return (
            f"gpu{i} {_n(get(i, 'util'))}% {_gb(get(i, 'mem_used_gb'))}/{_gb(get(i, 'mem_total_gb'))}G"
            + (f" {_watts(pw)}" if pw is not None else "")
        )

    def cell_mid(i: int) -> str:
        pw = get(i, "power_w")
        return f"{i}:{_n(get(i, 'util'))}% {_gb(get(i, 'mem_used_gb'))}G" + (
            f" {_watts(pw)}" if pw is not None else ""
        )

    def cell_tiny(i: int) -> str:
        pw = get(i, "power_w")
        return f"{_n(get(i, 'util'))}/{_gb(get(i, 'mem_used_gb'))}" + (
            f"/{pw:.0f}" if pw is not None else ""
        )

    has_power = any(get(i, "power_w") is not None for i in gpus)
    legend = "GPU %/G/W " if has_power else "GPU %/G "
    out = [
        "  ".join(cell_full(i) for i in gpus),
        " ".join(cell_mid(i) for i in gpus),
        legend + " ".join(cell_tiny(i) for i in gpus),
    ]
    utils = [u for i in gpus if (u := get(i, "util")) is not None]
    used = sum(v for i in gpus if (v := get(i, "mem_used_gb")) is not None)
    total = sum(v for i in gpus if (v := get(i, "mem_total_gb")) is not None)
    power = sum(v for i in gpus if (v := get(i, "power_w")) is not None)
    mean = sum(utils) / len(utils) if utils else None
    spread = f" (min {min(utils):.0f})" if len(utils) > 1 and min(utils) < (mean or 0) - 0.5 else ""
    name = f"{len(gpus)} GPUs" if len(gpus) > 1 else f"gpu{gpus[0]}"
    out.append(
        f"{name} {_n(mean)}%{spread} {_gb(used)}/{_gb(total)}G"
        + (f" {_watts(power)}" if has_power else "")
    )
    return out


def strip_lines(latest: dict[str, float], width: int, rows: int = 1) -> list[str]:
    """The strip's plain text in at most `rows` lines of `width` columns (richest that fits)."""
    sys_t, perf_t = system_texts(latest), perf_texts(latest)
    if not sys_t and not perf_t:
        return []

    def fit(options: list[str]) -> str | None:
        return next((t for t in options if len(t) <= width), None)

    if rows >= 2 and sys_t and perf_t:
        both = sys_t[0] + SEP + perf_t[0]
        if len(both) <= width:  # the richest of both fits one line: keep the second row for charts
            return [both]
        return [fit(sys_t) or sys_t[-1], fit(perf_t) or perf_t[-1]]
    if not perf_t:
        return [fit(sys_t) or sys_t[-1]]
    if not sys_t:
        return [fit(perf_t) or perf_t[-1]]
    # Per-device detail with the step times beside it when they fit; several GPUs: their own
    # line (8 GPUs fit 120 columns) beats the step times; else the summary keeps both.
    gpus = len(gpu_indices(latest))
    detail, summary = (sys_t[:-1], sys_t[-1]) if gpus else (sys_t, None)
    with_perf = [s + SEP + p for s in detail for p in perf_t]
    summed = [summary + SEP + p for p in perf_t] + [summary] if summary else []
    order = with_perf + (detail + summed if gpus > 1 else summed + detail)
    return [fit(order) or sys_t[-1]]


class SystemStrip(Static):
    """One (or two, on tall screens) lines under the header; hidden until the run logs sys/ or time/ metrics."""

    DEFAULT_CSS = """
    SystemStrip { height: 1; padding: 0 1; background: $boost; color: $text-muted;
                  text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def show(self, latest: dict[str, float], width: int, rows: int) -> int:
        """Render for the latest values; returns the rows it now takes (0: hidden)."""
        room = max(10, width - 2)  # minus the padding
        lines = strip_lines(latest, room, rows)
        if lines and len(lines[-1]) + len(HINT) <= room:
            lines[-1] += HINT  # the key's only hint: the footer has no room left for it
        text = "\n".join(escape(x) for x in lines)
        if text != getattr(self, "_shown", None):  # polled twice a second: skip no-op relayouts
            self._shown = text
            self.display = bool(lines)
            self.styles.height = max(1, len(lines))
            self.update(text)
        return len(lines)


# -- the chart -----------------------------------------------------------------------------


def chart_names(names) -> list[str]:
    """The series the system chart needs, given the run's metric names."""
    gpus = gpu_indices(names)
    if gpus:
        return [f"sys/gpu{i}_{f}" for i in gpus for f in ("util", "mem_used_gb")]
    return [n for n in ("sys/cpu_percent", "sys/ram_used_gb") if n in names]


def _by_step(pts) -> dict[int, float]:
    return {p[0]: p[3] for p in pts}


def _mean_line(label: str, color: str, per_gpu: list[dict[int, float]], scale) -> Line | None:
    steps = sorted(set().union(*per_gpu)) if per_gpu else []
    xs, ys = [], []
    for s in steps:
        vals = [scale(i, d[s]) for i, d in enumerate(per_gpu) if s in d]
        if vals:
            xs.append(s)
            ys.append(sum(vals) / len(vals))
    return Line(label, tuple(xs), tuple(ys), color) if xs else None


def system_chart(series: dict, latest: dict[str, float]) -> tuple[str, list[Line]]:
    """(title, lines), the title short enough for an 80-column half chart: GPU util and memory in % (mean over GPUs, with the lowest util), or CPU/RAM % of the host."""
    gpus = gpu_indices(series) or gpu_indices(latest)
    if gpus:
        util = [_by_step(series.get(f"sys/gpu{i}_util", ())) for i in gpus]
        mem = [_by_step(series.get(f"sys/gpu{i}_mem_used_gb", ())) for i in gpus]
        totals = [latest.get(f"sys/gpu{i}_mem_total_gb") or 0.0 for i in gpus]

        def pct(k: int, v: float) -> float:
            return 100.0 * v / totals[k] if totals[k] else 0.0

        many = len(gpus) > 1
        lines = [
            _mean_line("util" + (" (mean)" if many else ""), "green", util, lambda k, v: v),
            _mean_line("mem" + (" (mean)" if many else ""), "cyan", mem, pct),
        ]
        if many:
            steps = sorted(set().union(*util))
            lo = [(s, min(d[s] for d in util if s in d)) for s in steps]
            lines.append(
                Line("util (min)", tuple(s for s, _ in lo), tuple(v for _, v in lo), "red")
            )
        title = f"GPU util/mem % ({len(gpus)} GPU{'s' if many else ''})"
        return title, [x for x in lines if x and x.xs]
    cpus = latest.get("sys/cpu_count") or 1.0
    total = latest.get("sys/ram_total_gb") or 0.0
    cpu = _by_step(series.get("sys/cpu_percent", ()))
    ram = _by_step(series.get("sys/ram_used_gb", ()))
    lines = []
    if cpu:
        lines.append(Line("cpu", tuple(cpu), tuple(v / cpus for v in cpu.values()), "green"))
    if ram and total:
        lines.append(Line("ram", tuple(ram), tuple(100 * v / total for v in ram.values()), "cyan"))
    return "CPU/RAM % of host", lines
