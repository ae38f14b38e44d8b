"""What a SIPp caller heard: RTP sent to its media port, captured on loopback.

SIPp plays audio but cannot record what it receives, and the switch sends a trunk's
RTP to the address in its SDP (no latching), which is SIPp's own socket. So the test
listens beside it: a Linux packet socket on ``lo`` (needs root, as SIPp's pcap play
does) sees each datagram to that port; the RTP is decoded (G.711) and laid out by
RTP timestamp, then prompts are found in it by normalised cross-correlation, which
shows that a prompt arrived whole (its full length matches) and is not silence.
Everything is bounded: the capture stops on :meth:`RtpCapture.stop` or after
``max_seconds``, and keeps at most ``max_packets``.
"""

from __future__ import annotations

import ctypes
import socket
import struct
import threading
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from media.g711 import alaw_decode, ulaw_decode, ulaw_encode

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26  # linux/asm-generic/socket.h
PACKET_OUTGOING = 4
ETHERNET_HEADER = 14
SAMPLE_RATE = 8000
FRAME = 160  # samples per 20 ms packet


def udp_port_filter(port: int) -> ctypes.Array[ctypes.c_char]:
    """Classic BPF (``tcpdump -dd 'ip and udp dst port PORT'``) for an Ethernet frame."""
    code = [
        (0x28, 0, 0, 12),  # ldh [12]: EtherType
        (0x15, 0, 8, 0x0800),  # IPv4?
        (0x30, 0, 0, 23),  # ldb [23]: protocol
        (0x15, 0, 6, 17),  # UDP?
        (0x28, 0, 0, 20),  # ldh [20]: fragment offset
        (0x45, 4, 0, 0x1FFF),  # not the first fragment: drop
        (0xB1, 0, 0, 14),  # ldxb 4*([14]&0xf): IP header length
        (0x48, 0, 0, 16),  # ldh [x+16]: destination port
        (0x15, 0, 1, port),
        (0x06, 0, 0, 0x40000),  # accept
        (0x06, 0, 0, 0),  # drop
    ]
    return ctypes.create_string_buffer(
        b"".join(struct.pack("HBBI", *op) for op in code)
    )


@dataclass
class RtpCapture:
    """Captures RTP to ``port`` on 127.0.0.1 in a background thread."""

    port: int
    max_seconds: float = 120.0
    max_packets: int = 20000
    packets: list[tuple[float, bytes]] = field(default_factory=list)
    lost: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RtpCapture:
        self._sock = socket.socket(
            socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)
        )
        # The kernel keeps only our port's packets (other tests load loopback with
        # thousands of packets a second: filtered in Python, the queue would overflow).
        self._program = udp_port_filter(self.port)
        address = ctypes.addressof(self._program)
        program = struct.pack("HL", len(self._program) // 8, address)
        self._sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, program)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self._sock.bind(("lo", 0))
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    data, address = self._sock.recvfrom(65535)
                except TimeoutError:
                    continue
                if address[2] == PACKET_OUTGOING:  # lo shows each packet twice
                    continue
                payload = self._udp_payload(data)
                if payload is not None and len(self.packets) < self.max_packets:
                    self.packets.append((time.monotonic(), payload))
        finally:
            self._sock.close()

    def _udp_payload(self, data: bytes) -> bytes | None:
        ip = data[ETHERNET_HEADER:]
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_UDP:
            return None
        header = (ip[0] & 0x0F) * 4
        _, dport, length, _ = struct.unpack("!HHHH", ip[header : header + 8])
        if dport != self.port:
            return None
        return ip[header + 8 : header + length]

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def audio(self) -> npt.NDArray[np.int16]:
        """The received voice (PCMU/PCMA) as sent: payloads in sequence-number order.

        Laid out by sequence number, not timestamp: a sender that falls behind under
        load moves its timestamps on (RFC 3550 5.1: they follow the clock) while the
        prompt continues where it was, so the content is contiguous in sequence
        space. A lost packet leaves 20 ms of silence (counted in :attr:`lost`).
        """
        first_seq: int | None = None
        pieces: dict[int, npt.NDArray[np.int16]] = {}
        for _, packet in self.packets:
            if len(packet) < 12 or packet[0] >> 6 != 2:
                continue
            payload_type = packet[1] & 0x7F
            if payload_type not in (0, 8):
                continue
            seq = struct.unpack("!H", packet[2:4])[0]
            count = packet[0] & 0x0F
            body = np.frombuffer(packet[12 + 4 * count :], dtype=np.uint8)
            decoded = ulaw_decode(body) if payload_type == 0 else alaw_decode(body)
            if first_seq is None:
                first_seq = seq
            # 16-bit wrap: a call of ours is far shorter than 65536 packets (22 min)
            pieces[(seq - first_seq) % 2**16] = decoded.astype(np.int16)
        if not pieces:
            return np.zeros(0, dtype=np.int16)
        frames = max(pieces) + 1
        self.lost = frames - len(pieces)
        self.gaps = [
            (index, index + 1) for index in range(frames) if index not in pieces
        ]
        out = np.zeros(frames * FRAME, dtype=np.int16)
        for index, samples in pieces.items():
            out[index * FRAME : index * FRAME + len(samples)] = samples[:FRAME]
        return out


def reference(paths: list[Path]) -> npt.NDArray[np.float64]:
    """Prompt files as the caller should hear them: framed, joined, through mu-law."""
    parts = []
    for path in paths:
        with wave.open(str(path), "rb") as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (
                SAMPLE_RATE,
                1,
                2,
            )
            samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        # The player sends 20 ms frames and pads an item's last one with silence.
        padded = np.zeros(-(-len(samples) // FRAME) * FRAME, dtype=np.int16)
        padded[: len(samples)] = samples
        parts.append(ulaw_decode(ulaw_encode(padded)).astype(np.float64))
    return np.concatenate(parts)


@dataclass(frozen=True)
class Match:
    """Where a reference was found: offset (samples), similarity and levels."""

    offset: int
    similarity: float
    seconds: float
    rms_dbfs: float


def find(received: npt.NDArray[np.int16], wanted: npt.NDArray[np.float64]) -> Match:
    """Best normalised cross-correlation of ``wanted`` over its whole length."""
    signal = received.astype(np.float64)
    n, m = len(signal), len(wanted)
    if n < m or m == 0:
        return Match(0, 0.0, m / SAMPLE_RATE, -120.0)
    size = 1 << (n + m).bit_length()
    spectrum = np.fft.rfft(signal, size) * np.conj(np.fft.rfft(wanted, size))
    correlation = np.fft.irfft(spectrum, size)[: n - m + 1]
    energy = np.concatenate(([0.0], np.cumsum(signal**2)))
    window = energy[m:] - energy[:-m]
    norm = np.sqrt(np.maximum(window, 1e-9) * float(np.sum(wanted**2)))
    scores = correlation / norm
    best = int(np.argmax(scores))
    segment = signal[best : best + m]
    rms = float(np.sqrt(np.mean(segment**2))) if m else 0.0
    dbfs = 20 * np.log10(max(rms, 1e-9) / 32768.0)
    return Match(best, float(scores[best]), m / SAMPLE_RATE, dbfs)


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()
