"""Fixtures for the IVR tests: a small prompt folder and flow texts."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.prompts import PromptLibrary
from ivr.speech import WORDS

PHRASES = ("greeting", "menu", "invalid", "goodbye", "please_hold", "closed")


def make_prompts(root: Path, *, languages: tuple[str, ...] = ("ru", "en")) -> Path:
    """Empty-but-present prompt files (the loader only checks that they exist)."""
    for language in languages:
        folder = root / language
        folder.mkdir(parents=True, exist_ok=True)
        for name in (*PHRASES, *WORDS[language]):
            (folder / f"{name}.wav").write_bytes(b"")
    return root


@pytest.fixture
def library(tmp_path: Path) -> PromptLibrary:
    return PromptLibrary(root=make_prompts(tmp_path / "prompts"))
