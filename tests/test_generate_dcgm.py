"""The synthetic DCGM CSV must be indistinguishable in layout from the reference export.

Tests of ``bench.dcgm_generator`` need neither Django nor a database; the command tests
at the end go through ``call_command`` and so need the project's settings.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.dcgm_generator import (
    METRIC_NAMES,
    GeneratorSpec,
    InvalidSpecError,
    write_dcgm_csv,
)
from tests.support.reference import REFERENCE_HEADER

# The first two lines of dcgm_metrics_20250718_134233.csv, the reference export.
REFERENCE_HEADER_LINE = REFERENCE_HEADER.decode()
REFERENCE_FIRST_ROW_LINE = (
    '"2025-07-18T20:42:34Z","DCGM_FI_DEV_GPU_UTIL","0","nvidia0",'
    '"GPU-5fd4f087-86f3-7a43-b711-4771313afc50","NVIDIA H100 80GB HBM3",'
    '"mtv5-dgx1-hgpu-031","","","","0",'
    '"DCGM_FI_DRIVER_VERSION=""535.129.03"",Hostname=""mtv5-dgx1-hgpu-031"",'
    'UUID=""GPU-5fd4f087-86f3-7a43-b711-4771313afc50"",__name__=""DCGM_FI_DEV_GPU_UTIL"",'
    'device=""nvidia0"",gpu=""0"",instance=""mtv5-dgx1-hgpu-031:9400"",'
    'job=""dgx_dcgm_exporter"",modelName=""NVIDIA H100 80GB HBM3"""'
)
REFERENCE_METRICS = {
    "DCGM_FI_DEV_DEC_UTIL",
    "DCGM_FI_DEV_ENC_UTIL",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_MEM_CLOCK",
    "DCGM_FI_DEV_MEM_COPY_UTIL",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_SM_CLOCK",
}
COLUMNS = REFERENCE_HEADER_LINE.split(",")
UUID_SHAPE = re.compile(r"GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
LABEL_PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="([^"]*)"')

SMALL_FLEET = {"hosts": 3, "gpus_per_host": 4}


def generate(**fields: object) -> bytes:
    output = io.BytesIO()
    write_dcgm_csv(output, GeneratorSpec(**fields))  # type: ignore[arg-type]
    return output.getvalue()


def data_lines(data: bytes) -> list[str]:
    text = data.decode("ascii")
    assert text.endswith("\n")
    return text[:-1].split("\n")[1:]


def records(data: bytes) -> list[dict[str, str]]:
    """Parse each line on its own, as the ingest side does, and key it by column name."""
    parsed = []
    for line in data_lines(data):
        fields = next(csv.reader([line], strict=True))
        assert len(fields) == len(COLUMNS), line
        parsed.append(dict(zip(COLUMNS, fields, strict=True)))
    return parsed


def parse_labels(labels_raw: str) -> dict[str, str]:
    pairs = LABEL_PAIR.findall(labels_raw)
    assert ",".join(f'{key}="{value}"' for key, value in pairs) == labels_raw
    return dict(pairs)


def reference_first_record() -> dict[str, str]:
    fields = next(csv.reader([REFERENCE_FIRST_ROW_LINE], strict=True))
    return dict(zip(COLUMNS, fields, strict=True))


# --- Layout ---------------------------------------------------------------------------------


def test_header_equals_the_reference_header() -> None:
    first_line = generate(**SMALL_FLEET).split(b"\n", 1)[0]
    assert first_line.decode("ascii") == REFERENCE_HEADER_LINE


def test_every_line_parses_with_the_csv_module_into_twelve_fields() -> None:
    data = generate(**SMALL_FLEET, metrics=len(METRIC_NAMES), timesteps=3, workload_fraction=0.5)
    assert b"\r" not in data
    for line in data_lines(data):
        fields = next(csv.reader([line], strict=True))
        assert len(fields) == 12, line


def test_every_field_is_double_quoted_like_the_reference_rows() -> None:
    line = data_lines(generate(**SMALL_FLEET, workload_fraction=1.0))[0]
    fields = next(csv.reader([line], strict=True))
    requoted = ",".join('"' + field.replace('"', '""') + '"' for field in fields)
    assert line == requoted


