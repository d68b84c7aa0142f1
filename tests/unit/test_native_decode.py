"""``orderhealth_native.Decode`` decodes a batch as ``DecodeStep.decode_all`` does.

Two decode steps, one per core, read the same random batches of Kafka
messages: valid events of every type with times anywhere in (and beyond) the
supported range at any offset, keys that match, differ or are missing,
produce times before and after the events, values near the rules' limits,
signed and tampered events, and the hostile corpus.  Both must hand on the
same events and dead-letter rows in the same order, count the same dead
letters as done, and raise the same error for a ``fail`` rule.  The twin
must decide plainly valid messages itself and hand everything else, alone,
to the definition.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from itertools import product
from random import Random
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE, Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows import native_decode
from dataflows.decode_step import DecodeStep
from dataflows.kafka_source import FlowControl
from dataflows.native_core import native_module
from dataflows.native_decode import NATIVE_DECODE_OF, decode_fingerprint, decode_maker
from quality import record_rules
from quality.record_rules import Action, RecordRule, RecordRuleFailure, RuleBook
from schemas.decode import EventDecoder
from schemas.events import ALL_EVENT_TYPES, EARLIEST_TIME, LATEST_TIME, SCHEMA_VERSION
from schemas.signing import KeyRing, SourceKeys
from tests.factories import event
from tests.twin_guard import unchecked_twin
from tests.unit.test_hostile_input import HOSTILE

native = native_module()
needs_native = pytest.mark.skipif(native is None, reason="orderhealth_native is not built")

RING = KeyRing({"WMS": SourceKeys(keys={"k1": b"s" * 32}, sign_with="k1")})
KINDS = sorted(ALL_EVENT_TYPES)
#: Years either side of the range check's plain years (2001-2098) and inside them.
YEARS = [1999, 2000, 2001, 2002, 2026, 2097, 2098, 2099, 2100]
#: 2026-11-02 in ms: produce times around the events' times.
NOW_MS = 1_793_606_400_000
#: 2098-12-30T12:00Z in ms.
LATE_MS = int(datetime(2098, 12, 30, 12, tzinfo=UTC).timestamp() * 1000)


class _Recording(FlowControl):
    """Flow control that remembers what was counted as done."""

    def __init__(self) -> None:
        super().__init__(None)
        self.done: list[tuple[int, str | None]] = []

    def completed(self, count: int, stream: str | None = None) -> None:
        self.done.append((count, stream))


class _Watched(DecodeStep):
    """A decode step whose definition counts the messages it is handed."""

    seen: int = 0

    def decode_all(self, messages: list[Message]) -> list[Any]:
        self.seen += len(messages)
        return super().decode_all(messages)


# The generators below take their choices from a seeded ``Random`` that
# hypothesis draws: its own integers and samples lean to their ends on
# purpose, which made three messages in four broken ones, so the test mostly
# compared the definition with itself.  With these odds about half the
# messages are plainly valid and the rest cover every way out.


def _document(rnd: Random) -> dict[str, Any]:
    """A JSON event of any type, its values often near what a check looks at."""
    kind = rnd.choice(KINDS)
    if rnd.random() < 1 / 8:
        # Within a day and a half of either end of the supported range.
        edge = rnd.choice([EARLIEST_TIME, LATEST_TIME])
        when = edge + timedelta(minutes=rnd.randint(-36 * 60, 36 * 60))
    else:
        year = 2026 if rnd.random() < 0.8 else rnd.choice(YEARS)
        when = datetime(year, rnd.randint(1, 12), 1, tzinfo=UTC) + timedelta(
            minutes=rnd.randint(0, 60 * 24 * 27)
        )
    fields: dict[str, Any] = {}
    if kind in ("ORDER_CREATED", "PROMISE_UPDATED"):
        hours = rnd.choice([-3, 0, 0.5, 24, 24, 24, 48])
        fields["promised_delivery_at"] = when + timedelta(hours=hours)
    if kind == "ORDER_CREATED":
        fields["order_value"] = rnd.choice(
            [None, 0.0, 12.5, 999_999.0, 1_000_000.0, 1_000_000.5, 3e9]
        )
    if kind in ("REROUTED", "CANCELLED"):
        fields["reason"] = rnd.choice(["FACILITY_DOWN", " ", "\t\n", "\u00a0", " a", "é"])
    order = rnd.choice(["O1", "O1", "O1", "O1", "Ø3", "Ø3", "O2"])  # O2: a rule of its own
    doc: dict[str, Any] = json.loads(
        msgspec.json.encode(event(kind, order_id=order, when=when, **fields))
    )
    minutes = rnd.choice([0, 0, 0, 60, -300, 330, 23 * 60 + 59, -(23 * 60 + 59)])
    zone = timezone(timedelta(minutes=minutes)) if minutes else UTC
    for name in ("event_time", "promised_delivery_at"):
        if name in doc:
            doc[name] = datetime.fromisoformat(doc[name]).astimezone(zone).isoformat()
    if rnd.random() < 1 / 20:
        doc["schema_version"] = rnd.choice([SCHEMA_VERSION + 1, 2**70, 0])
    doc["source_system"] = "WMS" if rnd.random() < 1 / 6 else "TEST"
    return doc


def _message(rnd: Random, offset: int) -> Message:
    """One Kafka message: a document (signed, tampered or not), or a hostile value."""
    key: bytes | None
    if rnd.random() < 1 / 15:
        _case, value, _reason = rnd.choice(HOSTILE)
        key = b"O1"
    else:
        doc = _document(rnd)
        if doc["source_system"] == "WMS" and doc["schema_version"] < 2**53 and rnd.random() < 0.75:
            doc = RING.sign(doc)
            if rnd.random() < 1 / 4:
                doc["order_value"] = 7.0  # tampered after signing
        value = json.dumps(doc).encode()
        key = (
            doc["order_id"].encode() if rnd.random() < 0.85 else rnd.choice([b"O2", None, b"\xff"])
        )
    choice = rnd.random()
    if choice < 1 / 8:
        stamp = (TIMESTAMP_NOT_AVAILABLE, 0)
    elif choice < 1 / 4:
        stamp = (TIMESTAMP_CREATE_TIME, NOW_MS + rnd.choice([0, 10**9, -(10**12)]))
    else:
        # Produced well before, just within, at or beyond the clock-skew
        # tolerance (10 min) before the event's time, or after it.
        when_ms = _event_ms(value)
        skew_ms = rnd.choice([-60_000, -60_000, 0, 599_999, 600_000, 600_001])
        stamp = (TIMESTAMP_CREATE_TIME, (when_ms or NOW_MS) - skew_ms)
    return Message(topic="t", partition=3, offset=offset, key=key, value=value, timestamp=stamp)


def _event_ms(value: bytes) -> int | None:
    """The event time of a message in ms, if it has a readable one."""
    try:
        text = json.loads(value)["event_time"]
        return int(datetime.fromisoformat(text).timestamp() * 1000)
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
        return None


@st.composite
def batches(draw: st.DrawFn) -> list[Message]:
    rnd = draw(st.randoms(use_true_random=True))
    return [_message(rnd, offset) for offset in range(draw(st.integers(0, 25)))]


def _odd_order(event: Any, _received: int | None, params: dict[str, Any]) -> str | None:
    """A rule of a data engineer's own: the twin calls it as it is."""
    return "odd" if event.order_id == params["order"] else None


