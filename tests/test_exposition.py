"""dcgm-exporter pages parsed into chunks: labels, MIG instances, sentinels, skipped families,
times, OpenMetrics, refused pages, and generated pages read back series for series.

The fixtures (``tests/fixtures/exporter``) are written in the format dcgm-exporter prints, as
its documentation shows it: HELP/TYPE lines, the label order of its template, spaces after
commas in 2.x, empty workload labels, pod labels in Kubernetes mode.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.blanks import blank_reason
from ingest.dcgm import MetricDoc, ParsedChunk
from ingest.exposition import ExpositionError, parse_page
from tests.support.exporter import FIXTURES, MIG_PARENT, NOT_SUPPORTED, OTHER_GPU

SCRAPED_AT = datetime(2026, 3, 2, 10, 0, 10, tzinfo=UTC)


def page(name: str, **options: bool) -> ParsedChunk:
    data = (FIXTURES / name).read_bytes()
    return parse_page(
        data, scraped_at=SCRAPED_AT, openmetrics=name.endswith("openmetrics.txt"), **options
    )


def values_of(parsed: ParsedChunk) -> dict[tuple[str, str, int | None], float]:
    return {(row.metric, row.uuid, row.gpu_instance_id): row.value for row in parsed.rows}


# --- dcgm-exporter 3.x with a MIG instance -------------------------------------------------


def test_every_dcgm_sample_of_the_page_is_a_row_but_the_blank_one() -> None:
    parsed = page("dcgm-exporter-3.3-mig.txt")

    assert len(parsed) == 26
    assert [(line.line_number, line.reason) for line in parsed.rejected] == [(11, NOT_SUPPORTED)]
    assert parsed.rejected[0].raw.startswith('DCGM_FI_DEV_MEMORY_TEMP{gpu="0",UUID="GPU-3431')


def test_go_process_and_promhttp_families_are_skipped_and_counted_not_rejected() -> None:
    parsed = page("dcgm-exporter-3.3-mig.txt")

    assert parsed.skipped == 6
    assert not [name for name in parsed.metrics if not name.startswith("DCGM_FI_")]


def test_a_mig_instance_is_a_device_apart_from_its_parent() -> None:
    parsed = page("dcgm-exporter-3.3-mig.txt")
    values = values_of(parsed)

    assert values[("DCGM_FI_DEV_FB_USED", MIG_PARENT, None)] == 19624
    assert values[("DCGM_FI_DEV_FB_USED", MIG_PARENT, 13)] == 576
    assert values[("DCGM_FI_PROF_GR_ENGINE_ACTIVE", MIG_PARENT, 13)] == 0.999882
    instance = next(gpu for gpu in parsed.gpus if gpu.gpu_instance_id == 13)
    assert (instance.uuid, instance.gpu_instance_profile, instance.gpu_index) == (
        MIG_PARENT,
        "1g.5gb",
        0,
    )
    assert {gpu.device_key for gpu in parsed.gpus} == {
        (MIG_PARENT, None),
        (MIG_PARENT, 13),
        (OTHER_GPU, None),
    }


def test_labels_map_to_gpu_fields_gpu_labels_and_no_workload() -> None:
    gpu = page("dcgm-exporter-3.3-mig.txt").gpus[0]

    assert (gpu.uuid, gpu.gpu_index, gpu.device, gpu.model, gpu.hostname) == (
        MIG_PARENT,
        0,
        "nvidia0",
        "NVIDIA A100-SXM4-40GB",
        "dgx-a100-04",
    )
    assert dict(gpu.labels or ()) == {
        "DCGM_FI_DRIVER_VERSION": "535.129.03",
        "pci_bus_id": "00000000:07:00.0",
    }
    assert (gpu.namespace, gpu.pod, gpu.container) == ("", "", "")


def test_values_are_read_as_written() -> None:
    values = values_of(page("dcgm-exporter-3.3-mig.txt"))

    assert values[("DCGM_FI_DEV_POWER_USAGE", MIG_PARENT, None)] == 409.692
    # Beyond 2**53: stored as the nearest double, never refused.
    assert values[("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", MIG_PARENT, None)] == float(
        9007199254740993
    )
    # An int32 sentinel's number on an int64 counter is a real count of millijoules.
    assert values[("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", MIG_PARENT, None)] == 2147483634


def test_help_and_type_of_each_field_are_kept_for_its_metric() -> None:
    docs = page("dcgm-exporter-3.3-mig.txt").metric_docs

    assert docs["DCGM_FI_DEV_POWER_USAGE"] == MetricDoc("Power draw (in W).", "gauge")
    assert docs["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"].kind == "counter"


def test_processing_mode_stamps_every_row_with_the_scrape_time() -> None:
    parsed = page("dcgm-exporter-3.3-mig.txt")

    assert {row.timestamp for row in parsed.rows} == {SCRAPED_AT}


# --- older exporters, Kubernetes, OpenMetrics -----------------------------------------------


def test_a_2x_page_with_spaces_after_commas_maps_the_same_way() -> None:
    parsed = page("dcgm-exporter-2.1-spaces.txt")

    assert len(parsed) == 6
    assert [line.reason for line in parsed.rejected] == [NOT_SUPPORTED]
    (gpu,) = parsed.gpus
    assert (gpu.uuid, gpu.gpu_index, gpu.model, gpu.hostname) == (
        "GPU-604ac76c-d9cf-fef3-62e9-d92044ab6e52",
        0,
        "Tesla T4",
        "",
    )


def test_pod_attribution_is_the_workload_and_pod_labels_are_gpu_labels() -> None:
    (gpu,) = page("dcgm-exporter-kubernetes-pod-labels.txt").gpus

    assert (gpu.namespace, gpu.pod, gpu.container) == (
        "research",
        "llm-finetune-6f9c8d7b5-x2kqp",
        "trainer",
    )
    assert dict(gpu.labels or ()) == {
        "DCGM_FI_DRIVER_VERSION": "550.54.15",
        "app": "llm-finetune",
        "pci_bus_id": "00000000:47:00.0",
        "team": "nlp",
    }


def test_openmetrics_total_suffixes_are_stripped_and_created_series_ignored() -> None:
    parsed = page("dcgm-exporter-openmetrics.txt")

    assert sorted(row.metric for row in parsed.rows) == [
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    ]
    assert [(line.line_number, line.reason) for line in parsed.rejected] == [
        (6, "DCGM not supported (fp64 blank sentinel 140737488355330.0)")
    ]
    assert parsed.skipped == 1


def test_source_mode_keeps_a_lines_own_timestamp_and_stamps_the_others() -> None:
    parsed = page("dcgm-exporter-openmetrics.txt", source_times=True)

    times = {row.metric: row.timestamp for row in parsed.rows}
    own = datetime(2025, 7, 18, 20, 42, 34, 250000, tzinfo=UTC)
    assert times["DCGM_FI_DEV_GPU_TEMP"] == own
    assert times["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"] == own
    assert times["DCGM_FI_DEV_PCIE_REPLAY_COUNTER"] == SCRAPED_AT


def test_text_format_timestamps_are_milliseconds() -> None:
    text = b'DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-1"} 40 1752871354250\n'

    parsed = parse_page(text, scraped_at=SCRAPED_AT, source_times=True)

    assert parsed.rows[0].timestamp == datetime(2025, 7, 18, 20, 42, 34, 250000, tzinfo=UTC)


# --- rows and pages refused -----------------------------------------------------------------


def test_a_series_without_uuid_or_index_is_rejected_alone() -> None:
    text = (
        b'DCGM_FI_DEV_GPU_TEMP{gpu="0"} 40\n'
        b'DCGM_FI_DEV_GPU_TEMP{UUID="GPU-1"} 41\n'
        b'DCGM_FI_DEV_GPU_TEMP{gpu="x",UUID="GPU-2"} 42\n'
        b'DCGM_FI_DEV_GPU_TEMP{gpu="3",UUID="GPU-3"} 43\n'
    )

    parsed = parse_page(text, scraped_at=SCRAPED_AT)

    assert [row.uuid for row in parsed.rows] == ["GPU-3"]
    assert [(line.line_number, line.reason) for line in parsed.rejected] == [
        (1, "the series has no UUID label"),
        (2, "the series has no gpu label"),
        (3, "gpu_id 'x' is not an integer"),
    ]


@pytest.mark.parametrize(
    ("data", "openmetrics", "message"),
    [
        (b'DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-1"} 40\n', True, "Missing # EOF"),
        (b'DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-1"} 40\nnot a sample line\n', False, "valid"),
        (b'DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-1} 40\n', False, "valid"),
        (b'DCGM_FI_DEV_GPU_TEMP{gpu="0"} \xff\n', False, "not UTF-8"),
    ],
)
def test_a_page_the_parser_refuses_is_an_error_for_the_whole_page(
    data: bytes, openmetrics: bool, message: str
) -> None:
    with pytest.raises(ExpositionError, match=message):
        parse_page(data, scraped_at=SCRAPED_AT, openmetrics=openmetrics)


# --- generated pages ------------------------------------------------------------------------

LABEL_VALUES = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12
)
SERIES = st.fixed_dictionaries(
    {
        "gpu": st.integers(min_value=0, max_value=7).map(str),
        "UUID": st.from_regex(r"GPU-[0-9a-f]{8}", fullmatch=True),
        "Hostname": LABEL_VALUES,
        "GPU_I_ID": st.sampled_from(["", "1", "13"]),
        "pod": LABEL_VALUES,
        "extra": LABEL_VALUES,
    }
)
# Measurements only: a DCGM blank sentinel (2**47 is one) is a refusal the parser rejects.
VALUES = st.one_of(
    st.integers(min_value=-(10**15), max_value=10**15),
    st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
).filter(lambda value: blank_reason(value, None) is None)


def escaped(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@settings(max_examples=100, deadline=None)
@given(
    families=st.lists(
        st.tuples(
            st.sampled_from(["gauge", "counter"]),
            st.lists(st.tuples(SERIES, VALUES), min_size=1, max_size=4),
        ),
        min_size=1,
        max_size=4,
    ),
    separator=st.sampled_from([",", ", "]),
)
def test_generated_pages_read_back_series_for_series_on_their_own_lines(
    families: list[tuple[str, list[tuple[dict[str, str], int | float]]]], separator: str
) -> None:
    lines: list[str] = [
        "# HELP go_goroutines Goroutines.",
        "# TYPE go_goroutines gauge",
        "go_goroutines 7",
    ]
    expected = []
    for number, (kind, series) in enumerate(families):
        name = f"DCGM_FI_DEV_GENERATED_{number}"
        lines += [f"# HELP {name} A generated field (in W).", f"# TYPE {name} {kind}"]
        seen = set()
        for labels, value in series:
            key = tuple(sorted(labels.items()))
            if key in seen:  # a page names each series once
                continue
            seen.add(key)
            text = separator.join(f'{label}="{escaped(text)}"' for label, text in labels.items())
            lines.append(f"{name}{{{text}}} {value!r}")
            expected.append((len(lines), name, labels, float(value)))
    page_bytes = ("\n".join(lines) + "\n").encode()

    parsed = parse_page(page_bytes, scraped_at=SCRAPED_AT)

    assert parsed.rejected == []
    assert parsed.skipped == 1
    got = [
        (
            row.line_number,
            row.metric,
            row.uuid,
            row.gpu_instance_id,
            row.hostname,
            row.pod,
            row.value,
        )
        for row in parsed.rows
    ]
    assert got == [
        (
            line,
            name,
            labels["UUID"],
            int(labels["GPU_I_ID"]) if labels["GPU_I_ID"] else None,
            labels["Hostname"],
            labels["pod"],
            value,
        )
        for line, name, labels, value in expected
    ]
    gpus = {gpu.device_key: dict(gpu.labels or ()) for gpu in parsed.gpus}
    for _, _, labels, _ in expected:
        device = (labels["UUID"], int(labels["GPU_I_ID"]) if labels["GPU_I_ID"] else None)
        assert "extra" in gpus[device]
