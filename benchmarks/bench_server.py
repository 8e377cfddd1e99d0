"""Load on the speech server: latency and throughput of ``funasr-nano serve`` under 1, 4, 16 and 32
concurrent clients, with and without dynamic batching, on the transformers and the llama.cpp engine.

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

A checkpoint folder is exported once to a GGUF + ONNX folder for ``--engines llama.cpp``. The full-size
random checkpoint of ``bench_translate.py --size full`` (``bench-out/translate-full/speech-official``) has its
embedding rows scaled so that random logits pick text tokens: with it (and ``--clip``, a 5 s clip), the
streamed deltas carry text and the time to the first delta can be measured; ``--model full`` decodes to
empty text, so no delta is sent.

``--engines transformers llama.cpp`` serves the same model on each engine in one run (llama.cpp: the
checkpoint exported to GGUF ``--gguf-type``, default q8_0, ``--threads`` threads; continuous batching,
rows per decoding step in ``batch_rows``), for ratios measured under the same conditions; the run ends
with the goals of issue 25 as ratios (llama.cpp at 16 clients >= 4x the transformers engine's req/s;
p95 at 16 clients <= 3x the 1-client p50; 0 errors). ``--stream`` sends ``stream=true`` and also reports the time to the first
``transcript.text.delta`` (``ttfd_p50_s``, ``ttfd_p95_s``). ``rss_mb`` is the server's resident memory
after the level. ``--soak SECONDS`` then runs the last concurrency level for that long and prints the
resident memory every ``--soak-every`` seconds (does it keep growing?), on the engines of
``--soak-engines`` (default: all). The CPU model and its SIMD flags are printed first.

Usage:  python benchmarks/bench_server.py --model demo [--batching on off] [--concurrency 1 4 16 32]
            [--requests 8 16 32] [--engines transformers llama.cpp] [--stream] [--soak 600]
            [--time-limit 540] [--out bench-out]
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


def cpu_info() -> str:
    """``model name, N cores, flags: avx2 ...`` (the SIMD flags that change every figure)."""
    model, flags = "?", ""
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
        for line in info:
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].strip()
    keep = [f for f in flags.split() if f.startswith(("avx", "fma", "f16c", "amx", "sse4", "vnni"))]
    return f"{model}, {os.cpu_count()} cores, flags: {' '.join(keep)}"


def goals(rows: list[dict]) -> list[str]:
    """Issue 25's load goals as ratios of this run's rows (batching on)."""
    at = {(row["engine"], row["concurrency"]): row for row in rows if row["batching"] == "on"}
    lines = []
    llama, torch_16 = at.get(("llama.cpp", 16)), at.get(("transformers", 16))
    if llama and torch_16 and torch_16["req_s"]:
        ratio = llama["req_s"] / torch_16["req_s"]
        lines.append(f"llama.cpp / transformers req/s at 16 clients: {llama['req_s']} / {torch_16['req_s']} = "
                     f"{ratio:.2f}x (goal >= 4x: {'met' if ratio >= 4 else 'not met'})")
    for engine in sorted({row["engine"] for row in rows}):
        one, sixteen = at.get((engine, 1)), at.get((engine, 16))
        if one and sixteen and one["p50_s"] and sixteen["p95_s"]:
            ratio = sixteen["p95_s"] / one["p50_s"]
            lines.append(f"{engine}: p95 at 16 clients / 1-client p50: {sixteen['p95_s']} / {one['p50_s']} = "
                         f"{ratio:.2f}x (goal <= 3x: {'met' if ratio <= 3 else 'not met'})")
    errors = sum(row["errors"] for row in rows)
    lines.append(f"errors: {errors} (goal 0: {'met' if errors == 0 else 'not met'})")
    return lines


def start_server(model_dir: str | None, batching: bool, extra: list[str]) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "funasr_nano.cli", "serve", "--port", "0", "--host", "127.0.0.1",
               "--max-queue", "64", "--max-uploads", "64", *extra]
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


def peak_rss_mb(pid: int, field: str = "VmHWM") -> float:
    """The process's peak (``VmHWM``) or current (``VmRSS``) resident memory, MB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float | None:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(q * (len(values) - 1))))], 3) if values else None


def post(http, url: str, name: str, data: bytes, fields: dict, stream: bool) -> tuple[int, str, float | None]:
    """``(status, error text, seconds to the first delta or None)`` of one transcription request."""
    began = time.perf_counter()
    form = {"model": "bench", **fields, **({"stream": "true"} if stream else {})}
    if not stream:
        response = http.post(url + "/v1/audio/transcriptions", files={"file": (name, data)}, data=form)
        return response.status_code, response.text[:200], None
    first = None
    with http.stream("POST", url + "/v1/audio/transcriptions", files={"file": (name, data)}, data=form) as response:
        if response.status_code != 200:
            return response.status_code, response.read().decode()[:200], None
        for line in response.iter_lines():
            if first is None and line.startswith("data:") and "transcript.text.delta" in line:
                first = time.perf_counter() - began
            if '"error"' in line:
                return 500, line[:200], first
    return 200, "", first


