"""RFC 4028 session timers, sans-IO: negotiation and the timer against a fake clock."""

from __future__ import annotations

import pytest

from switch.session_timer import (
    MIN_SE,
    Refresher,
    SessionTimer,
    TimerAction,
    from_response,
    negotiate_uas,
    parse_min_se,
    parse_session_expires,
)
from switch.sip.errors import ProtocolError
from switch.sip.message import Request, make_response, parse_message


def request(*extra: str) -> Request:
    text = (
        "INVITE sip:1002@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n"
        "From: <sip:a@192.0.2.1>;tag=a\r\nTo: <sip:1002@127.0.0.1>\r\n"
        "Call-ID: st-1\r\nCSeq: 1 INVITE\r\nContact: <sip:a@192.0.2.1>\r\n"
        + "".join(line + "\r\n" for line in extra)
        + "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def test_parse_headers() -> None:
    assert parse_session_expires("1800").interval == 1800
    parsed = parse_session_expires(" 600 ; refresher = UAS ")
    assert parsed.interval == 600 and parsed.refresher is Refresher.UAS
    assert parse_min_se("120;x=y") == 120
    for bad in ("soon", "600;refresher=both"):
        with pytest.raises(ProtocolError) as info:
            parse_session_expires(bad)
        assert info.value.status == 400
    with pytest.raises(ProtocolError):
        parse_min_se("-1")


def test_no_session_expires_no_timer() -> None:
    assert negotiate_uas(request("Supported: timer")) is None


def test_caller_supporting_timers_refreshes_by_default() -> None:
    negotiated = negotiate_uas(request("Session-Expires: 600", "Supported: timer"))
    assert negotiated is not None
    assert negotiated.interval == 600 and not negotiated.we_refresh
    assert negotiated.headers == (
        ("Session-Expires", "600;refresher=uac"),
        ("Require", "timer"),
    )


def test_caller_asking_us_to_refresh() -> None:
    negotiated = negotiate_uas(
        request("Session-Expires: 600;refresher=uas", "Supported: timer, 100rel")
    )
    assert negotiated is not None and negotiated.we_refresh
    assert negotiated.headers == (("Session-Expires", "600;refresher=uas"),)


def test_caller_without_timer_support_leaves_the_refreshing_to_us() -> None:
    negotiated = negotiate_uas(request("Session-Expires: 600;refresher=uac"))
    assert negotiated is not None and negotiated.we_refresh
    assert negotiated.refresher is Refresher.UAS


def test_too_small_gets_422_with_our_min_se() -> None:
    with pytest.raises(ProtocolError) as info:
        negotiate_uas(request("Session-Expires: 30", "Supported: timer"))
    assert info.value.status == 422
    assert info.value.headers == (("Min-SE", str(MIN_SE)),)


def test_too_small_without_timer_support_is_raised_not_refused() -> None:
    negotiated = negotiate_uas(request("Session-Expires: 30", "Min-SE: 120"))
    assert negotiated is not None and negotiated.interval == 120


def test_callers_min_se_is_a_floor() -> None:
    negotiated = negotiate_uas(
        request("Session-Expires: 100", "Min-SE: 150", "Supported: timer")
    )
    assert negotiated is not None and negotiated.interval == 150


def test_from_response_refresher() -> None:
    invite = request()
    ok = make_response(invite, 200, to_tag="b")
    assert from_response(ok) is None
    ok.headers.add("Session-Expires", "300")
    negotiated = from_response(ok)
    assert negotiated is not None and negotiated.we_refresh  # UAC by default (7.2)
    ok.headers.set("Session-Expires", "300;refresher=uas")
    negotiated = from_response(ok)
    assert negotiated is not None and not negotiated.we_refresh
    ok.headers.set("Session-Expires", "garbage")
    assert from_response(ok) is None


def test_refresher_timer_refreshes_at_half_then_expires_without_answer() -> None:
    timer = SessionTimer(interval=600, we_refresh=True, now=1000.0)
    assert timer.next_deadline() == 1300.0
    assert timer.handle_deadline(1299.0) is TimerAction.NONE
    assert timer.handle_deadline(1300.0) is TimerAction.REFRESH
    # the refresh went out: next is the expiry, 600 - min(32, 200) after the start
    assert timer.next_deadline() == 1568.0
    assert timer.handle_deadline(1400.0) is TimerAction.NONE
    assert timer.handle_deadline(1568.0) is TimerAction.EXPIRE


def test_refresh_restarts_the_timer() -> None:
    timer = SessionTimer(interval=600, we_refresh=True, now=0.0)
    assert timer.handle_deadline(300.0) is TimerAction.REFRESH
    timer.refreshed(310.0, interval=400)
    assert timer.next_deadline() == 510.0
    assert not timer.refresh_sent


def test_watching_timer_expires_before_the_interval() -> None:
    timer = SessionTimer(interval=90, we_refresh=False, now=0.0)
    assert timer.next_deadline() == 60.0  # 90 - min(32, 30)
    assert timer.handle_deadline(59.9) is TimerAction.NONE
    assert timer.handle_deadline(60.0) is TimerAction.EXPIRE
    timer.refreshed(50.0, we_refresh=True)
    assert timer.next_deadline() == 95.0
