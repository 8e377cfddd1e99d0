"""Live speech translation through the speech server's realtime WebSocket: a recording is sent at
real-time pace, as a microphone would, and each English sentence is printed as soon as it arrives,
with its latency (seconds from the moment the end of its speech was sent).

    funasr-nano serve                       # the embedded demo model on http://127.0.0.1:8000
    python examples/realtime_translate.py examples/demo_zh.wav [--speed 1] [--silence-ms 500]

Protocol: OpenAI's realtime transcription events (``session.update``, ``input_audio_buffer.append``
with base64 PCM16, ``input_audio_buffer.commit``; back: ``conversation.item.input_audio_transcription
.delta`` / ``.completed``) with the server's ``task: translate`` extension. A pause of ``--silence-ms``
ends a sentence group (an item); ``--task transcribe`` prints the transcript instead.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import threading
import time

import numpy as np
import soundfile
from websockets.sync.client import connect

CHUNK_SECONDS = 0.1


def sentences(text: str) -> list[str]:
    """``text`` cut after . ! ? 。！？ (the server sends whole items)."""
    return [s.strip() for s in re.findall(r"[^.!?。！？]+[.!?。！？]*", text) if s.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("audio", help="a recording (wav, flac, ogg, ...)")
    parser.add_argument("--url", default="ws://127.0.0.1:8000/v1/realtime", help="the realtime endpoint")
    parser.add_argument("--speed", type=float, default=1.0, help="x real time (0: as fast as possible)")
    parser.add_argument("--silence-ms", type=int, default=500, help="a pause this long ends an item")
    parser.add_argument("--task", default="translate", choices=["translate", "transcribe"])
    args = parser.parse_args()

    audio, rate = soundfile.read(args.audio, dtype="float32", always_2d=True)
    pcm = (np.clip(audio.mean(axis=1), -1, 1) * 32767).astype("<i2")
    step = int(rate * CHUNK_SECONDS)
    sent_at: list[float] = []  # wall time at which each chunk was sent

    with connect(args.url) as ws:
        assert json.loads(ws.recv())["type"] == "session.created"
        ws.send(json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": rate},
            "transcription": {"task": args.task},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": args.silence_ms}}}}}))
        update = json.loads(ws.recv())
        if update["type"] == "error":
            print(f"error: {update['error']['message']}", file=sys.stderr)
            return 1

        def send_audio() -> None:  # a microphone: one chunk every CHUNK_SECONDS / speed
            began = time.perf_counter()
            for number, begin in enumerate(range(0, len(pcm), step)):
                if args.speed > 0:
                    time.sleep(max(0.0, began + number * CHUNK_SECONDS / args.speed - time.perf_counter()))
                ws.send(json.dumps({"type": "input_audio_buffer.append",
                                    "audio": base64.b64encode(pcm[begin:begin + step].tobytes()).decode()}))
                sent_at.append(time.perf_counter())
            ws.send(json.dumps({"type": "input_audio_buffer.commit"}))  # the end: what is left is final
            ws.send(json.dumps({"type": "input_audio_buffer.clear"}))  # answered after the commit's results
            sent_at.append(time.perf_counter())

        sender = threading.Thread(target=send_audio, daemon=True)
        sender.start()
        for message in ws:
            event = json.loads(message)
            if event["type"] == "conversation.item.input_audio_transcription.completed":
                end = event.get("end", len(pcm) / rate)
                chunk = min(int(end / CHUNK_SECONDS), len(sent_at) - 1)
                latency = time.perf_counter() - sent_at[chunk]
                for sentence in sentences(event["transcript"]):
                    print(f"[{latency:5.2f} s] {sentence}", flush=True)
            elif event["type"] == "error":
                print(f"error: {event['error']['message']}", file=sys.stderr)
            elif event["type"] == "input_audio_buffer.cleared":
                break
        sender.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
