"""The tests' waitress thread (tests/waitress_thread.py): its stop when a descriptor of its
trigger was closed by code that did not own it names that code, and still ends the loop."""

from __future__ import annotations

import multiprocessing.connection
import os
import time
import urllib.request
from collections.abc import Callable

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


def close_a_connection_on_a_descriptor_it_does_not_own(fd: int) -> None:
    multiprocessing.connection.Connection(fd).close()  # multiprocessing's own os.close, bound at its import


CLOSERS = [close_a_descriptor_it_does_not_own, close_a_connection_on_a_descriptor_it_does_not_own]


def test_a_stop_as_usual_warns_of_nothing(recwarn: pytest.WarningsRecorder) -> None:
    thread, closed = _serving()
    thread.stop()
    assert not thread.thread.is_alive() and closed == ["then"]
    assert not [w for w in recwarn if "trigger is gone" in str(w.message)]


@pytest.mark.parametrize("closer", CLOSERS, ids=["os.close", "Connection.close"])
@pytest.mark.parametrize("noticed", [True, False], ids=["waitress-noticed", "waitress-did-not-notice"])
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")  # the loop ends, not dies
def test_a_trigger_closed_by_other_code_is_named_and_the_loop_still_ends(
    noticed: bool, closer: Callable[[int], None]
) -> None:
    """Both ways it was seen in CI: waitress read its trigger's end and closed it itself, or it
    did not (another copy of the write end, in a forked process, kept the pipe open) and the
    stop's pull fails with EBADF."""
    thread, closed = _serving()
    trigger = thread.server.trigger
    write_end = trigger.trigger
    kept = None if noticed else os.dup(write_end)  # as a forked process's copy would
    try:
        closer(write_end)
        deadline = time.monotonic() + 5
        while noticed and not trigger._closed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert trigger._closed is noticed
        with pytest.warns(UserWarning, match="trigger is gone") as caught:
            thread.stop()
    finally:
        if kept is not None:
            os.close(kept)
    message = str(caught[0].message)
    assert ("closed by waitress" in message) is noticed
    assert f"descriptor {write_end} closed by:" in message
    assert closer.__name__ in message
    assert not thread.thread.is_alive() and closed == ["then"]
    assert trigger.socket is None or trigger.socket.fd < 0  # its copy of the read end closed too
