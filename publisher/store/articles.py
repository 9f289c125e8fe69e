"""Categories and articles: the queries of ingest and of the feeds, and the ingest writer."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, delete, insert, select, update
from sqlalchemy.engine import Connection, Engine

from ..model import Article, Category, Rendition
from .schema import (
    article_categories_table,
    article_renditions_table,
    articles_table,
    aware_utc,
    categories_table,
    dirty_table,
    folder_digests_table,
    naive_utc,
)
from .writer import upsert_renditions

_PARAMETER = re.compile(r"(?<![:\w]):(\w+)")


@dataclass(frozen=True, slots=True)
class Known:
    """What the store remembers of one source item, to decide new / changed / unchanged."""

    id: int
    fingerprint: str | None
    content_hash: str
    body_hash: str
    guid: str
    updated: datetime
    withdrawn: bool
    explicit_id: str | None


class ArticleStore:
    """The Store's categories, articles and dirty-feed marks: what ingest and the feeds read."""

    engine: Engine

    # --- categories --------------------------------------------------------------------------

    def sync_categories(
        self,
        wanted: Sequence[tuple[str, str | None, str]],
        slugify: Callable[[str], str],
        now: datetime,
        reserved: Collection[str] = (),
    ) -> list[Category]:
        """Categories in config order, each with its slug: a configured slug wins, else the one
        stored at first sight, else a new pinyin slug (made unique with -2, -3 ...). A slug
        made from the name is never one of `reserved` (the output folder's own folders: a
        category named "Digests" gets `digests-2`), nor stays one if it was stored before.

        Slugs change in two steps (through temporary ones), so swapping two configured slugs
        swaps the categories instead of merging them; a category no longer configured that
        holds a wanted slug moves aside to `<slug>~<id>` with its articles."""
        c, ac = categories_table, article_categories_table
        with self.engine.begin() as conn:
            rows = conn.execute(select(c.c.id, c.c.name, c.c.slug)).all()
            stored = {r.name: (r.id, r.slug) for r in rows}
            names = {name for name, _slug, _d in wanted}
            desired = {name: slug for name, slug, _d in wanted if slug}
            used = set(desired.values()) | {r.slug for r in rows if r.name not in names} | set(reserved)
            for name, _configured, _d in wanted:
                if name in desired:
                    continue
                slug = stored[name][1] if name in stored and stored[name][1] not in used else None
                if slug is None:
                    base = slugify(name) or "category"
                    slug, n = base, 1
                    while slug in used:
                        n += 1
                        slug = f"{base}-{n}"
                desired[name] = slug
                used.add(slug)

            def move(row_id: int, old: str, new: str) -> None:
                conn.execute(update(c).where(c.c.id == row_id).values(slug=new))
                conn.execute(update(ac).where(ac.c.category_slug == old).values(category_slug=new))

            wanted_slugs = set(desired.values())
            for r in rows:  # unconfigured categories step aside from wanted slugs
                if r.name not in names and r.slug in wanted_slugs:
                    move(r.id, r.slug, f"{r.slug}~{r.id}")
            changing = [
                (stored[n][0], stored[n][1], desired[n]) for n in names if n in stored and stored[n][1] != desired[n]
            ]
            for row_id, old, _new in changing:
                move(row_id, old, f"~{row_id}")
            for row_id, _old, new in changing:
                move(row_id, f"~{row_id}", new)
            for name, _slug, _d in wanted:
                if name not in stored:
                    conn.execute(insert(c).values(name=name, slug=desired[name], first_seen=naive_utc(now)))
            return [Category(name=name, slug=desired[name], description=d) for name, _s, d in wanted]

    # --- ingest ------------------------------------------------------------------------------

    def _raw_rows(self, sql: str, **params: Any) -> list[Any]:
        """Rows straight from the driver's cursor for `sql` with `:name` parameters: the lean
        queries of an unchanged build (100,000 rows in a few hundredths of a second, without
        SQLAlchemy's per-row result processing)."""
        style = self.engine.dialect.paramstyle
        names = _PARAMETER.findall(sql)
        args: Sequence[Any] | Mapping[str, Any] = params
        if style == "pyformat":
            sql = _PARAMETER.sub(r"%(\1)s", sql)
        elif style != "named":
            marker = {"qmark": "?", "format": "%s"}.get(style)
            if marker is None:  # numeric
                numbers = {name: f":{n}" for n, name in enumerate(dict.fromkeys(names), 1)}
                sql = _PARAMETER.sub(lambda m: numbers[m.group(1)], sql)
                args = [params[name] for name in numbers]
            else:
                sql = _PARAMETER.sub(marker, sql)
                args = [params[name] for name in names]
        with self.engine.connect() as conn:
            cursor = conn.connection.cursor()
            try:
                cursor.execute(sql, args)
                return list(cursor.fetchall())
            finally:
                cursor.close()

    def fingerprints(self, source: str, folder: str | None = None) -> dict[str, str | None]:
        """key -> fingerprint of every live item of a source (read from a covering index), or
        only of the items directly in `folder` (a key prefix: "" or ending in "/")."""
        sql = "SELECT key, fingerprint FROM articles WHERE source = :source AND NOT withdrawn"
        if not folder:
            rows = self._raw_rows(sql, source=source)
        elif self.engine.dialect.name == "sqlite":
            # Keys compare by their bytes here, so a folder's keys are one range of the index.
            end = folder[:-1] + chr(ord("/") + 1)
            rows = self._raw_rows(f"{sql} AND key >= :low AND key < :high", source=source, low=folder, high=end)
        else:  # other collations may not sort "/" where its code point says
            rows = self._raw_rows(
                f"{sql} AND substr(key, 1, :length) = :prefix", source=source, length=len(folder), prefix=folder
            )
        if folder is None:
            return dict(rows)
        start = len(folder)
        return {key: fp for key, fp in rows if key.startswith(folder) and "/" not in key[start:]}

    def live_count(self, source: str) -> int:
        """How many live items a source has."""
        [(count,)] = self._raw_rows(
            "SELECT count(*) FROM articles WHERE source = :source AND NOT withdrawn", source=source
        )
        return int(count)

    def folder_digests(self, source: str) -> dict[str, str]:
        """folder -> digest of its listing when all its items were last stored as listed."""
        f = folder_digests_table.c
        with self.engine.connect() as conn:
            return {
                folder: digest for folder, digest in conn.execute(select(f.folder, f.digest).where(f.source == source))
            }

    def live_ids(self, source: str) -> dict[str, int]:
        """key -> row id of every live item of a source."""
        return dict(
            self._raw_rows("SELECT key, id FROM articles WHERE source = :source AND NOT withdrawn", source=source)
        )

    def has_articles(self) -> bool:
        """Whether the store holds any article, of any source, live or withdrawn."""
        with self.engine.connect() as conn:
            return conn.execute(select(articles_table.c.id).limit(1)).first() is not None

    def has_items(self, source: str) -> bool:
        """Whether the store knows any item of this source, live or withdrawn."""
        with self.engine.connect() as conn:
            query = select(articles_table.c.id).where(articles_table.c.source == source).limit(1)
            return conn.execute(query).first() is not None

    def known(self, source: str, keys: Iterable[str]) -> dict[str, Known]:
        """What is remembered of these items, to decide new / changed / unchanged."""
        a = articles_table.c
        wanted = list(keys)
        out: dict[str, Known] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                query = select(
                    a.key,
                    a.id,
                    a.fingerprint,
                    a.content_hash,
                    a.body_hash,
                    a.guid,
                    a.updated,
                    a.withdrawn,
                    a.explicit_id,
                ).where(a.source == source, a.key.in_(wanted[start : start + 500]))
                for r in conn.execute(query).all():
                    out[r.key] = Known(
                        r.id, r.fingerprint, r.content_hash, r.body_hash, r.guid, aware_utc(r.updated), r.withdrawn,
                        r.explicit_id,
                    )  # fmt: skip
        return out

    def find_explicit(self, source: str, explicit_id: str) -> tuple[int, str] | None:
        """(row id, key) of the article that carries front matter id `explicit_id`."""
        a = articles_table.c
        with self.engine.connect() as conn:
            row = conn.execute(
                select(a.id, a.key).where(and_(a.source == source, a.explicit_id == explicit_id))
            ).first()
        return (row.id, row.key) if row else None

    def guids(self) -> set[str]:
        """Every guid in the store: new ones must not collide with any of them."""
        with self.engine.connect() as conn:
            return set(conn.execute(select(articles_table.c.guid)).scalars().all())

    def guid_exists(self, guid: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(articles_table.c.id).where(articles_table.c.guid == guid)).first() is not None

    def dirty_scopes(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(select(dirty_table.c.scope)).scalars())

    def clear_dirty(self, scopes: Iterable[str]) -> None:
        scopes = list(scopes)
        if scopes:
            with self.engine.begin() as conn:
                conn.execute(delete(dirty_table).where(dirty_table.c.scope.in_(scopes)))

    # --- feeds -------------------------------------------------------------------------------

    # Renders the bodies of articles stored unrendered (see model.Article.body_hash): given
    # them, it answers each one's rendition in their order, as soon as it is made, with the body
    # hash it rendered (the file's body now, which may be newer than the stored one), or None.
    # The composition root sets it (app.sources); without it, or for an article it cannot
    # render (its file gone since the last ingest), the article is left out, and the next
    # ingest brings it back or withdraws it.
    render_bodies: BodyRenderer | None = None

    def articles_between(self, start: datetime, end: datetime, by: str) -> list[Article]:
        """Live articles first ingested (`by="ingested"`) or published (`"published"`) in
        (start, end], newest first: a digest window's candidates."""
        a = articles_table
        column = a.c.published if by == "published" else a.c.first_seen
        query = (
            _with_rendition(select(a))
            .where(a.c.withdrawn.is_(False), column > naive_utc(start), column <= naive_utc(end))
            .order_by(a.c.published.desc(), a.c.id.desc())
        )
        if by == "first":
            query = query.where(a.c.published > naive_utc(start))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            articles = self._with_categories(conn, rows)
        return [article for article in self._rendered(rows, articles) if article is not None]

    def latest(self, category_slug: str | None, limit: int) -> list[Article]:
        """The newest live articles, of one category or of the whole site, newest first."""
        return self.latest_of([category_slug], limit)[category_slug]

    def latest_of(self, scopes: Sequence[str | None], limit: int) -> dict[str | None, list[Article]]:
        """`latest` of several scopes (category slugs, None for the whole site), one query each,
        and the bodies missing from all of them rendered at once (on every core when many). A
        scope with articles left out (a body that could not be rendered) is read again further
        back, so a feed still shows `limit` articles when the store has them."""
        return dict(self.latest_each(scopes, limit))

    def latest_each(self, scopes: Sequence[str | None], limit: int) -> Iterator[tuple[str | None, list[Article]]]:
        """`latest_of`, each scope as soon as its articles are known, while the bodies of the
        scopes after it may still be rendering (a build's feeds are rendered on the workers
        meanwhile: publisher.output); the scopes in the order their articles are known."""
        wanted = dict.fromkeys(scopes, limit)
        while wanted:
            further = {}
            for scope, found, shown in self._latest_once(wanted):
                if len(shown) >= limit or len(found) < wanted[scope]:  # full, or nothing older
                    yield scope, shown[:limit]
                else:
                    further[scope] = wanted[scope] + limit - len(shown)
            wanted = further

    def _latest_once(
        self, wanted: Mapping[str | None, int]
    ) -> Iterator[tuple[str | None, Sequence[Any], list[Article]]]:
        """Each scope's rows of its newest `wanted[scope]` and its articles that could be shown,
        as soon as the bodies it shows were rendered."""
        a, ac = articles_table, article_categories_table
        found: dict[str | None, Sequence[Any]] = {}
        rows: dict[int, Any] = {}
        with self.engine.connect() as conn:
            for scope, limit in wanted.items():
                if scope is None:
                    query = select(a).where(a.c.withdrawn.is_(False)).order_by(a.c.published.desc(), a.c.id.desc())
                else:
                    # Order by the link table's copy of `published`, so the index gives the order
                    # and only `limit` articles are read (ordering by the article's columns read them all).
                    query = (
                        select(a)
                        .join(ac, ac.c.article_id == a.c.id)
                        .where(ac.c.category_slug == scope)
                        .order_by(ac.c.published.desc(), ac.c.article_id.desc())
                    )
                found[scope] = conn.execute(_with_rendition(query.limit(limit))).all()
                rows.update((row.id, row) for row in found[scope])
            every = list(rows.values())
            articles = self._with_categories(conn, every)
        # Each scope is known once the last of its rows is, in the order of `every`
        position = {row.id: n for n, row in enumerate(every)}
        last = {scope: max((position[r.id] for r in found[scope]), default=-1) for scope in found}
        waiting = sorted(found, key=last.__getitem__)
        shown: dict[int, Article | None] = {}

        def known(upto: int) -> Iterator[tuple[str | None, Sequence[Any], list[Article]]]:
            while waiting and last[waiting[0]] <= upto:
                scope = waiting.pop(0)
                yield scope, found[scope], [a for r in found[scope] if (a := shown[r.id]) is not None]

        yield from known(-1)
        for n, article in enumerate(self._rendered(every, articles)):  # to its end: it stores what it made
            shown[every[n].id] = article
            yield from known(n)

    def _rendered(self, rows: Sequence[Any], articles: list[Article]) -> Iterator[Article | None]:
        """Each of `articles` with its rendition, in order, as soon as it has one: the stored
        one, or the one `render_bodies` makes (None when it cannot); those made are stored for
        next time once all are (an upsert: two processes rendering one body both succeed)."""
        missing = [article for row, article in zip(rows, articles, strict=True) if row.rendition_hash is None]
        made = iter(self.render_bodies(missing)) if missing and self.render_bodies is not None else iter(())
        kept = []  # RENDITION_COLUMNS
        for row, article in zip(rows, articles, strict=True):
            if article.rendered:
                yield article
                continue
            made_one = next(made, None)
            if made_one is None:
                yield None
                continue
            rendition, body_hash = made_one
            kept.append((row.id, body_hash, rendition.summary, rendition.content_html))
            yield replace(article, content_html=rendition.content_html, summary=rendition.summary, rendered=True)
        if kept:
            with self.engine.begin() as conn:
                upsert_renditions(conn, kept)

    @staticmethod
    def _with_categories(conn: Connection, rows: Sequence[Any]) -> list[Article]:
        ids = [r.id for r in rows]
        cats: dict[int, list[str]] = {i: [] for i in ids}
        for start in range(0, len(ids), 500):
            for article_id, slug in _links_of(conn, ids[start : start + 500]):
                cats[article_id].append(slug)
        return [_article(r, tuple(cats[r.id])) for r in rows]


