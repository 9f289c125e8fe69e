"""Themes as an operator uses them: [theme] keys, overrides exported and edited, words replaced,
broken overrides reported with file and line; golden files for the default look of the pages."""

from __future__ import annotations

import json
import os
import re
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from conftest import Site
from publisher.errors import ThemeError
from publisher.theme import catalogue, contrast_with_white, lighter
from publisher.web import create_app

GOLDEN = Path(__file__).parent / "golden" / "pages"
LOGO = "https://static.example.org/img/logo.png"
ACCENT = "#0b5cad"


def themed(site: Site, theme_table: str) -> None:
    site.write_config(site.mail_to_outbox() + '\n[web]\npublic_url = "http://127.0.0.1:8080"\n' + theme_table)
    site.article("tech/a.md", "科技新闻", date="2026-11-18 09:00")


def digest_html(site: Site) -> str:
    result = site.cli("digest", "preview", "--out", str(site.root / "preview"))
    assert result.exit_code == 0, result.output
    return (site.root / "preview" / "digest.html").read_text(encoding="utf-8")


def subscribe_page(site: Site) -> tuple[str, dict[str, str]]:
    app = site.app()
    try:
        response = create_app(app).test_client().get("/subscribe")
        assert response.status_code == 200
        return response.get_data(as_text=True), dict(response.headers)
    finally:
        app.close()


def test_export_copies_every_bundled_template_and_never_overwrites(site: Site) -> None:
    folder = site.root / "theme"
    (folder / "web").mkdir(parents=True)
    (folder / "web" / "subscribe.html.j2").write_text("mine", encoding="utf-8")
    result = site.cli("theme", "export", str(folder))
    assert result.exit_code == 0, result.output
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"digest.html.j2", "digest.txt.j2", "account.html.j2", "index.html.j2", "web/base.html.j2",
            "messages/zh-CN.toml", "messages/en.toml"} <= names  # fmt: skip
    assert not any(name.endswith(".py") for name in names)
    assert (folder / "web" / "subscribe.html.j2").read_text(encoding="utf-8") == "mine"
    assert "kept" in result.output


def test_overrides_accent_and_logo_show_in_the_digest_and_the_subscribe_page(site: Site) -> None:
    folder = site.root / "theme"
    themed(site, f'[theme]\ntemplates = "{folder}"\nlogo_url = "{LOGO}"\naccent_color = "{ACCENT}"\n'
                 'intro = "本周要闻，由办公室编辑。"\nfooter = \'研究院 · <a href="https://www.example.org/about" '
                 'onclick="x()">关于我们</a><script>alert(1)</script>\'\n')  # fmt: skip
    assert site.cli("theme", "export", str(folder)).exit_code == 0
    for name, mark in (("digest.html.j2", "<!-- our digest -->"), ("web/subscribe.html.j2", "<!-- our form -->")):
        path = folder / name
        text = path.read_text(encoding="utf-8")
        anchor = "<body" if "<body" in text else "{% block content %}"  # the subscribe page extends base
        path.write_text(text.replace(anchor, f"{anchor}{mark}" if anchor.startswith("{%") else f"{mark}\n{anchor}"),
                        encoding="utf-8")  # fmt: skip
    assert site.build().failed_sources == []

    html = digest_html(site)
    assert "<!-- our digest -->" in html
    assert ACCENT in html and LOGO in html and "本周要闻，由办公室编辑。" in html
    assert 'href="https://www.example.org/about"' in html and "onclick" not in html and "<script" not in html

    page, headers = subscribe_page(site)
    assert "<!-- our form -->" in page
    assert ACCENT in page and LOGO in page and "关于我们" in page and "<script" not in page
    assert "img-src 'self' https://static.example.org;" in headers["Content-Security-Policy"]

    index = (site.out / "index.html").read_text(encoding="utf-8")
    assert ACCENT in index and LOGO in index


def test_default_look_has_the_bundled_accent_and_no_logo(site: Site) -> None:
    themed(site, "")
    site.build()
    html = digest_html(site)
    page, headers = subscribe_page(site)
    for text in (html, page):
        assert "#b4232a" in text and "<img" not in text
    assert "img-src 'self';" in headers["Content-Security-Policy"]


def test_changing_the_theme_rewrites_index_html(site: Site) -> None:
    themed(site, "")
    site.build()
    themed(site, f'[theme]\naccent_color = "{ACCENT}"\n')
    report = site.build()
    assert "index.html" in report.written_paths
    assert ACCENT in (site.out / "index.html").read_text(encoding="utf-8")


