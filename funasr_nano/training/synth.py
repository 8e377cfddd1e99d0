"""Synthetic speech for training data: text -> 16 kHz mono wav with espeak-ng, and a manifest.

Each sentence gets its own reproducible variation drawn from ``numpy.random.default_rng([seed,
index])``: an espeak-ng voice variant (``cmn+m3``, ``cmn+f2``, ...), a speaking rate and a pitch, so
the result does not depend on the order the parallel workers finish in. Optional white noise is mixed
in with sox (repeatable mode, ``sox -R``). espeak-ng writes 22.05 kHz; the audio is resampled to
16 kHz with soxr (as :func:`funasr_nano.load_audio` does) and written as 16-bit PCM.

Synthesis is resumable: a wav file that already exists is kept (files are written to a temporary name
and renamed, so a finished name means a finished file). The manifest (:mod:`funasr_nano.training.data`, simple
format) gets a ``transcribe`` line per sentence and, when the input has an English translation, a
``translate`` line with the transcript as ``source_text``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import shutil
import subprocess
import tempfile
from typing import Sequence

import numpy as np

from ..audio.io import SAMPLE_RATE
from ..errors import SynthesisError

logger = logging.getLogger(__name__)

INSTALL_HINT = ("install it with `apt-get install espeak-ng` (Debian/Ubuntu), `dnf install espeak-ng` (Fedora) "
                "or `brew install espeak-ng` (macOS)")
# espeak-ng voice variants (files in espeak-ng-data/voices/!v) that sound distinct on Mandarin.
DEFAULT_VARIANTS = ("", "m1", "m2", "m3", "m4", "f1", "f2", "f3", "f4")


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """How sentences are voiced.

    Attributes:
        voice: espeak-ng voice (``cmn`` = Mandarin).
        variants: voice variants drawn from per sentence (``""`` = the plain voice).
        speed: range of speaking rates, words per minute (espeak-ng ``-s``; its default is 175).
        pitch: range of base pitch, 0-99 (espeak-ng ``-p``; default 50).
        noise: white-noise amplitude mixed in by sox (0 = none; 0.01 is faint, 0.05 clearly audible).
        seed: variation seed; the same seed and sentence index give the same audio.
    """

    voice: str = "cmn"
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    speed: tuple[int, int] = (140, 200)
    pitch: tuple[int, int] = (30, 70)
    noise: float = 0.0
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "variants", tuple(self.variants) or ("",))
        if not (80 <= self.speed[0] <= self.speed[1] <= 450):
            raise ValueError(f"speed must be a (low, high) range within 80-450 words per minute, got {self.speed}")
        if not (0 <= self.pitch[0] <= self.pitch[1] <= 99):
            raise ValueError(f"pitch must be a (low, high) range within 0-99, got {self.pitch}")
        if not 0.0 <= self.noise < 1.0:
            raise ValueError(f"noise must be in [0, 1), got {self.noise}")


@dataclasses.dataclass(frozen=True)
class Sentence:
    """A sentence to voice and, optionally, its English translation."""

    text: str
    translation: str | None = None


@dataclasses.dataclass(frozen=True)
class SynthResult:
    """What :func:`synthesize` did: the manifest written, files made and files already present."""

    manifest: str
    made: int
    skipped: int


def read_sentences(path: str, limit: int | None = None, offset: int = 0) -> list[Sentence]:
    """Read sentences: a plain list (one per line) or Tatoeba-style TSV pairs
    (``english<TAB>chinese[<TAB>attribution]``, as ``cmn.txt``). Blank lines are skipped.

    Raises:
        SynthesisError: the file is missing or a TSV line has fewer than two fields.
    """
    if not os.path.isfile(path):
        raise SynthesisError(f"{path}: no such file")
    sentences = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if "\t" in line:
                fields = line.split("\t")
                if len(fields) < 2 or not fields[1].strip():
                    raise SynthesisError(f"{path}:{number}: expected english<TAB>chinese, got {line[:60]!r}")
                sentences.append(Sentence(text=fields[1].strip(), translation=fields[0].strip() or None))
            else:
                sentences.append(Sentence(text=line.strip()))
    sentences = sentences[offset:]
    return sentences[:limit] if limit is not None else sentences


def espeak_path() -> str:
    """The espeak-ng executable.

    Raises:
        SynthesisError: espeak-ng is not installed (the message says how to install it).
    """
    path = shutil.which("espeak-ng")
    if path is None:
        raise SynthesisError(f"espeak-ng is not installed; {INSTALL_HINT}")
    return path


def variation(config: SynthConfig, index: int) -> tuple[str, int, int]:
    """``(voice, words per minute, pitch)`` of sentence ``index``."""
    rng = np.random.default_rng([config.seed, index])
    variant = config.variants[int(rng.integers(len(config.variants)))]
    speed = int(rng.integers(config.speed[0], config.speed[1] + 1))
    pitch = int(rng.integers(config.pitch[0], config.pitch[1] + 1))
    return (f"{config.voice}+{variant}" if variant else config.voice), speed, pitch


def synthesize_one(text: str, path: str, voice: str, speed: int, pitch: int, noise: float = 0.0) -> float:
    """Voice ``text`` into ``path`` (16 kHz mono 16-bit wav); returns its duration in seconds.

    Raises:
        SynthesisError: espeak-ng or sox is missing or fails.
    """
    import soundfile
    import soxr

    espeak = espeak_path()
    with tempfile.TemporaryDirectory(prefix="funasr-nano-synth-") as tmp:
        raw = os.path.join(tmp, "raw.wav")
        # -b 1: the text is UTF-8; the text goes through stdin so it is never taken for an option
        proc = subprocess.run([espeak, "-v", voice, "-s", str(speed), "-p", str(pitch), "-b", "1", "--stdin", "-w", raw],
                              input=text.encode("utf-8"), capture_output=True)
        if proc.returncode != 0 or not os.path.isfile(raw):
            raise SynthesisError(f"espeak-ng failed on {text[:40]!r} with voice {voice}: "
                                 f"{proc.stderr.decode(errors='replace').strip() or 'no output'}")
        if noise > 0:
            sox = shutil.which("sox")
            if sox is None:
                raise SynthesisError("noise needs sox, which is not installed; install it with `apt-get install sox`")
            noisy = os.path.join(tmp, "noisy.wav")
            proc = subprocess.run([sox, "-R", raw, "-p", "synth", "whitenoise", "vol", str(noise)],
                                  capture_output=True)
            if proc.returncode == 0:
                with open(os.path.join(tmp, "noise.sox"), "wb") as f:
                    f.write(proc.stdout)
                proc = subprocess.run([sox, "-R", "-m", raw, os.path.join(tmp, "noise.sox"), noisy],
                                      capture_output=True)
            if proc.returncode != 0:
                raise SynthesisError(f"sox failed adding noise: {proc.stderr.decode(errors='replace').strip()}")
            raw = noisy
        samples, rate = soundfile.read(raw, dtype="float32", always_2d=True)
        mono = samples.mean(axis=1)
        if rate != SAMPLE_RATE:
            mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="VHQ")
        mono = np.clip(mono, -1.0, 1.0)
        if mono.size == 0:
            raise SynthesisError(f"espeak-ng produced no audio for {text[:40]!r}")
        partial = path + ".part"
        soundfile.write(partial, mono, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        os.replace(partial, path)
    return mono.size / SAMPLE_RATE


def synthesize(
    sentences: Sequence[Sentence],
    output_dir: str,
    config: SynthConfig = SynthConfig(),
    *,
    manifest: str | None = None,
    jobs: int | None = None,
    start_index: int = 0,
    language: str = "zh",
) -> SynthResult:
    """Voice ``sentences`` into ``output_dir/wav/NNNNNN.wav`` and write a manifest (default
    ``output_dir/manifest.jsonl``, audio paths relative to it).

    Args:
        jobs: parallel espeak-ng processes (default: all cores).
        start_index: index of the first sentence (file names and variation follow it).

    Raises:
        SynthesisError: espeak-ng missing or failing (checked before any work starts).
    """
    import soundfile
    from tqdm.auto import tqdm

    from ..manifests import write_manifest

    espeak_path()
    wav_dir = os.path.join(output_dir, "wav")
    os.makedirs(wav_dir, exist_ok=True)
    manifest = manifest or os.path.join(output_dir, "manifest.jsonl")
    manifest_dir = os.path.dirname(os.path.abspath(manifest))
    items = [(start_index + i, s, os.path.join(wav_dir, f"{start_index + i:06d}.wav")) for i, s in enumerate(sentences)]
    todo = [item for item in items if not os.path.isfile(item[2])]
    skipped = len(items) - len(todo)
    if skipped:
        logger.info("%d of %d files exist already; synthesizing %d", skipped, len(items), len(todo))

    def work(item):
        index, sentence, path = item
        voice, speed, pitch = variation(config, index)
        return synthesize_one(sentence.text, path, voice, speed, pitch, config.noise)

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        for _ in tqdm(pool.map(work, todo), total=len(todo), desc="synth", unit="utt", disable=not todo):
            pass

    def records():
        for index, sentence, path in items:
            info = soundfile.info(path)
            duration = round(info.frames / info.samplerate, 3)
            audio = os.path.relpath(path, manifest_dir)
            key = f"{index:06d}"
            yield {"key": key, "audio": audio, "target": sentence.text, "task": "transcribe", "language": language,
                   "duration": duration}
            if sentence.translation:
                yield {"key": f"{key}-en", "audio": audio, "target": sentence.translation, "task": "translate",
                       "language": language, "source_text": sentence.text, "duration": duration}

    write_manifest(manifest, records())
    logger.info("wrote %s (%d utterances: %d made, %d kept)", manifest, len(items), len(todo), skipped)
    return SynthResult(manifest=manifest, made=len(todo), skipped=skipped)
