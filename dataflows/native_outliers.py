"""The native twin of the outlier verdicts: an order's finished stages judged in Rust.

:func:`~dataflows.lifecycle.add_outlier_flags` stays the definition (and its
:func:`~dataflows.lifecycle.judge_dwell` still writes every flag);
:data:`NATIVE_OUTLIERS_OF` guards the twin against a changed definition.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cache

import msgspec

from dataflows import lifecycle
from dataflows.lifecycle import (
    BaselineLookup,
    OrderView,
    OutlierVerdicts,
    add_outlier_flags,
    judge_dwell,
)
from dataflows.native_core import core_name, fingerprint, installed, still_checked
from dataflows.settings import HealthSettings, OutlierSettings

__all__ = ["NATIVE_OUTLIERS_OF", "OutlierFlagger", "outlier_flagger", "outliers_fingerprint"]

#: ``(view, watermark_us, baseline, verdicts) -> view``, as
#: :func:`~dataflows.lifecycle.add_outlier_flags` with the settings bound.
OutlierFlagger = Callable[[OrderView, int | None, BaselineLookup, OutlierVerdicts], OrderView]

#: The fingerprint (:func:`outliers_fingerprint`) of the verdicts' definition
#: that ``native/src/outliers.rs`` was checked against; as for the view
#: (:data:`~dataflows.native_view.NATIVE_VIEW_OF`), a change puts the verdicts
#: back in Python until ``tests/unit/test_native_outliers.py`` checks the twin
#: and names the new value.
NATIVE_OUTLIERS_OF = "402e6d00319ae853"

#: Where the verdicts' part of ``dataflows/lifecycle.py`` starts (it runs to the end).
_SECTION = "#: (stage, dwell end time) -> the outlier verdict"


def outliers_fingerprint() -> str:
    """A hash of the verdicts: ``dataflows/lifecycle.py`` from the outlier verdicts
    on (``judge_dwell``, ``add_outlier_flags``) and the outlier settings."""
    source = inspect.getsource(lifecycle)
    section = source[source.index(_SECTION) :]
    return fingerprint(section + inspect.getsource(OutlierSettings))


@cache
def _native_outliers_current() -> bool:
    return still_checked(
        outliers_fingerprint,
        NATIVE_OUTLIERS_OF,
        "the outlier verdicts in dataflows/lifecycle.py changed since native/src/outliers.rs "
        "was checked against them: verdicts are walked in Python (slower) until "
        "tests/unit/test_native_outliers.py passes and NATIVE_OUTLIERS_OF is updated",
    )


def outlier_flagger(settings: HealthSettings, core: str | None = None) -> OutlierFlagger:
    """:func:`~dataflows.lifecycle.add_outlier_flags` for ``settings``, of the chosen core.

    The native one walks the transitions and tests each new dwell against its
    baseline in Rust; a dwell beyond it is still judged (and its flag
    written) by :func:`~dataflows.lifecycle.judge_dwell`.
    """

    def python(
        view: OrderView,
        watermark_us: int | None,
        baseline: BaselineLookup,
        verdicts: OutlierVerdicts,
    ) -> OrderView:
        return add_outlier_flags(view, settings, watermark_us, baseline, verdicts)

    if (core or core_name()) == "python" or not _native_outliers_current():
        return python
    outliers = settings.outliers
    kernel = installed().OutlierFlags(
        outliers.min_samples,
        outliers.scaled_threshold,
        outliers,
        judge_dwell,
        msgspec.structs.replace,
    )
    flagger: OutlierFlagger = kernel.add
    return flagger
