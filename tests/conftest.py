"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import SwitchProcess, shared_dir


@pytest.fixture
def corpus() -> Path:
    """The SIP torture corpus in ../shared/corpus, read in place."""
    shared = shared_dir()
    if shared is None or not (shared / "corpus").is_dir():
        pytest.skip("../shared/corpus is not present beside this checkout")
    return shared / "corpus"


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[SwitchProcess]:
    """A running ``ccswitch serve`` on the embedded demo configuration."""
    process = SwitchProcess(workdir=tmp_path).start()
    try:
        yield process
    finally:
        process.stop()
