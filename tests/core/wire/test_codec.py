"""Tests for the wire codec (``dstate_core.wire._codec``)."""

from __future__ import annotations

import array
import hmac
import pickle
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dstate_core.model._errors import DStateError
from dstate_core.model._generation import Generation
from dstate_core.wire._codec import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MAX_NAME_LENGTH,
    PROTOCOL_VERSION,
    DecodeReason,
    WireCodec,
    WireDecodeError,
)
from dstate_core.wire._messages import (
    BatchedChangeFeed,
    ChangeNotification,
    DeltaRun,
    DeltaUpdate,
    FullSnapshot,
    Message,
    RequestSnapshot,
    SnapshotReply,
)

SECRET = b"cluster-secret"
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- strategies -------------------------------------------------------------

names = st.text(min_size=1, max_size=MAX_NAME_LENGTH)
uints = st.integers(min_value=0, max_value=2**63 - 1)
versions = st.integers(min_value=1, max_value=2**63 - 1)
generations = st.builds(Generation, uints, uints)
payloads = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([0, 1, 4096, 300_000]).map(lambda n: bytes([n % 251]) * n),
)


def _message_strategy(payload: st.SearchStrategy[bytes]) -> st.SearchStrategy[Message]:
    def snapshots(cls: type[Any]) -> st.SearchStrategy[Any]:
        return st.builds(
            cls,
            state_name=names,
            source_node=names,
            generation=generations,
            wire_version=versions,
            payload=payload,
            created_time=uints,
            modified_time=uints,
        )

    notifications = st.builds(
        ChangeNotification, state_name=names, source_node=names, generation=generations
    )
    return st.one_of(
        snapshots(FullSnapshot),
        snapshots(DeltaUpdate),
        st.builds(
            DeltaRun,
            state_name=names,
            source_node=names,
            generation=generations,
            wire_version=versions,
            created_time=uints,
            deltas=st.lists(st.tuples(payload, uints), min_size=1, max_size=20).map(tuple),
        ),
        st.builds(RequestSnapshot, state_name=names, source_node=names, request_id=uints),
        st.builds(SnapshotReply, request_id=uints, snapshot=snapshots(FullSnapshot)),
        st.builds(
            BatchedChangeFeed,
            source_node=names,
            notifications=st.lists(notifications, max_size=50).map(tuple),
        ),
    )


messages = _message_strategy(payloads)
small_messages = _message_strategy(st.binary(max_size=32))

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=4)
    ),
    max_leaves=12,
)

# --- fixed examples -----------------------------------------------------------

GEN = Generation(1_700_000_000_000, 42)
SNAP = FullSnapshot("counter", "node-a", GEN, 1, b"\x01\x02payload", 1_000, 2_000)
EXAMPLES: list[Message] = [
    SNAP,
    DeltaUpdate("counter", "node-a", GEN.next(), 2, b"delta", 1_000, 2_001),
    RequestSnapshot("counter", "node-b", 7),
    SnapshotReply(7, SNAP),
    BatchedChangeFeed(
        "node-a",
        (
            ChangeNotification("counter", "node-a", GEN),
            ChangeNotification("päärynä🍐", "node-a", Generation(0, 0)),
        ),
    ),
    BatchedChangeFeed("node-a", ()),
    DeltaRun("counter", "node-a", GEN.next(), 2, 1_000, ((b"d1", 2_001), (b"d2", 2_002))),
]
EXAMPLE_IDS = ["full", "delta", "pull", "reply", "feed", "empty-feed", "run"]


def sign(body: bytes, secret: bytes = SECRET) -> bytes:
    return body + hmac.digest(secret, body, "sha256")


def body_map(msg: Message) -> dict[str, Any]:
    """The unsigned msgpack map a message encodes to."""
    result: dict[str, Any] = msgpack.unpackb(WireCodec().encode(msg))
    return result


def pack(obj: object) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed


def reason_of(codec: WireCodec, data: object) -> DecodeReason:
    with pytest.raises(WireDecodeError) as info:
        codec.decode(data)  # type: ignore[arg-type]
    return info.value.reason


def decode_or_reject(codec: WireCodec, data: object) -> Message | None:
    """Decode ``data``; a rejection is fine, any other exception fails the test."""
    error: WireDecodeError | None = None
    try:
        msg = codec.decode(data)  # type: ignore[arg-type]
    except WireDecodeError as exc:
        error = exc
    if error is not None:
        assert isinstance(error.reason, DecodeReason)
        assert error.detail
        return None
    assert isinstance(
        msg,
        FullSnapshot | DeltaUpdate | DeltaRun | RequestSnapshot | SnapshotReply | BatchedChangeFeed,
    )
    return msg


# --- round trips --------------------------------------------------------------


class TestRoundTrip:
    @pytest.mark.parametrize("secret", [None, SECRET], ids=["plain", "signed"])
    @FAST
    @given(msg=messages)
    def test_every_message_type(self, secret: bytes | None, msg: Message) -> None:
        codec = WireCodec(secret)
        frame = codec.encode(msg)
        assert type(frame) is bytes
        decoded = codec.decode(frame)
        assert decoded == msg
        assert type(decoded) is type(msg)

    @pytest.mark.parametrize("msg", EXAMPLES, ids=EXAMPLE_IDS)
    @pytest.mark.parametrize("secret", [None, SECRET], ids=["plain", "signed"])
    def test_examples(self, secret: bytes | None, msg: Message) -> None:
        codec = WireCodec(secret)
        assert codec.decode(codec.encode(msg)) == msg

    @pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
    def test_accepts_bytes_like(self, wrap: Any) -> None:
        codec = WireCodec(SECRET)
        assert codec.decode(wrap(codec.encode(SNAP))) == SNAP

    def test_extreme_values(self) -> None:
        big = 2**64 - 1
        msg = FullSnapshot("x" * MAX_NAME_LENGTH, "n", Generation(big, big), big, b"", big, big)
        assert WireCodec().decode(WireCodec().encode(msg)) == msg

    def test_frame_layout(self) -> None:
        codec = WireCodec(SECRET)
        frame = codec.encode(RequestSnapshot("s", "n", 3))
        body = frame[:-32]
        assert frame[-32:] == hmac.digest(SECRET, body, "sha256")
        assert msgpack.unpackb(body) == {
            "v": PROTOCOL_VERSION,
            "t": "pull",
            "s": "s",
            "n": "n",
            "r": 3,
        }
        assert body_map(SNAP)["g"] == [GEN.incarnation, GEN.age]
        assert body_map(EXAMPLES[4])["f"][0] == ["counter", "node-a", [GEN.incarnation, GEN.age]]

    def test_decoded_payload_is_bytes(self) -> None:
        msg = WireCodec().decode(WireCodec().encode(SNAP))
        assert isinstance(msg, FullSnapshot)
        assert type(msg.payload) is bytes


# --- hostile input --------------------------------------------------------------