def test_labels_raw_has_the_same_keys_as_the_reference_first_row() -> None:
    reference_keys = parse_labels(reference_first_record()["labels_raw"]).keys()
    for record in records(
        generate(**SMALL_FLEET, metrics=len(METRIC_NAMES), workload_fraction=0.5)
    ):
        assert parse_labels(record["labels_raw"]).keys() == reference_keys


def test_labels_raw_agrees_with_the_row_it_belongs_to() -> None:
    for record in records(generate(**SMALL_FLEET, timesteps=2)):
        labels = parse_labels(record["labels_raw"])
        assert labels["Hostname"] == record["Hostname"]
        assert labels["UUID"] == record["uuid"]
        assert labels["__name__"] == record["metric_name"]
        assert labels["device"] == record["device"] == f"nvidia{record['gpu_id']}"
        assert labels["gpu"] == record["gpu_id"]
        assert labels["modelName"] == record["modelName"]
        assert labels["instance"] == f"{record['Hostname']}:9400"


def test_hostnames_follow_the_reference_naming() -> None:
    hostnames = {record["Hostname"] for record in records(generate(**SMALL_FLEET))}
    assert hostnames == {"mtv5-dgx1-hgpu-001", "mtv5-dgx1-hgpu-002", "mtv5-dgx1-hgpu-003"}


def test_the_first_ten_metrics_are_the_reference_metrics() -> None:
    assert set(METRIC_NAMES[:10]) == REFERENCE_METRICS
    assert len(set(METRIC_NAMES)) == len(METRIC_NAMES) >= 20


@pytest.mark.parametrize("metric_count", [1, 4, 10, len(METRIC_NAMES)])
def test_a_metric_count_selects_that_many_names_from_the_front_of_the_list(
    metric_count: int,
) -> None:
    names = {
        record["metric_name"] for record in records(generate(**SMALL_FLEET, metrics=metric_count))
    }
    assert names == set(METRIC_NAMES[:metric_count])


# --- Size -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hosts", "gpus_per_host", "metrics", "timesteps"),
    [(1, 1, 1, 1), (2, 8, 10, 3), (5, 2, 20, 4)],
)
def test_row_count_is_hosts_times_gpus_times_metrics_times_timesteps(
    hosts: int, gpus_per_host: int, metrics: int, timesteps: int
) -> None:
    spec = GeneratorSpec(
        hosts=hosts, gpus_per_host=gpus_per_host, metrics=metrics, timesteps=timesteps
    )
    output = io.BytesIO()
    written = write_dcgm_csv(output, spec)
    expected = hosts * gpus_per_host * metrics * timesteps
    assert written == spec.row_count == expected
    assert len(data_lines(output.getvalue())) == expected


def test_the_default_spec_is_one_timestep_of_the_reference_sized_fleet() -> None:
    assert len(data_lines(generate())) == 31 * 8 * 10


@pytest.mark.parametrize("rows", [1, 7, 12 * 10, 12 * 10 * 2 + 5])
def test_a_rows_cap_writes_exactly_that_many_rows(rows: int) -> None:
    output = io.BytesIO()
    written = write_dcgm_csv(output, GeneratorSpec(hosts=3, gpus_per_host=4, rows=rows))
    assert written == rows
    assert len(data_lines(output.getvalue())) == rows


def test_a_rows_cap_stops_inside_an_explicit_span() -> None:
    assert len(data_lines(generate(**SMALL_FLEET, timesteps=50, rows=333))) == 333


def test_a_rows_cap_beyond_the_span_writes_the_whole_span() -> None:
    assert len(data_lines(generate(**SMALL_FLEET, timesteps=2, rows=10_000))) == 12 * 10 * 2


def test_a_capped_file_is_a_prefix_of_the_uncapped_one() -> None:
    uncapped = generate(**SMALL_FLEET, timesteps=4)
    capped = generate(**SMALL_FLEET, timesteps=4, rows=250)
    assert uncapped.startswith(capped)


