"""Side-by-side timing of lowprec and its peers, as ../shared/reference/targets.md prescribes.

The machine is shared and noisy, and numpy/torch/onnxruntime keep worker threads spinning after
a call (on 2 cores that slows the next library's call 10-40x).  So contenders are sampled
round-robin in one process: before each timed sample one untimed call, after it a short pause;
the figure of merit is the ratio of medians measured in the same run.

Examples
--------
>>> import numpy as np
>>> from lowprec.bench.harness import compare, ratio
>>> x = np.ones(1000)
>>> samples = compare({"sum": x.sum, "max": x.max}, repeats=3, min_sample_time=0.001)
>>> ratio(samples, "sum", "max") > 0
True
"""

import statistics
import time


def _calibrate(fn, min_sample_time):
    """Calls per sample so that one sample lasts at least ``min_sample_time`` seconds."""
    number = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= min_sample_time or number >= 1 << 20:
            return number
        number = max(number * 2, int(number * min_sample_time / max(elapsed, 1e-9)))


def compare(contenders, repeats=11, min_sample_time=0.05, pause=0.15):
    """Time each callable of ``contenders`` (name -> fn) round-robin; return name -> [s per call].

    Each round gives every contender one untimed call, then one timed sample of ``number``
    calls (calibrated once so that a sample lasts ``min_sample_time``), then ``pause`` seconds
    of sleep so that the previous library's spinning threads go idle (OpenBLAS's spin for
    ~2^28 cycles, ~70 ms here, after each call: a shorter pause let them steal a core from the
    next contender's 2-thread sample).
    """
    numbers = {name: _calibrate(fn, min_sample_time) for name, fn in contenders.items()}
    samples = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            fn()  # untimed: warms caches and wakes this library's threads
            number = numbers[name]
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            samples[name].append((time.perf_counter() - t0) / number)
            time.sleep(pause)
    return samples


def median(values):
    return statistics.median(values)


def ratio(samples, numerator, denominator):
    """median(samples[denominator]) / median(samples[numerator]): the speed-up of ``numerator``."""
    return median(samples[denominator]) / median(samples[numerator])


def format_table(rows, columns):
    """A plain-text table of ``rows`` (dicts) with the given ``columns`` (keys, in order)."""
    cells = [[str(c) for c in columns]]
    for row in rows:
        cells.append(
            [f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c]) for c in columns]
        )
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
