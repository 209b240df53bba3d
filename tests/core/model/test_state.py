"""The state model: class checks, registration checks, (de)serializers, storage."""

from __future__ import annotations

from typing import Any, ClassVar

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from dstate_core import (
    DeltaDistributedState,
    DeserializeError,
    DistributedState,
    NewerRecordError,
    PersistError,
    SyncUrgency,
)
from dstate_core.model._msgpack import pack, unpack
from dstate_core.model._state import validate_state_type
from dstate_core.testing._states import (
    TestDeltaChange,
    TestDeltaDelta,
    TestDeltaState,
    TestDeltaView,
    TestState,
    UrgentDeltaState,
)

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
test_states = st.builds(
    TestState,
    value=INT64,
    label=st.text(),
    items=st.dictionaries(st.text(), INT64, max_size=8),
)


class _View(BaseModel):
    n: int = 0


class _Delta(BaseModel):
    n: int = 0


class TestClassCreation:
    @pytest.mark.parametrize("name", ["", "   ", 5, None, b"bytes"])
    def test_bad_name_is_a_type_error(self, name: object) -> None:
        with pytest.raises(TypeError, match="NAME"):

            class Bad(DistributedState):
                NAME = name  # type: ignore[assignment]

    def test_missing_name_is_allowed_until_registration(self) -> None:
        class Abstract(DistributedState):
            value: int = 0

        with pytest.raises(TypeError, match="NAME"):
            validate_state_type(Abstract)

    @pytest.mark.parametrize("attr", ["WIRE_VERSION", "STORAGE_VERSION"])
    @pytest.mark.parametrize("version", [0, -1, True, False, 1.0, "1", None])
    def test_bad_version_is_a_value_error(self, attr: str, version: object) -> None:
        with pytest.raises(ValueError, match=attr):
            type(
                "Bad",
                (DistributedState,),
                {"__module__": __name__, "__annotations__": {}, "NAME": "bad", attr: version},
            )

    def test_bad_version_on_a_delta_state(self) -> None:
        with pytest.raises(ValueError, match="WIRE_VERSION"):

            class Bad(TestDeltaState):
                NAME = "bad_delta"
                WIRE_VERSION = 0

    def test_versions_may_be_assigned_with_or_without_annotation(self) -> None:
        class Annotated(DistributedState):
            NAME: ClassVar[str] = "annotated"
            WIRE_VERSION: ClassVar[int] = 3
            STORAGE_VERSION: ClassVar[int] = 2

        class Plain(DistributedState):
            NAME = "plain"
            WIRE_VERSION = 3

        for cls in (Annotated, Plain):
            validate_state_type(cls)
            assert cls.WIRE_VERSION == 3
            assert "NAME" not in cls.model_fields
            assert "WIRE_VERSION" not in cls.model_fields


def _delta_class(name: str, **attrs: Any) -> type[DeltaDistributedState]:
    """A delta state class built from ``attrs`` (hooks and models included only if given)."""
    body: dict[str, Any] = {"__module__": __name__, "__annotations__": {}, "NAME": name, **attrs}
    return type(name, (DeltaDistributedState,), body)


def _hooks() -> dict[str, Any]:
    return {
        "project_view": lambda self: _View(),
        "project_delta": classmethod(lambda cls, change: _Delta()),
        "apply_delta": classmethod(lambda cls, view, delta: view),
    }


