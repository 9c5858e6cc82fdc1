"""The master and the worker run on uvloop unless TITAN_EVENT_LOOP=asyncio says otherwise."""

from __future__ import annotations

import asyncio

import pytest

from titan_runtime import eventloop


async def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TITAN_EVENT_LOOP", raising=False)
    assert eventloop.run(loop_module()).startswith("uvloop")
    loop = eventloop.new_event_loop()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()


def test_the_standard_loop_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TITAN_EVENT_LOOP", "asyncio")
    assert eventloop.run(loop_module()).startswith("asyncio")
    loop = eventloop.new_event_loop()
    try:
        assert type(loop).__module__.startswith("asyncio")
    finally:
        loop.close()
