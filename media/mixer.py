"""N-party audio mixing with a per-listener matrix: conference, listen, whisper, barge.

Each member of a :class:`Mixer` is a talker and a listener.  Who hears whom is one
``(listeners, talkers)`` matrix of 0/1 gains built from the members' roles
(:class:`~media.commands.MixRole`): a participant is heard by every other member, a
supervisor who only *listens* is heard by no one, a *whisper* is heard by the one member
named (the operator being coached), a *barge* is heard by everyone; everybody hears every
talker they may hear except themselves.

Theory of operation.  Mixing happens once per 20 ms tick on linear int16 frames
(decoded by the engine for all streams at once): the frames of the members are stacked
into a ``(members, 160)`` array, widened to int32 so sums cannot wrap, multiplied by the
gain matrix (one numpy call gives every listener's mix, each without their own voice),
and clipped back to int16 (saturation, never wrap-around).  A missing frame (a member's
packet did not arrive in time) is silence.  The matrix is rebuilt only when the
membership changes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from media.commands import MixRole

logger = logging.getLogger(__name__)

INT16_MIN: Final = -32768
INT16_MAX: Final = 32767
FRAME_SAMPLES: Final = 160  # 20 ms at 8 kHz (RFC 3551 4.2)

Samples = npt.NDArray[np.int16]
Gains = npt.NDArray[np.int32]


@dataclass(frozen=True, kw_only=True, slots=True)
class Member:
    """One endpoint in a mixer and how it takes part."""

    endpoint_id: int
    role: MixRole = MixRole.PARTICIPANT
    whisper_to: int | None = None


def gain_matrix(members: Sequence[Member]) -> Gains:
    """``gains[listener, talker]`` is 1 when the listener hears the talker.

    :raises ValueError: a whisper without a target, or a target not in the mixer.
    """
    ids = [member.endpoint_id for member in members]
    count = len(members)
    gains = np.zeros((count, count), dtype=np.int32)
    for talker, member in enumerate(members):
        if member.role is MixRole.LISTEN:
            continue  # heard by no one
        if member.role is MixRole.WHISPER:
            if member.whisper_to is None or member.whisper_to not in ids:
                raise ValueError(
                    f"whisper of endpoint {member.endpoint_id} has no target in the mixer"
                )
            gains[ids.index(member.whisper_to), talker] = 1
        else:  # PARTICIPANT, BARGE: heard by everyone
            gains[:, talker] = 1
    np.fill_diagonal(gains, 0)  # nobody hears themselves
    return gains


def mix(frames: Samples, gains: Gains) -> Samples:
    """Every listener's mix of ``frames`` (talkers x samples), saturated to int16."""
    mixed = gains @ frames.astype(np.int32)
    return np.clip(mixed, INT16_MIN, INT16_MAX).astype(np.int16)


class Mixer:
    """The members of one conference and their gain matrix.

    Driven by the engine: it adds and removes members on commands and calls
    :meth:`mix` once per media-clock tick with the members' decoded frames.

    :param mixer_id: the engine's id.
    """

    __slots__ = ("_gains", "_members", "mixer_id")

    def __init__(self, mixer_id: int) -> None:
        self.mixer_id = mixer_id
        self._members: dict[int, Member] = {}
        self._gains: Gains = np.zeros((0, 0), dtype=np.int32)

    @property
    def members(self) -> tuple[Member, ...]:
        """The members, in the order of the rows of :meth:`mix`'s input and output."""
        return tuple(self._members.values())

    @property
    def endpoint_ids(self) -> tuple[int, ...]:
        """The members' endpoint ids, in row order."""
        return tuple(self._members)

    def __contains__(self, endpoint_id: object) -> bool:
        return endpoint_id in self._members

    def __len__(self) -> int:
        return len(self._members)

    def add(self, member: Member) -> None:
        """Add or re-role a member; raises ValueError if the roles do not fit."""
        members = dict(self._members)
        members[member.endpoint_id] = member
        gains = gain_matrix(tuple(members.values()))
        self._members = members
        self._gains = gains

    def remove(self, endpoint_id: int) -> None:
        """Remove a member; whispers aimed at it become listen-only."""
        members = dict(self._members)
        members.pop(endpoint_id, None)
        for other_id, other in list(members.items()):
            if other.role is MixRole.WHISPER and other.whisper_to == endpoint_id:
                members[other_id] = Member(endpoint_id=other_id, role=MixRole.LISTEN)
        self._members = members
        self._gains = gain_matrix(tuple(members.values()))

    @property
    def gains(self) -> Gains:
        """The current ``(listeners, talkers)`` gain matrix."""
        return self._gains

    def mix(self, frames: Samples) -> Samples:
        """Mix one tick: ``frames`` has one row per member, in :attr:`members` order."""
        return mix(frames, self._gains)
