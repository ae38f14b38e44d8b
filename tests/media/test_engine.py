"""Tests for media.engine: the command API, picklable vocabulary, ports, events.

Loops are bounded; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pickle
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from media import commands
from media.commands import (
    BadCommand,
    CloseEndpoint,
    Codec,
    Connect,
    CreateEndpoint,
    CreateMixer,
    DestroyMixer,
    Disconnect,
    Done,
    EndpointCreated,
    EndpointStats,
    EndpointTimeout,
    GetStats,
    MediaError,
    MediaEvent,
    MixerAdd,
    MixerCreated,
    MixerRemove,
    MixRole,
    Play,
    PlaybackEnd,
    PlaybackFinished,
    PortsUnavailable,
    Record,
    RecordingStopped,
    SetCodec,
    SetLatching,
    SetRemote,
    Silence,
    StopPlay,
    StopRecord,
    Tone,
    ToneName,
    UnknownEndpoint,
)
from media.engine import EngineConfig, MediaEngine
from media.rtp import RtpPacket

PORT_MIN = 47100


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


class Recorder:
    def __init__(self) -> None:
        self.events: list[MediaEvent] = []

    def __call__(self, event: MediaEvent) -> None:
        self.events.append(event)

    def of(self, kind: type[MediaEvent]) -> list[MediaEvent]:
        return [event for event in self.events if isinstance(event, kind)]


@pytest.fixture
async def events() -> Recorder:
    return Recorder()


@pytest.fixture
async def engine(events: Recorder) -> AsyncIterator[MediaEngine]:
    engine = MediaEngine(
        EngineConfig(port_min=PORT_MIN, port_max=PORT_MIN + 7), on_event=events
    )
    yield engine
    engine.close()


def create(engine: MediaEngine, *, latching: bool = True) -> EndpointCreated:
    result = engine.execute(CreateEndpoint(latching=latching))
    assert isinstance(result, EndpointCreated)
    return result


# ------------------------------------------------------------------ vocabulary


def _examples() -> list[object]:
    return [
        CreateEndpoint(latching=False),
        SetRemote(endpoint_id=1, host="192.0.2.1", port=4000, rtcp_port=4005),
        SetCodec(
            endpoint_id=1, codec=Codec.PCMA, payload_type=8, telephone_event_pt=96
        ),
        SetLatching(endpoint_id=1, enabled=False),
        Connect(endpoint_a=1, endpoint_b=2),
        Disconnect(endpoint_id=1),
        Play(
            endpoint_id=1,
            items=(
                commands.Prompt(path="/p.wav"),
                Tone(name=ToneName.RINGBACK, duration_ms=None),
                Silence(duration_ms=200),
            ),
            loop=True,
            stop_on_dtmf=True,
        ),
        StopPlay(endpoint_id=1),
        Record(path="/r.wav", left=1, right=None),
        StopRecord(recording_id=3),
        CreateMixer(),
        MixerAdd(mixer_id=4, endpoint_id=1, role=MixRole.WHISPER, whisper_to=2),
        MixerRemove(mixer_id=4, endpoint_id=1),
        DestroyMixer(mixer_id=4),
        CloseEndpoint(endpoint_id=1),
        GetStats(endpoint_id=1),
        Done(),
        EndpointCreated(endpoint_id=1, host="127.0.0.1", rtp_port=4000, rtcp_port=4001),
        commands.PlaybackStarted(endpoint_id=1, playback_id=2),
        commands.RecordingStarted(recording_id=3, path="/r.wav"),
        MixerCreated(mixer_id=4),
        commands.DtmfReceived(endpoint_id=1, digit="#", timestamp=99),
        PlaybackFinished(endpoint_id=1, playback_id=2, reason=PlaybackEnd.DTMF),
        EndpointTimeout(endpoint_id=1, idle_seconds=60.0),
        commands.RemoteLatched(endpoint_id=1, host="10.0.0.1", port=5004),
        RecordingStopped(recording_id=3, path="/r.wav", seconds=12.5),
    ]


@pytest.mark.parametrize("value", _examples(), ids=lambda value: type(value).__name__)
def test_vocabulary_is_frozen_and_picklable(value: object) -> None:
    assert pickle.loads(pickle.dumps(value)) == value
    fields = dataclasses.fields(value)  # type: ignore[arg-type]
    if fields:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, fields[0].name, None)


def test_errors_pickle() -> None:
    error = pickle.loads(pickle.dumps(PortsUnavailable("all 4 pairs in use")))
    assert isinstance(error, MediaError)
    assert str(error) == "all 4 pairs in use"


async def test_stats_pickle(engine: MediaEngine) -> None:
    a = create(engine)
    stats = engine.execute(GetStats(endpoint_id=a.endpoint_id))
    assert isinstance(stats, EndpointStats)
    assert pickle.loads(pickle.dumps(stats)) == stats


# ------------------------------------------------------------------ endpoints and ports


async def test_create_gives_even_rtp_and_odd_rtcp(engine: MediaEngine) -> None:
    a = create(engine)
    assert a.rtp_port % 2 == 0
    assert a.rtcp_port == a.rtp_port + 1
    assert a.host == "127.0.0.1"
    assert PORT_MIN <= a.rtp_port < PORT_MIN + 8


async def test_exhaustion_and_release_on_close(engine: MediaEngine) -> None:
    created = [create(engine) for _ in range(4)]  # the range holds 4 pairs
    assert len({c.rtp_port for c in created}) == 4
    with pytest.raises(PortsUnavailable, match="in use"):
        engine.execute(CreateEndpoint())
    engine.execute(CloseEndpoint(endpoint_id=created[1].endpoint_id))
    again = create(engine)
    assert again.rtp_port == created[1].rtp_port  # the only free pair
    # the closed endpoint's sockets are really gone: the port can be bound again
    engine.execute(CloseEndpoint(endpoint_id=again.endpoint_id))
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind(("127.0.0.1", again.rtp_port))
    finally:
        probe.close()
    assert engine.endpoint_count == 3


async def test_unknown_ids_are_reported(engine: MediaEngine) -> None:
    for command in (
        SetRemote(endpoint_id=99, host="127.0.0.1", port=4000),
        SetCodec(endpoint_id=99),
        SetLatching(endpoint_id=99, enabled=True),
        Connect(endpoint_a=99, endpoint_b=98),
        Disconnect(endpoint_id=99),
        Play(endpoint_id=99, items=(Silence(duration_ms=20),)),
        StopPlay(endpoint_id=99),
        StopRecord(recording_id=99),
        MixerAdd(mixer_id=99, endpoint_id=1),
        MixerRemove(mixer_id=99, endpoint_id=1),
        DestroyMixer(mixer_id=99),
        CloseEndpoint(endpoint_id=99),
        GetStats(endpoint_id=99),
    ):
        with pytest.raises(UnknownEndpoint):
            engine.execute(command)


async def test_bad_commands(engine: MediaEngine, tmp_path: Path) -> None:
    a = create(engine)
    with pytest.raises(BadCommand, match="itself"):
        engine.execute(Connect(endpoint_a=a.endpoint_id, endpoint_b=a.endpoint_id))
    with pytest.raises(BadCommand, match="used twice"):
        engine.execute(
            SetCodec(
                endpoint_id=a.endpoint_id, payload_type=101, telephone_event_pt=101
            )
        )
    with pytest.raises(BadCommand, match="7 bits"):
        engine.execute(SetCodec(endpoint_id=a.endpoint_id, payload_type=128))
    with pytest.raises(BadCommand, match="cannot record"):
        engine.execute(
            Record(path=str(tmp_path / "no" / "dir.wav"), left=None, right=None)
        )
    with pytest.raises(BadCommand, match="unknown command"):
        engine.execute(object())  # type: ignore[arg-type]


async def test_disconnect_and_reconnect(engine: MediaEngine) -> None:
    a, b, c = create(engine), create(engine), create(engine)
    engine.execute(Connect(endpoint_a=a.endpoint_id, endpoint_b=b.endpoint_id))
    engine.execute(
        Connect(endpoint_a=a.endpoint_id, endpoint_b=c.endpoint_id)
    )  # b dropped
    assert engine.endpoint(b.endpoint_id).feeder is None
    assert engine.endpoint(a.endpoint_id).forwarding is not None
    engine.execute(Disconnect(endpoint_id=c.endpoint_id))
    engine.execute(Disconnect(endpoint_id=c.endpoint_id))  # no-op
    assert engine.endpoint(a.endpoint_id).forwarding is None


# ------------------------------------------------------------------ events


async def test_media_timeout_event(events: Recorder) -> None:
    engine = MediaEngine(
        EngineConfig(port_min=PORT_MIN + 10, port_max=PORT_MIN + 17, rtp_timeout=0.3),
        on_event=events,
    )
    try:
        a = create(engine)
        engine.execute(SetRemote(endpoint_id=a.endpoint_id, host="127.0.0.1", port=9))
        await eventually(lambda: bool(events.of(EndpointTimeout)))
        timeout = events.of(EndpointTimeout)[0]
        assert isinstance(timeout, EndpointTimeout)
        assert timeout.endpoint_id == a.endpoint_id
        assert timeout.idle_seconds >= 0.3
        assert len(events.of(EndpointTimeout)) == 1  # reported once
    finally:
        engine.close()


async def test_traffic_keeps_the_endpoint_alive(events: Recorder) -> None:
    engine = MediaEngine(
        EngineConfig(port_min=PORT_MIN + 20, port_max=PORT_MIN + 27, rtp_timeout=0.5),
        on_event=events,
    )
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind(("127.0.0.1", 0))
    try:
        a = create(engine)
        engine.execute(
            SetRemote(
                endpoint_id=a.endpoint_id, host="127.0.0.1", port=phone.getsockname()[1]
            )
        )
        for seq in range(60):  # 1.2 s of audio
            packet = RtpPacket(
                payload_type=0, sequence=seq, timestamp=seq * 160, ssrc=5
            )
            phone.sendto(packet.to_bytes(), ("127.0.0.1", a.rtp_port))
            await asyncio.sleep(0.02)
        assert events.of(EndpointTimeout) == []
    finally:
        phone.close()
        engine.close()


async def test_close_ends_playbacks_and_recordings(
    engine: MediaEngine, events: Recorder, tmp_path: Path
) -> None:
    a = create(engine)
    engine.execute(Play(endpoint_id=a.endpoint_id, items=(Tone(name=ToneName.DIAL),)))
    engine.execute(Record(path=str(tmp_path / "r.wav"), left=a.endpoint_id, right=None))
    engine.close()
    finished = events.of(PlaybackFinished)
    assert len(finished) == 1
    assert isinstance(finished[0], PlaybackFinished)
    assert finished[0].reason is PlaybackEnd.CLOSED
    assert len(events.of(RecordingStopped)) == 1
    with pytest.raises(MediaError, match="closed"):
        engine.execute(CreateEndpoint())


async def test_a_failing_callback_does_not_break_the_engine() -> None:
    def explode(event: MediaEvent) -> None:
        raise RuntimeError("owner bug")

    engine = MediaEngine(
        EngineConfig(port_min=PORT_MIN + 30, port_max=PORT_MIN + 37), on_event=explode
    )
    try:
        a = create(engine)
        engine.execute(
            Play(endpoint_id=a.endpoint_id, items=(Silence(duration_ms=20),))
        )
        engine.execute(
            StopPlay(endpoint_id=a.endpoint_id)
        )  # emits into the bad callback
        assert isinstance(
            engine.execute(GetStats(endpoint_id=a.endpoint_id)), EndpointStats
        )
    finally:
        engine.close()


async def test_callback_may_call_execute(events: Recorder) -> None:
    engine: MediaEngine

    def chain(event: MediaEvent) -> None:
        events(event)
        if (
            isinstance(event, PlaybackFinished)
            and len(events.of(PlaybackFinished)) == 1
        ):
            engine.execute(
                Play(endpoint_id=event.endpoint_id, items=(Silence(duration_ms=20),))
            )

    engine = MediaEngine(
        EngineConfig(port_min=PORT_MIN + 40, port_max=PORT_MIN + 47), on_event=chain
    )
    try:
        a = create(engine)
        engine.execute(
            Play(endpoint_id=a.endpoint_id, items=(Silence(duration_ms=20),))
        )
        await eventually(lambda: len(events.of(PlaybackFinished)) == 2)
    finally:
        engine.close()


# ------------------------------------------------------------------ in-band DTMF


async def test_inband_dtmf_heard_once_per_key_and_stops_the_prompt(
    engine: MediaEngine, events: Recorder
) -> None:
    """A peer without telephone-event sends keys as tones in its PCMU audio."""
    import numpy as np

    from media.commands import DetectInband, DtmfReceived
    from media.g711 import ulaw_encode
    from media.tones import dtmf_tone

    endpoint = create(engine, latching=False)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    try:
        host, port = peer.getsockname()
        engine.execute(
            SetRemote(endpoint_id=endpoint.endpoint_id, host=host, port=port)
        )
        engine.execute(
            SetCodec(endpoint_id=endpoint.endpoint_id, telephone_event_pt=None)
        )
        engine.execute(DetectInband(endpoint_id=endpoint.endpoint_id))
        started = engine.execute(
            Play(
                endpoint_id=endpoint.endpoint_id,
                items=(Silence(duration_ms=10_000),),
                stop_on_dtmf=True,
            )
        )
        assert isinstance(started, commands.PlaybackStarted)
        # "1", a pause, "#", a pause, "1" again: three keys, each 100 ms of tone
        silence = np.zeros(800, dtype=np.int16)
        audio = np.concatenate(
            [
                silence,
                dtmf_tone("1", 100),
                silence,
                dtmf_tone("#", 100),
                silence,
                dtmf_tone("1", 100),
                silence,
            ]
        ).astype(np.int16)
        codes = ulaw_encode(audio).tobytes()
        for sequence, start in enumerate(range(0, len(codes) - 159, 160)):
            packet = RtpPacket(
                payload_type=0,
                sequence=sequence,
                timestamp=start,
                ssrc=77,
                payload=codes[start : start + 160],
            )
            peer.sendto(packet.to_bytes(), ("127.0.0.1", endpoint.rtp_port))
            await asyncio.sleep(0.02)
        await eventually(lambda: len(events.of(DtmfReceived)) >= 3)
        await asyncio.sleep(0.2)
        digits = [
            e.digit
            for e in events.of(DtmfReceived)
            if isinstance(e, DtmfReceived) and e.endpoint_id == endpoint.endpoint_id
        ]
        assert digits == ["1", "#", "1"]
        finished = events.of(PlaybackFinished)
        assert [e.reason for e in finished if isinstance(e, PlaybackFinished)] == [
            PlaybackEnd.DTMF
        ]
        # switched off, the same tones are ignored
        engine.execute(DetectInband(endpoint_id=endpoint.endpoint_id, enabled=False))
        for sequence, start in enumerate(range(0, len(codes) - 159, 160), 1000):
            packet = RtpPacket(
                payload_type=0,
                sequence=sequence,
                timestamp=start + 100_000,
                ssrc=77,
                payload=codes[start : start + 160],
            )
            peer.sendto(packet.to_bytes(), ("127.0.0.1", endpoint.rtp_port))
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.3)
        assert len(events.of(DtmfReceived)) == 3
    finally:
        peer.close()


async def test_rtcp_reports_are_spread_over_the_ticks(events: Recorder) -> None:
    from media.engine import RTCP_TICKS

    engine = MediaEngine(
        EngineConfig(port_min=PORT_MIN + 40, port_max=PORT_MIN + 59), on_event=events
    )
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    try:
        ids = [create(engine).endpoint_id for _ in range(3)]
        for endpoint_id in ids:
            engine.execute(
                SetRemote(
                    endpoint_id=endpoint_id,
                    host="127.0.0.1",
                    port=9,
                    rtcp_port=sink.getsockname()[1],
                )
            )
        engine.clock.stop()  # drive the reports by hand
        reporter = ids[1]
        engine._send_reports(reporter % RTCP_TICKS)
        sent = {i: engine.endpoint(i).rtcp_out for i in ids}
        assert sent == {i: int(i == reporter) for i in ids}
        engine._send_reports(reporter % RTCP_TICKS + 1)  # another tick, other ids
        assert engine.endpoint(reporter).rtcp_out == 1
    finally:
        engine.close()
        sink.close()


# ------------------------------------------------------------------ fast paths


def _stats_values() -> dict[str, object]:
    return {
        "endpoint_id": 7,
        "packets_in": 10,
        "bytes_in": 1720,
        "packets_out": 9,
        "bytes_out": 1548,
        "lost": 1,
        "jitter_ms": 0.5,
        "round_trip_ms": None,
        "mos": 4.4,
        "ssrcs_heard": 1,
        "ssrc_in": 0x1111,
        "ssrc_out": 0x2222,
        "remote": ("127.0.0.1", 4000),
        "latched": True,
        "rtcp_in": 0,
        "rtcp_out": 1,
        "dtmf_events": 0,
        "dropped": {"address": 2},
    }


def test_endpoint_stats_from_values_is_the_constructed_snapshot() -> None:
    values = _stats_values()
    assert set(values) == {field.name for field in dataclasses.fields(EndpointStats)}
    built = EndpointStats.from_values(dict(values))
    constructed = EndpointStats(**values)  # type: ignore[arg-type]
    assert built == constructed
    assert repr(built) == repr(constructed)
    assert pickle.loads(pickle.dumps(built)) == constructed
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.lost = 0  # type: ignore[misc]


async def test_stats_snapshot_has_every_field_and_its_own_counters(
    engine: MediaEngine,
) -> None:
    a = create(engine)
    engine.endpoint(a.endpoint_id).dropped["address"] = 1
    stats = engine.execute(GetStats(endpoint_id=a.endpoint_id))
    assert isinstance(stats, EndpointStats)
    assert set(vars(stats)) == {field.name for field in dataclasses.fields(stats)}
    assert stats == dataclasses.replace(stats)  # what the constructor would build
    stats.dropped["address"] = 99
    engine.endpoint(a.endpoint_id).dropped["short"] = 1
    assert engine.endpoint(a.endpoint_id).dropped == {"address": 1, "short": 1}
    again = engine.execute(GetStats(endpoint_id=a.endpoint_id))
    assert isinstance(again, EndpointStats)
    assert again.dropped == {"address": 1, "short": 1}
    assert stats.dropped == {"address": 99}


async def test_a_subclass_of_a_command_is_carried_out(engine: MediaEngine) -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
    class TrunkEndpoint(CreateEndpoint):
        pass

    created = engine.execute(TrunkEndpoint(latching=False))
    assert isinstance(created, EndpointCreated)
    assert not engine.endpoint(created.endpoint_id).latching
    done = engine.execute(SetLatching(endpoint_id=created.endpoint_id, enabled=True))
    assert done == Done()


async def test_endpoints_share_one_rtcp_reader_and_close_gives_it_back(
    events: Recorder,
) -> None:
    engine = MediaEngine(
        EngineConfig(port_min=PORT_MIN + 60, port_max=PORT_MIN + 67), on_event=events
    )
    readers = engine._rtcp_readers
    a, _b = create(engine), create(engine)
    if readers is not None:  # Linux: the RTCP sockets wait in the engine's group
        assert len(readers) == 2
        engine.execute(CloseEndpoint(endpoint_id=a.endpoint_id))
        assert len(readers) == 1
    engine.close()
    if readers is not None:
        assert len(readers) == 0
    assert engine.endpoint_count == 0


@pytest.mark.parametrize("value", _examples(), ids=lambda value: type(value).__name__)
def test_vocabulary_constructors_keep_the_dataclass_contract(value: object) -> None:
    """The direct __init__ (commands._direct_init) takes, defaults and refuses the
    same keywords as the one dataclasses generates, and the result stays frozen."""
    cls: Any = type(value)
    fields = dataclasses.fields(value)  # type: ignore[arg-type]
    assert cls(**{item.name: getattr(value, item.name) for item in fields}) == value
    required = {
        item.name: getattr(value, item.name)
        for item in fields
        if item.default is dataclasses.MISSING
        and item.default_factory is dataclasses.MISSING
    }
    minimal = cls(**required)
    for item in fields:
        if item.default is not dataclasses.MISSING:
            assert getattr(minimal, item.name) == item.default
    with pytest.raises(TypeError, match=r"__init__\(\) got an unexpected keyword"):
        cls(**required, bogus=1)
    if fields:
        with pytest.raises(TypeError, match="positional argument"):
            cls(*(getattr(value, item.name) for item in fields))
    if required:
        with pytest.raises(TypeError, match="missing 1 required keyword-only"):
            cls(**dict(list(required.items())[1:]))


def test_direct_init_refuses_what_it_cannot_copy() -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
    class Checked:
        value: int

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError("negative")

    @dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
    class Factory:
        items: list[int] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(kw_only=True, slots=True)
    class Mutable:
        value: int

    for cls in (Checked, Factory, Mutable):
        with pytest.raises(TypeError):
            commands._direct_init(cls)
