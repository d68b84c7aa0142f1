"""The Superset import bundle, as code: datasets, charts and dashboards.

``python -m orderhealth.superset_bundle`` (also ``make schema``) writes the
bundle as YAML under ``superset/bundle/``: the reviewed files.  At import time
:func:`bundle_zip` fills in the two machine-specific values (the DuckDB file
and its extension directory) and zips the tree for ``superset
import-dashboards``.

Charts aggregate from the published *measures* (sums and counts), not by
averaging rates, so a chart over several rows shows the same figure as the
pipeline would for their union.  Column lists come from the table specs in
:mod:`lakehouse.tables`.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml

from lakehouse.tables import HEALTH_METRICS, ORDER_LIFECYCLE, TableSpec

__all__ = [
    "BUNDLE_DIR",
    "bundle_files",
    "bundle_zip",
    "charts",
    "dashboards",
    "datasets",
    "write_bundle",
]

BUNDLE_DIR = Path(__file__).resolve().parents[1] / "superset" / "bundle"
DATABASE_PLACEHOLDER = "{{ORDERHEALTH_DUCKDB}}"
EXTENSIONS_PLACEHOLDER = "{{ORDERHEALTH_DUCKDB_EXTENSIONS}}"
_NS = uuid.UUID("6f1d2c4e-8a0b-4f43-9d2e-0a6e5e7d1c11")


def _uuid(name: str) -> str:
    return str(uuid.uuid5(_NS, name))


DATABASE_UUID = _uuid("database:orderhealth")

# -- datasets ------------------------------------------------------------------------

_HOUR_US = 3_600_000_000
#: Dataset metrics: ratio and mean metrics are recomputed from measures.
HEALTH_METRICS_METRICS = {
    "health_index": ("Health index (0-100)", "MAX(health_index)", ",.1f"),
    "on_time_rate": (
        "On-time rate",
        "SUM(orders_on_time) * 1.0 / NULLIF(SUM(orders_resolved), 0)",
        ".1%",
    ),
    "anomaly_rate": (
        "Anomaly rate",
        "SUM(orders_anomalous) * 1.0 / NULLIF(SUM(orders_active), 0)",
        ".1%",
    ),
    "promise_deviation_hours": (
        "Promise deviation (h, mean)",
        f"SUM(deviation_us_sum) / NULLIF(SUM(deviation_count), 0) / {_HOUR_US}",
        ",.1f",
    ),
    "gray_zone_hours": (
        "Gray zone: order to warehouse (h, mean)",
        f"SUM(gray_zone_us_sum) / NULLIF(SUM(gray_zone_count), 0) / {_HOUR_US}",
        ",.1f",
    ),
    "orders_created": ("Orders created", "SUM(orders_created)", ",d"),
    "late_open_orders": ("Late open orders", "MAX(late_open_orders)", ",d"),
}

MOVERS_SQL = """\
-- Latest final day per dimension value, with the day before: who moved most.
WITH daily AS (
  SELECT dimension, dimension_value, window_start, health_index, on_time_rate,
         LAG(health_index) OVER w AS previous_index,
         ROW_NUMBER() OVER (PARTITION BY dimension, dimension_value
                            ORDER BY window_start DESC) AS newest
  FROM health_metrics
  WHERE window_size = '1d' AND is_final
  WINDOW w AS (PARTITION BY dimension, dimension_value ORDER BY window_start)
)
SELECT dimension, dimension_value, window_start AS day, health_index,
       previous_index, health_index - previous_index AS index_change, on_time_rate
