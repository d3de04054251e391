"""Outputs of the benchmark runner: console table, results.json, report.md, PNG plots, --compare.

A result row (one contender in one case) is a dict::

    key        "linear|1,1024,1024|t1|lowprec int8"  (stable across runs: --compare matches on it)
    benchmark, operation, shape, threads, contender, library, precision, baseline
    samples    seconds per call, one per repetition;  median_s
    rate, unit GOP/s (linear) or GB/s (bytes moved per call / median);  gops (operations / median)
    intensity  operations per byte moved (the roofline's x axis)
    footprint  bytes of the weights or the table;  rel_l2  error vs the float64 reference
    vs_fp32    median of the fp32 baseline / median of this row (> 1: faster than fp32)
    vs_peers   {peer contender: its median / this median}, for lowprec rows, same precision

Examples
--------
>>> rows = [dict(key="k|1|t1|a", contender="a", median_s=2e-3),
...         dict(key="k|1|t1|b", contender="b", median_s=1e-3)]
>>> new = [dict(r, median_s=r["median_s"] / 2) if r["contender"] == "a" else r for r in rows]
>>> [(d["key"], round(d["speedup"], 2), d["flag"]) for d in compare_runs(rows, new)[0]]
[('k|1|t1|a', 2.0, 'faster'), ('k|1|t1|b', 1.0, '')]
"""

import json
import math
import os

from .harness import format_table

CONSOLE_COLUMNS = ["contender", "median", "rate", "vs fp32", "vs peer", "footprint", "rel L2"]


def fmt_time(s):
    """'12.3 us', '4.56 ms', '1.2 s'.

    >>> fmt_time(1.5e-5), fmt_time(0.25)
    ('15 us', '250 ms')
    """
    if s is None or not math.isfinite(s):
        return "-"
    for unit, f in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= f:
            v = s / f
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{s * 1e9:.3g} ns"


def fmt_bytes(n):
    """'1.5 MB'.

    >>> fmt_bytes(2_500_000)
    '2.5 MB'
    """
    for unit, f in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= f:
            return f"{n / f:.3g} {unit}"
    return f"{int(n)} B"


def _best_peer(row):
    vp = row.get("vs_peers") or {}
    if not vp:
        return "-"
    # the strongest competitor is the one with the smallest ratio (the fastest peer)
    name = min(vp, key=vp.get)
    return f"{vp[name]:.3g}x {name}"


def console_rows(rows):
    out = []
    for r in rows:
        out.append({
            "contender": r["contender"] + (" *" if r.get("baseline") else ""),
            "median": fmt_time(r["median_s"]),
            "rate": f"{r['rate']:.3g} {r['unit']}",
            "vs fp32": "-" if r.get("baseline") else f"{r['vs_fp32']:.3g}x",
            "vs peer": _best_peer(r),
            "footprint": fmt_bytes(r["footprint"]),
            "rel L2": f"{r['rel_l2']:.1e}" if r.get("rel_l2") is not None else "-",
        })
    return out


def case_table(rows):
    """The console table of one case's rows (``*`` marks the fp32 baseline)."""
    return format_table(console_rows(rows), CONSOLE_COLUMNS)


def case_title(rows):
    r = rows[0]
    return (f"{r['benchmark']} | {r['operation']} {r['info']} | threads={r['threads']} "
            f"| {r['unit']}")


def group_cases(rows):
    """Rows grouped by case (same operation, shape, threads), in measurement order."""
    cases = {}
    for r in rows:
        cases.setdefault((r["benchmark"], r["operation"], tuple(r["shape"]), r["threads"]),
                         []).append(r)
    return list(cases.values())


def write_json(path, result):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1, default=str)
    os.replace(tmp, path)


def load_json(path):
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or "rows" not in data:
        raise ValueError(f"{path}: not a lowprec.bench results file (no 'rows')")
    return data


def _md_table(rows, columns):
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]) for c in columns) + " |")
    return "\n".join(lines)


