"""The streams benchmark against the production profile: one worker against two, same run.

    .venv/bin/python -m bench.production [--levels 10,50,100,200] [--workers 1,2]

For each worker count, `scripts/production.py` starts the profile (nginx, PostgreSQL,
Redis, N daphne workers, from deploy/'s files) and the simulated browsers of
`bench.streams` go through nginx, N answers at 30 chunks/s from the benchmark upstream.
Measured per level: delivery, lag, the workers' CPU per upstream chunk and per
answer-second, nginx + Redis + PostgreSQL CPU beside them, Redis publishes and PostgreSQL
row writes per answer-second (from their own counters). Nothing is pinned: the load, the
upstream and the profile share the machine's cores, as they would on one server.

The last part is the sizing: processes, Redis publishes/s and PostgreSQL writes/s for
100, 1,000 and 10,000 concurrent answers, computed from those measured costs (the
assumptions are printed with it). Output: markdown on stdout and in
`<out>/production.md`, raw figures in `<out>/production.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg
import redis

from bench import report
from bench.streams import (
    PASSWORD,
    ROOT,
    Browser,
    Runner,
    free_port,
    gather_limited,
    machine,
    proc_cpu_seconds,
    proc_rss_kb,
    summarise,
    upstream_server,
)

KNEE_LAG_MS = 250.0


def _production_module() -> Any:
    spec = importlib.util.spec_from_file_location("production", ROOT / "scripts/production.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PRODUCTION = _production_module()


def _pids_named(*names: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if comm in names:
            pids.append(int(entry.name))
    return pids


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # a PostgreSQL backend that ended meanwhile
            total += proc_cpu_seconds(pid)
    return total


class ProfileApp:
    """The production profile as `bench.streams.Runner` sees an app."""

    def __init__(self, upstream_url: str, workers: int, workdir: Path) -> None:
        self.workers = workers
        self.state = workdir / f"workers-{workers}"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.upstream_url = upstream_url
        self.process: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}
        self.counting = False  # database writes are counted for measured levels only

    def start(self, users: int) -> None:
        env = {
            **os.environ,
            "OPENAI_BASE_URL": self.upstream_url + "/v1",
            "OPENAI_API_KEY": "bench",
            "CHATSITE_MESSAGES_PER_MINUTE": "1000",
        }
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        log = open(self.state.parent / f"profile-{self.workers}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts/production.py"), "--state", str(self.state),
             "--workers", str(self.workers), "--port", str(self.port), "--ephemeral"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log,
        )  # fmt: skip
        assert self.process.stdout is not None
        while True:
            line = self.process.stdout.readline().decode()
            if not line:
                raise RuntimeError(f"the profile did not start: see {log.name}")
            if line.startswith("READY "):
                break
        self.env = PRODUCTION.read_env_file(self.state / "chatsite.env")
        script = (
            "from django.contrib.auth import get_user_model\n"
            "from django.contrib.auth.hashers import make_password\n"
            f"h = make_password({PASSWORD!r})\n"
            "U = get_user_model()\n"
            f"U.objects.bulk_create([U(username=f'bench{{i}}', password=h)"
            f" for i in range({users})])\n"
        )
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", script],
            cwd=ROOT, env={**os.environ, **self.env}, check=True,
        )  # fmt: skip

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(90)

    def worker_pids(self) -> list[int]:
        return list(json.loads((self.state / "workers.json").read_text()).values())

    def cpu(self) -> float:
        return _cpu(self.worker_pids())

    def infra_cpu(self) -> float:
        return _cpu(_pids_named("nginx", "redis-server", "postgres"))

    def rss_kb(self) -> int:
        return sum(proc_rss_kb(pid) for pid in self.worker_pids())

    async def writes(self) -> dict[str, int]:
        """Rows PostgreSQL wrote to chatsite's database (its own statistics)."""

        if not self.counting:
            return {"rows": 0}  # warming up: nothing to count
        # An idle backend reports its statistics within 10 s (PostgreSQL 15's
        # PGSTAT_IDLE_INTERVAL): wait that long so each level's rows fall in its window.
        await asyncio.sleep(11)

        def read() -> int:
            with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as connection:
                row = connection.execute(
                    "SELECT tup_inserted + tup_updated + tup_deleted FROM pg_stat_database "
                    "WHERE datname = current_database()"
                ).fetchone()
            return int(row[0]) if row else 0

        return {"rows": await asyncio.to_thread(read)}

    def publishes(self) -> int:
        client = redis.Redis.from_url(self.env["REDIS_URL"])
        try:
            stats = client.info("commandstats")
        finally:
            client.close()
        return int(stats.get("cmdstat_publish", {}).get("calls", 0))


