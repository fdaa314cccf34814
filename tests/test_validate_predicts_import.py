"""``validate_csv`` predicts ``import_csv``: the same files, the same flags, the same verdict.

Each case validates a file and imports it through real streamer and collector workers with
the same RETENTION_DAYS, then compares what both say: good rows against committed rows,
rejected rows, and the rejection reasons with their counts and first lines. The import names
its reasons (the five most frequent) before its last line, which stays
``committed=<n> rejected=<n> seconds=<s>``.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command, load_command_class
from pytest_django.fixtures import Settings

from ingest.models import RejectedRow
from ingest.rejections import ReasonTally
from tests.support.pipeline import generate_csv
from tests.support.reference import REFERENCE_CSV
from tests.support.workers import WorkerFactory

LAST_LINE = re.compile(r"committed=(\d+) rejected=(\d+) seconds=\d+\.\d{3}")
# The lines of a reason report: a group with its count, the note on retention.
REPORT_LINE = re.compile(r"^ +\d+  .*$|^\d+ rows are older than RETENTION_DAYS=.*$", re.MULTILINE)


def row(timestamp: str, *, uuid: str = "GPU-recent", value: str = "1") -> str:
    fields = [timestamp, "DCGM_FI_DEV_GPU_UTIL", "0", "nvidia0", uuid, "H100", "host-r",
              "", "", "", value, ""]  # fmt: skip
    return ",".join(f'"{field}"' for field in fields) + "\n"


def mixed_file(path: Path) -> Path:
    """Rows of July 2025, recent rows, and bad rows of four kinds."""
    generate_csv(path, hosts=2, gpus_per_host=8, metrics=10, timesteps=3)  # 480 rows of 2025
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    recent = [
        row(f"{(hour_ago + timedelta(seconds=n)).isoformat()}", uuid=f"GPU-r{n % 4}")
        for n in range(20)
    ]
    bad = [
        row(hour_ago.isoformat(), value="abc"),
        row(hour_ago.isoformat(), value="n/a"),
        row(hour_ago.isoformat(), value="x"),
        row(hour_ago.strftime("%Y-%m-%dT%H:%M:%S")),  # no zone
        row(hour_ago.strftime("%Y-%m-%dT%H:%M:%S")),
        '"only","three","fields"\n',
        row(hour_ago.isoformat(), uuid=""),
        row(hour_ago.isoformat(), uuid=""),
    ]
    with path.open("a") as out:
        out.writelines(recent[:10] + bad[:4] + recent[10:] + bad[4:])
    return path


def validate(path: Path) -> tuple[str, dict[str, int]]:
    out = io.StringIO()
    refused = False
    try:
        call_command("validate_csv", str(path), stdout=out)
    except CommandError:
        refused = True
    output = out.getvalue()
    last = output.strip().splitlines()[-1]
    counts = {key: int(value) for key, value in (part.split("=") for part in last.split()[1:])}
    assert refused == (counts["rejected"] > 0)  # its exit status
    return output, counts


def validate_then_import(path: Path) -> tuple[dict[str, int], str]:
    """(validate_csv's counts, import_csv's output) for one file, once their verdicts agree."""
    predicted, counts = validate(path)
    out = io.StringIO()
    rejected_before = RejectedRow.objects.count()
    call_command("import_csv", str(path), batch_size=100, no_progress=True, stdout=out)
    imported = out.getvalue()
    last = LAST_LINE.fullmatch(imported.strip().splitlines()[-1])
    assert last is not None, imported
    committed, rejected = int(last[1]), int(last[2])
    assert (committed, rejected) == (counts["good"], counts["rejected"])
    assert RejectedRow.objects.count() - rejected_before == rejected
    report = REPORT_LINE.findall(imported)
    assert report == REPORT_LINE.findall(predicted)
    assert bool(report) == bool(rejected)
    return counts, imported


# What both commands say of the reference export under a 30-day window, before the last line.
PAST_RETENTION_REPORT = [
    "        2470  timestamp is older than the 30-day retention (e.g. line 2)",
    "2470 rows are older than RETENTION_DAYS=30 allows: RETENTION_DAYS=0 keeps rows of any age "
    "(make run's var/dev.env sets it); set it, or a wider window, where the collectors and "
    "validate_csv run",
]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("retention_days", "reference_counts", "mixed_counts", "reference_report"),
    [(30, (0, 2470), (20, 488), PAST_RETENTION_REPORT), (0, (2470, 0), (500, 8), [])],
)
def test_validate_csv_predicts_exactly_what_import_csv_commits_and_rejects(
    workers: WorkerFactory,
    settings: Settings,
    tmp_path: Path,
    retention_days: int,
    reference_counts: tuple[int, int],
    mixed_counts: tuple[int, int],
    reference_report: list[str],
) -> None:
    settings.RETENTION_DAYS = retention_days  # for validate_csv, in this process
    workers.streamer()
    workers.collector(extra_env={"RETENTION_DAYS": str(retention_days)})

    counts, imported = validate_then_import(REFERENCE_CSV)
    assert (counts["good"], counts["rejected"]) == reference_counts
    assert REPORT_LINE.findall(imported) == reference_report
    if reference_report:  # the import's report sits right before its last line
        lines = imported.strip().splitlines()
        assert lines[-4:-1] == ["rejected rows by reason:", *reference_report]

    counts, imported = validate_then_import(mixed_file(tmp_path / "mixed.csv"))
    assert (counts["good"], counts["rejected"]) == mixed_counts, imported


def test_a_report_names_the_five_most_frequent_reasons_and_counts_the_rest() -> None:
    tally = ReasonTally()
    for count, reason in enumerate(
        ["uuid is empty", "value 'a' is not a number", "value 'b' is not finite",
         "timestamp 'x' has no time zone", "expected 12 columns, found 3",
         "gpu_id 99999 is out of range", "metric_name is empty"],
        start=1,
    ):  # fmt: skip
        tally.add(reason, line_number=100 - count, count=count)
    tally.add("value 'c' is not a number", line_number=7)

    lines = tally.report_lines(limit=5)

    assert lines == [
        "           7  metric_name is empty (e.g. line 93)",
        "           6  gpu_id is out of range (e.g. line 94)",
        "           5  wrong number of columns (expected 12) (e.g. line 95)",
        "           4  timestamp has no time zone (e.g. line 96)",
        "           3  value is not a number (e.g. line 7)",
        "           4  for 2 other reasons",
    ]


@pytest.mark.parametrize("command", ["validate_csv", "import_csv"])
def test_both_commands_default_to_the_sources_own_timestamps(command: str) -> None:
    parser = load_command_class("ingest", command).create_parser("manage.py", command)
    assert parser.get_default("timestamp_mode") == "source"


def test_validate_csv_in_processing_mode_rejects_nothing_for_age(settings: Settings) -> None:
    settings.RETENTION_DAYS = 30
    output, counts = validate(REFERENCE_CSV)
    assert counts["rejected"] == 2470
    assert "2470  timestamp is older than the 30-day retention" in output
    processing = io.StringIO()
    call_command("validate_csv", str(REFERENCE_CSV), timestamp_mode="processing", stdout=processing)
    assert "rejected=0" in processing.getvalue()