def write_markdown(path, result, plots):
    m = result["machine"]
    lines = [f"# lowprec benchmark report ({result['created']})", ""]
    if result.get("interrupted"):
        lines += ["**Interrupted**: partial results (the cases measured before Ctrl-C).", ""]
    lines += [
        "## Machine", "",
        f"- CPU: {m.get('cpu_model', '?')} ({m.get('logical_cpus', '?')} logical CPUs), "
        f"{m.get('platform', '')}",
        f"- CPU features: {' '.join(m.get('lowprec', {}).get('cpu_features', []))}",
        f"- lowprec {m.get('lowprec', {}).get('version')}: kernels "
        + ", ".join(f"{k} {v}" for k, v in m.get("lowprec", {}).get("kernel_isas", {}).items()),
        "- peers: " + (", ".join(f"{k} {v}" for k, v in m.get("peers", {}).items()) or "none"),
    ]
    roof = result.get("roofline") or {}
    if roof.get("bandwidth_gbs"):
        lines.append(f"- measured memory bandwidth: {roof['bandwidth_gbs']:.1f} GB/s "
                     f"({roof.get('bandwidth_how', '')})")
    for name, v in (roof.get("peaks") or {}).items():
        lines.append(f"- compute peak line {name}: {v:.1f} GOP/s")
    for note in result.get("notes", []):
        lines.append(f"- note: {note}")
    lines += ["", "Timing: contenders sampled round-robin in one process (an untimed call before "
              "each sample, a pause after it); median of "
              f"{result['config']['run']['repeats']} samples; ratios of medians. `*`: the fp32 "
              "baseline. `vs fp32` = baseline time / time; `vs peer` = the fastest same-precision "
              "peer's time / lowprec's time (> 1: lowprec is faster). rel L2: error against the "
              "float64 reference.", ""]
    for case in group_cases(result["rows"]):
        lines += [f"## {case_title(case)}", "", _md_table(console_rows(case), CONSOLE_COLUMNS), ""]
    if plots:
        lines += ["## Plots", ""]
        for p in plots:
            lines += [f"![{os.path.splitext(p)[0]}]({p})", ""]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