def audio_seconds(path: pathlib.Path) -> float:
    import soundfile

    return soundfile.info(str(path)).duration


def run_level(url: str, clips: list[pathlib.Path], fields: dict, concurrency: int, requests: int,
              stream: bool = False, until: float | None = None) -> dict:
    """``concurrency`` closed-loop clients sending ``requests`` requests (or, with ``until``, as many as
    they can until that ``time.monotonic()``)."""
    import httpx2 as httpx

    host = urllib.parse.urlparse(url).hostname
    if host != "127.0.0.1":
        raise SystemExit(f"refusing to load {host}: this benchmark only talks to 127.0.0.1")
    payloads = [(path.name, path.read_bytes(), audio_seconds(path)) for path in clips]
    latencies: list[float] = []
    first_deltas: list[float] = []
    seconds: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests if until is None else 1 << 62))

    def client() -> None:
        with httpx.Client(timeout=600) as http:
            while until is None or time.monotonic() < until:
                with lock:
                    number = next(counter, None)
                if number is None:
                    return
                name, data, duration = payloads[number % len(payloads)]
                began = time.perf_counter()
                status, text, first = post(http, url, name, data, fields, stream)
                elapsed = time.perf_counter() - began
                with lock:
                    if status == 200:
                        latencies.append(elapsed)
                        seconds.append(duration)
                        if first is not None:
                            first_deltas.append(first)
                    else:
                        errors.append(f"{status} {text}")

    before = httpx.get(url + "/health").json()["batching"]
    began = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    after = httpx.get(url + "/health").json()["batching"]
    batches = after["batches"] - before["batches"]
    row = {
        "concurrency": concurrency, "requests": len(latencies), "errors": len(errors), "error_sample": errors[:2],
        "p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "p95_s": percentile(latencies, 0.95),
        "req_s": round(len(latencies) / wall, 3), "audio_s_s": round(sum(seconds) / wall, 3),
        "batch_rows": round((after["rows"] - before["rows"]) / batches, 2) if batches else None,
        "wall_s": round(wall, 2),
    }
    if stream:
        row.update(ttfd_p50_s=round(statistics.median(first_deltas), 3) if first_deltas else None,
                   ttfd_p95_s=percentile(first_deltas, 0.95))
    return row


