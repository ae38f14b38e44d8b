"""Tests for ccswitch.logs: the Call-ID adapter, logging set-up and the SIP trace file."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ccswitch import logs
from ccswitch.logs import CallLogAdapter, SipTrace, TraceDirection, call_logger

NOON = datetime(2025, 1, 2, 12, 0, 0, 123456, tzinfo=UTC)
OPTIONS = b"OPTIONS sip:ccswitch SIP/2.0\r\nCall-ID: abc\r\nContent-Length: 0\r\n\r\n"


def fixed_clock() -> datetime:
    return NOON


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    logs.get_sip_trace().close()
    root.handlers[:] = handlers
    root.setLevel(level)


# --- SipTrace ------------------------------------------------------------------------


def test_disabled_trace_writes_nothing(tmp_path: Path) -> None:
    trace = SipTrace(None)
    assert not trace.enabled
    trace.received("UDP", ("127.0.0.1", 5060), ("127.0.0.1", 5070), OPTIONS)
    trace.close()
    assert list(tmp_path.iterdir()) == []


def test_entry_format(tmp_path: Path) -> None:
    path = tmp_path / "trace.log"
    trace = SipTrace(str(path), clock=fixed_clock)
    assert trace.enabled
    trace.received("UDP", ("127.0.0.1", 5060), ("127.0.0.1", 5070), OPTIONS)
    trace.sent("TCP", ("::1", 5060), ("::1", 40000), b"SIP/2.0 200 OK\r\n\r\nbody")
    # Line-buffered: on disk before close.
    assert path.read_text() == (
        "2025-01-02T12:00:00.123+00:00 recv UDP 127.0.0.1:5060 <- 127.0.0.1:5070"
        f" ({len(OPTIONS)} bytes)\n"
        "OPTIONS sip:ccswitch SIP/2.0\nCall-ID: abc\nContent-Length: 0\n\n\n"
        "2025-01-02T12:00:00.123+00:00 sent TCP [::1]:5060 -> [::1]:40000 (22 bytes)\n"
        "SIP/2.0 200 OK\n\nbody\n\n"
    )
    trace.close()


def test_record_with_direction(tmp_path: Path) -> None:
    path = tmp_path / "trace.log"
    trace = SipTrace(str(path), clock=fixed_clock)
    trace.record(
        TraceDirection.SENT, "TLS", ("127.0.0.1", 5061), ("127.0.0.1", 6000), b"x"
    )
    trace.close()
    assert (
        path.read_text()
        .splitlines()[0]
        .endswith("sent TLS 127.0.0.1:5061 -> 127.0.0.1:6000 (1 bytes)")
    )


def test_binary_bytes_do_not_break_the_trace(tmp_path: Path) -> None:
    path = tmp_path / "trace.log"
    trace = SipTrace(str(path), clock=fixed_clock)
    trace.received("UDP", ("127.0.0.1", 5060), ("127.0.0.1", 5070), b"\xff\xfe\r\n")
    trace.close()
    assert path.read_text().splitlines()[1] == "\\xff\\xfe"


def test_trace_appends(tmp_path: Path) -> None:
    path = tmp_path / "trace.log"
    for _ in range(2):
        trace = SipTrace(str(path), clock=fixed_clock)
        trace.received("UDP", ("127.0.0.1", 5060), ("127.0.0.1", 5070), OPTIONS)
        trace.close()
    assert path.read_text().count(" recv UDP ") == 2


def test_close_disables(tmp_path: Path) -> None:
    trace = SipTrace(str(tmp_path / "trace.log"))
    trace.close()
    trace.close()
    assert not trace.enabled
    trace.received("UDP", ("127.0.0.1", 5060), ("127.0.0.1", 5070), OPTIONS)


def test_trace_stays_out_of_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    trace = SipTrace(str(tmp_path / "trace.log"))
    trace.received("UDP", ("127.0.0.1", 5060), ("127.0.0.1", 5070), OPTIONS)
    trace.close()
    assert "OPTIONS" not in caplog.text


# --- CallLogAdapter ------------------------------------------------------------------


def test_call_logger_prefixes_the_call_id(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    log = call_logger(logging.getLogger("ccswitch.test"), "a84b4c76e66710@pc33")
    assert isinstance(log, CallLogAdapter)
    log.info("answered with %d", 200, extra={"leg": "b"})
    [record] = caplog.records
    assert record.getMessage() == "[a84b4c76e66710@pc33] answered with 200"
    assert record.call_id == "a84b4c76e66710@pc33"  # type: ignore[attr-defined]
    assert record.leg == "b"  # type: ignore[attr-defined]


# --- setup_logging -------------------------------------------------------------------


def test_setup_logging_sets_level_and_writes_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    trace = logs.setup_logging("warning", None)
    assert not trace.enabled
    assert logs.get_sip_trace() is trace
    assert logging.getLogger().level == logging.WARNING
    logging.getLogger("ccswitch.test").info("quiet")
    logging.getLogger("ccswitch.test").warning("loud")
    err = capsys.readouterr().err
    assert "quiet" not in err
    assert err.endswith(" WARNING ccswitch.test: loud\n")


def test_setup_logging_twice_keeps_one_handler() -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    logs.setup_logging("INFO", None)
    logs.setup_logging("DEBUG", None)
    assert len(root.handlers) == before + 1
    assert root.level == logging.DEBUG


def test_setup_logging_opens_the_trace(tmp_path: Path) -> None:
    first = logs.setup_logging("INFO", str(tmp_path / "one.log"))
    assert (first.enabled, logs.get_sip_trace() is first) == (True, True)
    second = logs.setup_logging("INFO", str(tmp_path / "two.log"))
    assert not first.enabled  # the old trace is closed
    assert second.enabled and logs.get_sip_trace() is second


def test_setup_logging_rejects_unknown_level() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        logs.setup_logging("loud", None)


def test_setup_logging_trace_failure_changes_nothing(tmp_path: Path) -> None:
    before = logs.get_sip_trace()
    with pytest.raises(IsADirectoryError):
        logs.setup_logging("INFO", str(tmp_path))
    assert logs.get_sip_trace() is before