async def run_profile(
    upstream_url: str, workers: int, levels: list[int], chunks: int, workdir: Path
) -> dict[str, Any]:
    app = ProfileApp(upstream_url, workers, workdir)
    users = max(levels)
    print(f"[{workers} workers] starting the profile ({users} users)…", flush=True)
    app.start(users)
    rows = []
    try:
        browsers = [Browser(app, i) for i in range(users)]  # type: ignore[arg-type]
        await gather_limited([b.sign_in for b in browsers], limit=16)
        runner = Runner(app, upstream_url, browsers)  # type: ignore[arg-type]
        slow = f"bench-30x{chunks}"
        await runner.level(slow, 1, spread=0, timeout=60)  # imports, caches, first queries
        app.counting = True
        for n in levels:
            print(f"[{workers} workers] N={n}…", flush=True)
            await asyncio.sleep(2)  # titles of the last level
            publishes, infra = app.publishes(), app.infra_cpu()
            measured = await runner.level(slow, n, spread=2.0, timeout=chunks / 30 + 62)
            row = summarise(n, 30, measured, None)
            row["publishes"] = app.publishes() - publishes
            row["infra_cpu_s"] = app.infra_cpu() - infra
            seconds = measured["answer_seconds"]
            row["answer_seconds"] = seconds
            row["publishes_per_answer_second"] = report.ratio(row["publishes"], seconds)
            row["worker_cpu_per_answer_second"] = report.ratio(measured["cpu_s"], seconds)
            row["infra_cpu_per_answer_second"] = report.ratio(row["infra_cpu_s"], seconds)
            rows.append(row)
            print(
                f"[{workers} workers]   "
                + json.dumps({k: row[k] for k in ("lag_p99_ms", "delivered_ratio")}),
                flush=True,
            )
        for browser in browsers:
            await browser.close()
    finally:
        app.stop()
    return {"workers": workers, "levels": rows}


