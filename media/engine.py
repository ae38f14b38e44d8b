"""The media engine: RTP endpoints, bridges, players, mixers and recorders behind commands.

The engine knows nothing of SIP.  Its owner sends :mod:`media.commands` dataclasses to
:meth:`MediaEngine.execute` (create an endpoint on a port pair of the configured range,
give it the remote address and payload types from SDP, connect two endpoints, play,
record, mix, stop, close, read statistics) and receives events (DTMF received, playback
finished, endpoint timeout, remote latched, recording stopped) through the callback it
passed in.  Commands, results and events are plain picklable dataclasses, so the engine
can later live in worker processes behind a pipe without changing its vocabulary.

Theory of operation.  Two kinds of work, two schedules:

* per packet, on the event loop's readers: each endpoint's receive path validates,
  counts and (when bridged) forwards with a header rewrite (:mod:`media.endpoint`,
  :mod:`media.relay`).  Nothing here decodes audio unless codecs differ (then it is a
  256-entry table in C) or somebody asked for the audio itself (the "tap").
* per 20 ms tick of ONE :class:`~media.clock.MediaClock` for the whole engine: the taps
  of every mixed or recorded endpoint are decoded together (one numpy lookup per codec
  for all streams), every mixer computes all its listeners' mixes in one matrix
  product, the mixes are encoded together, players hand out their next cached payload,
  recorders append a stereo frame, and once a second media timeouts are checked.
  The clock actually ticks ``send_phases`` times per 20 ms (same origin, no drift):
  the per-tick work runs in slot 0 and played frames leave in slot ``id % phases``,
  so each stream is still exactly 20 ms apart but 1000 of them are not one burst.

An endpoint sends one stream whatever feeds it (:class:`~media.endpoint.Output`):
its playback if one is running, else its mixer, else its bridge; switching between
them keeps sequence numbers and timestamps continuous and sets the marker bit.
Event callbacks run synchronously inside the loop; they may call :meth:`execute`.

Known gaps (``TODO`` below): one process only (worker processes need a small RPC shim
around :meth:`MediaEngine.execute`); in-band DTMF (:class:`media.dtmf.GoertzelDetector`)
is not wired to tapped legs; RFC 4733 events are not forwarded through a mixer.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from media.clock import MAX_CATCHUP_TICKS, TICK_INTERVAL, MediaClock
from media.commands import (
    BadCommand,
    CloseEndpoint,
    Codec,
    Command,
    Connect,
    CreateEndpoint,
    CreateMixer,
    DestroyMixer,
    Disconnect,
    Done,
    DtmfReceived,
    EndpointCreated,
    EndpointStats,
    EndpointTimeout,
    GetStats,
    MediaError,
    MediaEvent,
    MixerAdd,
    MixerCreated,
    MixerRemove,
    Play,
    PlaybackEnd,
    PlaybackFinished,
    PlaybackStarted,
    PortsUnavailable,
    Record,
    RecordingStarted,
    RecordingStopped,
    RemoteLatched,
    Result,
    SetCodec,
    SetLatching,
    SetRemote,
    StopPlay,
    StopRecord,
    UnknownEndpoint,
)
from media.dtmf import DtmfDigit
from media.endpoint import SAMPLES_PER_FRAME, Output, RtpEndpoint
from media.g711 import (
    ALAW_DECODE_TABLE,
    ALAW_ENCODE_TABLE,
    ULAW_DECODE_TABLE,
    ULAW_ENCODE_TABLE,
)
from media.mixer import Member, Mixer
from media.player import Playback, PromptCache, PromptError
from media.ports import PortAllocator, PortsExhausted, bind_pair
from media.recorder import WavRecorder
from media.relay import Bridge

logger = logging.getLogger(__name__)

# Ticks between housekeeping passes (media timeouts): one second.
HOUSEKEEPING_TICKS: Final = round(1.0 / TICK_INTERVAL)
# RFC 3550 6.2: 5 s minimum report interval (seconds); fixed, not randomised.
# TODO: RFC 3550 6.3.1 randomises the interval (0.5-1.5x) to avoid synchronised
# reports; with two-party sessions the cost is only bursts of reports per second.
RTCP_INTERVAL: Final = 5
# RFC 3551 4.5.14 decode/encode tables, indexed by codec.
DECODE_TABLES: Final = {Codec.PCMU: ULAW_DECODE_TABLE, Codec.PCMA: ALAW_DECODE_TABLE}
ENCODE_TABLES: Final = {Codec.PCMU: ULAW_ENCODE_TABLE, Codec.PCMA: ALAW_ENCODE_TABLE}

Samples = npt.NDArray[np.int16]
EventCallback = Callable[[MediaEvent], None]


@dataclass(frozen=True, kw_only=True, slots=True)
class EngineConfig:
    """Engine settings (picklable, so a worker process can be given the same).

    :param host: address the RTP sockets bind to and our SDP advertises.
    :param port_min: first port of the RTP range (RTP even, RTCP odd).
    :param port_max: last port of the range, inclusive.
    :param rtp_timeout: seconds without valid RTP before EndpointTimeout; 0 disables.
    :param tone_region: tone plan for generated tones ("eu", "us", "uk").
    :param prompt_cache_entries: decoded prompts kept in memory.
    :param send_phases: slots each 20 ms tick is cut into for sending played audio;
        endpoint ``n`` always sends in slot ``n % send_phases``, so 1000 prompts go
        out as 10 bursts of 100 packets 2 ms apart instead of one burst of 1000 (a
        burst makes every send contend with the receiver draining the same sockets).
    """

    host: str = "127.0.0.1"
    port_min: int = 20000
    port_max: int = 29999
    rtp_timeout: float = 60.0
    tone_region: str = "eu"
    prompt_cache_entries: int = 256
    send_phases: int = 10


class _Recording:
    __slots__ = ("left", "recorder", "recording_id", "right")

    def __init__(
        self,
        recording_id: int,
        recorder: WavRecorder,
        left: int | None,
        right: int | None,
    ) -> None:
        self.recording_id = recording_id
        self.recorder = recorder
        self.left = left
        self.right = right


class _Liveness:
    """Per-endpoint media timeout state (checked once a second)."""

    __slots__ = ("count", "reported", "since")

    def __init__(self, now: float) -> None:
        self.count = 0
        self.since = now
        self.reported = False


class MediaEngine:
    """RTP endpoints and what flows between them, driven by commands.

    Must be created and used on the thread running ``loop`` (the sockets are read by the
    loop's readers and the media clock uses ``loop.call_at``).

    :param config: port range, bind address, timeouts.
    :param on_event: receives every :data:`~media.commands.MediaEvent`.
    :param loop: the running loop (default: the current running loop).
    """

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        on_event: EventCallback,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.config = config if config is not None else EngineConfig()
        self._on_event = on_event
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self.ports = PortAllocator(self.config.port_min, self.config.port_max)
        self.prompts = PromptCache(
            max_entries=self.config.prompt_cache_entries,
            region=self.config.tone_region,
        )
        self._phases = max(1, self.config.send_phases)
        self.clock = MediaClock(
            self._loop,
            self._on_slot,
            interval=TICK_INTERVAL / self._phases,
            max_catchup=MAX_CATCHUP_TICKS * self._phases,
        )
        # tick deadlines are on the loop's clock; RTP arrival times on time.monotonic
        self._clock_offset = time.monotonic() - self._loop.time()
        self._ids = itertools.count(1)
        self._endpoints: dict[int, RtpEndpoint] = {}
        self._bridges: dict[int, Bridge] = {}
        self._playbacks: dict[int, Playback] = {}
        self._phase_playbacks: list[dict[int, Playback]] = [
            {} for _ in range(self._phases)
        ]
        self._mixers: dict[int, Mixer] = {}
        self._mixer_of: dict[int, int] = {}
        self._recordings: dict[int, _Recording] = {}
        self._liveness: dict[int, _Liveness] = {}
        self._tapped: dict[int, RtpEndpoint] = {}
        self.closed = False

    # ---------------------------------------------------------------- public API

    def execute(self, command: Command) -> Result:
        """Carry out one command.

        :raises MediaError: (a subclass) when the command cannot be carried out.
        """
        if self.closed:
            raise MediaError("the media engine is closed")
        match command:
            case CreateEndpoint():
                return self._create_endpoint(command)
            case SetRemote():
                self._endpoint(command.endpoint_id).set_remote(
                    command.host, command.port, command.rtcp_port
                )
                self._liveness[command.endpoint_id] = _Liveness(time.monotonic())
                return Done()
            case SetCodec():
                return self._set_codec(command)
            case SetLatching():
                self._endpoint(command.endpoint_id).set_latching(command.enabled)
                return Done()
            case Connect():
                return self._connect(command)
            case Disconnect():
                self._endpoint(command.endpoint_id)
                self._disconnect(command.endpoint_id)
                return Done()
            case Play():
                return self._play(command)
            case StopPlay():
                self._endpoint(command.endpoint_id)
                self._finish_playback(command.endpoint_id, PlaybackEnd.STOPPED)
                return Done()
            case Record():
                return self._record(command)
            case StopRecord():
                self._stop_recording(command.recording_id)
                return Done()
            case CreateMixer():
                mixer_id = next(self._ids)
                self._mixers[mixer_id] = Mixer(mixer_id)
                return MixerCreated(mixer_id=mixer_id)
            case MixerAdd():
                return self._mixer_add(command)
            case MixerRemove():
                self._mixer(command.mixer_id)
                self._mixer_remove(command.mixer_id, command.endpoint_id)
                return Done()
            case DestroyMixer():
                mixer = self._mixer(command.mixer_id)
                for endpoint_id in mixer.endpoint_ids:
                    self._mixer_remove(command.mixer_id, endpoint_id)
                del self._mixers[command.mixer_id]
                return Done()
            case CloseEndpoint():
                self._close_endpoint(command.endpoint_id)
                return Done()
            case GetStats():
                return self.stats(command.endpoint_id)
        raise BadCommand(f"unknown command {command!r}")

    def stats(self, endpoint_id: int) -> EndpointStats:
        """The counters of one endpoint."""
        return self._endpoint(endpoint_id).stats()

    def endpoint(self, endpoint_id: int) -> RtpEndpoint:
        """The endpoint object (for tests and the benchmark; owners use commands)."""
        return self._endpoint(endpoint_id)

    @property
    def endpoint_count(self) -> int:
        """Open endpoints."""
        return len(self._endpoints)

    def close(self) -> None:
        """Close every endpoint and recording and stop the clock."""
        if self.closed:
            return
        for endpoint_id in list(self._endpoints):
            self._close_endpoint(endpoint_id)
        for recording_id in list(self._recordings):
            self._stop_recording(recording_id)
        self.clock.stop()
        self.closed = True

    # ---------------------------------------------------------------- lookups

    def _endpoint(self, endpoint_id: int) -> RtpEndpoint:
        try:
            return self._endpoints[endpoint_id]
        except KeyError:
            raise UnknownEndpoint(f"no endpoint {endpoint_id}") from None

    def _mixer(self, mixer_id: int) -> Mixer:
        try:
            return self._mixers[mixer_id]
        except KeyError:
            raise UnknownEndpoint(f"no mixer {mixer_id}") from None

    def _emit(self, event: MediaEvent) -> None:
        try:
            self._on_event(event)
        except Exception:  # the owner's bug must not break the media path
            logger.exception("media event callback failed for %r", event)

    # ---------------------------------------------------------------- endpoints

    def _create_endpoint(self, command: CreateEndpoint) -> EndpointCreated:
        try:
            port, rtp, rtcp = bind_pair(self.ports, self.config.host)
        except PortsExhausted as exc:
            raise PortsUnavailable(str(exc)) from None
        endpoint_id = next(self._ids)
        try:
            endpoint = RtpEndpoint(
                endpoint_id,
                self._loop,
                rtp,
                rtcp,
                latching=command.latching,
                on_dtmf=self._on_dtmf,
                on_latched=self._on_latched,
            )
        except Exception:
            rtp.close()
            rtcp.close()
            self.ports.release(port)
            raise
        self._endpoints[endpoint_id] = endpoint
        if not self.clock.running:
            self.clock.start()
        logger.debug("endpoint %d on %s:%d", endpoint_id, endpoint.host, port)
        return EndpointCreated(
            endpoint_id=endpoint_id,
            host=endpoint.host,
            rtp_port=endpoint.rtp_port,
            rtcp_port=endpoint.rtcp_port,
        )

    def _set_codec(self, command: SetCodec) -> Done:
        endpoint = self._endpoint(command.endpoint_id)
        try:
            endpoint.set_codec(
                command.codec,
                command.payload_type,
                telephone_event_pt=command.telephone_event_pt,
                comfort_noise_pt=command.comfort_noise_pt,
            )
        except ValueError as exc:
            raise BadCommand(str(exc)) from None
        bridge = self._bridges.get(command.endpoint_id)
        if bridge is not None:
            bridge.refresh()
        return Done()

    def _close_endpoint(self, endpoint_id: int) -> None:
        endpoint = self._endpoint(endpoint_id)
        self._finish_playback(endpoint_id, PlaybackEnd.CLOSED)
        self._disconnect(endpoint_id)
        mixer_id = self._mixer_of.get(endpoint_id)
        if mixer_id is not None:
            self._mixer_remove(mixer_id, endpoint_id)
        for recording in list(self._recordings.values()):
            if endpoint_id in (recording.left, recording.right):
                if recording.left == endpoint_id:
                    recording.left = None
                if recording.right == endpoint_id:
                    recording.right = None
                endpoint.close_tap()
                if recording.left is None and recording.right is None:
                    self._stop_recording(recording.recording_id)
        endpoint.close()
        self.ports.release(endpoint.rtp_port)
        del self._endpoints[endpoint_id]
        self._tapped.pop(endpoint_id, None)
        self._liveness.pop(endpoint_id, None)
        if not self._endpoints:
            self.clock.stop()
        logger.debug("endpoint %d closed", endpoint_id)

    def _on_latched(self, endpoint: RtpEndpoint) -> None:
        if endpoint.remote is not None:
            self._emit(
                RemoteLatched(
                    endpoint_id=endpoint.endpoint_id,
                    host=endpoint.remote[0],
                    port=endpoint.remote[1],
                )
            )

    def _on_dtmf(self, endpoint: RtpEndpoint, digit: DtmfDigit) -> None:
        endpoint_id = endpoint.endpoint_id
        self._emit(
            DtmfReceived(
                endpoint_id=endpoint_id, digit=digit.digit, timestamp=digit.timestamp
            )
        )
        playback = self._playbacks.get(endpoint_id)
        if playback is not None and playback.stop_on_dtmf:
            self._finish_playback(endpoint_id, PlaybackEnd.DTMF)

    def _restore_output(self, endpoint_id: int) -> None:
        """Give the stream back to the mixer or bridge once a playback ended."""
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is None:
            return
        if endpoint_id in self._playbacks:
            endpoint.set_output(Output.PLAYER)
        elif endpoint_id in self._mixer_of:
            endpoint.set_output(Output.MIXER)
        elif endpoint_id in self._bridges:
            endpoint.set_output(Output.RELAY)
        else:
            endpoint.set_output(Output.NONE)

    # ---------------------------------------------------------------- bridges

    def _connect(self, command: Connect) -> Done:
        a = self._endpoint(command.endpoint_a)
        b = self._endpoint(command.endpoint_b)
        if a is b:
            raise BadCommand("cannot connect an endpoint to itself")
        for endpoint_id in (a.endpoint_id, b.endpoint_id):
            if endpoint_id in self._mixer_of:
                raise BadCommand(f"endpoint {endpoint_id} is in a mixer")
        for endpoint_id in (a.endpoint_id, b.endpoint_id):
            self._finish_playback(endpoint_id, PlaybackEnd.REPLACED, restore=False)
            self._disconnect(endpoint_id)
        bridge = Bridge(a, b)
        self._bridges[a.endpoint_id] = bridge
        self._bridges[b.endpoint_id] = bridge
        logger.debug("connected endpoints %d and %d", a.endpoint_id, b.endpoint_id)
        return Done()

    def _disconnect(self, endpoint_id: int) -> None:
        bridge = self._bridges.get(endpoint_id)
        if bridge is None:
            return
        bridge.unbridge()
        for member in (bridge.a, bridge.b):
            self._bridges.pop(member.endpoint_id, None)
            self._restore_output(member.endpoint_id)

    # ---------------------------------------------------------------- playback

    # TODO: a SetCodec during a playback keeps sending frames encoded for the old codec
    # until the playback ends (a re-INVITE changing codec mid-prompt is rare).
    def _play(self, command: Play) -> PlaybackStarted:
        endpoint = self._endpoint(command.endpoint_id)
        if not command.items:
            raise BadCommand("empty playlist")
        try:
            playlist = [
                self.prompts.frames(item, endpoint.codec) for item in command.items
            ]
        except PromptError as exc:
            raise BadCommand(str(exc)) from None
        self._finish_playback(command.endpoint_id, PlaybackEnd.REPLACED, restore=False)
        playback_id = next(self._ids)
        playback = Playback(
            playback_id,
            playlist,
            loop=command.loop,
            stop_on_dtmf=command.stop_on_dtmf,
        )
        self._playbacks[command.endpoint_id] = playback
        self._phase_playbacks[command.endpoint_id % self._phases][
            command.endpoint_id
        ] = playback
        endpoint.set_output(Output.PLAYER)
        return PlaybackStarted(endpoint_id=command.endpoint_id, playback_id=playback_id)

    def _finish_playback(
        self, endpoint_id: int, reason: PlaybackEnd, *, restore: bool = True
    ) -> None:
        playback = self._playbacks.pop(endpoint_id, None)
        if playback is None:
            return
        del self._phase_playbacks[endpoint_id % self._phases][endpoint_id]
        if restore:
            self._restore_output(endpoint_id)
        self._emit(
            PlaybackFinished(
                endpoint_id=endpoint_id,
                playback_id=playback.playback_id,
                reason=reason,
            )
        )

    # ---------------------------------------------------------------- mixers

    def _mixer_add(self, command: MixerAdd) -> Done:
        mixer = self._mixer(command.mixer_id)
        endpoint = self._endpoint(command.endpoint_id)
        current = self._mixer_of.get(command.endpoint_id)
        if current is not None and current != command.mixer_id:
            raise BadCommand(
                f"endpoint {command.endpoint_id} is already in mixer {current}"
            )
        try:
            mixer.add(
                Member(
                    endpoint_id=command.endpoint_id,
                    role=command.role,
                    whisper_to=command.whisper_to,
                )
            )
        except ValueError as exc:
            raise BadCommand(str(exc)) from None
        if current is None:
            self._disconnect(command.endpoint_id)
            self._mixer_of[command.endpoint_id] = command.mixer_id
            endpoint.open_tap()
            self._refresh_taps()
        self._restore_output(command.endpoint_id)
        return Done()

    def _mixer_remove(self, mixer_id: int, endpoint_id: int) -> None:
        mixer = self._mixers.get(mixer_id)
        if mixer is None or endpoint_id not in mixer:
            return
        mixer.remove(endpoint_id)
        del self._mixer_of[endpoint_id]
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is not None:
            endpoint.close_tap()
            self._refresh_taps()
        self._restore_output(endpoint_id)

    # ---------------------------------------------------------------- recording

    def _record(self, command: Record) -> RecordingStarted:
        taps = [
            self._endpoint(endpoint_id)
            for endpoint_id in (command.left, command.right)
            if endpoint_id is not None
        ]
        try:
            recorder = WavRecorder(command.path)
        except OSError as exc:
            raise BadCommand(f"cannot record to {command.path}: {exc}") from None
        for endpoint in taps:
            endpoint.open_tap()
        self._refresh_taps()
        recording_id = next(self._ids)
        self._recordings[recording_id] = _Recording(
            recording_id, recorder, command.left, command.right
        )
        return RecordingStarted(recording_id=recording_id, path=command.path)

    def _stop_recording(self, recording_id: int) -> None:
        recording = self._recordings.pop(recording_id, None)
        if recording is None:
            raise UnknownEndpoint(f"no recording {recording_id}")
        for endpoint_id in (recording.left, recording.right):
            if endpoint_id is None:
                continue
            endpoint = self._endpoints.get(endpoint_id)
            if endpoint is not None:
                endpoint.close_tap()
        self._refresh_taps()
        recorder = recording.recorder
        try:
            recorder.close()
        except OSError:
            logger.exception("closing recording %s failed", recorder.path)
        self._emit(
            RecordingStopped(
                recording_id=recording_id, path=recorder.path, seconds=recorder.seconds
            )
        )

    # ---------------------------------------------------------------- media clock

    def _on_slot(self, slot: int, deadline: float) -> None:
        """One clock slot: slot 0 of a tick does the per-tick work, every slot sends
        the played frames of its share of the endpoints."""
        tick, phase = divmod(slot, self._phases)
        when = deadline + self._clock_offset
        if phase == 0:
            self._on_tick(tick, when)
        playbacks = self._phase_playbacks[phase]
        if playbacks:
            self._run_playbacks(playbacks, when)

    def _on_tick(self, tick: int, when: float) -> None:
        heard = self._decode_taps() if self._tapped else {}
        if self._mixers:
            self._run_mixers(heard, when)
        for recording in list(self._recordings.values()):
            try:
                recording.recorder.write(
                    None if recording.left is None else heard.get(recording.left),
                    None if recording.right is None else heard.get(recording.right),
                )
            except OSError:
                logger.exception("recording %s failed", recording.recorder.path)
                self._stop_recording(recording.recording_id)
        if tick % HOUSEKEEPING_TICKS == 0:
            self._housekeeping()
            self._send_reports(tick // HOUSEKEEPING_TICKS)

    def _refresh_taps(self) -> None:
        """Remember which endpoints keep received audio (after mixer/recorder changes)."""
        self._tapped = {
            endpoint_id: endpoint
            for endpoint_id, endpoint in self._endpoints.items()
            if endpoint.tap_users
        }

    def _decode_taps(self) -> dict[int, Samples]:
        """Every tapped endpoint's audio of this tick, decoded one batch per codec."""
        frames: dict[Codec, list[tuple[int, bytes]]] = {}
        for endpoint_id, endpoint in self._tapped.items():
            if endpoint.tap_users:
                codes = endpoint.take_frame(SAMPLES_PER_FRAME)
                if codes is not None:
                    frames.setdefault(endpoint.codec, []).append((endpoint_id, codes))
        heard: dict[int, Samples] = {}
        for codec, batch in frames.items():
            codes_array = np.frombuffer(b"".join(c for _, c in batch), dtype=np.uint8)
            decoded = DECODE_TABLES[codec][codes_array].reshape(len(batch), -1)
            for row, (endpoint_id, _) in enumerate(batch):
                heard[endpoint_id] = decoded[row]
        return heard

    # TODO: RFC 4733 events received by mixer members are reported but not forwarded
    # to the other members (a conference with an IVR leg would need it).
    # TODO: legs that only signal DTMF in band are not scanned (GoertzelDetector on the
    # decoded taps would cost ~1 us per frame, PERFORMANCE.md 2.3).
    def _run_mixers(self, heard: dict[int, Samples], when: float) -> None:
        silence = np.zeros(SAMPLES_PER_FRAME, dtype=np.int16)
        outgoing: dict[Codec, list[tuple[RtpEndpoint, Samples]]] = {}
        for mixer in self._mixers.values():
            ids = mixer.endpoint_ids
            if not ids:
                continue
            stacked = np.stack([heard.get(endpoint_id, silence) for endpoint_id in ids])
            mixed = mixer.mix(stacked)
            for row, endpoint_id in enumerate(ids):
                endpoint = self._endpoints[endpoint_id]
                if endpoint.output is Output.MIXER:
                    outgoing.setdefault(endpoint.codec, []).append(
                        (endpoint, mixed[row])
                    )
        for codec, batch in outgoing.items():
            rows = np.stack([samples for _, samples in batch])
            encoded = ENCODE_TABLES[codec][rows.view(np.uint16)].tobytes()
            for row, (endpoint, samples) in enumerate(batch):
                start = row * samples.size
                endpoint.send_frame(
                    encoded[start : start + samples.size], when, samples.size
                )

    def _run_playbacks(self, playbacks: dict[int, Playback], when: float) -> None:
        finished: list[int] = []
        endpoints = self._endpoints
        for endpoint_id, playback in playbacks.items():
            frame = playback.next_frame()
            if frame is None:
                finished.append(endpoint_id)
            else:
                endpoints[endpoint_id].send_frame(frame, when, SAMPLES_PER_FRAME)
        for endpoint_id in finished:
            self._finish_playback(endpoint_id, PlaybackEnd.COMPLETED)

    def _send_reports(self, second: int) -> None:
        """RTCP every RTCP_INTERVAL seconds per endpoint, a fifth of them each second."""
        slot = second % RTCP_INTERVAL
        for endpoint_id, endpoint in self._endpoints.items():
            if endpoint_id % RTCP_INTERVAL == slot and endpoint.rtcp_remote:
                endpoint.send_rtcp(endpoint.rtcp_report())

    def _housekeeping(self) -> None:
        timeout = self.config.rtp_timeout
        if timeout <= 0:
            return
        now = time.monotonic()
        for endpoint_id, liveness in list(self._liveness.items()):
            endpoint = self._endpoints.get(endpoint_id)
            if endpoint is None:
                continue
            count = endpoint.packets_received
            if count != liveness.count:
                liveness.count = count
                liveness.since = now
                liveness.reported = False
            elif not liveness.reported and now - liveness.since >= timeout:
                liveness.reported = True
                self._emit(
                    EndpointTimeout(
                        endpoint_id=endpoint_id, idle_seconds=now - liveness.since
                    )
                )
