"""Issue 16's aims: their thresholds and how each is judged, for run.py and summary.py.

Every aim is judged on figures measured in one run (ratios where there is a peer). A verdict
is PASS, FAIL, or "skipped" (a peer or a tool was missing, or that part did not run), with
the ratio it was judged on and a sentence of detail.

1. Cold build: publisher / Hugo <= 1.0 at 10,000 and at 100,000 articles; peak memory of the
   whole process tree < 500 MB at 100,000 (run.py).
2. One-article rebuild: < 1 s at 100,000 and <= 1.5x its 1,000 figure (run.py).
3. Digest: plan + render + send >= 0.8 of the bare smtplib floor, memory flat from 2,000 to
   100,000 subscribers (bench/mail.py writes mail.json).
4. Feed serving: publisher / nginx >= 0.5 for a 200 gzip answer, and for a 304 either >= 0.5
   or nginx documented in front (bench/serving.py writes serving.json).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

COLD_OF_HUGO = 1.0  # publisher's cold build time over Hugo's, at most
COLD_SIZES = (10_000, 100_000)
PEAK_MB = 500.0  # whole process tree at 100k
PLUS_ONE_SECONDS = 1.0  # one-article rebuild at 100k, under
PLUS_ONE_GROWTH = 1.5  # ... and at most this times its 1k figure
PELICAN_SPEEDUP = 5.0  # opt-in (run.py --pelican): cold 10k at least 5x faster than Pelican
DIGEST_RATE = 0.8  # publisher's messages/s over the smtplib floor's, at least
DIGEST_MEMORY_GROWTH = 1.25  # peak at the most subscribers over the fewest, at most: "flat"
SERVING_RATIO = 0.5  # publisher's requests/s over nginx's, at least
NGINX_DOCS = Path(__file__).resolve().parent.parent / "docs" / "operations.md"
NGINX_SECTION = "### Serving the feeds with nginx"


@dataclass
class Verdict:
    key: str
    name: str
    result: str  # PASS, FAIL or skipped
    ratio: float | None
    detail: str

    def line(self) -> str:
        ratio = "" if self.ratio is None else f" [{self.ratio:.2f}]"
        return f"{self.result:<7} {self.name}{ratio}: {self.detail}"


def _pass(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _row(rows: list[dict[str, Any]], size: int, tool: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["size"] == size and r["tool"] == tool and not r["crashed"]), None)


def feed_aims(rows: list[dict[str, Any]], hugo_missing: str | None) -> list[Verdict]:
    """Aims 1 and 2 (and Pelican's, when it ran) from run.py's rows (results.json's)."""
    out: list[Verdict] = []
    for size in COLD_SIZES:
        key, name = f"cold-{size // 1000}k", f"cold build at {size:,}: publisher / Hugo <= {COLD_OF_HUGO:g}"
        pub, hugo = _row(rows, size, "publisher"), _row(rows, size, "hugo")
        if hugo_missing:
            out.append(Verdict(key, name, "skipped", None, hugo_missing))
        elif pub and hugo and pub["cold_s"] and hugo["cold_s"]:
            ratio = pub["cold_s"] / hugo["cold_s"]
            detail = f"publisher {pub['cold_s']:.2f} s / Hugo {hugo['cold_s']:.2f} s"
            out.append(Verdict(key, name, _pass(ratio <= COLD_OF_HUGO), ratio, detail))
        else:
            out.append(Verdict(key, name, "skipped", None, f"needs publisher and Hugo at {size:,}"))
    big, small = _row(rows, 100_000, "publisher"), _row(rows, 1_000, "publisher")
    name = f"peak memory at 100,000 (whole process tree) < {PEAK_MB:g} MB"
    if big and big["peak_mb"] is not None:
        detail = f"{big['peak_mb']:.0f} MB (largest of the cold and rebuild runs; PSS {big['peak_pss_mb']:.0f} MB)"
        out.append(Verdict("peak-100k", name, _pass(big["peak_mb"] < PEAK_MB), big["peak_mb"] / PEAK_MB, detail))
    else:
        out.append(Verdict("peak-100k", name, "skipped", None, "needs publisher at 100,000"))
    name = f"+1 article rebuild at 100,000 < {PLUS_ONE_SECONDS:g} s and <= {PLUS_ONE_GROWTH:g}x the 1,000 figure"
    if big and small and big["plus_one_s"] is not None and small["plus_one_s"] is not None:
        growth = big["plus_one_s"] / small["plus_one_s"]
        ok = big["plus_one_s"] < PLUS_ONE_SECONDS and growth <= PLUS_ONE_GROWTH
        detail = f"100,000 {big['plus_one_s']:.2f} s, 1,000 {small['plus_one_s']:.2f} s: growth {growth:.2f}x"
        out.append(Verdict("plus-one", name, _pass(ok), growth, detail))
    else:
        out.append(Verdict("plus-one", name, "skipped", None, "needs publisher at 1,000 and 100,000"))
    pub, pel = _row(rows, 10_000, "publisher"), _row(rows, 10_000, "pelican")
    if pel is not None:
        name = f"cold build at 10,000 >= {PELICAN_SPEEDUP:g}x faster than Pelican"
        if pub and pub["cold_s"] and pel["cold_s"]:
            speedup = pel["cold_s"] / pub["cold_s"]
            detail = f"Pelican {pel['cold_s']:.2f} s / publisher {pub['cold_s']:.2f} s"
            out.append(Verdict("pelican-10k", name, _pass(speedup >= PELICAN_SPEEDUP), speedup, detail))
        else:
            out.append(Verdict("pelican-10k", name, "skipped", None, "needs publisher and Pelican at 10,000"))
    return out


def digest_aims(mail: dict[str, Any] | None, why_not: str) -> list[Verdict]:
    """Aim 3 from bench/mail.py's mail.json (rate_ratio, memory_ratio, subscribers,
    memory_subscribers): the send rate against the floor, and the memory from few to many."""
    rate_name = f"digest: plan + render + send / smtplib floor >= {DIGEST_RATE:g}"
    memory_name = f"digest: peak memory flat (<= {DIGEST_MEMORY_GROWTH:g}x) as subscribers grow"
    try:
        rate, memory = float(mail["rate_ratio"]), float(mail["memory_ratio"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        why = why_not if mail is None else f"mail.json has no rate_ratio and memory_ratio: {mail}"
        return [Verdict(k, n, "skipped", None, why) for k, n in (("rate", rate_name), ("memory", memory_name))]
    assert mail is not None
    low, high = (_count(n) for n in (list(mail.get("memory_subscribers") or []) + ["?", "?"])[:2])
    return [
        Verdict("rate", rate_name, _pass(rate >= DIGEST_RATE), rate,
                f"{rate:.2f}x the floor at {_count(mail.get('subscribers'))} subscribers"),
        Verdict("memory", memory_name, _pass(memory <= DIGEST_MEMORY_GROWTH), memory,
                f"{memory:.2f}x from {low} to {high} subscribers"),
    ]  # fmt: skip


def _count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else "?" if value is None else str(value)


def nginx_documented() -> bool:
    """docs/operations.md says which nginx settings to put in front of the feed server, and why."""
    try:
        return NGINX_SECTION in NGINX_DOCS.read_text(encoding="utf-8")
    except OSError:
        return False


def serving_aims(serving: dict[str, Any] | None, why_not: str) -> list[Verdict]:
    """Aim 4 from bench/serving.py's serving.json (ratio_304, ratio_200_gzip, nginx): the 200 gzip
    answer at >= 0.5x nginx; the 304 at >= 0.5x, or nginx documented in front of the feed server."""
    gzip_name = f"feed serving, 200 gzip: publisher / nginx >= {SERVING_RATIO:g}"
    name_304 = f"feed serving, 304: publisher / nginx >= {SERVING_RATIO:g}, or nginx documented in front"
    skipped = why_not if serving is None else serving.get("skipped")
    if not skipped and (serving is None or not serving.get("nginx") or serving.get("ratio_200_gzip") is None):
        skipped = "nginx is missing: publisher alone, no ratio"
    if serving is None or skipped:
        return [Verdict(k, n, "skipped", None, str(skipped)) for k, n in (("gzip", gzip_name), ("304", name_304))]
    gzip, r304 = float(serving["ratio_200_gzip"]), float(serving["ratio_304"])
    if r304 >= SERVING_RATIO:
        verdict_304 = Verdict("304", name_304, "PASS", r304, f"{r304:.2f}x nginx")
    elif nginx_documented():
        verdict_304 = Verdict(
            "304", name_304, "PASS", r304, f"{r304:.2f}x; documented: nginx in front (docs/operations.md)"
        )
    else:
        verdict_304 = Verdict("304", name_304, "FAIL", r304, f"{r304:.2f}x and docs/operations.md has no nginx section")
    return [Verdict("gzip", gzip_name, _pass(gzip >= SERVING_RATIO), gzip, f"{gzip:.2f}x nginx"), verdict_304]
