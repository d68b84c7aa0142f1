"""Typed, validated health-index settings loaded from ``health.toml``.

One settings object, validated at start-up with precise messages, instead of
constants scattered through the flow.  ``HealthSettings.load()`` reads the
packaged defaults; ``--config`` (and ``ORDERHEALTH_HEALTH_CONFIG``) point at a
reviewed copy.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from schemas.events import EventType

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ComponentWeight",
    "HealthSettings",
    "OutlierSettings",
    "SettingsError",
    "parse_duration_us",
]

DEFAULT_CONFIG_PATH = Path(__file__).with_name("health.toml")
_UNITS_US = {"s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}
_DURATION = re.compile(r"^(?P<n>\d+)(?P<unit>[smhd])$")
KNOWN_DIMENSIONS = (
    "all",
    "warehouse_id",
    "region",
    "channel",
    "customer_segment",
    "carrier_id",
    "seller_id",
)


class SettingsError(ValueError):
    """The health configuration is invalid; the message says where and why."""


def parse_duration_us(text: str, *, what: str) -> int:
    """``"15m"`` -> microseconds, with a message naming the setting on error."""
    match = _DURATION.match(text.strip())
    if not match:
        raise SettingsError(f"{what}: {text!r} is not a duration like '30s', '15m', '1h', '1d'")
    return int(match["n"]) * _UNITS_US[match["unit"]]


class _Windows(msgspec.Struct, forbid_unknown_fields=True):
    sizes: list[str]
    allowed_lateness: str


class _Dimensions(msgspec.Struct, forbid_unknown_fields=True):
    enabled: list[str]


class _Stages(msgspec.Struct, forbid_unknown_fields=True):
    order: list[str]
    sla_hours: dict[str, float]


class _Anomalies(msgspec.Struct, forbid_unknown_fields=True):
    outlier_z: float
    outlier_min_samples: int
    outlier_history: str


class ComponentWeight(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A component's weight in the health index and its normalisation bounds."""

    weight: float
    good: float
    bad: float

    def score(self, value: float) -> float:
        """0 (at or beyond ``bad``) .. 1 (at or beyond ``good``)."""
        fraction = (value - self.bad) / (self.good - self.bad)
        return min(1.0, max(0.0, fraction))


class _State(msgspec.Struct, forbid_unknown_fields=True):
    finished_order_retention: str = "1d"
    evicted_order_memory: str = "30d"


class _HealthIndex(msgspec.Struct, forbid_unknown_fields=True):
    components: dict[str, ComponentWeight]


class _File(msgspec.Struct, forbid_unknown_fields=True):
    windows: _Windows
    dimensions: _Dimensions
    stages: _Stages
    anomalies: _Anomalies
    health_index: _HealthIndex
    state: _State = msgspec.field(default_factory=_State)


class OutlierSettings(msgspec.Struct, frozen=True):
    z_threshold: float
    min_samples: int
    history_us: int
    #: Dwell baselines are computed per hour bucket of the dwell end.
    bucket_us: int = 3_600_000_000

    @property
    def scaled_threshold(self) -> float:
        """``z * 1.4826``: compare ``dwell - median`` with ``this * MAD`` (no division)."""
        return self.z_threshold * 1.4826


