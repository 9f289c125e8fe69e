"""What a file reads and normalises to is pinned: its hashes, guid and fields.

The content hash, body hash and guid are stored with every article: if reading a file gave
another hash for the same bytes after an upgrade, every stored article would count as changed
(a new `updated` stamp, every feed written again). The values below were computed by the code
before the reading fast paths (issue 16); any change to them must be deliberate, with a version
bump that reads every file again."""

from __future__ import annotations

from pathlib import Path

import pytest

from publisher.model import Category, ReadItem, SourceItem
from publisher.normalize import CategoryIndex, TextRules, normalize
from publisher.sources.files import FilesSource

INDEX = CategoryIndex([Category("科技创新", "tech"), Category("政策解读", "policy")])
SITE = "https://www.example.org"

MARKDOWN = (
    "---\ntitle: 智能制造赛道观察：昆明何以跑出加速度\ndate: 2021-10-22 19:49:00\ncategory: 科技创新\n"
    "slug: a000004\n---\n\n记者在现场看到，生产线上的机械臂有序运转。\n\n## 小标题\n\n- 一\n- 二\n"
)
FILES: dict[str, bytes] = {
    "tech/plain.md": MARKDOWN.encode(),
    "tech/yaml.md": (
        '---\ntitle: "引号: 標題"\ndate: 2026-05-06T14:00:00+08:00\nupdated: 2026-05-07 09:30\n'
        "tags: [甲, 乙, 甲]\nid: news-42\nauthor: 研究部\nsummary: 给定的摘要。\n"
        "url: /news/42.html\nimage: img/a.png\n---\n正文*强调*与[链接](b.html)。\n"
    ).encode(),
    "tech/crlf.md": (
        "\ufeff---\r\ntitle: 换行\x0b符\r\ndate: 2026/5/6\r\ncategories: [tech, 政策解读]\r\n---\r\n正文\r\n"
    ).encode(),
    "policy/page.html": (
        "---\ntitle: 高新區(qū)政策\ndate: 2026年5月6日\ntags: 单个\nid: 文章 1\n---\n"
        '<p>正文<a href="x.html">链接</a></p>\n'
    ).encode(),
    "policy/gbk.md": "---\ntitle: 国标编码\ndate: 2026-05-06 14:00\n---\n国标编码的正文。\n".encode("gbk"),
    "tech/page.txt": (
        "- 首页\n高新院召开科技成果转化工作推进会\n来源:高新院 日期:2026-04-12 点击:次\n第一段正文。\n\n第二段。\n"
    ).encode(),
}

# Of each file, as the code before issue 16's reading fast paths computed them: the content hash
# with `convert = "t2s"` and with "none", the body hash with each, and the guid.
PINNED: dict[str, tuple[str, str, str, str, str]] = {
    "tech/plain.md": (
        "f15996196fc8fb7b73a0b56337dcb84b09bd45539e09fb7dee90ea530d3755f9",
        "f15996196fc8fb7b73a0b56337dcb84b09bd45539e09fb7dee90ea530d3755f9",
        "61a1273f7d2c3610cc3fd014c54dabe95a6a2f52238b7db451a2f312b347408d",
        "5cf4f1233c86b4f9a7d502c3b9eba7151018db16b8ed87821f64cd510a1ed66b",
        "tag:www.example.org,2021-10-22:content/tech/plain.md",
    ),
    "tech/yaml.md": (
        "61a7651759db589e68251b706f758bf724c295a0d7edfb4fa7527ddd0f3d1069",
        "67d7d7bb51d29c0fc5a976a7305cea4d14819bfb3aa2bb8ad7109db25b0f1f71",
        "974113226356fcf6acb4b84523ad6c10baf7bbc16819a359c36303d38a37cb1b",
        "074d9310b7278e98e035e190ff1cb464995a12d3c5d4ef2d4bab14288bba1693",
        "tag:www.example.org,2026-05-06:id/news-42",
    ),
    "tech/crlf.md": (
        "98c6d9a411e15889bde384d58edbfc76d7ab121c3a728167e163edb69d5bc845",
        "98c6d9a411e15889bde384d58edbfc76d7ab121c3a728167e163edb69d5bc845",
        "612454c8c1da09f8a4b5377f3aa168a1f44c77ee548ff7992d445607f5c312f5",
        "fd1457260be9c05bb7102401b26f96c1c4d9c41f6038efc16822c94f7843ca03",
        "tag:www.example.org,2026-05-05:content/tech/crlf.md",
    ),
    "policy/page.html": (
        "a2b1093952d7f0ce554c25b822974009518603823e84badcedc8e10480c79592",
        "76000b70907dff19ca1d20a6c549feb3bb6727775dcba6de3d75cf3c08fef384",
        "fcaa12149d9b8daaf6d32a5074bb1c77229deb0f3587bf53de016827b50c89a6",
        "f9132b43e0424477708e1802f9cca79a4d54ba5b333a2b87e93a8e73146a0d69",
        "tag:www.example.org,2026-05-05:id/f0bcb5dbeae340efa99f",
    ),
    "policy/gbk.md": (
        "860c823f6d264bb032a34e7df97596ae741ba4cffaea06a11361d86c1256e704",
        "860c823f6d264bb032a34e7df97596ae741ba4cffaea06a11361d86c1256e704",
        "dd41ac32de3f2d64a4154278667f553e1c4792007c398ccc8f9b1acd5ff1ecc0",
        "b3241664dad75b26d441150b713af1e8b01ea8f45d397c325c307b0bfe3947f1",
        "tag:www.example.org,2026-05-06:content/policy/gbk.md",
    ),
    "tech/page.txt": (
        "3d858e5159f4e9354dd35103b7d0a26413a256ed9d01244f134bb98e515504b7",
        "3d858e5159f4e9354dd35103b7d0a26413a256ed9d01244f134bb98e515504b7",
        "0edb96e82172855a1951dbf8a43d682bc721ea66a57fc1ed818f45c02dddca6f",
        "8ad5cf130bfae82f80b2fb129c36073a0cdac55e6d2caee20cae186b0d8b08c2",
        "tag:www.example.org,2026-04-11:content/tech/page.txt",
    ),
}


def read_all(tmp_path: Path) -> dict[str, SourceItem]:
    for key, data in FILES.items():
        path = tmp_path / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    source = FilesSource("content", tmp_path, "Asia/Shanghai", url_template="https://www.example.org/{path}.html")
    read = {key: source.read(tmp_path / key, key, "1:2") for key in FILES}
    assert all(isinstance(item, SourceItem) for item in read.values())
    return read  # type: ignore[return-value]


@pytest.mark.parametrize("render", [False, True])
def test_hashes_and_guids_are_those_of_before(tmp_path: Path, render: bool) -> None:
    for key, item in read_all(tmp_path).items():
        t2s = normalize(item, INDEX, TextRules("t2s"), SITE, render)
        none = normalize(item, INDEX, TextRules(), SITE, render)
        assert (t2s.content_hash, none.content_hash, t2s.body_hash, none.body_hash, t2s.guid) == PINNED[key], key
        assert none.guid == t2s.guid


def test_what_reading_noticed_is_kept(tmp_path: Path) -> None:
    read = read_all(tmp_path)
    assert read["tech/crlf.md"].warnings == ("front matter line 2: removed control characters U+000B",)
    assert ReadItem.of(read["tech/yaml.md"]) == ReadItem(
        "content", "tech/yaml.md", str(tmp_path / "tech/yaml.md"), "news-42", "1:2", True, ()
    )
