"""Child processes for ``bench.network_processes``: a bare pyzmq receiver, a PySyncObj
counter, and a busy thread. Run as ``python -m bench._peers KIND ...``; each prints
JSON lines on stdout. Not a test.

* ``zmq PORTFILE COUNT [--busy]``: a CURVE ROUTER (keys from ``DSTATE_BENCH_SECRET``,
  hex) on a free port, written to PORTFILE; for each of COUNT messages it records
  the one-way latency (its receive time minus the send time in the message, both
  ``time.monotonic()``, one system-wide clock on Linux), then prints them.
* ``raft SELF OTHERS COUNT``: a PySyncObj counter on 127.0.0.1:SELF with partners;
  the elected leader runs COUNT async increments; every process prints the time
  its counter reached COUNT (and the leader the time it began).
* ``--busy`` (zmq) or importing :mod:`bench._busy` (a node's ``--state``): one
  CPU-bound Python thread for the life of the process.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
import time
from pathlib import Path


def busy_thread() -> None:
    """Start a daemon thread that keeps a CPU busy in Python (it holds the GIL often)."""

    def spin() -> None:
        n = 0
        while True:
            n = (n + 1) % 1_000_003

    threading.Thread(target=spin, name="busy", daemon=True).start()


def _zmq(port_file: str, count: int, busy: bool) -> None:
    import zmq

    from dstate_core.net import curve_keys

    keys = curve_keys(bytes.fromhex(os.environ["DSTATE_BENCH_SECRET"]))
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.curve_server = True
    router.curve_secretkey = keys.secret
    router.curve_publickey = keys.public
    port = router.bind_to_random_port("tcp://127.0.0.1")
    if busy:
        busy_thread()
    Path(port_file).write_text(str(port))
    samples = []
    while len(samples) < count:
        _, data = router.recv_multipart()
        (sent,) = struct.unpack("d", data[:8])
        samples.append(time.monotonic() - sent)
    print(json.dumps({"samples": samples}), flush=True)
    router.close(0)
    ctx.term()


def _raft(self_port: int, others: list[int], count: int) -> None:
    from pysyncobj import SyncObj, SyncObjConf, replicated  # type: ignore[import-untyped]

    class Counter(SyncObj):  # type: ignore[misc]
        def __init__(self) -> None:
            conf = SyncObjConf(dynamicMembershipChange=False)
            super().__init__(f"127.0.0.1:{self_port}", [f"127.0.0.1:{p}" for p in others], conf)
            self.value = 0

        @replicated  # type: ignore[untyped-decorator]
        def increment(self) -> None:
            self.value += 1

    counter = Counter()
    deadline = time.monotonic() + 60
    while not (counter.isReady() and counter._getLeader() is not None):
        if time.monotonic() > deadline:
            raise SystemExit("no leader")
        time.sleep(0.01)
    out: dict[str, float] = {}
    if counter._isLeader():
        out["t0"] = time.monotonic()
        for _ in range(count):
            counter.increment()
    while counter.value < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"stuck at {counter.value}")
        time.sleep(0.0005)
    out["t"] = time.monotonic()
    print(json.dumps(out), flush=True)
    time.sleep(1.0)  # let the followers finish too before this one goes away
    counter.destroy()


def main(argv: list[str]) -> None:
    """Dispatch on the first argument (see the module docstring)."""
    if argv[0] == "zmq":
        _zmq(argv[1], int(argv[2]), "--busy" in argv)
    elif argv[0] == "raft":
        _raft(int(argv[1]), [int(p) for p in argv[2].split(",")], int(argv[3]))
    else:
        raise SystemExit(f"unknown peer kind {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