class HealthSettings(msgspec.Struct, frozen=True):
    """Validated settings.  Durations are integer microseconds (exact arithmetic)."""

    window_sizes: tuple[tuple[str, int], ...]
    allowed_lateness_us: int
    dimensions: tuple[str, ...]
    stage_order: tuple[EventType, ...]
    stage_sla_us: dict[EventType, int]
    outliers: OutlierSettings
    weights: dict[str, ComponentWeight]
    #: A finished order (delivered or cancelled, nothing left to happen to its
    #: view) leaves hot state once the watermark is this far past its last
    #: event; the lifecycle table keeps it.  Bounds memory by the order rate.
    finished_retention_us: int = 86_400_000_000
    #: How long ids of evicted orders are remembered, so that a straggling
    #: event for one is flagged (``order_evicted``) instead of starting a
    #: phantom order.
    evicted_memory_us: int = 30 * 86_400_000_000

    @classmethod
    def load(cls, path: Path | None = None) -> HealthSettings:
        path = path or DEFAULT_CONFIG_PATH
        try:
            raw = msgspec.toml.decode(path.read_bytes(), type=_File)
        except FileNotFoundError as err:
            raise SettingsError(f"health config {path} does not exist") from err
        except msgspec.DecodeError as err:
            raise SettingsError(f"health config {path}: {err}") from err
        return cls.from_file(raw, source=str(path))

    @classmethod
    def from_file(cls, raw: _File, *, source: str = "health config") -> HealthSettings:
        if not raw.windows.sizes:
            raise SettingsError(f"{source}: windows.sizes must list at least one window size")
        sizes = []
        for label in raw.windows.sizes:
            size = parse_duration_us(label, what=f"{source}: windows.sizes")
            if size < _UNITS_US["s"]:
                raise SettingsError(f"{source}: window size {label!r} cannot be below 1s")
            if _UNITS_US["d"] % size and size % _UNITS_US["d"]:
                raise SettingsError(
                    f"{source}: window size {label!r} must divide a day (or be whole days) "
                    "so windows align to UTC midnight"
                )
            sizes.append((label, size))
        if len({s for _, s in sizes}) != len(sizes):
            raise SettingsError(f"{source}: windows.sizes has duplicates: {raw.windows.sizes}")
        lateness = parse_duration_us(
            raw.windows.allowed_lateness, what=f"{source}: windows.allowed_lateness"
        )
        unknown = [d for d in raw.dimensions.enabled if d not in KNOWN_DIMENSIONS]
        if unknown:
            raise SettingsError(
                f"{source}: unknown dimensions {unknown}; known: {', '.join(KNOWN_DIMENSIONS)}"
            )
        if "all" not in raw.dimensions.enabled:
            raise SettingsError(f"{source}: dimensions.enabled must include 'all'")
        try:
            order = tuple(EventType(s) for s in raw.stages.order)
            sla = {EventType(k): round(v * _UNITS_US["h"]) for k, v in raw.stages.sla_hours.items()}
        except ValueError as err:
            raise SettingsError(f"{source}: stages: {err}") from err
        if order[0] is not EventType.ORDER_CREATED or order[-1] is not EventType.DELIVERED:
            raise SettingsError(
                f"{source}: stages.order must start at ORDER_CREATED, end at DELIVERED"
            )
        if bad := [k.value for k, v in sla.items() if v <= 0 or k not in order]:
            raise SettingsError(
                f"{source}: stages.sla_hours {bad} must be positive stages in order"
            )
        anomalies = raw.anomalies
        history = parse_duration_us(anomalies.outlier_history, what=f"{source}: outlier_history")
        if history % _UNITS_US["h"] or history <= 0:
            raise SettingsError(f"{source}: anomalies.outlier_history must be whole hours")
        if anomalies.outlier_z <= 0 or anomalies.outlier_min_samples < 2:
            raise SettingsError(
                f"{source}: anomalies.outlier_z must be > 0 and outlier_min_samples >= 2"
            )
        from dataflows.metrics import COMPONENTS

        names = {c.name for c in COMPONENTS}
        weights = raw.health_index.components
        if missing := sorted(names - set(weights)):
            raise SettingsError(f"{source}: health_index.components lacks {missing}")
        if unknown_c := sorted(set(weights) - names):
            raise SettingsError(f"{source}: health_index.components has unknown {unknown_c}")
        for name, w in weights.items():
            if w.weight < 0 or w.good == w.bad:
                raise SettingsError(
                    f"{source}: health_index.components.{name}: weight must be >= 0 "
                    "and good must differ from bad"
                )
        if sum(w.weight for w in weights.values()) <= 0:
            raise SettingsError(f"{source}: health_index weights must not all be 0")
        retention = parse_duration_us(
            raw.state.finished_order_retention, what=f"{source}: state.finished_order_retention"
        )
        memory = parse_duration_us(
            raw.state.evicted_order_memory, what=f"{source}: state.evicted_order_memory"
        )
        if memory < retention:
            raise SettingsError(
                f"{source}: state.evicted_order_memory must be at least "
                "state.finished_order_retention"
            )
        return cls(
            finished_retention_us=retention,
            evicted_memory_us=memory,
            outliers=OutlierSettings(anomalies.outlier_z, anomalies.outlier_min_samples, history),
            weights=dict(weights),
            window_sizes=tuple(sorted(sizes, key=lambda s: s[1])),
            allowed_lateness_us=lateness,
            dimensions=tuple(raw.dimensions.enabled),
            stage_order=order,
            stage_sla_us=sla,
        )
