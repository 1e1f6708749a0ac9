"""mta.record: the __init__, __eq__, __repr__ and (frozen) __hash__ that @record gives a class."""

from __future__ import annotations

import pytest

from mta.record import factory, record


@record(frozen=True)
class Point:
    x: int
    y: int = 0
    label: str = ""


@record
class Bag:
    name: str
    items: list = factory(list)
    _hidden: int = 1


def test_positional_keyword_and_defaults():
    assert Point(1, 2, "a").__dict__ == {"x": 1, "y": 2, "label": "a"}
    assert Point(1, label="b").__dict__ == {"x": 1, "y": 0, "label": "b"}
    assert Point(y=3, x=4).__dict__ == {"x": 4, "y": 3, "label": ""}


def test_a_factory_makes_a_fresh_value_each_time_unless_given():
    one, two = Bag("a"), Bag("b")
    one.items.append(1)
    assert two.items == [] and one.items == [1]
    mine = [5]
    assert Bag("c", mine).items is mine and Bag("c", items=mine).items is mine


@pytest.mark.parametrize(("args", "kwargs", "says"), [
    ((1, 2, "a", "extra"), {}, "takes 3 arguments, 4 given"),
    ((), {"y": 1}, "missing argument 'x'"),
    ((1,), {"z": 1}, "unexpected arguments ['z']"),
    ((1,), {"x": 2}, "unexpected arguments ['x']"),  # x given twice: by position and by name
    ((1, 2), {"y": 3, "label": ""}, "unexpected arguments ['label', 'y']"),
])
def test_wrong_arguments_are_refused_by_name(args, kwargs, says):
    with pytest.raises(TypeError, match=f"^Point\\(\\) .*{says.replace('[', '.').replace(']', '.')}"):
        Point(*args, **kwargs)


def test_equality_and_hash_by_fields():
    assert Point(1, 2) == Point(1, y=2) and Point(1) != Point(2)
    assert Point(1) != (1, 0, "")
    assert hash(Point(1, 2)) == hash(Point(1, 2)) and len({Point(1), Point(1), Point(2)}) == 2
    assert Bag("a") == Bag("a")
    with pytest.raises(TypeError):
        hash(Bag("a"))  # mutable: unhashable, as a dataclass


def test_frozen_refuses_assignment():
    p = Point(1)
    with pytest.raises(AttributeError, match="frozen"):
        p.x = 2
    b = Bag("a")
    b.name = "b"
    assert b.name == "b"


def test_repr_leaves_out_private_fields():
    assert repr(Point(1, label="l")) == "Point(x=1, y=0, label='l')"
    assert repr(Bag("a")) == "Bag(name='a', items=[])"
    assert Bag.__record_fields__ == ("name", "items", "_hidden")
