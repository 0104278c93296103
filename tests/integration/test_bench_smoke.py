"""The benchmark harness runs end to end on a tiny workload and prints figures and ratios.

No timing is asserted: benchmarks print numbers, tests check that they are printed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.kafka_fixtures import ROOT


def run_bench(broker_url: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", "--broker", broker_url, "--records", "2000", "--keys", "200",
         "--paths", "1,2", "--repeat", "1", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )


def test_bench_prints_a_rate_and_a_ratio_for_each_path(kafka_broker):
    proc = run_bench(kafka_broker.url)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if re.match(r"^[12]\s", line)}
    assert set(rows) == {"1", "2"}, proc.stdout
    for path, line in rows.items():
        # "<path>  <name>  <records/s>  <ratio>  <peak RSS> MB ... ok ..."
        assert re.search(r"\s[\d,]+\s+\d+\.\d\d\s+\d+ MB\s", line), line
        assert " ok " in line, line  # the output count matched the workload
    assert re.search(r"\s1\.00\s", rows["2"]), rows["2"]  # path 2 is the reference


def test_bench_json_report_has_figures_and_ratios(kafka_broker):
    proc = run_bench(kafka_broker.url, "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    results = {r["path"]: r for r in report["results"]}
    assert set(results) == {"1", "2"}
    assert report["workload"]["records"] == 2000
    for r in results.values():
        assert r["error"] is None
        assert r["records_per_s"] > 0
        assert r["ratio_to_path_2"] > 0
        assert r["peak_rss_mb"] > 0
        assert r["output_check"] == "ok"
    assert results["2"]["ratio_to_path_2"] == 1.0
    assert report["machine"]["nproc"] >= 1
