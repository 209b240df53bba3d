"""The node process: one dstate node as an operating-system process, and its handle.

What a runtime's node command (``python -m dstate_thespian node``) needs and
any other runtime's can share: the options every node takes (:func:`add_node_options`), the node's
life as a process with signals and a clean stop (:class:`NodeProcess`), its
JSON-lines control channel on stdin/stdout (:class:`Controller`), and
:class:`NodeHandle`, which starts such a process and drives it from Python
(tests, benchmarks, demos). A runtime adds how its runtime starts, joins and
stops (``docs/thespian.md``).
"""

from ._addresses import is_local_address, normalize_address, route_to, wait_reachable
from ._control import Controller, Emitter, generation_json, serve_lines, view_json
from ._handle import READY_TIMEOUT, NodeHandle, NodeHandleError
from ._node_process import NodeProcess, run_node_command, state_file_name
from ._options import (
    PERIODIC_INTERVAL,
    STRATEGIES,
    CliError,
    NodeOptions,
    OneLineParser,
    StateSpec,
    add_node_options,
    check_data_dir,
    check_seconds,
    one_command_parser,
    parse_node_options,
    parse_state,
    read_secret,
)
from ._processes_and_ports import (
    children,
    cmdline,
    descendants,
    free_port,
    kill_pids,
    listener_pids,
    pid_alive,
    port_bindable,
    port_open,
    start_time,
    stat,
)
from ._run_records import RunRecord, check_run_dir, claim_port, default_run_dir

__all__ = [
    "PERIODIC_INTERVAL",
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
    "RunRecord",
    "StateSpec",
    "add_node_options",
    "check_data_dir",
    "check_run_dir",
    "check_seconds",
    "children",
    "claim_port",
    "cmdline",
    "default_run_dir",
    "descendants",
    "free_port",
    "generation_json",
    "is_local_address",
    "kill_pids",
    "listener_pids",
    "normalize_address",
    "one_command_parser",
    "parse_node_options",
    "parse_state",
    "pid_alive",
    "port_bindable",
    "port_open",
    "read_secret",
    "route_to",
    "run_node_command",
    "serve_lines",
    "start_time",
    "stat",
    "state_file_name",
    "view_json",
    "wait_reachable",
]
