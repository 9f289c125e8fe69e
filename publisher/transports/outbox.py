"""The outbox transport: every message as an .eml file in a folder (the demo, dry runs, tests)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from ..mail import Message
from ..private_files import private_folder
from . import Sent


class OutboxTransport:
    """Writes `<n>-<hash of Message-ID>.eml`; the file name is the provider id."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        # Numbered after what is there already, so files sort in sending order across runs.
        self.count = len(list(folder.glob("*.eml"))) if folder.is_dir() else 0

    def send(self, message: Message) -> Sent:
        private_folder(self.folder)  # the messages hold live unsubscribe links (mkstemp makes them 0600)
        data = message.as_bytes()
        digest = hashlib.sha256(message.message_id.encode()).hexdigest()[:16]
        self.count += 1
        name = f"{self.count:06d}-{digest}.eml"
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, self.folder / name)
        return Sent(provider_id=name)

    def close(self) -> None:
        pass


class MemoryTransport:
    """Keeps messages in a list: the double the package ships for tests of code that sends."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    def send(self, message: Message) -> Sent:
        self.sent.append(message)
        return Sent(provider_id=message.message_id)

    def close(self) -> None:
        pass