def knee(rows: list[dict[str, Any]]) -> int:
    good = [
        r["n"]
        for r in rows
        if r["delivered_ratio"] == 1.0 and (r["lag_p99_ms"] or math.inf) < KNEE_LAG_MS
    ]
    return max(good, default=0)


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def markdown(results: list[dict[str, Any]], machine_text: str) -> str:
    lines = [
        f"Machine: {machine_text}",
        "",
        "| workers | N | lag p50 ms | lag p99 ms | delivered | workers µs/chunk | "
        "worker CPU s per answer-s | nginx+Redis+PG CPU s per answer-s | "
        "Redis publishes per answer-s | PG rows written per answer-s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        for r in result["levels"]:
            lines.append(
                f"| {result['workers']} | {r['n']} | {_f(r['lag_p50_ms'])} | "
                f"{_f(r['lag_p99_ms'])} | {r['delivered_ratio']:.4f} | "
                f"{_f(r['app_us_per_chunk'], 0)} | {_f(r['worker_cpu_per_answer_second'], 4)} | "
                f"{_f(r['infra_cpu_per_answer_second'], 4)} | "
                f"{_f(r['publishes_per_answer_second'], 2)} | "
                f"{_f(r['writes_per_answer_second'], 2)} |"
            )
    lines.append("")
    knees = {result["workers"]: knee(result["levels"]) for result in results}
    lines.append(
        "Knee (largest N with every token delivered and p99 lag < 250 ms): "
        + ", ".join(f"{w} worker{'s' * (w > 1)}: {k}" for w, k in knees.items())
    )
    lines += ["", *sizing(results, knees)]
    return "\n".join(lines)


def sizing(results: list[dict[str, Any]], knees: dict[int, int]) -> list[str]:
    """Processes, Redis publishes/s and PostgreSQL writes/s for 100 … 10,000 answers."""
    # The costs at the busiest level that was still on time, with the most workers.
    best = max(results, key=lambda r: (knees.get(r["workers"], 0) > 0, r["workers"]))
    on_time = [r for r in best["levels"] if r["n"] <= knees.get(best["workers"], 0)]
    basis = (on_time or best["levels"][:1])[-1]
    per_worker = max(1.0, knees.get(best["workers"], 0) / best["workers"])
    cpu = basis["worker_cpu_per_answer_second"] or 0.0
    infra = basis["infra_cpu_per_answer_second"] or 0.0
    publishes = basis["publishes_per_answer_second"] or 0.0
    writes = basis["writes_per_answer_second"] or 0.0
    lines = [
        f"Sizing (answers streaming at once, 30 chunks/s each), from the costs measured with "
        f"{best['workers']} worker{'s' * (best['workers'] > 1)} at N={basis['n']}: "
        f"{cpu:.4f} worker CPU-seconds, {infra:.4f} nginx+Redis+PostgreSQL CPU-seconds, "
        f"{publishes:.2f} Redis publishes and {writes:.2f} PostgreSQL row writes per "
        f"answer-second:",
        "",
        "| answers | worker cores (by CPU, 75% busy) | workers (at this run's knee, "
        f"{per_worker:g} per worker) | cores for nginx+Redis+PG | Redis publishes/s | "
        "PostgreSQL row writes/s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for answers in (100, 1_000, 10_000):
        cores = math.ceil(answers * cpu / 0.75)
        lines.append(
            f"| {answers:,} | {cores:,} | {math.ceil(answers / per_worker):,} | "
            f"{math.ceil(answers * infra * 10) / 10:,.1f} | {answers * publishes:,.0f} | "
            f"{answers * writes:,.0f} |"
        )
    lines += [
        "",
        "Assumptions: each answer has one reader (more tabs add Redis fan-out, not "
        "publishes); frames and checkpoints coarsen with load as configured by default, so "
        "publishes and writes per answer fall as a worker gets busier (the figures above "
        "are at the level the sizing uses); titles and final saves are included. Workers "
        "by CPU assume a worker per core kept 75% busy (the rest is headroom for bursts and "
        "the event loop's latency); workers at the knee are this run's, with the load "
        "generator, the upstream, nginx, Redis and PostgreSQL on the same two cores, so on "
        "a dedicated server they are a ceiling on the count needed, and the CPU column is "
        "the better guide.",
    ]
    return lines


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    levels = [int(x) for x in args.levels.split(",")]
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="chatsite-bench-production-") as tmp,
        upstream_server([f"bench-30x{args.chunks}"]) as upstream_url,
    ):
        workdir = Path(tmp)
        workdir.chmod(0o755)  # PostgreSQL's user and nginx's workers look inside
        for workers in [int(x) for x in args.workers.split(",")]:
            results.append(await run_profile(upstream_url, workers, levels, args.chunks, workdir))
            await asyncio.sleep(1)  # the last profile's ports and processes let go
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", default="10,50,100,200")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--chunks", type=int, default=300)
    parser.add_argument("--out", default=str(ROOT / "bench-results"))
    args = parser.parse_args(argv)
    results = asyncio.run(run(args))
    text = markdown(results, machine())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "production.md").write_text(text + "\n")
    (out / "production.json").write_text(json.dumps(results, indent=1, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
