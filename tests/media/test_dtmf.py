"""DTMF: RFC 4733 events in RTP and the in-band Goertzel detector (ITU-T Q.23/Q.24)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.dtmf import (
    DIGIT_TO_EVENT,
    DetectorSettings,
    DtmfDigit,
    DtmfError,
    DtmfReceiver,
    DtmfSender,
    GoertzelBank,
    GoertzelDetector,
    TelephoneEvent,
    decode_event,
    digit_frequencies,
    encode_event,
)
from media.rtp import RtpPacket
from media.tones import SineGenerator, dtmf_tone

DIGITS = "0123456789*#ABCD"
FS = 8000


# -- RFC 4733 payloads -------------------------------------------------------------


def test_encode_decode_event() -> None:
    payload = encode_event(11, end=True, volume=10, duration=800)
    assert payload == bytes([11, 0x80 | 10, 0x03, 0x20])
    assert decode_event(payload) == TelephoneEvent(
        event=11, end=True, volume=10, duration=800
    )
    assert decode_event(memoryview(payload + b"extra")).event == 11


def test_decode_short_payload() -> None:
    with pytest.raises(DtmfError) as info:
        decode_event(b"\x01\x02\x03")
    assert info.value.reason == "short"


@pytest.mark.parametrize(
    ("event", "volume", "duration"),
    [(256, 0, 0), (-1, 0, 0), (1, 64, 0), (1, 0, 65536)],
)
def test_encode_refuses_bad_fields(event: int, volume: int, duration: int) -> None:
    with pytest.raises(ValueError):
        encode_event(event, end=False, volume=volume, duration=duration)


def test_digit_table() -> None:
    assert [DIGIT_TO_EVENT[d] for d in DIGITS] == list(range(16))
    assert digit_frequencies("5") == (770.0, 1336.0)
    assert digit_frequencies("d") == (941.0, 1633.0)
    with pytest.raises(KeyError):
        digit_frequencies("E")


@given(st.binary(max_size=12))
def test_fuzz_decode_event(data: bytes) -> None:
    try:
        event = decode_event(data)
    except DtmfError as exc:
        assert exc.reason == "short" and len(data) < 4
    else:
        assert (
            encode_event(
                event.event, end=event.end, volume=event.volume, duration=event.duration
            )
            == bytes([data[0], data[1] & 0xBF]) + data[2:4]
        )


# -- sender ------------------------------------------------------------------------


def test_sender_packet_train() -> None:
    sender = DtmfSender(101, 0x1234)
    packets = sender.packets("5", sequence=65534, timestamp=8000, duration_ms=100)
    events = [decode_event(p.payload) for p in packets]
    assert [p.payload_type for p in packets] == [101] * 7
    assert all(p.ssrc == 0x1234 and p.timestamp == 8000 for p in packets)
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {e.event for e in events} == {5}
    assert {e.volume for e in events} == {10}
    # sequence numbers wrap; the three final packets are one packet repeated
    assert [p.sequence for p in packets] == [65534, 65535, 0, 1, 2, 2, 2]


def test_sender_short_press_is_one_packet_three_times() -> None:
    packets = DtmfSender(96, 1).packets("#", sequence=0, timestamp=0, duration_ms=10)
    assert len(packets) == 3
    assert all(p.marker for p in packets)
    assert decode_event(packets[0].payload) == TelephoneEvent(
        event=11, end=True, volume=10, duration=80
    )


def test_sender_refuses_bad_input() -> None:
    sender = DtmfSender(101, 1)
    with pytest.raises(ValueError):
        sender.packets("x", sequence=0, timestamp=0)
    with pytest.raises(ValueError):
        sender.packets("1", sequence=0, timestamp=0, duration_ms=0)
    with pytest.raises(ValueError):
        sender.packets("1", sequence=0, timestamp=0, duration_ms=9000)
    with pytest.raises(ValueError):
        DtmfSender(101, 1, packet_interval=0)


# -- receiver ----------------------------------------------------------------------


def _press(
    digit: str, timestamp: int, *, sequence: int = 0, pt: int = 101, ssrc: int = 7
) -> list[RtpPacket]:
    return DtmfSender(pt, ssrc).packets(digit, sequence=sequence, timestamp=timestamp)


def _receive(receiver: DtmfReceiver, packets: list[RtpPacket]) -> str:
    digits = [receiver.feed_packet(p) for p in packets]
    return "".join(d.digit for d in digits if d is not None)


def test_receiver_one_digit_per_event() -> None:
    receiver = DtmfReceiver()
    packets = _press("7", 1000)
    first = receiver.feed_packet(packets[0])
    assert first == DtmfDigit(digit="7", event=7, timestamp=1000, volume=10)
    assert _receive(receiver, packets[1:]) == ""


def test_receiver_all_digits_on_any_payload_type() -> None:
    receiver = DtmfReceiver()
    packets: list[RtpPacket] = []
    for i, digit in enumerate(DIGITS):
        packets += _press(digit, 1000 + 2000 * i, pt=96 + i)
    assert _receive(receiver, packets) == DIGITS


def test_receiver_only_end_packets() -> None:
    receiver = DtmfReceiver()
    ends = [p for p in _press("9", 5000) if decode_event(p.payload).end]
    assert len(ends) == 3
    assert _receive(receiver, ends) == "9"


def test_receiver_same_digit_twice() -> None:
    receiver = DtmfReceiver()
    packets = _press("1", 1000) + _press("1", 3000, sequence=10)
    assert _receive(receiver, packets) == "11"


def test_receiver_same_digit_twice_with_lost_end_packets() -> None:
    receiver = DtmfReceiver()
    first = [p for p in _press("1", 1000) if not decode_event(p.payload).end]
    second = _press("1", 3000, sequence=10)[1:]  # its marker packet lost too
    assert _receive(receiver, first + second) == "11"


def test_receiver_late_packet_of_an_older_event() -> None:
    receiver = DtmfReceiver()
    one, two = _press("1", 1000), _press("2", 3000, sequence=10)
    assert _receive(receiver, one[:-1] + two + one[-1:]) == "12"


def test_receiver_keys_events_by_ssrc_too() -> None:
    receiver = DtmfReceiver()
    assert (
        _receive(receiver, _press("4", 1000, ssrc=1) + _press("4", 1000, ssrc=2))
        == "44"
    )


def test_receiver_long_event_segments_are_one_digit() -> None:
    # RFC 4733 2.5.1.3: past 65535 units a new segment starts, no marker, new timestamp
    receiver = DtmfReceiver()
    assert receiver.feed(
        1000, encode_event(0, end=False, volume=10, duration=160), marker=True
    )
    for duration in range(320, 65536, 8000):
        receiver.feed(1000, encode_event(0, end=False, volume=10, duration=duration))
    receiver.feed(1000, encode_event(0, end=False, volume=10, duration=65535))
    segment = 1000 + 65535
    assert (
        receiver.feed(segment, encode_event(0, end=False, volume=10, duration=160))
        is None
    )
    assert (
        receiver.feed(segment, encode_event(0, end=True, volume=10, duration=800))
        is None
    )
    # a genuinely new press still counts
    new = receiver.feed(
        segment + 5000, encode_event(0, end=False, volume=10, duration=160)
    )
    assert new is not None and new.digit == "0"


def test_receiver_flash_malformed_and_other_events() -> None:
    receiver = DtmfReceiver()
    flash = receiver.feed(10, encode_event(16, end=False, volume=0, duration=160))
    assert flash is not None and flash.digit == "!"
    assert receiver.feed(20, b"\x01") is None
    assert receiver.malformed == 1
    assert (
        receiver.feed(30, encode_event(66, end=False, volume=0, duration=160)) is None
    )
    assert receiver.ignored == 1


@settings(max_examples=200)
@given(
    digits=st.text(alphabet=DIGITS, min_size=1, max_size=6),
    data=st.data(),
)
def test_sender_to_receiver_with_loss_and_repeats(
    digits: str, data: st.DataObject
) -> None:
    receiver = DtmfReceiver()
    received: list[RtpPacket] = []
    sequence, timestamp = 0, 0
    for digit in digits:
        packets = DtmfSender(101, 9).packets(
            digit, sequence=sequence, timestamp=timestamp, duration_ms=120
        )
        sequence += len(packets)
        timestamp += 2400
        # any non-empty subset survives, some packets repeated, in order
        chosen = data.draw(
            st.lists(st.integers(0, len(packets) - 1), min_size=1, max_size=12)
        )
        kept = [packets[i] for i in sorted(chosen)]
        received += kept
    assert _receive(receiver, received) == digits


@given(
    st.lists(
        st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=6), st.booleans()),
        max_size=30,
    )
)
def test_fuzz_receiver_never_raises(packets: list[tuple[int, bytes, bool]]) -> None:
    receiver = DtmfReceiver()
    for timestamp, payload, marker in packets:
        digit = receiver.feed(timestamp, payload, marker=marker)
        assert digit is None or digit.digit in DIGITS + "!"


# -- in-band detector --------------------------------------------------------------


def _detect(samples: npt.NDArray[np.int16], frame: int = 160) -> str:
    detector = GoertzelDetector()
    found: list[str] = []
    for start in range(0, samples.size, frame):
        found += detector.feed(samples[start : start + frame])
    return "".join(found)


def _keyed_recording(
    seed: int,
    *,
    on_ms: int = 50,
    gap_ms: int = 50,
    snr_db: float = 15.0,
    twists: tuple[float, ...] = (-4.0, 0.0, 8.0),
    level_dbfs: float = -12.0,
) -> npt.NDArray[np.int16]:
    """All 16 digits with twist, random timing and white noise at ``snr_db``."""
    rng = np.random.default_rng(seed)
    parts = [np.zeros(int(rng.integers(0, 400)))]
    tones = []
    for digit in DIGITS:
        twist = float(rng.choice(twists))
        tone = dtmf_tone(
            digit, on_ms + int(rng.integers(0, 40)), level_dbfs, twist_db=twist
        )
        tones.append(tone.astype(np.float64))
        parts += [tones[-1], np.zeros(8 * (gap_ms + int(rng.integers(0, 60))))]
    signal = np.concatenate(parts)
    tone_power = float(np.mean(np.concatenate(tones) ** 2))
    noise = rng.normal(0.0, np.sqrt(tone_power / 10 ** (snr_db / 10)), signal.size)
    return np.clip(np.rint(signal + noise), -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("seed", range(6))
def test_goertzel_all_digits_once_in_noise_with_twist(seed: int) -> None:
    assert _detect(_keyed_recording(seed)) == DIGITS


@pytest.mark.parametrize(
    ("on_ms", "gap_ms", "snr_db", "twists", "level_dbfs"),
    [
        (50, 50, 20.0, (8.0,), -12.0),  # Q.24 forward twist limit
        (50, 50, 20.0, (-4.0,), -12.0),  # reverse twist limit
        (40, 40, 20.0, (0.0,), -12.0),  # shortest tone and pause
        (50, 50, 15.0, (0.0,), -28.0),  # quiet
    ],
)
def test_goertzel_edges(
    on_ms: int, gap_ms: int, snr_db: float, twists: tuple[float, ...], level_dbfs: float
) -> None:
    recording = _keyed_recording(
        99,
        on_ms=on_ms,
        gap_ms=gap_ms,
        snr_db=snr_db,
        twists=twists,
        level_dbfs=level_dbfs,
    )
    assert _detect(recording) == DIGITS


def test_goertzel_any_frame_size() -> None:
    recording = _keyed_recording(3)
    assert _detect(recording, frame=37) == DIGITS
    assert _detect(recording, frame=480) == DIGITS


def test_goertzel_rejects_too_short_too_quiet_and_too_twisted() -> None:
    for bad in [
        dtmf_tone("5", 20, -12.0),  # shorter than Q.24's 40 ms minimum
        dtmf_tone("5", 100, -45.0),  # below the level threshold
        dtmf_tone("5", 100, -20.0, twist_db=14.0),  # column far louder
        dtmf_tone("5", 100, -6.0, twist_db=-10.0),  # row far louder
    ]:
        assert _detect(np.concatenate([bad, np.zeros(800, np.int16)])) == ""


@pytest.mark.parametrize(("deviation", "expected"), [(0.015, True), (0.035, False)])
def test_goertzel_frequency_deviation(deviation: float, expected: bool) -> None:
    # ITU-T Q.24: accept tones off by 1.5 %, reject tones off by 3.5 %
    for digit in DIGITS:
        row, column = digit_frequencies(digit)
        for sign in (1, -1):
            generator = SineGenerator(
                [row * (1 + sign * deviation), column * (1 + sign * deviation)], -12.0
            )
            found = _detect(generator.generate(800))
            assert found == (digit if expected else ""), (digit, sign)


def test_goertzel_long_tone_with_dropout_is_one_digit() -> None:
    tone = dtmf_tone("8", 400, -12.0)
    tone[1600:1680] = 0  # a 10 ms drop-out in the middle
    assert _detect(tone) == "8"


def test_goertzel_reset() -> None:
    detector = GoertzelDetector()
    tone = dtmf_tone("3", 100, -12.0)
    assert detector.feed(tone) == ["3"]
    detector.reset()
    assert detector.feed(tone) == ["3"]


def _speech_like(rng: np.random.Generator, seconds: float) -> npt.NDArray[np.float64]:
    """Syllables of pulse trains with a wandering pitch, shaped by formant peaks."""
    pieces: list[npt.NDArray[np.float64]] = []
    while sum(p.size for p in pieces) < seconds * FS:
        n = int(FS * rng.uniform(0.08, 0.3))
        t = np.arange(n)
        if rng.random() < 0.25:
            source = rng.normal(size=n)  # unvoiced
        else:
            pitch = rng.uniform(85, 260) * (
                1 + 0.1 * np.sin(2 * np.pi * rng.uniform(1, 5) * t / FS)
            )
            phase = np.cumsum(pitch / FS)
            source = (np.diff(np.floor(phase), prepend=0.0) > 0).astype(np.float64)
        spectrum = np.fft.rfft(source)
        frequencies = np.fft.rfftfreq(n, 1 / FS)
        envelope = np.zeros_like(frequencies)
        for centre, width, gain in [
            (rng.uniform(300, 850), 90.0, 1.0),
            (rng.uniform(850, 2400), 130.0, 0.6),
            (rng.uniform(2400, 3500), 200.0, 0.3),
        ]:
            envelope += gain / (1 + ((frequencies - centre) / width) ** 2)
        syllable = np.fft.irfft(spectrum * envelope, n) * np.sin(np.pi * t / n)
        syllable *= rng.uniform(2000, 20000) / (np.max(np.abs(syllable)) + 1e-9)
        pieces += [syllable, np.zeros(int(FS * rng.uniform(0, 0.12)))]
    return np.concatenate(pieces)


def _music_like(rng: np.random.Generator, seconds: float) -> npt.NDArray[np.float64]:
    """Notes and chords of the equal-tempered scale with instrument-like overtones."""
    pieces: list[npt.NDArray[np.float64]] = []
    while sum(p.size for p in pieces) < seconds * FS:
        n = int(FS * rng.choice([0.125, 0.25, 0.5]))
        t = np.arange(n) / FS
        note = np.zeros(n)
        for _ in range(int(rng.integers(1, 4))):
            frequency = 440.0 * 2 ** ((int(rng.integers(55, 90)) - 69) / 12)
            for harmonic in range(1, 6):
                if harmonic * frequency < 3900:
                    note += np.sin(
                        2 * np.pi * harmonic * frequency * t + rng.uniform(0, 6)
                    ) / (harmonic ** rng.uniform(0.8, 1.5))
        pieces.append(note * np.exp(-t * rng.uniform(0.5, 4)) * rng.uniform(2000, 8000))
    return np.concatenate(pieces)


@pytest.mark.parametrize("seed", range(3))
def test_goertzel_no_talk_off_on_speech_music_or_noise(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for signal in (
        _speech_like(rng, 20.0),
        _music_like(rng, 20.0),
        rng.normal(0, 3000, FS * 10),
    ):
        samples = np.clip(np.rint(signal), -32768, 32767).astype(np.int16)
        assert _detect(samples) == ""


def test_goertzel_digits_over_speech_pauses() -> None:
    rng = np.random.default_rng(11)
    speech = _speech_like(rng, 3.0)
    keyed = _keyed_recording(5).astype(np.float64)
    samples = np.concatenate([speech, keyed, speech])
    assert _detect(np.clip(samples, -32768, 32767).astype(np.int16)) == DIGITS


def test_bank_matches_single_detectors() -> None:
    recordings = [_keyed_recording(seed) for seed in range(4)]
    length = max(r.size for r in recordings) // 160 * 160 + 1600
    frames = np.zeros((5, length), dtype=np.int16)  # row 4 stays silent
    for row, recording in enumerate(recordings):
        frames[row, : recording.size] = recording
    bank = GoertzelBank(5)
    found: dict[int, str] = {row: "" for row in range(5)}
    for start in range(0, length, 160):
        for row, digit in bank.feed(frames[:, start : start + 160]):
            found[row] += digit
    assert found == {0: DIGITS, 1: DIGITS, 2: DIGITS, 3: DIGITS, 4: ""}
    bank.reset(0)
    with pytest.raises(ValueError):
        bank.feed(np.zeros((4, 160)))
    with pytest.raises(ValueError):
        bank.feed(np.zeros((5, 100)))


def test_custom_settings() -> None:
    strict = GoertzelDetector(DetectorSettings(max_forward_twist_db=2.0))
    assert strict.feed(dtmf_tone("1", 100, -12.0, twist_db=5.0)) == []
    assert GoertzelDetector().feed(dtmf_tone("1", 100, -12.0, twist_db=5.0)) == ["1"]