def test_a_catalogue_override_replaces_single_words(site: Site) -> None:
    folder = site.root / "theme"
    (folder / "messages").mkdir(parents=True)
    words = '[pages]\nsubmit = "立即订阅"\n[account.confirm]\nbutton = "确认"\n'
    (folder / "messages" / "zh-CN.toml").write_text(words, encoding="utf-8")
    themed(site, f'[theme]\ntemplates = "{folder}"\n')
    page, _headers = subscribe_page(site)
    assert "立即订阅" in page and "邮箱地址" in page  # the one word changed, the rest stayed
    words = catalogue("zh-CN", folder)
    assert words["account"]["confirm"]["button"] == "确认" and words["account"]["confirm"]["heading"]


def test_a_catalogue_override_with_an_unknown_key_or_field_is_refused(tmp_path: Path) -> None:
    (tmp_path / "messages").mkdir()
    path = tmp_path / "messages" / "en.toml"
    path.write_text('[pages]\nsubmitt = "Go"\n', encoding="utf-8")
    with pytest.raises(ThemeError, match=r"en\.toml: unknown key pages\.submitt"):
        catalogue("en", tmp_path)
    path.write_text('[pages]\nsent_body = "Mail sent to {adress}"\n', encoding="utf-8")
    with pytest.raises(ThemeError, match=r"pages\.sent_body uses \{adress\}"):
        catalogue("en", tmp_path)


def test_a_template_with_a_syntax_error_stops_commands_with_file_and_line(site: Site) -> None:
    folder = site.root / "theme"
    folder.mkdir()
    (folder / "digest.html.j2").write_text("<p>\n{{ list_name }\n</p>\n", encoding="utf-8")
    themed(site, f'[theme]\ntemplates = "{folder}"\n')
    for command in (["check"], ["build"], ["digest", "preview"]):
        result = site.cli(*command)
        assert result.exit_code == 2, result.output
        assert f"{folder / 'digest.html.j2'}, line 2" in result.output


def test_check_renders_overrides_and_reports_an_unknown_variable_with_file_and_line(site: Site) -> None:
    folder = site.root / "theme"
    assert site.cli("theme", "export", str(folder)).exit_code == 0
    subscribe = folder / "web" / "subscribe.html.j2"
    lines = subscribe.read_text(encoding="utf-8").splitlines()
    lines.insert(3, "<p>{{ site_tagline }}</p>")
    subscribe.write_text("\n".join(lines) + "\n", encoding="utf-8")
    digest = folder / "digest.txt.j2"
    digest.write_text(digest.read_text(encoding="utf-8").replace("{{ unsubscribe_url }}", ""), encoding="utf-8")
    themed(site, f'[theme]\ntemplates = "{folder}"\n')
    result = site.cli("check")
    assert result.exit_code == 1, result.output
    assert f"{subscribe}, line 4: UndefinedError: 'site_tagline' is undefined" in result.output
    assert "digest.txt.j2 has no unsubscribe_url" in result.output


def test_check_passes_an_exported_theme_untouched_and_warns_on_a_pale_accent(site: Site) -> None:
    folder = site.root / "theme"
    assert site.cli("theme", "export", str(folder)).exit_code == 0
    themed(site, f'[theme]\ntemplates = "{folder}"\naccent_color = "#ffcc00"\n')
    result = site.cli("check")
    assert result.exit_code == 0, result.output
    assert "contrast of 1.5:1" in result.output


def test_accent_arithmetic() -> None:
    assert lighter("#b4232a") == "#e8878c"  # same hue, readable on dark grey
    assert lighter("#eeeeee") == "#eeeeee"  # already light: unchanged
    assert round(contrast_with_white("#000"), 1) == 21.0
    assert contrast_with_white("#b4232a") > 4.5 > contrast_with_white("#ffcc00")


def _masked(text: str) -> str:
    return re.sub(r'name="csrf" value="[^"]+"', 'name="csrf" value="…"', text)


