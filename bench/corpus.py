"""Deterministic synthetic corpus for the benchmark.

Writes N Markdown files under ``bench/out/corpus-<N>/content/<category>/<i>.md``.
Every article is generated from its own seeded RNG, so article ``i`` is the same
in every corpus size (corpus-1000 is a prefix of corpus-100000).

Front matter is plain ``key: value`` lines between ``---`` delimiters, readable
both as YAML and by Python-Markdown's ``meta`` extension (which Pelican uses).
Only four keys are written: title, date, category, slug.

Usage: python bench/corpus.py 1000 [10000 ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import shutil
import string
import sys
import time
from pathlib import Path

# Bump whenever the generated text changes, so cached corpora are rebuilt.
CORPUS_VERSION = 4  # 4: dates with seconds, which Hugo 0.111 reads (it cannot read "09:30")
SEED = 20260304

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"

CATEGORIES = [
    "高新院新闻",
    "政策解读",
    "高新区新闻",
    "区域经济研究",
    "经济开发区新闻",
    "科技创新",
    "战略性新兴产业研究",
    "行业洞见",
    "一带一路新闻",
    "智慧城市案例",
    "产业规划",
    "园区规划",
    "智慧城市news",
]
# Real sites are lopsided: a few busy categories, several quiet ones.
CATEGORY_WEIGHTS = [14, 10, 16, 7, 11, 9, 5, 6, 5, 4, 6, 4, 3]

# Latest date in the corpus; the "+1 article" used by run.py is dated after it.
END_DATE = dt.datetime(2026, 3, 4, 9, 30)
SPAN_MINUTES = 6 * 365 * 24 * 60

# --------------------------------------------------------------------------
# Phrase bank
# --------------------------------------------------------------------------

REGIONS = [
    "成都",
    "西安",
    "武汉",
    "苏州",
    "合肥",
    "深圳",
    "杭州",
    "长沙",
    "郑州",
    "青岛",
    "重庆",
    "南京",
    "天津",
    "厦门",
    "宁波",
    "无锡",
    "贵阳",
    "昆明",
    "南宁",
    "济南",
    "沈阳",
    "长春",
    "南昌",
    "福州",
    "石家庄",
    "太原",
    "兰州",
    "银川",
    "乌鲁木齐",
    "呼和浩特",
    "绵阳",
    "洛阳",
    "襄阳",
    "芜湖",
    "常州",
    "佛山",
    "东莞",
    "珠海",
    "烟台",
    "潍坊",
]
ZONES = [
    "高新区",
    "经开区",
    "自贸试验区",
    "科学城",
    "产业园",
    "综合保税区",
    "国家自主创新示范区",
    "新区",
    "临空经济区",
    "数字经济产业园",
    "生物医药产业园",
    "智能制造产业园",
]
INDUSTRIES = [
    "集成电路",
    "生物医药",
    "新能源汽车",
    "人工智能",
    "低空经济",
    "新型储能",
    "工业互联网",
    "智能制造",
    "数字经济",
    "量子信息",
    "商业航天",
    "氢能",
    "新材料",
    "现代物流",
    "跨境电商",
    "高端装备",
    "医疗器械",
    "光伏",
    "卫星互联网",
    "智能网联汽车",
    "算力",
    "大数据",
    "节能环保",
    "软件和信息服务",
    "检验检测",
    "文化创意",
    "现代农业",
    "海洋经济",
]
ORGS = [
    "管委会",
    "科技局",
    "发展改革局",
    "投资促进局",
    "经济发展局",
    "规划和自然资源局",
    "企业服务中心",
    "创新创业服务中心",
    "产业研究院",
    "高新院研究团队",
    "专家咨询委员会",
]
PEOPLE = [
    "王",
    "李",
    "张",
    "刘",
    "陈",
    "杨",
    "赵",
    "黄",
    "周",
    "吴",
    "徐",
    "孙",
    "马",
    "朱",
    "胡",
    "郭",
]
ROLES = ["主任", "副主任", "局长", "副局长", "研究员", "首席分析师", "总经理", "院长", "书记"]
COUNTRIES = [
    "哈萨克斯坦",
    "乌兹别克斯坦",
    "越南",
    "泰国",
    "马来西亚",
    "印度尼西亚",
    "沙特阿拉伯",
    "阿联酋",
    "匈牙利",
    "塞尔维亚",
    "埃及",
    "巴基斯坦",
    "新加坡",
    "老挝",
    "柬埔寨",
]
PROJECTS = [
    "研发中心",
    "生产基地",
    "总部项目",
    "中试平台",
    "产业基金",
    "创新联合体",
    "公共技术服务平台",
    "孵化器",
    "数据中心",
    "智能工厂",
    "示范应用场景",
    "重点实验室",
]
CITY_SYSTEMS = [
    "城市运行管理平台",
    "一网统管",
    "智慧交通信号系统",
    "城市大脑",
    "数字孪生园区",
    "智慧停车",
    "智慧水务",
    "社区网格化治理",
    "政务服务一网通办",
    "智能路灯",
]

TITLE_TEMPLATES = [
    "{region}{zone}召开{industry}产业高质量发展推进会",
    "{region}{zone}发布{industry}产业三年行动方案",
    "{region}{zone}集中签约{n}个{industry}重大项目",
    "{region}{zone}举办{industry}产业链供需对接会",
    "{region}{zone}出台支持{industry}发展若干措施",
    "{region}{zone}前{month}个月规上工业增加值同比增长{pct}%",
    "一图读懂：{region}{zone}{industry}专项扶持政策",
    "政策解读｜{region}加快培育{industry}产业集群的{n}条举措",
    "{industry}赛道观察：{region}何以跑出加速度",
    "{region}{zone}{project}正式投用",
    "{region}{zone}与{country}签署{industry}合作备忘录",
    "“一带一路”背景下{region}与{country}{industry}合作前景分析",
    "智慧城市案例：{region}{system}建设实践",
    "{region}{zone}获批国家级{industry}创新示范基地",
    "{region}{zone}国土空间规划（2021—2035年）公示",
    "区域经济观察：{region}都市圈{industry}产业协同发展研究",
    "高新院专家解读{region}{industry}产业发展路径",
    "{region}{zone}开展{industry}企业走访服务活动",
    "行业洞见｜{industry}进入规模化应用新阶段",
    "{region}{zone}{n}家企业入选国家级专精特新“小巨人”",
]
# A few titles in traditional characters, to give the t2s conversion work.
TITLE_TEMPLATES_TRAD = [
    "{region}{zone}舉辦{industry}產業發展論壇",
    "港澳投資者關注{region}{industry}產業機遇",
    "{region}{zone}與臺灣企業簽署{industry}合作協議",
]

HEADINGS = [
    "## 主要内容",
    "## 政策要点",
    "## 项目概况",
    "## 发展现状",
    "## 下一步工作",
    "## 专家观点",
    "## 数据解读",
    "## 建设成效",
]

SENTENCES = [
    "近日，{region}{zone}{org}召开专题会议，研究部署{industry}产业发展相关工作。",
    "会议指出，要坚持创新驱动发展，加快构建以{industry}为引领的现代化产业体系。",
    "今年以来，{region}{zone}坚持项目为王，累计引进{industry}领域项目{n}个，总投资约{money}亿元。",
    "数据显示，前{month}个月，全区规模以上工业增加值同比增长{pct}%，高于全市平均水平。",
    "{people}{role}表示，{zone}将进一步优化营商环境，为企业提供全生命周期服务。",
    "据介绍，该{project}建成后将形成年产值超{money}亿元的产业规模，带动就业{n}00余人。",
    "从产业链看，{industry}上游原材料、中游制造和下游应用环节已初步形成集聚效应。",
    "与此同时，{region}积极对接{country}等“一带一路”沿线国家，拓展{industry}产品海外市场。",
    "业内人士认为，{industry}正处于技术突破与规模化应用的关键窗口期，区域竞争日趋激烈。",
    "在人才引进方面，{zone}出台专项政策，对高层次人才给予最高{n}0万元的安家补贴。",
    "{region}{zone}已建成{project}{n}个，服务企业超过{n}00家次。",
    "围绕{system}建设，{region}打通了{n}个部门的数据壁垒，实现城市运行“一屏统览”。",
    "研究发现，{region}都市圈内部产业分工逐步清晰，核心区与外围区县协同水平持续提升。",
    "下一步，{org}将聚焦{industry}等重点产业，强化要素保障，推动项目早开工、早投产、早见效。",
    "从全国看，{industry}相关企业注册量同比增长{pct}%，区域分布呈现向中西部转移的趋势。",
    "规划提出，到2030年，{zone}{industry}产业规模力争突破{money}0亿元。",
    "会上，{n}家企业代表围绕融资、用地、用工等问题作了交流发言。",
    "该政策明确了适用对象、支持方式和申报流程，符合条件的企业可通过线上平台提交材料。",
    "专家建议，应加强基础研究与应用研究的衔接，推动科技成果在园区内就地转化。",
    "在园区规划方面，{zone}按照“产城融合、职住平衡”的思路，统筹布局生产、生活和生态空间。",
    "目前，{project}一期工程已完成主体结构施工，预计明年上半年投入使用。",
    "{region}与{country}的双边贸易额去年达到{money}亿美元，其中{industry}产品占比明显提高。",
    "通过建设{system}，城市治理效率提升约{pct}%，群众办事平均时间缩短一半以上。",
    "高新院研究团队分析认为，{industry}产业的竞争焦点正由规模扩张转向质量效益。",
    "记者在现场看到，生产线上的机械臂有序运转，工人们正忙着调试新投用的设备。",
    "下阶段，{region}将完善“链长制”工作机制，围绕{industry}产业链开展精准招商。",
    "活动现场，{n}个{industry}项目进行了路演，吸引了多家投资机构和产业资本的关注。",
    "{people}{role}介绍，园区已累计培育高新技术企业{n}0余家，科技型中小企业数量稳步增长。",
    "针对企业反映的共性问题，{org}建立了问题清单和责任清单，实行销号管理。",
    "从区域比较看，{region}在{industry}领域的专利授权量位居同类城市前列，但龙头企业数量仍然偏少。",
    "报告建议，{zone}应发挥比较优势，避免与周边地区在{industry}领域同质化竞争。",
    "该案例入选年度智慧城市优秀案例，为同类城市推进{system}建设提供了可复制的经验。",
    "据统计，{zone}全年新增市场主体{n}00余户，其中科技型企业占比超过四成。",
    "{region}还将依托{project}，推动产学研用深度融合，打造具有区域影响力的创新策源地。",
]
SENTENCES_TRAD = [
    "據香港貿發局統計，{region}與東盟的貿易往來持續擴大，{industry}產品出口表現亮眼。",
    "臺灣業者表示，看好{region}{zone}在{industry}領域的產業基礎與市場潛力。",
    "澳門特區政府代表團近日赴{region}考察，雙方就{industry}合作進行了深入交流。",
]

LIST_ITEMS = [
    "加大{industry}企业研发投入补贴力度，最高补助{n}00万元",
    "支持建设{industry}中试平台和公共技术服务平台",
    "对新认定的国家级{project}给予一次性奖励",
    "优先保障重大项目用地、用能和环境容量指标",
    "推动{system}与园区管理服务深度融合",
    "建立重点企业“服务专员”制度，实行一企一策",
    "鼓励金融机构开发面向科技型中小企业的信贷产品",
    "深化与{country}在{industry}领域的产能合作",
    "完善人才公寓、国际学校等配套服务设施",
    "开展{industry}应用场景征集和示范推广",
]


_SLOTS = {
    "region": lambda r: r.choice(REGIONS),
    "zone": lambda r: r.choice(ZONES),
    "industry": lambda r: r.choice(INDUSTRIES),
    "org": lambda r: r.choice(ORGS),
    "people": lambda r: r.choice(PEOPLE) + r.choice(("某某", "某")),
    "role": lambda r: r.choice(ROLES),
    "country": lambda r: r.choice(COUNTRIES),
    "project": lambda r: r.choice(PROJECTS),
    "system": lambda r: r.choice(CITY_SYSTEMS),
    "n": lambda r: r.randint(2, 48),
    "money": lambda r: r.randint(3, 980),
    "pct": lambda r: f"{r.uniform(1.5, 38.0):.1f}",
    "month": lambda r: r.randint(2, 11),
}
_FIELDS: dict[str, tuple[str, ...]] = {}


def _fill(rng: random.Random, template: str) -> str:
    """Format ``template``, drawing only the slots it uses."""
    fields = _FIELDS.get(template)
    if fields is None:
        fields = tuple({f for _, f, _, _ in string.Formatter().parse(template) if f})
        _FIELDS[template] = fields
    if not fields:
        return template
    return template.format(**{f: _SLOTS[f](rng) for f in fields})


def _paragraph(rng: random.Random, order: list[str], sentences: int) -> str:
    parts = []
    for _ in range(sentences):
        if rng.random() < 0.04:
            template = rng.choice(SENTENCES_TRAD)
        else:
            if not order:
                order.extend(rng.sample(SENTENCES, len(SENTENCES)))
            template = order.pop()
        parts.append(_fill(rng, template))
    return "".join(parts)


def make_article(i: int, target_chars: int = 1620) -> tuple[str, str]:
    """Return (category, full file text) for article number ``i``."""
    rng = random.Random(SEED * 1_000_003 + i)
    category = rng.choices(CATEGORIES, weights=CATEGORY_WEIGHTS)[0]
    title_bank = TITLE_TEMPLATES_TRAD if rng.random() < 0.05 else TITLE_TEMPLATES
    title = _fill(rng, rng.choice(title_bank))
    date = END_DATE - dt.timedelta(minutes=rng.randrange(SPAN_MINUTES))

    order: list[str] = []
    blocks: list[str] = [_paragraph(rng, order, rng.randint(3, 5))]
    used = len(blocks[0])
    heading_at = rng.randint(1, 2)
    list_at = rng.randint(2, 4)
    k = 1
    while used < target_chars:
        if k == heading_at:
            blocks.append(rng.choice(HEADINGS))
        if k == list_at:
            items = ["- " + _fill(rng, t) for t in rng.sample(LIST_ITEMS, rng.randint(3, 5))]
            block = "\n".join(items)
        else:
            block = _paragraph(rng, order, rng.randint(3, 6))
        blocks.append(block)
        used += len(block)
        k += 1
    if list_at >= k:  # every article gets a list
        blocks.append("\n".join("- " + _fill(rng, t) for t in rng.sample(LIST_ITEMS, 3)))

    text = (
        "---\n"
        f"title: {title}\n"
        f"date: {date:%Y-%m-%d %H:%M:%S}\n"
        f"category: {category}\n"
        f"slug: a{i:06d}\n"
        "---\n\n" + "\n\n".join(blocks) + "\n"
    )
    return category, text


def corpus_dir(n: int) -> Path:
    return OUT_DIR / f"corpus-{n}"


def content_dir(n: int) -> Path:
    return corpus_dir(n) / "content"


def _stamp(n: int) -> dict[str, int]:
    return {"version": CORPUS_VERSION, "seed": SEED, "n": n}


def ensure_corpus(n: int, quiet: bool = False) -> Path:
    """Generate the corpus of size ``n`` unless a matching one exists. Returns the content dir."""
    root = corpus_dir(n)
    stamp_file = root / "corpus.json"
    content = root / "content"
    remove_extras(content)
    try:
        if json.loads(stamp_file.read_text()) == _stamp(n):
            return content
    except (OSError, ValueError):
        pass
    t0 = time.perf_counter()
    if root.exists():
        shutil.rmtree(root)
    for cat in CATEGORIES:
        (content / cat).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cat, text = make_article(i)
        with open(content / cat / f"{i:06d}.md", "w", encoding="utf-8") as fh:
            fh.write(text)
    stamp_file.write_text(json.dumps(_stamp(n)))
    if not quiet:
        print(f"corpus-{n}: generated {n} files in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return content


EXTRA_PREFIX = "zz-bench-extra-"


def write_extra_article(content: Path, k: int) -> tuple[Path, str]:
    """Add one new article, dated after everything else. Returns (path, title)."""
    rng = random.Random(SEED + 7919 * (k + 1))
    category = CATEGORIES[k % len(CATEGORIES)]
    title = f"新增文章{k + 1}：{_fill(rng, rng.choice(TITLE_TEMPLATES))}"
    order: list[str] = []
    body = "\n\n".join(
        [
            _paragraph(rng, order, 8),
            "## 主要内容",
            _paragraph(rng, order, 8),
            "\n".join("- " + _fill(rng, t) for t in LIST_ITEMS[:4]),
            _paragraph(rng, order, 8),
            _paragraph(rng, order, 8),
        ]
    )
    date = END_DATE + dt.timedelta(days=1, minutes=k)
    text = (
        "---\n"
        f"title: {title}\n"
        f"date: {date:%Y-%m-%d %H:%M:%S}\n"
        f"category: {category}\n"
        f"slug: extra{k:03d}\n"
        "---\n\n" + body + "\n"
    )
    path = content / category / f"{EXTRA_PREFIX}{k:03d}.md"
    path.write_text(text, encoding="utf-8")
    return path, title


def remove_extras(content: Path) -> None:
    """Delete articles added by write_extra_article, restoring the pristine corpus."""
    if not content.is_dir():
        return
    for cat_dir in content.iterdir():
        if cat_dir.is_dir():
            for f in cat_dir.glob(EXTRA_PREFIX + "*.md"):
                f.unlink()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sizes", nargs="+", type=int)
    args = ap.parse_args(argv)
    for n in args.sizes:
        path = ensure_corpus(n)
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def write_week(content: Path, articles: int) -> None:
    """`articles` articles spread over the last six days (this week's news, as a first digest
    expects), one folder a category: the mail benches' content."""
    import re

    week_start = dt.datetime.now(dt.UTC) - dt.timedelta(days=6)
    for i in range(articles):
        category, text = make_article(i)
        published = week_start + dt.timedelta(minutes=i * 6 * 24 * 60 // max(articles, 1))
        text = re.sub(r"^date: .*$", f"date: {published:%Y-%m-%d %H:%M}", text, count=1, flags=re.M)
        (content / category).mkdir(parents=True, exist_ok=True)
        (content / category / f"{i:05d}.md").write_text(text, encoding="utf-8")
