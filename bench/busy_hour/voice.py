"""The audio the bench's callers and operators speak, and the queue's music on hold.

Voice is the English prompts of ``prompts/en`` (espeak-ng recordings of real sentences)
one after another, so that what the switch relays and records is speech, not silence or
a tone.  A little noise (about -60 dBFS) is added so that no 20 ms frame of it equals a
frame the switch plays itself (its prompts are the Russian set, and both have digital
silence between words): the analysis tells relayed packets from played ones by their
first payload octets.  Callers and operators get different seeds, hence different
frames.  The music is a few seconds of chords, written as a WAV for ``[[queues]] music``.
"""

from __future__ import annotations

import math
import wave
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from media.g711 import ulaw_encode

REPO: Final = Path(__file__).resolve().parents[2]
PROMPTS: Final = REPO / "prompts" / "en"
RATE: Final = 8000
FRAME: Final = 160  # samples in 20 ms
VOICE_SECONDS: Final = 30.0
NOISE_AMPLITUDE: Final = 30.0  # of 32767: about -60 dBFS
PREFIX: Final = 8  # payload octets that identify a frame


def _read_wav(path: Path) -> npt.NDArray[np.float64]:
    with wave.open(str(path), "rb") as wav:
        if wav.getframerate() != RATE or wav.getsampwidth() != 2:
            raise ValueError(f"{path}: not 8 kHz 16-bit")
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return data.astype(np.float64)


def speech_samples(seed: int) -> npt.NDArray[np.int16]:
    """About :data:`VOICE_SECONDS` of speech from the English prompts, plus noise."""
    files = sorted(PROMPTS.glob("*.wav"))
    if not files:
        raise FileNotFoundError(f"no prompts in {PROMPTS}: run prompts/build.py")
    rng = np.random.default_rng(seed)
    pieces: list[npt.NDArray[np.float64]] = []
    total = 0
    for index in rng.permutation(len(files)):
        piece = _read_wav(files[index])
        pieces.append(piece)
        total += piece.size
        if total >= VOICE_SECONDS * RATE:
            break
    speech = np.concatenate(pieces)
    speech = speech[: speech.size // FRAME * FRAME]
    speech += NOISE_AMPLITUDE * rng.standard_normal(speech.size)
    return np.clip(speech, -32768, 32767).astype(np.int16)


def ulaw_frames(samples: npt.NDArray[np.int16]) -> list[bytes]:
    """20 ms PCMU payloads of ``samples``."""
    codes = ulaw_encode(samples).tobytes()
    return [codes[i : i + FRAME] for i in range(0, len(codes), FRAME)]


def frame_keys(frames: list[bytes]) -> npt.NDArray[np.uint64]:
    """The first :data:`PREFIX` octets of each frame as one sorted integer each."""
    keys = np.frombuffer(b"".join(f[:PREFIX] for f in frames), dtype=">u8")
    return np.unique(keys.astype(np.uint64))


def write_music(path: Path, seconds: float = 12.0) -> Path:
    """A slow chord progression (music on hold) as an 8 kHz 16-bit WAV."""
    chords = ((220.0, 277.2, 329.6), (196.0, 246.9, 293.7), (174.6, 220.0, 261.6))
    t = np.arange(int(seconds * RATE)) / RATE
    step = seconds / len(chords)
    signal = np.zeros_like(t)
    for number, chord in enumerate(chords):
        inside = (t >= number * step) & (t < (number + 1) * step)
        for note in chord:
            signal[inside] += np.sin(2 * math.pi * note * t[inside])
    signal *= 0.15 * 32767 / len(chords[0])
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(signal.astype("<i2").tobytes())
    return path
