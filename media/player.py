"""Prompts, tones and music on hold: audio converted once, cached as encoded frames.

Prompt files come in whatever the recording studio delivered: WAV of any sample rate,
sample width and channel count, or MP3.  They are converted ONCE to what G.711 carries
(8 kHz mono 16-bit, RFC 3551 4.5.14) and then encoded ONCE per codec into ready-to-send
20 ms payloads, so playing a prompt to 1000 callers costs one cache lookup per packet
and no signal processing at all.

Theory of operation.  :class:`PromptCache` keys decoded audio by the file's resolved
path, size and modification time (a re-recorded prompt is picked up, an unchanged one
is never converted twice) and keeps encoded frames per (source, codec).  WAV files the
standard ``wave`` module can read are converted with numpy; everything else (MP3,
floating-point or compressed WAV) goes through pydub and ffmpeg.  Resampling is done in
the frequency domain (``numpy.fft``): truncating the spectrum to the new Nyquist
frequency is an ideal anti-aliasing filter, so 44.1 kHz music does not fold into the
telephone band.  Tones come from :mod:`media.tones` (ITU-T E.180 cadences).

:class:`Playback` walks a playlist of those frames, optionally looping (music on
hold): item by item for the engine's batched playout (:mod:`media.playout`, which
builds every played stream's packet of a tick in one numpy pass from the
:meth:`PromptCache.frame_array` arrays and emits "playback finished" when
:meth:`Playback.next_item` runs out), or frame by frame (:meth:`Playback.next_frame`).
"""

from __future__ import annotations

import collections
import logging
import os
import warnings
import wave
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from media import tones
from media.commands import Codec, PlayItem, Prompt, Tone, ToneName
from media.g711 import ALAW_SILENCE, ULAW_SILENCE, alaw_encode, ulaw_encode

logger = logging.getLogger(__name__)

# RFC 3551 4.5.14: G.711 is 8 kHz, one octet per sample; 20 ms frames (4.2).
SAMPLE_RATE: Final = 8000
FRAME_SAMPLES: Final = 160
FULL_SCALE: Final = 32767.0
# Entries kept by default (decoded sources; frames are kept per source and codec).
# TODO: the bound is in entries, not bytes: 256 one-hour music files would hold ~7 GB.
DEFAULT_CACHE_ENTRIES: Final = 256
# A tone without a duration and without a cadence (dial tone) plays this long.
CONTINUOUS_TONE_MS: Final = 1000
BEEP_FREQUENCY: Final = 1000.0
BEEP_MS: Final = 250

Samples = npt.NDArray[np.int16]
Frames = tuple[bytes, ...]
# The same frames as one (frames, 160) array of codes, for the batched playout.
FrameArray = npt.NDArray[np.uint8]

SILENCE_CODE: Final = {Codec.PCMU: ULAW_SILENCE, Codec.PCMA: ALAW_SILENCE}


class PromptError(Exception):
    """A prompt file is missing or cannot be decoded."""


def resample(signal: npt.NDArray[np.float64], rate: int) -> npt.NDArray[np.float64]:
    """Resample a mono signal from ``rate`` to 8 kHz through its spectrum.

    Dropping every bin above the new Nyquist frequency is the anti-aliasing filter.
    """
    if rate == SAMPLE_RATE or signal.size == 0:
        return signal
    length = max(round(signal.size * SAMPLE_RATE / rate), 1)
    spectrum = np.fft.rfft(signal)
    bins = length // 2 + 1
    if bins <= spectrum.size:
        spectrum = spectrum[:bins]
    else:
        spectrum = np.concatenate(
            [spectrum, np.zeros(bins - spectrum.size, dtype=spectrum.dtype)]
        )
    return np.fft.irfft(spectrum, n=length) * (length / signal.size)


