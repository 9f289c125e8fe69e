"""Serving benchmark: `publisher serve` against nginx on the same output folder, with wrk.

One output folder (a publisher build of the bench corpus: 13 categories, 50 items a feed) is
served two ways at once on loopback:

* publisher: `publisher serve`, as shipped (waitress, publisher/web/feeds.py);
* nginx: the shipped config/nginx.conf, its "yours" lines pointed at this folder, a free port
  and that publisher (so the run also proves the file is valid nginx), no daemon.

wrk asks each for one category's rss.xml, two ways: a 304 (`If-None-Match` with the feed's
ETag, as a feed reader polls) and a 200 gzip (`Accept-Encoding: gzip`, no validator). Each case
runs `--repeat` times, publisher and nginx interleaved; the best of each is reported with the
ratio publisher/nginx (aim: 0.5 or more), and how much CPU the rest of the machine used.

When wrk or nginx is missing the script says so and skips that part (exit 0): this is a report.
Usage: python bench/serving.py [--articles 1000] [--seconds 10] [--threads 2] [--connections 50]
Writes bench/out/serving.md, and serving.json for bench/summary.py (the two ratios, whether nginx
was there, or why the bench was skipped). Exit: 0 (also when an aim is missed or a peer is missing),
1 when a server did not start or answered wrongly.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import corpus  # noqa: E402  (bench/ is not a package)
import run as build_bench  # noqa: E402

OUT_DIR = BENCH_DIR / "out"
WORK = OUT_DIR / "serving"
RESULTS_MD = OUT_DIR / "serving.md"
RESULTS_JSON = OUT_DIR / "serving.json"
NGINX_CONF = BENCH_DIR.parent / "config" / "nginx.conf"
HUB = "https://pubsubhubbub.appspot.com/"
PUBLIC = "https://news.example.org"
AIM_RATIO = 0.5  # publisher's requests/s at least half nginx's
CATEGORY = corpus.CATEGORIES[0]

# The lines of config/nginx.conf marked "yours", and what the bench puts there.
NGINX_YOURS = {
    "upstream": re.compile(r"^(\s*server )127\.0\.0\.1:8080;", re.M),
    "listen": re.compile(r"^(\s*listen )80;", re.M),
    "root": re.compile(r"^(\s*root )/var/lib/publisher/public;", re.M),
}


def nginx_config(template: str, root: Path, port: int, upstream: int, work: Path) -> str:
    """config/nginx.conf as a whole nginx.conf of its own: the "yours" lines set to this run,
    wrapped in a main block that keeps every file nginx writes in `work` and stays in the
    foreground. A "yours" line that is not there any more is an error: the file changed."""
    values = {"upstream": f"127.0.0.1:{upstream}", "listen": f"127.0.0.1:{port}", "root": str(root)}
    for key, pattern in NGINX_YOURS.items():
        template, count = pattern.subn(lambda m, v=values[key]: f"{m.group(1)}{v};", template)
        if count != 1:
            raise ValueError(f"{NGINX_CONF}: the {key!r} line marked 'yours' is not there once (found {count})")
    temp = {name: work / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    return "\n".join(
        [
            "daemon off;",
            # As root, nginx's workers would be `nobody`, who may not read the folder (a test's is 0700).
            *([f"user {pwd.getpwuid(0).pw_name};"] if os.geteuid() == 0 else []),
            "worker_processes 1;",  # one core, as the publisher's one process mostly uses
            f"pid {work / 'nginx.pid'};",
            f"error_log {work / 'error.log'} warn;",
            "events { worker_connections 1024; }",
            "http {",
            "    access_log off;",
            *(f"    {name}_temp_path {path};" for name, path in temp.items()),
            template,
            "}",
        ]
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"{what} stopped at start (exit {proc.returncode}); see {log}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on 127.0.0.1:{port}; see {log}")


def build_folder(articles: int, cli: str) -> tuple[Path, Path]:
    """A cold publisher build of the corpus; its output folder and a config to serve it with."""
    content = corpus.ensure_corpus(articles, quiet=True)
    if WORK.exists():
        shutil.rmtree(WORK)
    out, db = WORK / "public", WORK / "publisher.db"
    config = build_bench.write_publisher_config(WORK / "publisher.toml", content, out, db)
    subprocess.run([cli, "--config", str(config), "build"], check=True, stdout=subprocess.DEVNULL)
    # Served with WebSub hubs (not built with them: a build would ping the hub), so the feed
    # server sends its Link headers, as nginx does with the shipped map.
    serve = WORK / "serve.toml"
    text = config.read_text(encoding="utf-8").replace("[output]\n", f'[output]\nbase_url = "{PUBLIC}"\n')
    serve.write_text(text + f'\n[websub]\nhubs = ["{HUB}"]\n', encoding="utf-8")
    return out, serve


def get(port: int, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        answer = conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        conn.close()


@dataclass
class Case:
    name: str
    path: str
    headers: dict[str, str]
    status: int


def cases_for(port: int, path: str) -> list[Case]:
    """The 304 and the 200 gzip request for one server; the ETag is the server's own for the gzip form."""
    gzip_headers = {"Accept-Encoding": "gzip"}
    status, headers, _body = get(port, path, gzip_headers)
    if status != 200 or headers.get("content-encoding") != "gzip" or "etag" not in headers:
        raise SystemExit(f"127.0.0.1:{port}{path}: {status} {headers}: not a gzip 200 with an ETag")
    return [
        Case("304", path, {**gzip_headers, "If-None-Match": headers["etag"]}, 304),
        Case("200 gzip", path, gzip_headers, 200),
    ]


