"""The tests' waitress thread (tests/waitress_thread.py): its stop when a descriptor of its
trigger was closed by code that did not own it names that code, and still ends the loop."""

from __future__ import annotations

import os
import time
import urllib.request

import pytest
from waitress import create_server
from waitress_thread import ServerThread


def hello(_environ: dict[str, object], start_response: object) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
    return [b"hello"]


def _serving() -> tuple[ServerThread, list[str]]:
    server = create_server(hello, host="127.0.0.1", port=0)
    closed: list[str] = []
    thread = ServerThread(server, lambda: closed.append("then"))
    port = server.socket.getsockname()[1]
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read() == b"hello"
    return thread, closed


def close_a_descriptor_it_does_not_own(fd: int) -> None:
    os.close(fd)


def test_a_stop_as_usual_warns_of_nothing(recwarn: pytest.WarningsRecorder) -> None:
    thread, closed = _serving()
    thread.stop()
    assert not thread.thread.is_alive() and closed == ["then"]
    assert not [w for w in recwarn if "trigger is gone" in str(w.message)]


def test_a_trigger_closed_by_other_code_is_named_and_the_loop_still_ends() -> None:
    thread, closed = _serving()
    trigger = thread.server.trigger
    write_end = trigger.trigger
    close_a_descriptor_it_does_not_own(write_end)
    time.sleep(0.05)  # waitress may see its read end at its end first: either way the stop names the closer
    with pytest.warns(UserWarning, match="trigger is gone") as caught:
        thread.stop()
    message = str(caught[0].message)
    assert f"descriptor {write_end} closed by:" in message
    assert "close_a_descriptor_it_does_not_own" in message
    assert not thread.thread.is_alive() and closed == ["then"]
