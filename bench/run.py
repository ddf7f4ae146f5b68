"""make bench: how fast, how lean, how flat; the service side by side with a baseline and a Flask floor.

    .venv/bin/python bench/run.py [--rounds 5] [--duration 8] [--quick]

Four servers (bench/variants.py) get the same load in interleaved rounds, so machine drift cancels out:
every round runs every variant once, in rotating order, each on a freshly started server (cold start,
pre-flight, warm-up, measured run). First at saturation (every wrk connection sends its next message as
soon as its answer came), then paced at the same offered rate for all (half the baseline's throughput),
which is where latencies compare like with like. Then the growth checks (bench/growth.py). Prints the report with
PASS/FAIL targets and writes bench/RESULTS.md. Exits 0 when the measurements are sound, whatever the
targets say; nonzero when the harness breaks (a server fails, errors or wrong counts under load).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: bench.*, responder

from bench import growth, report
from bench.load import Dataset, WrkResult, preflight, run_wrk, write_dataset, wrk_binary
from bench.procs import HarnessError, cpu_seconds, machine_busy_seconds, own_cpu_seconds, worker_memory_kib
from bench.replay import APPS, replay_dataset
from bench.variants import ROOT, VARIANTS, BenchSettings, Variant
from devtools.servers import Server, ServerError, free_port, stop_all

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"  # generated data and server logs (git-ignored)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--paced-rounds", type=int, default=3, help="rounds at the same offered rate")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of measured load per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each measured run")
    parser.add_argument("--workers", type=int, default=2, help="WEB_CONCURRENCY / gunicorn -w, all variants")
    parser.add_argument(
        "--connections",
        type=int,
        default=16,
        help="wrk connections (one per thread; all on one thread in the second paced shape)",
    )
    parser.add_argument("--pairs", type=int, default=2000, help="distinct (From, To) pairs in the load")
    parser.add_argument("--messages", type=int, default=16, help="signed messages per pair (then repeats)")
    parser.add_argument("--depth", type=int, default=100_000, help="the deep message of the growth check")
    parser.add_argument("--growth-pairs", type=int, default=100_000, help="distinct pairs for the RSS check")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 1 round, short loads, shallow growth; no RESULTS.md",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.paced_rounds, args.duration, args.warmup, args.pairs = 1, 1, 3.0, 1.0, 320
        args.depth, args.growth_pairs = 5_000, 5_000
    return args


def measure(
    variant: Variant,
    settings: BenchSettings,
    dataset: Dataset,
    args: argparse.Namespace,
    rate: float = 0,
    connections: int = 0,
) -> report.Run:
    """Start the variant's server, check it, warm it up, measure one load run (paced at `rate`), stop it.

    With `connections`, all of them on one wrk thread replaying the recorded cookies (bench/replay.py).
    """
    load = {"counts": variant.counts, "rate": rate, "connections": connections}
    load["mode"] = "replay" if connections else "loop"
    port = free_port()
    server = Server(
        variant.command(port, settings.workers),
        variant.env(settings, port),
        port,
        OUT / f"{variant.name.replace(' ', '-')}.log",
        ROOT,
    )
    cold = server.start()
    try:
        preflight(port, settings.auth_token, checks_signatures=variant.service)
        warmup = run_wrk(port, dataset, args.warmup, **load)
        check(variant, server, warmup, "warm-up", roundtrips=False)  # too short to come round to a pair
        before = cpu_seconds(server.pids())
        result = run_wrk(port, dataset, args.duration, **load)
        cpu = cpu_seconds(server.pids()) - before
        check(variant, server, result, "measured run", replayed=bool(connections))
        if cpu > (os.cpu_count() or 1) * result.seconds * 1.05:  # a process group or clock gone wrong
            raise HarnessError(f"{variant.name}: {cpu:.1f} CPU seconds in {result.seconds:.1f} s of load")
        peak_kib = worker_memory_kib(server.pids(), "VmHWM")
    finally:
        server.stop()
    return report.Run(
        rps=result.rps,
        p50_ms=result.latency_ms("p50"),
        p99_ms=result.latency_ms("p99"),
        cpu_ms=cpu / result.requests * 1000,
        rss_mib=peak_kib / 1024,
        cold_s=cold,
        requests=result.requests,
    )


def measure_rounds(
    settings: BenchSettings,
    datasets: dict[str, Dataset],
    args: argparse.Namespace,
    rounds: int,
    rate: float = 0,
    connections: int = 0,
) -> dict[str, list[report.Run]]:
    """Measure every variant once per round, in rotating order; paced at `rate` when given."""
    runs: dict[str, list[report.Run]] = {v.name: [] for v in VARIANTS}
    load = f"paced at {rate:g} req/s" if rate else "saturated"
    if connections:
        load += f", {connections} connections on one wrk thread"
    for r in range(rounds):
        order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
        for variant in order:
            run = measure(variant, settings, datasets[variant.name], args, rate, connections)
            runs[variant.name].append(run)
            print(
                f"bench: {load}, round {r + 1}/{rounds} {variant.name:<20} {run.rps:7.0f} req/s  "
                f"p99 {run.p99_ms:6.1f} ms  CPU {run.cpu_ms:.3f} s/1k  RSS {run.rss_mib:5.1f} MiB  "
                f"cold {run.cold_s:.2f} s",
                flush=True,
            )
    return runs


def measure_stages(quick: bool) -> dict:
    """Run bench/stages.py in a process of its own (metrics as in production: files); return its figures."""
    sizes = ["--rounds", "1", "--webhooks", "300"] if quick else ["--rounds", "5", "--webhooks", "2000"]
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="sms-responder-bench-stages-")}
    done = subprocess.run(
        [sys.executable, "-m", "bench.stages", "--json", *sizes],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise HarnessError(f"bench/stages.py failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def check(
    variant: Variant, server: Server, result: WrkResult, phase: str, roundtrips: bool = True, replayed=False
) -> None:
    problems = result.problems(counts=variant.counts, roundtrips=roundtrips, replayed=replayed)
    if problems:
        raise HarnessError(f"{variant.name}, {phase}: {'; '.join(problems)}\n{server.log_tail()}")


def interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)
    OUT.mkdir(exist_ok=True)
    started = time.perf_counter()
    load_before = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    busy_before, own_before = machine_busy_seconds(), own_cpu_seconds()
    try:
        wrk = wrk_binary()
        settings = BenchSettings.create(OUT, args.workers)
        token = settings.auth_token
        print(
            f"bench: signing {args.pairs * args.messages + 1000 + args.growth_pairs - 10:,} webhooks ...",
            flush=True,
        )
        dataset = write_dataset(OUT / "load", token, 0, args.pairs, args.messages, args.connections)
        few = write_dataset(OUT / "rss-few", token, 0, 10, 100, 1)
        many = write_dataset(OUT / "rss-many", token, 10, args.growth_pairs - 10, 1, 4)
        print(f"bench: signed in {time.perf_counter() - started:.0f} s", flush=True)

        every = {v.name: dataset for v in VARIANTS}
        runs = measure_rounds(settings, every, args, args.rounds)
        rate = round(report.median_of(runs["baseline"], "rps") / 2)
        paced = measure_rounds(settings, every, args, args.paced_rounds, rate)
        print("bench: recording each webhook's cookie for the one-thread load shape ...", flush=True)
        replays = {app: replay_dataset(settings, dataset, app) for app in APPS}
        recorded = {v.name: replays["baseline" if v.name == "baseline" else "service"] for v in VARIANTS}
        shared = measure_rounds(settings, recorded, args, args.paced_rounds, rate, args.connections)

        print(f"bench: growth: one conversation to message {args.depth:,} (in-process) ...", flush=True)
        flat = growth.cpu_and_cookie(settings, args.depth)
        print(f"bench: growth: shipped server over {args.growth_pairs:,} distinct pairs ...", flush=True)
        memory = growth.server_rss(settings, OUT, few, many)
        memory.update(few_pairs=few.pairs, many_pairs=few.pairs + many.pairs)
        print("bench: the service's own work, stage by stage (in-process) ...", flush=True)
        stages = measure_stages(quick=args.quick)

        n = args.connections
        others = (machine_busy_seconds() - busy_before) - (own_cpu_seconds() - own_before)
        meta = {
            "load": f"wrk -t{n} -c{n} -d{args.duration:g}s (+{args.warmup:g}s warm-up) -s bench/conversations.lua, "
            f"{args.pairs:,} pairs; {args.workers} workers per server",
            "rounds": args.rounds,
            "paced_rounds": args.paced_rounds,
            "connections": n,
            "rate": rate,
            "workers": args.workers,
            "load_before": load_before,
            "others_share": max(0.0, others) / ((time.perf_counter() - started) * (os.cpu_count() or 1)),
            "command": shlex.join([".venv/bin/python", "bench/run.py", *(argv or sys.argv[1:])]),
        }
        text, targets = report.build(VARIANTS, runs, paced, shared, flat, memory, stages, meta)
        print("\n" + text)
        seconds = time.perf_counter() - started
        written = "bench/RESULTS.md not written (--quick)"
        if not args.quick:
            report.write_results(HERE / "RESULTS.md", text, meta, wrk, seconds)
            written = "wrote bench/RESULTS.md"
        held = sum(t.passed for t in targets)
        print(f"\nbench: {held}/{len(targets)} targets held; {seconds:.0f} s; {written}")
        return 0
    except (HarnessError, ServerError) as exc:
        print(f"\nbench: the harness broke, figures not trustworthy:\n{exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbench: interrupted", file=sys.stderr)
        return 130
    finally:
        stop_all()
        for data in [
            *OUT.glob("*.tsv"),
            *OUT.glob("*.done-*"),
        ]:  # signed webhooks: ~70 MB, made anew each run
            data.unlink()


if __name__ == "__main__":
    sys.exit(main())
