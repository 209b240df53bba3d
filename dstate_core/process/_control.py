"""The node process's control channel: one JSON object per line in, one per line out.

A request is a JSON object with a ``"cmd"`` and, optionally, an ``"id"`` that
the reply echoes. Every request gets exactly one reply line, ``{"ok": true,
...}`` or ``{"ok": false, "error": "..."}``, in request order. Lines with an
``"event"`` key instead of ``"ok"`` are unsolicited (``ready``, ``joined``,
``left``, ``view``, ``stopping``, ``stopped``). Times (``"t"``) are the host's
monotonic clock (``time.monotonic()``, system-wide on Linux), so lines from
different node processes on one host compare.

=============  =============================================================
``ping``       ``{"t"}``
``status``     node id, leader, admin port, pids, peers, states, drop counts
``views``      ``{"state"}``: every view, as is (no freshness check)
``query``      ``{"state", "max_staleness"?, "on_stale"?}``: views, pulled
               first if older than the bound
``set``        ``{"state", "fields"}``: a simple state's fields, validated
``mutate``     ``{"state", "fn", "args"?, "repeat"?}``: call the state
               class's closure factory ``fn(*args)`` / ``fn(**args)`` and
               mutate with it (``mutate_with_delta`` for a delta state)
``wait``       ``{"state", "node", "age", "timeout"?, "pull"?}``: block until
               the view of ``node`` reaches ``age`` (pulling if ``pull``)
``watch``      ``{"state"}``: a ``view`` event per view change; ``unwatch``
``health``     the node's health check
``metrics``    ``{"state"}``: the shard's counters
``shutdown``   reply, then stop the node cleanly (exit status 0)
=============  =============================================================

Commands run one at a time, in order, on the reader thread: ``wait`` holds the
channel until it is done. Events come from other threads, a whole line at a time.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TextIO

from pydantic import BaseModel

from .._logs import NodeLog
from ..model._generation import Generation, StateViewObject
from ..model._state import DeltaDistributedState
from ..shell._node import DStateNode
from ..shell._shard import Shard, Subscription

__all__ = ["Controller", "Emitter", "generation_json", "serve_lines", "view_json"]

#: How long ``wait`` waits unless told, and its polling period.
WAIT_TIMEOUT = 10.0
_WAIT_POLL = 0.001
#: ``wait`` with ``pull``: the staleness bound of its queries (only pending views are pulled).
_PULL_BOUND = 3600.0
#: The largest ``repeat`` of one ``mutate`` request.
MAX_REPEAT = 1_000_000


class CommandError(Exception):
    """A request that cannot be served; its message becomes the reply's ``error``."""


class Emitter:
    """Writes JSON lines to ``out`` whole, from any thread; a closed stream is ignored.

    Args:
        out: a text stream (the process's stdout).
    """

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()
        self.broken = False

    def emit(self, message: Mapping[str, Any]) -> None:
        """Write ``message`` as one line and flush."""
        line = json.dumps(message, separators=(",", ":"), default=str) + "\n"
        with self._lock:
            if self.broken:
                return
            try:
                self._out.write(line)
                self._out.flush()
            except (OSError, ValueError):
                self.broken = True

    def event(self, name: str, **fields: Any) -> None:
        """Emit an unsolicited ``{"event": name, "t": now, ...}`` line."""
        self.emit({"event": name, "t": time.monotonic(), **fields})


def generation_json(generation: Generation | None) -> list[int] | None:
    """A generation as ``[incarnation, age]``."""
    return None if generation is None else [generation.incarnation, generation.age]


def _value_json(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)


def view_json(view: StateViewObject[Any]) -> dict[str, Any]:
    """One view as JSON: generation, pending generation, value and times."""
    return {
        "generation": generation_json(view.generation),
        "pending": generation_json(view.pending_remote_generation),
        "value": _value_json(view.value),
        "wire_version": view.wire_version,
        "modified_time": view.modified_time,
        "synced_at": view.synced_at,
    }


