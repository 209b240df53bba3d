"""Loggers whose records name their node, and their state and peer where there is one.

Every record a node writes carries the attributes ``node``, ``state`` and
``peer`` (``None`` where they do not apply), and its text starts with the node
(and state): ``node 'a' state 'counter': ...``. A formatter can put the
attributes in columns or JSON fields (``docs/diagnostics.md#logging``).
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

__all__ = ["AnyLogger", "NodeLog"]


class NodeLog(logging.LoggerAdapter[logging.Logger]):
    """A logger of the standard ``logging`` module bound to one node (and state).

    Pass ``peer=NODE_ID`` to a logging call to set the record's ``peer``.

    Args:
        name: the logger's name (``dstate.engine``, say).
        node: the node id every record names.
        state: the state's name, if the records are about one.
    """

    def __init__(self, name: str, node: str, state: str | None = None) -> None:
        super().__init__(logging.getLogger(name), {"node": node, "state": state})
        self.node = node
        self.state = state
        prefix = f"node {node!r}" if state is None else f"node {node!r} state {state!r}"
        self._prefix = prefix.replace("%", "%%") + ": "  # the text is %-formatted later

    def for_state(self, state: str, name: str | None = None) -> NodeLog:
        """The same node's logger for ``state`` (on logger ``name``, or this one's)."""
        return NodeLog(name or self.logger.name, self.node, state)

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        """Prefix the text and set the record's ``node``, ``state`` and ``peer``."""
        peer = kwargs.pop("peer", None)
        kwargs["extra"] = {
            **kwargs.get("extra", {}),
            "node": self.node,
            "state": self.state,
            "peer": peer,
        }
        return self._prefix + str(msg), kwargs


#: What the rate-limited logs write to.
AnyLogger = logging.Logger | NodeLog
