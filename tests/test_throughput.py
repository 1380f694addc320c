"""bench/throughput.py: the fixed generator step that records the machine's throughput beside every timed run."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import throughput


def test_the_probe_times_the_same_step_whatever_the_run_and_reports_steps_per_second():
    first, second = throughput.probe(steps=2, size=32), throughput.probe(steps=2, size=32)
    assert first["steps_per_second"] > 0 and second["steps_per_second"] > 0
    assert {k: v for k, v in first.items() if k != "steps_per_second"} == {
        "steps": 2, "batch": throughput.BATCH, "size": 32, "threads": second["threads"]}


def test_a_results_file_without_probes_reads_as_not_recorded_one_with_them_as_before_and_after():
    assert throughput.probe_of({"curve": []}) == "not recorded"
    probes = {"before": {"steps_per_second": 3.214}, "after": {"steps_per_second": 4.5}}
    assert throughput.probe_of({"throughput_probe": probes}) == "3.21 / 4.50"
    assert throughput.probe_of({"throughput_probe": {"before": probes["before"]}}) == "3.21"
