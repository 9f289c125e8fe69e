"""What every `publisher` command pays before it does anything: the modules it imports.

Each command imports the heavy libraries it uses when it runs, so `publisher --help` and the
commands that need no store, web or mail start without them (docs/performance.md).
"""

from __future__ import annotations

import json
import subprocess
import sys

# Imported only by the commands that use them, never by `import publisher.cli`.
HEAVY = ("sqlalchemy", "pydantic", "jinja2", "prometheus_client", "argon2", "flask", "requests", "apscheduler",
         "rich.table", "rich.progress", "publisher.app", "publisher.config", "publisher.store")  # fmt: skip


def imported_by(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running `code`."""
    shown = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", shown], capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_the_command_line_starts_without_the_heavy_libraries() -> None:
    loaded = imported_by("import publisher.cli")
    assert sorted(name for name in HEAVY if name in loaded) == []
