"""The node process: one dstate node as an operating-system process, and its handle.

What ``python -m dstate_thespian node`` and ``python -m dstate_pykka node``
share: the options every node takes (:func:`add_node_options`), the node's
life as a process with signals and a clean stop (:class:`NodeProcess`), its
JSON-lines control channel on stdin/stdout (:class:`Controller`), and
:class:`NodeHandle`, which starts such a process and drives it from Python
(tests, benchmarks, demos). A runtime adds how its runtime starts, joins and
stops (``docs/thespian.md``).
"""

from ._control import Controller, Emitter, generation_json, serve_lines, view_json
from ._handle import READY_TIMEOUT, NodeHandle, NodeHandleError
from ._node_process import NodeProcess, run_node_command, state_file_name
from ._options import (
    STRATEGIES,
    CliError,
    NodeOptions,
    OneLineParser,
    StateSpec,
    add_node_options,
    check_data_dir,
    check_seconds,
    parse_node_options,
    parse_state,
    read_secret,
)
from ._procs import (
    children,
    cmdline,
    free_port,
    kill_pids,
    listener_pids,
    pid_alive,
    port_bindable,
    port_open,
    start_time,
    stat,
)

__all__ = [
    "READY_TIMEOUT",
    "STRATEGIES",
    "CliError",
    "Controller",
    "Emitter",
    "NodeHandle",
    "NodeHandleError",
    "NodeOptions",
    "NodeProcess",
    "OneLineParser",
    "StateSpec",
    "add_node_options",
    "check_data_dir",
    "check_seconds",
    "children",
    "cmdline",
    "free_port",
    "generation_json",
    "kill_pids",
    "listener_pids",
    "parse_node_options",
    "parse_state",
    "pid_alive",
    "port_bindable",
    "port_open",
    "read_secret",
    "run_node_command",
    "serve_lines",
    "start_time",
    "stat",
    "state_file_name",
    "view_json",
]
