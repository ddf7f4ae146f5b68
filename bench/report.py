"""Turn the runs into the printed report, the PASS/FAIL targets and bench/RESULTS.md."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

GROWTH_LIMIT = 1.1
FLOOR = "Flask floor"


@dataclass(frozen=True)
class Run:
    """One measured load run of one variant (one server start)."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_ms: float  # CPU seconds of the server's process tree per 1,000 messages (= ms per message)
    rss_mib: float  # peak RSS (VmHWM) of the largest worker
    cold_s: float  # spawn to first 200 on GET /healthz
    requests: int


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    passed: bool


def spread(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def median_of(runs: list[Run], key: str) -> float:
    return statistics.median(getattr(r, key) for r in runs)


def table(rows: list[list[str]], right: set[int]) -> list[str]:
    """Align columns; columns in `right` are right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def with_spread(values: list[float], fmt: str) -> str:
    mid, low, high = spread(values)
    return f"{mid:{fmt}} [{low:{fmt}}-{high:{fmt}}]"


def build(
    variants,
    runs: dict[str, list[Run]],
    paced: dict[str, list[Run]],
    shared: dict[str, list[Run]],
    growth: dict,
    memory: dict,
    stages: dict,
    meta: dict,
) -> tuple[str, list[Target]]:
    """Return the report text and the targets."""
    lines = [
        f"Load: {meta['load']}",
        f"Saturated: {meta['rounds']} rounds, each wrk connection sends its next message as soon as its answer"
        " came; every variant once per round in rotating order; median [min-max] over rounds.",
        f"Other activity on the machine during the bench: {meta['others_share']:.0%} of its CPU "
        f"(load average before: {meta['load_before']})",
    ]
    if meta["others_share"] > 0.1:
        lines.append(
            "NOTE: the machine was busy with other work; figures are noisy (the gunicorn variants, one"
            " connection per request, suffer most). Rerun on a quiet machine."
        )
    lines.append("")
    lines += [f"  {v.name:<20} {v.app} on {v.server}" for v in variants]
    lines.append("")
    rows = [["variant", "req/s", "p50 ms", "p99 ms", "CPU s/1k msgs", "peak RSS/worker", "cold start s"]]
    for v in variants:
        rs = runs[v.name]
        rows.append(
            [
                v.name,
                with_spread([r.rps for r in rs], ".0f"),
                f"{median_of(rs, 'p50_ms'):.1f}",
                with_spread([r.p99_ms for r in rs], ".1f"),
                with_spread([r.cpu_ms for r in rs], ".3f"),
                f"{median_of(rs, 'rss_mib'):.1f} MiB",
                with_spread([r.cold_s for r in rs], ".2f"),
            ]
        )
    lines += table(rows, right={1, 2, 3, 4, 5, 6})

    def ratio(a: str, b: str, key: str, of: dict[str, list[Run]] = runs) -> float:
        return median_of(of[a], key) / median_of(of[b], key)

    same_server = ratio("service-on-gunicorn", "baseline", "cpu_ms")
    lines += [
        "",
        "Ratios (of medians):",
        f"  shipped / baseline: throughput {ratio('shipped', 'baseline', 'rps'):.2f}x, "
        f"p99 at saturation {ratio('shipped', 'baseline', 'p99_ms'):.2f}x, "
        f"CPU/msg {ratio('shipped', 'baseline', 'cpu_ms'):.2f}x",
        f"  shipped / {FLOOR}: throughput {ratio('shipped', FLOOR, 'rps'):.2f}x, "
        f"p99 {ratio('shipped', FLOOR, 'p99_ms'):.2f}x, CPU/msg {ratio('shipped', FLOOR, 'cpu_ms'):.2f}x",
        f"  same server (gunicorn sync), CPU/msg service-on-gunicorn / baseline: {same_server:.2f}x",
        f"  same app (the service), throughput shipped server / gunicorn sync: {ratio('shipped', 'service-on-gunicorn', 'rps'):.2f}x",
    ]

    lines += [
        "",
        f"Same load: every variant paced at {meta['rate']:,} req/s (half the baseline's saturated throughput), "
        f"{meta['paced_rounds']} rounds, in two shapes.",
        f"One connection per wrk thread ({meta['connections']} threads), cookies kept per pair:",
    ]
    lines += paced_table(variants, paced)
    paced_p99 = ratio("shipped", "baseline", "p99_ms", of=paced)
    lines.append(
        f"  shipped / baseline at the same load: p50 {ratio('shipped', 'baseline', 'p50_ms', of=paced):.2f}x, "
        f"p99 {paced_p99:.2f}x"
    )
    lines.append(
        f"{meta['connections']} connections on one wrk thread, each webhook with its recorded cookie (bench/replay.py):"
    )
    lines += paced_table(variants, shared)
    shared_p99 = ratio("shipped", "baseline", "p99_ms", of=shared)
    lines.append(
        f"  shipped / baseline at the same load: p50 {ratio('shipped', 'baseline', 'p50_ms', of=shared):.2f}x, "
        f"p99 {shared_p99:.2f}x"
    )

    cpu, cookie = growth["cpu_ms"], growth["cookie_bytes"]
    deep = max(cpu, key=int)
    rss_few, rss_many = memory["rss_kib"]["few"], memory["rss_kib"]["many"]
    growth_rows = [
        ["one conversation", "message 1", "message 2", "message 1,000", f"message {int(deep):,}", "ratios"]
    ]
    growth_rows.append(
        [
            "CPU ms/msg (best chunk)",
            *(f"{cpu[p]:.3f}" for p in ("1", "2", "1000", deep)),
            f"{cpu['1000'] / cpu['2']:.2f}x, {cpu[deep] / cpu['2']:.2f}x (vs 2)",
        ]
    )
    growth_rows.append(
        [
            "cookie bytes (name=value)",
            *(str(cookie[p]) for p in ("1", "2", "1000", deep)),
            f"{cookie['1000'] / cookie['1']:.2f}x, {cookie[deep] / cookie['1']:.2f}x (vs 1)",
        ]
    )
    lines += ["", f"Growth (within {GROWTH_LIMIT}x):"]
    lines += ["  " + line for line in table(growth_rows, right={1, 2, 3, 4})]
    lines += [
        f"  CPU growth is measured from message 2, the first that brings a cookie to verify. Message 1 has "
        f"none yet, so it costs less: messages 2, 1,000 and {int(deep):,} cost "
        f"{cpu['2'] / cpu['1']:.2f}x, {cpu['1000'] / cpu['1']:.2f}x and {cpu[deep] / cpu['1']:.2f}x of it.",
        f"  server RSS (shipped, 1 worker): {rss_few / 1024:.1f} MiB after {memory['few_pairs']} pairs, "
        f"{rss_many / 1024:.1f} MiB after {memory['many_pairs']:,} distinct pairs "
        f"({rss_many / rss_few:.2f}x; peak {memory['peak_kib'] / 1024:.1f} MiB)",
        f"  (reaching message {int(deep):,} took {growth['climb_seconds']:.0f} s; CPU per chunk of "
        f"{growth['chunk']} msgs, ms/msg: "
        + "; ".join(f"{k}: {v}" for k, v in growth["cpu_ms_chunks"].items())
        + ")",
    ]

    lines += [
        "",
        f"The service's own work per webhook, stage by stage (in-process, CPU microseconds, median of "
        f"{stages['rounds']} rounds of {stages['webhooks']:,} signed webhooks with their cookies; bench/stages.py):",
    ]
    lines += ["  " + line for line in stage_table(stages)]

    over_baseline, of_floor = ratio("shipped", "baseline", "rps"), ratio("shipped", FLOOR, "rps")
    own_ms = median_of(runs["shipped"], "cpu_ms") - median_of(runs[FLOOR], "cpu_ms")
    targets = [
        Target(
            f"own work: shipped CPU/msg minus {FLOOR}'s, same server, <= 0.10 ms",
            f"{own_ms:.3f} ms",
            own_ms <= 0.10,
        ),
        Target(
            "shipped throughput >= 1.6x baseline (tutorial, gunicorn)",
            f"{over_baseline:.2f}x",
            over_baseline >= 1.6,
        ),
        Target(f"shipped throughput >= 0.60x {FLOOR}", f"{of_floor:.2f}x", of_floor >= 0.60),
        Target(
            "shipped p99 <= baseline p99, same load (one connection per wrk thread)",
            f"{paced_p99:.2f}x",
            paced_p99 <= 1.0,
        ),
        Target(
            "shipped p99 <= baseline p99, same load (many connections on one wrk thread)",
            f"{shared_p99:.2f}x",
            shared_p99 <= 1.0,
        ),
        Target("same-server CPU/msg ratio <= 0.8", f"{same_server:.2f}x", same_server <= 0.8),
    ]
    for label, value in (
        ("CPU/msg at message 1,000 vs 2", cpu["1000"] / cpu["2"]),
        (f"CPU/msg at message {int(deep):,} vs 2", cpu[deep] / cpu["2"]),
        ("cookie at message 1,000 vs 1", cookie["1000"] / cookie["1"]),
        (f"cookie at message {int(deep):,} vs 1", cookie[deep] / cookie["1"]),
        (f"RSS after {memory['many_pairs']:,} vs {memory['few_pairs']} pairs", rss_many / rss_few),
    ):
        targets.append(Target(f"{label} <= {GROWTH_LIMIT}", f"{value:.2f}x", value <= GROWTH_LIMIT))
    lines += ["", "Targets:"]
    target_rows = [["target", "measured", "result"]]
    target_rows += [[t.name, t.measured, "PASS" if t.passed else "FAIL"] for t in targets]
    lines += ["  " + line for line in table(target_rows, right={1})]
    return "\n".join(lines), targets


def paced_table(variants, runs: dict[str, list[Run]]) -> list[str]:
    """Return the indented table of one paced load shape."""
    rows = [["variant", "answered req/s", "p50 ms", "p99 ms", "CPU s/1k msgs"]]
    for v in variants:
        rs = runs[v.name]
        rows.append(
            [
                v.name,
                f"{median_of(rs, 'rps'):.0f}",
                f"{median_of(rs, 'p50_ms'):.2f}",
                with_spread([r.p99_ms for r in rs], ".2f"),
                with_spread([r.cpu_ms for r in rs], ".3f"),
            ]
        )
    return ["  " + line for line in table(rows, right={1, 2, 3, 4})]


def stage_table(stages: dict) -> list[str]:
    """Return the per-stage table: each stage, Flask's own share, the whole request and the floor."""
    total = stages["total"]
    rows = [["stage", "us/webhook", "share"]]
    rows += [[stage, f"{us:.1f}", f"{us / total:.0%}"] for stage, us in stages["stages"].items()]
    rows.append(
        ["Flask's own share (whole minus stages)", f"{stages['flask']:.1f}", f"{stages['flask'] / total:.0%}"]
    )
    rows.append(["whole request", f"{total:.1f}", "100%"])
    rows.append([f"{FLOOR}, whole request", f"{stages['floor']:.1f}", ""])
    rows.append(["own work (whole minus floor)", f"{total - stages['floor']:.1f}", ""])
    return table(rows, right={1, 2})


# ---- RESULTS.md -----------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "cores (nproc)": str(os.cpu_count()),
        "CPU": cpu_model,
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
    }


