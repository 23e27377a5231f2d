"""The counts `/metrics` sums across workers never fall: not when a worker restarts, not
when one is late for a scrape, not when two scrapes record out of order."""

from __future__ import annotations

import threading
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from proxy.services.metrics_carry import CarriedCounts, Counts
from proxy.services.metrics_export import as_metrics, counts_of, merged


def exposition(requests: int, streams: int = 0, seconds: float = 0.0) -> str:
    return f"""# HELP tokenroute_requests_total Requests.
# TYPE tokenroute_requests_total counter
tokenroute_requests_total{{route="chat",status="200"}} {requests}.0
# HELP tokenroute_requests_created Requests.
# TYPE tokenroute_requests_created gauge
tokenroute_requests_created{{route="chat",status="200"}} 1700000000.0
# HELP tokenroute_request_duration_seconds Time.
# TYPE tokenroute_request_duration_seconds histogram
tokenroute_request_duration_seconds_bucket{{route="chat",le="0.1"}} {requests}.0
tokenroute_request_duration_seconds_bucket{{route="chat",le="+Inf"}} {requests}.0
tokenroute_request_duration_seconds_count{{route="chat"}} {requests}.0
tokenroute_request_duration_seconds_sum{{route="chat"}} {seconds}
# HELP tokenroute_active_streams Streams open now.
# TYPE tokenroute_active_streams gauge
tokenroute_active_streams {streams}.0
"""


def counts(requests: int, streams: int = 0, seconds: float = 0.0) -> Counts:
    return counts_of(text_string_to_metric_families(exposition(requests, streams, seconds)))


def value(total: Counts, sample: str) -> float:
    family = sample.removesuffix("_total").removesuffix("_count")
    return sum(v for (name, _), v in total[family][2].items() if name == sample)


def test_a_restarted_workers_counts_stay_in_the_sum(tmp_path: Path) -> None:
    carried = CarriedCounts(tmp_path / "carried.json", 2)
    total = carried.update({0: (100, counts(5)), 1: (101, counts(7, seconds=0.5))})
    assert value(total, "tokenroute_requests_total") == 12
    # worker 1 died and came back as pid 102, from zero
    total = carried.update({0: (100, counts(6)), 1: (102, counts(1, seconds=0.25))})
    assert value(total, "tokenroute_requests_total") == 6 + 7 + 1
    assert value(total, "tokenroute_request_duration_seconds_count") == 14
    assert (
        total["tokenroute_request_duration_seconds"][2][
            "tokenroute_request_duration_seconds_sum", (("route", "chat"),)
        ]
        == 0.75
    )
    # the same again, on another worker's scrape: retired once, not twice
    total = CarriedCounts(tmp_path / "carried.json", 2).update(
        {1: (102, counts(2)), 0: (100, counts(6))}
    )
    assert value(total, "tokenroute_requests_total") == 6 + 7 + 2


def test_a_late_worker_stands_in_with_what_was_last_seen(tmp_path: Path) -> None:
    carried = CarriedCounts(tmp_path / "carried.json", 2)
    carried.update({0: (100, counts(5)), 1: (101, counts(7))})
    total = carried.update({0: (100, counts(8))})  # worker 1 did not answer in time
    assert value(total, "tokenroute_requests_total") == 8 + 7


def test_an_older_scrape_recorded_later_lowers_nothing(tmp_path: Path) -> None:
    carried = CarriedCounts(tmp_path / "carried.json", 2)
    carried.update({0: (100, counts(9)), 1: (101, counts(4))})
    total = carried.update({0: (100, counts(6)), 1: (101, counts(4))})  # read before the other
    assert value(total, "tokenroute_requests_total") == 13


def test_gauges_and_timestamps_are_not_carried(tmp_path: Path) -> None:
    total = CarriedCounts(tmp_path / "carried.json", 1).update({0: (100, counts(3, streams=4))})
    assert "tokenroute_active_streams" not in total
    names = {name for _, _, samples in total.values() for name, _ in samples}
    assert "tokenroute_requests_created" not in names and "tokenroute_requests_total" in names


def test_the_answer_takes_counters_from_the_carry_and_gauges_from_who_answered(
    tmp_path: Path,
) -> None:
    carried = CarriedCounts(tmp_path / "carried.json", 2)
    carried.update({0: (100, counts(5, streams=2)), 1: (101, counts(7, streams=3))})
    live = [list(text_string_to_metric_families(exposition(8, streams=1)))]
    total = carried.update({0: (100, counts_of(live[0]))})
    families = merged(live, as_metrics(total))
    got = {s.name: s.value for f in families for s in f.samples if not s.labels}
    requests = [s.value for f in families for s in f.samples if s.name.endswith("s_total")]
    assert requests == [15.0]
    assert got["tokenroute_active_streams"] == 1  # only the live one's: a gauge is now
    assert got["tokenroute_workers_scraped"] == 1


def test_scrapes_on_two_workers_at_once_retire_a_process_once(tmp_path: Path) -> None:
    path = tmp_path / "carried.json"
    CarriedCounts(path, 2).update({0: (100, counts(5)), 1: (101, counts(7))})
    start = threading.Barrier(8)
    totals: list[float] = []

    def scrape() -> None:
        start.wait()
        total = CarriedCounts(path, 2).update({0: (100, counts(5)), 1: (102, counts(0))})
        totals.append(value(total, "tokenroute_requests_total"))

    threads = [threading.Thread(target=scrape) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert totals == [12.0] * 8


def test_an_unreadable_file_starts_the_counts_again(tmp_path: Path) -> None:
    path = tmp_path / "carried.json"
    path.write_text("{not json")
    total = CarriedCounts(path, 1).update({0: (100, counts(3))})
    assert value(total, "tokenroute_requests_total") == 3
    total = CarriedCounts(path, 1).update({0: (100, counts(4))})  # and the file is whole again
    assert value(total, "tokenroute_requests_total") == 4
