"""The benchmark runner's configuration: a small TOML (or YAML) file, validated before anything runs.

Schema (every key optional except ``benchmark[*].operation`` and ``benchmark[*].shapes``)::

    [run]
    repeats = 5              # timed samples per contender (median reported)
    min_sample_time = 0.03   # seconds per sample (calls are batched to reach it)
    pause = 0.05             # sleep after each sample (lets the other libraries' threads idle)
    threads = [1, 2]         # thread counts swept (per benchmark overridable)
    peers = ["numpy", "torch", "onnxruntime", "ml_dtypes"]   # skipped with a note if missing
    seed = 0

    [roofline]
    bandwidth_mb = 256       # array size of the quick bandwidth probe (0: no probe)
    peak_gops = 0.0          # compute peak line; 0 = quick probe (numpy fp32 matmul, lowprec int8)

    [[benchmark]]
    operation = "linear"                  # see OPERATIONS
    shapes = [[1, 1024, 1024]]            # per operation: see OPERATIONS[op]["dims"]
    precisions = ["fp32", "bf16", "int8", "int8_static", "int4"]

A malformed file raises :class:`ConfigError`, whose message names the key and the problem.

Examples
--------
>>> cfg = parse_config('''
... [[benchmark]]
... operation = "linear"
... shapes = [[4, 64, 128]]
... ''')
>>> cfg["benchmarks"][0]["precisions"]
['fp32', 'bf16', 'int8', 'int8_static', 'int4']
>>> parse_config('[[benchmark]]\\noperation = "conv"\\nshapes = [[1]]')
Traceback (most recent call last):
...
lowprec.bench.config.ConfigError: benchmark[0].operation: unknown operation 'conv' (known: bf16_convert, embedding_bag, linear, quantize_rowwise)
"""

import copy
import os
import sys

PEERS = ("numpy", "torch", "onnxruntime", "ml_dtypes")

#: operation -> dims of one shape, allowed precisions (default = all), extra keys (default values)
OPERATIONS = {
    "linear": {
        "dims": ("M", "N", "K"),
        "precisions": ("fp32", "bf16", "int8", "int8_static", "int4"),
        "extra": {"group_size": 128},
        "doc": "fully connected layer y = x @ W.T (x float32 M x K, W N x K)",
    },
    "embedding_bag": {
        "dims": ("rows", "dim"),
        "precisions": ("fp32", "fp16", "bf16", "8bit", "4bit", "2bit"),
        "extra": {"bags": 2048, "bag_size": 32, "distribution": "uniform"},
        "doc": "sum pooling of bag_size random rows per bag over a rows x dim table",
    },
    "bf16_convert": {
        "dims": ("n",),
        "precisions": ("f32->bf16", "bf16->f32"),
        "extra": {},
        "doc": "float32 <-> bfloat16 conversion of n elements into a preallocated output",
    },
    "quantize_rowwise": {
        "dims": ("rows", "dim"),
        "precisions": ("8bit", "4bit", "2bit"),
        "extra": {},
        "doc": "row-wise min-max quantization of a rows x dim float32 table (FBGEMM fused rows)",
    },
}

RUN_DEFAULTS = {
    "repeats": 5,
    "min_sample_time": 0.03,
    "pause": 0.05,
    "threads": [1, 2],
    "peers": list(PEERS),
    "seed": 0,
}
ROOFLINE_DEFAULTS = {"bandwidth_mb": 256, "peak_gops": 0.0}
BENCH_COMMON = ("operation", "name", "shapes", "precisions", "threads", "peers", "repeats",
                "min_sample_time")


class ConfigError(ValueError):
    """A malformed configuration; ``key`` is the dotted path of the offending entry."""

    def __init__(self, key, problem):
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}")


def _type_name(v):
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(v), type(v).__name__)