def _links_of(conn: Connection, ids: Sequence[int]) -> Sequence[Any]:
    """(article id, category slug) of each link of `ids`, by article then slug. On SQLite
    through the driver, the statement written once: SQLAlchemy compiling its list of 500
    bound ids took 12 ms of a cold build's first feeds, while the workers waited for their
    renders; the query itself takes 1."""
    if conn.dialect.name == "sqlite":
        marks = ", ".join("?" * len(ids))
        statement = f"SELECT article_id, category_slug FROM {article_categories_table.name} WHERE article_id IN"
        return conn.exec_driver_sql(f"{statement} ({marks}) ORDER BY article_id, category_slug", tuple(ids)).all()
    ac = article_categories_table.c
    query = select(ac.article_id, ac.category_slug).where(ac.article_id.in_(ids))
    return conn.execute(query.order_by(ac.article_id, ac.category_slug)).all()


# Each article's rendition and the body hash it was rendered from (None: left out), in order
BodyRenderer = Callable[[Sequence[Article]], Iterable[tuple[Rendition, str] | None]]


def _with_rendition(query: Select[Any]) -> Select[Any]:
    """`query` on articles with each one's rendition when it is current (NULLs when not)."""
    a, r = articles_table, article_renditions_table
    current = and_(r.c.article_id == a.c.id, r.c.body_hash == a.c.body_hash)
    return query.outerjoin(r, current).add_columns(
        r.c.body_hash.label("rendition_hash"), r.c.summary.label("summary"), r.c.content_html.label("content_html")
    )


def _article(row: object, categories: tuple[str, ...]) -> Article:
    r = row  # a Row; attribute access by column name
    rendered = r.rendition_hash is not None  # type: ignore[attr-defined]
    return Article(
        source=r.source,  # type: ignore[attr-defined]
        key=r.key,  # type: ignore[attr-defined]
        guid=r.guid,  # type: ignore[attr-defined]
        title=r.title,  # type: ignore[attr-defined]
        content_html=r.content_html if rendered else "",  # type: ignore[attr-defined]
        summary=r.summary if rendered else "",  # type: ignore[attr-defined]
        published=aware_utc(r.published),  # type: ignore[attr-defined]
        updated=aware_utc(r.updated),  # type: ignore[attr-defined]
        categories=categories,
        content_hash=r.content_hash,  # type: ignore[attr-defined]
        url=r.url,  # type: ignore[attr-defined]
        author=r.author,  # type: ignore[attr-defined]
        image=r.image,  # type: ignore[attr-defined]
        tags=tuple(json.loads(r.tags)),  # type: ignore[attr-defined]
        body_hash=r.body_hash,  # type: ignore[attr-defined]
        rendered=rendered,
    )