def check(port: int, case: Case) -> dict[str, str]:
    status, headers, _ = get(port, case.path, case.headers)
    if status != case.status:
        raise SystemExit(f"127.0.0.1:{port}{case.path} {case.name}: answered {status}, not {case.status}")
    return headers


WRK_LINE = re.compile(r"Requests/sec:\s*([\d.]+)")


def wrk(port: int, case: Case, args: argparse.Namespace) -> tuple[float, float | None, str]:
    """Requests per second, the other processes' load in cores (not wrk's nor the servers'),
    and wrk's summary of errors (non-2xx/3xx answers, socket errors)."""
    build_bench.wait_for_quiet(args.quiet_wait)
    command = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s", "--latency"]
    for name, value in case.headers.items():
        command += ["-H", f"{name}: {value}"]
    busy0, t0 = build_bench._busy_cpu_seconds(), time.monotonic()
    ours0 = _cpu_of(args.server_pids)
    done = subprocess.run([*command, f"http://127.0.0.1:{port}{case.path}"], capture_output=True, text=True)
    busy1, seconds = build_bench._busy_cpu_seconds(), time.monotonic() - t0
    ours1 = _cpu_of(args.server_pids)
    found = WRK_LINE.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"wrk failed: {done.stdout}{done.stderr}")
    lines = done.stdout.splitlines()
    errors = "; ".join(line.strip() for line in lines if "Non-2xx" in line or "Socket errors" in line)
    other = None
    if busy0 is not None and busy1 is not None:
        children = os.times()
        other = max(0.0, (busy1 - busy0 - (ours1 - ours0) - _wrk_cpu(children, args)) / seconds)
    return float(found.group(1)), other, errors