def _book(action: Action, max_order_value: float = 1e6) -> RuleBook:
    """The shipped rules with another action (and limit), and a rule of one's own."""
    rules = [
        msgspec.structs.replace(
            rule,
            action=action,
            params={**rule.params, "max_order_value": max_order_value}
            if rule.name == "order_value_plausible"
            else rule.params,
        )
        for rule in RuleBook.load().rules
    ]
    return RuleBook([*rules, RecordRule("odd_order", Action.WARN, {"order": "O2"})])


def _steps(book: RuleBook) -> tuple[DecodeStep, _Watched, _Recording, _Recording]:
    python_control, native_control = _Recording(), _Recording()
    python = DecodeStep(EventDecoder(keyring=RING), book, python_control, core="python")
    fast = _Watched(EventDecoder(keyring=RING), book, native_control, core="native")
    return python, fast, python_control, native_control


@pytest.fixture
def own_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(record_rules.CHECKS, "odd_order", _odd_order)


@needs_native
@pytest.mark.usefixtures("own_rule")
@pytest.mark.parametrize(("action", "limit"), [(Action.WARN, 1e6), (Action.DROP, -1.0)])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=batches())
def test_the_native_decode_equals_the_definition(
    action: Action, limit: float, batch: list[Message]
) -> None:
    python, fast, python_control, native_control = _steps(_book(action, limit))
    assert fast._decode_all != fast.decode_all  # the twin runs
    assert fast(batch) == python(batch)
    assert native_control.done == python_control.done


