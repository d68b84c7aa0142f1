"""Native kernels of the Order Health streaming core (see native/README.md)."""

from collections.abc import Callable
from typing import Any

WindowKey = tuple[str, int, str, str]
Series = tuple[str, str, str]

class Plan:
    def __init__(
        self,
        width: int,
        sizes: list[tuple[str, int]],
        dims: list[str],
        facts: list[tuple[list[tuple[int, str]], int]],
    ) -> None: ...

Item = tuple[int, int, tuple[str | None, ...], int]

class Items:
    def as_tuples(self) -> tuple[Item, ...]: ...
    def __len__(self) -> int: ...

class Facts:
    def __init__(
        self,
        names: list[str],
        dims: list[tuple[str, str]],
        statuses: tuple[Any, Any, Any],
    ) -> None: ...
    def python_facts(self) -> list[int]: ...
    def items(self, view: Any, extra: tuple[Item, ...] | None = None) -> Items: ...

class LifecycleRows:
    def __init__(
        self,
        stage_columns: list[tuple[str, str, str]],
        texts: Callable[[Any], tuple[str, str]],
    ) -> None: ...
    def add(
        self, view: Any, topic: str, partition: int, last_offset: int, first_seen_us: int
    ) -> None: ...
    def take(self) -> list[tuple[str, bytes | None, bytes | None, bytes, int]]: ...
    def __len__(self) -> int: ...

class Delta:
    def __init__(self, plan: Plan | None = None) -> None: ...
    def apply(self, old: tuple[Item, ...] | Items, new: tuple[Item, ...] | Items) -> None: ...
    def drop_unchanged(self) -> None: ...
    @property
    def vectors(self) -> dict[WindowKey, list[int]]: ...
    @property
    def kept(self) -> dict[WindowKey, list[tuple[int, int, int]]]: ...
    def __getstate__(self) -> Any: ...
    def __setstate__(self, state: Any) -> None: ...

class WindowStore:
    def __init__(
        self, width: int, sizes: list[tuple[str, int]], slots: int, late_in: int, late_out: int
    ) -> None: ...
    def add(self, delta: Delta, watermark: int | None) -> list[WindowKey]: ...
    def finalize(self, watermark: int) -> None: ...
    def take_columns(
        self, hold_until: int | None = None
    ) -> tuple[
        tuple[bytes, bytes] | list[str],
        bytes | list[int],
        bytes | list[int],
        tuple[bytes, bytes] | list[str],
        tuple[bytes, bytes] | list[str],
        bytes,
        bytes | list[int],
        list[bytes | tuple[bytes] | list[int]],
        list[tuple[bytes, bytes, bytes]],
    ]:
        """See ``dataflows.window_metrics.StoreColumns``."""
        ...
    def pending(self) -> int: ...
    def touch_all(self) -> None: ...
    def export(
        self,
    ) -> tuple[
        dict[WindowKey, tuple[list[int], list[dict[int, int]] | None]], dict[Series, int]
    ]: ...
    def load(
        self,
        windows: dict[WindowKey, tuple[list[int], list[dict[int, int]] | None]],
        base: dict[Series, int],
    ) -> None: ...

class DwellHistory:
    def __init__(
        self, bucket_us: int, history_us: int, baseline_type: Callable[..., Any]
    ) -> None: ...
    def replace(self, order_id: str, old: tuple[Any, ...], new: tuple[Any, ...]) -> None: ...
    def baseline(self, stage: str, end_us: int) -> Any: ...
    def evict(self, watermark_us: int) -> None: ...
    def state(
        self,
    ) -> tuple[dict[tuple[str, int], dict[str, int]], dict[tuple[str, int], Any]]: ...
    def load(
        self,
        buckets: dict[tuple[str, int], dict[str, int]],
        cache: dict[tuple[str, int], Any],
    ) -> None: ...

class Views:
    def __init__(
        self,
        roles: dict[type, tuple[str, int | None, bool, str]],
        stages: list[str],
        sla: list[int | None],
        sla_reasons: list[str | None],
        delivered: int | None,
        base_attributes: list[str],
        classes: tuple[Any, Any, Any, Any],
        statuses: tuple[Any, Any, Any, Any],
        kinds: tuple[str, str, str],
        to_us: Callable[[Any], int],
        fallback: Callable[[str, list[Any], int | None, list[int]], Any],
    ) -> None: ...
    def derive(
        self, order_id: str, events: list[Any], watermark_us: int | None, times: list[int]
    ) -> Any: ...

class BronzePlan:
    def __init__(
        self,
        columns: list[tuple[str, str]],
        classes: dict[type, tuple[str, list[int | None]]],
        coordinates: list[str],
        to_us: Callable[[Any], int],
        json_fallback: Callable[[Any], str],
        astuple: Callable[[Any], tuple[Any, ...]],
    ) -> None: ...
    def table(
        self,
        topic: str,
        partition: int,
        events: list[Any],
        offsets: list[int],
        duplicate: list[bool],
        late: list[bool],
        warnings: list[str | None],
        times: list[int],
    ) -> list[tuple[str, bytes | None, bytes | None, bytes, int]]: ...

class OutlierFlags:
    def __init__(
        self,
        min_samples: int,
        scaled_threshold: float,
        settings: Any,
        judge: Callable[[Any, Any, Any], Any],
        replace: Callable[..., Any],
    ) -> None: ...
    def add(
        self,
        view: Any,
        watermark_us: int | None,
        baseline: Callable[[str, int], Any],
        verdicts: dict[Any, Any],
    ) -> Any: ...

def struct_field(obj: Any, name: str) -> Any:
    """``getattr(obj, name)`` through the twins' slot reading (for tests)."""

def to_us(moment: Any) -> int:
    """``dataflows.timeutil.to_us`` (an exact aware datetime in Rust, else the definition)."""

def slot_field(obj: Any, name: str) -> Any:
    """``getattr(obj, name)`` through the intake's slot reading (for tests)."""

def set_slot_field(obj: Any, name: str, value: Any) -> None:
    """``setattr(obj, name, value)`` through the intake's slot writing (for tests)."""

class Intake:
    def __init__(
        self,
        order_class: Any,
        insert: Any,
        conflicts: Any,
        terminal: list[Any],
        evicted_warning: str,
        conflict_warning: str,
        lateness_us: int,
        retention_us: int,
    ) -> None: ...
    def take_in(self, processor: Any, batch: list[Any], bronze: Any, touched: set[str]) -> int: ...

class Decode:
    def __init__(
        self,
        parse: Any,
        max_bytes: int,
        schema_version: int,
        safe_years: tuple[int, int],
        signing: dict[str, Any],
        signature_problem: Any,
        per_type: list[tuple[type, list[str], list[tuple[str, Any]]]],
        sourced: type,
        no_timestamp: int,
        definition: Any,
    ) -> None: ...
    def decode_all(self, messages: list[Any]) -> list[Any]: ...
