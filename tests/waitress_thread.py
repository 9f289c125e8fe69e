"""A waitress server run in a daemon thread of the test's process, and its stop: the one way the
tests serve `create_app` in-process (`publisher serve` itself runs the loop in its main thread
and never stops it: the process ends)."""

from __future__ import annotations

import errno
import threading
import warnings
from collections.abc import Callable
from typing import Any

from waitress import wasyncore

Server = Any  # a single-listener server from waitress.create_server (a MultiSocketServer has no trigger)


class ServerThread:
    """`server`'s loop, started in a daemon thread; `then` (the app's close) runs after the stop,
    however the stop went."""

    def __init__(self, server: Server, then: Callable[[], object]) -> None:
        self.server, self.then = server, then
        self.thread = threading.Thread(target=server.run, name="test-waitress", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Close every socket from inside waitress's own loop (closed from this thread, a
        descriptor would be pulled out from under its wait); the empty loop then returns. Its
        task threads are shut down, and `then` runs, even when the loop did not end.

        When the trigger's write descriptor is gone (EBADF: seen in two CI runs and once under
        load, each time in a test that had passed, never in a test run alone), the sockets are
        closed from here and the loop ends, at the latest when its current wait times out
        (1 s); a warning says so, for a descriptor was closed by code that did not own it."""
        gone = "closed by waitress" if self.server.trigger._closed else self._pull()
        if gone:
            warnings.warn(f"waitress's trigger is gone ({gone}); closing its sockets from the test", stacklevel=2)
            wasyncore.close_all(self.server._map)
        try:
            self.thread.join(timeout=10)
            assert not self.thread.is_alive(), "waitress's loop did not end"
        finally:
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