@needs_native
@pytest.mark.usefixtures("own_rule")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=batches())
def test_a_fail_rule_stops_both_alike(batch: list[Message]) -> None:
    python, fast, _, _ = _steps(_book(Action.FAIL))
    try:
        expected: Any = python(batch)
    except RecordRuleFailure as err:
        expected = str(err)
    try:
        got: Any = fast(batch)
    except RecordRuleFailure as err:
        got = str(err)
    assert got == expected


class _Moment(datetime):
    """A datetime subclass: the twin leaves it to the definition."""


class _Value(float):
    """A float subclass that is above any limit."""

    def __gt__(self, _other: object) -> bool:
        return True


class _Text(str):
    """A str subclass that strips to nothing."""

    __slots__ = ()

    def strip(self, _chars: str | None = None) -> str:
        return ""


_BERLIN = ZoneInfo("Europe/Berlin")
_SPRING = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # clocks go forward in Europe at 01:00
#: Event times: UTC, a zone with daylight saving (either side of a change), a
#: subclass (in range and not), a time whose year is not a plain one.
_TIMES = [
    _SPRING,
    _SPRING.astimezone(_BERLIN),
    datetime(2026, 10, 25, 2, 40, tzinfo=_BERLIN),  # 02:40 CEST, before the clocks go back
    _SPRING + timedelta(hours=2),
    _Moment(2026, 3, 29, 1, 0, tzinfo=UTC),
    _Moment(2100, 1, 1, 5, tzinfo=UTC),  # out of range
    datetime(2000, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))),
]
_VALUES = [None, 5, float("inf"), float("nan"), -0.0, _Value(2e6), _Value(1.0), 2e6]
_REASONS = [_Text("x"), "\u2003", " x", " ", ""]
_VERSIONS = [SCHEMA_VERSION, True, 2**70, -1]


def _promises(when: datetime) -> list[datetime]:
    return [
        when,
        when + timedelta(hours=1),
        _SPRING.astimezone(ZoneInfo("UTC")),
        # 02:30 CET: after 02:40 CEST, but before it on the wall clock (which
        # is what `<=` compares within one zone).
        datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=_BERLIN),
    ]


def _built_events() -> list[Any]:
    """Events built in Python with values JSON cannot carry (a non-finite
    float, an int where a float goes, subclasses that compare or strip their
    own way, zones with daylight saving): every combination."""
    out = []
    for when, version in product(_TIMES, _VERSIONS):
        fields: list[dict[str, Any]] = [{}]
        fields += [
            {"order_value": value, "promised_delivery_at": promise}
            for value, promise in product(_VALUES, _promises(when))
        ]
        fields += [{"reason": reason} for reason in _REASONS]
        for extra in fields:
            kind = "ORDER_CREATED" if "order_value" in extra else "REROUTED" if extra else "PICKED"
            made = event(kind, order_id="O1", when=when, **extra)
            out.append(msgspec.structs.replace(made, schema_version=version))
    return out


