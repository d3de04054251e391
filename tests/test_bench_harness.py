import time

from lowprec.bench.harness import compare, format_table, ratio


def test_compare_alternates_and_ratio_reflects_speed():
    calls = []

    def fast():
        calls.append("fast")

    def slow():
        calls.append("slow")
        time.sleep(0.002)

    samples = compare({"fast": fast, "slow": slow}, repeats=3, min_sample_time=0.004, pause=0)
    assert len(samples["fast"]) == len(samples["slow"]) == 3
    assert ratio(samples, "fast", "slow") > 2  # fast is more than twice as fast
    # round-robin: after calibration the two contenders interleave
    tail = [c for c in calls[-6:]]
    assert "fast" in tail and "slow" in tail


def test_format_table_aligns_columns():
    text = format_table([{"op": "a", "GB/s": 1.23456}, {"op": "bb", "GB/s": 10.0}], ["op", "GB/s"])
    lines = text.splitlines()
    assert len(lines) == 4 and len(set(len(line) for line in lines)) == 1
    assert "1.23" in text