def _cpu_of(pids: list[int]) -> float:
    """CPU seconds used so far by these processes (the servers and their workers)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def _wrk_cpu(now: os.times_result, args: argparse.Namespace) -> float:
    """wrk's CPU seconds in the last run (children's times grow by each finished child's)."""
    used = now.children_user + now.children_system - args.children_cpu
    args.children_cpu = now.children_user + now.children_system
    return used


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--articles", type=int, default=1000, help="corpus size to build (default: %(default)s)")
    ap.add_argument("--seconds", type=int, default=10, help="each wrk run's length (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each case, interleaved; the best is kept")
    ap.add_argument("--quiet-wait", type=float, default=30.0, metavar="S",
                    help="before each run, wait up to S seconds for other processes to go idle")  # fmt: skip
    ap.add_argument("--keep", action="store_true", help="leave both servers running after the runs (Ctrl-C stops)")
    args = ap.parse_args(argv)
    args.children_cpu = 0.0
    args.server_pids = []

    wrk_found, nginx_found = shutil.which("wrk"), shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if wrk_found is None:
        print("serving bench skipped: wrk is missing (Debian: apt-get install wrk)", file=sys.stderr)
        write_json({"skipped": "wrk is missing (Debian: apt-get install wrk)", "nginx": nginx_found is not None})
        return 0
    if nginx_found is None:
        print("serving bench: nginx is missing (Debian: apt-get install nginx-light): publisher alone, no ratio",
              file=sys.stderr)  # fmt: skip
    cli = build_bench.find_publisher_cli()
    if cli is None:
        print("publisher CLI not found next to this Python or on PATH", file=sys.stderr)
        return 1

    print(f"serving bench: building {args.articles} articles", file=sys.stderr)
    out, serve_config = build_folder(args.articles, cli)
    slug = next(p.parent.name for p in sorted(out.glob("*/rss.xml")))
    path = f"/{slug}/rss.xml"
    size = (out / slug / "rss.xml").stat().st_size
    processes: list[subprocess.Popen[bytes]] = []
    try:
        pub_port = free_port()
        pub_log = WORK / "publisher-serve.log"
        env = dict(os.environ, PUBLISHER_SECRET_KEY="bench-signing-key-0123456789abcdef")
        with open(pub_log, "wb") as fh:
            publisher = subprocess.Popen(
                [cli, "--config", str(serve_config), "serve", "--host", "127.0.0.1", "--port", str(pub_port)],
                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )  # fmt: skip
        processes.append(publisher)
        wait_for_port(pub_port, publisher, "publisher serve", pub_log)
        args.server_pids.append(publisher.pid)
        servers = {"publisher": pub_port}
        if nginx_found is not None:
            ngx_port, ngx_dir = free_port(), Path(tempfile.mkdtemp(prefix="nginx-", dir=WORK))
            conf = ngx_dir / "nginx.conf"
            conf.write_text(nginx_config(NGINX_CONF.read_text(encoding="utf-8"), out, ngx_port, pub_port, ngx_dir))
            tested = subprocess.run([nginx_found, "-t", "-q", "-p", str(ngx_dir), "-c", str(conf)],
                                    capture_output=True, text=True)  # fmt: skip
            if tested.returncode != 0:
                print(f"nginx -t refused {conf} (from {NGINX_CONF}):\n{tested.stderr}", file=sys.stderr)
                return 1
            nginx = subprocess.Popen([nginx_found, "-p", str(ngx_dir), "-c", str(conf)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            processes.append(nginx)
            wait_for_port(ngx_port, nginx, "nginx", ngx_dir / "error.log")
            args.server_pids += [nginx.pid, *_children(nginx.pid)]
            servers["nginx"] = ngx_port
        plans = {name: cases_for(port, path) for name, port in servers.items()}
        times = os.times()  # wrk's CPU is what the finished children used from here on
        args.children_cpu = times.children_user + times.children_system
        same = compare_headers({name: check(port, plans[name][1]) for name, port in servers.items()})
        results: dict[tuple[str, str], list[tuple[float, float | None, str]]] = {}
        for attempt in range(args.repeat):
            for index in range(2):
                for name, port in servers.items():
                    case = plans[name][index]
                    check(port, case)
                    figure = wrk(port, case, args)
                    results.setdefault((name, case.name), []).append(figure)
                    load = "" if figure[1] is None else f", other load {figure[1]:.2f} cores"
                    print(f"  run {attempt + 1} {name:<9} {case.name:<8} {figure[0]:9.0f} req/s{load}"
                          f"{' ' + figure[2] if figure[2] else ''}", file=sys.stderr)  # fmt: skip
        if args.keep:
            print(f"serving: publisher on {pub_port}, nginx on {servers.get('nginx')}; Ctrl-C stops", file=sys.stderr)
            processes[0].wait()
    finally:
        for proc in reversed(processes):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    report(results, args, path, size, same)
    return 0


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


SAME_HEADERS = ("content-type", "cache-control", "vary", "x-content-type-options", "link", "content-encoding")


def compare_headers(answers: dict[str, dict[str, str]]) -> list[str]:
    """The headers a feed reader acts on, where nginx's differ from publisher's (ideally none)."""
    if len(answers) < 2:
        return []
    ours, theirs = answers["publisher"], answers["nginx"]
    return [
        f"{name}: publisher {ours.get(name)!r}, nginx {theirs.get(name)!r}"
        for name in SAME_HEADERS
        if ours.get(name, "").replace(" ", "") != theirs.get(name, "").replace(" ", "")
    ]


def report(results: dict[tuple[str, str], list[tuple[float, float | None, str]]], args: argparse.Namespace,
           path: str, size: int, differences: list[str]) -> None:  # fmt: skip
    best = {key: max(runs, key=lambda r: r[0]) for key, runs in results.items()}
    lines = [
        f"# Serving benchmark ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, best of {args.repeat})",
        "",
        f"{build_bench.machine()}; wrk -t{args.threads} -c{args.connections} -d{args.seconds}s on loopback,"
        f" GET {path} ({size / 1000:.0f} KB); nginx: config/nginx.conf, 1 worker.",
        "",
        "| case | publisher req/s | nginx req/s | publisher/nginx | other load (cores) |",
        "|---|---:|---:|---:|---|",
    ]
    verdicts = []
    ratios: dict[str, float] = {}
    for case in ("304", "200 gzip"):
        ours, theirs = best.get(("publisher", case)), best.get(("nginx", case))
        loads = [r[1] for key, runs in results.items() if key[1] == case for r in runs if r[1] is not None]
        load = f"{min(loads):.2f}-{max(loads):.2f}" if loads else "?"
        if ours is None:
            continue
        if theirs is None:
            lines.append(f"| {case} | {ours[0]:.0f} | (no nginx) | | {load} |")
            continue
        ratio = ours[0] / theirs[0]
        lines.append(f"| {case} | {ours[0]:.0f} | {theirs[0]:.0f} | {ratio:.2f}x | {load} |")
        ratios[case] = ratio
        verdict = "PASS" if ratio >= AIM_RATIO else "FAIL: put nginx in front (docs/operations.md)"
        verdicts.append(f"- {case}: publisher {ratio:.2f}x nginx (aim >= {AIM_RATIO}): {verdict}")
    errors = sorted({f"{key[0]} {key[1]}: {r[2]}" for key, runs in results.items() for r in runs if r[2]})
    lines += ["", *verdicts, *(f"- wrk reported {e}" for e in errors)]
    lines += [f"- header differences: {d}" for d in differences] or ["- same feed headers from both servers"]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    RESULTS_MD.write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_json(
        {
            "nginx": any(key[0] == "nginx" for key in best),
            "ratio_304": ratios.get("304"),
            "ratio_200_gzip": ratios.get("200 gzip"),
            "requests_per_second": {f"{key[0]} {key[1]}": [r[0] for r in runs] for key, runs in results.items()},
            "other_load": {f"{key[0]} {key[1]}": [r[1] for r in runs] for key, runs in results.items()},
        }
    )
    print("\n".join(lines))


def write_json(figures: dict[str, object]) -> None:
    """serving.json, read by bench/summary.py: the ratios publisher/nginx (None without nginx)."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    figures = {"finished": datetime.now(UTC).isoformat(timespec="seconds"), **figures}
    RESULTS_JSON.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
