"""SIP message layer benchmark: parse, parse plus proxy fields, and build.

Run as ``python -m bench.sip_parser [--seconds 3]``. Pure CPU, no sockets; a run takes
about ``3 * seconds`` plus a short per-message pass (under 30 s with the default).

The corpus mixes what a contact-centre switch sees most (a REGISTER with digest
credentials, an INVITE with SDP, a 200 OK with Record-Route, a short OPTIONS, a BYE)
with the thirteen *valid* RFC 4475 torture messages (section 3.1.1) from
``../shared/corpus`` when that folder is present; those are long, folded and escaped,
so they pull the average down on purpose. Three measurements, each cycling through the
whole corpus until its time is up:

``parse``
    :func:`switch.sip.message.parse_message` alone (the lazy, framing-only pass).
``parse_fields``
    parse, then read what a proxy or the transaction layer needs from every message:
    all Via values, CSeq, Call-ID and the From tag (each a first, uncached access).
``build``
    :meth:`Request.to_bytes` / :meth:`Response.to_bytes` of already parsed messages.

A message whose typed fields raise (none of the valid set should) is left out of
``parse_fields`` and listed in the results. Rates are messages per second on one core
of this machine; results go to ``bench/results/sip_parser.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Final

from switch.sip.errors import BadMessage
from switch.sip.message import Request, Response, parse_message

RESULTS: Final = Path(__file__).resolve().parent / "results" / "sip_parser.json"
REPO: Final = Path(__file__).resolve().parents[1]

# RFC 4475 section 3.1.1: the valid messages (must be accepted).
RFC4475_VALID: Final = (
    "wsinv.dat",
    "intmeth.dat",
    "esc01.dat",
    "escnull.dat",
    "esc02.dat",
    "lwsdisp.dat",
    "longreq.dat",
    "dblreq.dat",
    "semiuri.dat",
    "transports.dat",
    "mpart01.dat",
    "unreason.dat",
    "noreason.dat",
)

DEFAULT_SECONDS: Final = 3.0
PER_MESSAGE_SECONDS: Final = 0.15
ROUNDS: Final = 3  # each measurement is split into rounds; the median round is reported

Report = dict[str, Any]


def _crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


SDP: Final = _crlf(
    "v=0\n"
    "o=1001 3456 3456 IN IP4 192.0.2.10\n"
    "s=call\n"
    "c=IN IP4 192.0.2.10\n"
    "t=0 0\n"
    "m=audio 20000 RTP/AVP 0 8 101\n"
    "a=rtpmap:0 PCMU/8000\n"
    "a=rtpmap:8 PCMA/8000\n"
    "a=rtpmap:101 telephone-event/8000\n"
    "a=fmtp:101 0-15\n"
    "a=ptime:20\n"
    "a=sendrecv\n"
)

BUILT_IN: Final[dict[str, bytes]] = {
    "register-auth": _crlf(
        "REGISTER sip:ccswitch SIP/2.0\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bK776asdhds;rport\n"
        "Max-Forwards: 70\n"
        "From: <sip:1001@ccswitch>;tag=a73kszlfl\n"
        "To: <sip:1001@ccswitch>\n"
        "Call-ID: 1j9FpLxk3uxtm8tn@192.0.2.10\n"
        "CSeq: 2 REGISTER\n"
        "Contact: <sip:1001@192.0.2.10:5070;transport=udp>;expires=3600"
        ';+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"\n'
        'Authorization: Digest username="1001", realm="ccswitch", '
        'nonce="AAABjT1XoYbP6e0x8cW3kRZ0xJz5c0oH1hHk9Zy2a8c", '
        'uri="sip:ccswitch", response="6629fae49393a05397450978507c4ef1", '
        'algorithm=MD5, cnonce="0a4f113b", opaque="5ccc069c403ebaf9", '
        "qop=auth, nc=00000001\n"
        "User-Agent: baresip v1.0.0 (x86_64/linux)\n"
        "Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,REFER\n"
        "Expires: 3600\n"
        "Content-Length: 0\n"
        "\n"
    ),
    "invite-sdp": _crlf(
        "INVITE sip:5000@ccswitch SIP/2.0\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKnashds8;rport\n"
        "Max-Forwards: 70\n"
        'From: "Demo 1001" <sip:1001@ccswitch>;tag=1928301774\n'
        "To: <sip:5000@ccswitch>\n"
        "Call-ID: a84b4c76e66710@192.0.2.10\n"
        "CSeq: 314159 INVITE\n"
        "Contact: <sip:1001@192.0.2.10:5070>\n"
        "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE\n"
        "Supported: replaces, timer\n"
        "Session-Expires: 1800\n"
        "User-Agent: baresip v1.0.0 (x86_64/linux)\n"
        "Content-Type: application/sdp\n"
        f"Content-Length: {len(SDP)}\n"
        "\n"
    )
    + SDP,
    "200-record-route": _crlf(
        "SIP/2.0 200 OK\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK2d4790.1;received=192.0.2.1\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKnashds8;rport=5070\n"
        "Record-Route: <sip:192.0.2.1:5060;lr;ftag=1928301774>\n"
        "Record-Route: <sip:192.0.2.2;lr>\n"
        'From: "Demo 1001" <sip:1001@ccswitch>;tag=1928301774\n'
        "To: <sip:5000@ccswitch>;tag=a6c85cf\n"
        "Call-ID: a84b4c76e66710@192.0.2.10\n"
        "CSeq: 314159 INVITE\n"
        "Contact: <sip:agent@192.0.2.20:5080>\n"
        "Content-Type: application/sdp\n"
        f"Content-Length: {len(SDP)}\n"
        "\n"
    )
    + SDP,
    "options-short": _crlf(
        "OPTIONS sip:ccswitch SIP/2.0\n"
        "v: SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKop1\n"
        "f: <sip:probe@ccswitch>;tag=p1\n"
        "t: <sip:ccswitch>\n"
        "i: opt1@192.0.2.10\n"
        "CSeq: 1 OPTIONS\n"
        "l: 0\n"
        "\n"
    ),
    "bye": _crlf(
        "BYE sip:1001@192.0.2.10:5070 SIP/2.0\n"
        "Via: SIP/2.0/UDP 192.0.2.20:5080;branch=z9hG4bKbye77;rport\n"
        "Max-Forwards: 70\n"
        "Route: <sip:192.0.2.1:5060;lr;ftag=1928301774>\n"
        "From: <sip:5000@ccswitch>;tag=a6c85cf\n"
        'To: "Demo 1001" <sip:1001@ccswitch>;tag=1928301774\n'
        "Call-ID: a84b4c76e66710@192.0.2.10\n"
        "CSeq: 231 BYE\n"
        "Content-Length: 0\n"
        "\n"
    ),
}


def corpus_dir() -> Path | None:
    """``$CCSWITCH_SHARED/corpus`` or ``<checkout>/../shared/corpus``, if present."""
    candidates = []
    if os.environ.get("CCSWITCH_SHARED"):
        candidates.append(Path(os.environ["CCSWITCH_SHARED"]) / "corpus")
    candidates.append(REPO.parent / "shared" / "corpus")
    for candidate in candidates:
        if (candidate / "rfc4475").is_dir():
            return candidate
    return None


def load_corpus() -> dict[str, bytes]:
    corpus = dict(BUILT_IN)
    root = corpus_dir()
    if root is not None:
        for name in RFC4475_VALID:
            path = root / "rfc4475" / name
            if path.is_file():
                corpus[f"rfc4475/{name.removesuffix('.dat')}"] = path.read_bytes()
    return corpus


def proxy_fields(message: Request | Response) -> tuple[object, ...]:
    """What a proxy reads from every message: Vias, CSeq, Call-ID, From tag."""
    return (message.vias, message.cseq, message.call_id, message.from_.tag)


def _rate(run: Callable[[], int], seconds: float) -> Report:
    """Call ``run`` (one pass, returns messages handled) until ``seconds`` are used.

    The time is split into :data:`ROUNDS` rounds; the median round rate is reported
    (the box is shared and noisy) with the range.
    """
    rates = []
    for _ in range(ROUNDS):
        handled = 0
        start = time.perf_counter()
        deadline = start + seconds / ROUNDS
        while True:
            handled += run()
            now = time.perf_counter()
            if now >= deadline:
                break
        rates.append(handled / (now - start))
    median = statistics.median(rates)
    return {
        "messages_per_s": round(median),
        "us_per_message": round(1e6 / median, 2),
        "rounds_messages_per_s": [round(rate) for rate in rates],
    }


def measure(corpus: dict[str, bytes], seconds: float) -> Report:
    datagrams = list(corpus.values())
    parsed = [parse_message(data) for data in datagrams]

    field_ready: list[bytes] = []
    skipped: dict[str, str] = {}
    for name, data in corpus.items():
        try:
            proxy_fields(parse_message(data))
        except BadMessage as error:
            skipped[name] = error.reason
            continue
        field_ready.append(data)

    def parse_pass() -> int:
        for data in datagrams:
            parse_message(data)
        return len(datagrams)

    def fields_pass() -> int:
        for data in field_ready:
            proxy_fields(parse_message(data))
        return len(field_ready)

    def build_pass() -> int:
        for message in parsed:
            message.to_bytes()
        return len(parsed)

    results: Report = {
        "parse": _rate(parse_pass, seconds),
        "parse_fields": _rate(fields_pass, seconds),
        "build": _rate(build_pass, seconds),
    }
    results["parse_fields"]["skipped"] = skipped
    results["parse_fields"]["messages"] = len(field_ready)

    per_message: Report = {}
    for name, data in corpus.items():
        row: Report = {
            "bytes": len(data),
            "parse_us": _rate(partial(_parse_once, data), PER_MESSAGE_SECONDS)[
                "us_per_message"
            ],
        }
        if name not in skipped:
            row["parse_fields_us"] = _rate(
                partial(_parse_fields_once, data), PER_MESSAGE_SECONDS
            )["us_per_message"]
        per_message[name] = row
    results["per_message"] = per_message
    return results


def _parse_once(data: bytes) -> int:
    parse_message(data)
    return 1


def _parse_fields_once(data: bytes) -> int:
    proxy_fields(parse_message(data))
    return 1


def _git_commit() -> str | None:
    head = REPO / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (REPO / ".git" / ref[5:]).read_text().strip()
        return ref
    except OSError:
        return None


def _print_table(report: Report) -> None:
    print(
        f"SIP message layer, {report['corpus']['messages']} messages "
        f"({report['corpus']['mean_bytes']} bytes on average), one core"
    )
    print(f"{'measurement':<14} {'msg/s':>10} {'us/msg':>8}   rounds")
    for key in ("parse", "parse_fields", "build"):
        row = report["results"][key]
        rounds = ", ".join(str(rate) for rate in row["rounds_messages_per_s"])
        print(
            f"{key:<14} {row['messages_per_s']:>10} {row['us_per_message']:>8}   "
            f"{rounds}"
        )
    print()
    print(f"{'message':<26} {'bytes':>6} {'parse us':>9} {'+fields us':>10}")
    for name, row in report["results"]["per_message"].items():
        fields = row.get("parse_fields_us", "-")
        print(f"{name:<26} {row['bytes']:>6} {row['parse_us']:>9} {fields:>10}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sip_parser", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=DEFAULT_SECONDS,
        help="seconds per measurement (three measurements)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 20:
        parser.error("--seconds must be in (0, 20]")

    started = time.monotonic()
    corpus = load_corpus()
    sizes = [len(data) for data in corpus.values()]
    report: Report = {
        "benchmark": "sip_parser",
        "command": " ".join(
            ["python -m bench.sip_parser", *(sys.argv[1:] if argv is None else argv)]
        ),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": _git_commit(),
        "python": platform.python_version(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "seconds_per_measurement": args.seconds,
        "corpus": {
            "messages": len(corpus),
            "names": list(corpus),
            "rfc4475_present": corpus_dir() is not None,
            "mean_bytes": round(statistics.mean(sizes)),
            "total_bytes": sum(sizes),
        },
        "results": measure(corpus, args.seconds),
    }
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    _print_table(report)
    print(f"results written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
