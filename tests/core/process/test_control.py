"""The node process's control channel, without processes: a Controller on a deterministic node."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from dstate_core.process import Controller, Emitter, serve_lines
from dstate_core.testing import DeterministicCluster, TestDeltaState, TestState, local_cluster


class Channel:
    """A controller on node ``a`` of a two-node deterministic cluster, and what it wrote."""

    def __init__(self, cluster: DeterministicCluster) -> None:
        self.cluster = cluster
        self.out = io.StringIO()
        self.stopped = 0
        for node in ("a", "b"):
            cluster.node(node).register(TestState)
            cluster.node(node).register(TestDeltaState)
        cluster.run_until_idle()
        self.controller = Controller(
            cluster.node("a"), Emitter(self.out), lambda: {"node": "a"}, self._stop
        )

    def _stop(self) -> None:
        self.stopped += 1

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.getvalue().splitlines()]

    def call(self, **request: Any) -> dict[str, Any]:
        reply = self.controller.handle(request)
        assert "error" in reply or reply["ok"], reply
        return reply

    def ok(self, **request: Any) -> dict[str, Any]:
        reply = self.call(**request)
        assert reply["ok"], reply
        return reply

    def error(self, **request: Any) -> str:
        reply = self.call(**request)
        assert not reply["ok"], reply
        return str(reply["error"])


@pytest.fixture
def channel() -> Iterator[Channel]:
    with local_cluster(["a", "b"]) as cluster:
        yield Channel(cluster)


class TestRequests:
    def test_lines_get_one_reply_each_with_their_id(self, channel: Channel) -> None:
        serve_lines(
            ['{"id": 7, "cmd": "ping"}\n', "\n", "not json\n", "[1]\n", '{"cmd": "nope"}\n'],
            channel.controller,
        )
        replies = channel.lines()
        assert replies[0]["id"] == 7 and replies[0]["ok"] and "t" in replies[0]
        assert replies[1]["error"].startswith("not JSON")
        assert replies[2]["error"] == "a request is a JSON object"
        assert "unknown cmd 'nope'" in replies[3]["error"] and "mutate" in replies[3]["error"]
        assert len(replies) == 4

    def test_shutdown_replies_then_stops(self, channel: Channel) -> None:
        channel.controller.handle_line('{"cmd": "shutdown", "id": 1}')
        assert channel.lines() == [{"id": 1, "ok": True}]
        assert channel.stopped == 1

    def test_status_health_and_metrics(self, channel: Channel) -> None:
        status = channel.ok(cmd="status")
        assert status["node"] == "a"
        assert status["states"]["test_state"]["views"] == ["a", "b"]
        assert status["node_drops"] == {}
        assert channel.ok(cmd="health")["status"] == "HEALTHY"
        assert channel.ok(cmd="metrics", state="test_state")["metrics"]["total_mutations"] == 0
        assert "no state 'nope'" in channel.error(cmd="metrics", state="nope")
        assert "'state' must name a state" in channel.error(cmd="views")


class TestMutations:
    def test_mutate_calls_a_closure_factory(self, channel: Channel) -> None:
        reply = channel.ok(cmd="mutate", state="test_state", fn="increment", args=[3], repeat=2)
        assert reply["generation"][1] == 2
        assert reply["t0"] <= reply["t"]
        delta = channel.ok(cmd="mutate", state="test_delta_state", fn="bump", args={"key": "k"})
        assert delta["generation"][1] == 1
        channel.cluster.run_until_idle()
        views = channel.ok(cmd="views", state="test_state")["views"]
        assert views["a"]["value"]["value"] == 6
        queried = channel.ok(cmd="query", state="test_delta_state", max_staleness=60)["views"]
        assert queried["a"]["value"]["counters"] == {"k": 1}

    @pytest.mark.parametrize(
        ("request_fields", "error"),
        [
            ({"fn": "_private"}, "public closure factory"),
            ({"fn": "model_validate"}, "public closure factory"),
            ({"fn": "nothing_here"}, "no callable 'nothing_here'"),
            ({"fn": "NAME"}, "no callable 'NAME'"),
            ({"fn": "increment", "args": "1"}, "'args' must be a list or an object"),
            ({"fn": "increment", "repeat": 0}, "'repeat' must be an int"),
            ({"fn": "increment", "args": {"nope": 1}}, "TypeError"),
        ],
    )
    def test_bad_mutate_requests(
        self, channel: Channel, request_fields: dict[str, Any], error: str
    ) -> None:
        assert error in channel.error(cmd="mutate", state="test_state", **request_fields)
        assert channel.cluster.node("a").lookup("test_state").state.generation.age == 0

    def test_a_factory_must_return_a_callable(
        self, channel: Channel, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(TestState, "not_a_closure", staticmethod(lambda: 42), raising=False)
        error = channel.error(cmd="mutate", state="test_state", fn="not_a_closure")
        assert "did not return a callable" in error

    def test_set_validates_fields_of_simple_states_only(self, channel: Channel) -> None:
        reply = channel.ok(cmd="set", state="test_state", fields={"value": 4, "label": "x"})
        assert reply["generation"][1] == 1
        state = channel.cluster.node("a").lookup("test_state").state.value
        assert (state.value, state.label) == (4, "x")
        assert "int_parsing" in channel.error(cmd="set", state="test_state", fields={"value": "x"})
        assert "no field(s) ['nope']" in channel.error(
            cmd="set", state="test_state", fields={"nope": 1}
        )
        assert "non-empty object" in channel.error(cmd="set", state="test_state", fields={})
        assert "delta-aware" in channel.error(
            cmd="set", state="test_delta_state", fields={"total": 1}
        )


class TestWaitingAndWatching:
    def test_wait_returns_once_the_view_reaches_the_age(self, channel: Channel) -> None:
        channel.ok(cmd="mutate", state="test_state", fn="increment")
        reply = channel.ok(cmd="wait", state="test_state", node="a", age=1)
        assert reply["generation"][1] == 1
        error = channel.error(cmd="wait", state="test_state", node="b", age=5, timeout=0)
        assert "timed out" in error and "not age 5" in error
        assert "needs 'node'" in channel.error(cmd="wait", state="test_state", node="b")
        assert ">= 0" in channel.error(cmd="wait", state="test_state", node="b", age=1, timeout=-1)
        pulled = channel.ok(cmd="wait", state="test_state", node="b", age=0, pull=True)
        assert pulled["generation"][1] == 0

    def test_watch_reports_view_changes_until_unwatched(self, channel: Channel) -> None:
        channel.ok(cmd="watch", state="test_state")
        channel.ok(cmd="watch", state="test_state")  # twice: one subscription
        channel.cluster.node("b").lookup("test_state").mutate(TestState.increment())
        channel.cluster.run_until_idle()
        events = [line for line in channel.lines() if line.get("event") == "view"]
        assert [(e["node"], e["generation"][1]) for e in events] == [("b", 1)]
        channel.ok(cmd="unwatch", state="test_state")
        channel.cluster.node("b").lookup("test_state").mutate(TestState.increment())
        channel.cluster.run_until_idle()
        assert len([line for line in channel.lines() if line.get("event") == "view"]) == 1
        channel.controller.close()

    def test_query_checks_its_options(self, channel: Channel) -> None:
        assert "'on_stale'" in channel.error(cmd="query", state="test_state", on_stale="x")
        assert ">= 0" in channel.error(cmd="query", state="test_state", max_staleness="x")


def test_an_emitter_on_a_closed_stream_goes_quiet() -> None:
    out = io.StringIO()
    emitter = Emitter(out)
    emitter.event("ready", node="a")
    assert json.loads(out.getvalue())["event"] == "ready"
    out.close()
    emitter.emit({"event": "late"})
    assert emitter.broken