class TestValidateStateType:
    @pytest.mark.parametrize("state_type", [TestState, TestDeltaState, UrgentDeltaState])
    def test_sample_states_are_valid(self, state_type: type[DistributedState]) -> None:
        validate_state_type(state_type)

    @pytest.mark.parametrize("thing", [TestState(), "test_state", 42, int, BaseModel, None])
    def test_non_state_types_are_rejected(self, thing: object) -> None:
        with pytest.raises(TypeError, match="register"):
            validate_state_type(thing)

    @pytest.mark.parametrize("base", [DistributedState, DeltaDistributedState])
    def test_base_classes_are_rejected(self, base: type) -> None:
        with pytest.raises(TypeError, match="subclass"):
            validate_state_type(base)

    def test_complete_delta_state_is_valid(self) -> None:
        validate_state_type(_delta_class("complete", View=_View, Delta=_Delta, **_hooks()))

    @pytest.mark.parametrize("missing", ["View", "Delta"])
    def test_delta_state_without_model_is_rejected(self, missing: str) -> None:
        attrs = {"View": _View, "Delta": _Delta, **_hooks()}
        del attrs[missing]
        with pytest.raises(TypeError, match=missing):
            validate_state_type(_delta_class("no_model", **attrs))

    @pytest.mark.parametrize("bad", [dict, _View(), "View", int])
    def test_delta_state_with_non_model_view_is_rejected(self, bad: object) -> None:
        cls = _delta_class("bad_view", View=bad, Delta=_Delta, **_hooks())
        with pytest.raises(TypeError, match="pydantic model"):
            validate_state_type(cls)

    @pytest.mark.parametrize("hook", ["project_view", "project_delta", "apply_delta"])
    def test_delta_state_without_hook_is_rejected(self, hook: str) -> None:
        attrs = {"View": _View, "Delta": _Delta, **_hooks()}
        del attrs[hook]
        with pytest.raises(TypeError, match=hook):
            validate_state_type(_delta_class("no_hook", **attrs))

    def test_hooks_inherited_from_a_user_class_count(self) -> None:
        class Sub(TestDeltaState):
            NAME = "sub_delta"

        validate_state_type(Sub)

    def test_version_broken_after_creation_is_caught_at_registration(self) -> None:
        class Later(DistributedState):
            NAME = "later"

        Later.STORAGE_VERSION = -3
        with pytest.raises(ValueError, match="STORAGE_VERSION"):
            validate_state_type(Later)


class TestStateSerializers:
    @given(test_states)
    def test_round_trip(self, state: TestState) -> None:
        data = state.serialize_state()
        assert isinstance(data, bytes)
        assert TestState.deserialize_state(data, TestState.WIRE_VERSION) == state

    @given(st.integers().filter(lambda v: v != 1))
    def test_unknown_wire_version(self, version: int) -> None:
        data = TestState(value=1).serialize_state()
        with pytest.raises(DeserializeError) as info:
            TestState.deserialize_state(data, version)
        assert info.value.unknown_version == version

    @pytest.mark.parametrize(
        "data",
        [
            b"",
            b"\xc1",  # never used in msgpack
            b"\x93\x01\x02\x03",  # a list, not a map
            b"\xa3abc",  # a str
            pack({"value": "not an int"}),
            pack({"items": {"a": "b"}}),
            pack({"value": 1})[:-1],  # truncated
            pack({"value": 1}) + b"\x00",  # trailing data
            b"\x81\xa5label\xa2\xff\xfe",  # invalid utf-8
        ],
    )
    def test_garbage_bytes(self, data: bytes) -> None:
        with pytest.raises(DeserializeError) as info:
            TestState.deserialize_state(data, TestState.WIRE_VERSION)
        assert info.value.unknown_version is None

    @given(st.binary(max_size=64))
    def test_random_bytes_decode_or_raise_deserialize_error(self, data: bytes) -> None:
        result: object
        try:
            result = TestState.deserialize_state(data, TestState.WIRE_VERSION)
        except DeserializeError as exc:
            result = exc
        if isinstance(result, DeserializeError):
            assert result.unknown_version is None
        else:
            assert isinstance(result, TestState)

    def test_override_reads_an_old_wire_version(self) -> None:
        class Renamed(DistributedState):
            """Version 2 renamed ``value`` to ``count``."""

            NAME = "renamed"
            WIRE_VERSION = 2
            count: int = 0

            @classmethod
            def deserialize_state(cls, data: bytes, wire_version: int) -> Renamed:
                if wire_version == 1:
                    return cls(count=unpack(data)["value"])
                return super().deserialize_state(data, wire_version)

        old_bytes = TestState(value=7).serialize_state()
        assert Renamed.deserialize_state(old_bytes, 1) == Renamed(count=7)
        new_bytes = Renamed(count=9).serialize_state()
        assert Renamed.deserialize_state(new_bytes, 2) == Renamed(count=9)
        with pytest.raises(DeserializeError) as info:
            Renamed.deserialize_state(new_bytes, 3)
        assert info.value.unknown_version == 3

    def test_serialize_state_is_msgpack_of_the_fields(self) -> None:
        state = TestState(value=3, label="x", items={"a": 1})
        assert msgpack.unpackb(state.serialize_state()) == {
            "value": 3,
            "label": "x",
            "items": {"a": 1},
        }