def _wav_samples(path: str) -> tuple[npt.NDArray[np.float64], int]:
    """Read an integer-PCM WAV as float samples in [-1, 1) with channels averaged."""
    with wave.open(path, "rb") as wav:
        channels = wav.getnchannels()
        width = wav.getsampwidth()
        rate = wav.getframerate()
        raw = wav.readframes(wav.getnframes())
    if width == 1:  # 8-bit WAV is unsigned
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    elif width == 3:
        octets = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = octets[:, 0] | (octets[:, 1] << 8) | (octets[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        data = value.astype(np.float64) / float(1 << 23)
    elif width == 4:
        data = np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)
    else:
        raise PromptError(f"{path}: {width}-byte samples are not supported")
    usable = data.size - data.size % channels
    return data[:usable].reshape(-1, channels).mean(axis=1), rate


def _pydub_samples(path: str) -> tuple[npt.NDArray[np.float64], int]:
    """Decode anything ffmpeg can read (MP3, float WAV...) through pydub."""
    with warnings.catch_warnings():
        # pydub imports audioop, deprecated since 3.11 (PEP 594); we only use ffmpeg
        warnings.simplefilter("ignore", DeprecationWarning)
        from pydub import AudioSegment  # lazily: it probes for ffmpeg on import

    try:
        segment = AudioSegment.from_file(path)
    except Exception as exc:  # pydub raises bare exceptions for ffmpeg failures
        raise PromptError(f"{path}: cannot decode: {exc}") from exc
    segment = segment.set_sample_width(2)
    channels = int(segment.channels)
    data = np.frombuffer(segment.raw_data, dtype="<i2").astype(np.float64) / 32768.0
    usable = data.size - data.size % channels
    return data[:usable].reshape(-1, channels).mean(axis=1), int(segment.frame_rate)


def load_prompt(path: str) -> Samples:
    """Decode an audio file to 8 kHz mono int16 (the one conversion a prompt gets)."""
    if not os.path.isfile(path):
        raise PromptError(f"{path}: no such prompt file")
    try:
        signal, rate = _wav_samples(path)
    except (wave.Error, EOFError):
        signal, rate = _pydub_samples(path)
    signal = resample(signal, rate)
    return np.clip(np.rint(signal * FULL_SCALE), -32768, 32767).astype(np.int16)


def encode_frames(samples: Samples, codec: Codec) -> Frames:
    """Cut int16 audio into 20 ms payloads of ``codec``; the last one is padded."""
    count = -(-samples.size // FRAME_SAMPLES)
    codes = np.full(count * FRAME_SAMPLES, SILENCE_CODE[codec], dtype=np.uint8)
    encoder = ulaw_encode if codec is Codec.PCMU else alaw_encode
    codes[: samples.size] = encoder(samples)
    raw = codes.tobytes()
    return tuple(raw[i : i + FRAME_SAMPLES] for i in range(0, len(raw), FRAME_SAMPLES))


def tone_samples(name: ToneName, duration_ms: int | None, region: str) -> Samples:
    """Generate a call-progress tone: one cadence cycle unless a duration is given."""
    if name is ToneName.BEEP:
        return tones.tone((BEEP_FREQUENCY,), duration_ms or BEEP_MS)
    table = {
        ToneName.RINGBACK: tones.RINGBACK,
        ToneName.BUSY: tones.BUSY,
        ToneName.CONGESTION: tones.CONGESTION,
        ToneName.DIAL: tones.DIAL,
    }[name]
    try:
        spec = table[region]
    except KeyError:
        raise PromptError(f"no {name.value} tone for region {region!r}") from None
    if duration_ms is None:
        duration_ms = sum(spec.cadence) or CONTINUOUS_TONE_MS
    generator = tones.CadenceGenerator.from_spec(spec)
    return generator.generate(duration_ms * SAMPLE_RATE // 1000)


class PromptCache:
    """Decoded prompts and their encoded frames, each computed once.

    :param max_entries: decoded sources kept; the least recently used goes first.
    :param region: the tone plan for generated tones ("eu", "us", "uk").
    """

    def __init__(
        self, *, max_entries: int = DEFAULT_CACHE_ENTRIES, region: str = "eu"
    ) -> None:
        self.max_entries = max_entries
        self.region = region
        self.conversions = 0  # files decoded (the test of "converted once")
        self.encodings = 0  # (source, codec) pairs encoded
        self._samples: collections.OrderedDict[object, Samples] = (
            collections.OrderedDict()
        )
        self._frames: dict[tuple[object, Codec], Frames] = {}
        self._arrays: dict[tuple[object, Codec], FrameArray] = {}

    def _file_key(self, path: str) -> tuple[str, int, int]:
        real = os.path.realpath(path)
        try:
            status = os.stat(real)
        except FileNotFoundError:
            raise PromptError(f"{path}: no such prompt file") from None
        except OSError as exc:
            raise PromptError(f"{path}: {exc.strerror}") from None
        return (real, status.st_size, status.st_mtime_ns)

    def samples(self, item: PlayItem) -> tuple[object, Samples]:
        """The cache key and 8 kHz int16 audio of one playlist item."""
        key: object
        if isinstance(item, Prompt):
            key = self._file_key(item.path)
        elif isinstance(item, Tone):
            key = ("tone", item.name, item.duration_ms, self.region)
        else:
            key = ("silence", item.duration_ms)
        cached = self._samples.get(key)
        if cached is not None:
            self._samples.move_to_end(key)
            return key, cached
        if isinstance(item, Prompt):
            audio = load_prompt(item.path)
            self.conversions += 1
            logger.info("converted prompt %s (%d samples)", item.path, audio.size)
        elif isinstance(item, Tone):
            audio = tone_samples(item.name, item.duration_ms, self.region)
        else:
            audio = np.zeros(item.duration_ms * SAMPLE_RATE // 1000, dtype=np.int16)
        self._samples[key] = audio
        while len(self._samples) > self.max_entries:
            old, _ = self._samples.popitem(last=False)
            for codec in Codec:
                self._frames.pop((old, codec), None)
                self._arrays.pop((old, codec), None)
        return key, audio

    def frames(self, item: PlayItem, codec: Codec) -> Frames:
        """The ready-to-send payloads of ``item`` in ``codec``."""
        key, audio = self.samples(item)
        cached = self._frames.get((key, codec))
        if cached is None:
            cached = encode_frames(audio, codec)
            self._frames[(key, codec)] = cached
            self.encodings += 1
        return cached

    def frame_array(self, item: PlayItem, codec: Codec) -> FrameArray:
        """The payloads of ``item`` in ``codec`` as one read-only (frames, 160) array.

        The batched playout gathers every playing stream's next payload from these
        with one fancy-indexing copy per distinct item and tick.
        """
        key, _ = self.samples(item)
        cached = self._arrays.get((key, codec))
        if cached is None:
            frames = self.frames(item, codec)
            cached = np.frombuffer(b"".join(frames), dtype=np.uint8).reshape(
                len(frames), FRAME_SAMPLES
            )
            self._arrays[(key, codec)] = cached
        return cached


class Playback:
    """One playlist being played to one endpoint, a frame per tick.

    Either walked frame by frame (:meth:`next_frame`) or handed out item by item
    (:meth:`next_item`, what the batched :class:`~media.playout.Playout` uses); one
    playback is walked one way only.

    :param playback_id: the id reported in the PlaybackFinished event.
    :param playlist: encoded frames of each item, in order (tuples of payloads or
        :data:`FrameArray` rows).
    :param loop: start over after the last item (music on hold).
    :param stop_on_dtmf: the engine ends the playback on a key press.
    """

    __slots__ = ("_frames", "_index", "_item", "loop", "playback_id", "stop_on_dtmf")

    def __init__(
        self,
        playback_id: int,
        playlist: Sequence[Sequence[bytes] | FrameArray],
        *,
        loop: bool = False,
        stop_on_dtmf: bool = False,
    ) -> None:
        self.playback_id = playback_id
        # empty items would make a looping playlist spin without producing a frame
        self._frames = tuple(frames for frames in playlist if len(frames))
        self.loop = loop
        self.stop_on_dtmf = stop_on_dtmf
        self._item = 0
        self._index = 0

    @property
    def repeats_one_item(self) -> bool:
        """A looping playlist of one item: that item over and over."""
        return self.loop and len(self._frames) == 1

    def next_item(self) -> Sequence[bytes] | FrameArray | None:
        """The next whole item to play, or None when the playlist is over."""
        frames = self._frames
        if self._item >= len(frames):
            return None
        current = frames[self._item]
        self._item += 1
        if self._item == len(frames) and self.loop:
            self._item = 0
        return current

    def next_frame(self) -> bytes | None:
        """The next payload, or None when the playlist is over."""
        frames = self._frames
        if self._item >= len(frames):
            return None
        current = frames[self._item]
        frame = bytes(current[self._index])
        self._index += 1
        if self._index == len(current):
            self._index = 0
            self._item += 1
            if self._item == len(frames) and self.loop:
                self._item = 0
        return frame
