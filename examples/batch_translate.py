"""A folder of recordings -> subtitles in both languages, through the speech server.

    funasr-nano serve                       # the embedded demo model on http://127.0.0.1:8000
    python examples/batch_translate.py recordings/ subtitles/ [--format srt|vtt] [--workers 4]

For every audio file in the folder, ``subtitles/<name>.zh.srt`` (the transcript) and
``subtitles/<name>.en.srt`` (the English translation) are written. Requests go out concurrently, so the
server decodes them in batches. Uses only the official ``openai`` client: point ``--url`` at any
server speaking OpenAI's audio API. A file that fails is reported and the others go on (exit status 1).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import pathlib
import sys

import openai

AUDIO = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".webm", ".mp4", ".aac"}


def subtitles(client: openai.OpenAI, path: pathlib.Path, model: str, fmt: str) -> tuple[str, str]:
    """``(source-language subtitles, English subtitles)`` of one recording."""
    with open(path, "rb") as file:
        source = client.audio.transcriptions.create(file=file, model=model, response_format=fmt)
    with open(path, "rb") as file:
        english = client.audio.translations.create(file=file, model=model, response_format=fmt)
    return source, english


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=pathlib.Path, help="folder of recordings")
    parser.add_argument("output", type=pathlib.Path, help="folder for the subtitles")
    parser.add_argument("--url", default="http://127.0.0.1:8000/v1", help="the server's API base URL")
    parser.add_argument("--model", default=None, help="model id (default: the first one the server lists)")
    parser.add_argument("--format", default="srt", choices=["srt", "vtt"])
    parser.add_argument("--language", default="zh", help="suffix of the source-language subtitles")
    parser.add_argument("--workers", type=int, default=4, help="requests in flight at once")
    args = parser.parse_args()

    client = openai.OpenAI(base_url=args.url, api_key=os.environ.get("OPENAI_API_KEY", "unused"))
    model = args.model or client.models.list().data[0].id
    files = sorted(p for p in args.folder.iterdir() if p.suffix.lower() in AUDIO)
    if not files:
        print(f"error: no audio files in {args.folder}", file=sys.stderr)
        return 1
    args.output.mkdir(parents=True, exist_ok=True)
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
        jobs = {pool.submit(subtitles, client, path, model, args.format): path for path in files}
        for job in concurrent.futures.as_completed(jobs):
            path = jobs[job]
            try:
                source, english = job.result()
            except openai.APIError as error:
                print(f"error: {path.name}: {error}", file=sys.stderr)
                failed += 1
                continue
            for language, text in ((args.language, source), ("en", english)):
                (args.output / f"{path.stem}.{language}.{args.format}").write_text(text, encoding="utf-8")
            print(f"{path.name} -> {path.stem}.{args.language}.{args.format}, {path.stem}.en.{args.format}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
