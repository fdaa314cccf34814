"""What parsing an exporter page costs per sample, side by side with the CSV path. Figures in
docs/exposition-parsing.md.

    .venv/bin/python -m bench.exposition_parsing [--targets 100] [--runs 5]

Builds ``--targets`` dcgm-exporter pages the size of the scale target (8 GPUs x 40 fields,
every label dcgm-exporter 3.x prints, values changing from page to page), the same pages as
OpenMetrics, and the same samples as DCGM CSV rows. Then, ``--runs`` times, alternating so a
shared machine's drift hits every variant alike, times over all pages:

- prometheus_client's text parser alone, and its OpenMetrics parser alone;
- ``ingest.exposition.parse_page`` (the parser plus the label mapping and chunk columns the
  collector uses), for each format;
- ``ingest.dcgm.parse_lines``, the collector's CSV parser, on the same samples.

Prints the median microseconds of CPU time per sample of each (CPU time, so the load of a
shared machine does not count) and, last,
``bench-exposition: text_us=... openmetrics_us=... page_text_us=... page_openmetrics_us=...
csv_us=... samples=...``. Runs in one process; needs no database.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parent.parent
GPUS: Final = 8
FIELDS: Final = 40
SCRAPED_AT: Final = datetime(2026, 3, 2, 10, 0, 10, tzinfo=UTC)


def label_sets(target: int) -> list[str]:
    """The label text of each GPU of one exporter, in dcgm-exporter 3.x's order."""
    return [
        f'gpu="{gpu}",UUID="GPU-{target:08x}-{gpu:04x}-4c83-9a27-5d31e8f04b96",'
        f'pci_bus_id="00000000:{gpu + 7:02X}:00.0",device="nvidia{gpu}",'
        f'modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-node-{target:03d}",'
        'DCGM_FI_DRIVER_VERSION="550.54.15",container="",namespace="",pod=""'
        for gpu in range(GPUS)
    ]


def pages(targets: int, seed: int = 1) -> tuple[list[bytes], list[bytes], bytes, list[str]]:
    """(text pages, OpenMetrics pages, CSV lines, CSV header) of the same samples."""
    chance = random.Random(seed)  # noqa: S311  (benchmark values, not secrets)
    fields = [f"DCGM_FI_DEV_BENCH_FIELD_{number:02d}" for number in range(FIELDS)]
    header = ["timestamp", "metric_name", "gpu_id", "device", "uuid", "modelName", "Hostname",
              "container", "pod", "namespace", "value", "labels_raw"]  # fmt: skip
    text_pages, openmetrics_pages = [], []
    rows = io.StringIO()
    writer = csv.writer(rows, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for target in range(targets):
        lines = []
        labels = label_sets(target)
        for field in fields:
            lines += [f"# HELP {field} A field of the benchmark (in W).", f"# TYPE {field} gauge"]
            for gpu, label_text in enumerate(labels):
                value = f"{chance.uniform(0, 700):.6f}"
                lines.append(f"{field}{{{label_text}}} {value}")
                writer.writerow(
                    [SCRAPED_AT.isoformat(), field, gpu, f"nvidia{gpu}",
                     label_text.split('"')[3], "NVIDIA H100 80GB HBM3",
                     f"gpu-node-{target:03d}", "", "", "", value, label_text]
                )  # fmt: skip
        text = "\n".join(lines) + "\n"
        text_pages.append(text.encode())
        openmetrics_pages.append((text + "# EOF\n").encode())
    return text_pages, openmetrics_pages, rows.getvalue().encode(), header


def timed(work: Callable[[], object]) -> float:
    # CPU time of this process: other processes on a shared machine do not count.
    started = time.process_time()
    work()
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()

    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telemetry_project.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")
    import django

    django.setup()
    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as openmetrics_families,
    )
    from prometheus_client.parser import text_string_to_metric_families as text_families

    from ingest.dcgm import ColumnLayout, parse_lines
    from ingest.exposition import parse_page

    text_pages, openmetrics_pages, csv_data, header = pages(options.targets)
    layout = ColumnLayout.from_names(header)
    samples = options.targets * GPUS * FIELDS

    def library(parse: Callable[[str], object], batch: list[bytes]) -> Callable[[], object]:
        return lambda: [list(parse(page.decode())) for page in batch]  # type: ignore[call-overload]

    def ours(openmetrics: bool, batch: list[bytes]) -> Callable[[], object]:
        return lambda: [
            parse_page(page, scraped_at=SCRAPED_AT, openmetrics=openmetrics) for page in batch
        ]

    variants: dict[str, Callable[[], object]] = {
        "text": library(text_families, text_pages),
        "openmetrics": library(openmetrics_families, openmetrics_pages),
        "page_text": ours(False, text_pages),
        "page_openmetrics": ours(True, openmetrics_pages),
        "csv": lambda: parse_lines(csv_data, layout, 2),
    }
    checked = parse_page(text_pages[0], scraped_at=SCRAPED_AT)
    if len(checked) != GPUS * FIELDS or checked.rejected:
        raise SystemExit(f"a generated page parsed to {len(checked)} rows: the benchmark is wrong")
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for run in range(options.runs):
        for name, work in variants.items():
            seconds[name].append(timed(work))
        print(f"run {run + 1}: " + "  ".join(f"{n}={s[-1]:.3f}s" for n, s in seconds.items()))
    per_sample = {name: statistics.median(times) / samples * 1e6 for name, times in seconds.items()}
    print(f"\n{samples:,} samples ({options.targets} pages of {GPUS} GPUs x {FIELDS} fields)")
    for name, micros in per_sample.items():
        print(f"  {name:<18} {micros:7.2f} us/sample  ({micros / per_sample['csv']:.1f}x CSV)")
    print(
        "bench-exposition: "
        + " ".join(f"{name}_us={micros:.2f}" for name, micros in per_sample.items())
        + f" samples={samples}"
    )


if __name__ == "__main__":
    main()