class Controller:
    """Serves control requests against one node.

    Args:
        node: the node (its runtime is ``node.runtime``).
        emitter: where events go.
        status: extra fields for the ``status`` reply (leader, ports, pids...).
        on_shutdown: called after the ``shutdown`` reply is written.

    Concurrency: :meth:`handle` runs on one thread at a time (the reader);
    watch callbacks run on the shards' notifier threads and only emit.
    """

    def __init__(
        self,
        node: DStateNode,
        emitter: Emitter,
        status: Callable[[], dict[str, Any]],
        on_shutdown: Callable[[], None],
    ) -> None:
        self._node = node
        self._log = NodeLog("dstate.node.control", node.node_id)
        self._emitter = emitter
        self._status = status
        self._on_shutdown = on_shutdown
        self._watches: dict[str, Subscription] = {}
        self._commands: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "ping": lambda req: {"t": time.monotonic()},
            "status": self._cmd_status,
            "views": self._cmd_views,
            "query": self._cmd_query,
            "set": self._cmd_set,
            "mutate": self._cmd_mutate,
            "wait": self._cmd_wait,
            "watch": self._cmd_watch,
            "unwatch": self._cmd_unwatch,
            "health": self._cmd_health,
            "metrics": self._cmd_metrics,
            "shutdown": lambda req: {},
        }

    @property
    def commands(self) -> list[str]:
        """The command names, sorted."""
        return sorted(self._commands)

    def handle_line(self, line: str) -> None:
        """Parse one request line, serve it and emit the reply (never raises)."""
        text = line.strip()
        if not text:
            return
        try:
            request = json.loads(text)
        except ValueError as exc:
            self._emitter.emit({"ok": False, "error": f"not JSON: {exc}"})
            return
        if not isinstance(request, dict):
            self._emitter.emit({"ok": False, "error": "a request is a JSON object"})
            return
        reply = self.handle(request)
        self._emitter.emit(reply)
        if request.get("cmd") == "shutdown" and reply.get("ok"):
            self._on_shutdown()

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """The reply to one request (``ok`` false with the error on any failure)."""
        head: dict[str, Any] = {"id": request["id"]} if "id" in request else {}
        cmd = request.get("cmd")
        handler = self._commands.get(cmd) if isinstance(cmd, str) else None
        if handler is None:
            known = ", ".join(self.commands)
            return {**head, "ok": False, "error": f"unknown cmd {cmd!r} (known: {known})"}
        try:
            return {**head, "ok": True, **handler(request)}
        except CommandError as exc:
            return {**head, "ok": False, "error": str(exc)}
        except Exception as exc:
            self._log.debug("control command %r failed", cmd, exc_info=True)
            return {**head, "ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def close(self) -> None:
        """Cancel every watch."""
        for subscription in self._watches.values():
            subscription.cancel()
        self._watches.clear()

    # -- commands -----------------------------------------------------------------

    def _shard(self, request: Mapping[str, Any]) -> Shard[Any]:
        name = request.get("state")
        if not isinstance(name, str):
            raise CommandError(f"'state' must name a state: one of {sorted(self._node.states)}")
        shard = self._node.states.get(name)
        if shard is None:
            raise CommandError(f"no state {name!r} here: one of {sorted(self._node.states)}")
        return shard

    def _cmd_status(self, request: dict[str, Any]) -> dict[str, Any]:
        states = {
            name: {
                "generation": generation_json(shard.state.generation),
                "views": sorted(shard.snapshot()),
                "drops": shard.drops(),
            }
            for name, shard in sorted(self._node.states.items())
        }
        return {
            **self._status(),
            "states": states,
            "node_drops": dict(self._node.dropped_messages),
        }

    def _cmd_views(self, request: dict[str, Any]) -> dict[str, Any]:
        views = self._shard(request).snapshot()
        return {"views": {node: view_json(view) for node, view in sorted(views.items())}}

    def _cmd_query(self, request: dict[str, Any]) -> dict[str, Any]:
        shard = self._shard(request)
        bound = _number(request, "max_staleness", None)
        on_stale = request.get("on_stale", "raise")
        if on_stale not in ("raise", "return"):
            raise CommandError("'on_stale' is 'raise' or 'return'")
        views = shard.query(
            lambda v: {node: view_json(view) for node, view in sorted(v.items())},
            bound,
            on_stale=on_stale,
        )
        return {"views": views}

    def _cmd_set(self, request: dict[str, Any]) -> dict[str, Any]:
        shard = self._shard(request)
        fields = request.get("fields")
        state_type = shard.state_type
        if issubclass(state_type, DeltaDistributedState):
            raise CommandError(
                f"state {state_type.NAME!r} is delta-aware: use 'mutate' with a closure factory"
            )
        if not isinstance(fields, dict) or not fields:
            raise CommandError("'fields' must be a non-empty object")
        unknown = sorted(set(fields) - set(state_type.model_fields))
        if unknown:
            raise CommandError(f"{state_type.__name__} has no field(s) {unknown}")

        def update(state: Any) -> Any:
            return type(state).model_validate({**state.model_dump(), **fields})

        started = time.monotonic()
        generation = shard.mutate(update)
        return {"generation": generation_json(generation), "t0": started, "t": time.monotonic()}

    def _cmd_mutate(self, request: dict[str, Any]) -> dict[str, Any]:
        shard = self._shard(request)
        state_type = shard.state_type
        name = request.get("fn")
        if (
            not isinstance(name, str)
            or not name
            or name.startswith("_")
            or hasattr(BaseModel, name)
        ):
            raise CommandError("'fn' must name a public closure factory of the state class")
        factory = getattr(state_type, name, None)
        if not callable(factory):
            raise CommandError(f"{state_type.__name__} has no callable {name!r}")
        args = request.get("args", [])
        if isinstance(args, list):
            closure = factory(*args)
        elif isinstance(args, dict):
            closure = factory(**args)
        else:
            raise CommandError("'args' must be a list or an object")
        if not callable(closure):
            raise CommandError(f"{state_type.__name__}.{name}(...) did not return a callable")
        repeat = request.get("repeat", 1)
        if type(repeat) is not int or not 0 < repeat <= MAX_REPEAT:
            raise CommandError(f"'repeat' must be an int in 1..{MAX_REPEAT}")
        apply = (
            shard.mutate_with_delta
            if issubclass(state_type, DeltaDistributedState)
            else shard.mutate
        )
        started = time.monotonic()
        pipelined = [apply(closure, block=False) for _ in range(repeat - 1)]
        generation = apply(closure)  # commits after (and so waits for) the pipelined ones
        for future in pipelined:
            future.result(timeout=0)  # raise the first failure, as one by one would have
        return {"generation": generation_json(generation), "t0": started, "t": time.monotonic()}

    def _cmd_wait(self, request: dict[str, Any]) -> dict[str, Any]:
        shard = self._shard(request)
        node = request.get("node")
        age = request.get("age")
        if not isinstance(node, str) or type(age) is not int:
            raise CommandError("'wait' needs 'node' (a node id) and 'age' (an int)")
        timeout = _number(request, "timeout", WAIT_TIMEOUT)
        pull = bool(request.get("pull", False))
        deadline = time.monotonic() + (WAIT_TIMEOUT if timeout is None else timeout)

        def current() -> StateViewObject[Any] | None:
            if pull:
                # A pending view (announced by the change feed) is pulled; others are fresh.
                return shard.query(lambda v: v.get(node), _PULL_BOUND, on_stale="return")
            return shard.snapshot().get(node)

        while True:
            view = current()
            if view is not None and view.generation.age >= age:
                return {"generation": generation_json(view.generation), "t": time.monotonic()}
            if time.monotonic() >= deadline:
                seen = None if view is None else generation_json(view.generation)
                raise CommandError(f"timed out: the view of {node!r} is at {seen}, not age {age}")
            time.sleep(_WAIT_POLL)

    def _cmd_watch(self, request: dict[str, Any]) -> dict[str, Any]:
        shard = self._shard(request)
        name = shard.state_type.NAME
        if name not in self._watches:

            def changed(node: str, old: Any, new: StateViewObject[Any] | None) -> None:
                self._emitter.event(
                    "view",
                    state=name,
                    node=node,
                    generation=None if new is None else generation_json(new.generation),
                )

            self._watches[name] = shard.subscribe(changed)
        return {}

    def _cmd_unwatch(self, request: dict[str, Any]) -> dict[str, Any]:
        subscription = self._watches.pop(self._shard(request).state_type.NAME, None)
        if subscription is not None:
            subscription.cancel()
        return {}

    def _cmd_health(self, request: dict[str, Any]) -> dict[str, Any]:
        health = self._node.health_check()
        return {
            "status": health.status.name,
            "states": [
                {
                    "state": s.state_name,
                    "status": s.status.name,
                    "healthy_peers": s.healthy_peers,
                    "stale_peers": s.stale_peers,
                    "failing_peers": s.failing_peers,
                }
                for s in health.states
            ],
        }

    def _cmd_metrics(self, request: dict[str, Any]) -> dict[str, Any]:
        metrics = self._shard(request).metrics()
        return {"metrics": {name: getattr(metrics, name) for name in metrics.__dataclass_fields__}}


def _number(request: Mapping[str, Any], key: str, default: float | None) -> float | None:
    value = request.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise CommandError(f"{key!r} must be a number >= 0")
    return float(value)


def serve_lines(lines: Iterable[str], controller: Controller) -> None:
    """Feed every line of ``lines`` (stdin) to ``controller`` until they end."""
    for line in lines:
        controller.handle_line(line)
