"""Tests for the network frame codec (``dstate_core.net._messages``)."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dstate_core.net._messages import (
    MAX_ADDRESS,
    MAX_GOSSIP,
    MAX_NODE_ID,
    MEMBERSHIP,
    PARCEL,
    Gossip,
    MemberMsg,
    MsgKind,
    Peer,
    PeerStatus,
    decode_frame,
    encode_member_msg,
    encode_parcel,
)
from dstate_core.runtime._parcels import Parcel

#: Every message decode_frame rejects a frame with.
REJECTED = r"^(bad |unknown |undecodable frame|a frame must)"
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

A = Peer("a", "000000000001", 0, "10.0.0.1:7100")
B = Peer("b", "000000000002", 3, "[::1]:7101")

# --- strategies -------------------------------------------------------------------

chars = st.characters(blacklist_categories=("Cs",))  # UTF-8 cannot carry lone surrogates
texts = st.text(chars, min_size=1, max_size=20)
addresses = st.builds(
    lambda host, port: f"{host}:{port}",
    st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters=":"),
        min_size=1,
        max_size=30,
    ),
    st.integers(1, 65535),
)
peers = st.builds(Peer, texts, texts, st.integers(0, 2**53 - 1), addresses)
gossips = st.builds(Gossip, st.sampled_from(sorted(PeerStatus.ALL)), peers)
member_msgs = st.builds(
    MemberMsg,
    kind=st.sampled_from(sorted(MsgKind.ALL)),
    src=peers,
    seq=st.integers(0, 2**53 - 1),
    target=st.none() | peers,
    table=st.lists(peers, max_size=5).map(tuple),
    gossip=st.lists(gossips, max_size=MAX_GOSSIP).map(tuple),
    reason=st.text(chars, max_size=50),
    reply=st.booleans(),
)
parcels = st.builds(
    Parcel,
    texts,
    texts,
    texts,
    st.text(chars, min_size=1, max_size=16),
    st.text(chars, max_size=20),
    st.binary(max_size=100),
    st.text(chars, max_size=20),
)


def frame(*items: Any) -> bytes:
    return msgpack.packb(list(items), use_bin_type=True)


def good_items() -> list[Any]:
    """The msgpack items of a valid membership frame, to spoil one at a time."""
    return msgpack.unpackb(
        encode_member_msg(MemberMsg(MsgKind.PING, A, 5, B, (A,), (Gossip("alive", B),))),
        raw=False,
    )


# --- round trips --------------------------------------------------------------------


class TestRoundTrip:
    @FAST
    @given(member_msgs)
    def test_member_msg(self, msg: MemberMsg) -> None:
        assert decode_frame(encode_member_msg(msg)) == msg

    @FAST
    @given(parcels)
    def test_parcel(self, parcel: Parcel) -> None:
        assert decode_frame(encode_parcel(parcel)) == parcel

    def test_frames_say_what_they_carry(self) -> None:
        msg = MemberMsg(MsgKind.LEAVE, A)
        parcel = Parcel("a", "i", "b", "send", "x", b"")
        assert msgpack.unpackb(encode_member_msg(msg))[0] == MEMBERSHIP
        assert msgpack.unpackb(encode_parcel(parcel))[0] == PARCEL

    def test_the_good_items_decode(self) -> None:
        assert isinstance(decode_frame(frame(*good_items())), MemberMsg)


# --- garbage --------------------------------------------------------------------------


class TestGarbage:
    """Anything but a well-formed frame is a ValueError, and nothing else."""

    @FAST
    @given(st.binary(max_size=200))
    def test_random_bytes(self, data: bytes) -> None:
        with contextlib.suppress(ValueError):
            decode_frame(data)

    @FAST
    @given(member_msgs, st.data())
    def test_truncated_frames(self, msg: MemberMsg, data: st.DataObject) -> None:
        raw = encode_member_msg(msg)
        cut = data.draw(st.integers(0, len(raw) - 1))
        with pytest.raises(ValueError, match=REJECTED):
            decode_frame(raw[:cut])

    @FAST
    @given(member_msgs, st.data())
    def test_flipped_bytes(self, msg: MemberMsg, data: st.DataObject) -> None:
        raw = bytearray(encode_member_msg(msg))
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] ^= data.draw(st.integers(1, 255))
        try:
            decoded = decode_frame(bytes(raw))
        except ValueError:
            return
        assert isinstance(decoded, MemberMsg | Parcel)

    @FAST
    @given(
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers(-(2**63), 2**64 - 1)
            | st.floats()
            | st.text(chars, max_size=5)
            | st.binary(max_size=5),
            lambda inner: (
                st.lists(inner, max_size=9) | st.dictionaries(st.text(chars, max_size=3), inner)
            ),
            max_leaves=30,
        )
    )
    def test_random_msgpack_values(self, value: Any) -> None:
        with contextlib.suppress(ValueError):
            decode_frame(msgpack.packb(value, use_bin_type=True))

    @pytest.mark.parametrize(
        ("index", "value"),
        [
            (0, 3),  # unknown frame type
            (1, "shout"),  # unknown kind
            (2, ["a", "i", 0]),  # peer of 3 items
            (2, ["", "i", 0, "h:1"]),  # empty node id
            (2, ["a" * (MAX_NODE_ID + 1), "i", 0, "h:1"]),
            (2, ["a", "i", -1, "h:1"]),  # negative version
            (2, ["a", "i", True, "h:1"]),  # a bool is not a version
            (2, ["a", "i", 2**53, "h:1"]),
            (2, ["a", "i", 0, "nohost"]),
            (2, ["a", "i", 0, ":7100"]),
            (2, ["a", "i", 0, "h:0"]),
            (2, ["a", "i", 0, "h:65536"]),
            (2, ["a", "i", 0, "h:x1"]),
            (2, ["a", "i", 0, "h" * MAX_ADDRESS + ":1"]),
            (3, -1),  # negative seq
            (3, False),
            (3, 1.5),
            (4, "b"),  # a target that is not a peer
            (5, "table"),
            (5, [["a", "i", 0]]),
            (6, [["zombie", "a", "i", 0, "h:1"]]),  # unknown status
            (6, [["alive", "a", "i", 0]]),
            (6, [["alive", "a", "i", 0, "h:1"]] * (MAX_GOSSIP + 1)),
            (7, None),  # reason
            (7, "r" * 1001),
            (8, 1),  # reply must be a bool
        ],
    )
    def test_each_bad_field(self, index: int, value: Any) -> None:
        items = good_items()
        items[index] = value
        with pytest.raises(ValueError, match=REJECTED):
            decode_frame(frame(*items))

    @pytest.mark.parametrize(
        "data",
        [
            b"",
            b"\xc1",  # never used in msgpack
            frame(),  # an empty array
            msgpack.packb({"kind": "ping"}),
            msgpack.packb(1),
            frame(MEMBERSHIP, "ping"),  # too short
            frame(*good_items(), None),  # too long
            frame(PARCEL, "a", "i", "b", "send", "x", "not bytes", ""),
            frame(PARCEL, "a", "i", "b", "send", "x", b""),
            msgpack.packb({1: 2}, use_bin_type=True) + b"trailing",
        ],
    )
    def test_malformed_frames(self, data: bytes) -> None:
        with pytest.raises(ValueError, match=REJECTED):
            decode_frame(data)

    @pytest.mark.parametrize(
        "items",
        [
            [True, *good_items()[1:]],  # a bool that equals MEMBERSHIP
            [MEMBERSHIP, ["ping"], *good_items()[2:]],  # an unhashable kind
            [*good_items()[:6], [[["alive"], "a", "i", 0, "h:1"]], *good_items()[7:]],
        ],
    )
    def test_wrong_types_where_names_belong(self, items: list[Any]) -> None:
        with pytest.raises(ValueError, match=REJECTED):
            decode_frame(frame(*items))
