"""The benchmark runner (python -m lowprec.bench): configuration, a tiny end-to-end run, --compare,
Ctrl-C.  Structure only, never speed; runs without torch/onnxruntime (those peers are skipped)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lowprec.bench import __main__ as cli
from lowprec.bench import report, workloads
from lowprec.bench.config import ConfigError, load_config, parse_config, validate

TINY = """
[run]
repeats = 2
min_sample_time = 0.001
pause = 0.0
threads = [1, 2]
peers = ["numpy", "torch", "onnxruntime", "ml_dtypes"]

[roofline]
bandwidth_mb = 4

[[benchmark]]
operation = "linear"
shapes = [[2, 32, 128]]

[[benchmark]]
operation = "embedding_bag"
shapes = [[1000, 16]]
precisions = ["fp32", "8bit", "4bit", "2bit"]
bags = 16
bag_size = 4
threads = [1]

[[benchmark]]
operation = "bf16_convert"
shapes = [[4096]]
threads = [1]

[[benchmark]]
operation = "quantize_rowwise"
shapes = [[200, 16]]
threads = [1]
"""


def _bench(**kw):
    b = {"operation": "linear", "shapes": [[2, 32, 128]]}
    b.update(kw)
    return {"benchmark": [b]}


# ---------------------------------------------------------------------------- configuration
def test_tiny_config_fills_defaults():
    cfg = parse_config(TINY)
    lin, emb = cfg["benchmarks"][0], cfg["benchmarks"][1]
    assert lin["precisions"] == ["fp32", "bf16", "int8", "int8_static", "int4"]
    assert lin["threads"] == [1, 2] and emb["threads"] == [1]
    assert emb["bags"] == 16 and emb["distribution"] == "uniform"
    assert cfg["roofline"] == {"bandwidth_mb": 4, "peak_gops": 0.0}


def test_default_config_parses_and_validates():
    cfg = load_config()
    ops = [b["operation"] for b in cfg["benchmarks"]]
    assert "embedding_bag" in ops and "linear" in ops
    emb = cfg["benchmarks"][ops.index("embedding_bag")]
    assert {"fp32", "8bit", "4bit", "2bit"} <= set(emb["precisions"])
    lin = cfg["benchmarks"][ops.index("linear")]
    assert {"fp32", "bf16", "int8", "int4"} <= set(lin["precisions"])
    assert {s[0] for s in lin["shapes"]} >= {1, 256}  # small and large batch
    assert cli.main(["--check", "--quiet"]) == 0


@pytest.mark.parametrize("raw, key, words", [
    (_bench(operation="conv"), "benchmark[0].operation", "unknown operation"),
    (_bench(operation=3), "benchmark[0].operation", "string"),
    ({"benchmark": [{"shapes": [[1, 2, 3]]}]}, "benchmark[0].operation", "missing"),
    ({"benchmark": [{"operation": "linear"}]}, "benchmark[0].shapes", "missing"),
    (_bench(shapes=[[1, 2]]), "benchmark[0].shapes[0]", "3 positive integers"),
    (_bench(shapes=[[1, 0, 128]]), "benchmark[0].shapes[0]", "positive integer"),
    (_bench(shapes=[[1, 2.5, 128]]), "benchmark[0].shapes[0]", "positive integer"),
    (_bench(shapes="1,2,3"), "benchmark[0].shapes", "list of shapes"),
    (_bench(shapes=["1,x,3"]), "benchmark[0].shapes[0]", "bad shape"),
    (_bench(shapes=[[1, 32, 100]]), "benchmark[0].shapes[0]", "group_size"),
    (_bench(precisions=["fp8"]), "benchmark[0].precisions[0]", "unknown precision"),
    (_bench(precisions=["int8", "int8"]), "benchmark[0].precisions", "duplicate"),
    (_bench(peers=["tensorflow"]), "benchmark[0].peers[0]", "unknown peer"),
    (_bench(threads=[0]), "benchmark[0].threads[0]", ">= 1"),
    (_bench(threads="two"), "benchmark[0].threads", "thread counts"),
    (_bench(bags=10), "benchmark[0].bags", "unknown key"),
    (_bench(repeats=2.5), "benchmark[0].repeats", "integer"),
    ({"benchmark": [{"operation": "embedding_bag", "shapes": [[10, 4]], "bags": "many"}]},
     "benchmark[0].bags", "integer"),
    ({"benchmark": [{"operation": "embedding_bag", "shapes": [[10, 4]],
                     "distribution": "normal"}]}, "benchmark[0].distribution", "zipf"),
    ({"run": {"repeats": "3"}, **_bench()}, "run.repeats", "integer"),
    ({"run": {"repeats": 0}, **_bench()}, "run.repeats", ">= 1"),
    ({"run": {"min_sample_time": -1}, **_bench()}, "run.min_sample_time", ">= 0"),
    ({"run": {"pause": True}, **_bench()}, "run.pause", "number"),
    ({"run": {"peers": ["numpy", "jax"]}, **_bench()}, "run.peers[1]", "unknown peer"),
    ({"run": {"repetitions": 3}, **_bench()}, "run.repetitions", "unknown key"),
    ({"roofline": {"peak_gops": "fast"}, **_bench()}, "roofline.peak_gops", "number"),
    ({"roofline": {"bw": 1}, **_bench()}, "roofline.bw", "unknown key"),
    ({"runs": {}, **_bench()}, "runs", "unknown key"),
    ({"run": []}, "run", "table"),
    ({}, "benchmarks", "at least one"),
    ({"benchmark": ["linear"]}, "benchmark[0]", "table"),
])
def test_every_config_error_names_the_key(raw, key, words):
    with pytest.raises(ConfigError) as e:
        validate(raw)
    assert e.value.key == key
    assert str(e.value).startswith(key + ":")
    assert words in str(e.value)


def test_invalid_toml_and_yaml():
    with pytest.raises(ConfigError, match="invalid TOML"):
        parse_config("[run\nrepeats = 1")
    pytest.importorskip("yaml")
    cfg = parse_config("benchmark:\n  - operation: bf16_convert\n    shapes: [[64]]\n", "yaml")
    assert cfg["benchmarks"][0]["shapes"] == [[64]]
    with pytest.raises(ConfigError, match=r"benchmark\[0\]\.shapes\[0\]"):
        parse_config("benchmark:\n  - operation: bf16_convert\n    shapes: [[1, 2]]\n", "yaml")


def test_bad_config_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[benchmark]]\noperation = "linear"\nshapes = [[1, 2]]\n')
    p = subprocess.run([sys.executable, "-m", "lowprec.bench", str(bad), "--out",
                        str(tmp_path / "out")], capture_output=True, text=True, timeout=60,
                       cwd=tmp_path)  # outside the checkout: import the installed package
    assert p.returncode == 2
    assert "benchmark[0].shapes[0]" in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "out").exists()  # nothing ran
    assert cli.main([str(tmp_path / "missing.toml")]) == 2


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "run"
    cfgfile = out.parent / "tiny.toml"
    cfgfile.write_text(TINY)
    rc = cli.main([str(cfgfile), "--out", str(out), "--quiet"])
    return rc, out


def test_tiny_run_writes_every_output(tiny_run):
    rc, out = tiny_run
    assert rc == 0
    data = json.loads((out / "results.json").read_text())
    assert data["interrupted"] is False
    assert data["machine"]["lowprec"]["kernel_isas"]  # chosen ISA per family
    assert "cpu_features" in data["machine"]["lowprec"] and data["machine"]["cpu_model"]
    rows = data["rows"]
    # every case: the fp32 baseline and lowprec at every precision, with samples and ratios
    cases = {(r["operation"], tuple(r["shape"]), r["threads"]) for r in rows}
    assert cases == {("linear", (2, 32, 128), 1), ("linear", (2, 32, 128), 2),
                     ("embedding_bag", (1000, 16), 1), ("bf16_convert", (4096,), 1),
                     ("quantize_rowwise", (200, 16), 1)}
    for case in cases:
        crow = [r for r in rows if (r["operation"], tuple(r["shape"]), r["threads"]) == case]
        assert sum(r["baseline"] for r in crow) == 1
    lin = {r["contender"]: r for r in rows if r["operation"] == "linear" and r["threads"] == 1}
    for p in ("bf16", "int8", "int8_static", "int4"):
        r = lin[f"lowprec {p}"]
        assert len(r["samples"]) == 2 and r["median_s"] > 0 and r["rate"] > 0
        assert r["unit"] == "GOP/s" and r["footprint"] > 0 and r["vs_fp32"] > 0
        assert 0 <= r["rel_l2"] < 0.2
    assert lin["numpy fp32"]["footprint"] == 4 * 32 * 128
    # (the AVX2 int8 layout of this small 32 x 128 matrix is padded to the bf16 size)
    assert lin["lowprec int4"]["footprint"] < lin["lowprec int8"]["footprint"] \
        <= lin["lowprec bf16"]["footprint"] < lin["numpy fp32"]["footprint"]
    emb = {r["precision"]: r for r in rows
           if r["operation"] == "embedding_bag" and r["library"] == "lowprec"}
    assert emb["fp32"]["rel_l2"] < 1e-6 < emb["8bit"]["rel_l2"] < emb["4bit"]["rel_l2"] \
        < emb["2bit"]["rel_l2"]
    assert all(r["unit"] == "GB/s" for r in emb.values())
    # a skipped peer is a note, an installed one a row with a ratio
    for peer in ("torch", "onnxruntime"):
        try:
            __import__(peer)
        except ImportError:
            assert any(peer in n for n in data["notes"])
        else:
            assert any(r["library"] == peer for r in rows)
    if any(r["library"] == "torch" for r in rows):
        assert "torch fbgemm int8" in lin["lowprec int8"]["vs_peers"]
    # the Markdown report holds every measured row
    md = (out / "report.md").read_text()
    for r in rows:
        assert r["contender"] in md
    assert "## Machine" in md


def test_tiny_run_plots(tiny_run):
    pytest.importorskip("matplotlib")
    _, out = tiny_run
    for name in ("roofline.png", "speedups.png"):
        f = out / name
        assert f.is_file() and f.stat().st_size > 1000
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({name})" in (out / "report.md").read_text()


def test_compare_two_runs(tiny_run, tmp_path, capsys):
    _, out = tiny_run
    a = json.loads((out / "results.json").read_text())
    b = json.loads(json.dumps(a))
    b["rows"][0]["median_s"] /= 2.0  # twice as fast
    b["rows"][1]["median_s"] *= 3.0  # three times slower
    b["rows"][2]["median_s"] *= 1.05  # noise
    b["rows"].pop()  # a case only in A
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(a))
    pb.write_text(json.dumps(b))
    matched, only_a, only_b = report.compare_runs(a["rows"], b["rows"], threshold=0.1)
    by = {m["key"]: m for m in matched}
    assert by[a["rows"][0]["key"]]["flag"] == "faster"
    assert by[a["rows"][0]["key"]]["speedup"] == pytest.approx(2.0)
    assert by[a["rows"][1]["key"]]["flag"] == "slower"
    assert by[a["rows"][2]["key"]]["flag"] == ""
    assert only_a == [a["rows"][-1]["key"]] and only_b == []
    assert cli.main(["--compare", str(pa), str(pb)]) == 0
    text = capsys.readouterr().out
    assert "1 faster, 1 slower" in text and "only in A (1)" in text
    assert a["rows"][0]["key"] in text
    assert cli.main(["--compare", str(pa), str(tmp_path / "nope.json")]) == 2


def test_keyboard_interrupt_keeps_what_was_measured(tmp_path, monkeypatch):
    def exploding(bench, shape, peers, rng):
        def boom():
            raise KeyboardInterrupt

        def make(nt):
            return [workloads.Contender("numpy copy", "numpy", "fp32 copy", boom,
                                        baseline=True, ops=1, nbytes=1)]

        return workloads.Workload("bf16_convert", shape, "GB/s", np.zeros(1), make)

    monkeypatch.setitem(workloads.BUILDERS, "bf16_convert", exploding)
    cfgfile = tmp_path / "c.toml"
    cfgfile.write_text("""