FROM daily
WHERE newest = 1
"""


def _sql_type(t: pa.DataType) -> tuple[str, bool]:
    if pa.types.is_timestamp(t):
        return "TIMESTAMP WITH TIME ZONE", True
    if pa.types.is_date(t):
        return "DATE", True
    if pa.types.is_boolean(t):
        return "BOOLEAN", False
    if pa.types.is_integer(t):
        return "BIGINT", False
    if pa.types.is_floating(t):
        return "DOUBLE", False
    if pa.types.is_decimal(t):
        return "DECIMAL(38, 0)", False
    return "VARCHAR", False


def _column(name: str, sql_type: str, is_dttm: bool, verbose: str | None = None) -> dict[str, Any]:
    return {
        "column_name": name,
        "verbose_name": verbose,
        "is_dttm": is_dttm,
        "is_active": True,
        "type": sql_type,
        "advanced_data_type": None,
        "groupby": True,
        "filterable": True,
        "expression": None,
        "description": None,
        "python_date_format": None,
        "datetime_format": None,
        "extra": None,
    }


def _metric(name: str, verbose: str, expression: str, d3format: str) -> dict[str, Any]:
    return {
        "metric_name": name,
        "verbose_name": verbose,
        "metric_type": None,
        "expression": expression,
        "description": None,
        "d3format": d3format,
        "currency": None,
        "extra": None,
        "warning_text": None,
    }


def _dataset(
    name: str,
    columns: list[dict[str, Any]],
    *,
    dttm: str,
    metrics: dict[str, tuple[str, str, str]] | None = None,
    sql: str | None = None,
    description: str,
) -> dict[str, Any]:
    return {
        "table_name": name,
        "main_dttm_col": dttm,
        "description": description,
        "default_endpoint": None,
        "offset": 0,
        "cache_timeout": None,
        "catalog": None,
        "schema": "main",
        "sql": sql,
        "params": None,
        "template_params": None,
        "filter_select_enabled": True,
        "fetch_values_predicate": None,
        "extra": None,
        "normalize_columns": False,
        "always_filter_main_dttm": False,
        "uuid": _uuid(f"dataset:{name}"),
        "metrics": [
            _metric(k, verbose, expression, fmt)
            for k, (verbose, expression, fmt) in (metrics or {}).items()
        ]
        or [_metric("count", "Rows", "COUNT(*)", ",d")],
        "columns": columns,
        "version": "1.0.0",
        "database_uuid": DATABASE_UUID,
    }


def _verbose(name: str) -> str | None:
    """Readable labels: ``picked_dwell_hours`` -> ``Picked dwell (h)``."""
    if name.endswith("_dwell_hours"):
        return name.removesuffix("_dwell_hours").replace("_", " ").capitalize() + " dwell (h)"
    if name.endswith("_at"):
        return name.removesuffix("_at").replace("_", " ").capitalize() + " at (UTC)"
    return name.replace("_", " ").capitalize()


def _table_columns(spec: TableSpec) -> list[dict[str, Any]]:
    return [_column(f.name, *_sql_type(f.type), _verbose(f.name)) for f in spec.schema]


def datasets() -> dict[str, dict[str, Any]]:
    movers_columns = [
        _column("dimension", "VARCHAR", False, "Dimension"),
        _column("dimension_value", "VARCHAR", False, "Value"),
        _column("day", "TIMESTAMP WITH TIME ZONE", True, "Latest final day"),
        _column("health_index", "DOUBLE", False, "Health index"),
        _column("previous_index", "DOUBLE", False, "Day before"),
        _column("index_change", "DOUBLE", False, "Change"),
        _column("on_time_rate", "DOUBLE", False, "On-time rate"),
    ]
    return {
        "health_metrics": _dataset(
            "health_metrics",
            _table_columns(HEALTH_METRICS),
            dttm="window_start",
            metrics=HEALTH_METRICS_METRICS,
            description="gold/health_metrics: published (quality-gated) window rows.",
        ),
        "order_lifecycle": _dataset(
            "order_lifecycle",
            _table_columns(ORDER_LIFECYCLE),
            dttm="order_created_at",
            description="silver/order_lifecycle: one row per order (the digital twin).",
        ),
        "health_movers": _dataset(
            "health_movers",
            movers_columns,
            dttm="day",
            metrics={
                "health_index": ("Health index", "MAX(health_index)", ",.1f"),
                "index_change": ("Change vs day before", "MAX(index_change)", "+,.1f"),
            },
            sql=MOVERS_SQL,
            description="Latest final day per dimension value and its change.",
        ),
    }


# -- charts ----------------------------------------------------------------------------


def _where(*clauses: str) -> list[dict[str, Any]]:
    return [
        {
            "expressionType": "SQL",
            "sqlExpression": clause,
            "clause": "WHERE",
            "subject": None,
            "operator": None,
            "comparator": None,
            "isExtra": False,
            "isNew": False,
            "filterOptionName": _uuid(f"filter:{clause}")[:12],
        }
        for clause in clauses
    ]


def _chart(
    name: str,
    viz_type: str,
    dataset: str,
    *,
    form: dict[str, Any],
    query: dict[str, Any],
    description: str,
) -> dict[str, Any]:
    params = {
        "datasource": "0__table",
        "viz_type": viz_type,
        "time_range": "No filter",
        "adhoc_filters": form.pop("adhoc_filters", []),
        **form,
    }
    query_context: dict[str, Any] = {
        "datasource": {"id": 0, "type": "table"},
        "force": False,
        "queries": [
            {
                "filters": [],
                "extras": {"having": "", "where": ""},
                "applied_time_extras": {},
                "time_range": "No filter",
                "annotation_layers": [],
                "series_limit": 0,
                "order_desc": True,
                "url_params": {},
                "custom_params": {},
                "custom_form_data": {},
                **query,
            }
        ],
        "form_data": params,
        "result_format": "json",
        "result_type": "full",
    }
    # Filters go into the query as SQL WHERE clauses, as the UI does.
    where = " AND ".join(f"({f['sqlExpression']})" for f in params["adhoc_filters"])
    query_context["queries"][0]["extras"]["where"] = where
    return {
        "slice_name": name,
        "description": description,
        "certified_by": None,
        "certification_details": None,
        "viz_type": viz_type,
        "params": params,
        "query_context": json.dumps(query_context),
        "cache_timeout": None,
        "uuid": _uuid(f"chart:{name}"),
        "version": "1.0.0",
        "dataset_uuid": _uuid(f"dataset:{dataset}"),
    }


def _timeseries(
    name: str,
    metrics: list[str],
    filters: list[str],
    *,
    groupby: list[str] | None = None,
    y_format: str,
    y_title: str,
    description: str,
    y_bounds: tuple[float | None, float | None] = (None, None),
) -> dict[str, Any]:
    """A daily line chart over *final* windows: a half-day would read as a trend."""
    x = {"label": "window_start", "sqlExpression": "window_start", "expressionType": "SQL"}
    return _chart(
        name,
        "echarts_timeseries_line",
        "health_metrics",
        form={
            "x_axis": "window_start",
            "time_grain_sqla": "P1D",
            "metrics": metrics,
            "groupby": groupby or [],
            "adhoc_filters": _where(*filters, "is_final"),
            "row_limit": 10000,
            "y_axis_format": y_format,
            "y_axis_bounds": list(y_bounds),
            "y_axis_title": y_title,
            "y_axis_title_position": "Left",
            "x_axis_title": "Day (UTC)",
            "show_legend": True,
            "legendOrientation": "top",
            "markerEnabled": True,
            "rich_tooltip": True,
            "truncateYAxis": False,
        },
        query={
            "columns": [
                {
                    "timeGrain": "P1D",
                    "columnType": "BASE_AXIS",
                    **x,
                },
                *(groupby or []),
            ],
            "metrics": metrics,
            "orderby": [[metrics[0], False]],
            "row_limit": 10000,
            "series_columns": groupby or [],
            "post_processing": [
                {
                    "operation": "pivot",
                    "options": {
                        "index": ["window_start"],
                        "columns": groupby or [],
                        "aggregates": {m: {"operator": "mean"} for m in metrics},
                        "drop_missing_columns": False,
                    },
                },
                {"operation": "flatten"},
            ],
        },
        description=description,
    )


def _breakdown(name: str, dimension: str, description: str) -> dict[str, Any]:
    return _chart(
        name,
        "echarts_timeseries_bar",
        "health_movers",
        form={
            "x_axis": "dimension_value",
            "metrics": ["health_index"],
            "groupby": [],
            "adhoc_filters": _where(f"dimension = '{dimension}'"),
            "row_limit": 100,
            "orientation": "horizontal",
            "y_axis_format": ",.1f",
            "x_axis_sort": "health_index",
            "x_axis_sort_asc": True,
            "show_value": True,
            "show_legend": False,
        },
        query={
            "columns": [
                {
                    "columnType": "BASE_AXIS",
                    "sqlExpression": "dimension_value",
                    "label": "dimension_value",
                    "expressionType": "SQL",
                }
            ],
            "metrics": ["health_index"],
            "orderby": [["health_index", True]],
            "row_limit": 100,
            "series_columns": [],
            "post_processing": [
                {
                    "operation": "pivot",
                    "options": {
                        "index": ["dimension_value"],
                        "columns": [],
                        "aggregates": {"health_index": {"operator": "mean"}},
                        "drop_missing_columns": False,
                    },
                },
                {"operation": "sort", "options": {"by": "health_index", "ascending": True}},
                {"operation": "flatten"},
            ],
        },
        description=description,
    )


def charts() -> dict[str, dict[str, Any]]:
    company = ["window_size = '1d'", "dimension = 'all'"]
    out = [
        _chart(
            "Fulfilment health index (company)",
            "big_number",
            "health_metrics",
            form={
                "x_axis": "window_start",
                "time_grain_sqla": "P1D",
                "metric": "health_index",
                "adhoc_filters": _where(*company, "is_final"),
                "compare_lag": 1,
                "compare_suffix": "vs previous day",
                "show_trend_line": True,
                "start_y_axis_at_zero": False,
                "y_axis_format": ",.1f",
                "subheader_font_size": 0.15,
            },
            query={
                "columns": [
                    {
                        "timeGrain": "P1D",
                        "columnType": "BASE_AXIS",
                        "sqlExpression": "window_start",
                        "label": "window_start",
                        "expressionType": "SQL",
                    }
                ],
                "metrics": ["health_index"],
                "orderby": [],
                "row_limit": 1000,
                "post_processing": [
                    {
                        "operation": "pivot",
                        "options": {
                            "index": ["window_start"],
                            "columns": [],
                            "aggregates": {"health_index": {"operator": "mean"}},
                            "drop_missing_columns": True,
                        },
                    },
                    {"operation": "flatten"},
                ],
            },
            description="Latest complete day's index (0-100) and its change against "
            "the day before.",
        ),
        _timeseries(
            "Health index by warehouse (daily)",
            ["health_index"],
            ["window_size = '1d'", "dimension = 'warehouse_id'"],
            groupby=["dimension_value"],
            y_format=",.0f",
            y_title="Health index (0-100)",
            description="Daily index per warehouse, complete days only.",
        ),
        _timeseries(
            "On-time and anomaly rates (company, daily)",
            ["on_time_rate", "anomaly_rate"],
            company,
            y_format=".0%",
            y_title="Share of orders",
            y_bounds=(0.0, 1.0),
            description="On-time = orders_on_time / orders_resolved; anomaly = orders "
            "flagged / orders active, per day.",
        ),
        _timeseries(
            "Promise deviation and gray zone (company, hours)",
            ["promise_deviation_hours", "gray_zone_hours"],
            company,
            y_format=",.1f",
            y_title="Hours",
            description="Mean delivered-minus-promised hours (negative = early) and mean "
            "hours from order to warehouse acceptance, per day.",
        ),
        _breakdown(
            "Health index by warehouse (latest final day)",
            "warehouse_id",
            "Lowest first.",
        ),
        _breakdown("Health index by region (latest final day)", "region", "Lowest first."),
        _breakdown("Health index by channel (latest final day)", "channel", "Lowest first."),
        _chart(
            "Worst movers (latest final day vs the day before)",
            "table",
            "health_movers",
            form={
                "query_mode": "raw",
                "all_columns": MOVERS_COLUMNS,
                "order_by_cols": ['["index_change", true]'],
                "adhoc_filters": _where(
                    "index_change IS NOT NULL",
                    "dimension IN ('warehouse_id', 'region', 'channel', 'carrier_id')",
                ),
                "row_limit": 10,
                "column_config": {
                    "health_index": {"d3NumberFormat": ",.1f"},
                    "previous_index": {"d3NumberFormat": ",.1f"},
                    "index_change": {"d3NumberFormat": "+,.1f"},
                    "on_time_rate": {"d3NumberFormat": ".1%"},
                },
            },
            query={
                "columns": MOVERS_COLUMNS,
                "metrics": [],
                "orderby": [["index_change", True]],
                "row_limit": 10,
                "post_processing": [],
            },
            description="The ten warehouses, regions, channels or carriers whose index fell most.",
        ),
        _chart(
            "Orders: lifecycle and dwell times",
            "table",
            "order_lifecycle",
            form={
                "query_mode": "raw",
                "all_columns": ORDER_DRILL_COLUMNS,
                "order_by_cols": ['["anomaly_count", false]'],
                "row_limit": 1000,
                "adhoc_filters": [],
                "page_length": 25,
                "column_config": {
                    c: {"d3NumberFormat": ",.1f"} for c in ORDER_DRILL_COLUMNS if "dwell" in c
                },
            },
            query={
                "columns": ORDER_DRILL_COLUMNS,
                "metrics": [],
                "orderby": [["anomaly_count", False]],
                "row_limit": 1000,
                "post_processing": [],
            },
            description="One row per order: stage dwell hours, outcome and anomaly reasons.",
        ),
    ]
    return {c["slice_name"]: c for c in out}


MOVERS_COLUMNS = [
    "dimension",
    "dimension_value",
    "day",
    "health_index",
    "previous_index",
    "index_change",
    "on_time_rate",
]

ORDER_DRILL_COLUMNS = [
    "order_id",
    "warehouse_id",
    "region",
    "channel",
    "order_created_at",
    "current_stage",
    "outcome",
    "finance_approved_dwell_hours",
    "warehouse_accepted_dwell_hours",
    "picked_dwell_hours",
    "packed_dwell_hours",
    "shipped_dwell_hours",
    "anomaly_count",
    # The kinds read as reasons; the full flags (JSON, long) stay in the dataset.
    "anomaly_kinds",
]


# -- dashboards -------------------------------------------------------------------------


def _position(
    title: str, rows: list[list[tuple[str, int]]], all_charts: dict[str, Any], height: int = 50
) -> dict[str, Any]:
    position: dict[str, Any] = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
        "HEADER_ID": {"id": "HEADER_ID", "type": "HEADER", "meta": {"text": title}},
    }
    for r, row in enumerate(rows):
        row_id = f"ROW-{r}"
        position["GRID_ID"]["children"].append(row_id)
        position[row_id] = {
            "type": "ROW",
            "id": row_id,
            "children": [],
            "parents": ["ROOT_ID", "GRID_ID"],
            "meta": {"background": "BACKGROUND_TRANSPARENT"},
        }
        for c, (name, width) in enumerate(row):
            chart_id = f"CHART-{r}-{c}"
            position[row_id]["children"].append(chart_id)
            position[chart_id] = {
                "type": "CHART",
                "id": chart_id,
                "children": [],
                "parents": ["ROOT_ID", "GRID_ID", row_id],
                "meta": {
                    "width": width,
                    "height": height,
                    "chartId": 0,
                    "uuid": all_charts[name]["uuid"],
                    "sliceName": name,
                },
            }
    return position


def _native_filters(
    dashboard: str, dataset: str, time_column: str, value_column: str, label: str
) -> list[dict[str, Any]]:
    dataset_uuid = _uuid(f"dataset:{dataset}")
    return [
        {
            "id": f"NATIVE_FILTER-{_uuid(dashboard + ':time')[:10]}",
            "name": "Time range",
            "filterType": "filter_time",
            "targets": [{}],
            "defaultDataMask": {"filterState": {}, "extraFormData": {}, "ownState": {}},
            "controlValues": {},
            "cascadeParentIds": [],
            "scope": {"rootPath": ["ROOT_ID"], "excluded": []},
            "type": "NATIVE_FILTER",
            "description": f"Filters on {time_column}.",
        },
        {
            "id": f"NATIVE_FILTER-{_uuid(dashboard + ':value')[:10]}",
            "name": label,
            "filterType": "filter_select",
            "targets": [{"datasetUuid": dataset_uuid, "column": {"name": value_column}}],
            "defaultDataMask": {"filterState": {}, "extraFormData": {}, "ownState": {}},
            "controlValues": {
                "enableEmptyFilter": False,
                "defaultToFirstItem": False,
                "multiSelect": True,
                "searchAllOptions": False,
                "inverseSelection": False,
            },
            "cascadeParentIds": [],
            "scope": {"rootPath": ["ROOT_ID"], "excluded": []},
            "type": "NATIVE_FILTER",
            "description": "",
        },
    ]


def dashboards() -> dict[str, dict[str, Any]]:
    all_charts = charts()
    executive = [
        [("Fulfilment health index (company)", 4), ("Health index by warehouse (daily)", 8)],
        [
            ("On-time and anomaly rates (company, daily)", 6),
            ("Promise deviation and gray zone (company, hours)", 6),
        ],
        [
            ("Health index by warehouse (latest final day)", 4),
            ("Health index by region (latest final day)", 4),
            ("Health index by channel (latest final day)", 4),
        ],
        [("Worst movers (latest final day vs the day before)", 12)],
    ]
    drill = [[("Orders: lifecycle and dwell times", 12)]]
    out = {}
    for slug, title, rows, height, dataset, time_col, value_col, label in (
        (
            "fulfilment-health",
            "Fulfilment Health",
            executive,
            50,
            "health_metrics",
            "window_start",
            "dimension_value",
            "Dimension value",
        ),
        (
            "order-drill-down",
            "Order drill-down",
            drill,
            150,
            "order_lifecycle",
            "order_created_at",
            "warehouse_id",
            "Warehouse",
        ),
    ):
        out[slug] = {
            "dashboard_title": title,
            "description": None,
            "css": "",
            "slug": slug,
            "certified_by": None,
            "certification_details": None,
            "published": True,
            "uuid": _uuid(f"dashboard:{slug}"),
            "position": _position(title, rows, all_charts, height),
            "metadata": {
                "color_scheme": "supersetColors",
                "refresh_frequency": 300,
                "expanded_slices": {},
                "label_colors": {},
                "timed_refresh_immune_slices": [],
                "cross_filters_enabled": True,
                "native_filter_configuration": _native_filters(
                    slug, dataset, time_col, value_col, label
                ),
                "chart_configuration": {},
                "global_chart_configuration": {
                    "scope": {"rootPath": ["ROOT_ID"], "excluded": []},
                    "chartsInScope": [],
                },
            },
            "version": "1.0.0",
        }
    return out


def database() -> dict[str, Any]:
    return {
        "database_name": "orderhealth",
        "sqlalchemy_uri": f"duckdb:///{DATABASE_PLACEHOLDER}",
        "cache_timeout": None,
        "expose_in_sqllab": True,
        "allow_run_async": False,
        "allow_ctas": False,
        "allow_cvas": False,
        "allow_dml": False,
        "allow_file_upload": False,
        "extra": {
            "engine_params": {
                "connect_args": {
                    "read_only": True,
                    "config": {
                        "extension_directory": EXTENSIONS_PLACEHOLDER,
                        "autoinstall_known_extensions": False,
                        "autoload_known_extensions": True,
                    },
                }
            }
        },
        "impersonate_user": False,
        "configuration_method": "sqlalchemy_form",
        "uuid": DATABASE_UUID,
        "version": "1.0.0",
    }


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name).strip("_").lower()


def bundle_files() -> dict[str, str]:
    """Path inside the bundle -> YAML text."""

    def dump(data: dict[str, Any]) -> str:
        text: str = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
        return text

    files = {
        "metadata.yaml": dump({"version": "1.0.0", "type": "assets"}),
        "databases/orderhealth.yaml": dump(database()),
    }
    for name, ds in datasets().items():
        files[f"datasets/orderhealth/{name}.yaml"] = dump(ds)
    for name, chart in charts().items():
        files[f"charts/{_safe(name)}.yaml"] = dump(chart)
    for slug, board in dashboards().items():
        files[f"dashboards/{slug}.yaml"] = dump(board)
    return files


def write_bundle(directory: Path = BUNDLE_DIR) -> list[Path]:
    written = []
    for relative, text in bundle_files().items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def bundle_zip(duckdb_file: Path, extensions: Path, directory: Path = BUNDLE_DIR) -> bytes:
    """The reviewed YAML tree, with this machine's paths filled in, as an import zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(directory.rglob("*.yaml")):
            text = path.read_text()
            text = text.replace(DATABASE_PLACEHOLDER, str(duckdb_file)).replace(
                EXTENSIONS_PLACEHOLDER, str(extensions)
            )
            archive.writestr(f"orderhealth_bundle/{path.relative_to(directory)}", text)
    return buffer.getvalue()


if __name__ == "__main__":
    for file in write_bundle():
        print(f"wrote {file}")
