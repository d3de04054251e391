"""``python -m lowprec.bench [CONFIG]``: lowprec next to the libraries a user would pick instead.

Runs the benchmarks a small TOML (or YAML) file describes (see ``lowprec.bench.config`` and
docs/benchmarks.md) -- without CONFIG, the embedded DLRM-style default -- printing a table per
case as it goes, then writes ``results.json`` (every sample, the machine), ``report.md`` and the
plots ``roofline.png`` / ``speedups.png`` to ``--out`` (default ``bench_results/<timestamp>``).

    python -m lowprec.bench                       # the default configuration (< 3 minutes)
    python -m lowprec.bench my.toml --out results/
    python -m lowprec.bench --compare A/results.json B/results.json
    python -m lowprec.bench --check my.toml       # validate only

Exit codes: 0 done; 2 bad configuration or arguments (nothing ran); 130 interrupted by Ctrl-C
(what was measured is written).

Examples
--------
>>> main(["--check", "--quiet"])  # the default configuration validates
0
"""

import argparse
import datetime
import os
import platform
import sys
import time

import numpy as np

import lowprec

from . import report, workloads
from .config import ConfigError, load_config
from .harness import compare, median
from .peers import load_peers


def machine_description(peers=None):
    """lowprec.config_dict() plus platform, CPU model (from /proc/cpuinfo) and peer versions.

    >>> d = machine_description()
    >>> "lowprec" in d and "cpu_model" in d
    True
    """
    d = {
        "lowprec": lowprec.config_dict(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "logical_cpus": os.cpu_count(),
        "cpu_model": platform.processor() or platform.machine(),
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    d["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if peers is not None:
        d["peers"] = peers.versions()
    try:
        from threadpoolctl import threadpool_info

        d["blas"] = [{k: i.get(k) for k in ("internal_api", "version", "architecture",
                                            "num_threads")} for i in threadpool_info()
                     if i.get("user_api") == "blas"]
    except ImportError:
        pass
    return d


def _best(fn, reps=10):
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def probe_roofline(roof, n_threads):
    """Quick measurements for the roofline lines: memory bandwidth and compute peaks.

    Best of 10 calls, not a median: a roof is what the machine can do, and on a shared machine
    a median of a few calls often measures the neighbours instead.
    """
    out = {"bandwidth_gbs": None, "bandwidth_how": "", "peaks": {}}
    mb = roof["bandwidth_mb"]
    if mb:
        n = mb * (1 << 20) // 4
        a = np.ones(n, np.float32)
        read = a.nbytes / _best(a.sum)  # numpy sum (one thread)
        b = lowprec.to_bfloat16(a, n_threads=n_threads)
        o = np.empty(n, np.float32)
        conv = 6 * n / _best(lambda: lowprec.from_bfloat16(b, out=o, n_threads=n_threads))
        del a, b, o
        out["bandwidth_gbs"] = max(read, conv) / 1e9
        out["bandwidth_how"] = (f"best of numpy sum read {read / 1e9:.1f} GB/s and lowprec "
                                f"bf16->f32 in+out {conv / 1e9:.1f} GB/s, {mb} MB, "
                                f"{n_threads} thread(s)")
    if roof["peak_gops"]:
        out["peaks"]["configured"] = roof["peak_gops"]
    else:
        rng = np.random.default_rng(0)
        s = 512
        x = rng.standard_normal((s, s), dtype=np.float32)
        y = np.empty_like(x)
        try:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=n_threads, user_api="blas"):
                t = _best(lambda: np.matmul(x, x, out=y))
        except ImportError:
            t = _best(lambda: np.matmul(x, x, out=y))
        out["peaks"]["fp32 (numpy matmul probe)"] = 2.0 * s ** 3 / t / 1e9
        a = rng.integers(0, 256, (s, s), dtype=np.uint8)
        w = rng.integers(-127, 128, (s, s), dtype=np.int8)
        acc = np.empty((s, s), np.int32)
        pw = lowprec.pack_weights(w, scale=np.float32(0.01))
        t = _best(lambda: lowprec.qmatmul(a, pw, out=acc, n_threads=n_threads))
        out["peaks"]["int8 (lowprec qmatmul probe)"] = 2.0 * s ** 3 / t / 1e9
    return out


class _Progress:
    """A one-line ``\\r`` counter on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, total, enabled=True):
        self.total, self.done, self.enabled = total, 0, enabled
        self.tty = sys.stderr.isatty()
        self.t0 = time.perf_counter()

    def show(self, what):
        if not self.enabled:
            return
        msg = f"[{self.done + 1}/{self.total}] {what}  ({time.perf_counter() - self.t0:.0f} s)"
        if self.tty:
            sys.stderr.write("\r\033[K" + msg)
        else:
            sys.stderr.write(msg + "\n")
        sys.stderr.flush()

    def clear(self):
        if self.enabled and self.tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _rows_for_case(bench, wl, nt, contenders, samples, errors):
    base = next(c for c in contenders if c.baseline)
    t_base = median(samples[base.name])
    rows = []
    for c in contenders:
        t = median(samples[c.name])
        row = {
            "key": f"{bench['name']}|{wl.operation}|{','.join(map(str, wl.shape))}|t{nt}|{c.name}",
            "benchmark": bench["name"], "operation": wl.operation, "shape": wl.shape,
            "info": wl.info, "threads": nt, "contender": c.name, "library": c.library,
            "precision": c.precision, "baseline": c.baseline,
            "samples": samples[c.name], "median_s": t, "unit": wl.unit,
            "rate": (c.ops / t / 1e9) if wl.unit == "GOP/s" else (c.nbytes / t / 1e9),
            "gops": c.ops / t / 1e9, "gbs": c.nbytes / t / 1e9,
            "ops": c.ops, "bytes_moved": c.nbytes,
            "intensity": c.ops / c.nbytes if c.nbytes else 0.0,
            "footprint": c.footprint, "rel_l2": errors.get(c.name),
            "vs_fp32": t_base / t, "vs_peers": {},
        }
        if c.library == "lowprec":
            for p in contenders:
                if p.library != "lowprec" and p.precision == c.precision:
                    row["vs_peers"][p.name] = median(samples[p.name]) / t
        rows.append(row)
    return rows


def _case_failed(result, say, prog, bench, shape, nt, exc):
    """A case that raised: a note (in the JSON and the report), and the run goes on."""
    where = f"{bench['name']} {bench['operation']} {shape}" + (f" threads={nt}" if nt else "")
    note = f"case {where} failed: {type(exc).__name__}: {exc}".splitlines()[0]
    result["notes"].append(note)
    prog.clear()
    say(f"\nnote: {note}")


def run(cfg, out_dir, *, plots=True, quiet=False, progress=True):
    """Run a validated configuration; write every output to ``out_dir``; return the result dict.

    The result (also ``results.json``) has ``rows`` (see lowprec.bench.report), ``machine``,
    ``roofline``, ``config``, ``notes``, ``interrupted`` and ``files``.  A KeyboardInterrupt
    stops the run; the rows measured so far are written and ``interrupted`` is True.
    """
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    os.makedirs(out_dir, exist_ok=True)
    wanted = list(dict.fromkeys(p for b in cfg["benchmarks"] for p in b["peers"]))
    peers = load_peers(wanted)
    for note in peers.notes:
        say(f"note: {note}")
    result = {
        "schema": 1,
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "config": cfg,
        "machine": machine_description(peers),
        "roofline": None,
        "notes": list(peers.notes),
        "interrupted": False,
        "rows": [],
    }
    lp = result["machine"]["lowprec"]
    say(f"lowprec {lp['version']} on {result['machine']['cpu_model']} "
        f"({result['machine']['logical_cpus']} CPUs); kernels: "
        + ", ".join(f"{k}={v}" for k, v in lp["kernel_isas"].items()))
    say("peers: " + (", ".join(f"{k} {v}" for k, v in peers.versions().items()) or "none"))
    total = sum(len(b["shapes"]) * len(b["threads"]) for b in cfg["benchmarks"])
    prog = _Progress(total, enabled=progress and not quiet)
    pause = cfg["run"]["pause"]
    try:
        max_threads = max(t for b in cfg["benchmarks"] for t in b["threads"])
        try:
            result["roofline"] = probe_roofline(cfg["roofline"], max_threads)
        except Exception as e:  # a broken probe must not lose the run
            result["roofline"] = {"bandwidth_gbs": None, "bandwidth_how": "", "peaks": {}}
            result["notes"].append(f"roofline probe failed: {type(e).__name__}: {e}")
            say(f"note: {result['notes'][-1]}")
        if result["roofline"]["bandwidth_gbs"]:
            say(f"roofline: memory {result['roofline']['bandwidth_gbs']:.1f} GB/s; peaks "
                + ", ".join(f"{k} {v:.0f} GOP/s" for k, v in result["roofline"]["peaks"].items()))
        for bench in cfg["benchmarks"]:
            for shape in bench["shapes"]:
                prog.show(f"{bench['operation']} {shape}: building inputs")
                try:
                    wl = workloads.build(bench, shape, peers, seed=cfg["run"]["seed"])
                except Exception as e:
                    _case_failed(result, say, prog, bench, shape, None, e)
                    prog.done += len(bench["threads"])
                    continue
                errors = {}
                for nt in bench["threads"]:
                    prog.show(f"{bench['operation']} {shape} threads={nt}")
                    try:
                        contenders = wl.contenders(nt)
                        with peers.threads(nt):
                            for c in contenders:
                                if c.name not in errors and c.output is not None:
                                    errors[c.name] = workloads.rel_l2(c.output(), wl.reference)
                            samples = compare({c.name: c.fn for c in contenders},
                                              repeats=bench["repeats"],
                                              min_sample_time=bench["min_sample_time"],
                                              pause=pause)
                    except Exception as e:
                        _case_failed(result, say, prog, bench, shape, nt, e)
                        prog.done += 1
                        continue
                    rows = _rows_for_case(bench, wl, nt, contenders, samples, errors)
                    result["rows"].extend(rows)
                    prog.clear()
                    say("\n" + report.case_title(rows))
                    say(report.case_table(rows))
                    prog.done += 1
                del wl
    except KeyboardInterrupt:
        prog.clear()
        result["interrupted"] = True
        say(f"\ninterrupted: writing the {len(result['rows'])} rows measured so far")
    finally:
        prog.clear()
    result["files"] = write_outputs(out_dir, result, plots=plots, say=say)
    return result


def write_outputs(out_dir, result, *, plots=True, say=print):
    files = ["results.json", "report.md"]
    written = []
    if plots:
        try:
            written = report.write_plots(out_dir, result)
            import matplotlib  # noqa: F401
        except ImportError:
            result["notes"].append("matplotlib not installed: no plots")
            say("note: matplotlib not installed: plots skipped")
        except Exception as e:  # a plot must never lose the measurements
            result["notes"].append(f"plots failed: {type(e).__name__}: {e}")
            say(f"note: plots failed ({type(e).__name__}: {e})")
    report.write_markdown(os.path.join(out_dir, "report.md"), result, written)
    report.write_json(os.path.join(out_dir, "results.json"), result)
    files += written
    say(f"\nwrote {', '.join(os.path.join(out_dir, f) for f in files)}")
    return files


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m lowprec.bench",
        description="Benchmark lowprec next to numpy, PyTorch (FBGEMM), ONNX Runtime and "
                    "ml_dtypes, from a small TOML/YAML configuration (default: a DLRM-style "
                    "model, < 3 minutes).")
    p.add_argument("config", nargs="?", help="TOML or YAML configuration (default: embedded)")
    p.add_argument("--out", help="output directory (default: bench_results/<timestamp>)")
    p.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                   help="compare two results.json files instead of running")
    p.add_argument("--threshold", type=float, default=0.10,
                   help="relative change flagged by --compare (default 0.10)")
    p.add_argument("--check", action="store_true", help="validate the configuration and exit")
    p.add_argument("--print-default", action="store_true",
                   help="print the embedded default configuration and exit")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return p


def main(argv=None):
    """Entry point of ``python -m lowprec.bench`` and the ``lowprec-bench`` script; returns
    the exit code."""
    args = _parser().parse_args(argv)
    if args.print_default:
        from .config import default_config_text

        print(default_config_text())
        return 0
    if args.compare:
        try:
            print(report.format_comparison(*args.compare, threshold=args.threshold))
        except (OSError, ValueError, KeyError) as e:
            print(f"error: --compare: {e}", file=sys.stderr)
            return 2
        return 0
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"error: bad configuration {args.config or '(default)'}: {e}", file=sys.stderr)
        return 2
    if args.check:
        if not args.quiet:
            n = sum(len(b["shapes"]) * len(b["threads"]) for b in cfg["benchmarks"])
            print(f"configuration OK: {len(cfg['benchmarks'])} benchmarks, {n} cases")
        return 0
    out = args.out or os.path.join(
        "bench_results", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    result = run(cfg, out, plots=not args.no_plots, quiet=args.quiet)
    return 130 if result["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
