"""Status reports: the request frame, the answer's checks, the rate limit, the lag."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dstate_core.net._messages import (
    STATUS_REPLY,
    StatusRequest,
    decode_frame,
    encode_status_request,
)
from dstate_core.net._report import (
    MAX_ANSWERS_PER_SECOND,
    NodeReport,
    StateReport,
    StatusDesk,
    ViewReport,
    decode_status_reply,
    encode_status_reply,
)
from dstate_core.process._status_command import ClusterStatus, MemberStatus, StateRow, _lag


def report(node: str, age: int, views: dict[str, int | None]) -> NodeReport:
    rows = [
        ViewReport(peer=p, incarnation=None if a is None else 7, age=a, synced_ago=0.5, failures=0)
        for p, a in views.items()
    ]
    state = StateReport(name="s", incarnation=7, age=age, health="HEALTHY", views=rows)
    return NodeReport(
        node=node,
        address=f"127.0.0.1:{7100 + ord(node)}",
        incarnation="1-x",
        ready=True,
        members={node: "127.0.0.1:7100"},
        states=[state],
    )


def test_a_status_request_round_trips() -> None:
    assert decode_frame(encode_status_request(42)) == StatusRequest(42)


@pytest.mark.parametrize("items", [[3], [3, -1], [3, True], [3, "1"], [3, 1, 2], [3, 2**60]])
def test_a_bad_status_request_is_refused(items: list[Any]) -> None:
    with pytest.raises(ValueError, match="status request"):
        decode_frame(msgpack.packb(items))


def test_an_answer_round_trips() -> None:
    sent = report("a", 3, {"b": 2, "c": None})
    assert decode_status_reply(encode_status_reply(9, sent)) == (9, sent)


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r.update(node=""),
        lambda r: r.update(node="x" * 300),
        lambda r: r.update(ready="yes"),
        lambda r: r.update(extra=1),
        lambda r: r["states"][0].update(health="FINE"),
        lambda r: r["states"][0].update(age=-1),
        lambda r: r["states"][0]["views"][0].update(failures=1.5),
        lambda r: r["states"][0]["views"][0].update(synced_ago=-2.0),
        lambda r: r.update(members={"a": 5}),
        lambda r: r.update(states=[r["states"][0]] * 1001),
    ],
)
def test_a_malformed_answer_is_a_value_error(change: Any) -> None:
    body = report("a", 3, {"b": 2}).model_dump()
    change(body)
    with pytest.raises(ValueError, match="malformed status answer"):
        decode_status_reply(msgpack.packb([STATUS_REPLY, 1, body]))


@given(st.binary(max_size=200))
def test_garbage_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="answer"):
        decode_status_reply(data)


def test_the_desk_answers_with_its_source_and_a_limited_rate() -> None:
    now = [100.0]
    desk = StatusDesk("a", "127.0.0.1:7100", "1-x", clock=lambda: now[0])
    _, empty = decode_status_reply(desk.answer(1, {"b": "127.0.0.1:7200"}) or b"")
    assert (empty.ready, empty.states) == (False, [])
    assert empty.members == {"a": "127.0.0.1:7100", "b": "127.0.0.1:7200"}

    state = report("a", 3, {}).states[0]
    desk.answer_with(lambda: (True, [state]))
    answers = [desk.answer(n, {}) for n in range(2 * MAX_ANSWERS_PER_SECOND)]
    given_ = [a for a in answers if a is not None]
    assert len(given_) == MAX_ANSWERS_PER_SECOND - 1  # one went to the first answer
    now[0] += 1.0
    assert desk.answer(99, {}) is not None  # a new second
    _, full = decode_status_reply(given_[0])
    assert full.ready and full.states == [state]


def test_lag_is_the_furthest_behind_view() -> None:
    reports = {
        "a": report("a", 10, {"b": 0}),
        "b": report("b", 0, {"a": 7}),
        "c": report("c", 0, {"a": 10, "b": 0}),
    }
    assert _lag("a", reports["a"].states[0], reports) == 3
    assert _lag("b", reports["b"].states[0], reports) == 0
    reports["c"] = report("c", 0, {"a": None, "b": 0})
    assert _lag("a", reports["a"].states[0], reports) is None  # c holds no view of a


def test_cluster_health_needs_every_member() -> None:
    ok = MemberStatus("a", "h:1", True, [StateRow("s", "7:1", 0, "HEALTHY")])
    assert ClusterStatus([ok]).healthy
    assert not ClusterStatus([ok, MemberStatus("b", "h:2", error="no answer")]).healthy
    assert not ClusterStatus([MemberStatus("a", "h:1", False, ok.states)]).healthy
    degraded = MemberStatus("a", "h:1", True, [StateRow("s", "7:1", 0, "DEGRADED")])
    assert not ClusterStatus([degraded]).healthy


def test_a_failing_source_is_reported_as_no_states() -> None:
    desk = StatusDesk("a", "127.0.0.1:7100", "1-x")

    def broken() -> tuple[bool, list[StateReport]]:
        raise RuntimeError("the node is shutting down")

    desk.answer_with(broken)
    _, report = decode_status_reply(desk.answer(1, {}) or b"")
    assert (report.ready, report.states) == (False, [])
