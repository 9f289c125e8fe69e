"""A waitress server run in a daemon thread of the test's process, and its stop: the one way the
tests serve `create_app` in-process (`publisher serve` itself runs the loop in its main thread
and never stops it: the process ends).

While a server runs, its trigger's descriptors are watched: a call of `os.close` on either
number from code other than waitress's own trigger is recorded with its stack, so that the
warning below names the code that closed a descriptor it did not own. (`os.close` is wrapped
for the whole test process once this module is imported, and so is multiprocessing's
`Connection._close`, which holds the `os.close` of its import.) A close made in C (a file
object's or a socket's close, SQLite's, `dup2`) is not seen."""

from __future__ import annotations

import errno
import multiprocessing.connection
import os
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from typing import Any

from waitress import trigger as waitress_trigger
from waitress import wasyncore

Server = Any  # a single-listener server from waitress.create_server (a MultiSocketServer has no trigger)

_watched: set[int] = set()  # the descriptors of the triggers of the servers running
_closed_by: dict[int, str] = {}  # a watched descriptor -> the stack of a close not waitress's own
_os_close = os.close
# waitress's own close of its trigger (None, should waitress rename it: every close is then recorded)
_TRIGGER_CLOSE = getattr(getattr(waitress_trigger.trigger, "_close", None), "__code__", None)


def _watching_close(fd: int) -> None:
    if fd in _watched and sys._getframe(1).f_code is not _TRIGGER_CLOSE:
        _closed_by[fd] = "".join(traceback.format_stack(limit=30)[:-1])
    _os_close(fd)


os.close = _watching_close
if hasattr(multiprocessing.connection, "Connection") and hasattr(multiprocessing.connection.Connection, "_close"):
    multiprocessing.connection.Connection._close = lambda self, _close=None: _watching_close(self._handle)


class ServerThread:
    """`server`'s loop, started in a daemon thread; `then` (the app's close) runs after the stop,
    however the stop went."""

    def __init__(self, server: Server, then: Callable[[], object]) -> None:
        self.server, self.then = server, then
        self.watched = list(server.trigger._fds)
        for fd in self.watched:  # a number closed by someone for an earlier server is this one's now
            _closed_by.pop(fd, None)
        _watched.update(self.watched)
        self.thread = threading.Thread(target=server.run, name="test-waitress", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Close every socket from inside waitress's own loop (closed from this thread, a
        descriptor would be pulled out from under its wait); the empty loop then returns. Its
        task threads are shut down, and `then` runs, even when the loop did not end.

        When the trigger's write descriptor is gone (EBADF: seen in two CI runs and once under
        load, each time in a test that had passed, never in a test run alone), the loop is
        given an empty map, which ends it when its current wait times out (1 s), and the
        sockets are closed from here once it has: closed while it waited, its next wait
        failed with EBADF in its own thread. A warning says so, for a descriptor was closed by
        code that did not own it."""
        trigger = self.server.trigger
        gone = "closed by waitress" if trigger._closed else self._pull()
        channels: dict[int, Any] = {}
        if gone:
            closers = [f"descriptor {fd} closed by:\n{_closed_by[fd]}" for fd in self.watched if fd in _closed_by]
            why = "\n".join(closers) or "no os.close call closed it (a close made in C, or before the watch)"
            message = f"waitress's trigger is gone ({gone}); closing its sockets from the test\n{why}"
            warnings.warn(message, stacklevel=2)
            # Its write end's number is not the trigger's any more (it may be another file's
            # now): closing its sockets must not close that number again.
            trigger._fds = [fd for fd in trigger._fds if fd != trigger.trigger]
        try:
            deadline = time.monotonic() + 10
            while gone and self.thread.is_alive() and time.monotonic() < deadline:
                # The loop copies the map before each wait and skips what left it; one accepted
                # meanwhile is put back, so this repeats until the loop has ended
                channels.update(self.server._map)
                self.server._map.clear()
                self.thread.join(timeout=0.5)
            self.thread.join(timeout=max(0.0, deadline - time.monotonic()))
            assert not self.thread.is_alive(), "waitress's loop did not end"
        finally:
            if gone:
                wasyncore.close_all({**channels, **self.server._map}, ignore_all=True)
                if trigger.socket is not None:  # its copy of the read end, left open when waitress's close failed
                    trigger.socket.close()
            _watched.difference_update(self.watched)
            for fd in self.watched:
                _closed_by.pop(fd, None)
            try:
                self.server.task_dispatcher.shutdown()
            finally:
                self.then()

    def _pull(self) -> str:
        """Ask the loop to close every socket: "" when asked, else why it could not be (EBADF)."""
        try:
            self.server.trigger.pull_trigger(lambda: wasyncore.close_all(self.server._map))
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise
            return str(exc)
        return ""