def test_output_is_written_in_bounded_blocks_not_as_one_buffer() -> None:
    class WriteSizeRecorder(io.RawIOBase):
        def __init__(self) -> None:
            self.sizes: list[int] = []

        def writable(self) -> bool:
            return True

        def write(self, data: object) -> int:
            size = len(memoryview(data))  # type: ignore[arg-type]
            self.sizes.append(size)
            return size

    recorder = WriteSizeRecorder()
    write_dcgm_csv(recorder, GeneratorSpec(hosts=40, rows=100_000))  # type: ignore[arg-type]
    assert sum(recorder.sizes) > 20 * max(recorder.sizes)


@settings(max_examples=25, deadline=None)
@given(
    hosts=st.integers(1, 4),
    gpus_per_host=st.integers(1, 4),
    metrics=st.integers(1, len(METRIC_NAMES)),
    timesteps=st.integers(1, 4),
    rows=st.none() | st.integers(1, 400),
    workload_fraction=st.floats(0.0, 1.0),
)
def test_any_small_spec_gives_the_promised_number_of_well_formed_rows(
    hosts: int,
    gpus_per_host: int,
    metrics: int,
    timesteps: int,
    rows: int | None,
    workload_fraction: float,
) -> None:
    spec = GeneratorSpec(
        hosts=hosts,
        gpus_per_host=gpus_per_host,
        metrics=metrics,
        timesteps=timesteps,
        rows=rows,
        workload_fraction=workload_fraction,
    )
    output = io.BytesIO()
    written = write_dcgm_csv(output, spec)
    full = hosts * gpus_per_host * metrics * timesteps
    assert written == (full if rows is None else min(rows, full))
    assert len(records(output.getvalue())) == written


# --- Determinism and identity ---------------------------------------------------------------


def test_same_seed_gives_byte_identical_files() -> None:
    fields = {**SMALL_FLEET, "metrics": 20, "timesteps": 5, "workload_fraction": 0.4, "seed": 7}
    assert generate(**fields) == generate(**fields)


def test_different_seeds_give_different_files() -> None:
    assert generate(**SMALL_FLEET, timesteps=3, seed=1) != generate(
        **SMALL_FLEET, timesteps=3, seed=2
    )


def test_different_seeds_give_different_uuids() -> None:
    def uuids(seed: int) -> set[str]:
        return {record["uuid"] for record in records(generate(**SMALL_FLEET, seed=seed))}

    assert uuids(1).isdisjoint(uuids(2))


def test_uuids_are_unique_per_gpu_and_stable_across_timesteps() -> None:
    uuids_by_gpu: dict[tuple[str, str], set[str]] = defaultdict(set)
    for record in records(generate(hosts=4, gpus_per_host=8, metrics=3, timesteps=6)):
        assert UUID_SHAPE.fullmatch(record["uuid"])
        uuids_by_gpu[record["Hostname"], record["gpu_id"]].add(record["uuid"])
    assert len(uuids_by_gpu) == 32
    assert all(len(uuids) == 1 for uuids in uuids_by_gpu.values())
    assert len({uuid for uuids in uuids_by_gpu.values() for uuid in uuids}) == 32


def test_a_gpu_keeps_its_uuid_whatever_the_fleet_size_or_start() -> None:
    def uuid_by_gpu(**fields: object) -> dict[tuple[str, str], str]:
        return {
            (record["Hostname"], record["gpu_id"]): record["uuid"]
            for record in records(generate(**fields))
        }

    small = uuid_by_gpu(hosts=2, gpus_per_host=2, metrics=1)
    large = uuid_by_gpu(hosts=5, gpus_per_host=4, metrics=3, start=datetime(2026, 1, 1, tzinfo=UTC))
    assert small.items() <= large.items()


# --- Time -----------------------------------------------------------------------------------


@pytest.mark.parametrize("interval_seconds", [1, 10, 60])
def test_timestamps_step_by_the_interval(interval_seconds: int) -> None:
    start = datetime(2025, 7, 18, 20, 42, 34, tzinfo=UTC)
    data = generate(**SMALL_FLEET, timesteps=5, interval_seconds=interval_seconds, start=start)
    timestamps = list(dict.fromkeys(record["timestamp"] for record in records(data)))
    expected = [start + step * timedelta(seconds=interval_seconds) for step in range(5)]
    assert timestamps == [moment.strftime("%Y-%m-%dT%H:%M:%SZ") for moment in expected]