def versions(wrk: str) -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("flask", "werkzeug", "twilio", "gunicorn", "gevent"):
        found[package] = version(package)
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False).stdout.split()
    found["wrk"] = out[1] if len(out) > 1 else "unknown"  # "wrk debian/4.1.0-3+b2 [epoll] Copyright ..."
    return found


def write_results(path: Path, text: str, meta: dict, wrk: str, seconds: float) -> None:
    info = machine()
    lines = [
        "# make bench: latest results",
        "",
        "Written by `bench/run.py` on every run; the command is `make bench`. Figures from one machine;",
        'compare ratios, not absolute numbers. Other work on the machine adds noise: see "other activity".',
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}; took {seconds:.0f} s",
        "- machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        f"- load average before: {meta['load_before']}; other activity during the bench: "
        f"{meta['others_share']:.0%} of the machine's CPU",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions(wrk).items()),
        f"- command: `make bench` (runs `{meta['command']}`)",
        f"- workers: {meta['workers']} for every variant",
        "",
        "```",
        text,
        "```",
        "",
        "## How it is measured",
        "",
        "- **shipped**: `python serve.py serve` with production settings (random `SECRET_KEY`, a",
        "  `TWILIO_AUTH_TOKEN`, `PUBLIC_URL`, a 1,000-row `CALLERS_FILE`, `WEB_CONCURRENCY`); signature",
        "  checks on, and verified before each load: a correctly signed webhook gets 200, a wrongly signed",
        "  one 403.",
        "- **baseline**: `bench/baseline_app.py`, the tutorial's session counter, on `gunicorn -w N` (sync).",
        "- **service-on-gunicorn**: `responder:create_app()` with the same settings on the same gunicorn.",
        "- **Flask floor**: `bench/floor_app.py`, one Flask route answering fixed TwiML and a fixed",
        "  cookie, on `gunicorn.conf.py` (gunicorn, gevent workers) and the same workers",
        "  (`gunicorn -c gunicorn.conf.py --bind ... bench.floor_app:app`).",
        "- Load: wrk with `bench/conversations.lua`, one connection per wrk thread, cycling over distinct",
        "  (From, To) pairs; every webhook is signed as Twilio signs it (precomputed), each pair's cookie is",
        "  sent back, and each reply's stated count must equal the pair's messages so far. Any socket",
        "  error, non-2xx answer or count mismatch aborts the bench. Saturated: each connection sends its",
        "  next message as soon as its answer came. Same load: every thread paced (wrk's `delay()`) so",
        "  each variant is offered half the baseline's saturated throughput; latency counts from the send.",
        "- Second paced shape: the same connections all on one wrk thread (`wrk -t1 -cN`), where the script",
        "  cannot match answers to requests, so each webhook carries the cookie recorded for it by playing",
        "  the data set once through the app in-process (`bench/replay.py`); a run where fewer replies count",
        "  past message 1 than 95% of the webhooks sent with a cookie (the cookies refused) aborts the bench.",
        "- CPU: utime+stime of the server's process group (main process and workers) over the measured",
        "  run, per 1,000 answered webhooks. RSS: the largest worker's VmHWM after the run. Cold start:",
        "  spawn to the first 200 on `GET /healthz`.",
        "- Growth: in-process (`responder.create_app()`, Flask test client; devtools' Simulator signs the",
        "  webhooks and sends back the cookie the service set; only the app's handling is timed) CPU per",
        "  message in interleaved chunks of 100 messages (the least disturbed chunk of each window counts):",
        "  messages 1 and 2 of fresh conversations, and around message 1,000 and message 100,000 of one",
        "  conversation that really got there. CPU growth is measured from message 2, the first with a",
        "  cookie to verify; message 1's cost is reported beside it.",
        "  Memory: the shipped server with one worker, RSS after 10 pairs (100 messages each) and after",
        "  100,000 distinct pairs.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
