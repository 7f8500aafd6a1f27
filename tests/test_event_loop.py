"""`serve --loop`: uvloop when installed (auto), asyncio's own on request."""

from __future__ import annotations

import sys

import pytest
import uvloop

from service.__main__ import _loop_factory
from service.settings import SettingsError


def test_auto_and_uvloop_pick_uvloop_when_installed() -> None:
    assert _loop_factory("auto") is uvloop.new_event_loop
    assert _loop_factory("uvloop") is uvloop.new_event_loop


def test_asyncio_keeps_the_standard_loop() -> None:
    assert _loop_factory("asyncio") is None


def test_without_uvloop_auto_falls_back_and_uvloop_refuses(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` fail
    assert _loop_factory("auto") is None
    with pytest.raises(SettingsError, match="uvloop is not installed"):
        _loop_factory("uvloop")
