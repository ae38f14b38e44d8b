"""Call recording to a stereo WAV file written as the call goes.

The caller is on the left channel and the operator on the right (what each of them
said, i.e. the audio each endpoint *received*), 8 kHz 16-bit PCM: a format every
quality-monitoring tool opens, and one where the two voices can be told apart.

Theory of operation.  A WAV file whose RIFF and data sizes are only written at the end
is unreadable (or read as empty) if the process dies mid-call.  So the header is written
first with the sizes of the data so far, the frames are appended every tick, and at
least once a second (every ``flush_frames`` ticks) the buffered audio is flushed and the
two size fields are rewritten in place.  A crash then loses at most the last second,
and a reader opening the file during the call (a supervisor's "listen to the recording
so far") sees a valid WAV of everything up to the last flush.  The file is flushed to
the operating system, not ``fsync``-ed: a process crash cannot lose it, a machine crash
can lose what the kernel had not written yet.
"""

from __future__ import annotations

import logging
import os
import struct
from typing import BinaryIO, Final

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

SAMPLE_RATE: Final = 8000
CHANNELS: Final = 2
SAMPLE_WIDTH: Final = 2  # 16-bit PCM
FRAME_SAMPLES: Final = 160  # 20 ms
# Ticks between flushes: 50 x 20 ms = one second.
# TODO: flushes are not fsync-ed (see module docstring): a power cut can lose more
# than a second; an fsync per second per call would cost 1000 syncs/s at scale.
FLUSH_FRAMES: Final = 50
# RIFF/WAVE canonical header (44 bytes): RIFF size at offset 4, data size at 40.
WAVE_FORMAT_PCM: Final = 1
HEADER_SIZE: Final = 44
RIFF_SIZE_OFFSET: Final = 4
DATA_SIZE_OFFSET: Final = 40
_HEADER: Final = struct.Struct("<4sI4s4sIHHIIHH4sI")
_SIZE: Final = struct.Struct("<I")

Samples = npt.NDArray[np.int16]


def _header(data_size: int) -> bytes:
    block_align = CHANNELS * SAMPLE_WIDTH
    return _HEADER.pack(
        b"RIFF",
        HEADER_SIZE - 8 + data_size,
        b"WAVE",
        b"fmt ",
        16,
        WAVE_FORMAT_PCM,
        CHANNELS,
        SAMPLE_RATE,
        SAMPLE_RATE * block_align,
        block_align,
        SAMPLE_WIDTH * 8,
        b"data",
        data_size,
    )


class WavRecorder:
    """A stereo WAV file that is valid at every flush.

    Driven by the engine: :meth:`write` once per media-clock tick with the two
    channels' frames, :meth:`close` at the end.

    :param path: file to create (truncated if it exists).
    :param flush_frames: ticks between flushes and header updates (at most a second).
    """

    def __init__(self, path: str, *, flush_frames: int = FLUSH_FRAMES) -> None:
        self.path = path
        self.flush_frames = flush_frames
        self._file: BinaryIO | None = open(path, "wb")  # noqa: SIM115 (kept open)
        self._file.write(_header(0))
        self._file.flush()
        self.data_size = 0
        self._since_flush = 0

    @property
    def seconds(self) -> float:
        """Audio written so far."""
        return self.data_size / (SAMPLE_RATE * CHANNELS * SAMPLE_WIDTH)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._file is None

    def write(self, left: Samples | None, right: Samples | None) -> None:
        """Append one frame per channel (None is silence; lengths must match)."""
        if self._file is None:
            return
        reference = left if left is not None else right
        samples = FRAME_SAMPLES if reference is None else reference.size
        stereo = np.empty((samples, CHANNELS), dtype="<i2")
        stereo[:, 0] = left if left is not None else 0
        stereo[:, 1] = right if right is not None else 0
        data = stereo.tobytes()
        self._file.write(data)
        self.data_size += len(data)
        self._since_flush += 1
        if self._since_flush >= self.flush_frames:
            self.flush()

    def flush(self) -> None:
        """Push buffered audio to the OS and make the header match it."""
        file = self._file
        if file is None:
            return
        self._since_flush = 0
        file.seek(RIFF_SIZE_OFFSET)
        file.write(_SIZE.pack(HEADER_SIZE - 8 + self.data_size))
        file.seek(DATA_SIZE_OFFSET)
        file.write(_SIZE.pack(self.data_size))
        file.seek(0, os.SEEK_END)
        file.flush()

    def close(self) -> None:
        """Final flush and close; further writes are ignored."""
        if self._file is None:
            return
        try:
            self.flush()
        finally:
            self._file.close()
            self._file = None
        logger.info("recording %s closed: %.1f s", self.path, self.seconds)
