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
  product, the mixes are encoded together, the next packet of every played stream is
  built in one numpy pass (:mod:`media.playout`), recorders append a stereo frame, RTCP
  reports go out (a 250th of the endpoints each tick) and once a second media timeouts
  are checked.  The played packets leave in ``send_phases`` bursts per tick: phase 0
  right after the build, phase ``p`` at the absolute deadline ``tick + p * 20 ms /
  send_phases``; each stream keeps the phase it was given when it started (the least
  loaded), so it is still exactly 20 ms apart from itself but 1000 streams are not one
  burst.  On Linux the clock and the phases wake on a timerfd (nanosecond deadlines)
  instead of uvloop's millisecond timers (:class:`~media.clock.TimerFd`).

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
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from media.clock import TICK_INTERVAL, MediaClock, Scheduler, TimerFd, precise_scheduler
from media.commands import (
    BadCommand,
    CloseEndpoint,
    Codec,
    Command,
    Connect,
    CreateEndpoint,
    CreateMixer,
    DestroyMixer,
    DetectInband,
    Disconnect,
    Done,
    DtmfReceived,
    EndpointCreated,
    EndpointStats,
    EndpointTimeout,
    EngineLoad,
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
from media.dtmf import DIGIT_TO_EVENT, DtmfDigit, GoertzelDetector
from media.endpoint import SAMPLES_PER_FRAME, Output, ReaderGroup, RtpEndpoint
from media.g711 import (
    ALAW_DECODE_TABLE,
    ALAW_ENCODE_TABLE,
    ULAW_DECODE_TABLE,
    ULAW_ENCODE_TABLE,
)
from media.mixer import Member, Mixer
from media.player import Playback, PromptCache, PromptError
from media.playout import Playout
from media.ports import RTCP_PORT_OFFSET, PortAllocator, PortsExhausted, bind_pair
from media.recorder import WavRecorder
from media.relay import Bridge

logger = logging.getLogger(__name__)

# Ticks between housekeeping passes (media timeouts): one second.
HOUSEKEEPING_TICKS: Final = round(1.0 / TICK_INTERVAL)
# RFC 3550 6.2: 5 s minimum report interval (seconds); fixed, not randomised.
# TODO: RFC 3550 6.3.1 randomises the interval (0.5-1.5x) to avoid synchronised
# reports; with two-party sessions the cost is only bursts of reports per second.
RTCP_INTERVAL: Final = 5
# Endpoint n reports at the ticks where tick % RTCP_TICKS == n % RTCP_TICKS, so 1000
# endpoints cost 4 reports a tick instead of 200 in one tick that delays the sends.
RTCP_TICKS: Final = RTCP_INTERVAL * HOUSEKEEPING_TICKS
# RFC 3551 4.5.14 decode/encode tables, indexed by codec.
DECODE_TABLES: Final = {Codec.PCMU: ULAW_DECODE_TABLE, Codec.PCMA: ALAW_DECODE_TABLE}
ENCODE_TABLES: Final = {Codec.PCMU: ULAW_ENCODE_TABLE, Codec.PCMA: ALAW_ENCODE_TABLE}

# The result of every command with nothing to return: fieldless and frozen, so one
# shared instance serves them all.
DONE: Final = Done()

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
        each played stream always sends in the slot it was given (the least loaded
        one), so 1000 prompts go out as 20 bursts of 50 packets 1 ms apart instead of
        one burst of 1000 that would make the last packets a few milliseconds late.
    :param precise_timer: wake the media clock with a timerfd (Linux) instead of
        ``loop.call_at``, whose millisecond resolution on uvloop costs up to 1 ms of
        send-time jitter.
    :param load_reports: emit :class:`~media.commands.EngineLoad` once a second, so
        the switch can shed new calls before its streams degrade.
    """

    host: str = "127.0.0.1"
    port_min: int = 20000
    port_max: int = 29999
    rtp_timeout: float = 60.0
    tone_region: str = "eu"
    prompt_cache_entries: int = 256
    send_phases: int = 20
    precise_timer: bool = True
    load_reports: bool = False


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
        self._timer: Scheduler = (
            precise_scheduler(self._loop) if self.config.precise_timer else self._loop
        )
        self.clock = MediaClock(self._timer, self._on_tick)
        self._phase_interval = TICK_INTERVAL / self._phases
        # tick deadlines are on the timer's clock; RTP arrival times on time.monotonic
        self._clock_offset = time.monotonic() - self._timer.time()
        self._ids = itertools.count(1)
        self._endpoints: dict[int, RtpEndpoint] = {}
        self._report_buckets: dict[int, dict[int, RtpEndpoint]] = {}
        self._bridges: dict[int, Bridge] = {}
        self._playbacks: dict[int, Playback] = {}
        self.playout = Playout(phases=self._phases, on_finished=self._on_played_out)
        self._mixers: dict[int, Mixer] = {}
        self._mixer_of: dict[int, int] = {}
        self._recordings: dict[int, _Recording] = {}
        self._liveness: dict[int, _Liveness] = {}
        self._tapped: dict[int, RtpEndpoint] = {}
        self._inband: dict[int, GoertzelDetector] = {}  # endpoints heard for tones
        self._load_mark = (time.monotonic(), time.process_time(), 0, 0)
        # RTCP sockets wait in one epoll set of ours (Linux), see ReaderGroup
        self._rtcp_readers = ReaderGroup(self._loop) if ReaderGroup.available else None
        self._bound_host: str | None = None  # the address config.host binds to
        self._handlers: dict[type, Callable[[Any], Result]] = {
            CreateEndpoint: self._create_endpoint,
            SetRemote: self._set_remote,
            SetCodec: self._set_codec,
            SetLatching: self._set_latching,
            DetectInband: self._detect_inband,
            Connect: self._connect,
            Disconnect: self._disconnect_command,
            Play: self._play,
            StopPlay: self._stop_play,
            Record: self._record,
            StopRecord: self._stop_record,
            CreateMixer: self._create_mixer,
            MixerAdd: self._mixer_add,
            MixerRemove: self._mixer_remove_command,
            DestroyMixer: self._destroy_mixer,
            CloseEndpoint: self._close_endpoint_command,
            GetStats: self._get_stats,
        }
        self.closed = False

    # ---------------------------------------------------------------- public API

    def execute(self, command: Command) -> Result:
        """Carry out one command.

        :raises MediaError: (a subclass) when the command cannot be carried out.
        """
        if self.closed:
            raise MediaError("the media engine is closed")
        # one dict lookup instead of a match statement's isinstance chain (a call
        # sends about 11 commands; CloseEndpoint and GetStats were 16 tests deep)
        handler = self._handlers.get(type(command))
        if handler is None:
            handler = self._handler_of_subclass(command)
        return handler(command)

    def stats(self, endpoint_id: int) -> EndpointStats:
        """The counters of one endpoint."""
        endpoint = self._endpoint(endpoint_id)
        self.playout.settle(endpoint_id)
        return endpoint.stats()

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
        if isinstance(self._timer, TimerFd):
            self._timer.close()
        if self._rtcp_readers is not None:
            self._rtcp_readers.close()
        self.closed = True

    # ---------------------------------------------------------------- commands

    def _handler_of_subclass(self, command: Command) -> Callable[[Any], Result]:
        """The handler of a subclass of a command (exact types are looked up)."""
        for command_type, handler in self._handlers.items():
            if isinstance(command, command_type):
                return handler
        raise BadCommand(f"unknown command {command!r}")

    def _close_endpoint_command(self, command: CloseEndpoint) -> Done:
        self._close_endpoint(command.endpoint_id)
        return DONE

    def _create_mixer(self, command: CreateMixer) -> MixerCreated:
        mixer_id = next(self._ids)
        self._mixers[mixer_id] = Mixer(mixer_id)
        return MixerCreated(mixer_id=mixer_id)

    def _destroy_mixer(self, command: DestroyMixer) -> Done:
        mixer = self._mixer(command.mixer_id)
        for endpoint_id in mixer.endpoint_ids:
            self._mixer_remove(command.mixer_id, endpoint_id)
        del self._mixers[command.mixer_id]
        return DONE

    def _disconnect_command(self, command: Disconnect) -> Done:
        self._endpoint(command.endpoint_id)
        self._disconnect(command.endpoint_id)
        return DONE

    def _get_stats(self, command: GetStats) -> EndpointStats:
        return self.stats(command.endpoint_id)

    def _mixer_remove_command(self, command: MixerRemove) -> Done:
        self._mixer(command.mixer_id)
        self._mixer_remove(command.mixer_id, command.endpoint_id)
        return DONE

    def _set_latching(self, command: SetLatching) -> Done:
        self._endpoint(command.endpoint_id).set_latching(command.enabled)
        return DONE

    def _set_remote(self, command: SetRemote) -> Done:
        endpoint_id = command.endpoint_id
        self._endpoint(endpoint_id).set_remote(
            command.host, command.port, command.rtcp_port
        )
        self._liveness[endpoint_id] = _Liveness(time.monotonic())
        return DONE

    def _stop_play(self, command: StopPlay) -> Done:
        self._endpoint(command.endpoint_id)
        self._finish_playback(command.endpoint_id, PlaybackEnd.STOPPED)
        return DONE

    def _stop_record(self, command: StopRecord) -> Done:
        self._stop_recording(command.recording_id)
        return DONE

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
            host = self._bound_host
            if host is None:  # what config.host resolved to, asked once
                host = self._bound_host = sys.intern(rtp.getsockname()[0])
            endpoint = RtpEndpoint(
                endpoint_id,
                self._loop,
                rtp,
                rtcp,
                latching=command.latching,
                on_dtmf=self._on_dtmf,
                on_latched=self._on_latched,
                address=(host, port, port + RTCP_PORT_OFFSET),
                rtcp_readers=self._rtcp_readers,
            )
        except Exception:
            rtp.close()
            rtcp.close()
            self.ports.release(port)
            raise
        self._endpoints[endpoint_id] = endpoint
        bucket = self._report_buckets.get(endpoint_id % RTCP_TICKS)
        if bucket is None:  # (setdefault would build an empty dict every time)
            bucket = self._report_buckets[endpoint_id % RTCP_TICKS] = {}
        bucket[endpoint_id] = endpoint
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
        self.playout.set_payload_type(command.endpoint_id, endpoint.audio_pt)
        return DONE

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
        bucket = self._report_buckets[endpoint_id % RTCP_TICKS]
        del bucket[endpoint_id]
        if not bucket:
            del self._report_buckets[endpoint_id % RTCP_TICKS]
        self._tapped.pop(endpoint_id, None)
        self._inband.pop(endpoint_id, None)
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
        return DONE

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
    # (with the new payload type) until the playback ends (a re-INVITE changing codec
    # mid-prompt is rare).
    def _play(self, command: Play) -> PlaybackStarted:
        endpoint = self._endpoint(command.endpoint_id)
        if not command.items:
            raise BadCommand("empty playlist")
        try:
            playlist = [
                self.prompts.frame_array(item, endpoint.codec) for item in command.items
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
        # the stream joins the batch at the next tick, continuing the OutStream as
        # set_output leaves it (a bridge's position settled, the marker requested)
        self.playout.add(endpoint, playback)
        endpoint.set_output(Output.PLAYER)
        return PlaybackStarted(endpoint_id=command.endpoint_id, playback_id=playback_id)

    def _finish_playback(
        self, endpoint_id: int, reason: PlaybackEnd, *, restore: bool = True
    ) -> None:
        playback = self._playbacks.pop(endpoint_id, None)
        if playback is None:
            return
        self.playout.remove(endpoint_id)  # its position back into the OutStream
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
            self._retap(endpoint)
        self._restore_output(command.endpoint_id)
        return DONE

    def _mixer_remove(self, mixer_id: int, endpoint_id: int) -> None:
        mixer = self._mixers.get(mixer_id)
        if mixer is None or endpoint_id not in mixer:
            return
        mixer.remove(endpoint_id)
        del self._mixer_of[endpoint_id]
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is not None:
            endpoint.close_tap()
            self._retap(endpoint)
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
        self._retap(*taps)
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
                self._retap(endpoint)
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

    def _on_tick(self, tick: int, deadline: float) -> None:
        """One media-clock tick: mixers, recorders, reports, and the played packets
        built at once; phase 0 leaves now, the other phases at their own deadline."""
        when = deadline + self._clock_offset
        heard = self._decode_taps() if self._tapped else {}
        if self._inband:
            self._scan_inband(heard)
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
            if self.config.load_reports:
                self._report_load()
        self._send_reports(tick)

        playout = self.playout
        playout.build(tick, when)
        if not len(playout):
            return
        playout.send(tick, 0)
        call_at = self._timer.call_at
        step = self._phase_interval
        for phase in playout.busy_phases():
            if phase:
                call_at(deadline + phase * step, self._send_phase, tick, phase)

    def _send_phase(self, tick: int, phase: int) -> None:
        self.playout.send(tick, phase)

    def _on_played_out(self, endpoint_id: int) -> None:
        self._finish_playback(endpoint_id, PlaybackEnd.COMPLETED)

    def _detect_inband(self, command: DetectInband) -> Done:
        endpoint = self._endpoint(command.endpoint_id)
        listening = command.endpoint_id in self._inband
        if command.enabled and not listening:
            endpoint.open_tap()
            self._inband[command.endpoint_id] = GoertzelDetector()
        elif not command.enabled and listening:
            endpoint.close_tap()
            del self._inband[command.endpoint_id]
        self._retap(endpoint)
        return DONE

    def _scan_inband(self, heard: dict[int, Samples]) -> None:
        """This tick's received audio of every listening endpoint, through its detector."""
        # TODO: one GoertzelDetector call per stream; GoertzelBank would take all the
        # streams in a few numpy calls (matters with hundreds of legs without RFC 4733).
        for endpoint_id, detector in list(self._inband.items()):
            samples = heard.get(endpoint_id)
            if samples is None:
                continue
            for digit in detector.feed(samples):
                endpoint = self._endpoints.get(endpoint_id)
                if endpoint is not None:
                    event = DIGIT_TO_EVENT[digit]
                    self._on_dtmf(endpoint, DtmfDigit(digit=digit, event=event))

    def _retap(self, *endpoints: RtpEndpoint) -> None:
        """Keep :attr:`_tapped` (the endpoints whose received audio is decoded each
        tick) right after a mixer, recorder or in-band detector took or released
        ``endpoints``; per endpoint, not a scan of all of them at every call set-up."""
        for endpoint in endpoints:
            if endpoint.tap_users:
                self._tapped[endpoint.endpoint_id] = endpoint
            else:
                self._tapped.pop(endpoint.endpoint_id, None)

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

    def _send_reports(self, tick: int) -> None:
        """RTCP every RTCP_INTERVAL seconds per endpoint, spread over the ticks."""
        bucket = self._report_buckets.get(tick % RTCP_TICKS)
        if not bucket:
            return
        for endpoint_id, endpoint in list(bucket.items()):
            if endpoint.rtcp_remote:
                self.playout.settle(endpoint_id)  # the SR's counts and timestamp
                endpoint.send_rtcp(endpoint.rtcp_report())

    def _report_load(self) -> None:
        """CPU share and late wake-ups since the last report (EngineLoad)."""
        wall, cpu, late, skipped = self._load_mark
        clock = self.clock
        now_wall, now_cpu = time.monotonic(), time.process_time()
        self._load_mark = (now_wall, now_cpu, clock.late_wakeups, clock.skipped)
        elapsed = now_wall - wall
        if elapsed <= 0:
            return
        self._emit(
            EngineLoad(
                busy=round((now_cpu - cpu) / elapsed, 3),
                late_ticks=clock.late_wakeups - late,
                skipped_ticks=clock.skipped - skipped,
                endpoints=len(self._endpoints),
            )
        )

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
