"""The media engine's command, result and event vocabulary (plain picklable dataclasses).

The engine knows nothing of SIP: its owner (the B2BUA, an IVR, a test) turns SDP offers
and answers into these commands and gets results and events back.  Everything here is a
frozen dataclass of ints, strings, enums and tuples, so the same vocabulary can later
cross a process boundary unchanged (``multiprocessing`` pickles them) when the engine runs
in worker processes: ``MediaEngine.execute(command) -> result`` is the only entry point,
and events (DTMF received, playback finished, endpoint timeout...) come back through the
one callback the owner passes in.

Names follow the RFCs: payload types and encoding names from RFC 3551 (``PCMU``,
``PCMA``), ``telephone-event`` from RFC 4733, comfort noise (``CN``) from RFC 3389, SSRC
and jitter from RFC 3550.  Errors are :class:`MediaError` subclasses; they carry one
message string so they pickle too.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import types
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

# RFC 3551 table 4: static payload types of the codecs we carry.
PT_PCMU = 0
PT_PCMA = 8
# RFC 3389 section 4 / RFC 3551 table 4: comfort noise.
PT_CN = 13
# RFC 4733 uses a dynamic payload type; 101 is the de facto default in SDP offers.
PT_TELEPHONE_EVENT_DEFAULT = 101
#: How media worker processes may ask to be scheduled (see :mod:`media.workers`);
#: here so that a configuration can be checked without importing the engine.
PRIORITIES = ("realtime", "high", "normal")


class Codec(enum.Enum):
    """Audio encodings the engine can send and decode (RFC 3551 encoding names)."""

    PCMU = "PCMU"
    PCMA = "PCMA"

    @property
    def static_payload_type(self) -> int:
        """The RFC 3551 static payload type of this encoding."""
        return PT_PCMU if self is Codec.PCMU else PT_PCMA


class MixRole(enum.Enum):
    """How a member of a mixer hears and is heard.

    ``PARTICIPANT``: hears everyone but itself, heard by every other participant.
    ``LISTEN``: a supervisor who hears everyone and is heard by no one.
    ``WHISPER``: hears everyone, heard only by the member named in ``whisper_to``.
    ``BARGE``: hears everyone and is heard by everyone (a third party on the call).
    """

    PARTICIPANT = "participant"
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


class PlaybackEnd(enum.Enum):
    """Why a playback stopped."""

    COMPLETED = "completed"
    STOPPED = "stopped"
    DTMF = "dtmf"
    REPLACED = "replaced"
    CLOSED = "closed"
    FAILED = "failed"


class ToneName(enum.Enum):
    """Call-progress tones the player can generate (ITU-T E.180 style cadences)."""

    RINGBACK = "ringback"
    BUSY = "busy"
    CONGESTION = "congestion"
    DIAL = "dial"
    BEEP = "beep"


class MediaError(Exception):
    """A command could not be carried out; the message says why."""


class UnknownEndpoint(MediaError):
    """The command names an endpoint, mixer or recording that does not exist."""


class PortsUnavailable(MediaError):
    """No RTP/RTCP port pair of the configured range is free."""


class BadCommand(MediaError):
    """The command's arguments are inconsistent (e.g. a codec that is not configured)."""


