"""make bench-http reads wrk's summary: rate, percentiles, socket errors, non-2xx answers."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from bench.http_capacity import mixed, parse_wrk

SUMMARY = """Running 30s test @ http://127.0.0.1:40001
  2 threads and 1000 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20s   400.00ms   4.10s    70.00%
    Req/Sec   120.00     40.00   300.00     65.00%
  Latency Distribution
     50%    1.10s
     75%  640.00ms
     90%  900.50us
     99%    2.50s
  7000 requests in 30.00s, 9.00MB read
  Socket errors: connect 0, read 3, write 1, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:    233.33
Transfer/sec:    307.20KB
"""


def test_the_summary_gives_rate_percentiles_and_failures() -> None:
    load = parse_wrk("c1000", SUMMARY)
    assert load.requests_per_second == pytest.approx(233.33)
    assert load.p50_ms == pytest.approx(1100.0)
    assert load.p99_ms == pytest.approx(2500.0)
    assert (load.socket_errors, load.non_2xx) == (6, 4)


def test_a_clean_run_has_no_failures_and_a_run_without_a_rate_is_refused() -> None:
    clean = SUMMARY.replace("  Socket errors: connect 0, read 3, write 1, timeout 2\n", "")
    clean = clean.replace("  Non-2xx or 3xx responses: 4\n", "")
    load = parse_wrk("telemetry", clean)
    assert (load.socket_errors, load.non_2xx) == (0, 0)
    with pytest.raises(CommandError, match="no rate"):
        parse_wrk("telemetry", "unable to connect to 127.0.0.1:1")


def test_the_mix_takes_every_endpoint_in_turn() -> None:
    paths = {"telemetry": ["/t1", "/t2"], "stats": ["/s"]}
    assert mixed(paths) == ["/t1", "/s", "/t2", "/s"]
