"""The contact centre's busy hour on loopback (issue 7): ``python -m bench.busy_hour``.

Callers arrive from a SIPp trunk at ``--rate`` per second, at most ``--calls`` at
once; each hears the IVR greeting, presses 1 (RFC 4733) in a one-key menu and waits in
a queue with music on hold and announcements; ``--operators`` SIPp operator lines,
registered as the queue's agents, answer after 0.2-1.5 s, talk ``--talk`` seconds and
hang up; every bridged call is recorded.  The media of both sides goes to one Python
RTP peer (:mod:`~bench.busy_hour.rtpgen`) that speaks real G.711 speech on every leg
and timestamps every packet the switch sends with the kernel's clock, so loss, late
packets and send-time jitter are measured where a phone would measure them.

Modules, in the order a run uses them: :mod:`.config` (the switch's configuration and
the IVR flow), :mod:`.voice` (speech and music), :mod:`.rtpgen` and :mod:`.analysis`
(the RTP peer and its figures), :mod:`.peers` (SIPp), :mod:`.monitor` (CPU and memory
of the switch's processes), :mod:`.records` (queue log, IVR steps, CDRs, recordings),
:mod:`.run` (one run), :mod:`.forwarder` and :mod:`.sidebyside` (Python's own floor for
the same packets), :mod:`.plot`, and :mod:`.cli` (options, ceiling search, report).
"""