def _check_keys(table, allowed, where):
    if not isinstance(table, dict):
        raise ConfigError(where, f"expected a table, got {_type_name(table)}")
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}" if where else key,
                              f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _int(v, key, lo=None, hi=None):
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(key, f"expected an integer, got {_type_name(v)} {v!r}")
    if lo is not None and v < lo:
        raise ConfigError(key, f"must be >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise ConfigError(key, f"must be <= {hi}, got {v}")
    return v


def _number(v, key, lo=0.0):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(key, f"expected a number, got {_type_name(v)} {v!r}")
    if v < lo:
        raise ConfigError(key, f"must be >= {lo}, got {v}")
    return float(v)


def _str_list(v, key, allowed, what):
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v:
        raise ConfigError(key, f"expected a non-empty list of {what}s, got {v!r}")
    for i, item in enumerate(v):
        if not isinstance(item, str):
            raise ConfigError(f"{key}[{i}]", f"expected a string, got {_type_name(item)} {item!r}")
        if item not in allowed:
            raise ConfigError(f"{key}[{i}]",
                              f"unknown {what} {item!r} (known: {', '.join(allowed)})")
    if len(set(v)) != len(v):
        raise ConfigError(key, f"duplicate {what}s in {v}")
    return list(v)


def _threads(v, key):
    if isinstance(v, int) and not isinstance(v, bool):
        v = [v]
    if not isinstance(v, list) or not v:
        raise ConfigError(key, f"expected a non-empty list of thread counts, got {v!r}")
    return [_int(t, f"{key}[{i}]", lo=1, hi=1024) for i, t in enumerate(v)]


def _shapes(v, key, op):
    dims = OPERATIONS[op]["dims"]
    if not isinstance(v, list) or not v:
        raise ConfigError(key, f"expected a non-empty list of shapes [{', '.join(dims)}], got {v!r}")
    out = []
    for i, s in enumerate(v):
        k = f"{key}[{i}]"
        if isinstance(s, int) and not isinstance(s, bool) and len(dims) == 1:
            s = [s]
        if isinstance(s, str):  # "1,1024,1024" or "500000x64"
            try:
                s = [int(p) for p in s.replace("x", ",").split(",")]
            except ValueError:
                raise ConfigError(k, f"bad shape {v[i]!r}: expected {len(dims)} integers "
                                  f"({', '.join(dims)})") from None
        if not isinstance(s, list) or len(s) != len(dims):
            raise ConfigError(k, f"bad shape {v[i]!r}: {op} expects {len(dims)} positive integers "
                              f"[{', '.join(dims)}]")
        for j, d in enumerate(s):
            if isinstance(d, bool) or not isinstance(d, int) or d < 1:
                raise ConfigError(k, f"bad shape {v[i]!r}: {dims[j]} must be a positive integer")
        out.append(list(s))
    return out


def validate(raw):
    """Check a parsed configuration (a dict) and return it with every default filled in.

    Raises :class:`ConfigError` naming the first offending key.

    Examples
    --------
    >>> cfg = validate({"run": {"repeats": 3}, "benchmark": [
    ...     {"operation": "embedding_bag", "shapes": [[1000, 16]], "precisions": ["fp32", "4bit"]}]})
    >>> cfg["run"]["repeats"], cfg["benchmarks"][0]["bags"], cfg["benchmarks"][0]["threads"]
    (3, 2048, [1, 2])
    >>> validate({"run": {"repeats": "3"}})
    Traceback (most recent call last):
    ...
    lowprec.bench.config.ConfigError: run.repeats: expected an integer, got a string '3'
    """
    _check_keys(raw, {"run", "roofline", "benchmark", "benchmarks"}, "")
    if "benchmark" in raw and "benchmarks" in raw:
        raise ConfigError("benchmarks", "give either [[benchmark]] or benchmarks, not both")
    run = dict(RUN_DEFAULTS)
    r = raw.get("run", {})
    _check_keys(r, set(RUN_DEFAULTS), "run")
    if "repeats" in r:
        run["repeats"] = _int(r["repeats"], "run.repeats", lo=1)
    for k in ("min_sample_time", "pause"):
        if k in r:
            run[k] = _number(r[k], f"run.{k}")
    if "threads" in r:
        run["threads"] = _threads(r["threads"], "run.threads")
    if "peers" in r:
        run["peers"] = _str_list(r["peers"], "run.peers", PEERS, "peer")
    if "seed" in r:
        run["seed"] = _int(r["seed"], "run.seed", lo=0)

    roof = dict(ROOFLINE_DEFAULTS)
    rr = raw.get("roofline", {})
    _check_keys(rr, set(ROOFLINE_DEFAULTS), "roofline")
    if "bandwidth_mb" in rr:
        roof["bandwidth_mb"] = _int(rr["bandwidth_mb"], "roofline.bandwidth_mb", lo=0)
    if "peak_gops" in rr:
        roof["peak_gops"] = _number(rr["peak_gops"], "roofline.peak_gops")

    section = "benchmark" if "benchmark" in raw else "benchmarks"
    benches = raw.get(section, [])
    if isinstance(benches, dict):
        benches = [benches]
    if not isinstance(benches, list) or not benches:
        raise ConfigError(section, "expected at least one [[benchmark]] entry")
    out = []
    for i, b in enumerate(benches):
        where = f"benchmark[{i}]"
        if not isinstance(b, dict):
            raise ConfigError(where, f"expected a table, got {_type_name(b)}")
        if "operation" not in b:
            raise ConfigError(f"{where}.operation", "missing (one of: " + ", ".join(OPERATIONS) + ")")
        op = b["operation"]
        if not isinstance(op, str):
            raise ConfigError(f"{where}.operation", f"expected a string, got {_type_name(op)}")
        if op not in OPERATIONS:
            raise ConfigError(f"{where}.operation", f"unknown operation {op!r} (known: "
                              f"{', '.join(sorted(OPERATIONS))})")
        spec = OPERATIONS[op]
        _check_keys(b, set(BENCH_COMMON) | set(spec["extra"]), where)
        if "shapes" not in b:
            raise ConfigError(f"{where}.shapes", f"missing (list of [{', '.join(spec['dims'])}])")
        bench = {"operation": op, "name": op}
        if "name" in b:
            if not isinstance(b["name"], str) or not b["name"]:
                raise ConfigError(f"{where}.name", "expected a non-empty string")
            bench["name"] = b["name"]
        bench["shapes"] = _shapes(b["shapes"], f"{where}.shapes", op)
        bench["precisions"] = (_str_list(b["precisions"], f"{where}.precisions",
                                         spec["precisions"], "precision")
                               if "precisions" in b else list(spec["precisions"]))
        bench["threads"] = (_threads(b["threads"], f"{where}.threads") if "threads" in b
                            else list(run["threads"]))
        bench["peers"] = (_str_list(b["peers"], f"{where}.peers", PEERS, "peer")
                          if "peers" in b else list(run["peers"]))
        bench["repeats"] = (_int(b["repeats"], f"{where}.repeats", lo=1) if "repeats" in b
                            else run["repeats"])
        bench["min_sample_time"] = (_number(b["min_sample_time"], f"{where}.min_sample_time")
                                    if "min_sample_time" in b else run["min_sample_time"])
        for k, default in spec["extra"].items():
            bench[k] = default
            if k in b:
                if k == "distribution":
                    if b[k] not in ("uniform", "zipf"):
                        raise ConfigError(f"{where}.{k}",
                                          f"expected 'uniform' or 'zipf', got {b[k]!r}")
                    bench[k] = b[k]
                else:
                    bench[k] = _int(b[k], f"{where}.{k}", lo=1)
        if op == "linear" and "int4" in bench["precisions"]:
            g = bench["group_size"]
            for j, (m, n, k) in enumerate(bench["shapes"]):
                if k % g:
                    raise ConfigError(f"{where}.shapes[{j}]",
                                      f"int4 needs K divisible by group_size {g}, got K={k}")
        out.append(bench)
    return {"run": run, "roofline": roof, "benchmarks": out}


def _toml_loads(text):
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib.loads(text)


def parse_config(text, fmt="toml"):
    """Parse configuration text (``fmt`` "toml" or "yaml") and validate it.

    Examples
    --------
    >>> parse_config('[run]\\nrepets = 3')
    Traceback (most recent call last):
    ...
    lowprec.bench.config.ConfigError: run.repets: unknown key (allowed: min_sample_time, pause, peers, repeats, seed, threads)
    """
    if fmt == "yaml":
        try:
            import yaml
        except ImportError:
            raise ConfigError("(file)", "YAML configuration needs pyyaml (pip install pyyaml); "
                              "or write it in TOML") from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError("(file)", f"invalid YAML: {e}") from None
    else:
        try:
            raw = _toml_loads(text)
        except Exception as e:  # tomllib.TOMLDecodeError
            raise ConfigError("(file)", f"invalid TOML: {e}") from None
    if raw is None:
        raw = {}
    return validate(raw)


def default_config_text():
    """The text of the embedded default configuration (``lowprec/bench/default.toml``)."""
    from importlib import resources

    return resources.files("lowprec.bench").joinpath("default.toml").read_text()


def load_config(path=None):
    """Load and validate a configuration file (TOML, or YAML by extension); None: the default.

    Examples
    --------
    >>> cfg = load_config()  # the embedded default
    >>> [b["operation"] for b in cfg["benchmarks"]][:2]
    ['embedding_bag', 'linear']
    """
    if path is None:
        return parse_config(default_config_text())
    if not os.path.isfile(path):
        raise ConfigError("(file)", f"no such configuration file: {path}")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    fmt = "yaml" if path.lower().endswith((".yaml", ".yml")) else "toml"
    return parse_config(text, fmt)


def clone(cfg):
    return copy.deepcopy(cfg)