# ------------------------------------------------------------------------------- plots
def write_plots(out_dir, result):
    """roofline.png and speedups.png; returns the file names written (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    rows = result["rows"]
    if not rows:
        return []
    written = []
    roof = result.get("roofline") or {}

    # roofline: x = operations per byte moved, y = achieved GOP/s
    fig, ax = plt.subplots(figsize=(9, 6))
    libs = sorted({r["library"] for r in rows})
    markers = dict(zip(libs, "os^DvP*X"))
    for lib in libs:
        pts = [r for r in rows if r["library"] == lib and r["gops"] > 0 and r["intensity"] > 0]
        ax.scatter([r["intensity"] for r in pts], [r["gops"] for r in pts], label=lib,
                   marker=markers[lib], s=40, alpha=0.8)
        for r in pts:
            if r["library"] == "lowprec" or r.get("baseline"):
                ax.annotate(f"{r['precision']} {r['operation']} t{r['threads']}",
                            (r["intensity"], r["gops"]), fontsize=6, alpha=0.8,
                            xytext=(3, 3), textcoords="offset points")
    xs = [r["intensity"] for r in rows if r["intensity"] > 0]
    lo, hi = min(xs + [0.1]) / 2, max(xs + [10.0]) * 2
    bw = roof.get("bandwidth_gbs")
    peaks = roof.get("peaks") or {}
    grid = [lo * (hi / lo) ** (i / 100) for i in range(101)]
    if bw:
        top = max(peaks.values()) if peaks else None
        ax.plot(grid, [min(bw * g, top) if top else bw * g for g in grid], "k-", lw=1.5,
                label=f"memory {bw:.1f} GB/s")
    for (name, v), style in zip(peaks.items(), ["--", ":", "-."]):
        ax.axhline(v, color="gray", ls=style, lw=1, label=f"peak {name} {v:.0f} GOP/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_xlabel("arithmetic intensity (operations / byte moved)")
    ax.set_ylabel("achieved GOP/s")
    ax.set_title("Roofline: measured bandwidth and compute peaks, each kernel placed on it")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "roofline.png"), dpi=110)
    plt.close(fig)
    written.append("roofline.png")

    # speed-ups of lowprec versus fp32 and versus each same-precision peer
    bars = []
    for r in rows:
        if r["library"] != "lowprec":
            continue
        label = f"{r['operation']} {','.join(map(str, r['shape']))} t{r['threads']} {r['precision']}"
        if not r.get("baseline"):
            bars.append((label, "vs fp32", r["vs_fp32"]))
        for peer, v in (r.get("vs_peers") or {}).items():
            bars.append((label, f"vs {peer.split()[0]}", v))
    if bars:
        labels = list(dict.fromkeys(b[0] for b in bars))
        series = list(dict.fromkeys(b[1] for b in bars))
        width = 0.8 / len(series)
        fig, ax = plt.subplots(figsize=(max(8, 0.5 * len(labels) + 3), 6))
        for j, s in enumerate(series):
            xs_ = [labels.index(b[0]) + j * width for b in bars if b[1] == s]
            ax.bar(xs_, [b[2] for b in bars if b[1] == s], width, label=s)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_yscale("log")
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))])
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("speed-up of lowprec (ratio of medians, > 1: lowprec faster)")
        ax.set_title("lowprec versus the fp32 baseline and its peers")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, "speedups.png"), dpi=110)
        plt.close(fig)
        written.append("speedups.png")
    return written


# ----------------------------------------------------------------------------- compare
def compare_runs(rows_a, rows_b, threshold=0.10):
    """Match rows by ``key``; return (matched, only_in_a, only_in_b).

    Each matched entry: key, time_a, time_b, speedup = time_a / time_b (> 1: B is faster) and
    flag "faster" / "slower" beyond ``threshold`` (relative), else "".
    """
    a = {r["key"]: r for r in rows_a}
    b = {r["key"]: r for r in rows_b}
    matched = []
    for key in a:
        if key not in b:
            continue
        ta, tb = a[key]["median_s"], b[key]["median_s"]
        s = ta / tb if tb > 0 else float("inf")
        flag = "faster" if s > 1 + threshold else "slower" if s < 1 / (1 + threshold) else ""
        matched.append({"key": key, "time_a": ta, "time_b": tb, "speedup": s, "flag": flag})
    return matched, [k for k in a if k not in b], [k for k in b if k not in a]


def format_comparison(path_a, path_b, threshold=0.10):
    """The text ``python -m lowprec.bench --compare A B`` prints."""
    ra, rb = load_json(path_a), load_json(path_b)
    matched, only_a, only_b = compare_runs(ra["rows"], rb["rows"], threshold)
    rows = [{"case": m["key"], "A": fmt_time(m["time_a"]), "B": fmt_time(m["time_b"]),
             "A/B": f"{m['speedup']:.2f}", "change": m["flag"] or "~"} for m in matched]
    lines = [f"A: {path_a} ({ra.get('created', '?')})", f"B: {path_b} ({rb.get('created', '?')})",
             f"A/B = median time in A / median time in B (> 1: B is faster); "
             f"flagged beyond {threshold:.0%}", ""]
    if rows:
        lines.append(format_table(rows, ["case", "A", "B", "A/B", "change"]))
    n_f = sum(m["flag"] == "faster" for m in matched)
    n_s = sum(m["flag"] == "slower" for m in matched)
    lines += ["", f"{len(matched)} cases matched: {n_f} faster, {n_s} slower, "
              f"{len(matched) - n_f - n_s} within noise"]
    if only_a:
        lines.append(f"only in A ({len(only_a)}): " + ", ".join(only_a[:10])
                     + (" ..." if len(only_a) > 10 else ""))
    if only_b:
        lines.append(f"only in B ({len(only_b)}): " + ", ".join(only_b[:10])
                     + (" ..." if len(only_b) > 10 else ""))
    return "\n".join(lines)
