"""2,000 seeded random schedules in the default run; DSTATE_SOAK=1 runs 20,000."""

from __future__ import annotations

import os

import pytest

from .schedules import InvariantViolation, Schedule

SOAK = os.environ.get("DSTATE_SOAK") == "1"
DEFAULT_SCHEDULES = 2000
SOAK_SCHEDULES = 20000


@pytest.mark.parametrize("block", range(20))
def test_random_schedules(block: int) -> None:
    """Each block runs a twentieth of the schedules (seeds block, block+20, ...)."""
    total = SOAK_SCHEDULES if SOAK else DEFAULT_SCHEDULES
    for seed in range(block, total, 20):
        Schedule(seed).run()


def test_replay() -> None:
    """Replay one seed printed by a failure: DSTATE_SEED=n pytest tests/simulation -k replay.

    Without DSTATE_SEED it runs seed 0 with a long schedule.
    """
    seed = int(os.environ.get("DSTATE_SEED", "0"))
    Schedule(seed, steps=40 if "DSTATE_SEED" in os.environ else 400).run()


def test_any_failure_names_its_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not only invariant violations: an error inside a step prints the replay line too."""

    def broken_step(self: Schedule) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(Schedule, "step", broken_step)
    with pytest.raises(InvariantViolation, match=r"seed 7 .*RuntimeError: boom") as failed:
        Schedule(7).run()
    assert "replay: DSTATE_SEED=7 pytest tests/simulation -k replay" in str(failed.value)
