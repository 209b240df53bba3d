"""RateLimitedLog: once per key per period of the given clock, with a suppressed count."""

from __future__ import annotations

import logging

import pytest

from dstate_core._ratelimit import MAX_KEYS, RateLimitedLog
from dstate_core.testing import TestClock

LOGGER = "dstate.test.ratelimit"


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


@pytest.fixture
def limited(clock: TestClock) -> RateLimitedLog:
    return RateLimitedLog(logging.getLogger(LOGGER), clock, period=60.0)


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER]


class TestRateLimitedLog:
    def test_first_message_is_logged_with_its_args(
        self, limited: RateLimitedLog, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG, LOGGER)
        assert limited.warning(("bad", "a"), "peer %r sent %s", "a", "junk")
        [record] = records(caplog)
        assert record.levelno == logging.WARNING
        assert record.getMessage() == "peer 'a' sent junk"

    def test_repeats_within_the_period_are_suppressed(
        self, limited: RateLimitedLog, clock: TestClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG, LOGGER)
        assert limited.warning(("bad", "a"), "one")
        clock.advance(59.9)
        assert not limited.warning(("bad", "a"), "two")
        assert not limited.warning(("bad", "a"), "three")
        assert [r.getMessage() for r in records(caplog)] == ["one"]

    def test_after_the_period_it_logs_with_the_suppressed_count(
        self, limited: RateLimitedLog, clock: TestClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG, LOGGER)
        limited.warning(("bad", "a"), "first")
        limited.warning(("bad", "a"), "x")
        limited.warning(("bad", "a"), "x")
        clock.advance(60.0)
        assert limited.warning(("bad", "a"), "again %s", "now")
        messages = [r.getMessage() for r in records(caplog)]
        assert messages == ["first", "again now (2 similar messages suppressed)"]
        clock.advance(60.0)
        limited.warning(("bad", "a"), "clean")
        assert records(caplog)[-1].getMessage() == "clean"

    def test_the_period_restarts_from_the_last_logged_message(
        self, limited: RateLimitedLog, clock: TestClock
    ) -> None:
        assert limited.warning(("k",), "m")
        clock.advance(30.0)
        assert not limited.warning(("k",), "m")
        clock.advance(30.0)
        assert limited.warning(("k",), "m")
        clock.advance(59.0)
        assert not limited.warning(("k",), "m")

    def test_keys_are_independent(
        self, limited: RateLimitedLog, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG, LOGGER)
        assert limited.warning(("bad", "a"), "a1")
        assert limited.warning(("bad", "b"), "b1")
        assert limited.warning(("oversized", "a"), "a2")
        assert not limited.warning(("bad", "a"), "a3")
        assert [r.getMessage() for r in records(caplog)] == ["a1", "b1", "a2"]

    def test_level_is_respected(
        self, limited: RateLimitedLog, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG, LOGGER)
        assert limited.log(logging.ERROR, ("e",), "boom")
        assert records(caplog)[-1].levelno == logging.ERROR

    def test_custom_period(self, clock: TestClock) -> None:
        short = RateLimitedLog(logging.getLogger(LOGGER), clock, period=1.0)
        assert short.warning(("k",), "m")
        assert not short.warning(("k",), "m")
        clock.advance(1.0)
        assert short.warning(("k",), "m")


def test_keys_from_peer_input_never_grow_without_bound(
    limited: RateLimitedLog, clock: TestClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    for i in range(3 * MAX_KEYS):  # a sender rotating its claimed name
        assert limited.warning(("bad", f"n{i}"), "junk from %s", i)
    assert len(limited._last) <= MAX_KEYS
    assert len(records(caplog)) == 3 * MAX_KEYS
    clock.advance(61.0)
    limited.warning(("bad", "fresh"), "junk")
    assert len(limited._last) <= MAX_KEYS


def test_forgetting_keeps_keys_still_within_their_period(
    limited: RateLimitedLog, clock: TestClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    for i in range(MAX_KEYS - 1):
        limited.warning(("old", str(i)), "junk")
    clock.advance(61.0)
    limited.warning(("recent", "r"), "junk")  # now at the bound: the next key prunes
    limited.warning(("new", "n"), "junk")
    assert set(limited._last) == {("recent", "r"), ("new", "n")}
    assert not limited.warning(("recent", "r"), "junk")  # still suppressed
