"""dcgm-exporter pages (Prometheus text format 0.0.4, or OpenMetrics) parsed into a chunk.

The result is the collector's ``ParsedChunk``, the structure the CSV parser fills, so a scraped
or pushed page is committed exactly as CSV rows are: each DCGM field sample of a series is a
row, a series whose labels name no valid device or whose value is a DCGM blank sentinel is a
rejected line (its line number in the page, its text and the reason), and the samples of
families that are not DCGM fields (``go_*``, ``process_*``, ``promhttp_*``) are skipped and
counted. Labels are mapped by ``ingest.devices``; an OpenMetrics counter's ``_total`` sample is
its field's value and its ``_created`` sample is ignored.

A page the parser refuses raises ``ExpositionError`` and yields no rows: the caller fails the
scrape (or push) as a whole rather than storing half a page.

Times: in processing mode every sample is stamped with the scrape time; in source mode a
sample keeps its own exposition timestamp when it has one, else the scrape time.

Why prometheus_client's parsers rather than one of the project's own: measured on the same
pages (``make bench-exposition``, figures in ``docs/exposition-parsing.md``), this module costs
60 to 65 us of CPU a sample, almost all of it the library's parsing. The scale target, 100
exporters x 8 GPUs x 40 fields every 10 s, is 3,200 samples a second: about a fifth of one
core, well within two. A parser of our own could be several times faster but would be a second
implementation of the format (escapes, quoted names, exemplars, OpenMetrics' grouping rules)
to keep in agreement with the library forever; the measurement is where to start if a
collector must one day carry a fleet several times the target.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Final

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families
from prometheus_client.samples import Timestamp

from ingest.blanks import SMALLEST_SENTINEL, blank_reason
from ingest.dcgm import (
    FIRST_YEAR,
    LAST_YEAR,
    MAX_FIELD_CHARS,
    MetricDoc,
    ParsedChunk,
    RejectedLine,
    RowError,
    printable_line,
)
from ingest.devices import gpu_from_labels
from ingest.fields import dcgm_type

DCGM_FAMILY_PREFIX: Final = "DCGM_FI_"
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class ExpositionError(ValueError):
    """A page the parser refuses as a whole (not UTF-8, not the format, a repeated series)."""


def parse_page(
    data: bytes,
    *,
    scraped_at: datetime,
    openmetrics: bool = False,
    source_times: bool = False,
    keep_job_and_instance: bool = True,
    first_line: int = 1,
) -> ParsedChunk:
    """The DCGM samples of one page; raises ``ExpositionError`` for a page it cannot read.

    ``first_line`` is the number of the page's first line (a part of a larger page).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ExpositionError(f"the page is not UTF-8: {error}") from None
    families = _families(text, openmetrics)
    lines = _sample_lines(text, first_line)
    read = sum(len(family.samples) for family in families)
    if read != len(lines):
        raise ExpositionError(
            f"the page has {len(lines)} sample lines but {read} distinct samples "
            "(a series repeated at the same time?)"
        )
    builder = LabelledRows(scraped_at, source_times, keep_job_and_instance)
    builder.add_families(families, iter(lines))
    return builder.parsed


def _families(text: str, openmetrics: bool) -> list[Metric]:
    parse = openmetrics_families if openmetrics else text_families
    try:
        # Read whole before any sample is used: a page refused at its end yields nothing.
        return list(parse(text))
    except Exception as error:  # noqa: BLE001  (the library raises several types on bad pages)
        kind = "OpenMetrics" if openmetrics else "Prometheus text format"
        raise ExpositionError(f"not a valid {kind} page: {error}"[:500]) from None


def _sample_lines(text: str, first_line: int) -> list[tuple[int, str]]:
    """(line number, text) of the page's sample lines, in the order the parsers read them."""
    return [
        (number, line.rstrip("\n"))
        for number, line in enumerate(io.StringIO(text), start=first_line)
        if line.strip() and not line.lstrip().startswith("#")
    ]


