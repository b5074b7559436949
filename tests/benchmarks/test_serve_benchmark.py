"""The `serve` section's two measurements, run on the tiny bundle (the real-size run is opt-in):
each starts a real `fluxmusic serve` on 127.0.0.1 and stops it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from installed import needs_script

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
ENGINE = ["--device", "cpu", "--dtype", "fp32", "--threads", "2"]

pytestmark = [pytest.mark.e2e, needs_script]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        import serve

        yield serve
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def warm(bench, tiny_bundle, tmp_path_factory):
    work = tmp_path_factory.mktemp("warm")
    return bench.cold_vs_warm([*tiny_bundle.cli_args(), *ENGINE], (1, 2), repeats=1,
                              duration=0.32, work=work)  # fmt: skip


@pytest.fixture(scope="module")
def many(bench, tiny_bundle, tmp_path_factory):
    work = tmp_path_factory.mktemp("many")
    return bench.many_clients([*tiny_bundle.cli_args(), *ENGINE], clients=3, per_client=2,
                              steps=1, duration=0.32, early=2, work=work)  # fmt: skip


def test_each_clip_is_split_into_its_work_and_its_fixed_cost(warm):
    assert warm["server_first_request_status"] == "succeeded"
    assert sorted(warm["steps"]) == ["1", "2"]
    for row in warm["steps"].values():
        for way in ("cold_generate", "warm_request", "client_command"):
            clip = row[way]
            work = clip["timings"]["denoise_s"] + clip["timings"]["decode_s"]
            assert clip["wall_s"] > clip["fixed_s"] > 0
            assert clip["fixed_s"] == pytest.approx(clip["wall_s"] - work, abs=2e-3)
        ratio = row["warm_request"]["fixed_s"] / row["cold_generate"]["fixed_s"]
        assert row["warm_over_cold_fixed"] == pytest.approx(ratio, rel=1e-3)
        assert row["holds"] == (row["warm_over_cold_fixed"] <= 0.1)
    assert warm["server_rss_mb"] > 0


def test_many_clients_lose_and_duplicate_nothing(many):
    assert (many["jobs"], many["lost"], many["duplicated_ids"]) == (6, 0, 0)
    assert many["succeeded_and_checked"] == many["distinct_outputs"] == many["listed_once"] == 6
    assert 0 < many["latency_s"]["p50"] <= many["latency_s"]["p95"] <= many["latency_s"]["max"]
    assert many["server_rss_mb"]["after_early"] > 0 and many["server_rss_mb"]["after_all"] > 0
    assert many["warm_up_status"] == "succeeded"


def test_the_summary_names_the_ratio_and_the_checks(bench, warm, many):
    rows = dict(bench.summary_rows("serve", {"cold_vs_warm": warm, "many_clients": many}))
    assert "target <= 0.1" in rows["2 steps: warm / cold fixed cost"]
    assert rows["6 jobs from 3 clients: lost / duplicated"] == "0 / 0 (6 distinct clips)"
    assert "2 steps: generate --server, fixed / wall" in rows
