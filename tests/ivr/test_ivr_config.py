"""The [ivr] configuration section: defaults, and one clear line per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccswitch.config import ConfigError, load_config, parse_config, render_config
from ccswitch.ivr_runtime import flow_folder, prompt_library
from ivr.prompts import DEFAULT_PROMPTS
from ivr.service import DEMO_FLOWS

MINIMAL = '[sip]\nrealm = "test"\n'


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="t.toml")
    return str(info.value)


def test_defaults_are_the_demo_flows_and_default_prompts() -> None:
    config = parse_config(MINIMAL, source="t.toml").ivr
    assert (config.flows, config.prompts) == (None, None)
    assert config.time_zone == "Europe/Moscow"
    assert config.languages == ("ru", "en")
    assert config.crm_listen_host is None and config.pid_file is None
    assert flow_folder(config) == DEMO_FLOWS
    assert prompt_library(config).root == DEFAULT_PROMPTS


def test_the_demo_serves_its_crm_on_loopback() -> None:
    config = load_config(None).ivr
    assert (config.crm_listen_host, config.crm_listen_port) == ("127.0.0.1", 5059)
    assert dict(config.variables) == {"crm_url": "http://127.0.0.1:5059/customers"}


def test_a_full_section(tmp_path: Path) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "prompts").mkdir()
    text = MINIMAL + (
        f'[ivr]\nflows = "{tmp_path / "flows"}"\nprompts = "{tmp_path / "prompts"}"\n'
        'time_zone = "Asia/Yekaterinburg"\nlanguages = ["en"]\n'
        'crm_listen = "127.0.0.1:8089"\n'
        f'pid_file = "{tmp_path / "s.pid"}"\n'
        '[ivr.variables]\ncrm_url = "http://crm/x"\nretries = 3\n'
    )
    config = parse_config(text, source="t.toml")
    ivr = config.ivr
    assert ivr.languages == ("en",)
    assert ivr.variables == (("crm_url", "http://crm/x"), ("retries", "3"))
    assert prompt_library(ivr).default_language == "en"
    # config show renders it back to the same configuration
    again = parse_config(render_config(config), source="again")
    assert again.ivr == ivr


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ('flows = "/nonexistent/flows"', 'ivr.flows: folder not found: "/nonexistent/flows"'),
        (
            'time_zone = "Mars/Olympus"',
            'ivr.time_zone: unknown time zone "Mars/Olympus" (an IANA name such as '
            "Europe/Moscow)",
        ),
        ('languages = ["ru", "de"]', 'ivr.languages: "de" is not one of ru, en'),
        ("languages = []", "ivr.languages: must name at least one language; the first "
         "is the default"),
        ('languages = ["ru", "ru"]', "ivr.languages: names a language twice"),
        ("time_zone = 3", "ivr.time_zone: expected a string, got integer 3"),
        ('crm_listen = "127.0.0.1:99999"', "ivr.crm_listen: port 99999 is out of range "
         "1-65535"),
        ("variables = { 1x = 2 }", 'ivr.variables: variable name "1x" is not valid '
         "(letters, digits and _)"),
        ("variables = { on = true }", "ivr.variables: variable on must be a string or a "
         "number, got boolean true"),
        ('flow = "x"', 'ivr.flow: unknown key; did you mean "flows"?'),
    ],
)  # fmt: skip
def test_errors(section: str, message: str) -> None:
    assert error_of(MINIMAL + "[ivr]\n" + section + "\n") == f"t.toml: {message}"