def _direct_init(cls: type) -> None:
    """Give a frozen, slotted, keyword-only dataclass an ``__init__`` that writes its
    slots through their descriptors.

    The ``__init__`` dataclasses generates for a frozen class calls
    ``object.__setattr__`` once per field (stepping around the class's own
    ``__setattr__``, which refuses every write): a generic attribute lookup and a
    wrapper call each; writing through the slot descriptor's own ``__set__`` makes
    construction two to three times faster, and a bridged call builds some 17 of
    these objects.  The new
    ``__init__`` has the same keyword-only signature, defaults and error messages,
    and the instances are as frozen as before (only ``__init__`` writes the slots).
    Classes this cannot copy exactly (``__post_init__``, factories, ``InitVar``) are
    refused here, at import, rather than given a different constructor.
    """
    fields = dataclasses.fields(cls)
    if (
        not cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
        or "__slots__" not in cls.__dict__
        or hasattr(cls, "__post_init__")
        or len(fields) != len(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    ):
        raise TypeError(f"{cls.__name__} is not a plain frozen slotted dataclass")
    namespace: dict[str, Any] = {}
    parameters: list[str] = []
    body: list[str] = []
    for item in fields:
        name = item.name
        slot = cls.__dict__.get(name)
        if (
            not item.kw_only
            or not item.init
            or item.default_factory is not dataclasses.MISSING
            or not isinstance(slot, types.MemberDescriptorType)
            or name == "self"
        ):
            raise TypeError(f"{cls.__name__}.{name} cannot be set directly")
        if item.default is dataclasses.MISSING:
            parameters.append(name)
        else:
            namespace[f"_default_{name}"] = item.default
            parameters.append(f"{name}=_default_{name}")
        namespace[f"_set_{name}"] = slot.__set__
        body.append(f"    _set_{name}(self, {name})")
    if not fields:
        return  # nothing to set (Done)
    source = f"def __init__(self, *, {', '.join(parameters)}):\n" + "\n".join(body)
    exec(source, namespace)  # as dataclasses builds its own __init__
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = {item.name: item.type for item in fields} | {"return": None}
    cls.__init__ = init  # type: ignore[misc]


# ---------------------------------------------------------------------------------------
# play items


@dataclass(frozen=True, kw_only=True, slots=True)
class Prompt:
    """An audio file (WAV of any rate/width/channels, or MP3) played as-is."""

    path: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Tone:
    """A generated call-progress tone; ``duration_ms`` None plays one cadence cycle."""

    name: ToneName
    duration_ms: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Silence:
    """A stretch of silence, e.g. between prompts of a playlist."""

    duration_ms: int


PlayItem = Prompt | Tone | Silence


# ---------------------------------------------------------------------------------------
# commands


@dataclass(frozen=True, kw_only=True, slots=True)
class CreateEndpoint:
    """Open an RTP/RTCP socket pair on the next free even/odd ports of the range.

    ``latching`` (symmetric RTP, RFC 4961 + NAT latching) makes the endpoint send to the
    address the first valid packet came from; switch it off for trunks with fixed
    addresses. ``near`` names an endpoint this one will be bridged, recorded or mixed
    with: with media worker processes (:mod:`media.workers`) both must live in the
    same one; a single engine ignores it.
    """

    latching: bool = True
    near: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class SetRemote:
    """Where to send RTP (and RTCP; default port + 1) — from the peer's SDP.

    Setting the remote also forgets a previous latch, so a re-INVITE can move a phone.
    """

    endpoint_id: int
    host: str
    port: int
    rtcp_port: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class SetCodec:
    """The negotiated encoding and payload types (from the SDP answer).

    ``payload_type`` defaults to the codec's static type.  ``telephone_event_pt`` and
    ``comfort_noise_pt`` are None when not negotiated.
    """

    endpoint_id: int
    codec: Codec = Codec.PCMU
    payload_type: int | None = None
    telephone_event_pt: int | None = PT_TELEPHONE_EVENT_DEFAULT
    comfort_noise_pt: int | None = PT_CN


@dataclass(frozen=True, kw_only=True, slots=True)
class SetLatching:
    """Switch address latching on or off (RFC 4961 symmetric RTP stays on)."""

    endpoint_id: int
    enabled: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class DetectInband:
    """Listen for DTMF tones in the endpoint's received audio.

    For peers that did not negotiate telephone-event (RFC 4733) and send keys as
    tones; each key is then reported as :class:`DtmfReceived`, once, like an RFC 4733
    event, and stops a ``stop_on_dtmf`` playback. ``enabled=False`` stops listening.
    """

    endpoint_id: int
    enabled: bool = True


@dataclass(frozen=True, kw_only=True, slots=True)
class Connect:
    """Bridge two endpoints: each one's received packets are sent out of the other.

    Stops playback on both and breaks any previous connection of either.
    """

    endpoint_a: int
    endpoint_b: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Disconnect:
    """Break the bridge the endpoint is part of (no-op when not connected)."""

    endpoint_id: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Play:
    """Play a playlist to the endpoint, replacing what it was sending until it ends.

    ``loop`` repeats the playlist forever (music on hold).  ``stop_on_dtmf`` ends the
    playback when the far end presses a key (barge-in for IVR prompts).
    """

    endpoint_id: int
    items: tuple[PlayItem, ...]
    loop: bool = False
    stop_on_dtmf: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class StopPlay:
    """Stop the endpoint's playback (PlaybackFinished with reason STOPPED)."""

    endpoint_id: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Record:
    """Record two endpoints' received audio into a stereo WAV, written as it goes.

    ``left`` is usually the caller's endpoint, ``right`` the operator's; either may be
    None for a silent channel.
    """

    path: str
    left: int | None
    right: int | None


@dataclass(frozen=True, kw_only=True, slots=True)
class StopRecord:
    """Finish a recording: final header update and close."""

    recording_id: int


@dataclass(frozen=True, kw_only=True, slots=True)
class CreateMixer:
    """Create an empty N-party mixer (conference, whisper, barge).

    ``near``: an endpoint that will be a member (see :class:`CreateEndpoint`).
    """

    near: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class MixerAdd:
    """Add an endpoint to a mixer; its bridge (if any) is broken first.

    ``whisper_to`` names the member who hears a ``WHISPER`` member.
    """

    mixer_id: int
    endpoint_id: int
    role: MixRole = MixRole.PARTICIPANT
    whisper_to: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class MixerRemove:
    """Take an endpoint out of a mixer (it then sends nothing until told otherwise)."""

    mixer_id: int
    endpoint_id: int


@dataclass(frozen=True, kw_only=True, slots=True)
class DestroyMixer:
    """Remove every member and forget the mixer."""

    mixer_id: int


@dataclass(frozen=True, kw_only=True, slots=True)
class CloseEndpoint:
    """Stop everything on the endpoint, close its sockets and release its ports."""

    endpoint_id: int


@dataclass(frozen=True, kw_only=True, slots=True)
class GetStats:
    """Ask for one endpoint's counters (:class:`EndpointStats`)."""

    endpoint_id: int


Command = (
    CreateEndpoint
    | SetRemote
    | SetCodec
    | SetLatching
    | DetectInband
    | Connect
    | Disconnect
    | Play
    | StopPlay
    | Record
    | StopRecord
    | CreateMixer
    | MixerAdd
    | MixerRemove
    | DestroyMixer
    | CloseEndpoint
    | GetStats
)


# ---------------------------------------------------------------------------------------
# results


@dataclass(frozen=True, kw_only=True, slots=True)
class Done:
    """The command was carried out and has nothing to return."""


@dataclass(frozen=True, kw_only=True, slots=True)
class EndpointCreated:
    """The new endpoint's id and local transport address (for our SDP)."""

    endpoint_id: int
    host: str
    rtp_port: int
    rtcp_port: int


@dataclass(frozen=True, kw_only=True, slots=True)
class PlaybackStarted:
    """The id the matching PlaybackFinished event will carry."""

    endpoint_id: int
    playback_id: int


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordingStarted:
    """The id to stop the recording with."""

    recording_id: int
    path: str


@dataclass(frozen=True, kw_only=True, slots=True)
class MixerCreated:
    """The new mixer's id."""

    mixer_id: int


# Not slotted, unlike its siblings: :meth:`EndpointStats.from_values` gives an instance
# its whole state as one dict instead of 18 ``object.__setattr__`` calls.
@dataclass(frozen=True, kw_only=True)
class EndpointStats:
    """Counters of one endpoint (RFC 3550 section 6.4 terms where they apply).

    ``dropped`` maps a reason (``short``, ``version``, ``padding``, ``extension``,
    ``csrc``, ``too_big``, ``payload_type``, ``address``, ...) to a count.  ``lost``
    is the cumulative number of packets lost over every SSRC heard (RFC 3550 A.3),
    ``jitter_ms`` the interarrival jitter of the current SSRC (RFC 3550 A.8),
    ``round_trip_ms`` the RTT from the peer's RTCP reports (6.4.1; None until one
    echoes our SR) and ``mos`` the E-model estimate (ITU-T G.107) from those.
    """

    endpoint_id: int
    packets_in: int
    bytes_in: int
    packets_out: int
    bytes_out: int
    lost: int
    jitter_ms: float
    round_trip_ms: float | None
    mos: float
    ssrcs_heard: int
    ssrc_in: int | None
    ssrc_out: int
    remote: tuple[str, int] | None
    latched: bool
    rtcp_in: int
    rtcp_out: int
    dtmf_events: int
    dropped: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> EndpointStats:
        """The snapshot whose fields are ``values``, which names every field once.

        For the engine, which takes a snapshot of each leg at every hang-up: the
        frozen ``__init__`` spends most of its time in one ``object.__setattr__``
        per field.  ``values`` becomes the instance's state (not copied).
        """
        stats = object.__new__(cls)
        object.__setattr__(stats, "__dict__", values)
        return stats


Result = (
    Done
    | EndpointCreated
    | PlaybackStarted
    | RecordingStarted
    | MixerCreated
    | EndpointStats
)


# ---------------------------------------------------------------------------------------
# events


@dataclass(frozen=True, kw_only=True, slots=True)
class DtmfReceived:
    """A key press received as an RFC 4733 telephone-event, or heard in band.

    Reported once, on the first packet of the event (so IVR barge-in is immediate);
    ``digit`` is one of ``0-9 * # A-D``, or ``!`` for hook flash (event 16).
    ``timestamp`` is the event's RTP timestamp (its start); 0 for a key heard in
    band (:class:`DetectInband`).
    """

    endpoint_id: int
    digit: str
    timestamp: int


@dataclass(frozen=True, kw_only=True, slots=True)
class PlaybackFinished:
    """A playback ended (completed, stopped, interrupted by DTMF, replaced...)."""

    endpoint_id: int
    playback_id: int
    reason: PlaybackEnd


@dataclass(frozen=True, kw_only=True, slots=True)
class EndpointTimeout:
    """No valid RTP arrived on the endpoint for ``idle_seconds`` (media timeout)."""

    endpoint_id: int
    idle_seconds: float


@dataclass(frozen=True, kw_only=True, slots=True)
class RemoteLatched:
    """The endpoint latched onto the address its first valid packet came from."""

    endpoint_id: int
    host: str
    port: int


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordingStopped:
    """A recording was closed (by StopRecord or because an endpoint closed)."""

    recording_id: int
    path: str
    seconds: float


@dataclass(frozen=True, kw_only=True, slots=True)
class EngineLoad:
    """Once a second, with ``EngineConfig.load_reports``: how loaded the engine is.

    :param busy: CPU time of the engine's process over the last second, as a share
        of one core (a worker process is its engine; in-process it includes the
        signalling).
    :param late_ticks: media clock wake-ups a frame (20 ms) late in that second.
    :param skipped_ticks: ticks dropped after a stall in that second.
    :param endpoints: endpoints open now.
    :param worker: which media worker process (0 without workers).
    """

    busy: float
    late_ticks: int
    skipped_ticks: int
    endpoints: int
    worker: int = 0


MediaEvent = (
    DtmfReceived
    | PlaybackFinished
    | EndpointTimeout
    | RemoteLatched
    | RecordingStopped
    | EngineLoad
)

# Every frozen slotted dataclass above gets the direct __init__ (EndpointStats, not
# slotted, is built by EndpointStats.from_values where it is hot).
for _value in list(globals().values()):
    if (
        dataclasses.is_dataclass(_value)
        and isinstance(_value, type)
        and "__slots__" in _value.__dict__
    ):
        _direct_init(_value)
del _value