def test_each_timestep_holds_one_row_per_host_gpu_and_metric() -> None:
    rows_per_timestamp: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for record in records(generate(**SMALL_FLEET, metrics=5, timesteps=3)):
        key = (record["Hostname"], record["gpu_id"], record["metric_name"])
        rows_per_timestamp[record["timestamp"]].append(key)
    for keys in rows_per_timestamp.values():
        assert len(keys) == len(set(keys)) == 3 * 4 * 5


def test_a_start_in_another_zone_is_written_in_utc() -> None:
    start = datetime.fromisoformat("2025-07-18T22:42:34+02:00")
    first = records(generate(**SMALL_FLEET, start=start))[0]
    assert first["timestamp"] == "2025-07-18T20:42:34Z"


# --- Values ---------------------------------------------------------------------------------


# Bounds a real fleet stays within; the reference export sits well inside them.
PLAUSIBLE_RANGES = {
    "DCGM_FI_DEV_GPU_UTIL": (0, 100),
    "DCGM_FI_DEV_MEM_COPY_UTIL": (0, 100),
    "DCGM_FI_DEV_POWER_USAGE": (20, 700),
    "DCGM_FI_DEV_GPU_TEMP": (20, 90),
    "DCGM_FI_DEV_FB_USED": (0, 82_000),
    "DCGM_FI_DEV_FB_FREE": (0, 82_000),
    "DCGM_FI_DEV_DEC_UTIL": (0, 100),
    "DCGM_FI_DEV_ENC_UTIL": (0, 100),
    "DCGM_FI_DEV_SM_CLOCK": (100, 3_000),
    "DCGM_FI_DEV_MEM_CLOCK": (100, 10_000),
}
BUSY_UTILISATION = 50


def test_values_stay_in_plausible_ranges() -> None:
    values: dict[str, list[float]] = defaultdict(list)
    for record in records(generate(hosts=8, metrics=10, timesteps=30, workload_fraction=0.3)):
        values[record["metric_name"]].append(float(record["value"]))
    assert values.keys() == PLAUSIBLE_RANGES.keys()
    for metric, (lowest, highest) in PLAUSIBLE_RANGES.items():
        assert min(values[metric]) >= lowest, metric
        assert max(values[metric]) <= highest, metric
    assert max(values["DCGM_FI_DEV_GPU_UTIL"]) > BUSY_UTILISATION, "some GPUs should be busy"
    assert min(values["DCGM_FI_DEV_GPU_UTIL"]) == 0, "some GPUs should be idle"


def test_used_plus_free_frame_buffer_is_constant_for_each_gpu() -> None:
    totals: dict[tuple[str, str, str], float] = defaultdict(float)
    for record in records(generate(**SMALL_FLEET, metrics=6, timesteps=20)):
        if record["metric_name"] in ("DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"):
            key = (record["timestamp"], record["Hostname"], record["gpu_id"])
            totals[key] += float(record["value"])
    per_gpu: dict[tuple[str, str], set[float]] = defaultdict(set)
    for (_, hostname, gpu_id), total in totals.items():
        per_gpu[hostname, gpu_id].add(total)
    assert all(len(gpu_totals) == 1 for gpu_totals in per_gpu.values())


def test_workload_fraction_fills_namespace_pod_and_container_on_that_share_of_rows() -> None:
    parsed = records(generate(hosts=5, gpus_per_host=8, timesteps=2, workload_fraction=0.25))
    with_workload = [record for record in parsed if record["pod"]]
    assert len(with_workload) == len(parsed) // 4
    assert all(record["namespace"] and record["container"] for record in with_workload)
    without = [record for record in parsed if not record["pod"]]
    assert all(not record["namespace"] and not record["container"] for record in without)


def test_no_workload_fraction_leaves_container_pod_and_namespace_empty() -> None:
    for record in records(generate(**SMALL_FLEET)):
        assert record["container"] == record["pod"] == record["namespace"] == ""


# --- Spec validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("hosts", 0),
        ("gpus_per_host", -1),
        ("metrics", 0),
        ("metrics", len(METRIC_NAMES) + 1),
        ("timesteps", 0),
        ("interval_seconds", 0),
        ("rows", 0),
        ("workload_fraction", 1.5),
        ("start", datetime(2025, 7, 18, 20, 42, 34)),
    ],
)
def test_the_spec_rejects_out_of_range_fields_naming_the_field(
    field_name: str, value: object
) -> None:
    with pytest.raises(InvalidSpecError) as raised:
        GeneratorSpec(**{field_name: value})  # type: ignore[arg-type]
    assert raised.value.field_name == field_name


