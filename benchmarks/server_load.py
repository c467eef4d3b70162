"""The server under load (issue 15): does it shed load instead of queueing without bound?

Starts `lookalike serve` (this tree's) on 127.0.0.1 only, with an index of the dev photos'
landmarks (built once into --workdir, features through the feature cache), then runs N client
threads that post dev photos to /identify in a loop for T seconds. A client that is answered
503 waits what Retry-After says (bounded by the end of the run), as a polite client does.
Requests in flight at the end still finish; every client stops by itself.

Reports the accepted (200) latency p50/p95, the 503 rate, the count of other 5xx and of
transport errors, throughput, and the server's RSS after warm-up, at the end and at its peak
(sampled every second from /proc). Run niced on the shared machine:

    nice -n 10 .venv/bin/python benchmarks/server_load.py --clients 5 20 50 --seconds 60
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "landmarks"
MANIFEST = DATA / "manifest.csv"
HOST = "127.0.0.1"  # loopback only: the benchmark never listens on another address


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def query_photos() -> list[Path]:
    """Every 7th landmark photo and every 8th distractor: known and unknown queries."""
    with open(MANIFEST, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    landmarks = [DATA / r["path"] for r in rows if r["label"] != "distractor"]
    distractors = [DATA / r["path"] for r in rows if r["label"] == "distractor"]
    return landmarks[::7] + distractors[::8]


def ensure_index(workdir: Path) -> Path:
    index = workdir / "dev.lkidx"
    if not index.exists():
        sys.path.insert(0, str(REPO))
        from lookalike import build_index

        print(f"building {index} from {MANIFEST} ...", file=sys.stderr, flush=True)
        build_index(MANIFEST, index, jobs=1, quiet=True).close()
    return index


def start_server(index: Path, workdir: Path, serve_args: list[str]) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen(
        [sys.executable, "-m", "lookalike.cli", "serve", "--index", str(index), "--host", HOST,
         "--port", str(port), "--data-dir", str(workdir / "serve-data"), *serve_args],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://{HOST}:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited: " + process.stderr.read().decode()[-2000:])
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.5)
    process.terminate()
    raise RuntimeError("server did not start in 180 s")


def run_load(base: str, pid: int, photos: list[Path], clients: int, seconds: float) -> dict:
    payloads = [(p.name, p.read_bytes()) for p in photos]
    for name, data in payloads:  # warm up: model loaded, every photo's shapes seen once
        httpx.post(base + "/identify", files={"file": (name, data, "image/jpeg")}, timeout=300)
    accepted: list[float] = []
    statuses: dict[str, int] = {}
    retry_after: list[int] = []
    lock = threading.Lock()
    started = time.time()
    stop_at = started + seconds

    def client(number: int) -> None:
        rng = random.Random(number)
        with httpx.Client(base_url=base, timeout=120) as http:
            while time.time() < stop_at:
                name, data = rng.choice(payloads)
                began = time.perf_counter()
                wait = 0.0
                try:
                    r = http.post("/identify", files={"file": (name, data, "image/jpeg")})
                    code = str(r.status_code)
                    if r.status_code == 503:
                        wait = float(r.headers.get("retry-after", "1"))
                except httpx.HTTPError as error:
                    code = type(error).__name__
                elapsed = time.perf_counter() - began
                with lock:
                    statuses[code] = statuses.get(code, 0) + 1
                    if code == "200":
                        accepted.append(elapsed)
                    elif code == "503":
                        retry_after.append(int(wait))
                if wait:
                    time.sleep(max(0.0, min(wait, stop_at - time.time())))

    memory = [(0.0, rss_mb(pid))]
    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        time.sleep(1)
        memory.append((round(time.time() - started, 1), rss_mb(pid)))
    elapsed = time.time() - started
    total = sum(statuses.values())
    refused = statuses.get("503", 0)
    other_5xx = sum(n for code, n in statuses.items() if code.startswith("5") and code != "503")
    rss = [m for _, m in memory]
    return {
        "clients": clients, "seconds": seconds, "seconds_total": round(elapsed, 1),
        "requests": total, "accepted": len(accepted), "statuses": statuses,
        "rate_503": round(refused / total, 3) if total else None,
        "other_5xx": other_5xx,
        "transport_errors": sum(n for code, n in statuses.items() if not code.isdigit()),
        "throughput_per_s": round(len(accepted) / elapsed, 2),
        "accepted_p50_s": percentile(accepted, 50), "accepted_p95_s": percentile(accepted, 95),
        "accepted_max_s": round(max(accepted), 3) if accepted else None,
        "retry_after_s": sorted(set(retry_after)),
        "rss_mb": {"start": round(rss[0], 1), "end": round(rss[-1], 1),
                   "max": round(max(rss), 1)},
        "rss_series_mb": [(t, round(m, 1)) for t, m in memory[::5]],
        "load_average": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[5, 20, 50])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lookalike-server-load"))
    parser.add_argument("--serve-args", default="",
                        help="extra `lookalike serve` options, e.g. '--workers 2 --queue 4'")
    parser.add_argument("--output", "-o", type=Path, help="also write the results as JSON")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    index = ensure_index(args.workdir)
    photos = query_photos()
    results = []
    for clients in args.clients:
        process, base = start_server(index, args.workdir, args.serve_args.split())
        try:
            result = run_load(base, process.pid, photos, clients, args.seconds)
        finally:
            process.terminate()
            process.wait(timeout=30)
        result["serve_args"] = args.serve_args
        results.append(result)
        print(json.dumps(result), flush=True)
    if args.output:
        args.output.write_text(json.dumps(results, indent=1))
    print("\n| clients | requests | accepted | 503 rate | other 5xx | accepted p50 / p95 | "
          "throughput | server RSS start / end (peak) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['clients']} | {r['requests']} | {r['accepted']} | "
              f"{100 * (r['rate_503'] or 0):.0f} % | {r['other_5xx'] + r['transport_errors']} | "
              f"{r['accepted_p50_s']} / {r['accepted_p95_s']} s | "
              f"{r['throughput_per_s']} /s | {r['rss_mb']['start']:.0f} / "
              f"{r['rss_mb']['end']:.0f} ({r['rss_mb']['max']:.0f}) MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
