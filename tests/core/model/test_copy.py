"""copy_model: the copy a mutation works on is independent, and cheap where it can be."""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import enum
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from dstate_core.model._copy import copy_model


class Color(enum.Enum):
    RED = "red"


class Leaf(BaseModel):
    tags: list[str] = Field(default_factory=list)
    n: int = 0


class FrozenPoint(BaseModel):
    model_config = ConfigDict(frozen=True)
    x: int = 0
    name: str = "p"


class FrozenWithList(BaseModel):
    model_config = ConfigDict(frozen=True)
    items: list[int] = Field(default_factory=list)


class Extra(BaseModel):
    model_config = ConfigDict(extra="allow")


class Tree(BaseModel):
    mapping: dict[str, list[int]] = Field(default_factory=dict)
    items: list[dict[str, int]] = Field(default_factory=list)
    members: set[str] = Field(default_factory=set)
    leaf: Leaf = Field(default_factory=Leaf)
    leaves: list[Leaf] = Field(default_factory=list)
    pair: tuple[int, list[int]] = (0, [])
    flat: tuple[int, str] = (1, "x")
    frozen: frozenset[int] = frozenset({1, 2})
    point: FrozenPoint = Field(default_factory=FrozenPoint)
    boxed: FrozenWithList = Field(default_factory=FrozenWithList)
    color: Color = Color.RED
    text: str = "hello"
    blob: bytes = b"\x00\x01"
    when: dt.datetime = dt.datetime(2024, 1, 1)
    amount: decimal.Decimal = decimal.Decimal("1.5")
    ident: uuid.UUID = uuid.UUID(int=5)
    anything: Any = None
    _cache: dict[str, int] = PrivateAttr(default_factory=dict)


def full_tree() -> Tree:
    tree = Tree(
        mapping={"a": [1, 2]},
        items=[{"k": 1}],
        members={"m"},
        leaf=Leaf(tags=["t"]),
        leaves=[Leaf(tags=["u"])],
        pair=(1, [2, 3]),
        boxed=FrozenWithList(items=[1]),
        anything={"nested": [{"deep": 1}]},
    )
    tree._cache["c"] = 1
    return tree


def mutate_everything(tree: Tree) -> None:
    tree.mapping["a"].append(99)
    tree.mapping["new"] = []
    tree.items[0]["k"] = 42
    tree.items.append({})
    tree.members.add("z")
    tree.leaf.tags.append("x")
    tree.leaf.n = 7
    tree.leaves[0].tags.append("y")
    tree.pair[1].append(4)
    tree.boxed.items.append(2)
    tree.anything["nested"][0]["deep"] = 2
    tree._cache["c"] = 2


class TestIndependence:
    def test_in_place_changes_of_the_copy_never_reach_the_original(self) -> None:
        original = full_tree()
        snapshot = original.model_dump()
        cache = dict(original._cache)
        clone = copy_model(original)
        mutate_everything(clone)
        assert original.model_dump() == snapshot
        assert original._cache == cache
        assert clone.model_dump() != snapshot

    def test_changes_of_the_original_never_reach_the_copy(self) -> None:
        original = full_tree()
        clone = copy_model(original)
        snapshot = clone.model_dump()
        mutate_everything(original)
        assert clone.model_dump() == snapshot

    def test_other_objects_are_deep_copied(self) -> None:
        original = Tree(anything=collections.deque([[1], {"k": [2]}]))
        clone = copy_model(original)
        clone.anything[0].append(9)
        clone.anything[1]["k"].append(9)
        assert original.anything == collections.deque([[1], {"k": [2]}])

    def test_frozen_model_holding_a_list_is_copied(self) -> None:
        original = Tree(boxed=FrozenWithList(items=[1]))
        clone = copy_model(original)
        clone.boxed.items.append(2)
        assert original.boxed.items == [1]
        assert clone.boxed is not original.boxed

    def test_extra_fields_are_copied(self) -> None:
        original = Extra.model_validate({"bag": [1]})
        clone = copy_model(original)
        clone.bag.append(2)  # type: ignore[attr-defined]
        assert original.bag == [1]  # type: ignore[attr-defined]

    def test_copy_is_an_equal_model_of_the_same_type(self) -> None:
        original = full_tree()
        clone = copy_model(original)
        assert type(clone) is Tree
        assert clone == original
        assert clone is not original
        assert clone.model_fields_set == original.model_fields_set

    @settings(max_examples=50, deadline=None)
    @given(
        st.dictionaries(st.text(max_size=3), st.lists(st.integers(), max_size=3), max_size=4),
        st.lists(st.integers(), max_size=4),
    )
    def test_any_nested_content(self, mapping: dict[str, list[int]], extra: list[int]) -> None:
        original = Tree(mapping=mapping, leaf=Leaf(tags=[str(x) for x in extra]))
        before = original.model_dump()
        clone = copy_model(original)
        for value in clone.mapping.values():
            value.append(1)
        clone.mapping["__new__"] = extra
        clone.leaf.tags.clear()
        assert original.model_dump() == before


class TestSharing:
    def test_immutable_values_are_shared(self) -> None:
        original = full_tree()
        clone = copy_model(original)
        for name in ("flat", "frozen", "point", "color", "text", "blob", "when", "amount", "ident"):
            assert getattr(clone, name) is getattr(original, name), name

    def test_mutable_containers_are_not_shared(self) -> None:
        original = full_tree()
        clone = copy_model(original)
        for name in ("mapping", "items", "members", "leaf", "leaves", "pair", "boxed", "anything"):
            assert getattr(clone, name) is not getattr(original, name), name
        assert clone.mapping["a"] is not original.mapping["a"]
        assert clone.leaves[0] is not original.leaves[0]
        assert clone.pair[1] is not original.pair[1]

    def test_tuple_of_immutables_keeps_identity(self) -> None:
        original = Tree(flat=(5, "y"), pair=(1, []))
        clone = copy_model(original)
        assert clone.flat is original.flat
        assert clone.pair is not original.pair
