"""The admin site of the pipeline, one module per concern.

``base`` (typed base classes, read-only rows, the action messages), ``paging`` (changelists
that never count their table), ``filters`` (typed-in GPU and time-range filters),
``telemetry`` (GPUs, metrics, workloads, samples), ``sources`` (stream sources, their cursors
and actions) and ``delivery`` (outstanding chunks, pushed parts, the ledger, attempts, rejected
rows, dead letters, counters). No admin page counts or scans the sample table.
"""

from ingest.admin import delivery, sources, telemetry  # noqa: F401  (they register their admins)
