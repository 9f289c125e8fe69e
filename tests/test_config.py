"""Configuration: the issue's minimal file works; every problem is reported at once with its key."""

from __future__ import annotations

import textwrap
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from publisher.cli import main
from publisher.config import load_settings, validate
from publisher.errors import ConfigError

MINIMAL = """\
[site]
title = "高新院"
url = "https://www.example.org"
language = "zh-CN"
timezone = "Asia/Shanghai"
[output]
dir = "public"
[store]
url = "sqlite:///var/publisher.db"
[text]
convert = "t2s"            # none | t2s | s2t | tw2s | s2tw (OpenCC)
[[categories]]
name = "高新院新闻"          # slug optional: pinyin of the name by default
[[categories]]
name = "政策解读"
slug = "policy"
[[sources]]
type = "files"
path = "content"
"""


def test_minimal_config_from_the_issue_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "publisher.toml").write_text(MINIMAL, encoding="utf-8")
    (tmp_path / "content" / "高新院新闻").mkdir(parents=True)
    (tmp_path / "content" / "高新院新闻" / "a.md").write_text(
        "---\ntitle: 高新區(qū)新聞\ndate: 2026-03-04 09:30\n---\n正文\n", encoding="utf-8"
    )
    result = CliRunner().invoke(main, ["build"])  # the default --config path
    assert result.exit_code == 0, result.output
    assert (tmp_path / "var" / "publisher.db").is_file()
    rss = (tmp_path / "public" / "gao-xin-yuan-xin-wen" / "rss.xml").read_text(encoding="utf-8")
    assert "<title>高新区新闻</title>" in rss  # gloss gone, then Traditional -> Simplified
    assert (tmp_path / "public" / "policy" / "atom.xml").is_file()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_every_problem_is_reported_with_its_key_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [site]
        title = "高新院"
        url = "www.example.org"
        timezone = "Asia/Beijing"
        langauge = "zh-CN"
        [text]
        convert = "simplify"
        summary_length = 3
        [feeds]
        max_items = 0
        [[categories]]
        name = "政策解读"
        slug = "Policy Slug"
        [[categories]]
        name = "政策解读"
        [[sources]]
        type = "ftp"
        [[sources]]
        type = "files"
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    keys = {key for key, _message, _fix in caught.value.problems}
    assert {
        "site.langauge",
        "text.convert",
        "text.summary_length",
        "feeds.max_items",
        "categories[0].slug",
        "sources[0].type",
        "sources[1].path",
    } <= keys
    text = str(caught.value)
    assert str(path) in text
    assert "unknown key" in text and "unknown source type 'ftp'" in text and "fix:" in text


