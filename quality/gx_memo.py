"""Memoise GX's ``Expectation.configuration`` for the length of one validation.

Why: in GX 1.x an expectation's ``configuration`` is a property that rebuilds
an ``ExpectationConfiguration`` from the pydantic model (``.dict()``, a
camel-to-snake regex, a new object) on every read, and one validation reads
it about a hundred times per expectation while it builds the metric graph --
each domain or success keyword looked up reads the whole configuration again.
For the 23-expectation metrics suite that is ~2,600 rebuilds per run and
about 40% of a run, whatever the batch's size: the gate's fixed cost, paid
on the way to every publication.

While a validation runs, the expectations it reads do not change (GX builds
new expectation objects when it needs different ones), so each object's
configuration is built once per run and shared.  The memo lives for one
validation on one thread and holds its objects, so an ``id`` is never reused
while it is alive.  It is installed only on the GX version it was checked
against (``CHECKED_GX_VERSION``); on any other, validations run unmemoised --
slower, never different.  ``tests/integration/test_quality_gate.py`` checks
that GX's results are the same with and without it, for passing and failing
batches of both shipped suites.

The same scope also memoises each expectation's **metric dependency graph**
(:func:`_install_graph_memo`), across validations this time: GX builds it again for
every validation -- about a third of one (the metrics suite on 22k rows:
23 of 67 ms; the facts suite: 17 of 40 ms) -- though it depends only on the
expectation's configuration (with its parameters filled in), the batch id,
the runtime configuration (the result format) and the execution engine's
kind.  Graphs are kept on the execution engine, keyed by all of those, so
a parameter that changes (the volume bounds) builds a new graph for its one
expectation only.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["CHECKED_GX_VERSION", "configuration_memo", "memo_installed"]

#: The GX release whose ``Expectation.configuration`` this was checked against
#: (pyproject.toml pins it).
CHECKED_GX_VERSION = "1.24.1"

_local = threading.local()
_lock = threading.Lock()
_installed: bool | None = None


def _install() -> bool:
    """Wrap the property once per process; False on an unchecked GX version."""
    global _installed
    with _lock:
        if _installed is None:
            import great_expectations as gx
            from great_expectations.expectations.expectation import Expectation

            _installed = gx.__version__ == CHECKED_GX_VERSION
            if _installed:
                original: property = vars(Expectation)["configuration"]
                build = original.fget
                assert build is not None

                def configuration(self: Any) -> Any:
                    memo: dict[int, tuple[Any, Any]] | None = getattr(_local, "memo", None)
                    if memo is None:
                        return build(self)
                    hit = memo.get(id(self))
                    if hit is None:  # the object is kept, so its id stays its own
                        hit = memo[id(self)] = (self, build(self))
                    return hit[1]

                Expectation.configuration = property(  # type: ignore[method-assign,assignment]
                    configuration, doc=original.__doc__
                )
                _install_graph_memo()
    return _installed


def memo_installed() -> bool:
    """Whether validations on this GX version are memoised."""
    return _install()


@contextlib.contextmanager
def configuration_memo(enabled: bool = True) -> Iterator[None]:
    """Within the block, this thread builds each expectation's configuration once."""
    if not enabled or not _install():
        yield
        return
    _local.memo = {}
    try:
        yield
    finally:
        _local.memo = None


#: Graphs kept per execution engine (a few per expectation and result format).
_GRAPHS_KEPT = 512


def _install_graph_memo() -> None:
    """Wrap GX's per-expectation graph building (called once, under ``_lock``)."""
    from great_expectations.validator.validator import Validator

    build = Validator._generate_metric_dependency_subgraphs_for_each_expectation_configuration

    def subgraphs(
        self: Any,
        expectation_configurations: list[Any],
        processed_configurations: list[Any],
        catch_exceptions: bool,
        runtime_configuration: dict[str, Any] | None = None,
    ) -> tuple[list[Any], list[Any], list[Any]]:
        if getattr(_local, "memo", None) is None:
            return build(
                self,
                expectation_configurations=expectation_configurations,
                processed_configurations=processed_configurations,
                catch_exceptions=catch_exceptions,
                runtime_configuration=runtime_configuration,
            )
        graphs, evrs = [], []
        kept = _graphs(self)
        for configuration in expectation_configurations:
            key = _graph_key(self, configuration, runtime_configuration)
            graph = kept.get(key)
            if graph is None:  # not built before, or its build failed: as GX does
                graph_list, failed, _ = build(
                    self,
                    expectation_configurations=[configuration],
                    processed_configurations=[],
                    catch_exceptions=catch_exceptions,
                    runtime_configuration=runtime_configuration,
                )
                if failed:
                    evrs.extend(failed)
                    continue
                graph = graph_list[0]
                if len(kept) >= _GRAPHS_KEPT:
                    kept.clear()  # parameters moved a lot; rebuild what is used again
                kept[key] = graph
            graphs.append(graph)
            processed_configurations.append(graph.configuration)
        return graphs, evrs, processed_configurations

    Validator._generate_metric_dependency_subgraphs_for_each_expectation_configuration = (  # type: ignore[method-assign]
        subgraphs
    )


def _graph_key(validator: Any, configuration: Any, runtime: dict[str, Any] | None) -> str:
    """Everything a graph is built from, as GX serialises it."""
    return json.dumps(
        [
            validator.active_batch_id,
            configuration.to_json_dict(),
            runtime or {},
        ],
        sort_keys=True,
        default=str,
    )


def _graphs(validator: Any) -> dict[str, Any]:
    engine = validator._execution_engine
    kept: dict[str, Any] | None = getattr(engine, "_orderhealth_graphs", None)
    if kept is None:
        kept = {}
        engine._orderhealth_graphs = kept
    return kept
