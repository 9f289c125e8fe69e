"""A waitress server run in a daemon thread of the test's process, and its stop: the one way the
tests serve `create_app` in-process (`publisher serve` itself runs the loop in its main thread
and never stops it: the process ends)."""

from __future__ import annotations

import threading
from typing import Any

from waitress import wasyncore

Server = Any  # waitress's BaseWSGIServer or MultiSocketServer (as create_server gives them)


class ServerThread:
    """`server`'s loop, started in a daemon thread."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.run, name="test-waitress", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Close every socket from inside waitress's own loop (closed from this thread, a
        descriptor would be pulled out from under its select()); the empty loop then returns.
        When the trigger's descriptor is already gone (EBADF: seen in two CI runs and once under
        load, each time in a test that had passed, never in a test run alone), close from
        here: the loop then ends on its next select()."""
        try:
            self.server.trigger.pull_trigger(lambda: wasyncore.close_all(self.server._map))
        except OSError:
            wasyncore.close_all(self.server._map)
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "waitress's loop did not end"
        self.server.task_dispatcher.shutdown()
