"""Build the default prompt set (ru, en) from text with espeak-ng, as 8 kHz WAV.

Reproducible: the same espeak-ng version and text give the same files, so the WAVs are
not committed; ``.ci/setup`` runs this script. The text is ``prompts/phrases.toml`` for
phrases and :data:`ivr.speech.WORDS` for numbers, units and keys. espeak-ng writes
22.05 kHz mono; pydub converts it to what the media engine plays without resampling
(8 kHz, mono, 16-bit PCM) and cuts leading and trailing silence so that words strung
into a number do not have gaps.

    python prompts/build.py            # build missing or stale files into prompts/
    python prompts/build.py --force    # rebuild everything
    python prompts/build.py --out DIR  # somewhere else
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from pydub import AudioSegment
from pydub.silence import detect_leading_silence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ivr import speech
from ivr.speech import WORDS

logger = logging.getLogger("prompts.build")

HERE = Path(__file__).resolve().parent
PHRASES = HERE / "phrases.toml"
#: espeak-ng voice and speed (words per minute) per language.
VOICES = {"ru": ("ru", 150), "en": ("en-gb", 150)}
SAMPLE_RATE = 8000
#: Below this level (dBFS) audio counts as silence when trimming.
SILENCE_DBFS = -45.0
#: Silence kept at each end of a trimmed file (ms).
PAD_MS = 40


def texts() -> dict[str, dict[str, str]]:
    """Every prompt name and text, per language."""
    phrases = tomllib.loads(PHRASES.read_text(encoding="utf-8"))
    return {lang: {**phrases[lang], **WORDS[lang]} for lang in VOICES}


def _trim(audio: AudioSegment) -> AudioSegment:
    start = detect_leading_silence(audio, silence_threshold=SILENCE_DBFS)
    end = detect_leading_silence(audio.reverse(), silence_threshold=SILENCE_DBFS)
    body = audio[max(0, start - PAD_MS) : max(start + 1, len(audio) - end + PAD_MS)]
    return body


def synthesise(text: str, language: str, target: Path, espeak: str) -> None:
    voice, speed = VOICES[language]
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "raw.wav"
        subprocess.run(
            [espeak, "-v", voice, "-s", str(speed), "-w", str(raw), text],
            check=True,
            capture_output=True,
            timeout=30,
        )
        audio = AudioSegment.from_wav(raw)
    audio = _trim(audio.set_channels(1)).set_frame_rate(SAMPLE_RATE).set_sample_width(2)
    target.parent.mkdir(parents=True, exist_ok=True)
    audio.export(target, format="wav")


def build(out: Path, *, force: bool = False) -> int:
    """Build the set into ``out``; returns how many files were written."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("espeak-ng is not installed (apt-get install espeak-ng)")
    # A file older than its text's source is stale (the wording changed).
    sources = (PHRASES, Path(speech.__file__), Path(__file__))
    newest = max(path.stat().st_mtime for path in sources)
    written = 0
    for language, names in texts().items():
        for name, text in sorted(names.items()):
            target = out / language / f"{name}.wav"
            if target.is_file() and not force and target.stat().st_mtime >= newest:
                continue
            synthesise(text, language, target, espeak)
            written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder")
    parser.add_argument("--force", action="store_true", help="rebuild existing files")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    written = build(args.out, force=args.force)
    logger.info("prompts: %d files written to %s", written, args.out)


if __name__ == "__main__":
    main()
