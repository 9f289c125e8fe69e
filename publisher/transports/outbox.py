"""The outbox transport: every message as an .eml file in a folder (the demo, dry runs, tests)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..atomic import remove_stale_temporaries, write_atomically
from ..errors import disk_advice
from ..mail import Message
from ..private_files import private_folder
from . import Sent, TransportError


class OutboxTransport:
    """Writes `<n>-<hash of Message-ID>.eml`; the file name is the provider id. A message with an
    envelope sender of its own ([bounces] return_path) starts with the `Return-Path:` line the
    receiving server would add. A file it cannot
    write (a full disk) is a broken transport: the digest pauses, nobody's delivery fails."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        remove_stale_temporaries(folder)  # half-written messages of a killed send
        # Numbered after what is there already, so files sort in sending order across runs.
        self.count = len(list(folder.glob("*.eml"))) if folder.is_dir() else 0

    def send(self, message: Message) -> Sent:
        data = message.as_bytes()
        if message.envelope.return_path:  # as the receiving server would write it
            data = f"Return-Path: <{message.envelope.return_path}>\r\n".encode("ascii") + data
        digest = hashlib.sha256(message.message_id.encode()).hexdigest()[:16]
        name = f"{self.count + 1:06d}-{digest}.eml"
        try:
            private_folder(self.folder)  # the messages hold live unsubscribe links
            write_atomically(self.folder / name, data, 0o600)
        except OSError as exc:
            raise TransportError(
                f"cannot write {self.folder / name}: {exc.strerror or exc}",
                f"{disk_advice(exc, self.folder)}; `publisher digest resume` then sends the rest",
                retryable=False,
                broken=True,
            ) from exc
        self.count += 1
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
