"""Runs inside a loopback-only network namespace: every torture message to a live switch.

Started by tests/e2e/test_torture_wire.py as ``unshare -n python -m
tests.e2e.torture_wire CORPUS WORKDIR``. The torture messages' Vias name documentation
addresses (192.0.2.x, example.com), so the switch's replies go there: in this namespace
only ``lo`` exists and nothing can leave the machine. What the switch sent is read from
its SIP trace. Prints one JSON object: per file, the statuses sent and whether the switch
still answered OPTIONS afterwards.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.harness import SwitchProcess, options_ping

# One trace entry: a header line, the message, a blank line (ccswitch.logs.SipTrace).
ENTRY = re.compile(r"^\S+ (sent|recv) [^\n]*\n(.*?)\n\n", re.MULTILINE | re.DOTALL)
CALL_ID = re.compile(
    rb"^(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*)", re.MULTILINE | re.IGNORECASE
)


def _sent_responses(trace: Path) -> list[tuple[str, int]]:
    """(Call-ID, status) of every response the switch sent, retransmissions once."""
    text = trace.read_text(errors="replace") if trace.exists() else ""
    seen: list[tuple[str, int]] = []
    for direction, message in ENTRY.findall(text):
        if direction != "sent" or not message.startswith("SIP/2.0 "):
            continue
        status = int(message[8:11])
        match = CALL_ID.search(message.encode())
        key = (match.group(1).decode().strip() if match else "", status)
        if key not in seen:
            seen.append(key)
    return seen


def main(corpus: Path, workdir: Path) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    switch = SwitchProcess(workdir=workdir).start()
    files = sorted(corpus.glob("rfc4475/*.dat")) + sorted(
        corpus.glob("rfc4475/*/*.dat")
    )
    files += sorted(corpus.glob("rfc5118/*.dat"))
    alive: dict[str, bool] = {}
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            for path in files:
                sock.sendto(path.read_bytes(), ("127.0.0.1", switch.port))
                time.sleep(0.1)
                name = str(path.relative_to(corpus))
                alive[name] = options_ping(switch.port, timeout=2.0) is not None
        time.sleep(0.5)
    finally:
        code = switch.stop()
    sent = _sent_responses(switch.trace_path)
    results: dict[str, dict[str, object]] = {}
    for path in files:
        name = str(path.relative_to(corpus))
        match = CALL_ID.search(path.read_bytes())
        call_id = match.group(1).decode(errors="replace").strip() if match else ""
        statuses = [status for cid, status in sent if cid == call_id]
        results[name] = {"statuses": statuses, "alive": alive[name]}
    print(
        json.dumps(
            {
                "results": results,
                "exit": code,
                "tracebacks": switch.log().count("Traceback"),
            }
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