class TestViewAndDeltaSerializers:
    def test_view_round_trip(self) -> None:
        view = TestDeltaView(counters={"a": 1, "b": -2}, total=-1)
        data = TestDeltaState.serialize_view(view)
        assert TestDeltaState.deserialize_view(data, 1) == view

    def test_delta_round_trip(self) -> None:
        delta = TestDeltaDelta(key="a", value=5, total=9)
        data = TestDeltaState.serialize_delta(delta)
        assert TestDeltaState.deserialize_delta(data, 1) == delta

    @pytest.mark.parametrize("method", ["deserialize_view", "deserialize_delta"])
    @pytest.mark.parametrize("version", [0, 2, 99, -1])
    def test_unknown_wire_version(self, method: str, version: int) -> None:
        with pytest.raises(DeserializeError) as info:
            getattr(TestDeltaState, method)(pack({}), version)
        assert info.value.unknown_version == version

    @pytest.mark.parametrize("method", ["deserialize_view", "deserialize_delta"])
    @pytest.mark.parametrize(
        "data", [b"", b"\xc1", b"\x90", pack({"counters": 5}), pack({"total": "x", "key": 1})]
    )
    def test_garbage_bytes(self, method: str, data: bytes) -> None:
        with pytest.raises(DeserializeError) as info:
            getattr(TestDeltaState, method)(data, 1)
        assert info.value.unknown_version is None

    def test_default_sync_urgency(self) -> None:
        view = TestDeltaView()
        delta = TestDeltaDelta(key="now:x", value=1, total=1)
        assert TestDeltaState.sync_urgency(view, view, delta) is SyncUrgency.DEFAULT
        assert not TestDeltaState.has_custom_urgency()
        assert UrgentDeltaState.has_custom_urgency()

    def test_base_hooks_raise_not_implemented(self) -> None:
        class Partial(DeltaDistributedState):
            NAME = "partial"

        with pytest.raises(NotImplementedError, match="project_view"):
            Partial().project_view()
        with pytest.raises(NotImplementedError, match="project_delta"):
            Partial.project_delta(None)
        with pytest.raises(NotImplementedError, match="apply_delta"):
            Partial.apply_delta(None, None)


secrets = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=4, max_size=40).map(
    lambda s: "S3CR3T-" + s
)
keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz:", min_size=1, max_size=12)
amounts = st.integers(min_value=-(10**6), max_value=10**6)


class TestPrivateFields:
    @given(secrets, st.lists(st.tuples(keys, amounts), max_size=10))
    def test_private_fields_never_leave_the_node(
        self, secret: str, bumps: list[tuple[str, int]]
    ) -> None:
        state = TestDeltaState(secret=secret)
        sent: list[bytes] = [TestDeltaState.serialize_view(state.project_view())]
        for key, amount in bumps:
            change = TestDeltaState.bump(key, amount)(state)
            delta = TestDeltaState.project_delta(change)
            sent.append(TestDeltaState.serialize_delta(delta))
            sent.append(TestDeltaState.serialize_view(state.project_view()))
        for data in sent:
            assert secret.encode() not in data
            assert b"secret" not in data
            assert b"history" not in data
            assert not {"secret", "history"} & set(unpack(data))

    def test_private_fields_are_stored(self) -> None:
        state = TestDeltaState(secret="S3CR3T-X", history=[1, 2])
        stored = state.to_storage()
        assert stored["secret"] == "S3CR3T-X"
        assert stored["history"] == [1, 2]