# --- Management command ---------------------------------------------------------------------


def run_command(*args: str, **options: object) -> str:
    """Run ``generate_dcgm`` and return what it printed to stderr."""
    stderr = io.StringIO()
    call_command("generate_dcgm", *args, stderr=stderr, **options)
    return stderr.getvalue()


def test_the_command_writes_the_file_and_prints_a_summary(tmp_path: Path) -> None:
    output = tmp_path / "metrics.csv"
    summary = run_command(
        str(output), "--hosts", "2", "--gpus-per-host", "3", "--metrics", "4", "--timesteps", "5"
    )
    assert len(data_lines(output.read_bytes())) == 2 * 3 * 4 * 5
    assert summary.strip() == f"wrote 120 rows to {output} (2 hosts, 6 GPUs, 4 metrics)"


def test_the_command_writes_what_the_module_writes_for_the_same_spec(tmp_path: Path) -> None:
    output = tmp_path / "metrics.csv"
    run_command(
        str(output),
        "--hosts=3",
        "--seed=9",
        "--interval=30",
        "--start=2025-07-19T00:00:00+02:00",
        "--rows=500",
        "--workload-fraction=0.5",
    )
    spec_output = generate(
        hosts=3,
        seed=9,
        interval_seconds=30,
        start=datetime.fromisoformat("2025-07-19T00:00:00+02:00"),
        rows=500,
        workload_fraction=0.5,
    )
    assert output.read_bytes() == spec_output


def test_a_dash_sends_the_csv_to_stdout(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    summary = run_command("-", "--hosts", "1", "--gpus-per-host", "1", "--metrics", "1")
    captured = capsysbinary.readouterr().out
    assert captured == generate(hosts=1, gpus_per_host=1, metrics=1)
    assert "wrote 1 rows to stdout" in summary


@pytest.mark.parametrize(
    ("duration", "interval", "timesteps"),
    [("1h", "10", 360), ("30m", "60", 30), ("90s", "60", 2), ("1h30m", "600", 9)],
)
def test_the_command_turns_a_duration_into_timesteps(
    tmp_path: Path, duration: str, interval: str, timesteps: int
) -> None:
    output = tmp_path / "metrics.csv"
    run_command(
        str(output),
        "--hosts=1",
        "--gpus-per-host=1",
        "--metrics=1",
        f"--duration={duration}",
        f"--interval={interval}",
    )
    assert len(data_lines(output.read_bytes())) == timesteps


def test_the_command_rejects_a_start_without_a_zone(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="--start"):
        run_command(str(tmp_path / "out.csv"), "--start", "2025-07-18T20:42:34")
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("hosts", ["0", "-3"])
def test_the_command_rejects_a_non_positive_host_count(tmp_path: Path, hosts: str) -> None:
    with pytest.raises(CommandError, match="--hosts"):
        run_command(str(tmp_path / "out.csv"), f"--hosts={hosts}")


@pytest.mark.parametrize(
    ("arguments", "flag"),
    [
        (["--gpus-per-host=0"], "--gpus-per-host"),
        ([f"--metrics={len(METRIC_NAMES) + 1}"], "--metrics"),
        (["--interval=0"], "--interval"),
        (["--rows=0"], "--rows"),
        (["--workload-fraction=2"], "--workload-fraction"),
        (["--duration=soon"], "--duration"),
        (["--duration=0s"], "--duration"),
        (["--start=yesterday"], "--start"),
    ],
)
def test_the_command_names_the_flag_of_a_bad_value(
    tmp_path: Path, arguments: list[str], flag: str
) -> None:
    with pytest.raises(CommandError, match=flag):
        run_command(str(tmp_path / "out.csv"), *arguments)


def test_the_command_rejects_keyword_options_just_like_flags(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="--hosts"):
        run_command(str(tmp_path / "out.csv"), hosts=0)
    with pytest.raises(CommandError, match="--timesteps and --duration"):
        run_command(str(tmp_path / "out.csv"), timesteps=2, duration="1h")