class TestGarbage:
    @pytest.mark.parametrize("secret", [None, SECRET], ids=["plain", "signed"])
    @FAST
    @given(data=st.binary(max_size=300))
    def test_arbitrary_bytes_only_raise_decode_error(
        self, secret: bytes | None, data: bytes
    ) -> None:
        decode_or_reject(WireCodec(secret), data)

    @FAST
    @given(value=msgpack_values)
    def test_arbitrary_msgpack_values(self, value: object) -> None:
        codec = WireCodec(SECRET)
        decode_or_reject(WireCodec(), pack(value))
        decode_or_reject(codec, sign(pack(value)))

    @FAST
    @given(
        msg=small_messages,
        data=st.data(),
    )
    def test_valid_maps_with_one_field_replaced(self, msg: Message, data: st.DataObject) -> None:
        d = body_map(msg)
        key = data.draw(st.sampled_from(sorted(d)))
        d[key] = data.draw(msgpack_values)
        result = decode_or_reject(WireCodec(SECRET), sign(pack(d)))
        if result is not None:
            assert body_map(result)[key] == d[key]

    @FAST
    @given(msg=small_messages, data=st.data())
    def test_missing_or_extra_keys_are_malformed(self, msg: Message, data: st.DataObject) -> None:
        d = body_map(msg)
        if data.draw(st.booleans()):
            del d[data.draw(st.sampled_from(sorted(k for k in d if k != "v")))]
        else:
            extra = data.draw(st.text(max_size=4).filter(lambda k: k not in d))
            d[extra] = data.draw(msgpack_values)
        assert reason_of(WireCodec(), pack(d)) is DecodeReason.MALFORMED

    @pytest.mark.parametrize(
        ("key", "value"),
        [
            ("s", ""),
            ("s", "x" * (MAX_NAME_LENGTH + 1)),
            ("s", b"bytes-name"),
            ("n", 5),
            ("g", [1]),
            ("g", [1, 2, 3]),
            ("g", [-1, 0]),
            ("g", [0, -1]),
            ("g", [True, 0]),
            ("g", [1.0, 0]),
            ("g", {"i": 1, "a": 2}),
            ("w", 0),
            ("w", True),
            ("w", 1.0),
            ("p", "text"),
            ("p", None),
            ("c", -1),
            ("m", "2024"),
            ("r", -1),
            ("r", False),
        ],
    )
    def test_invalid_fields_are_malformed(self, key: str, value: object) -> None:
        d = body_map(SnapshotReply(1, SNAP))
        d[key] = value
        with pytest.raises(WireDecodeError) as info:
            WireCodec().decode(pack(d))
        assert info.value.reason is DecodeReason.MALFORMED
        assert repr(key) in info.value.detail

    @pytest.mark.parametrize(
        "items",
        [
            "nope",
            [["s", "n"]],
            [["s", "n", [1, 2], "x"]],
            [["", "n", [1, 2]]],
            [["s", "n", [1, -2]]],
            [("s", "n", (1, 2)), {"s": 1}],
        ],
    )
    def test_invalid_notifications_are_malformed(self, items: object) -> None:
        d = {"v": 1, "t": "feed", "n": "node", "f": items}
        assert reason_of(WireCodec(), pack(d)) is DecodeReason.MALFORMED

    @pytest.mark.parametrize(
        "data",
        [
            b"",
            b"\xc1",  # never-used msgpack byte
            pack([1, "full"]),
            pack("full"),
            pack({1: 2}),  # non-str key
            pack({"v": 1, "t": "pull", "s": "s", "n": "n", "r": 1}) + b"\x00",  # extra data
            b"\x91" * 10_000,  # deep nesting
            msgpack.packb(msgpack.ExtType(1, b"x")),
            msgpack.packb({"v": 1, "t": "pull", "s": "s", "n": "n", "r": msgpack.ExtType(5, b"1")}),
            b"\x81\xa1f\xdd\xff\xff\xff\xff",  # tiny frame claiming a 4G-element array
            b"\x81\xa1p\xc6\xff\xff\xff\xff",  # tiny frame claiming a 4 GiB bin
            b"\xdf\xff\xff\xff\xff",  # map of 4G entries
            b"\x81\xa1s\xd9\x03\xe8" + b"a" * 10,  # str header claiming 1000 bytes
            b"\xa2\xff\xfe",  # invalid UTF-8
        ],
    )
    def test_malformed_frames(self, data: bytes) -> None:
        assert reason_of(WireCodec(), data) is DecodeReason.MALFORMED
        signed = reason_of(WireCodec(SECRET), sign(data))
        # A signed frame needs a non-empty body: a bare tag is unauthenticated.
        assert signed is (DecodeReason.MALFORMED if data else DecodeReason.UNAUTHENTICATED)

    def test_overlong_str_in_frame_is_malformed(self) -> None:
        d = body_map(SNAP)
        d["s"] = "x" * 5000
        assert reason_of(WireCodec(), pack(d)) is DecodeReason.MALFORMED

    @pytest.mark.parametrize(
        "data",
        [None, "text", 42, 1.5, [1, 2], {"v": 1}, object(), memoryview(array.array("q", [1, 2]))],
    )
    def test_non_bytes_input_is_malformed(self, data: object) -> None:
        assert reason_of(WireCodec(), data) is DecodeReason.MALFORMED

    def test_released_memoryview_is_malformed(self) -> None:
        view = memoryview(WireCodec().encode(SNAP))
        view.release()
        assert reason_of(WireCodec(), view) is DecodeReason.MALFORMED


