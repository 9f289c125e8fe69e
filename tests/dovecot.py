"""A throwaway Dovecot (Debian's dovecot-imapd and dovecot-pop3d) for the bounce-mailbox tests.

Each instance has its own configuration, sockets, state and maildir in a temporary folder and
listens on 127.0.0.1 only, on free ports: IMAP (plain and STARTTLS), IMAPS, POP3 and POP3S,
with a certificate from a trustme CA. It runs in the foreground as this test's child and is
stopped at the end. As root it drops to Dovecot's own users (and `nobody` for the mail); as
anyone else it runs as that user (Dovecot supports this for testing).
"""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import trustme

USER, PASSWORD = "bounces", "s3cret-mailbox"
NOT_INSTALLED = (
    "dovecot is not installed: `make test` installs dovecot-imapd and dovecot-pop3d with apt-get "
    "where it can (as root or with passwordless sudo)"
)

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
default_internal_user = {internal}
default_internal_group = {internal_group}
default_login_user = {login}
first_valid_uid = 1
auth_mechanisms = plain
auth_failure_delay = 0
disable_plaintext_auth = no
mail_location = maildir:{root}/mail/%u
ssl = yes
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/users
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={root}/mail/%u
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  chroot =
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = yes
  }}
}}
"""


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or next(
        (p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot") if os.access(p, os.X_OK)), None
    )


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Dovecot:
    def __init__(self, ca: trustme.CA) -> None:
        binary = dovecot_binary()
        if binary is None:
            pytest.skip(NOT_INSTALLED)
        self.binary = binary
        # Not under pytest's tmp_path: as root, the mail is written as `nobody`, who must be
        # able to reach it, and pytest's folders are private to their owner.
        self.root = Path(tempfile.mkdtemp(prefix="publisher-dovecot-"))
        self.imap_port, self.imaps_port, self.pop3_port, self.pop3s_port = _free_ports(4)
        self._process: subprocess.Popen[bytes] | None = None
        self._write(ca)

    def _write(self, ca: trustme.CA) -> None:
        root = self.root
        for folder in ("run", "state", "mail"):
            (root / folder).mkdir()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_pem.write_to_path(str(root / "key.pem"))
        (root / "cert.pem").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        (root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
        if os.geteuid() == 0:
            for user in ("dovecot", "dovenull"):
                try:
                    pwd.getpwnam(user)
                except KeyError:
                    pytest.skip(f"dovecot's system user {user!r} is missing: reinstall dovecot-core")
            users = dict(
                internal="dovecot", internal_group="dovecot", login="dovenull", mail_user="nobody", mail_group="nogroup"
            )
            os.chmod(root, 0o711)
            nobody = pwd.getpwnam("nobody")
            os.chown(root / "mail", nobody.pw_uid, nobody.pw_gid)
        else:
            me = pwd.getpwuid(os.geteuid()).pw_name
            group = grp.getgrgid(os.getegid()).gr_name
            users = dict(internal=me, internal_group=group, login=me, mail_user=me, mail_group=group)
        (root / "dovecot.conf").write_text(
            CONFIG.format(
                root=root,
                **users,
                imap=self.imap_port,
                imaps=self.imaps_port,
                pop3=self.pop3_port,
                pop3s=self.pop3s_port,
            )  # fmt: skip
        )

    def start(self) -> Dovecot:
        self._process = subprocess.Popen(
            [self.binary, "-F", "-c", str(self.root / "dovecot.conf")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.imap_port), timeout=1) as s:
                    s.recv(100)  # the greeting: the login process is up
                with socket.create_connection(("127.0.0.1", self.pop3_port), timeout=1) as s:
                    s.recv(100)
                return self
            except OSError:
                time.sleep(0.05)
        output = self.stop()
        pytest.fail(f"dovecot did not start: {output}\n{self.log()}")

    def stop(self) -> str:
        output = ""
        if self._process is not None:
            self._process.terminate()
            try:
                output = self._process.communicate(timeout=10)[0].decode("utf-8", "replace")
            except subprocess.TimeoutExpired:
                self._process.kill()
                output = self._process.communicate()[0].decode("utf-8", "replace")
            self._process = None
        return output

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text("utf-8", "replace") if path.exists() else ""

    def empty(self) -> None:
        """Every folder but INBOX removed, INBOX emptied: a fresh mailbox for the next test."""
        imap = self.imap()
        try:
            _status, listing = imap.list()
            for line in listing:
                name = line.decode().rsplit(" ", 1)[-1] if isinstance(line, bytes) else ""
                if name.strip('"') != "INBOX":
                    imap.delete(name)
            _status, count = imap.select("INBOX")
            if count and count[0] != b"0":
                imap.store("1:*", "+FLAGS", "(\\Deleted)")
                imap.expunge()
            imap.close()
        finally:
            imap.logout()

    def imap(self) -> imaplib.IMAP4:
        """A plain IMAP session on loopback, logged in as the test user."""
        imap = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=10)
        imap.login(USER, PASSWORD)
        return imap

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        imap = self.imap()
        try:
            status, data = imap.append(folder, None, None, raw)
            assert status == "OK", data
        finally:
            imap.logout()

    def messages(self, folder: str = "INBOX") -> list[bytes]:
        """The messages in `folder` now (empty when it does not exist), their bytes as stored."""
        imap = self.imap()
        try:
            status, _data = imap.select(f'"{folder}"', readonly=True)
            if status != "OK":
                return []
            status, found = imap.uid("SEARCH", "ALL")
            found_uids = found[0].split() if found and found[0] else []
            raw = []
            for uid in found_uids:
                _status, data = imap.uid("FETCH", uid, "(BODY.PEEK[])")
                raw += [item[1] for item in data if isinstance(item, tuple)]
            imap.close()
            return raw
        finally:
            imap.logout()