def _outcome(step: DecodeStep, batch: list[Message]) -> Any:
    try:
        return step(batch)
    except Exception as err:
        return (type(err), str(err))


@needs_native
@pytest.mark.parametrize("produced", [None, NOW_MS])
def test_values_json_cannot_carry_are_left_to_the_definition(produced: int | None) -> None:
    """The parse is swapped for one that hands out events built in Python,
    a message each (an error in one would hide the rest of a batch)."""
    events = _built_events()
    stamp = (TIMESTAMP_NOT_AVAILABLE, 0) if produced is None else (TIMESTAMP_CREATE_TIME, produced)
    steps = []
    for core in ("python", "native"):
        decoder = EventDecoder()
        decoder.parse = lambda raw: events[int(raw)]  # type: ignore[assignment]
        steps.append(DecodeStep(decoder, RuleBook.load(), FlowControl(None), core=core))
    for i in range(len(events)):
        batch = [
            Message(topic="t", partition=0, offset=i, key=b"O1", value=b"%d" % i, timestamp=stamp)
        ]
        python, fast = (_outcome(step, batch) for step in steps)
        assert fast == python, events[i]


def _plain(offset: int, produced_ms: int = NOW_MS, **fields: Any) -> Message:
    doc = json.loads(msgspec.json.encode(event("ORDER_CREATED", order_id="O1", **fields)))
    return Message(
        topic="t",
        partition=0,
        offset=offset,
        key=b"O1",
        value=json.dumps(doc).encode(),
        timestamp=(TIMESTAMP_CREATE_TIME, produced_ms),
    )


@needs_native
def test_plainly_valid_messages_are_decided_without_the_definition() -> None:
    python, fast, _, _ = _steps(RuleBook.load())
    created = datetime(2026, 11, 2, 8, 0, tzinfo=timezone(timedelta(hours=-5)))
    created_ms = int(created.timestamp() * 1000)
    batch = [
        _plain(0),
        _plain(1, order_value=12.0),
        _plain(2, event_id="x"),
        # Each rule at its limit, on the passing side.
        _plain(3, order_value=1_000_000.0),
        _plain(4, created_ms - 600_000, when=created),  # produced 10 min before its time
        _plain(
            5, created_ms, when=created, promised_delivery_at=created + timedelta(microseconds=1)
        ),
        _plain(6, LATE_MS, when=datetime(2098, 12, 30, 12, tzinfo=UTC)),  # the last plain year
    ]
    assert fast(batch) == python(batch)
    assert fast.seen == 0
    # One broken rule, one rejection: those two alone go to the definition.
    broken = _plain(7, order_value=2e6)
    rejected = Message(topic="t", partition=0, offset=8, key=b"O1", value=b"{")
    out = fast([*batch, broken, rejected])
    assert fast.seen == 2
    assert out[7].warnings == ("order_value_plausible",)
    assert out[8]["reason"] == "malformed_json"


def test_the_native_decode_was_checked_against_this_definition() -> None:
    """The fingerprint names the definition the equality tests above passed on."""
    assert decode_fingerprint() == NATIVE_DECODE_OF, (
        "the decode step (DecodeStep.decode_all, EventDecoder.decode and its range check, "
        "RuleBook.check or a built-in record rule) changed, so messages are now decoded by "
        "Python.  Make native/src/decode.rs match, run this file's equality tests, then set "
        f"dataflows.native_decode.NATIVE_DECODE_OF = {decode_fingerprint()!r}"
    )


@needs_native
def test_a_changed_decode_step_runs_in_python_until_its_twin_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    step = DecodeStep(EventDecoder(), RuleBook.load(), FlowControl(None), core="python")
    assert decode_maker(step, "python") == step.decode_all
    assert decode_maker(step, "native") != step.decode_all
    with unchecked_twin(
        monkeypatch, native_decode, "NATIVE_DECODE_OF", native_decode._native_decode_current
    ):
        assert decode_maker(step, "native") == step.decode_all