@pytest.mark.parametrize("name", ["index.html", "subscribe.html", "confirm-mail.html"])
def test_golden_default_look_of_the_pages(site: Site, name: str) -> None:
    """UPDATE_GOLDEN=1 rewrites tests/golden/pages/ after a deliberate change of the look."""
    themed(site, "")
    site.build()
    if name == "index.html":
        actual = (site.out / "index.html").read_text(encoding="utf-8")
    elif name == "subscribe.html":
        actual = _masked(subscribe_page(site)[0])
    else:
        app = site.app()
        try:
            from publisher.newsletter import Newsletter
            from publisher.signup import request_subscription

            subscriber, signup = request_subscription(
                app.store, "reader@example.org", "读者", (), app.clock(), app.offered.default
            )
            message = Newsletter(app).account_message(subscriber, True, signup)
        finally:
            app.close()
        parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
        html = parsed.get_body(("html",)).get_content()  # type: ignore[union-attr]
        actual = re.sub(r"/confirm/[\w.-]+", "/confirm/…", html)
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8", newline="")
    assert actual == path.read_text(encoding="utf-8"), f"{name} differs from its golden file (UPDATE_GOLDEN=1)"


def test_a_missing_theme_folder_is_named(site: Site) -> None:
    themed(site, f'[theme]\ntemplates = "{site.root / "nowhere"}"\n')
    result = site.cli("build")
    assert result.exit_code == 2 and "nowhere" in result.output and "is not a folder" in result.output


@pytest.mark.parametrize(
    ("words", "message"),
    [
        ('[digest]\nsubject = "{{ list_name }"\n', r"en\.toml: digest\.subject: template error"),
        ('[digest]\nsubject = "{{ list_nam }}"\n', r"digest\.subject: template error: 'list_nam' is undefined"),
        ("[pages]\nsubmit = 3\n", r"en\.toml: pages\.submit must be a string, not int"),
        ('[account.confirm]\nbuton = "x"\n', r"en\.toml: unknown key account\.confirm\.buton"),
        ('[pages]\nsubmit = "Go"\nsubmitt = "Go"\n', r"unknown key pages\.submitt"),
    ],
)
def test_catalogue_overrides_are_checked_entry_by_entry(tmp_path: Path, words: str, message: str) -> None:
    """The subject is a Jinja template: a broken one in a theme is refused when the theme loads,
    not when Monday's digest is drafted."""
    (tmp_path / "messages").mkdir()
    (tmp_path / "messages" / "en.toml").write_text(words, encoding="utf-8")
    with pytest.raises(ThemeError, match=message) as raised:
        catalogue("en", tmp_path)
    assert "pages.submit.toml" not in str(raised.value) and "pages.submit.toml" not in raised.value.hint


def test_a_broken_subject_in_the_theme_stops_digest_send_before_planning(site: Site) -> None:
    folder = site.root / "theme"
    (folder / "messages").mkdir(parents=True)
    (folder / "messages" / "zh-CN.toml").write_text('[digest]\nsubject = "{{ list_name }"\n', encoding="utf-8")
    themed(site, f'[theme]\ntemplates = "{folder}"\n')
    result = site.cli("digest", "send")
    assert result.exit_code == 2 and "zh-CN.toml: digest.subject: template error" in result.output
    app = site.app()
    try:
        assert app.store.digests() == []  # nothing left planning
    finally:
        app.close()


@pytest.mark.parametrize(
    "logo",
    [
        "https://cdn.example.net;script-src 'unsafe-inline' *;x/l.png",
        "https://user@cdn.example.net/l.png",
        "https://cdn.example.net/l.png' 'unsafe-inline",
        "https://cdn example.net/l.png",
    ],
)
def test_a_logo_url_that_would_bend_the_pages_csp_is_refused(site: Site, logo: str) -> None:
    themed(site, f"[theme]\nlogo_url = {json.dumps(logo)}\n")
    result = site.cli("check")
    assert result.exit_code == 2 and "theme.logo_url" in result.output, result.output


def test_the_logo_origin_in_the_csp_keeps_its_port(site: Site) -> None:
    themed(site, '[theme]\nlogo_url = "https://static.example.org:8443/img/logo.png"\n')
    _page, headers = subscribe_page(site)
    assert "img-src 'self' https://static.example.org:8443;" in headers["Content-Security-Policy"]


def test_footer_links_are_absolute_in_mail_and_kept_in_its_text_part(site: Site) -> None:
    themed(site, "[theme]\nfooter = '研究院 · <a href=\"/about\">关于我们</a>'\n")
    site.build()
    html = digest_html(site)
    assert 'href="https://www.example.org/about"' in html
    text = (site.root / "preview" / "digest.txt").read_text(encoding="utf-8")
    assert "关于我们 (https://www.example.org/about)" in text
