"""Tests for ccswitch.config: every class of start-up error, word for word.

The message is the user interface of the validator (one line: file, key path, problem),
so each case asserts the exact text rather than a fragment.
"""

from __future__ import annotations

import dataclasses
import re
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccswitch import __version__
from ccswitch.config import (
    DEMO_SOURCE,
    OVERRIDES,
    SECTIONS,
    Config,
    ConfigError,
    DialplanRuleConfig,
    LimitsConfig,
    LogConfig,
    RegistrarConfig,
    RtpConfig,
    SipConfig,
    StoreConfig,
    TrunkConfig,
    UserConfig,
    apply_overrides,
    check_value,
    load_config,
    parse_config,
    render_config,
)

SOURCE = "t.toml"

# The smallest valid file: realm is the one key without a default, users are optional.
MINIMAL = '[sip]\nrealm = "test"\n'

USER = '[[users]]\nname = "1001"\npassword = "secret"\n'

MD5 = "0" * 32
SHA256 = "f" * 64


def parse(text: str) -> Config:
    return parse_config(text, source=SOURCE)


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return str(info.value)


def no_overrides() -> dict[str, str | None]:
    return dict.fromkeys(("listen", "rtp_ports", "db", "log_level", "trace_file"))


# --- a valid file --------------------------------------------------------------------


def test_minimal_file_takes_every_default() -> None:
    config = parse(MINIMAL)
    assert config == Config(
        source=SOURCE,
        sip=SipConfig(
            listen_host="127.0.0.1",
            listen_port=5060,
            tls_listen_host=None,
            tls_listen_port=None,
            tls_certificate=None,
            tls_private_key=None,
            realm="test",
        ),
        registrar=RegistrarConfig(),
        rtp=RtpConfig(port_low=30000, port_high=30999),
        store=StoreConfig(path="ccswitch.db"),
        log=LogConfig(),
        users=(),
    )


def test_dataclass_defaults_match_schema_defaults() -> None:
    sip = parse(MINIMAL).sip
    assert (sip.udp_max_size, sip.t1, sip.t2, sip.t4) == (1300, 0.5, 4.0, 5.0)
    assert sip.tcp_idle_timeout == 300.0
    assert sip.trace_file is None
    assert sip.user_agent == f"ccswitch/{__version__}"


def test_every_key_written_out(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    key = tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("x")
    text = f"""
[sip]
listen = "[::1]:5070"
tls_listen = "127.0.0.1:5071"
tls_certificate = '{cert}'
tls_private_key = '{key}'
realm = "example.com"
udp_max_size = 1400
t1 = 1
t2 = 8.5
t4 = 6
tcp_idle_timeout = 60
trace_file = '{tmp_path / "trace.log"}'
user_agent = "Test UA"

[registrar]
min_expires = 30
max_expires = 7200
default_expires = 600
qualify_interval = 0
qualify_timeout_count = 3

[rtp]
ports = "40000-40003"

[store]
path = ':memory:'

[log]
level = "debug"

[[users]]
name = "alice"
ha1_md5 = "{"AB" * 16}"
ha1_sha256 = "{SHA256}"
display_name = "Alice A"
allow_outbound = true

[[users]]
name = "1002"
password = "pw"
"""
    config = parse(text)
    assert config.sip == SipConfig(
        listen_host="::1",
        listen_port=5070,
        tls_listen_host="127.0.0.1",
        tls_listen_port=5071,
        tls_certificate=str(cert),
        tls_private_key=str(key),
        realm="example.com",
        udp_max_size=1400,
        t1=1.0,
        t2=8.5,
        t4=6.0,
        tcp_idle_timeout=60.0,
        trace_file=str(tmp_path / "trace.log"),
        user_agent="Test UA",
    )
    assert isinstance(config.sip.t1, float)
    assert config.registrar == RegistrarConfig(
        min_expires=30,
        max_expires=7200,
        default_expires=600,
        qualify_interval=0.0,
        qualify_timeout_count=3,
    )
    assert config.rtp == RtpConfig(port_low=40000, port_high=40003)
    assert config.store == StoreConfig(path=":memory:")
    assert config.log == LogConfig(level="DEBUG")
    assert config.users == (
        UserConfig(
            name="alice",
            password=None,
            ha1_md5="ab" * 16,
            ha1_sha256=SHA256,
            display_name="Alice A",
            allow_outbound=True,
        ),
        UserConfig(
            name="1002",
            password="pw",
            ha1_md5=None,
            ha1_sha256=None,
            display_name=None,
            allow_outbound=False,
        ),
    )


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("[::1]:5060", "::1", 5060),
        ("[::]:5060", "::", 5060),
        ("0.0.0.0:1", "0.0.0.0", 1),
        ("localhost:65535", "localhost", 65535),
        ("sip.example.com.:5060", "sip.example.com.", 5060),
    ],
)
def test_listen_forms_accepted(listen: str, host: str, port: int) -> None:
    sip = parse(f'[sip]\nrealm = "r"\nlisten = "{listen}"\n').sip
    assert (sip.listen_host, sip.listen_port) == (host, port)


def test_empty_strings_mean_unset() -> None:
    text = MINIMAL + 'tls_listen = ""\ntls_certificate = ""\ntrace_file = ""\n'
    sip = parse(text).sip
    assert sip.tls_listen_host is None
    assert sip.tls_certificate is None
    assert sip.trace_file is None


