"""The sources' tables (`[[sources]]`): the `files` source and the web sources (feed, html,
json, wordpress), with the names that key their articles. docs/sources.md documents them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field

from .section import Section

_HOST = r"^(\*\.)?[\w-]+(\.[\w-]+)*\.?$|^\[?[0-9A-Fa-f:.]+\]?$"  # a name, *.name or an address


class FilesSourceConfig(Section):
    type: Literal["files"]
    path: str
    name: str = ""
    default_category: str | None = None
    url_template: str | None = None

    @property
    def source_name(self) -> str:
        """The name that keys this source's articles (and their guids): stable across runs and
        machines, so by default the folder's own name, never its absolute path."""
        return self.name or Path(self.path).name or "files"


class _WebSourceConfig(Section):
    """What every web source shares: the HTTP layer's politeness and patience (docs/sources.md)."""

    delay: float = Field(default=1.0, ge=0, le=600)  # seconds between requests to one host
    timeout: float = Field(default=30.0, gt=0, le=600)  # seconds for each read from the socket
    deadline: float = Field(default=120.0, gt=0, le=3600)  # seconds for one request whole
    run_deadline: float = Field(default=900.0, gt=0, le=86400)  # seconds for all of a run's requests
    robots: bool = True  # honour the site's robots.txt (turn off only for your own site)
    hosts: list[Annotated[str, Field(pattern=_HOST)]] = []  # more hosts than the configured URLs'
    allow_private: bool = False  # may reach loopback, private, link-local ... addresses (an intranet CMS)

    @property
    def url_template(self) -> None:
        return None

    @property
    def start_urls(self) -> tuple[str, ...]:
        """The configured URLs: their hosts (and `www.` twins) may always be read."""
        return (str(getattr(self, "url", "")),)


class FeedSourceConfig(_WebSourceConfig):
    """An upstream RSS or Atom feed (docs/sources.md)."""

    type: Literal["feed"]
    url: str
    category: str  # a category name or slug: where the feed's items go
    name: str = ""

    @property
    def source_name(self) -> str:
        """Stable across runs: the configured name, else the feed's host and path."""
        if self.name:
            return self.name
        parts = urlsplit(self.url)
        return f"{parts.hostname or 'feed'}{parts.path}".rstrip("/")

    @property
    def default_category(self) -> str | None:
        return self.category


class HtmlListOverride(Section):
    """One category's own way through its list pages; a key left out is the source's."""

    links: str | None = Field(default=None, min_length=1)
    next: str | None = None  # with url_pattern unset: replaces the source's url_pattern too
    url_pattern: str | None = None  # with next unset: replaces the source's next too
    max_pages: int | None = Field(default=None, ge=1, le=200)


class HtmlListConfig(Section):
    pages: dict[str, list[str]] = Field(min_length=1)  # category name or slug -> first list pages
    links: str = Field(min_length=1)  # CSS selector of the article links on a list page
    next: str | None = None  # CSS selector of the link to the next list page
    url_pattern: str | None = None  # or list page URLs with {page}: 2, 3, ...
    max_pages: int = Field(default=5, ge=1, le=200)
    overrides: dict[str, HtmlListOverride] = {}  # category (as in pages, or its other name) -> its own

    def matched_overrides(self, category_of: Mapping[str, str]) -> tuple[dict[str, HtmlListOverride], list[str]]:
        """(key of `pages` -> its category's override, override keys naming no category of
        `pages`); `category_of`: each category's name and slug -> its name."""
        by_category = {category_of.get(key, key): key for key in self.pages}
        matched, unmatched = {}, []
        for key, override in self.overrides.items():
            page_key = by_category.get(category_of.get(key, key))
            if page_key is None:
                unmatched.append(key)
            else:
                matched[page_key] = override
        return matched, unmatched


class HtmlArticleConfig(Section):
    title: str = "h1"
    body: str | None = None  # CSS selector; none: readability finds the main text
    meta: str | None = None  # CSS selector of the line with date and source; none: the whole page
    date: str | None = None  # regex, first group the date; none: the first date found
    date_format: str | None = None  # strptime format of that date; none: 2023-12-04, 2023年12月4日 ...
    source: str | None = None  # regex, first group the source (shown as the author)
    author: str | None = None  # CSS selector of the author


class HtmlSourceConfig(_WebSourceConfig):
    """The site's own list and article pages (docs/sources.md)."""

    type: Literal["html"]
    name: str = ""
    list: HtmlListConfig
    article: HtmlArticleConfig = HtmlArticleConfig()
    recheck_days: int = Field(default=0, ge=0, le=3650)  # read stored articles again after N days

    @property
    def start_urls(self) -> tuple[str, ...]:
        return tuple(url for urls in self.list.pages.values() for url in urls)

    @property
    def source_name(self) -> str:
        if self.name:
            return self.name
        first = next(iter(u for urls in self.list.pages.values() for u in urls), "")
        return urlsplit(first).hostname or "html"

    @property
    def default_category(self) -> None:
        return None


class JsonFieldsConfig(Section):
    list: str = ""  # dotted path to the list of items ("": the answer is the list)
    id: str = "id"
    title: str = "title"
    date: str = "date"
    body: str = "content"
    url: str = "url"
    category: str = ""  # dotted path to a category name or slug; "": the source's `category`
    author: str = ""
    summary: str = ""


class JsonPagingConfig(Section):
    kind: Literal["page", "offset", "next", "none"] = "page"
    page_size: int = Field(default=20, ge=1, le=10000)  # for offset paging
    next: str = ""  # for next paging: dotted path to the next page's URL
    max_pages: int = Field(default=5, ge=1, le=200)


class JsonSourceConfig(_WebSourceConfig):
    """Any JSON API (docs/sources.md)."""

    type: Literal["json"]
    url: str  # with {page} or {offset} for those kinds of paging
    name: str = ""
    category: str | None = None  # for items whose own category field is empty or absent
    fields: JsonFieldsConfig = JsonFieldsConfig()
    paging: JsonPagingConfig = JsonPagingConfig()

    @property
    def source_name(self) -> str:
        return self.name or urlsplit(self.url).hostname or "json"

    @property
    def default_category(self) -> str | None:
        return self.category


class WordPressSourceConfig(_WebSourceConfig):
    """A WordPress site's REST API (docs/sources.md)."""

    type: Literal["wordpress"]
    url: str  # the site's address, e.g. "https://blog.example.org"
    name: str = ""
    categories: dict[str, str] = {}  # WordPress category slug -> our category (name or slug)
    category: str | None = None  # for posts none of whose categories map to ours
    max_pages: int = Field(default=10, ge=1, le=1000)  # of 50 posts each, per run

    @property
    def source_name(self) -> str:
        return self.name or urlsplit(self.url).hostname or "wordpress"

    @property
    def default_category(self) -> str | None:
        return self.category


SourceConfig = Annotated[
    FilesSourceConfig | FeedSourceConfig | HtmlSourceConfig | JsonSourceConfig | WordPressSourceConfig,
    Field(discriminator="type"),
]
SOURCE_TYPES = ("files", "feed", "html", "json", "wordpress")
WebSourceConfig = FeedSourceConfig | HtmlSourceConfig | JsonSourceConfig | WordPressSourceConfig
