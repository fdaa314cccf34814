"""Tools apart from the pipeline: the DCGM generator, the benchmarks and their databases.

Nothing in ``ingest``, ``api`` or ``telemetry_project`` imports this package (an
import-linter contract in ``pyproject.toml`` checks it), and the Docker image leaves it out
(``.dockerignore``): the pipeline runs without it. Where it is present, a checkout, settings
install it as an app so that its management commands exist. docs/design.md, "Packages".
"""
