"""Observers of pod operations, plugin runs, rollbacks and reloads, and the bundled ones.

``observer`` (the ``Observer`` base class: the pod-level hooks on top of the engine's plugin-run
hook and the configuration's reload hook), ``metrics`` (in-memory counters and histograms),
``otel`` (spans), ``otel_metrics`` (OpenTelemetry instruments) and ``prometheus`` (a collector).
"""