class TestTruncationAndTampering:
    @pytest.mark.parametrize("msg", EXAMPLES, ids=EXAMPLE_IDS)
    def test_every_truncation_is_rejected(self, msg: Message) -> None:
        plain, signed = WireCodec(), WireCodec(SECRET)
        frame = plain.encode(msg)
        for cut in range(len(frame)):
            assert reason_of(plain, frame[:cut]) is DecodeReason.MALFORMED
        frame = signed.encode(msg)
        for cut in range(len(frame)):
            assert reason_of(signed, frame[:cut]) is DecodeReason.UNAUTHENTICATED

    @FEW
    @given(msg=small_messages)
    def test_every_truncation_of_generated_frames(self, msg: Message) -> None:
        codec = WireCodec()
        frame = codec.encode(msg)
        for cut in range(0, len(frame), max(1, len(frame) // 64)):
            assert reason_of(codec, frame[:cut]) is DecodeReason.MALFORMED

    @pytest.mark.parametrize("msg", EXAMPLES, ids=EXAMPLE_IDS)
    @pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
    def test_every_byte_flip_of_a_signed_frame_is_unauthenticated(
        self, msg: Message, mask: int
    ) -> None:
        codec = WireCodec(SECRET)
        frame = codec.encode(msg)
        for i in range(len(frame)):
            tampered = bytearray(frame)
            tampered[i] ^= mask
            assert reason_of(codec, bytes(tampered)) is DecodeReason.UNAUTHENTICATED

    @pytest.mark.parametrize("msg", EXAMPLES, ids=EXAMPLE_IDS)
    def test_single_byte_flips_of_plain_frames_never_escape(self, msg: Message) -> None:
        codec = WireCodec()
        frame = codec.encode(msg)
        for i in range(len(frame)):
            for mask in (0x01, 0x10, 0x80, 0xFF):
                tampered = bytearray(frame)
                tampered[i] ^= mask
                decode_or_reject(codec, bytes(tampered))

    def test_wrong_secret_is_unauthenticated(self) -> None:
        frame = WireCodec(b"other-secret").encode(SNAP)
        assert reason_of(WireCodec(SECRET), frame) is DecodeReason.UNAUTHENTICATED

    def test_unsigned_frame_to_secret_codec_is_unauthenticated(self) -> None:
        assert reason_of(WireCodec(SECRET), WireCodec().encode(SNAP)) is (
            DecodeReason.UNAUTHENTICATED
        )
        short = WireCodec().encode(RequestSnapshot("s", "n", 1))
        assert len(short) <= 32
        assert reason_of(WireCodec(SECRET), short) is DecodeReason.UNAUTHENTICATED

    def test_signed_frame_to_plain_codec_is_malformed(self) -> None:
        assert reason_of(WireCodec(), WireCodec(SECRET).encode(SNAP)) is DecodeReason.MALFORMED

    def test_tag_alone_is_unauthenticated(self) -> None:
        assert reason_of(WireCodec(SECRET), hmac.digest(SECRET, b"", "sha256")) is (
            DecodeReason.UNAUTHENTICATED
        )


# --- size cap -----------------------------------------------------------------


class TestSizeCap:
    def test_oversized_is_rejected_before_parsing(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def explode(*args: object, **kwargs: object) -> object:
            raise AssertionError("an oversized frame must not be parsed")

        monkeypatch.setattr(msgpack, "unpackb", explode)
        codec = WireCodec(max_message_bytes=100)
        assert reason_of(codec, b"\xc1" * 101) is DecodeReason.OVERSIZED
        assert reason_of(codec, bytearray(101)) is DecodeReason.OVERSIZED
        assert reason_of(codec, memoryview(b"\x00" * 101)) is DecodeReason.OVERSIZED
        assert reason_of(WireCodec(SECRET, 100), b"\x00" * 101) is DecodeReason.OVERSIZED

    def test_cap_counts_the_whole_signed_frame(self) -> None:
        frame = WireCodec(SECRET).encode(SNAP)
        assert WireCodec(SECRET, len(frame)).decode(frame) == SNAP
        assert reason_of(WireCodec(SECRET, len(frame) - 1), frame) is DecodeReason.OVERSIZED

    def test_encode_refuses_frames_over_the_cap(self) -> None:
        frame = WireCodec().encode(SNAP)
        assert WireCodec(max_message_bytes=len(frame)).encode(SNAP) == frame
        with pytest.raises(ValueError, match=r"FullSnapshot of state 'counter'.*over the"):
            WireCodec(max_message_bytes=len(frame) - 1).encode(SNAP)
        with pytest.raises(ValueError, match=str(len(frame) + 32)):
            WireCodec(SECRET, len(frame)).encode(SNAP)

    def test_encode_names_the_message_when_too_big(self) -> None:
        notes = tuple(ChangeNotification(f"s{i}", "n", GEN) for i in range(50))
        with pytest.raises(ValueError, match=r"cannot send BatchedChangeFeed: it encodes to"):
            WireCodec(max_message_bytes=100).encode(BatchedChangeFeed("n", notes))

    def test_encode_refuses_huge_payload_before_packing(self) -> None:
        big = FullSnapshot("s", "n", GEN, 1, b"\x00" * 2000, 0, 0)
        with pytest.raises(ValueError, match="payload alone is 2000 bytes"):
            WireCodec(max_message_bytes=1000).encode(SnapshotReply(1, big))

    def test_default_cap(self) -> None:
        assert WireCodec().max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES == 4 * 1024 * 1024


# --- version and type ---------------------------------------------------------


class TestVersionAndType:
    @pytest.mark.parametrize("version", [0, 2, 99, 2**64 - 1])
    def test_other_protocol_version(self, version: int) -> None:
        d = body_map(SNAP)
        d["v"] = version
        assert reason_of(WireCodec(), pack(d)) is DecodeReason.UNKNOWN_PROTOCOL_VERSION

    def test_version_is_checked_before_type_and_fields(self) -> None:
        frame = pack({"v": 2, "t": "from-the-future", "whatever": [1, 2, 3]})
        assert reason_of(WireCodec(), frame) is DecodeReason.UNKNOWN_PROTOCOL_VERSION
        assert reason_of(WireCodec(SECRET), sign(frame)) is DecodeReason.UNKNOWN_PROTOCOL_VERSION

    @pytest.mark.parametrize("version", [True, "1", 1.0, None, [1]])
    def test_non_int_version_is_malformed(self, version: object) -> None:
        d = body_map(SNAP)
        d["v"] = version
        assert reason_of(WireCodec(), pack(d)) is DecodeReason.MALFORMED

    def test_missing_version_is_malformed(self) -> None:
        d = body_map(SNAP)
        del d["v"]
        assert reason_of(WireCodec(), pack(d)) is DecodeReason.MALFORMED

    @pytest.mark.parametrize("kind", ["gossip", "", "FULL", "x" * 1000])
    def test_unknown_type(self, kind: str) -> None:
        d = body_map(SNAP)
        d["t"] = kind
        with pytest.raises(WireDecodeError) as info:
            WireCodec().decode(pack(d))
        assert info.value.reason is DecodeReason.UNKNOWN_TYPE
        assert len(info.value.detail) < 200

    @pytest.mark.parametrize("kind", [1, None, b"full", ["full"]])
    def test_non_str_type_is_malformed(self, kind: object) -> None:
        d = body_map(SNAP)
        d["t"] = kind
        assert reason_of(WireCodec(), pack(d)) is DecodeReason.MALFORMED

    def test_missing_type_is_malformed(self) -> None:
        assert reason_of(WireCodec(), pack({"v": 1})) is DecodeReason.MALFORMED


# --- the codec's own API --------------------------------------------------------


class TestCodecApi:
    def test_authenticated(self) -> None:
        assert not WireCodec().authenticated
        assert WireCodec(SECRET).authenticated
        assert WireCodec(bytearray(b"k")).authenticated  # type: ignore[arg-type]

    def test_repr_hides_secret(self) -> None:
        assert "secret" not in repr(WireCodec(b"secret-value")).replace("authenticated", "")
        assert "secret-value" not in repr(WireCodec(b"secret-value"))

    @pytest.mark.parametrize(
        ("kwargs", "error"),
        [
            ({"secret": "text"}, TypeError),
            ({"secret": 123}, TypeError),
            ({"secret": b""}, ValueError),
            ({"max_message_bytes": 0}, ValueError),
            ({"max_message_bytes": -5}, ValueError),
            ({"max_message_bytes": True}, TypeError),
            ({"max_message_bytes": 1.5}, TypeError),
            ({"max_message_bytes": "100"}, TypeError),
            ({"max_message_bytes": None}, TypeError),
        ],
    )
    def test_constructor_validation(self, kwargs: dict[str, Any], error: type[Exception]) -> None:
        # The message names the option as users pass it (to DStateNode), not a class.
        option = "cluster_secret" if "secret" in kwargs else "max_message_bytes"
        with pytest.raises(error, match=option) as raised:
            WireCodec(**kwargs)
        assert "WireCodec" not in str(raised.value)

    @pytest.mark.parametrize("msg", [None, b"bytes", {"v": 1}, ChangeNotification("s", "n", GEN)])
    def test_encode_rejects_non_messages(self, msg: object) -> None:
        with pytest.raises(TypeError, match="cannot encode"):
            WireCodec().encode(msg)  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("msg", "field"),
        [
            (RequestSnapshot("", "n", 1), "state_name"),
            (RequestSnapshot("s", "x" * (MAX_NAME_LENGTH + 1), 1), "source_node"),
            (RequestSnapshot("s", "n", -1), "request_id"),
            (RequestSnapshot("s", "n", True), "request_id"),
            (RequestSnapshot("s", "n", 2**64), "request_id"),
            (FullSnapshot("s", "n", GEN, 0, b"", 0, 0), "wire_version"),
            (FullSnapshot("s", "n", GEN, 1, "text", 0, 0), "payload"),  # type: ignore[arg-type]
            (DeltaUpdate("s", "n", GEN, 1, b"", -1, 0), "created_time"),
            (DeltaUpdate("s", "n", (1, 2), 1, b"", 0, 0), "generation"),  # type: ignore[arg-type]
            (SnapshotReply(1, DeltaUpdate("s", "n", GEN, 1, b"", 0, 0)), "snapshot"),  # type: ignore[arg-type]
            (BatchedChangeFeed("n", ("x",)), "notifications"),  # type: ignore[arg-type]
            (BatchedChangeFeed("n", (ChangeNotification("", "n", GEN),)), "state_name"),
            (BatchedChangeFeed("", ()), "source_node"),
            (BatchedChangeFeed("n", None), "notifications"),  # type: ignore[arg-type]
        ],
    )
    def test_encode_rejects_invalid_fields(self, msg: Message, field: str) -> None:
        with pytest.raises(ValueError, match=field):
            WireCodec().encode(msg)

    def test_encode_rejects_unencodable_text(self) -> None:
        with pytest.raises(ValueError, match="cannot encode RequestSnapshot"):
            WireCodec().encode(RequestSnapshot("\ud800", "n", 1))

    def test_decode_error_is_a_dstate_error_and_pickles(self) -> None:
        with pytest.raises(WireDecodeError) as info:
            WireCodec().decode(b"\xc1")
        err = info.value
        assert isinstance(err, DStateError)
        assert "malformed" in str(err)
        copy = pickle.loads(pickle.dumps(err))
        assert (copy.reason, copy.detail, str(copy)) == (err.reason, err.detail, str(err))

    def test_reason_values(self) -> None:
        assert {r.value for r in DecodeReason} == {
            "malformed",
            "oversized",
            "unknown_type",
            "unknown_protocol_version",
            "unauthenticated",
        }


# --- delta runs -----------------------------------------------------------------

RUN = EXAMPLES[EXAMPLE_IDS.index("run")]


class TestDeltaRun:
    def test_stands_for_its_updates_in_order(self) -> None:
        assert isinstance(RUN, DeltaRun)
        assert RUN.updates() == [
            DeltaUpdate("counter", "node-a", GEN.next(), 2, b"d1", 1_000, 2_001),
            DeltaUpdate("counter", "node-a", GEN.next().next(), 2, b"d2", 1_000, 2_002),
        ]

    @pytest.mark.parametrize(
        "deltas",
        [
            [],
            "d",
            [[b"p"]],
            [[b"p", 1, 2]],
            [["p", 1]],
            [[b"p", -1]],
            [[b"p", True]],
            [[b"p", 1], b"p"],
            {"p": 1},
        ],
        ids=repr,
    )
    def test_malformed_deltas(self, deltas: object) -> None:
        d = body_map(RUN)
        d["d"] = deltas
        with pytest.raises(WireDecodeError) as info:
            WireCodec().decode(pack(d))
        assert info.value.reason is DecodeReason.MALFORMED
        assert "deltas" in info.value.detail or "'d'" in info.value.detail

    def test_a_run_past_the_last_age_is_malformed(self) -> None:
        d = body_map(RUN)
        d["g"] = [1, 2**64 - 1]
        assert reason_of(WireCodec(), pack(d)) is DecodeReason.MALFORMED

    def test_a_run_needs_exactly_its_keys(self) -> None:
        d = body_map(RUN)
        d["p"] = b"x"
        assert reason_of(WireCodec(), pack(d)) is DecodeReason.MALFORMED

    @pytest.mark.parametrize(
        ("deltas", "match"),
        [
            ((), "non-empty"),
            (((b"p",),), r"\(payload, modified_time\)"),
            ((("p", 1),), "payload must be bytes"),
            (((b"p", -1),), "modified_time"),
        ],
    )
    def test_encode_says_what_is_wrong(self, deltas: Any, match: str) -> None:
        run = DeltaRun("s", "n", GEN, 1, 0, deltas)
        with pytest.raises(ValueError, match=match):
            WireCodec().encode(run)

    def test_encode_refuses_a_run_past_the_last_age(self) -> None:
        run = DeltaRun("s", "n", Generation(1, 2**64 - 1), 1, 0, ((b"a", 0), (b"b", 0)))
        with pytest.raises(ValueError, match="last age"):
            WireCodec().encode(run)

    def test_the_size_cap_counts_every_delta(self) -> None:
        run = DeltaRun("s", "n", GEN, 1, 0, tuple((b"\x00" * 400, 0) for _ in range(3)))
        with pytest.raises(ValueError, match="over the 1000-byte"):
            WireCodec(max_message_bytes=1000).encode(run)
