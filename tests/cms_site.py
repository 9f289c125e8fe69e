"""A DedeCMS-like news site on a real loopback HTTP server, for the web-source tests.

13 categories (高新院新闻, 政策解读, ...), GBK pages declaring `<meta charset=gb2312>`, list
pages with a picture link and a title link per article and a classless pager ("下一頁"),
article pages with the site's logo in an <h1> before the article's own title and a meta line
in Traditional (`來源:… 日期:… 點擊:`). Every answer has an ETag and Last-Modified, and a
matching If-None-Match / If-Modified-Since gets a 304. Every request is logged (`requests`),
and switches break one part: a category whose list page answers 404, one whose list template
changed, an article that answers 404.

    with CmsSite() as cms:
        site.append_config(cms.categories_toml() + cms.source_toml())
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

# (name, the site's folder); the first, the second and the sixth are in conftest's config.
CATEGORIES = [
    ("高新院新闻", "gxyxw"), ("政策解读", "zcjd"), ("高新区新闻", "gxqxw"), ("区域经济研究", "qyjjyj"),
    ("经济开发区新闻", "jjkfq"), ("科技创新", "kjcx"), ("战略性新兴产业研究", "zlxxcy"), ("行业洞见", "hydj"),
    ("一带一路新闻", "ydyl"), ("智慧城市案例", "zhcsal"), ("产业规划", "cygh"), ("园区规划", "yqgh"),
    ("智慧城市news", "zhcsnews"),
]  # fmt: skip
IN_CONFTEST = {"高新院新闻", "政策解读", "科技创新"}
LAST_MODIFIED = "Mon, 04 Dec 2023 08:00:00 GMT"

LIST = """<!DOCTYPE html><html><head><meta charset="gb2312"><title>{name}_高新技術產業研究院</title></head>
<body><div class="header"><h1 class="logo"><a href="/">高新技術產業研究院</a></h1></div>
{items}
<div class="dede_pages"><ul class="pagelist">{pager}</ul></div>
</body></html>"""

ITEM = """<li><a href="{href}" class="preview"><img src="/uploads/{id}.jpg" alt=""></a>
<a href="{href}#title" class="title">{title}</a><span class="date">2023-12-{day:02d}</span></li>"""

CHANGED_ITEM = """<dl class="news-item"><dt><a href="{href}">{title}</a></dt><dd>2023-12-{day:02d}</dd></dl>"""

ARTICLE = """<!DOCTYPE html><html><head><meta charset="gb2312"><title>{title}_高新技術產業研究院</title></head>
<body><div class="header"><h1 class="logo"><a href="/">高新技術產業研究院</a></h1>
<div class="nav"><a href="/">首頁</a> &gt; <a href="/a/{folder}/">{name}</a></div></div>
<div class="article"><h1>{title}</h1>
<div class="info">來源:{source} 日期:2023-12-{day:02d} 10:{minute:02d}
點擊:<script src="/plus/count.php?aid={id}"></script>次</div>
<div class="content"><p>{name}第{id}期：高新區(qū)院長(zhǎng)出席會議並講話，會議指出要加快發展。</p>
<p><img src="/uploads/{id}.jpg"></p></div>
<div class="related">相關文章推薦：</div></div>
</body></html>"""


@dataclass(frozen=True)
class Logged:
    path: str
    status: int
    conditional: bool  # the request carried If-None-Match or If-Modified-Since


@dataclass
class Category:
    name: str
    folder: str
    articles: list[int]  # ids, newest first


@dataclass
class CmsSite:
    """The site; `per_page` article links per list page; `articles` per category at the start."""

    per_page: int = 3
    articles: int = 4
    source: str = "高新院 achie.org"
    categories: list[Category] = field(default_factory=list)
    requests: list[Logged] = field(default_factory=list)
    missing_lists: set[str] = field(default_factory=set)  # category names whose list pages 404
    changed_template: set[str] = field(default_factory=set)  # category names with another list layout
    missing_articles: set[int] = field(default_factory=set)  # article ids that 404
    broken_paths: set[str] = field(default_factory=set)  # paths answered 503
    foreign_origin: str = ""  # when set, 高新院新闻's first list page also links its top article there

    def __post_init__(self) -> None:
        self.categories = [
            Category(name, folder, [i * 100 + n for n in range(self.articles, 0, -1)])
            for i, (name, folder) in enumerate(CATEGORIES, start=1)
        ]
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CmsSite:
        self.thread.start()
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- what tests use ---------------------------------------------------------------------

    @property
    def origin(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def category(self, name: str) -> Category:
        return next(c for c in self.categories if c.name == name)

    def list_url(self, name: str, page: int = 1) -> str:
        return f"{self.origin}/a/{self.category(name).folder}/list_{page}.html"

    def article_url(self, article_id: int) -> str:
        folder = self.categories[article_id // 100 - 1].folder
        return f"{self.origin}/a/{folder}/{article_id}.html"

    def publish(self, name: str) -> int:
        """A new article on top of the category's first list page; its id."""
        category = self.category(name)
        new = max(category.articles) + 1
        category.articles.insert(0, new)
        return new

    def paths(self) -> list[str]:
        """The paths asked for so far, robots.txt left out."""
        return [r.path for r in self.requests if r.path != "/robots.txt"]

    def categories_toml(self) -> str:
        """The categories conftest's config does not have yet."""
        return "".join(f'\n[[categories]]\nname = "{name}"\n' for name, _f in CATEGORIES if name not in IN_CONFTEST)

    def source_toml(
        self, next_selector: str = 'a:contains("下一頁")', extra_list: str = "", title: str = "div.article h1",
        extra_article: str = "",
    ) -> str:  # fmt: skip
        """An html source named cms reading every category (`extra_*`: more TOML lines in its tables)."""
        pages = ", ".join(f'"{name}" = ["{self.list_url(name)}"]' for name, _f in CATEGORIES)
        return f"""
[[sources]]
type = "html"
name = "cms"
allow_private = true  # the site is on loopback
delay = 0
[sources.list]
pages = {{ {pages} }}
links = "ul.list li a"
next = '{next_selector}'
max_pages = 5
{extra_list}
[sources.article]
title = "{title}"
body = "div.content"
meta = "div.info"
date = '日期[:：]\\s*(\\d{{4}}-\\d{{2}}-\\d{{2}} \\d{{2}}:\\d{{2}})'
date_format = "%Y-%m-%d %H:%M"
source = '来源[:：]\\s*(\\S+)'
{extra_article}
"""

    # --- the pages --------------------------------------------------------------------------

    def page(self, path: str) -> bytes | None:
        """The bytes of the page at `path` (GBK), or None for a 404."""
        match = re.fullmatch(r"/a/(\w+)/list_(\d+)\.html", path)
        if match:
            return self._list(match.group(1), int(match.group(2)))
        match = re.fullmatch(r"/a/(\w+)/(\d+)\.html", path)
        if match:
            return self._article(int(match.group(2)))
        return None

    def _list(self, folder: str, number: int) -> bytes | None:
        category = next((c for c in self.categories if c.folder == folder), None)
        if category is None or category.name in self.missing_lists:
            return None
        chunk = category.articles[(number - 1) * self.per_page : number * self.per_page]
        if not chunk and number > 1:
            return None
        template = CHANGED_ITEM if category.name in self.changed_template else ITEM
        items = "".join(
            template.format(href=f"/a/{folder}/{i}.html", id=i, title=self._title(category, i), day=i % 28 + 1)
            for i in chunk
        )
        if self.foreign_origin and number == 1 and category is self.categories[0]:
            href = f"{self.foreign_origin}/a/{folder}/{chunk[0]}.html"
            items += template.format(href=href, id=chunk[0], title="轉載", day=1)
        items = f"<ul class='list'>{items}</ul>" if template is ITEM else f"<div class='news'>{items}</div>"
        pages = -(-len(category.articles) // self.per_page)
        pager = "".join(
            f"<li><a href='list_{n}.html'>{n}</a></li>" if n != number else f"<li class='thisclass'>{n}</li>"
            for n in range(1, pages + 1)
        )
        if number < pages:
            pager += f"<li><a href='list_{number + 1}.html'>下一頁</a></li>"
        html = LIST.format(name=category.name, items=items, pager=pager)
        return html.encode("gbk")

    def _article(self, article_id: int) -> bytes | None:
        index = article_id // 100 - 1
        if not 0 <= index < len(self.categories) or article_id in self.missing_articles:
            return None
        category = self.categories[index]
        if article_id not in category.articles:
            return None
        html = ARTICLE.format(
            title=self._title(category, article_id), folder=category.folder, name=category.name, id=article_id,
            source=self.source, day=article_id % 28 + 1, minute=article_id % 60,
        )  # fmt: skip
        return html.encode("gbk")

    @staticmethod
    def _title(category: Category, article_id: int) -> str:
        return f"{category.name}動態第{article_id}期"

    def log(self, entry: Logged) -> None:
        with self._lock:
            self.requests.append(entry)


def _handler(cms: CmsSite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?", 1)[0]
            asked = self.headers.get("If-None-Match"), self.headers.get("If-Modified-Since")
            if path == "/robots.txt":
                self._answer(path, 200, b"User-agent: *\nAllow: /\n", "text/plain", asked)
                return
            if path in cms.broken_paths:
                self._answer(path, 503, b"busy", "text/plain", asked)
                return
            body = cms.page(path)
            if body is None:
                self._answer(path, 404, "<h1>404 頁面不存在</h1>".encode("gbk"), "text/html", asked)
            else:
                self._answer(path, 200, body, "text/html", asked)

        def _answer(self, path: str, status: int, body: bytes, kind: str, asked: tuple[str | None, ...]) -> None:
            etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
            conditional = any(asked)
            if status == 200 and (asked[0] == etag or (asked[0] is None and asked[1] == LAST_MODIFIED)):
                status, body = 304, b""
            cms.log(Logged(path, status, conditional))
            self.send_response(status)
            if status != 404:
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", LAST_MODIFIED)
            if body:
                self.send_header("Content-Type", kind)  # no charset: the page's meta and bytes decide
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
            pass

    return Handler