def soak(process, url: str, clips, fields: dict, concurrency: int, seconds: float, every: float, stream: bool) -> list:
    """RSS of the server every ``every`` seconds while ``concurrency`` clients load it for ``seconds``."""
    samples = [(0.0, round(peak_rss_mb(process.pid, "VmRSS")))]
    began = time.monotonic()
    total = {"requests": 0, "errors": 0}
    while time.monotonic() - began < seconds:
        row = run_level(url, clips, fields, concurrency, 0, stream, until=min(began + seconds, time.monotonic() + every))
        total["requests"] += row["requests"]
        total["errors"] += row["errors"]
        samples.append((round(time.monotonic() - began), round(peak_rss_mb(process.pid, "VmRSS"))))
        print(json.dumps({"soak_s": samples[-1][0], "rss_mb": samples[-1][1], **total}), flush=True)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo", help="demo, full, or a checkpoint folder")
    parser.add_argument("--batching", nargs="+", default=["on", "off"], choices=["on", "off"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 4, 16, 32])
    parser.add_argument("--requests", nargs="+", type=int, default=None,
                        help="requests per level, one per --concurrency value (default demo: 16 32 64 96; "
                             "full: 4 8 32 64)")
    parser.add_argument("--new-tokens", type=int, default=16, help="full/random models: tokens per request")
    parser.add_argument("--time-limit", type=float, default=540.0, help="seconds for the whole run")
    parser.add_argument("--out", default=str(ROOT / "bench-out"))
    parser.add_argument("--serve-args", default="", help="extra flags for funasr-nano serve")
    parser.add_argument("--engines", nargs="+", default=["transformers"], choices=["transformers", "llama.cpp"])
    parser.add_argument("--gguf-type", default="q8_0", help="llama.cpp: the GGUF the checkpoint is exported to")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp engine threads")
    parser.add_argument("--stream", action="store_true", help="stream=true: also time the first delta")
    parser.add_argument("--clip", help="checkpoint folders: the clip sent (default examples/zh_binhai.wav)")
    parser.add_argument("--soak", type=float, default=0.0, help="seconds of load at the last level, RSS sampled")
    parser.add_argument("--soak-every", type=float, default=30.0)
    parser.add_argument("--soak-engines", nargs="+", default=None, help="engines soaked (default: all)")
    args = parser.parse_args()
    print("cpu:", cpu_info(), flush=True)
    deadline = time.monotonic() + args.time_limit
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    fields: dict = {}
    if args.model == "demo":
        model_dir, clips = None, sorted(HELDOUT.glob("*.flac"))
        requests = args.requests or [16, 32, 64, 96]
    else:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        if args.model == "full":
            from bench_transcribe import ensure_checkpoint, make_clips

            model_dir = str(ensure_checkpoint(out, "full"))
            clip = out / "clip_5s.wav"
            clips = [clip if clip.exists() else make_clips(out, [5])[5]]
        else:
            model_dir, clips = args.model, [ROOT / "examples" / "zh_binhai.wav"]
            if args.clip:
                clips = [pathlib.Path(args.clip)]
        # random weights: a fixed amount of work per request
        fields = {"max_new_tokens": str(args.new_tokens), "min_new_tokens": str(args.new_tokens),
                  "repetition_guard": "false"}
        requests = args.requests or [4, 8, 32, 64]
    if len(requests) != len(args.concurrency):
        raise SystemExit("give one --requests value per --concurrency value")

    rows = []
    soaks = {}
    for engine in args.engines:
        if engine == "llama.cpp":
            if model_dir is None:
                raise SystemExit("--engines llama.cpp needs --model full or a checkpoint folder")
            sys.path.insert(0, str(ROOT / "benchmarks"))
            from bench_transcribe import ensure_gguf

            if args.model == "full":
                serve_dir = str(ensure_gguf(out, pathlib.Path(model_dir), "full", args.gguf_type))
            elif (pathlib.Path(model_dir) / "model.pt").exists() or (pathlib.Path(model_dir) / "config.yaml").exists():
                # an official-layout checkpoint folder: its GGUF + ONNX folder (the light runtime), exported once
                serve_dir = str(ensure_gguf(out, pathlib.Path(model_dir), pathlib.Path(model_dir).name, args.gguf_type))
            else:
                serve_dir = model_dir  # already a GGUF folder
            engine_args = ["--engine", "llama.cpp", "--threads", str(args.threads)]
        else:
            serve_dir, engine_args = model_dir, ["--engine", "transformers"]
        for mode in args.batching:
            if time.monotonic() > deadline:
                print(f"skipped {engine} batching {mode}: time limit", file=sys.stderr)
                continue
            began = time.perf_counter()
            process, url = start_server(serve_dir, mode == "on", engine_args + args.serve_args.split())
            try:
                load_s = time.perf_counter() - began
                run_level(url, clips[:1], fields, 1, 1)  # warm-up
                for concurrency, count in zip(args.concurrency, requests):
                    if time.monotonic() > deadline:
                        print(f"skipped {engine} batching {mode} x{concurrency}: time limit", file=sys.stderr)
                        continue
                    row = {"model": args.model, "engine": engine, "batching": mode,
                           **run_level(url, clips, fields, concurrency, count, args.stream),
                           "rss_mb": round(peak_rss_mb(process.pid, "VmRSS")),
                           "peak_rss_mb": round(peak_rss_mb(process.pid)), "load_s": round(load_s, 1)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                if args.soak > 0 and (args.soak_engines is None or engine in args.soak_engines):
                    soaks[(engine, mode)] = soak(process, url, clips, fields, args.concurrency[-1], args.soak,
                                                 args.soak_every, args.stream)
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
    print("\n| model | engine | batching | clients | requests | errors | p50 s | p95 s | first delta p50/p95 s | req/s "
          "| audio-s/s | rows/batch | RSS MB | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        first = f"{row['ttfd_p50_s']} / {row['ttfd_p95_s']}" if "ttfd_p50_s" in row else "-"
        print(f"| {row['model']} | {row['engine']} | {row['batching']} | {row['concurrency']} | {row['requests']} | "
              f"{row['errors']} | {row['p50_s']} | {row['p95_s']} | {first} | {row['req_s']} | {row['audio_s_s']} | "
              f"{row['batch_rows']} | {row['rss_mb']} | {row['peak_rss_mb']} |")
    for (engine, mode), samples in soaks.items():
        print(f"\nsoak {engine} batching {mode}: RSS MB " + ", ".join(f"{t} s: {mb}" for t, mb in samples))
        print(f"soak {engine}: RSS {samples[0][1]} MB at the start, {samples[-1][1]} MB after {samples[-1][0]} s")
    print("\ncpu:", cpu_info())
    for line in goals(rows):
        print(line)


if __name__ == "__main__":
    main()
