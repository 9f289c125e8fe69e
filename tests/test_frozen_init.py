"""`quick_init`: the model's hot classes keep a frozen dataclass's constructor, arguments,
defaults, equality and pickling; a class it cannot speed up without changing is refused."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
import typing
from datetime import UTC, datetime, timedelta

import pytest

from publisher.frozen_init import quick_init
from publisher.model import Article, Deferred, ItemProblem, ReadItem, Rendition, SourceItem

QUICK = [Article, Deferred, ItemProblem, ReadItem, Rendition, SourceItem]
WHEN = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


def _plain(cls: type) -> type:
    """`cls` as `dataclass` alone makes it: the same fields, the generated `__init__`."""
    fields = [
        (f.name, f.type, dataclasses.field(default=f.default, compare=f.compare, repr=f.repr))
        for f in dataclasses.fields(cls)
    ]
    return dataclasses.make_dataclass(cls.__name__, fields, frozen=True, slots=True)


def _values(cls: type) -> dict[str, object]:
    """A value for each field, none of them its default, each field's its own (two fields
    swapped would show), but for the booleans, which have two values."""
    given: dict[str, object] = {}
    for n, f in enumerate(dataclasses.fields(cls)):
        kind = str(f.type)
        if "datetime" in kind:
            given[f.name] = WHEN + timedelta(minutes=n)
        elif kind == "bool":
            given[f.name] = not f.default if f.default is not dataclasses.MISSING else True
        elif "tuple" in kind:
            given[f.name] = (f"t{n}",)
        elif "bytes" in kind:
            given[f.name] = f"b{n}".encode()
        elif "Callable" in kind:
            given[f.name] = print
        else:
            given[f.name] = f"v{n}"
    return given


@pytest.mark.parametrize("cls", QUICK, ids=lambda c: c.__name__)
def test_the_same_object_as_the_generated_constructor_makes(cls: type) -> None:
    plain = _plain(cls)
    given = _values(cls)
    names = list(given)
    by_name, positional = cls(**given), cls(*given.values())
    assert by_name == positional
    assert [getattr(by_name, n) for n in names] == [getattr(plain(**given), n) for n in names]
    required = {f.name: given[f.name] for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
    defaults, plain_defaults = cls(**required), plain(**required)
    assert [getattr(defaults, n) for n in names] == [getattr(plain_defaults, n) for n in names]
    assert inspect.signature(cls) == inspect.signature(plain)
    assert typing.get_type_hints(cls.__init__) == {**typing.get_type_hints(cls), "return": type(None)}


@pytest.mark.parametrize("cls", QUICK, ids=lambda c: c.__name__)
def test_wrong_arguments_are_refused_as_before(cls: type) -> None:
    given = _values(cls)
    with pytest.raises(TypeError, match="unexpected keyword argument 'nonsense'"):
        cls(**given, nonsense=1)
    with pytest.raises(TypeError, match="missing 1 required positional argument"):
        cls(*list(given.values())[: sum(f.default is dataclasses.MISSING for f in dataclasses.fields(cls)) - 1])
    with pytest.raises(TypeError, match="multiple values"):
        cls(*given.values(), **{next(iter(given)): "again"})


@pytest.mark.parametrize("cls", QUICK, ids=lambda c: c.__name__)
def test_still_frozen_replaced_and_pickled(cls: type) -> None:
    made = cls(**_values(cls))
    first = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, first, "changed")
    assert getattr(dataclasses.replace(made, **{first: "changed"}), first) == "changed"
    assert pickle.loads(pickle.dumps(made, pickle.HIGHEST_PROTOCOL)) == made
    assert hash(made) == hash(cls(**_values(cls)))


def test_a_real_article_round_trips() -> None:
    article = Article(
        "files", "a.md", "urn:x", "标题", "", "", WHEN, WHEN, ("news",), "h", body_hash="b", rendered=False
    )
    assert pickle.loads(pickle.dumps(article)) == article
    assert article.url is None and article.tags == () and not article.rendered
    item = SourceItem("files", "a.md", "标题", "body", WHEN, content_utf8=b"body")
    assert item.content_utf8 == b"body" and item.markdown is False


def test_classes_it_cannot_speed_up_unchanged_are_refused() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        tags: list[str] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True, slots=True)
    class After:
        name: str

        def __post_init__(self) -> None:
            pass

    @dataclasses.dataclass(frozen=True, slots=True)
    class KeywordOnly:
        name: str = dataclasses.field(kw_only=True)

    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        name: str

    @dataclasses.dataclass(slots=True)
    class NotFrozen:
        name: str

    @dataclasses.dataclass(frozen=True, slots=True)
    class OwnInit:
        name: str

        def __init__(self, name: str) -> None:
            object.__setattr__(self, "name", name.strip())

    @dataclasses.dataclass(frozen=True, slots=True, init=False)
    class NoInit:
        name: str = "fixed"

    @dataclasses.dataclass(frozen=True, slots=True)
    class WithInitVar:
        name: str
        hint: dataclasses.InitVar[str] = ""

    scope: dict[str, object] = {"dataclasses": dataclasses}
    exec(  # noqa: S102 - a class defined in code run from a string, as dataclass's own methods are
        "@dataclasses.dataclass(frozen=True, slots=True)\n"
        "class OwnInitFromString:\n"
        "    name: str\n"
        "    def __init__(self, name):\n"
        "        object.__setattr__(self, 'name', name.strip())\n",
        scope,
    )
    own_from_string = scope["OwnInitFromString"]
    for cls in (Factory, After, KeywordOnly, NoSlots, NotFrozen, OwnInit, NoInit, WithInitVar, own_from_string):
        with pytest.raises(TypeError, match=f"quick_init: {cls.__name__}"):
            quick_init(cls)


def test_a_field_named_self_is_set_as_dataclass_sets_it() -> None:
    @quick_init
    @dataclasses.dataclass(frozen=True, slots=True)
    class Named:
        self: str
        other: int = 2

    made = Named("me")
    assert (made.self, made.other) == ("me", 2) and made == Named(self="me", other=2)