class LabelledRows:
    """Fills a ``ParsedChunk`` from samples named by label sets, each distinct series resolved
    once: the rows of an exposition page, and of series pushed by remote write
    (``ingest.pushed_series``)."""

    def __init__(self, scraped_at: datetime, source_times: bool, keep_job_and_instance: bool):
        self.parsed = ParsedChunk(times=[scraped_at])
        self.source_times = source_times
        self.keep_job_and_instance = keep_job_and_instance
        self.rejections: list[RejectedLine] = []
        # A series' labels -> its position in parsed.gpus, or the reason it is invalid.
        self.series: dict[tuple[tuple[str, str], ...], int | str] = {}
        self.metric_at: dict[str, int] = {}
        self.time_at: dict[int, int] = {}

    def add_families(self, families: Iterable[Metric], lines: Iterator[tuple[int, str]]) -> None:
        for family in families:
            if not family.name.startswith(DCGM_FAMILY_PREFIX):
                for _ in family.samples:
                    next(lines)
                self.parsed.skipped += len(family.samples)
                continue
            self.parsed.metric_docs.setdefault(
                family.name, MetricDoc(family.documentation, family.type)
            )
            value_name = _value_sample_name(family)
            for sample in family.samples:
                line_number, raw = next(lines)
                if sample.name == value_name:
                    reason = self.add(
                        self.series_of(sample.labels),
                        family.name,
                        sample.value,
                        sample.timestamp,
                        line_number,
                    )
                elif family.type == "counter" and sample.name == family.name + "_created":
                    continue
                else:
                    reason = f"{sample.name} is not the value of the {family.type} {family.name}"
                if reason is not None:
                    self.reject(line_number, raw, reason)
        self.finish()

    def reject(self, line_number: int, raw: str, reason: str) -> None:
        self.rejections.append(RejectedLine(line_number, printable_line(raw.encode()), reason))

    def finish(self) -> ParsedChunk:
        """The rows, with the rejections in line order."""
        self.rejections.sort()
        self.parsed.rejected = self.rejections
        return self.parsed

    def add(
        self,
        series: int | str,
        field: str,
        value: float,
        timestamp: Timestamp | float | None,
        line_number: int,
    ) -> str | None:
        """Add a sample of ``series`` (a ``series_of`` answer) as a row; the reason it is
        rejected, or None. ``timestamp``: the exposition's own (seconds), or None."""
        if isinstance(series, str):
            return series
        if isinstance(value, float) and not math.isfinite(value):
            return f"value {value!r} is not finite"
        if value >= SMALLEST_SENTINEL:
            blank = blank_reason(value, dcgm_type(field))
            if blank is not None:
                return blank
        try:
            number = float(value)
        except OverflowError:
            return f"value {str(value)[:40]} is out of range"
        metric = self._metric(field)
        if isinstance(metric, str):
            return metric
        time: int | str = 0
        if self.source_times and timestamp is not None:
            time = self._time(timestamp)
        if isinstance(time, str):
            return time
        parsed = self.parsed
        parsed.gpu_of_row.append(series)
        parsed.metric_of_row.append(metric)
        parsed.time_of_row.append(time)
        parsed.values.append(number)
        parsed.line_of_row.append(line_number)
        return None

    def series_of(self, labels: dict[str, str]) -> int | str:
        """The position of the device ``labels`` name in ``parsed.gpus``, or why they name none."""
        key = tuple(labels.items())
        known = self.series.get(key)
        if known is None:
            try:
                gpu = gpu_from_labels(labels, keep_job_and_instance=self.keep_job_and_instance)
            except RowError as error:
                known = str(error)
            else:
                known = len(self.parsed.gpus)
                self.parsed.gpus.append(gpu)
            self.series[key] = known
        return known

    def _metric(self, field: str) -> int | str:
        if len(field) > MAX_FIELD_CHARS["metric_name"]:
            return f"metric_name is longer than {MAX_FIELD_CHARS['metric_name']} characters"
        at = self.metric_at.get(field)
        if at is None:
            at = self.metric_at[field] = len(self.parsed.metrics)
            self.parsed.metrics.append(field)
        return at

    def _time(self, timestamp: Timestamp | float) -> int | str:
        outside = f"timestamp {timestamp} is outside the years {FIRST_YEAR} to {LAST_YEAR}"
        try:
            microseconds = _microseconds(timestamp)
            at = self.time_at.get(microseconds)
            if at is None:
                moment = EPOCH + timedelta(microseconds=microseconds)
                if not FIRST_YEAR <= moment.year <= LAST_YEAR:
                    return outside
                at = self.time_at[microseconds] = len(self.parsed.times)
                self.parsed.times.append(moment)
        except (OverflowError, ValueError):  # infinite, NaN, or past the calendar
            return outside
        return at


def _value_sample_name(family: Metric) -> str:
    # The text parser names a counter's samples <family>_total, as OpenMetrics does.
    return family.name + "_total" if family.type == "counter" else family.name


def _microseconds(timestamp: Timestamp | float) -> int:
    if isinstance(timestamp, Timestamp):
        return timestamp.sec * 1_000_000 + timestamp.nsec // 1000
    # The text format's milliseconds, which the parser divided by 1000.
    return round(timestamp * 1000) * 1000