def test_an_env_key_that_is_not_a_variable_name_says_what_it_wants(tmp_path: Path) -> None:
    """`*_env` keys name an environment variable; pydantic's own words were only its regex."""
    path = write(
        tmp_path,
        """
        [site]
        title = "高新院"
        url = "https://www.example.org"
        [[categories]]
        name = "政策解读"
        [[sources]]
        type = "files"
        path = "content"
        [alerts]
        url_env = "https://oapi.dingtalk.com/robot/send?access_token=x"
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    [(key, message, fix)] = caught.value.problems
    assert key == "alerts.url_env" and "is not an environment variable's name" in message
    assert "ALERT_WEBHOOK_URL" in fix and "pattern" not in message


def test_meaning_checks_after_types_pass(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [site]
        title = "高新院"
        url = "www.example.org"
        timezone = "Asia/Beijing"
        [[categories]]
        name = "政策解读"
        slug = "policy"
        [[categories]]
        name = "政策解读"
        slug = "policy"
        [[sources]]
        type = "files"
        path = "content"
        default_category = "不存在"
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    keys = [key for key, _m, _f in caught.value.problems]
    assert keys == [
        "site.timezone",
        "site.url",
        "categories[1].name",
        "categories[1].slug",
        "sources[0].default_category",
    ]


def test_toml_syntax_error_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[site]\ntitle = "x"\nurl = https://x\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert "line 3" in str(caught.value)


def test_cli_exits_2_on_bad_config(tmp_path: Path) -> None:
    path = write(tmp_path, "[site]\ntitle = 1\n")
    result = CliRunner().invoke(main, ["--config", str(path), "check"])
    assert result.exit_code == 2
    assert "site.url" in result.output and "categories" in result.output


def test_a_problem_quotes_the_value_as_written_never_as_an_emoji(tmp_path: Path) -> None:
    path = write(tmp_path, '[site]\ntitle = "x"\nurl = "https://x.example"\ntimezone = "Asia/:smile:"\n')
    result = CliRunner().invoke(main, ["--config", str(path), "check"])
    assert result.exit_code == 2
    assert "unknown time zone 'Asia/:smile:'" in result.output


def test_missing_config_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "none.toml"), "build"])
    assert result.exit_code == 2
    assert "not found" in result.output


def test_a_slug_may_not_be_another_categorys_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [site]
        title = "t"
        url = "https://x.org"
        [[categories]]
        name = "tech"
        [[categories]]
        name = "科技创新"
        slug = "tech"
        [[sources]]
        type = "files"
        path = "c"
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.problems == [
        ("categories[1].slug", "'tech' is already categories[0].name", "give each category its own name and slug")
    ]


@pytest.mark.parametrize("template", ["https://x.org/{year}/{stem}.html", "https://x.org/{path", "https://x.org/fixed"])
def test_url_template_placeholders_are_checked(tmp_path: Path, template: str) -> None:
    path = write(
        tmp_path,
        f"""
        [site]
        title = "t"
        url = "https://x.org"
        [[categories]]
        name = "a"
        [[sources]]
        type = "files"
        path = "c"
        url_template = "{template}"
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert [key for key, _m, _f in caught.value.problems] == ["sources[0].url_template"]


MAIL_BASE = """
[site]
title = "t"
url = "https://x.org"
[[categories]]
name = "a"
[[sources]]
type = "files"
path = "c"
"""


def test_mail_defaults_to_the_outbox(tmp_path: Path) -> None:
    from publisher.app import App
    from publisher.transports.outbox import OutboxTransport

    app = App(load_settings(write(tmp_path, MAIL_BASE)))
    assert isinstance(app.transport(), OutboxTransport)


def test_mail_tables_are_checked(tmp_path: Path) -> None:
    path = write(tmp_path, MAIL_BASE + '[mail]\ntransport = "mailgun"\n[mail.sendgrid]\napi_key_env = "bad-name"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert [key for key, _m, _f in caught.value.problems] == ["mail.sendgrid.api_key_env"]  # not a variable name
    path = write(tmp_path, MAIL_BASE + '[mail]\ntransport = "mailgun"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert [key for key, _m, _f in caught.value.problems] == ["mail.mailgun"]
    path = write(tmp_path, MAIL_BASE + '[mail]\ntransport = "pigeon"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.problems[0][0] == "mail.transport"
    path = write(tmp_path, MAIL_BASE + '[mail]\ntransport = "mailgun"\n[mail.mailgun]\napi_key_env = "MG_KEY"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert [key for key, _m, _f in caught.value.problems] == ["mail.mailgun.domain"]


def test_secrets_come_only_from_the_named_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from publisher.app import App
    from publisher.transports.batch import BatchApiTransport
    from publisher.transports.http_api import HttpApiTransport
    from publisher.transports.smtp import SmtpTransport

    text = MAIL_BASE + (
        '[mail]\ntransport = "smtp"\n[mail.smtp]\nhost = "smtp.example.org"\nusername = "digest"\n'
        'password_env = "PUBLISHER_TEST_SMTP_PASSWORD"\n'
        '[mail.resend]\napi_key_env = "PUBLISHER_TEST_RESEND_KEY"\nbase_url = "https://api.example.net"\n'
    )
    app = App(load_settings(write(tmp_path, text)))
    monkeypatch.delenv("PUBLISHER_TEST_SMTP_PASSWORD", raising=False)
    with pytest.raises(ConfigError) as caught:
        app.transport()
    assert "PUBLISHER_TEST_SMTP_PASSWORD is not set" in str(caught.value) and "mail.smtp.password_env" in str(
        caught.value
    )
    monkeypatch.setenv("PUBLISHER_TEST_SMTP_PASSWORD", "s3cret")
    smtp = app.transport()
    assert isinstance(smtp, SmtpTransport) and smtp.password == "s3cret" and smtp.security == "starttls"
    resend = App(load_settings(write(tmp_path, text.replace('transport = "smtp"', 'transport = "resend"'))))
    monkeypatch.setenv("PUBLISHER_TEST_RESEND_KEY", "re_123")
    batch = resend.transport()
    assert isinstance(batch, BatchApiTransport) and batch.limit == 100  # Resend's batch API
    api = batch.single
    assert isinstance(api, HttpApiTransport) and api.api_key == "re_123" and api.base_url == "https://api.example.net"


def test_check_reports_a_missing_mail_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default store, var/publisher.db, is read relative to here
    (tmp_path / "c").mkdir()
    text = MAIL_BASE.replace('path = "c"', f'path = "{tmp_path / "c"}"')
    text += '[mail]\ntransport = "postmark"\n[mail.postmark]\napi_key_env = "PUBLISHER_TEST_POSTMARK"\n'
    monkeypatch.delenv("PUBLISHER_TEST_POSTMARK", raising=False)
    result = CliRunner().invoke(main, ["--config", str(write(tmp_path, text)), "check"])
    assert result.exit_code == 2 and "PUBLISHER_TEST_POSTMARK is not set" in result.output
    monkeypatch.setenv("PUBLISHER_TEST_POSTMARK", "pm-token")
    result = CliRunner().invoke(main, ["--config", str(write(tmp_path, text)), "check"])
    assert result.exit_code == 0, result.output


def test_a_misspelt_subject_variable_is_caught_by_check(tmp_path: Path) -> None:
    raw = tomllib.loads(MINIMAL) | {"digest": {"subject": "{{ site }} {{ tittle }}"}}
    with pytest.raises(ConfigError) as caught:
        validate(raw)
    assert "digest.subject" in str(caught.value) and "tittle" in str(caught.value)


def test_numeric_days_of_week_are_refused_in_the_schedule() -> None:
    raw = tomllib.loads(MINIMAL) | {"digest": {"schedule": "0 8 * * 1"}}
    with pytest.raises(ConfigError, match="day names|names"):
        validate(raw)


def test_the_default_schedules_are_lines_apscheduler_reads_and_a_bad_one_given_is_refused() -> None:
    """A schedule the file does not give is not parsed at all (check_digest): the defaults must
    then be good lines; one the file gives is parsed, and one APScheduler refuses is an error."""
    from apscheduler.triggers.cron import CronTrigger

    from publisher.config.mail import DigestConfig

    for key in ("schedule", "daily_schedule"):
        default = DigestConfig.model_fields[key].default
        CronTrigger.from_crontab(default, timezone="UTC")  # raises if it is not
        raw = tomllib.loads(MINIMAL) | {"digest": {key: "0 25 * * mon"}}
        with pytest.raises(ConfigError, match=f"digest.{key}"):
            validate(raw)


def test_settings_without_schedules_are_read_without_apscheduler(tmp_path: Path) -> None:
    """APScheduler's cron parser (and asyncio, which it imports) costs every command's start 15
    ms: reading settings that give no schedule does not import it."""
    import json
    import subprocess
    import sys

    path = write(tmp_path, MINIMAL)
    code = "import json, sys\nfrom pathlib import Path\nfrom publisher.config import load_settings\n"
    code += f"load_settings(Path({str(path)!r}))\n"
    code += "print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    assert "publisher.config.mail_checks" in loaded  # the digest's checks ran
    assert sorted(name for name in loaded if name.startswith(("apscheduler", "asyncio"))) == []


def test_ses_and_directmail_read_their_keys_from_the_named_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from publisher.app import App
    from publisher.transports.batch import ConcurrentTransport
    from publisher.transports.http_api import HttpApiTransport

    text = MAIL_BASE + (
        '[mail]\ntransport = "ses"\n[mail.ses]\nregion = "eu-west-1"\naccess_key_id_env = "PUBLISHER_TEST_AWS_ID"\n'
        'secret_access_key_env = "PUBLISHER_TEST_AWS_SECRET"\nsession_token_env = "PUBLISHER_TEST_AWS_TOKEN"\n'
        '[mail.aliyun]\nregion = "ap-southeast-1"\naccess_key_id_env = "PUBLISHER_TEST_ALI_ID"\n'
        'access_key_secret_env = "PUBLISHER_TEST_ALI_SECRET"\n'
    )
    for name in ("AWS_ID", "AWS_SECRET", "AWS_TOKEN", "ALI_ID", "ALI_SECRET"):
        monkeypatch.setenv(f"PUBLISHER_TEST_{name}", name.lower())
    monkeypatch.delenv("PUBLISHER_TEST_AWS_TOKEN")
    ses = App(load_settings(write(tmp_path, text)))
    with pytest.raises(ConfigError) as caught:
        ses.transport()
    assert "PUBLISHER_TEST_AWS_TOKEN is not set" in str(caught.value) and "mail.ses.session_token_env" in str(
        caught.value
    )
    monkeypatch.setenv("PUBLISHER_TEST_AWS_TOKEN", "aws_token")
    concurrent = ses.transport()
    assert isinstance(concurrent, ConcurrentTransport) and concurrent.limit == 8  # SES: 8 calls at once
    api = concurrent.make()
    assert isinstance(api, HttpApiTransport) and api.base_url == "https://email.eu-west-1.amazonaws.com"
    assert (api.api_key, api.options["access_key_id"], api.options["session_token"]) == (
        "aws_secret",
        "aws_id",
        "aws_token",
    )
    thousand = text.replace('transport = "ses"', 'transport = "ses"\nbatch_size = 1000')
    many = App(load_settings(write(tmp_path, thousand)))
    capped = many.transport()  # a thread per call at once: 16 at most, whatever batch_size says
    assert isinstance(capped, ConcurrentTransport) and capped.limit == 16
    aliyun = App(load_settings(write(tmp_path, text.replace('transport = "ses"', 'transport = "aliyun"'))))
    api = aliyun.transport()
    assert isinstance(api, HttpApiTransport) and api.base_url == "https://dm.ap-southeast-1.aliyuncs.com"
    assert (api.api_key, api.options["access_key_id"], api.options["security_token"]) == ("ali_secret", "ali_id", "")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "id")  # the default names
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret")
    hangzhou = App(load_settings(write(tmp_path, MAIL_BASE + '[mail]\ntransport = "aliyun"\n[mail.aliyun]\n')))
    assert hangzhou.transport().base_url == "https://dm.aliyuncs.com"  # type: ignore[attr-defined]


def test_ses_needs_a_region_in_aws_form(tmp_path: Path) -> None:
    for table, key in (("[mail.ses]\n", "mail.ses.region"), ('[mail.ses]\nregion = "Ireland"\n', "mail.ses.region")):
        with pytest.raises(ConfigError) as caught:
            load_settings(write(tmp_path, MAIL_BASE + '[mail]\ntransport = "ses"\n' + table))
        assert [k for k, _m, _f in caught.value.problems] == [key]
    path = write(
        tmp_path, MAIL_BASE + '[mail]\ntransport = "ses"\n[mail.ses]\nregion = "us-east-1"\nbase_url = "ftp://x"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert [k for k, _m, _f in caught.value.problems] == ["mail.ses.base_url"]


def test_retry_after_takes_durations_within_a_week_and_max_attempts_is_retired() -> None:
    from datetime import timedelta

    settings = validate(tomllib.loads(MINIMAL) | {"digest": {"retry_after": ["30s", "2m", "1h", "1d"]}})
    assert settings.digest.retry_delays == tuple(timedelta(seconds=s) for s in (30, 120, 3600, 86400))
    assert validate(tomllib.loads(MINIMAL)).digest.retry_delays[-1] == timedelta(hours=4)  # the default window
    assert validate(tomllib.loads(MINIMAL) | {"digest": {"retry_after": []}}).digest.retry_delays == ()

    raw = tomllib.loads(MINIMAL) | {"digest": {"retry_after": ["5m", "soon", "0m", "10 m"], "max_attempts": 5}}
    with pytest.raises(ConfigError) as caught:
        validate(raw)
    problems = {key: (message, fix) for key, message, fix in caught.value.problems}
    assert set(problems) == {"digest.retry_after[1]", "digest.retry_after[2]", "digest.retry_after[3]",
                             "digest.max_attempts"}  # fmt: skip
    assert "'soon' is not a duration" in problems["digest.retry_after[1]"][0]
    assert problems["digest.max_attempts"][0] == "is no longer a key"
    assert "digest.retry_after" in problems["digest.max_attempts"][1]
    with pytest.raises(ConfigError, match="add up to more than 7 days"):
        validate(tomllib.loads(MINIMAL) | {"digest": {"retry_after": ["4d", "4d"]}})
    with pytest.raises(ConfigError, match="retry_after"):
        validate(tomllib.loads(MINIMAL) | {"digest": {"retry_after": ["1m"] * 21}})


@pytest.mark.parametrize(
    ("slug", "holds"),
    [("zh-hant", "feeds and pages in 繁體"), ("zh-hans", "feeds and pages in 简体"), ("digests", "digest archive")],
)
def test_a_slug_may_not_be_a_folder_the_output_keeps_for_itself(tmp_path: Path, slug: str, holds: str) -> None:
    path = write(
        tmp_path,
        f"""
        [site]
        title = "t"
        url = "https://x.org"
        [[categories]]
        name = "港澳新闻"
        slug = "{slug}"
        [[sources]]
        type = "files"
        path = "c"
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    [(key, problem, fix)] = caught.value.problems
    assert key == "categories[0].slug" and slug in problem and holds in problem
    assert f'"{slug}-news"' in fix and "zh-hant, zh-hans, digests" in fix
    result = CliRunner().invoke(main, ["--config", str(path), "check"])
    assert result.exit_code == 2 and "categories[0].slug" in result.output


def test_web_origin_spells_an_idn_host_as_browsers_send_it() -> None:
    """`[web] embed_origins = ["https://新闻.中国"]` must match the punycode `Origin` a browser sends."""
    from publisher.config import web_origin

    assert web_origin("https://新闻.中国/news/") == "https://xn--efvy88h.xn--fiqs8s"
    assert web_origin("https://新闻.中国") == web_origin("https://xn--efvy88h.xn--fiqs8s")
    assert web_origin("http://Bücher.Example:8080/x") == "http://xn--bcher-kva.example:8080"
    assert web_origin("https://www.example.org:443/") == "https://www.example.org"
    assert web_origin("https://a\u200b\u0000b.example/") is None  # not a host IDNA can spell


def test_the_hints_a_build_forks_on_are_what_the_validated_settings_say(tmp_path: Path) -> None:
    """`config_file.hints` reads the TOML before it is validated (build_ahead.py): the files
    sources' folders, whether a category lacks a slug, the store's URL with its default."""
    from publisher.config_file import DEFAULT_STORE_URL, hints

    path = tmp_path / "publisher.toml"
    path.write_text(
        textwrap.dedent(
            """
            [site]
            title = "t"
            url = "https://x.org"
            [[categories]]
            name = "科技创新"
            slug = "tech"
            [[sources]]
            type = "files"
            path = "content//news/"
            [[sources]]
            type = "feed"
            url = "https://x.org/feed"
            category = "科技创新"
            """
        ),
        encoding="utf-8",
    )
    said = hints(path)
    settings = load_settings(path)
    assert said.roots == [str(Path(s.path)) for s in settings.sources if s.type == "files"] == ["content/news"]
    assert said.unslugged is False and said.store_url == settings.store.url == DEFAULT_STORE_URL
    path.write_text(
        path.read_text(encoding="utf-8") + '[[categories]]\nname = "政策解读"\n[store]\nurl = "sqlite:///x.db"\n'
    )
    assert hints(path)[1:] == (True, "sqlite:///x.db")


@pytest.mark.parametrize(
    "text",
    ["", "[site\n", "sources = 3\ncategories = 'x'\n", "[[sources]]\ntype = 'files'\npath = 7\n", "[store]\nurl = 1\n"],
)
def test_a_file_the_hints_cannot_read_says_nothing_and_the_validation_reports_it(text: str, tmp_path: Path) -> None:
    from publisher.config_file import hints

    path = tmp_path / "publisher.toml"
    path.write_text(text, encoding="utf-8")
    said = hints(path)
    assert said.roots == [] and said.unslugged is False
    assert hints(tmp_path / "missing.toml") == ([], False, "")