class _Versioned(DistributedState):
    NAME = "versioned"
    STORAGE_VERSION = 3
    count: int = 0

    @classmethod
    def migrate_state(cls, data: dict[str, Any], from_version: int) -> _Versioned:
        if from_version == 1:
            return cls(count=data["value"])
        if from_version == 2:
            return cls(count=data["n"] * 10)
        return super().migrate_state(data, from_version)


class TestStorage:
    def test_same_version_dict(self) -> None:
        stored = TestState(value=4, label="l", items={"x": 1}).to_storage()
        assert TestState.from_storage(stored, 1) == TestState(value=4, label="l", items={"x": 1})

    def test_same_version_instance_is_returned_as_is(self) -> None:
        state = TestState(value=4)
        assert TestState.from_storage(state, 1) is state

    def test_newer_storage_version_is_refused(self) -> None:
        with pytest.raises(NewerRecordError, match="newer") as refused:
            TestState.from_storage({"value": 1}, 2)
        assert isinstance(refused.value, PersistError)
        assert (refused.value.state_name, refused.value.stored_version) == ("test_state", 2)
        assert refused.value.code_version == 1

    def test_default_migrate_state_raises_persist_error(self) -> None:
        with pytest.raises(PersistError, match="migrate_state"):
            TestState.migrate_state({"value": 1}, 0)

    def test_older_version_without_migration_is_refused(self) -> None:
        class V2(DistributedState):
            NAME = "v2"
            STORAGE_VERSION = 2

        with pytest.raises(PersistError, match="storage version 1"):
            V2.from_storage({}, 1)

    @pytest.mark.parametrize(
        ("data", "version", "count"),
        [({"value": 5}, 1, 5), ({"n": 2}, 2, 20), ({"count": 7}, 3, 7)],
    )
    def test_migration_paths(self, data: dict[str, Any], version: int, count: int) -> None:
        assert _Versioned.from_storage(data, version) == _Versioned(count=count)

    def test_migration_gets_a_copy(self) -> None:
        data = {"value": 5}
        _Versioned.from_storage(data, 1)
        assert data == {"value": 5}

    def test_old_model_instance_is_dumped_then_migrated(self) -> None:
        assert _Versioned.from_storage(TestState(value=6), 1) == _Versioned(count=6)

    def test_migration_failure_becomes_persist_error(self) -> None:
        with pytest.raises(PersistError) as info:
            _Versioned.from_storage({"wrong": 1}, 1)
        assert isinstance(info.value.__cause__, KeyError)

    def test_unknown_old_version_falls_back_to_default(self) -> None:
        with pytest.raises(PersistError, match="storage version 0"):
            _Versioned.from_storage({}, 0)

    @pytest.mark.parametrize("data", [[1, 2], "text", 5, None])
    def test_non_mapping_is_refused(self, data: object) -> None:
        with pytest.raises(PersistError, match="mapping"):
            TestState.from_storage(data, 1)

    def test_invalid_record_becomes_persist_error(self) -> None:
        with pytest.raises(PersistError, match="cannot rebuild") as info:
            TestState.from_storage({"value": "nope"}, 1)
        assert info.value.__cause__ is not None

    @given(test_states)
    def test_storage_round_trip(self, state: TestState) -> None:
        assert TestState.from_storage(state.to_storage(), TestState.STORAGE_VERSION) == state

    def test_delta_state_storage_round_trip_keeps_private_fields(self) -> None:
        state = TestDeltaState(secret="S", history=[3], counters={"a": 3}, total=3)
        assert TestDeltaState.from_storage(state.to_storage(), 1) == state

    def test_change_type_is_exported_shape(self) -> None:
        change = TestDeltaChange("k", 1, 2)
        assert TestDeltaState.project_delta(change) == TestDeltaDelta(key="k", value=1, total=2)


def test_newer_record_error_survives_pickling() -> None:
    import pickle

    from dstate_core import NewerRecordError

    error = NewerRecordError("counter", 3, 1, "FilePersistence('x')")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.state_name, copy.stored_version, copy.code_version, copy.store) == (
        "counter",
        3,
        1,
        "FilePersistence('x')",
    )
    assert str(copy) == str(error)
