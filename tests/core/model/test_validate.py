"""Valid commits only: a mutation whose result breaks its model changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, Field

from dstate_core import DistributedState, MutationError
from dstate_core.testing import DeterministicCluster, TestDeltaState, local_cluster


class Inner(BaseModel):
    level: int = 0


class Checked(DistributedState):
    NAME: ClassVar[str] = "checked"
    count: int = 0
    load: float = Field(default=0.0, ge=0.0, le=100.0)
    inner: Inner = Field(default_factory=Inner)
    inners: list[Inner] = Field(default_factory=list)
    tags: dict[str, int] = Field(default_factory=dict)


@pytest.fixture
def cluster() -> Iterator[DeterministicCluster]:
    with local_cluster(["a", "b"]) as made:
        for node in made.node_ids:
            made.node(node).register(Checked)
        made.run_until_idle()
        yield made


def commit(cluster: DeterministicCluster, fn: Any) -> Any:
    return cluster.node("a").lookup("checked").mutate(fn)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: setattr(s, "count", "not an int"), "count"),
        (lambda s: setattr(s, "load", 150.0), "load"),
        (lambda s: setattr(s.inner, "level", "high"), "inner.level"),
        (lambda s: s.inners.append(Inner.model_construct(level="x")), "inners.0.level"),
        (lambda s: s.tags.update(k="v"), "tags.k"),
    ],
)
def test_an_invalid_result_is_refused_and_changes_nothing(
    cluster: DeterministicCluster, change: Any, field: str
) -> None:
    shard = cluster.node("a").lookup("checked")
    before, peer = shard.state, cluster.node("b").lookup("checked").snapshot()["a"]
    sent = cluster.messages_sent
    with pytest.raises(MutationError, match="not a valid Checked") as raised:
        commit(cluster, change)
    assert field in str(raised.value)  # pydantic's message names the field
    assert raised.value.__cause__ is not None
    cluster.run_until_idle()
    assert shard.state is before
    assert cluster.node("b").lookup("checked").snapshot()["a"] is peer
    assert cluster.messages_sent == sent


def test_a_valid_result_is_committed_with_the_models_coercion(
    cluster: DeterministicCluster,
) -> None:
    generation = commit(cluster, lambda s: setattr(s, "count", "7"))  # lax mode: "7" -> 7
    shard = cluster.node("a").lookup("checked")
    assert shard.state.generation == generation
    assert shard.state.value.count == 7
    cluster.run_until_idle()
    assert cluster.node("b").lookup("checked").snapshot()["a"].value.count == 7


def test_the_next_mutation_starts_from_the_last_valid_state(
    cluster: DeterministicCluster,
) -> None:
    commit(cluster, lambda s: setattr(s, "count", 1))
    with pytest.raises(MutationError):
        commit(cluster, lambda s: setattr(s, "count", None))
    commit(cluster, lambda s: setattr(s, "count", s.count + 1))
    assert cluster.node("a").lookup("checked").state.value.count == 2


def test_a_delta_closure_returning_none_says_what_to_return() -> None:
    with local_cluster(["a"]) as cluster:
        shard = cluster.node("a").register(TestDeltaState)
        with pytest.raises(TypeError, match="return the change"):
            shard.mutate_with_delta(lambda s: None)
        assert shard.state.generation.age == 0


class Fleet(DistributedState):
    NAME: ClassVar[str] = "fleet"
    ships: list[Inner] = Field(default_factory=lambda: [Inner(level=i) for i in range(100)])
    by_name: dict[str, Inner] = Field(default_factory=lambda: {f"s{i}": Inner() for i in range(50)})
    crew: list[Inner] = Field(default_factory=list, max_length=3)


def test_one_changed_element_of_a_long_list_is_checked_with_its_path() -> None:
    with local_cluster(["a"]) as cluster:
        shard = cluster.node("a").register(Fleet)

        def coerced(state: Fleet) -> None:
            state.ships[57].level = "7"  # type: ignore[assignment]
            state.by_name["s3"] = Inner.model_construct(level="9")

        shard.mutate(coerced)
        assert shard.state.value.ships[57].level == 7  # validated: the int, not the str
        assert shard.state.value.by_name["s3"].level == 9

        def broken(state: Fleet) -> None:
            state.ships[42].level = "high"  # type: ignore[assignment]

        with pytest.raises(MutationError, match=r"ships\.42\.level"):
            shard.mutate(broken)
        with pytest.raises(MutationError, match=r"by_name\.s5\.level"):
            shard.mutate(lambda s: s.by_name.__setitem__("s5", Inner.model_construct(level="x")))
        assert shard.state.value.ships[42].level == 42  # nothing committed


def test_a_constrained_list_is_still_checked_whole() -> None:
    with local_cluster(["a"]) as cluster:
        shard = cluster.node("a").register(Fleet)
        shard.mutate(lambda s: s.crew.extend([Inner(), Inner(), Inner()]))
        with pytest.raises(MutationError, match="crew"):
            shard.mutate(lambda s: s.crew.append(Inner()))  # a valid element, one too many
        assert len(shard.state.value.crew) == 3
