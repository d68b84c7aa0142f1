"""Streaming computation of the fulfilment health index (SPEC §4).

Pure modules (settings, lifecycle, outcome, contributions, metrics,
partition_processor, window_metrics) hold the logic; ``flow`` and ``sinks`` wire
it into Bytewax and Delta.
"""