def test_config_is_frozen() -> None:
    config = parse(MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.sip.realm = "other"  # type: ignore[misc]


# --- errors, word for word -----------------------------------------------------------

ERRORS = [
    # unknown keys and sections
    pytest.param(
        '[sipp]\nrealm = "r"\n',
        't.toml: sipp: unknown section; did you mean "sip"?',
        id="unknown-section",
    ),
    pytest.param(
        "[bogus]\nx = 1\n",
        "t.toml: bogus: unknown section; "
        "expected one of: sip, registrar, rtp, store, log, limits, recording, trunks,"
        " dialplan, ivr, users, queues, agents, admission",
        id="unknown-section-no-guess",
    ),
    pytest.param(
        MINIMAL + "listen_port = 5060\n",
        't.toml: sip.listen_port: unknown key; did you mean "listen"?',
        id="unknown-key",
    ),
    pytest.param(
        MINIMAL + "[store]\nfile = 'x.db'\n",
        "t.toml: store.file: unknown key; expected one of: path",
        id="unknown-key-no-guess",
    ),
    pytest.param(
        MINIMAL + USER + "pasword = 'x'\n",
        't.toml: users[1].pasword: unknown key; did you mean "password"?',
        id="unknown-user-key",
    ),
    # types
    pytest.param(
        MINIMAL + 't1 = "0.5"\n',
        't.toml: sip.t1: expected a number, got string "0.5"',
        id="string-for-number",
    ),
    pytest.param(
        MINIMAL + "udp_max_size = true\n",
        "t.toml: sip.udp_max_size: expected an integer, got boolean true",
        id="bool-for-integer",
    ),
    pytest.param(
        MINIMAL + "[registrar]\nmin_expires = 60.0\n",
        "t.toml: registrar.min_expires: expected an integer, got float 60.0",
        id="float-for-integer",
    ),
    pytest.param(
        MINIMAL + "t2 = false\n",
        "t.toml: sip.t2: expected a number, got boolean false",
        id="bool-for-number",
    ),
    pytest.param(
        MINIMAL + USER + "allow_outbound = 1\n",
        "t.toml: users[1].allow_outbound: expected a boolean, got integer 1",
        id="integer-for-bool",
    ),
    pytest.param(
        "[sip]\nrealm = 5060\n",
        "t.toml: sip.realm: expected a string, got integer 5060",
        id="integer-for-string",
    ),
    pytest.param(
        MINIMAL + "listen = ['127.0.0.1', 5060]\n",
        "t.toml: sip.listen: expected a string, got an array",
        id="array-for-string",
    ),
    pytest.param(
        MINIMAL + "[log]\nlevel = {name = 'INFO'}\n",
        "t.toml: log.level: expected a string, got a table",
        id="table-for-string",
    ),
    pytest.param(
        MINIMAL + "user_agent = 1979-05-27T07:32:00Z\n",
        "t.toml: sip.user_agent: expected a string, got date-time 1979-05-27 07:32:00+00:00",
        id="datetime-for-string",
    ),
    pytest.param(
        "sip = 5\n",
        "t.toml: sip: expected a table ([sip]), got integer 5",
        id="section-not-table",
    ),
    pytest.param(
        MINIMAL + '[users]\nname = "1001"\n',
        "t.toml: users: expected an array of tables ([[users]]), got a table",
        id="users-not-array",
    ),
    pytest.param(
        'users = ["1001"]\n' + MINIMAL,
        't.toml: users[1]: expected a table, got string "1001"',
        id="users-item-not-table",
    ),
    # required
    pytest.param(
        '[sip]\nlisten = "127.0.0.1:5060"\n',
        "t.toml: sip.realm: required key is missing",
        id="missing-realm",
    ),
    pytest.param(
        MINIMAL + '[[users]]\npassword = "x"\n',
        "t.toml: users[1].name: required key is missing",
        id="missing-user-name",
    ),
    # host:port
    pytest.param(
        MINIMAL + 'listen = "127.0.0.1:70000"\n',
        "t.toml: sip.listen: port 70000 is out of range 1-65535",
        id="port-too-high",
    ),
    pytest.param(
        MINIMAL + 'listen = "127.0.0.1:0"\n',
        "t.toml: sip.listen: port 0 is out of range 1-65535",
        id="port-zero",
    ),
    pytest.param(
        MINIMAL + 'listen = "127.0.0.1:sip"\n',
        't.toml: sip.listen: port "sip" is not a number',
        id="port-not-number",
    ),
    pytest.param(
        MINIMAL + 'listen = "127.0.0.1:"\n',
        't.toml: sip.listen: port "" is not a number',
        id="port-empty",
    ),
    pytest.param(
        MINIMAL + 'listen = "127.0.0.1"\n',
        't.toml: sip.listen: expected HOST:PORT (e.g. "127.0.0.1:5060"), got "127.0.0.1"',
        id="no-port",
    ),
    pytest.param(
        MINIMAL + 'listen = ":5060"\n',
        't.toml: sip.listen: expected HOST:PORT (e.g. "127.0.0.1:5060"), got ":5060"',
        id="no-host",
    ),
    pytest.param(
        MINIMAL + 'listen = "[::1]"\n',
        't.toml: sip.listen: expected HOST:PORT (e.g. "127.0.0.1:5060"), got "[::1]"',
        id="ipv6-no-port",
    ),
    pytest.param(
        MINIMAL + 'listen = "::1:5060"\n',
        't.toml: sip.listen: IPv6 address "::1" must be in brackets, e.g. "[::1]:5060"',
        id="ipv6-no-brackets",
    ),
    pytest.param(
        MINIMAL + 'listen = "[::g]:5060"\n',
        't.toml: sip.listen: "::g" is not an IPv6 address',
        id="bad-ipv6",
    ),
    pytest.param(
        MINIMAL + 'listen = "999.1.1.1:5060"\n',
        't.toml: sip.listen: "999.1.1.1" is not an IPv4 address',
        id="bad-ipv4",
    ),
    pytest.param(
        MINIMAL + 'listen = "bad_host:5060"\n',
        't.toml: sip.listen: "bad_host" is not an IP address or host name',
        id="bad-hostname",
    ),
    pytest.param(
        MINIMAL + 'tls_listen = "127.0.0.1:99999"\n',
        "t.toml: sip.tls_listen: port 99999 is out of range 1-65535",
        id="tls-port-too-high",
    ),
    # RTP range
    pytest.param(
        MINIMAL + '[rtp]\nports = "30000:30999"\n',
        't.toml: rtp.ports: expected LOW-HIGH (e.g. "30000-30999"), got "30000:30999"',
        id="rtp-format",
    ),
    pytest.param(
        MINIMAL + '[rtp]\nports = "30000-70000"\n',
        "t.toml: rtp.ports: port 70000 is out of range 1-65535",
        id="rtp-out-of-range",
    ),
    pytest.param(
        MINIMAL + '[rtp]\nports = "31000-30000"\n',
        "t.toml: rtp.ports: low port 31000 is above high port 30000",
        id="rtp-low-above-high",
    ),
    pytest.param(
        MINIMAL + '[rtp]\nports = "30001-30999"\n',
        "t.toml: rtp.ports: low port 30001 is odd; RTP needs an even port, "
        "RTCP the next odd one",
        id="rtp-odd-low",
    ),
    pytest.param(
        MINIMAL + '[rtp]\nports = "30000-30002"\n',
        "t.toml: rtp.ports: range 30000-30002 has 3 ports; at least 4 are needed",
        id="rtp-too-small",
    ),
    pytest.param(
        MINIMAL + '[rtp]\nports = "5000-5999"\n',
        "t.toml: rtp.ports: RTP range 5000-5999 (rtp.ports) contains the SIP port "
        "5060 (sip.listen)",
        id="rtp-overlaps-sip",
    ),
    pytest.param(
        MINIMAL + 'listen = "127.0.0.1:30998"\n',
        "t.toml: rtp.ports: RTP range 30000-30999 (rtp.ports) contains the SIP port "
        "30998 (sip.listen)",
        id="sip-inside-rtp",
    ),
    # timers and sizes
    pytest.param(
        MINIMAL + "t1 = -1\n",
        "t.toml: sip.t1: must be greater than 0, got -1",
        id="negative-t1",
    ),
    pytest.param(
        MINIMAL + "t4 = 0\n",
        "t.toml: sip.t4: must be greater than 0, got 0",
        id="zero-t4",
    ),
    pytest.param(
        MINIMAL + "t2 = inf\n",
        "t.toml: sip.t2: must be a finite number, got inf",
        id="infinite-t2",
    ),
    pytest.param(
        MINIMAL + "t1 = nan\n",
        "t.toml: sip.t1: must be a finite number, got nan",
        id="nan-t1",
    ),
    pytest.param(
        MINIMAL + "t1 = 2.0\nt2 = 1.5\n",
        "t.toml: sip.t2: 1.5 is less than sip.t1 (2.0)",
        id="t2-below-t1",
    ),
    pytest.param(
        MINIMAL + "tcp_idle_timeout = -0.5\n",
        "t.toml: sip.tcp_idle_timeout: must be greater than 0, got -0.5",
        id="negative-idle-timeout",
    ),
    pytest.param(
        MINIMAL + "udp_max_size = 100\n",
        "t.toml: sip.udp_max_size: must be between 512 and 65507, got 100",
        id="udp-max-size",
    ),
    pytest.param(
        MINIMAL + "[registrar]\nqualify_interval = -30\n",
        "t.toml: registrar.qualify_interval: must not be negative, got -30",
        id="negative-qualify",
    ),
    pytest.param(
        MINIMAL + "[registrar]\nqualify_timeout_count = 0\n",
        "t.toml: registrar.qualify_timeout_count: must be at least 1, got 0",
        id="qualify-count",
    ),
    pytest.param(
        MINIMAL + "[registrar]\nmin_expires = 0\n",
        "t.toml: registrar.min_expires: must be between 1 and 4294967295, got 0",
        id="min-expires-zero",
    ),
    pytest.param(
        MINIMAL + "[registrar]\nmax_expires = 4294967296\n",
        "t.toml: registrar.max_expires: must be between 1 and 4294967295, got 4294967296",
        id="max-expires-too-big",
    ),
    pytest.param(
        MINIMAL + "[registrar]\nmin_expires = 4000\n",
        "t.toml: registrar.min_expires: 4000 is greater than registrar.max_expires (3600)",
        id="min-above-max",
    ),
    pytest.param(
        MINIMAL + "[registrar]\ndefault_expires = 30\n",
        "t.toml: registrar.default_expires: 30 is not between registrar.min_expires (60) "
        "and registrar.max_expires (3600)",
        id="default-outside",
    ),
    # text values
    pytest.param(
        '[sip]\nrealm = ""\n',
        "t.toml: sip.realm: must not be empty",
        id="empty-realm",
    ),
    pytest.param(
        "[sip]\nrealm = 'a\"b'\n",
        't.toml: sip.realm: must not contain quotes or backslashes, got "a\\"b"',
        id="quote-in-realm",
    ),
    pytest.param(
        MINIMAL + 'user_agent = "ua\\r\\nX-Injected: 1"\n',
        "t.toml: sip.user_agent: must not contain control characters, "
        'got "ua\\r\\nX-Injected: 1"',
        id="crlf-in-user-agent",
    ),
    pytest.param(
        MINIMAL + '[log]\nlevel = "loud"\n',
        't.toml: log.level: "loud" is not a log level '
        "(expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL)",
        id="log-level",
    ),
    pytest.param(
        MINIMAL + '[rtp]\nmedia_priority = "urgent"\n',
        't.toml: rtp.media_priority: "urgent" is not a media priority '
        "(expected one of realtime, high, normal)",
        id="media-priority",
    ),
    pytest.param(
        MINIMAL + '[store]\npath = ""\n',
        "t.toml: store.path: must not be empty",
        id="empty-store-path",
    ),
    pytest.param(
        MINIMAL + "[store]\npath = 'no/such/dir/x.db'\n",
        't.toml: store.path: directory "no/such/dir" does not exist',
        id="store-dir-missing",
    ),
    pytest.param(
        MINIMAL + "trace_file = 'no/such/dir/trace.log'\n",
        't.toml: sip.trace_file: directory "no/such/dir" does not exist',
        id="trace-dir-missing",
    ),
    # TLS
    pytest.param(
        MINIMAL + "tls_certificate = 'no-such-cert.pem'\n",
        't.toml: sip.tls_certificate: file not found: "no-such-cert.pem"',
        id="tls-cert-missing-file",
    ),
    pytest.param(
        MINIMAL + 'tls_listen = "127.0.0.1:5061"\n',
        "t.toml: sip.tls_certificate: required when sip.tls_listen is set",
        id="tls-without-cert",
    ),
    # users
    pytest.param(
        MINIMAL + '[[users]]\nname = "10 01"\npassword = "x"\n',
        't.toml: users[1].name: "10 01" is not a valid SIP user name '
        "(letters, digits and -_.!~*'()&=+$,;?/)",
        id="bad-user-name",
    ),
    pytest.param(
        MINIMAL + '[[users]]\nname = "a@b"\npassword = "x"\n',
        't.toml: users[1].name: "a@b" is not a valid SIP user name '
        "(letters, digits and -_.!~*'()&=+$,;?/)",
        id="at-in-user-name",
    ),
    pytest.param(
        MINIMAL + '[[users]]\nname = "1001"\npassword = ""\n',
        "t.toml: users[1].password: must not be empty",
        id="empty-password",
    ),
    pytest.param(
        MINIMAL + USER + 'display_name = "A\\u0000B"\n',
        "t.toml: users[1].display_name: must not contain control characters, "
        'got "A\\u0000B"',
        id="control-in-display-name",
    ),
    pytest.param(
        MINIMAL + USER + USER,
        't.toml: users[2].name: duplicate user "1001" (first in users[1])',
        id="duplicate-user",
    ),
    pytest.param(
        MINIMAL + USER + f'ha1_md5 = "{MD5}"\nha1_sha256 = "{SHA256}"\n',
        "t.toml: users[1].password: give either password or ha1_md5 + ha1_sha256, "
        "not both",
        id="password-and-ha1",
    ),
    pytest.param(
        MINIMAL + f'[[users]]\nname = "1001"\nha1_md5 = "{MD5}"\n',
        "t.toml: users[1].ha1_sha256: missing; ha1_md5 and ha1_sha256 are given together",
        id="md5-without-sha256",
    ),
    pytest.param(
        MINIMAL + f'[[users]]\nname = "1001"\nha1_sha256 = "{SHA256}"\n',
        "t.toml: users[1].ha1_md5: missing; ha1_md5 and ha1_sha256 are given together",
        id="sha256-without-md5",
    ),
    pytest.param(
        MINIMAL + '[[users]]\nname = "1001"\n',
        't.toml: users[1]: user "1001" needs a password or ha1_md5 + ha1_sha256',
        id="no-credentials",
    ),
    pytest.param(
        MINIMAL
        + f'[[users]]\nname = "1"\nha1_md5 = "{MD5[:-1]}"\nha1_sha256 = "{SHA256}"\n',
        "t.toml: users[1].ha1_md5: must be 32 hexadecimal digits "
        f'(MD5 of name:realm:password), got "{MD5[:-1]}"',
        id="short-md5",
    ),
    pytest.param(
        MINIMAL
        + f'[[users]]\nname = "1"\nha1_md5 = "{MD5}"\nha1_sha256 = "{"g" * 64}"\n',
        "t.toml: users[1].ha1_sha256: must be 64 hexadecimal digits "
        f'(SHA-256 of name:realm:password), got "{"g" * 57}..."',
        id="non-hex-sha256",
    ),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_error_message(text: str, message: str) -> None:
    assert error_of(text) == message


def test_error_carries_its_parts() -> None:
    with pytest.raises(ConfigError) as info:
        parse(MINIMAL + 'listen = "127.0.0.1:70000"\n')
    assert info.value.source == SOURCE
    assert info.value.key == "sip.listen"
    assert info.value.problem == "port 70000 is out of range 1-65535"


def test_tls_key_required_too(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    text = MINIMAL + f"tls_listen = '127.0.0.1:5061'\ntls_certificate = '{cert}'\n"
    assert (
        error_of(text)
        == "t.toml: sip.tls_private_key: required when sip.tls_listen is set"
    )


@pytest.mark.parametrize(
    ("listen", "tls_listen"),
    [
        ("127.0.0.1:5060", "127.0.0.1:5060"),
        ("0.0.0.0:5060", "127.0.0.1:5060"),
        ("127.0.0.1:5060", "[::]:5060"),
    ],
)
def test_tls_port_clashes_with_tcp(
    tmp_path: Path, listen: str, tls_listen: str
) -> None:
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    text = (
        MINIMAL + f"listen = '{listen}'\ntls_listen = '{tls_listen}'\n"
        f"tls_certificate = '{tmp_path / 'cert.pem'}'\n"
        f"tls_private_key = '{tmp_path / 'key.pem'}'\n"
    )
    assert error_of(text) == (
        "t.toml: sip.tls_listen: port 5060 is already used for SIP over TCP (sip.listen)"
    )


def test_tls_same_port_other_address_allowed(tmp_path: Path) -> None:
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    text = (
        MINIMAL + "listen = '127.0.0.1:5060'\ntls_listen = '127.0.0.2:5060'\n"
        f"tls_certificate = '{tmp_path / 'cert.pem'}'\n"
        f"tls_private_key = '{tmp_path / 'key.pem'}'\n"
    )
    assert parse(text).sip.tls_listen_port == 5060


def test_invalid_toml_is_one_line() -> None:
    message = error_of("[sip]\nrealm = \n")
    assert message.startswith("t.toml: invalid TOML: ")
    assert "(at line 2, column 9)" in message
    assert "\n" not in message


def test_duplicate_toml_key_is_invalid_toml() -> None:
    assert error_of(MINIMAL + 'realm = "again"\n').startswith("t.toml: invalid TOML: ")


def test_first_problem_wins() -> None:
    text = '[sip]\nlisten = "x"\n[log]\nlevel = "loud"\n'
    assert error_of(text).startswith("t.toml: sip.listen: ")


@given(st.text(max_size=40))
def test_any_listen_value_is_accepted_or_one_line_error(text: str) -> None:
    config = parse(MINIMAL)
    try:
        result = apply_overrides(config, **{**no_overrides(), "listen": text})
    except ConfigError as error:
        message = str(error)
        assert message.startswith("--listen: ")
        assert "\n" not in message and "\r" not in message
    else:
        assert 1 <= result.sip.listen_port <= 65535


@given(st.integers(0, 70000), st.integers(0, 70000))
def test_any_rtp_range_obeys_the_rules(low: int, high: int) -> None:
    config = parse(MINIMAL)
    try:
        result = apply_overrides(
            config, **{**no_overrides(), "rtp_ports": f"{low}-{high}"}
        )
    except ConfigError as error:
        assert str(error).startswith("--rtp-ports: ")
    else:
        rtp = result.rtp
        assert rtp.port_low % 2 == 0
        assert rtp.port_high - rtp.port_low + 1 >= 4
        assert rtp.port_low >= 1 and rtp.port_high <= 65535
        assert not rtp.port_low <= result.sip.listen_port <= rtp.port_high


# --- files ---------------------------------------------------------------------------


def test_load_config_from_file(tmp_path: Path) -> None:
    path = tmp_path / "my.toml"
    path.write_text(MINIMAL)
    config = load_config(path)
    assert config.source == str(path)
    assert load_config(str(path)) == config


def test_load_config_names_the_file_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "demo.toml"
    path.write_text(MINIMAL + 'listen = "127.0.0.1:70000"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: sip.listen: port 70000 is out of range 1-65535"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: cannot read: No such file or directory"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"{tmp_path}: cannot read: Is a directory"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[sip]\nrealm = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: not UTF-8 (byte 18)"


# --- the demo ------------------------------------------------------------------------


def test_demo_config_loads() -> None:
    config = load_config(None)
    assert config.source == DEMO_SOURCE
    assert (config.sip.listen_host, config.sip.listen_port) == ("127.0.0.1", 5060)
    assert config.sip.tls_listen_host is None
    assert config.sip.realm == "ccswitch"
    assert (config.rtp.port_low, config.rtp.port_high) == (30000, 30999)
    assert config.store.path == "ccswitch.db"
    assert [u.name for u in config.users] == [str(n) for n in range(1001, 1011)]
    assert all(u.password == f"demo{u.name}" for u in config.users)


def test_demo_rtp_range_is_clear_of_the_recipe_ports() -> None:
    # The phone and SIPp recipes use RTP ports 20000-21299 on the same host.
    rtp = load_config(None).rtp
    assert rtp.port_low > 21299 or rtp.port_high < 20000


def test_demo_documents_every_key() -> None:
    text = resources.files("ccswitch").joinpath("demo.toml").read_text("utf-8")
    for section in SECTIONS:
        assert re.search(rf"^# \[+{section.name}\]+ -- ", text, re.MULTILINE), (
            section.name
        )
        for key in section.keys:
            assert re.search(rf"\b{key.name}\b", text), f"{section.name}.{key.name}"


def test_demo_binds_loopback_only() -> None:
    text = resources.files("ccswitch").joinpath("demo.toml").read_text("utf-8")
    assert re.findall(r'^(?:tls_)?listen = "([^"]*)"', text, re.MULTILINE) == [
        "127.0.0.1:5060",
        "",
    ]


# --- overrides -----------------------------------------------------------------------


def test_no_overrides_change_nothing() -> None:
    config = load_config(None)
    assert apply_overrides(config, **no_overrides()) == config


def test_overrides_replace_their_keys(tmp_path: Path) -> None:
    config = load_config(None)
    result = apply_overrides(
        config,
        listen="[::1]:5070",
        rtp_ports="40000-40999",
        db=str(tmp_path / "x.db"),
        log_level="debug",
        trace_file=str(tmp_path / "trace.log"),
    )
    assert result == dataclasses.replace(
        config,
        sip=dataclasses.replace(
            config.sip,
            listen_host="::1",
            listen_port=5070,
            trace_file=str(tmp_path / "trace.log"),
        ),
        rtp=RtpConfig(port_low=40000, port_high=40999),
        store=StoreConfig(path=str(tmp_path / "x.db")),
        log=LogConfig(level="DEBUG"),
    )
    assert result.source == DEMO_SOURCE


def test_empty_trace_override_turns_trace_off(tmp_path: Path) -> None:
    config = parse(MINIMAL + f"trace_file = '{tmp_path / 't.log'}'\n")
    result = apply_overrides(config, **{**no_overrides(), "trace_file": ""})
    assert result.sip.trace_file is None


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("listen", "127.0.0.1:70000", "--listen: port 70000 is out of range 1-65535"),
        (
            "listen",
            "::1:5060",
            '--listen: IPv6 address "::1" must be in brackets, e.g. "[::1]:5060"',
        ),
        (
            "rtp_ports",
            "30001-30999",
            "--rtp-ports: low port 30001 is odd; RTP needs an even port, RTCP the next odd one",
        ),
        ("db", "", "--db: must not be empty"),
        ("db", "no/such/dir/x.db", '--db: directory "no/such/dir" does not exist'),
        (
            "log_level",
            "loud",
            '--log-level: "loud" is not a log level '
            "(expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL)",
        ),
        (
            "trace_file",
            "no/such/dir/t.log",
            '--sip-trace: directory "no/such/dir" does not exist',
        ),
        (
            "listen",
            "127.0.0.1:30002",
            "--listen: RTP range 30000-30999 (rtp.ports) contains the SIP port 30002 "
            "(--listen)",
        ),
        (
            "rtp_ports",
            "5000-5999",
            "--rtp-ports: RTP range 5000-5999 (--rtp-ports) contains the SIP port 5060 "
            "(sip.listen)",
        ),
    ],
)
def test_override_errors_name_the_option(option: str, value: str, message: str) -> None:
    config = parse(MINIMAL)
    with pytest.raises(ConfigError) as info:
        apply_overrides(config, **{**no_overrides(), option: value})
    assert str(info.value) == message
    assert info.value.source is None


def test_override_blame_goes_to_the_first_overridden_key() -> None:
    config = parse(MINIMAL)
    with pytest.raises(ConfigError) as info:
        apply_overrides(
            config,
            **{
                **no_overrides(),
                "listen": "127.0.0.1:40000",
                "rtp_ports": "40000-40099",
            },
        )
    assert str(info.value) == (
        "--rtp-ports: RTP range 40000-40099 (--rtp-ports) contains the SIP port 40000 "
        "(--listen)"
    )


def test_override_table_covers_every_option() -> None:
    assert set(OVERRIDES) == {
        "--listen",
        "--rtp-ports",
        "--media-workers",
        "--db",
        "--log-level",
        "--sip-trace",
    }
    sections = {section.name: section for section in SECTIONS}
    for section_name, key_name in OVERRIDES.values():
        sections[section_name].key(key_name)  # raises KeyError if the schema lost it


def test_check_value() -> None:
    assert check_value("users.name", "1001") == "1001"
    assert check_value("sip.listen", "[::1]:5060") == ("::1", 5060)
    with pytest.raises(ConfigError) as info:
        check_value("users.name", "a b", label="NAME")
    assert str(info.value) == (
        'NAME: "a b" is not a valid SIP user name (letters, digits and -_.!~*\'()&=+$,;?/)'
    )
    with pytest.raises(ConfigError) as info:
        check_value("sip.realm", 5)
    assert str(info.value) == "sip.realm: expected a string, got integer 5"


# --- rendering -----------------------------------------------------------------------


def test_render_round_trips_without_users() -> None:
    # The demo's agents name its users: without users, without agents.
    config = dataclasses.replace(load_config(None), users=(), agents=())
    again = parse_config(render_config(config), source="again")
    assert again == dataclasses.replace(config, source="again")


def test_render_round_trips_ipv6_and_tls(tmp_path: Path) -> None:
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    text = (
        '[sip]\nrealm = "r"\nlisten = "[::1]:5060"\ntls_listen = "[::1]:5061"\n'
        f"tls_certificate = '{tmp_path / 'cert.pem'}'\n"
        f"tls_private_key = '{tmp_path / 'key.pem'}'\n"
        'user_agent = "Grüße ☎ ccswitch"\n'
        "[store]\npath = 'quote\"and\\backslash.db'\n"
    )
    config = parse(text)
    assert config.store.path == 'quote"and\\backslash.db'
    assert parse_config(render_config(config), source=SOURCE) == config


def test_render_hides_secrets() -> None:
    text = (
        MINIMAL
        + USER
        + f'[[users]]\nname = "1002"\nha1_md5 = "{MD5}"\nha1_sha256 = "{SHA256}"\n'
    )
    rendered = render_config(parse(text))
    assert "secret" not in rendered
    assert MD5 not in rendered and SHA256 not in rendered
    assert rendered.count("# password = (hidden)") == 1
    assert "# ha1_md5 = (hidden)" in rendered
    assert "# ha1_sha256 = (hidden)" in rendered
    assert rendered.startswith("# Effective configuration from t.toml.\n")


# --- trunks, dialplan, limits (issue 4) ----------------------------------------------

TRUNK = '[[trunks]]\nname = "demo"\nhost = "127.0.0.1"\n'


def test_new_sections_default_to_nothing() -> None:
    config = parse(MINIMAL)
    assert config.limits == LimitsConfig(
        max_calls=0, max_call_duration=14400.0, retry_after=30, ring_timeout=60.0
    )
    assert config.trunks == ()
    assert config.dialplan == ()


def test_trunks_dialplan_and_limits_written_out() -> None:
    text = (
        MINIMAL
        + USER
        + """
[limits]
max_calls = 200
max_call_duration = 3600
retry_after = 60
ring_timeout = 25.5

[[trunks]]
name = "carrier"
host = "sip.carrier.example"
port = 5080
transport = "tls"
inbound_sources = ["203.0.113.0/24", "2001:db8::1", "198.51.100.7/32"]
inbound_username = "carrier-in"
inbound_password = "in-secret"
register = true
username = "acct"
password = "secret"
domain = "carrier.example"
expires = 600
options_interval = 15
options_failures = 5
max_calls = 30
country_code = "7"
national_prefix = "8"
international_prefix = "810"
number_format = "national"
latching = true

[[dialplan]]
pattern = "_9X."
to = "trunk:carrier"
from = "users"
strip = 1
prepend = "+"

[[dialplan]]
pattern = "601"
to = "app:tone"
args = { frequency = 1000, seconds = 5.5, prompt = "demo-tone" }

[[dialplan]]
pattern = "re:^0$"
to = "user:1001"
"""
    )
    config = parse(text)
    assert config.limits == LimitsConfig(
        max_calls=200, max_call_duration=3600.0, retry_after=60, ring_timeout=25.5
    )
    assert config.trunks == (
        TrunkConfig(
            name="carrier",
            host="sip.carrier.example",
            port=5080,
            transport="TLS",
            inbound_sources=("203.0.113.0/24", "2001:db8::1/128", "198.51.100.7/32"),
            inbound_username="carrier-in",
            inbound_password="in-secret",
            register=True,
            username="acct",
            password="secret",
            domain="carrier.example",
            expires=600,
            options_interval=15.0,
            options_failures=5,
            max_calls=30,
            country_code="7",
            national_prefix="8",
            international_prefix="810",
            number_format="national",
            latching=True,
        ),
    )
    assert config.trunks[0].numbering.number_format == "national"
    assert config.dialplan == (
        DialplanRuleConfig(
            pattern="_9X.", to="trunk:carrier", from_="users", strip=1, prepend="+"
        ),
        DialplanRuleConfig(
            pattern="601",
            to="app:tone",
            args=(("frequency", "1000"), ("seconds", "5.5"), ("prompt", "demo-tone")),
        ),
        DialplanRuleConfig(pattern="re:^0$", to="user:1001"),
    )
    rendered = render_config(config)
    assert 'inbound_sources = ["203.0.113.0/24", "2001:db8::1/128",' in rendered
    assert 'args = { frequency = "1000", seconds = "5.5", prompt = "demo-tone" }' in (
        rendered
    )
    assert "# inbound_password = (hidden)" in rendered
    assert "in-secret" not in rendered and '"secret"' not in rendered


def test_trunk_defaults() -> None:
    [trunk] = parse(MINIMAL + TRUNK).trunks
    assert trunk == TrunkConfig(name="demo", host="127.0.0.1")
    assert (trunk.port, trunk.transport, trunk.options_interval) == (5060, "UDP", 60.0)
    assert trunk.number_format == "as-dialled" and not trunk.latching


def test_render_round_trips_trunks_and_dialplan() -> None:
    text = (
        MINIMAL
        + TRUNK
        + 'inbound_sources = ["10.0.0.0/8"]\n'
        + '[[dialplan]]\npattern = "_9."\nto = "trunk:demo"\n'
        + '[[dialplan]]\npattern = "7"\nto = "app:tone"\nargs = { seconds = "3" }\n'
        + "[limits]\nmax_calls = 5\n"
    )
    config = parse(text)
    assert parse_config(render_config(config), source=SOURCE) == config


def test_demo_dialplan_and_trunk() -> None:
    config = load_config(None)
    [trunk] = config.trunks
    assert (trunk.name, trunk.host, trunk.inbound_sources) == (
        "demo",
        "127.0.0.1",
        ("127.0.0.1/32",),
    )
    assert not trunk.register and trunk.inbound_username is None
    assert [(rule.pattern, rule.to) for rule in config.dialplan] == [
        ("re:10(0[1-9]|10)", "user"),
        ("600", "app:echo"),
        ("601", "app:tone"),
        ("4000", "ivr:demo"),
        ("4001", "queue:support"),
        ("4002", "queue:sales"),
        ("*41", "app:agent"),
        ("*42", "app:agent"),
        ("*43", "app:agent"),
        ("*44", "app:agent"),
        ("_9X.", "trunk:demo"),
    ]
    assert config.dialplan[2].args == (
        ("frequency", "1000"),
        ("seconds", "5"),
        ("prompt", "goodbye"),
    )
    assert config.dialplan[-1].strip == 1
    assert not any(user.allow_outbound for user in config.users)


NEW_ERRORS = [
    # [limits]
    pytest.param(
        MINIMAL + "[limits]\nmax_calls = -1\n",
        "t.toml: limits.max_calls: must be at least 0, got -1",
        id="limits-negative-calls",
    ),
    pytest.param(
        MINIMAL + "[limits]\nretry_after = 0\n",
        "t.toml: limits.retry_after: must be between 1 and 86400, got 0",
        id="limits-retry-after",
    ),
    pytest.param(
        MINIMAL + "[limits]\nmax_call_duration = -5\n",
        "t.toml: limits.max_call_duration: must not be negative, got -5",
        id="limits-duration",
    ),
    pytest.param(
        MINIMAL + "[limits]\nring_timeout = 0\n",
        "t.toml: limits.ring_timeout: must be greater than 0, got 0",
        id="limits-ring-timeout-zero",
    ),
    pytest.param(
        MINIMAL + '[limits]\nring_timeout = "60"\n',
        't.toml: limits.ring_timeout: expected a number, got string "60"',
        id="limits-ring-timeout-string",
    ),
    pytest.param(
        MINIMAL + "[limits]\nmax_cals = 5\n",
        't.toml: limits.max_cals: unknown key; did you mean "max_calls"?',
        id="limits-unknown-key",
    ),
    # [[trunks]]
    pytest.param(
        MINIMAL + '[[trunks]]\nname = "x"\n',
        "t.toml: trunks[1].host: required key is missing",
        id="trunk-no-host",
    ),
    pytest.param(
        MINIMAL + '[[trunks]]\nname = "a b"\nhost = "h"\n',
        't.toml: trunks[1].name: "a b" is not a valid name (letters, digits and _.-)',
        id="trunk-bad-name",
    ),
    pytest.param(
        MINIMAL + '[[trunks]]\nname = "t"\nhost = "999.1.1.1"\n',
        't.toml: trunks[1].host: "999.1.1.1" is not an IPv4 address',
        id="trunk-bad-host",
    ),
    pytest.param(
        MINIMAL + '[[trunks]]\nname = "t"\nhost = "[::g]"\n',
        't.toml: trunks[1].host: "[::g]" is not an IPv6 address',
        id="trunk-bad-ipv6",
    ),
    pytest.param(
        MINIMAL + TRUNK + "port = 0\n",
        "t.toml: trunks[1].port: port 0 is out of range 1-65535",
        id="trunk-port",
    ),
    pytest.param(
        MINIMAL + TRUNK + 'transport = "sctp"\n',
        't.toml: trunks[1].transport: "sctp" is not a transport '
        "(expected one of UDP, TCP, TLS)",
        id="trunk-transport",
    ),
    pytest.param(
        MINIMAL + TRUNK + 'inbound_sources = "127.0.0.1"\n',
        't.toml: trunks[1].inbound_sources: expected an array of strings, got string "127.0.0.1"',
        id="trunk-sources-not-array",
    ),
    pytest.param(
        MINIMAL + TRUNK + 'inbound_sources = ["10.0.0.1", 5]\n',
        "t.toml: trunks[1].inbound_sources: expected an array of strings, "
        "got an array with integer 5",
        id="trunk-sources-mixed",
    ),
    pytest.param(
        MINIMAL + TRUNK + 'inbound_sources = ["10.0.0.1/8"]\n',
        't.toml: trunks[1].inbound_sources: "10.0.0.1/8" has host bits set; '
        'did you mean "10.0.0.0/8"?',
        id="trunk-sources-host-bits",
    ),
    pytest.param(
        MINIMAL + TRUNK + 'inbound_sources = ["carrier"]\n',
        't.toml: trunks[1].inbound_sources: "carrier" is not an IP address or CIDR '
        'block (e.g. "10.0.0.0/8")',
        id="trunk-sources-garbage",
    ),
    pytest.param(
        MINIMAL + TRUNK + "register = true\n",
        "t.toml: trunks[1].username: required when register = true",
        id="trunk-register-no-username",
    ),
    pytest.param(
        MINIMAL + TRUNK + 'register = true\nusername = "u"\n',
        "t.toml: trunks[1].password: required when register = true",
        id="trunk-register-no-password",
    ),
    pytest.param(
        MINIMAL + TRUNK + 'inbound_username = "in"\n',
        "t.toml: trunks[1].inbound_password: missing; inbound_username and "
        "inbound_password are given together",
        id="trunk-inbound-no-password",
    ),
    pytest.param(
        MINIMAL + USER + TRUNK + 'inbound_username = "1001"\ninbound_password = "p"\n',
        't.toml: trunks[1].inbound_username: "1001" is also a user name; inbound '
        "trunk credentials must not be a user's",
        id="trunk-inbound-is-user",
    ),
    pytest.param(
        MINIMAL + TRUNK + 'country_code = "+7"\n',
        't.toml: trunks[1].country_code: must be digits only, got "+7"',
        id="trunk-country-code",
    ),
    pytest.param(
        MINIMAL + TRUNK + 'number_format = "E164"\n',
        't.toml: trunks[1].number_format: "E164" is not a number format '
        "(expected one of e164, digits, national, as-dialled)",
        id="trunk-number-format",
    ),
    pytest.param(
        MINIMAL + TRUNK + 'number_format = "national"\ncountry_code = "7"\n',
        't.toml: trunks[1].number_format: "national" needs country_code and '
        "international_prefix",
        id="trunk-national-incomplete",
    ),
    pytest.param(
        MINIMAL + TRUNK + "options_failures = 0\n",
        "t.toml: trunks[1].options_failures: must be at least 1, got 0",
        id="trunk-options-failures",
    ),
    pytest.param(
        MINIMAL + TRUNK + TRUNK,
        't.toml: trunks[2].name: duplicate trunk "demo" (first in trunks[1])',
        id="trunk-duplicate",
    ),
    # [[dialplan]]
    pytest.param(
        MINIMAL + '[[dialplan]]\nto = "app:echo"\n',
        "t.toml: dialplan[1].pattern: required key is missing",
        id="dialplan-no-pattern",
    ),
    pytest.param(
        MINIMAL + '[[dialplan]]\npattern = "_9.X"\nto = "app:echo"\n',
        "t.toml: dialplan[1].pattern: '.' is only allowed at the end of a pattern",
        id="dialplan-bad-pattern",
    ),
    pytest.param(
        MINIMAL + '[[dialplan]]\npattern = "re:(("\nto = "app:echo"\n',
        "t.toml: dialplan[1].pattern: bad regular expression: missing ), "
        "unterminated subpattern at position 1",
        id="dialplan-bad-regex",
    ),
    pytest.param(
        MINIMAL + '[[dialplan]]\npattern = "1"\nto = "phone:1"\n',
        "t.toml: dialplan[1].to: destination 'phone:1' must start with one of "
        "user:, trunk:, app:, ivr:, queue:",
        id="dialplan-bad-destination",
    ),
    pytest.param(
        MINIMAL + '[[dialplan]]\npattern = "1"\nto = "trunk:nope"\n',
        't.toml: dialplan[1].to: unknown trunk "nope"',
        id="dialplan-unknown-trunk",
    ),
    pytest.param(
        MINIMAL + '[[dialplan]]\npattern = "1"\nto = "user:bob"\n',
        't.toml: dialplan[1].to: unknown user "bob"',
        id="dialplan-unknown-user",
    ),
    pytest.param(
        MINIMAL + '[[dialplan]]\npattern = "1"\nto = "user"\nfrom = "all"\n',
        't.toml: dialplan[1].from: "all" is not a caller class '
        "(expected one of any, users, trunks)",
        id="dialplan-from",
    ),
    pytest.param(
        MINIMAL + '[[dialplan]]\npattern = "1"\nto = "user"\nstrip = -1\n',
        "t.toml: dialplan[1].strip: must be at least 0, got -1",
        id="dialplan-strip",
    ),
    pytest.param(
        MINIMAL + '[[dialplan]]\npattern = "1"\nto = "user"\nprepend = "a"\n',
        't.toml: dialplan[1].prepend: must be digits, +, * or #, got "a"',
        id="dialplan-prepend",
    ),
    pytest.param(
        MINIMAL + '[[dialplan]]\npattern = "1"\nto = "user"\nargs = { a = "b" }\n',
        't.toml: dialplan[1].args: only app: destinations take args (to is "user")',
        id="dialplan-args-not-app",
    ),
    pytest.param(
        MINIMAL + '[[dialplan]]\npattern = "1"\nto = "app:x"\nargs = "a=b"\n',
        't.toml: dialplan[1].args: expected a table, got string "a=b"',
        id="dialplan-args-not-table",
    ),
    pytest.param(
        MINIMAL + '[[dialplan]]\npattern = "1"\nto = "app:x"\nargs = { a = true }\n',
        "t.toml: dialplan[1].args: argument a must be a string or a number, "
        "got boolean true",
        id="dialplan-args-bool",
    ),
    pytest.param(
        MINIMAL + '[[dialplan]]\npattern = "1"\nto = "app:x"\nargs = { "a b" = 1 }\n',
        't.toml: dialplan[1].args: argument name "a b" is not valid '
        "(letters, digits and _.-)",
        id="dialplan-args-name",
    ),
    pytest.param(
        MINIMAL + '[[dialplan]]\npattern = "1"\nto = "app:nosuch"\n',
        't.toml: dialplan[1].to: unknown app "nosuch" '
        "(apps: echo, tone, ivr, queue, agent)",
        id="dialplan-app-unknown",
    ),
    pytest.param(
        MINIMAL
        + '[[dialplan]]\npattern = "1"\nto = "app:tone"\nargs = { volume = 3 }\n',
        "t.toml: dialplan[1].args.volume: app tone takes no argument volume "
        "(it takes: frequency, seconds, prompt)",
        id="dialplan-app-argument-unknown",
    ),
    pytest.param(
        MINIMAL
        + '[[dialplan]]\npattern = "1"\nto = "app:tone"\nargs = { seconds = "loud" }\n',
        't.toml: dialplan[1].args.seconds: must be a number, got "loud"',
        id="dialplan-app-argument-not-a-number",
    ),
    pytest.param(
        MINIMAL
        + '[[dialplan]]\npattern = "1"\nto = "app:tone"\nargs = { seconds = -5 }\n',
        "t.toml: dialplan[1].args.seconds: must be seconds between 0 and 3600, got -5",
        id="dialplan-app-argument-range",
    ),
    pytest.param(
        MINIMAL
        + '[[dialplan]]\npattern = "1"\nto = "app:tone"\nargs = { frequency = 440 }\n',
        "t.toml: dialplan[1].args.frequency: only 1000 Hz is generated, got 440",
        id="dialplan-app-tone-frequency",
    ),
    pytest.param(
        MINIMAL
        + '[[dialplan]]\npattern = "1"\nto = "app:agent"\nargs = { action = "lunch" }\n',
        "t.toml: dialplan[1].args.action: must be one of login, logout, break, "
        "available, got 'lunch'",
        id="dialplan-app-agent-action",
    ),
]


async def test_app_arguments_cover_the_apps_serve_wires() -> None:
    """The config check knows exactly the apps ``ccswitch serve`` hands calls to."""
    from ccswitch.config import APP_ARGUMENTS
    from tests.harness import demo_switch

    async with demo_switch() as switch:
        assert switch.b2bua is not None
        assert set(APP_ARGUMENTS) == set(switch.b2bua.apps)


@pytest.mark.parametrize(("text", "message"), NEW_ERRORS)
def test_new_section_error_messages(text: str, message: str) -> None:
    assert error_of(text) == message


def test_media_workers_need_a_port_pair_each() -> None:
    demo = load_config(None)
    with pytest.raises(ConfigError) as caught:
        apply_overrides(
            demo,
            listen=None,
            rtp_ports="40000-40003",
            db=None,
            log_level=None,
            trace_file=None,
            media_workers=3,
        )
    assert str(caught.value) == (
        "--rtp-ports: RTP range 40000-40003 (--rtp-ports) has fewer port pairs than "
        "--media-workers (3)"
    )
    two = apply_overrides(
        demo,
        listen=None,
        rtp_ports="40000-40003",
        db=None,
        log_level=None,
        trace_file=None,
        media_workers=2,
    )
    assert two.rtp.media_workers == 2


def test_media_priority_defaults_to_realtime_and_takes_the_others() -> None:
    assert parse(MINIMAL).rtp.media_priority == "realtime"
    for name in ("high", "normal"):
        config = parse(MINIMAL + f'[rtp]\nmedia_priority = "{name}"\n')
        assert config.rtp.media_priority == name


# --- names that must exist: queues, flows, destinations, music ------------------------

DEMO_TEXT = (Path(__file__).resolve().parents[1] / "ccswitch" / "demo.toml").read_text()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'to = "queue:support"',
            'to = "queue:suport"',
            'unknown queue "suport"',
        ),
        (
            'to = "ivr:demo"',
            'to = "ivr:dmeo"',
            'no flow "dmeo"',
        ),
        (
            '[[queues]]\nname = "support"\n',
            '[[queues]]\nname = "support"\nmusic = "/nonexistent/moh.wav"\n',
            '"/nonexistent/moh.wav": no such file',
        ),
    ],
)
def test_references_to_missing_things_are_refused(
    old: str, new: str, message: str
) -> None:
    assert old in DEMO_TEXT, old
    text = DEMO_TEXT.replace(old, new, 1)
    assert message in error_of(text)


@pytest.mark.parametrize(
    ("destination", "message"),
    [
        ("queue:nosuch", 'unknown queue "nosuch"'),
        ("user:1999", 'unknown user "1999"'),
        ("ivr:demo", '"ivr:demo" is not queue:NAME or user:NAME'),
    ],
)
def test_queue_exit_destinations_must_exist(destination: str, message: str) -> None:
    head, sep, rest = DEMO_TEXT.partition('[[queues]]\nname = "support"\n')
    text = f'{head}{sep}exit_key = "0"\nexit_destination = "{destination}"\n{rest}'
    assert message in error_of(text)
