"""Config objects: defaults, constructors and validation."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dstate_core import (
    ChangeFeedConfig,
    PushMode,
    StateConfig,
    SyncStrategy,
    VersionMismatchPolicy,
)
from dstate_core.testing._persistence import InMemoryPersistence

NOT_SECONDS: list[Any] = [0, 0.0, -1, -0.5, math.nan, True, False, "1", [1]]
NOT_FINITE: list[Any] = [math.inf, -math.inf]
positive = st.floats(min_value=1e-9, max_value=1e9, allow_nan=False, allow_infinity=False)


class TestSyncStrategy:
    def test_default_is_active_push(self) -> None:
        strategy = SyncStrategy()
        assert strategy == SyncStrategy.active_push()
        assert strategy.push_mode is PushMode.ACTIVE_PUSH
        assert strategy.periodic_full_sync is None
        assert strategy.pull_on_query is True

    def test_feed_lazy_pull(self) -> None:
        strategy = SyncStrategy.feed_lazy_pull()
        assert strategy.push_mode is PushMode.ACTIVE_FEED_LAZY_PULL
        assert strategy.periodic_full_sync is None
        assert strategy.pull_on_query is True

    @given(positive)
    def test_feed_with_periodic_sync(self, interval: float) -> None:
        strategy = SyncStrategy.feed_with_periodic_sync(interval)
        assert strategy.push_mode is PushMode.ACTIVE_FEED_LAZY_PULL
        assert strategy.periodic_full_sync == interval
        assert strategy.pull_on_query is True

    @given(positive)
    def test_periodic_only(self, interval: float) -> None:
        strategy = SyncStrategy.periodic_only(interval)
        assert strategy.push_mode is PushMode.NONE
        assert strategy.periodic_full_sync == interval
        assert strategy.pull_on_query is True

    def test_int_interval_becomes_float(self) -> None:
        interval = SyncStrategy.periodic_only(2).periodic_full_sync
        assert interval == 2.0
        assert isinstance(interval, float)

    @pytest.mark.parametrize("interval", [*NOT_SECONDS, *NOT_FINITE])
    @pytest.mark.parametrize(
        "build",
        [
            SyncStrategy.feed_with_periodic_sync,
            SyncStrategy.periodic_only,
            lambda i: SyncStrategy(periodic_full_sync=i),
        ],
    )
    def test_bad_interval(self, build: Any, interval: Any) -> None:
        with pytest.raises(ValueError, match="periodic_full_sync"):
            build(interval)

    @pytest.mark.parametrize("mode", ["active_push", None, 1])
    def test_bad_push_mode(self, mode: Any) -> None:
        with pytest.raises(ValueError, match="push_mode"):
            SyncStrategy(push_mode=mode)

    @pytest.mark.parametrize("flag", [1, 0, None, "yes"])
    def test_bad_pull_on_query(self, flag: Any) -> None:
        with pytest.raises(ValueError, match="pull_on_query"):
            SyncStrategy(pull_on_query=flag)

    @pytest.mark.parametrize(
        ("strategy", "expected"),
        [
            (SyncStrategy.active_push(), True),
            (SyncStrategy.feed_lazy_pull(), True),
            (SyncStrategy.periodic_only(1.0), True),
            (SyncStrategy(PushMode.NONE), True),  # pull on query
            (SyncStrategy(PushMode.NONE, periodic_full_sync=1.0, pull_on_query=False), True),
            (SyncStrategy(PushMode.ACTIVE_PUSH, pull_on_query=False), True),
            (SyncStrategy(PushMode.NONE, pull_on_query=False), False),
        ],
    )
    def test_has_fallback(self, strategy: SyncStrategy, expected: bool) -> None:
        assert strategy.has_fallback is expected

    def test_frozen_and_hashable(self) -> None:
        strategy = SyncStrategy.active_push()
        with pytest.raises(dataclasses.FrozenInstanceError):
            strategy.pull_on_query = False  # type: ignore[misc]
        assert hash(strategy) == hash(SyncStrategy.active_push())


class TestChangeFeedConfig:
    def test_default_batch_interval(self) -> None:
        assert ChangeFeedConfig().batch_interval == 1.0

    @given(positive)
    def test_good_interval(self, interval: float) -> None:
        assert ChangeFeedConfig(batch_interval=interval).batch_interval == interval

    @pytest.mark.parametrize("interval", [*NOT_SECONDS, *NOT_FINITE])
    def test_bad_interval(self, interval: Any) -> None:
        with pytest.raises(ValueError, match=r"ChangeFeedConfig\.batch_interval"):
            ChangeFeedConfig(batch_interval=interval)


class TestStateConfig:
    def test_defaults(self) -> None:
        config = StateConfig()
        assert config.sync_strategy == SyncStrategy.active_push()
        assert config.persistence is None
        assert config.default_staleness == 5.0
        assert config.version_mismatch_policy is VersionMismatchPolicy.KEEP_STALE
        assert config.pull_timeout == 5.0

    def test_infinite_staleness_is_allowed(self) -> None:
        assert StateConfig(default_staleness=math.inf).default_staleness == math.inf

    @pytest.mark.parametrize("value", [*NOT_SECONDS, -math.inf])
    def test_bad_default_staleness(self, value: Any) -> None:
        with pytest.raises(ValueError, match=r"StateConfig\.default_staleness"):
            StateConfig(default_staleness=value)

    @pytest.mark.parametrize("value", [*NOT_SECONDS, *NOT_FINITE])
    def test_bad_pull_timeout(self, value: Any) -> None:
        with pytest.raises(ValueError, match=r"StateConfig\.pull_timeout"):
            StateConfig(pull_timeout=value)

    @given(positive, positive)
    def test_good_numbers(self, staleness: float, timeout: float) -> None:
        config = StateConfig(default_staleness=staleness, pull_timeout=timeout)
        assert (config.default_staleness, config.pull_timeout) == (staleness, timeout)

    @pytest.mark.parametrize("strategy", [None, PushMode.ACTIVE_PUSH, "active_push"])
    def test_bad_sync_strategy(self, strategy: Any) -> None:
        with pytest.raises(ValueError, match="sync_strategy"):
            StateConfig(sync_strategy=strategy)

    @pytest.mark.parametrize("policy", [None, "keep_stale"])
    def test_bad_version_mismatch_policy(self, policy: Any) -> None:
        with pytest.raises(ValueError, match="version_mismatch_policy"):
            StateConfig(version_mismatch_policy=policy)

    @pytest.mark.parametrize("store", [object(), "file.db", 3])
    def test_persistence_without_save_and_load(self, store: Any) -> None:
        with pytest.raises(ValueError, match="persistence"):
            StateConfig(persistence=store)

    def test_persistence_backend_is_kept(self) -> None:
        store = InMemoryPersistence()
        assert StateConfig(persistence=store).persistence is store

    def test_policy_and_strategy_are_kept(self) -> None:
        config = StateConfig(
            sync_strategy=SyncStrategy.feed_lazy_pull(),
            version_mismatch_policy=VersionMismatchPolicy.DROP_AND_WAIT,
        )
        assert config.sync_strategy.push_mode is PushMode.ACTIVE_FEED_LAZY_PULL
        assert config.version_mismatch_policy is VersionMismatchPolicy.DROP_AND_WAIT

    def test_each_config_has_its_own_strategy_default(self) -> None:
        assert StateConfig().sync_strategy == StateConfig().sync_strategy

    def test_frozen(self) -> None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            StateConfig().pull_timeout = 1.0  # type: ignore[misc]