[run]
repeats = 2
min_sample_time = 0.001
pause = 0.0
threads = [1]
peers = ["numpy"]
[roofline]
bandwidth_mb = 0
peak_gops = 100.0
[[benchmark]]
operation = "linear"
shapes = [[2, 16, 128]]
precisions = ["fp32", "int8"]
[[benchmark]]
operation = "bf16_convert"
shapes = [[64]]
[[benchmark]]
operation = "linear"
shapes = [[3, 16, 128]]
""")
    out = tmp_path / "out"
    assert cli.main([str(cfgfile), "--out", str(out), "--quiet", "--no-plots"]) == 130
    data = json.loads((out / "results.json").read_text())
    assert data["interrupted"] is True
    assert {r["contender"] for r in data["rows"]} == {"numpy fp32", "lowprec int8"}
    assert {tuple(r["shape"]) for r in data["rows"]} == {(2, 16, 128)}
    assert "Interrupted" in (out / "report.md").read_text()
    assert not os.path.exists(out / "roofline.png")


def test_a_failing_case_is_a_note_and_the_run_goes_on(tmp_path, monkeypatch):
    def broken(bench, shape, peers, rng):
        raise RuntimeError("kernel exploded")

    monkeypatch.setitem(workloads.BUILDERS, "quantize_rowwise", broken)
    cfg = validate({"run": {"repeats": 1, "min_sample_time": 0.0, "pause": 0.0, "threads": [1],
                            "peers": ["numpy"]},
                    "roofline": {"bandwidth_mb": 0, "peak_gops": 1.0},
                    "benchmark": [{"operation": "quantize_rowwise", "shapes": [[10, 8]]},
                                  {"operation": "bf16_convert", "shapes": [[64]]}]})
    result = cli.run(cfg, str(tmp_path), plots=False, quiet=True)
    assert not result["interrupted"]
    assert any("kernel exploded" in n for n in result["notes"])
    assert {r["operation"] for r in result["rows"]} == {"bf16_convert"}
    assert "kernel exploded" in (tmp_path / "report.md").read_text()
