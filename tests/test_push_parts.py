"""Pushed bodies cut into parts: every line of the body in exactly one part under its own line
number, each exposition part a page that parses alone to the rows the whole page holds there,
and the same body always cut the same way."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.exposition import parse_page
from ingest.push_parts import _page_runs
from ingest.pushed_series import split
from ingest.remote_write import Series

SCRAPED_AT = datetime(2025, 7, 18, 20, 42, 34, tzinfo=UTC)
GAUGE, COUNTER = "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"


def family(name: str, kind: str, samples: int, gpus_from: int) -> list[str]:
    lines = [f"# HELP {name} {name} as DCGM reports it.", f"# TYPE {name} {kind}"]
    for gpu in range(gpus_from, gpus_from + samples):
        lines.append(f'{name}{{gpu="{gpu}",UUID="GPU-{gpu:04d}",Hostname="h"}} {gpu * 3}')
    return lines


def page_of(sizes: list[int]) -> bytes:
    lines = ["# a comment before any family"]
    for index, size in enumerate(sizes):
        name, kind = (GAUGE, "gauge") if index % 2 == 0 else (COUNTER, "counter")
        lines += family(name, kind, size, gpus_from=index * 1000)
        lines.append("")  # a blank line between families
    return ("\n".join(lines) + "\n").encode()


def rows(data: bytes, first_line: int = 1) -> list[tuple[int, str, str, float]]:
    parsed = parse_page(data, scraped_at=SCRAPED_AT, first_line=first_line)
    return [(row.line_number, row.metric, row.uuid, row.value) for row in parsed.rows]


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 12), min_size=1, max_size=5), limit=st.integers(1, 7))
def test_every_sample_line_is_in_one_part_with_its_number_and_parts_parse_alone(
    sizes: list[int], limit: int
) -> None:
    page = page_of(sizes)
    runs = list(_page_runs(page, limit))

    from_parts = [row for first_line, data in runs for row in rows(data, first_line)]
    assert from_parts == rows(page)
    for first_line, data in runs:
        lines = data.decode().splitlines()
        assert sum(1 for line in lines if line and not line.startswith("#")) <= limit
        # A part's own lines of the page keep their numbers: its last line is the page's.
        page_lines = page.decode().splitlines()
        assert lines[-1] == page_lines[first_line + len(lines) - 2]
    assert list(_page_runs(page, limit)) == runs


def test_a_family_cut_in_two_keeps_its_type_in_the_second_part() -> None:
    page = page_of([1, 5])
    (_, first), (second_line, second) = _page_runs(page, 3)
    assert second.startswith(f"# HELP {COUNTER}".encode())
    parsed = parse_page(second, scraped_at=SCRAPED_AT, first_line=second_line)
    assert parsed.metric_docs[COUNTER].kind == "counter"
    assert first.count(b"\n") + second.count(b"\n") == page.count(b"\n") + 2


def test_remote_written_series_are_cut_in_the_order_sent_and_other_series_left_out() -> None:
    def series(name: str, count: int) -> Series:
        return Series({"__name__": name, "UUID": "GPU-1", "gpu": "0"},
                      [(1000 + at, float(at)) for at in range(count)])  # fmt: skip

    cut = split([series(GAUGE, 5), series("up", 2), series(COUNTER, 4)], max_samples=3)

    assert cut.ignored == 2
    assert [(part.first, part.samples) for part in cut.parts] == [(1, 3), (4, 3), (9, 3)]
    # The gauge's last two samples, then the counter's first one (positions 6 and 7 were `up`).
    assert [entry[2] for entry in cut.parts[1].entries] == [4, 8]
    assert [len(entry[3]) for entry in cut.parts[1].entries] == [2, 1]
