"""Throughput of corpus transcription (``funasr-nano transcribe-corpus``) on the embedded demo model: files/s
and audio-seconds/s in this process and on a local Ray Data actor pool of 1 and 2 workers.

The corpus: the demo model's 36 held-out clips (tests/data/demo_heldout, synthetic speech it was trained on,
83 s), ``--copies`` times (links in a temporary folder). Every configuration writes a fresh results file.
Timings are the job end to end (Ray's actors started and their models loaded, not Ray itself, whose start is
reported apart); ``first row`` is when the first batch's rows were written (start-up + one batch). Ray Data hands
finished batches to the driver in bursts, so rates between rows mean little; use enough ``--copies`` to
amortise the start-up.

Usage:  python benchmarks/bench_corpus.py [--copies 8] [--batch-size 4] [--configs local1,local2,ray1,ray2]
Run it alone on the machine (under the exclusive CPU lock): the workers use one thread each, so 2 workers
need 2 free cores.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
HELDOUT = ROOT / "tests" / "data" / "demo_heldout"


def make_corpus(folder: pathlib.Path, copies: int) -> tuple[int, float]:
    import soundfile

    clips = sorted(HELDOUT.glob("*.flac"))
    for copy in range(copies):
        (folder / f"copy{copy}").mkdir()
        for clip in clips:
            os.symlink(clip, folder / f"copy{copy}" / clip.name)
    return len(clips) * copies, copies * sum(soundfile.info(clip).duration for clip in clips)


def run(config: str, corpus: pathlib.Path, out: pathlib.Path, batch_size: int) -> dict:
    from funasr_nano.corpus import transcribe_corpus
    from funasr_nano.corpus.transcriber import ModelSpec
    from funasr_nano.options import TranscribeOptions

    kind, workers = config[:-1], int(config[-1])
    arrivals: list[tuple[float, int, float]] = []

    def on_rows(rows):
        arrivals.append((time.perf_counter(), len(rows), sum(row["duration"] or 0 for row in rows)))

    start = time.perf_counter()
    report = transcribe_corpus(corpus, out / f"{config}.jsonl", options=TranscribeOptions(batch_size=batch_size),
                               model=ModelSpec(threads=workers if kind == "local" else 1), ray=kind == "ray",
                               num_workers=workers, on_rows=on_rows)
    total = time.perf_counter() - start
    assert report.failed == 0 and report.transcribed == report.total
    return dict(config=config, files=report.total, audio_s=report.audio_seconds, total_s=total,
                files_per_s=report.total / total, audio_s_per_s=report.audio_seconds / total,
                first_row_s=arrivals[0][0] - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4, help="files per actor call and per LLM batch")
    parser.add_argument("--configs", default="local1,local2,ray1,ray2",
                        help="local<threads> (one model in this process) or ray<workers> (1 thread each)")
    args = parser.parse_args()
    import ray

    configs = args.configs.split(",")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-corpus-") as tmp:
        tmp = pathlib.Path(tmp)
        (tmp / "corpus").mkdir()
        files, seconds = make_corpus(tmp / "corpus", args.copies)
        ray_start = None
        if any(c.startswith("ray") for c in configs):
            start = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
            ray_start = time.perf_counter() - start
        try:
            for config in configs:
                row = run(config, tmp / "corpus", tmp, args.batch_size)
                print(json.dumps(row), flush=True)
                rows.append(row)
        finally:
            if ray_start is not None:
                ray.shutdown()
    print(f"\ndemo model, {files} files ({seconds:.0f} s of audio), batch size {args.batch_size}; machine: "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
          + (f"; ray.init (local, 2 CPUs) {ray_start:.1f} s, not counted" if ray_start is not None else ""))
    print("| run | first row s | total s | files/s | audio-s/s |")
    print("|---|---|---|---|---|")
    names = {"local": "in process, {} torch thread(s)", "ray": "Ray Data, {} worker(s) x 1 thread"}
    for r in rows:
        name = names[r["config"][:-1]].format(r["config"][-1])
        print(f"| {name} | {r['first_row_s']:.1f} | {r['total_s']:.1f} | {r['files_per_s']:.2f} | "
              f"{r['audio_s_per_s']:.2f} |")


if __name__ == "__main__":
    main()
