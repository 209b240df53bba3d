"""Replicated configuration: settings changed on one node, watched live on every node.

The ``admin`` node writes a ``Settings`` state (feature flags and limits) and
persists it in SQLite; ``web`` and ``worker`` read admin's settings from local
memory and react to every change through ``subscribe()`` callbacks, which print
the change as it arrives. (Every node owns a shard of every state; here only
admin ever writes to its shard, and everyone reads that one.)

Then admin crashes. Its peers drop its view once the failure timeout passes,
and a new admin process registers again with a new ``SqlitePersistence`` on the
same file: it resumes at the same generation with the same settings, the
peers' callbacks fire as it rejoins, and its next change continues the
generation count. The cluster is the deterministic one (virtual clock, simulated
network), so the output is the same on every run.

Run it::

    python -m examples.config_watch [--data-dir DIR]

``--data-dir`` keeps the database after the run (default: a temporary
directory): run twice and the second run starts where the first one ended.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from dstate_core import DistributedState, SqlitePersistence, StateConfig, StateViewObject
from dstate_core.testing import local_cluster

OWNER = "admin"
NODES = [OWNER, "web", "worker"]
FAILURE_TIMEOUT = 3.0  # seconds (virtual) until peers treat a silent node as gone


class Settings(DistributedState):
    """Feature flags and limits, written by the admin node."""

    NAME: ClassVar[str] = "settings"
    dark_mode: bool = False
    max_upload_mb: int = 10
    banner: str = ""


def change(**values: Any) -> Callable[[Settings], None]:
    """A mutation that sets the given fields."""

    def apply(settings: Settings) -> None:
        for field, value in values.items():
            setattr(settings, field, value)

    return apply


def describe(settings: Settings) -> str:
    return ", ".join(f"{field}={value!r}" for field, value in settings.model_dump().items())


View = StateViewObject[Any]


def watcher(me: str) -> Callable[[str, View | None, View | None], None]:
    """A ``subscribe`` callback for node ``me``: prints every change to admin's settings."""

    def on_change(node_id: str, old: View | None, new: View | None) -> None:
        if node_id != OWNER:
            return  # the other nodes' (never written) shards
        if new is None:
            print(f"  [{me:>6}] admin left: its view is gone")
        elif old is None:
            age = new.generation.age
            print(f"  [{me:>6}] admin is here at generation {age}: {describe(new.value)}")
        elif old.generation != new.generation:
            before, after = old.value.model_dump(), new.value.model_dump()
            diff = [f"{k} {before[k]!r} -> {v!r}" for k, v in after.items() if before[k] != v]
            print(f"  [{me:>6}] generation {new.generation.age}: {', '.join(diff) or 'no change'}")

    return on_change


def admin_settings(views: Mapping[str, StateViewObject[Any]]) -> Settings:
    """A query projection: admin's settings as this node sees them."""
    settings: Settings = views[OWNER].value
    return settings


def run(data_dir: Path) -> None:
    """The whole scenario, with admin's database in ``data_dir``."""
    database = data_dir / "admin.sqlite"
    stores = [SqlitePersistence(database)]
    with local_cluster(NODES, failure_timeout=FAILURE_TIMEOUT) as cluster:
        shards = {}
        for node_id in NODES:
            persistence = stores[0] if node_id == OWNER else None
            shards[node_id] = cluster.node(node_id).register(
                Settings, StateConfig(persistence=persistence)
            )
            shards[node_id].subscribe(watcher(node_id))
        print(f"admin starts at generation {shards[OWNER].state.generation.age}; every node joins")
        cluster.run_until_idle()

        print("\n1. admin turns dark mode on, then raises the upload limit and sets a banner")
        shards[OWNER].mutate(change(dark_mode=True))
        cluster.run_until_idle()
        shards[OWNER].mutate(change(max_upload_mb=50, banner="maintenance at 02:00"))
        cluster.run_until_idle()
        before = shards[OWNER].state.generation

        print(f"\n2. admin crashes; {FAILURE_TIMEOUT:.0f}s later its peers drop its view")
        cluster.crash(OWNER)
        cluster.advance(FAILURE_TIMEOUT)

        print("\n3. admin restarts and registers with a new SqlitePersistence on the same file")
        stores.append(SqlitePersistence(database))
        admin = cluster.restart(OWNER).register(Settings, StateConfig(persistence=stores[-1]))
        admin.subscribe(watcher(OWNER))
        after = admin.state.generation
        same = "same incarnation" if after.incarnation == before.incarnation else "NEW incarnation"
        print(f"  admin resumed at generation {after.age} ({same}): {describe(admin.state.value)}")
        cluster.run_until_idle()

        print("\n4. admin clears the banner: the generation count continues")
        admin.mutate(change(banner=""))
        cluster.run_until_idle()

        print("\nwhat every node reads now (a local query, no network call):")
        for node_id in NODES:
            shard = cluster.node(node_id).lookup(Settings.NAME)
            settings = shard.query(admin_settings, max_staleness=5.0)
            generation = shard.snapshot()[OWNER].generation.age
            print(f"  {node_id:>6}: generation {generation}: {describe(settings)}")
    for store in stores:
        store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="replicated settings with live callbacks")
    parser.add_argument("--data-dir", type=Path, help="keep admin's database here")
    args = parser.parse_args(argv)
    if args.data_dir is not None:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        run(args.data_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="dstate-config-") as tmp:
            run(Path(tmp))


if __name__ == "__main__":
    main()
