"""InboundRouter: decode once, route per state, drop and count garbage."""

from __future__ import annotations

import logging

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dstate_core.engine._events import ChangeAnnounced, MessageReceived
from dstate_core.model._generation import Generation
from dstate_core.shell._inbox import InboundRouter
from dstate_core.testing import TestClock
from dstate_core.wire._codec import WireCodec
from dstate_core.wire._messages import (
    BatchedChangeFeed,
    ChangeNotification,
    DeltaUpdate,
    FullSnapshot,
    RequestSnapshot,
    SnapshotReply,
)

G = Generation(5, 1)
SNAP = FullSnapshot("s", "b", G, 1, b"\x80", 0, 0)


def make_router(secret: bytes | None = None, max_bytes: int = 4096) -> InboundRouter:
    return InboundRouter("a", WireCodec(secret, max_message_bytes=max_bytes), TestClock())


class TestRouting:
    @pytest.mark.parametrize(
        "message",
        [
            SNAP,
            DeltaUpdate("s", "b", G, 1, b"\x80", 0, 0),
            RequestSnapshot("s", "b", 3),
            SnapshotReply(3, SNAP),
        ],
    )
    def test_messages_go_to_their_state(self, message: object) -> None:
        router = make_router()
        data = WireCodec().encode(message)  # type: ignore[arg-type]
        assert router.route(data, {"s", "t"}) == [("s", MessageReceived(message))]  # type: ignore[arg-type]
        assert router.drops == {}
        assert router.bytes_received == len(data)

    def test_a_feed_batch_is_split_per_registered_state(self) -> None:
        router = make_router()
        notes = (
            ChangeNotification("s", "b", G),
            ChangeNotification("t", "b", G),
            ChangeNotification("unregistered", "b", G),
        )
        data = WireCodec().encode(BatchedChangeFeed("b", notes))
        routed = router.route(data, {"s", "t"})
        assert routed == [("s", ChangeAnnounced(notes[0])), ("t", ChangeAnnounced(notes[1]))]
        assert router.drops == {}

    def test_a_feed_announcing_another_nodes_change_is_forged(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        router = make_router()
        notes = (ChangeNotification("s", "c", G), ChangeNotification("s", "b", G))
        data = WireCodec().encode(BatchedChangeFeed("b", notes))
        with caplog.at_level(logging.WARNING, "dstate.wire"):
            routed = router.route(data, {"s"})
        assert routed == [("s", ChangeAnnounced(notes[1]))]
        assert router.drops == {"forged": 1}
        assert any("'b'" in r.getMessage() and "forged" in r.getMessage() for r in caplog.records)

    def test_unregistered_state_is_dropped(self) -> None:
        router = make_router()
        data = WireCodec().encode(SNAP)
        assert router.route(data, {"t"}) == []
        assert router.drops == {"unknown_state": 1}


class TestGarbage:
    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            (b"", "malformed"),
            (b"\xc1", "malformed"),
            (WireCodec().encode(SNAP)[:-3], "malformed"),
            (msgpack.packb([1, 2]), "malformed"),
            (msgpack.packb({"v": 99, "t": "full"}), "unknown_protocol_version"),
            (msgpack.packb({"v": 1, "t": "gossip"}), "unknown_type"),
            (b"\x00" * 5000, "oversized"),
            ("not bytes", "malformed"),
            (None, "malformed"),
        ],
    )
    def test_dropped_and_counted(self, data: object, reason: str) -> None:
        router = make_router()
        assert router.route(data, {"s"}) == []
        assert router.drops == {reason: 1}

    def test_drop_is_logged_once_per_reason_and_sender(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        router = make_router()
        with caplog.at_level(logging.WARNING, "dstate.wire"):
            for _ in range(5):
                router.route(b"\xc1", {"s"})
        assert router.drops == {"malformed": 5}
        logged = [r for r in caplog.records if r.name == "dstate.wire"]
        assert len(logged) == 1
        assert "malformed" in logged[0].getMessage()

    def test_drops_name_the_sender_the_frame_claims_and_are_limited_per_sender(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        router = make_router(secret=b"k" * 16)
        from_b = WireCodec().encode(SNAP)  # b has no secret
        from_c = WireCodec(b"wrong").encode(FullSnapshot("s", "c", G, 1, b"\x80", 0, 0))
        with caplog.at_level(logging.WARNING, "dstate.wire"):
            for _ in range(3):
                router.route(from_b, {"s"})
                router.route(from_c, {"s"})
                router.route(b"\xc1", {"s"})
        assert router.drops == {"unauthenticated": 9}
        logged = [r.getMessage() for r in caplog.records if r.name == "dstate.wire"]
        assert len(logged) == 3, logged
        assert any("from 'b' (unverified) (unauthenticated)" in m for m in logged), logged
        assert any("from 'c' (unverified) (unauthenticated)" in m for m in logged), logged
        assert any("from an unidentified sender (unauthenticated)" in m for m in logged), logged

    @pytest.mark.parametrize(
        ("data", "claimed"),
        [
            (msgpack.packb({"v": 99, "t": "full", "n": "b"}), "b"),
            (msgpack.packb({"v": 1, "t": "gossip", "n": "b"}), "b"),
            (msgpack.packb({"v": 1, "t": "full", "n": "b"}), "b"),  # fields missing
            (msgpack.packb({"v": 1, "t": "full", "n": 7}), None),
            (msgpack.packb({"v": 1, "t": "full", "n": "x" * 300}), None),
            (WireCodec().encode(SNAP)[:-3], None),
        ],
    )
    def test_the_claimed_sender_is_read_from_what_parses(
        self, data: bytes, claimed: str | None, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.WARNING, "dstate.wire"):
            make_router().route(data, {"s"})
        [message] = [r.getMessage() for r in caplog.records if r.name == "dstate.wire"]
        expected = "an unidentified sender" if claimed is None else f"{claimed!r} (unverified)"
        assert f"from {expected} (" in message, message

    def test_unsigned_and_forged_frames_are_unauthenticated(self) -> None:
        router = make_router(secret=b"k" * 16)
        unsigned = WireCodec().encode(SNAP)
        forged = WireCodec(b"other-secret").encode(SNAP)
        good = WireCodec(b"k" * 16).encode(SNAP)
        assert router.route(unsigned, {"s"}) == []
        assert router.route(forged, {"s"}) == []
        assert router.drops == {"unauthenticated": 2}
        assert router.route(good, {"s"}) == [("s", MessageReceived(SNAP))]

    def test_tampered_frame_is_unauthenticated(self) -> None:
        router = make_router(secret=b"k" * 16)
        good = bytearray(WireCodec(b"k" * 16).encode(SNAP))
        good[5] ^= 0x01
        assert router.route(bytes(good), {"s"}) == []
        assert router.drops == {"unauthenticated": 1}

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=300))
    def test_random_bytes_never_raise(self, data: bytes) -> None:
        router = make_router()
        routed = router.route(data, {"s"})
        assert all(state == "s" for state, _ in routed)
        assert router.bytes_received == len(data)

    @settings(max_examples=100, deadline=None)
    @given(st.data())
    def test_corrupted_valid_frames_never_raise(self, data: st.DataObject) -> None:
        router = make_router()
        frame = bytearray(WireCodec().encode(SnapshotReply(3, SNAP)))
        index = data.draw(st.integers(0, len(frame) - 1))
        frame[index] = data.draw(st.integers(0, 255))
        cut = data.draw(st.integers(0, len(frame)))
        routed = router.route(bytes(frame[:cut]), {"s"})
        for state, event in routed:
            assert state == "s"
            assert isinstance(event, MessageReceived)
