"""Load on the speech server: latency and throughput of ``funasr-nano serve`` under 1, 4 and 16
concurrent clients, with and without dynamic batching.

For each batching mode the server is started in its own process (``funasr-nano serve --port 0`` on
127.0.0.1; the load generator refuses any other host), warmed up with one request, and for each
concurrency level ``c`` a fixed number of ``POST /v1/audio/transcriptions`` requests (``--requests``,
bounded; each client sends its next request when the previous one is answered) goes out from ``c``
client threads. Reported per level:

  p50_s, p95_s   request latency (upload to full answer), seconds
  req_s          requests answered per second (wall clock of the level)
  audio_s_s      seconds of audio transcribed per second
  batch_rows     mean rows per engine batch during the level (from GET /health)
  peak_rss_mb    the server process's peak resident memory so far (VmHWM: model load included)

Models: ``--model demo`` (the embedded demo model, on the held-out clips of tests/data/demo_heldout,
1.6-4.6 s each; it stops by itself after ~8 tokens) or ``--model full`` (the full-size
Fun-ASR-Nano-2512 architecture, 0.8 B parameters, random weights, as benchmarks/bench_transcribe.py
builds it, on a 5 s clip of the real recordings; random weights never stop by themselves, so every
request generates exactly ``--new-tokens`` tokens). "Batching on" is the default server
(``--max-batch-size 16``, 10 ms window); "off" is ``--max-batch-size 1`` (requests decoded one at a
time in arrival order).

Usage:  python benchmarks/bench_server.py --model demo [--batching on off] [--concurrency 1 4 16]
            [--requests 8 16 32] [--time-limit 540] [--out bench-out]
Every level is bounded by its request count and the whole run by --time-limit (seconds; a level
that would start after it is skipped and reported so). Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parents[1]
HELDOUT = ROOT / "tests" / "data" / "demo_heldout"


def start_server(model_dir: str | None, batching: bool, extra: list[str]) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "funasr_nano.cli", "serve", "--port", "0", "--host", "127.0.0.1",
               "--max-queue", "64", *extra]
    if model_dir:
        command += ["--model", model_dir]
    command += [] if batching else ["--max-batch-size", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    while True:
        line = process.stderr.readline()
        if not line:
            raise RuntimeError(f"the server did not start (exit status {process.wait()})")
        match = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
        if match:
            threading.Thread(target=process.stderr.read, daemon=True).start()  # keep draining its log
            return process, match.group(1)


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def audio_seconds(path: pathlib.Path) -> float:
    import soundfile

    return soundfile.info(str(path)).duration


def run_level(url: str, clips: list[pathlib.Path], fields: dict, concurrency: int, requests: int) -> dict:
    import httpx2 as httpx

    host = urllib.parse.urlparse(url).hostname
    if host != "127.0.0.1":
        raise SystemExit(f"refusing to load {host}: this benchmark only talks to 127.0.0.1")
    payloads = [(path.name, path.read_bytes(), audio_seconds(path)) for path in clips]
    latencies: list[float] = []
    seconds: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        with httpx.Client(timeout=600) as http:
            while True:
                with lock:
                    number = next(counter, None)
                if number is None:
                    return
                name, data, duration = payloads[number % len(payloads)]
                began = time.perf_counter()
                response = http.post(url + "/v1/audio/transcriptions", files={"file": (name, data)},
                                     data={"model": "bench", **fields})
                elapsed = time.perf_counter() - began
                with lock:
                    if response.status_code == 200:
                        latencies.append(elapsed)
                        seconds.append(duration)
                    else:
                        errors.append(f"{response.status_code} {response.text[:200]}")

    before = httpx.get(url + "/health").json()["batching"]
    began = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    after = httpx.get(url + "/health").json()["batching"]
    latencies.sort()
    batches = after["batches"] - before["batches"]
    return {
        "concurrency": concurrency, "requests": len(latencies), "errors": len(errors), "error_sample": errors[:2],
        "p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "p95_s": round(latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))], 3)
        if latencies else None,
        "req_s": round(len(latencies) / wall, 3), "audio_s_s": round(sum(seconds) / wall, 3),
        "batch_rows": round((after["rows"] - before["rows"]) / batches, 2) if batches else None,
        "wall_s": round(wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo", help="demo, full, or a checkpoint folder")
    parser.add_argument("--batching", nargs="+", default=["on", "off"], choices=["on", "off"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--requests", nargs="+", type=int, default=None,
                        help="requests per level, one per --concurrency value (default demo: 16 32 64; full: 4 8 16)")
    parser.add_argument("--new-tokens", type=int, default=16, help="full/random models: tokens per request")
    parser.add_argument("--time-limit", type=float, default=540.0, help="seconds for the whole run")
    parser.add_argument("--out", default=str(ROOT / "bench-out"))
    parser.add_argument("--serve-args", default="", help="extra flags for funasr-nano serve")
    args = parser.parse_args()
    deadline = time.monotonic() + args.time_limit
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    fields: dict = {}
    if args.model == "demo":
        model_dir, clips = None, sorted(HELDOUT.glob("*.flac"))
        requests = args.requests or [16, 32, 64]
    else:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        if args.model == "full":
            from bench_transcribe import ensure_checkpoint, make_clips

            model_dir = str(ensure_checkpoint(out, "full"))
            clip = out / "clip_5s.wav"
            clips = [clip if clip.exists() else make_clips(out, [5])[5]]
        else:
            model_dir, clips = args.model, [ROOT / "examples" / "zh_binhai.wav"]
        # random weights: a fixed amount of work per request
        fields = {"max_new_tokens": str(args.new_tokens), "min_new_tokens": str(args.new_tokens),
                  "repetition_guard": "false"}
        requests = args.requests or [4, 8, 16]
    if len(requests) != len(args.concurrency):
        raise SystemExit("give one --requests value per --concurrency value")

    rows = []
    for mode in args.batching:
        if time.monotonic() > deadline:
            print(f"skipped batching {mode}: time limit", file=sys.stderr)
            continue
        began = time.perf_counter()
        process, url = start_server(model_dir, mode == "on", args.serve_args.split())
        try:
            load_s = time.perf_counter() - began
            run_level(url, clips[:1], fields, 1, 1)  # warm-up
            for concurrency, count in zip(args.concurrency, requests):
                if time.monotonic() > deadline:
                    print(f"skipped batching {mode} x{concurrency}: time limit", file=sys.stderr)
                    continue
                row = {"model": args.model, "batching": mode, **run_level(url, clips, fields, concurrency, count),
                       "peak_rss_mb": round(peak_rss_mb(process.pid)), "load_s": round(load_s, 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    with open(out / "bench_server.jsonl", "a") as log:
        for row in rows:
            log.write(json.dumps({**row, "machine": platform.machine(), "cpus": os.cpu_count()}) + "\n")
    print("\n| model | batching | clients | requests | errors | p50 s | p95 s | req/s | audio-s/s | rows/batch | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {row['batching']} | {row['concurrency']} | {row['requests']} | {row['errors']} | "
              f"{row['p50_s']} | {row['p95_s']} | {row['req_s']} | {row['audio_s_s']} | {row['batch_rows']} | "
              f"{row['peak_rss_mb']} |")


if __name__ == "__main__":
    main()
