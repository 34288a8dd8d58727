"""The benchmark of convcost itself: everything measured side by side in one run, printed as ratios.

    .venv/bin/python benchmarks/bench.py          # about two minutes on 2 cores
    .venv/bin/python benchmarks/bench.py --quick  # fewer repetitions, for a smoke run
    .venv/bin/python benchmarks/bench.py --only 4 # one item (repeat --only for several)

1. ``convcost --help`` against ``python -c "import torch"`` (target: under 0.25 of it).
2. Counting MobileNetV2 and MobileNet v1 by formula (no latency) against ptflops and FlopCounterMode on the
   same model built in plain torch (targets: from the YAML file at least 30× faster than ptflops, from the
   planned layers at least 20×), with the file path's stages (read + YAML, validate + plan, count) apart; torch's
   and the models' objects frozen out of the garbage collector's sight for both sides (``gc.freeze``), as the
   CLI's formula path, which never imports torch, has no such heap to walk.
3. Per-layer cost of a 1000-layer YAML batch without latency (target: linear in layers, under 1 ms per layer).
4. Latency you can trust: the dense/separable speedup of 32→64 3×3 pad 1 at 112×112 in 10 fresh processes without and
   10 with a synthetic neighbour (a process streaming 64 MiB copies on every core, the measured one included, started
   before and stopped after each measurement, at most 30 s), alternating, after a calibration (whose host term widens
   every interval): *coverage* (the share of the quiet runs' intervals that contain the median of their point
   estimates, target ≥ 90 %), the spread of the point estimates, the wall time per pair (target ≤ 2 s, warm-up
   included), the neighbour's measured effect on the layers, *detection* (busy flagged in ≥ 90 % of the runs with the
   neighbour, ≤ 10 % without), in the same processes the old fixed harness (5 rounds of 0.04 s, medians) beside the
   new one, and 6 consecutive 2 s windows in one process (how far the machine itself moves between windows, with no
   new process and the same buffers).
5. An invalid flag combination (``compare --cin 8 --cout 60 -k 3 --vs depthwise``: a wrong cout for depthwise,
   refused with exit 2) against ``python -c "import torch"`` (target: under 0.25 of it: validation never waits
   for torch).
6. Counting real models in process: torchvision's resnet50 and vit_b_16 at 224×224, batch 1, each an ``nn.Module``
   instance: convcost (``evaluate_import(model=...)``: one traced pass with both counters' figures per op, real
   tensors; and with ``meta=True``, on the meta device), fvcore's ``FlopCountAnalysis(...).total()`` and
   ``FlopCounterMode`` alone (target: convcost's meta path no slower than fvcore). Needs torchvision and fvcore;
   skipped with a message without them.

Timing belongs here, not in the unit tests. Each comparison is interleaved (A, B, A, B, ...) so that drift on a
shared machine hits both sides alike; the machine's load average is printed with the results.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CONVCOST = str(Path(PYTHON).with_name("convcost"))


def median_seconds(function: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_process(*command: str, code: int = 0) -> float:
    """Seconds ``command`` takes, which must exit with ``code``."""
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != code:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}, expected {code}")
    return seconds


def mark(ok: bool) -> str:
    return "✓" if ok else "✗"


# 1. start-up ----------------------------------------------------------------------------------------------


def bench_help(repeat: int) -> dict[str, float]:
    help_s, torch_s = against_torch([CONVCOST, "--help"], 0, repeat)
    return {"help_s": help_s, "import_torch_s": torch_s, "ratio": help_s / torch_s}


INVALID = [CONVCOST, "compare", "--cin", "8", "--cout", "60", "-k", "3", "--vs", "depthwise"]  # depthwise: cout 8


def bench_invalid(repeat: int) -> dict[str, float]:
    invalid_s, torch_s = against_torch(INVALID, 2, repeat)
    return {"invalid_s": invalid_s, "import_torch_s": torch_s, "ratio": invalid_s / torch_s}


def against_torch(command: list[str], code: int, repeat: int) -> tuple[float, float]:
    """Medians of ``command`` (exiting ``code``) and of ``python -c "import torch"``, interleaved."""
    times, torch_times = [], []
    run_process(*command, code=code)  # warm the file cache for both
    run_process(PYTHON, "-c", "import torch")
    for _ in range(repeat):
        times.append(run_process(*command, code=code))
        torch_times.append(run_process(PYTHON, "-c", "import torch"))
    return statistics.median(times), statistics.median(torch_times)


# 2. counting MobileNets -----------------------------------------------------------------------------------


def mobilenet_v1() -> Any:
    """MobileNet v1 (Howard et al. 2017, Table 1) in plain torch: conv-BN-ReLU, no conv bias."""
    from torch import nn

    def conv_bn(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True)]  # fmt: skip

    layers = conv_bn(3, 32, 3, 2)
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    cin = 32
    for cout, stride in plan:
        layers += conv_bn(cin, cin, 3, stride, groups=cin) + conv_bn(cin, cout, 1, 1)
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, 1000)).eval()


def mobilenet_v2() -> Any:
    """MobileNetV2 (Sandler et al. 2018, Table 2) in plain torch, width 1.0: inverted residuals, ReLU6."""
    import torch
    from torch import nn

    def conv_bn(cin: int, cout: int, kernel: int, stride: int, groups: int = 1, act: bool = True) -> nn.Sequential:
        parts: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                                  nn.BatchNorm2d(cout)]  # fmt: skip
        if act:
            parts.append(nn.ReLU6(inplace=True))
        return nn.Sequential(*parts)

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
            super().__init__()
            hidden = cin * expand
            parts = [conv_bn(cin, hidden, 1, 1)] if expand != 1 else []
            parts += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, 1, act=False)]
            self.body = nn.Sequential(*parts)
            self.residual = stride == 1 and cin == cout

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.body(x) if self.residual else self.body(x)

    layers: list[nn.Module] = [conv_bn(3, 32, 3, 2)]
    cin = 32
    for expand, cout, repeat, stride in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                                         (6, 160, 3, 2), (6, 320, 1, 1)]:  # fmt: skip
        for index in range(repeat):
            layers.append(Block(cin, cout, stride if index == 0 else 1, expand))
            cin = cout
    layers += [conv_bn(cin, 1280, 1, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(1280, 1000)]
    return nn.Sequential(*layers).eval()


def formula_counter(config: str) -> tuple[Callable[[], int], Callable[[], int], str, dict[str, Callable[[], object]]]:
    """Count a MobileNet config by formula: from its YAML file, and from the planned layers alone; and the stages
    of the path from the file (reading and parsing it, validating and planning it), each timed on its own."""
    try:
        from convcost.cost import ops as model_formulas
        from convcost.spec import yamlio
        from convcost.spec.model import load_model, plan_document
    except ImportError:
        own = _own_stage_counter(config)
        return own, own, "convcost.cost.formulas over the conv layers enumerated here", {}

    path = str(ROOT / "configs" / config)
    plan = load_model(path)
    document = yamlio.load(path)

    def from_file() -> int:
        return sum(model_formulas.cost(op).macs for op in load_model(path).ops)

    def from_plan() -> int:
        return sum(model_formulas.cost(op).macs for op in plan.ops)

    stages: dict[str, Callable[[], object]] = {
        "read + YAML": lambda: yamlio.load(path),
        "validate + plan": lambda: plan_document(document),
        "count": from_plan,
    }
    how = f"convcost.spec.model.load_model(configs/{config}) + model_formulas.cost"
    return from_file, from_plan, how, stages


def _own_stage_counter(config: str) -> Callable[[], int]:
    """Fallback: the MobileNet's conv and linear layers as ConvStages, summed with convcost.cost.ops."""
    from convcost.cost import formulas, ops
    from convcost.cost.formulas import ConvStage

    def count() -> int:
        total, size, cin = 0, 224, 3

        def conv(cout: int, kernel: int, stride: int, groups: int = 1) -> None:
            nonlocal total, size, cin
            pad = kernel // 2
            stage = ConvStage("conv", cin, cout, (kernel, kernel), (stride, stride), (pad, pad), groups=groups)
            total += ops.cost(ops.ConvOp.from_stage(stage, (1, cin, size, size))).macs
            size, cin = formulas.output_size(stage, (size, size))[0], cout

        conv(32, 3, 2)
        if config == "mobilenet_v1.yaml":
            plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
            for cout, stride in plan:
                conv(cin, 3, stride, groups=cin)
                conv(cout, 1, 1)
            return total + 1024 * 1000
        for expand, cout, repeat, stride in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                                             (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:  # fmt: skip
            for index in range(repeat):
                hidden = cin * expand
                if expand != 1:
                    conv(hidden, 1, 1)
                conv(hidden, 3, stride if index == 0 else 1, groups=hidden)
                conv(cout, 1, 1)
        conv(1280, 1, 1)
        return total + 1280 * 1000

    return count


def bench_models(repeat: int) -> list[dict[str, Any]]:
    import torch

    from convcost.run.measure import count_flop_counter, count_ptflops

    torch.set_num_threads(1)
    rows = []
    for name, builder, config in (("MobileNetV2", mobilenet_v2, "mobilenet_v2.yaml"),
                                  ("MobileNet v1", mobilenet_v1, "mobilenet_v1.yaml")):  # fmt: skip
        model = builder()
        tensor = torch.randn(1, 3, 224, 224)
        count, count_plan, how, stages = formula_counter(config)
        macs_formula = count()
        macs_counter, _ = count_flop_counter(model, tensor)
        macs_ptflops = count_ptflops(model, tensor)
        formula_s, plan_s, ptflops_s, counter_s = [], [], [], []
        stage_s: dict[str, list[float]] = {stage: [] for stage in stages}
        # torch's and the models' objects (about 150,000) out of the collector's sight, for both sides: the CLI's
        # formula path never imports torch, but here each collection of the oldest generation walked them all,
        # about 1 ms per call of a 1.5 ms path
        gc.freeze()
        for _ in range(repeat):  # interleaved
            # the millisecond paths as the median of 5 calls in a row: timed once, on a shared machine a 2 ms call
            # measures whether the scheduler took the core away during it (a 40-80 ms one is hardly touched)
            formula_s.append(median_seconds(count, 5))
            plan_s.append(median_seconds(count_plan, 5))
            for stage, function in stages.items():
                stage_s[stage].append(median_seconds(function, 5))
            ptflops_s.append(median_seconds(lambda m=model, t=tensor: count_ptflops(m, t), 1))
            counter_s.append(median_seconds(lambda m=model, t=tensor: count_flop_counter(m, t), 1))
        gc.unfreeze()
        rows.append({
            "model": name, "formula_path": how, "macs_formula": macs_formula, "macs_flop_counter": macs_counter,
            "macs_ptflops_raw": macs_ptflops, "formula_s": statistics.median(formula_s),
            "formula_planned_s": statistics.median(plan_s),
            "formula_stages_s": {stage: statistics.median(times) for stage, times in stage_s.items()},
            "ptflops_s": statistics.median(ptflops_s), "flop_counter_s": statistics.median(counter_s),
        })  # fmt: skip
    return rows


# 6. counting real models in process ---------------------------------------------------------------------


def bench_real_models(repeat: int) -> dict[str, Any]:
    """Seconds to count resnet50 and vit_b_16 with convcost (real and meta), fvcore and FlopCounterMode."""
    try:
        import torchvision
        from fvcore.nn import FlopCountAnalysis
    except ImportError as error:
        return {"skipped": f"needs torchvision and fvcore ({error})"}
    import logging
    import warnings

    import torch

    from convcost.run.measure import count_flop_counter
    from convcost.run.model import evaluate_import

    torch.set_num_threads(1)
    logging.getLogger("fvcore").setLevel(logging.ERROR)  # its warnings about ops it skips, for every call
    rows = []
    for name in ("resnet50", "vit_b_16"):
        model = getattr(torchvision.models, name)().eval()
        tensor = torch.randn(1, 3, 224, 224)

        def real(m: Any = model, name: str = name) -> tuple[int, int]:
            total = evaluate_import(name, (3, 224, 224), model=m).total
            return total.macs, total.macs_flop_counter or 0

        def meta(m: Any = model, name: str = name) -> tuple[int, int]:
            total = evaluate_import(name, (3, 224, 224), model=m, meta=True).total
            return total.macs, total.macs_flop_counter or 0

        def fvcore(m: Any = model, t: Any = tensor) -> int:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                analysis = FlopCountAnalysis(m, t)
                analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
                return int(analysis.total())

        def flop_counter(m: Any = model, t: Any = tensor) -> int:
            return count_flop_counter(m, t)[0]

        sides = {"convcost_real": real, "convcost_meta": meta, "fvcore": fvcore, "flop_counter": flop_counter}
        figures = {side: function() for side, function in sides.items()}  # also a warm-up
        times: dict[str, list[float]] = {side: [] for side in sides}
        for _ in range(repeat):  # interleaved
            for side, function in sides.items():
                times[side].append(median_seconds(function, 1))
        rows.append({"model": name, "macs": figures,
                     **{f"{side}_s": statistics.median(values) for side, values in times.items()}})  # fmt: skip
    return {"models": rows}


# 3. a 1000-layer batch ------------------------------------------------------------------------------------


def batch_yaml(entries: int) -> str:
    """A batch file of ``entries`` small comparisons cycling over channels and kernels."""
    lines = ["version: 1", "defaults: {size: 16, vs: separable}", "layers:"]
    channels = (8, 16, 32)
    for index in range(entries):
        cin, cout, kernel = channels[index % 3], channels[(index // 3) % 3] * 2, (3, 5)[(index // 9) % 2]
        lines.append(f"  - {{name: layer{index}, cin: {cin}, cout: {cout}, kernel: {kernel}}}")
    return "\n".join(lines) + "\n"


def bench_batch(sizes: tuple[int, ...]) -> dict[str, Any]:
    from typer.main import get_command

    from convcost.cli import app

    has_batch = "batch" in get_command(app).commands  # type: ignore[attr-defined]
    result: dict[str, Any] = {"cli": has_batch, "runs": [], "formula_runs": []}
    with tempfile.TemporaryDirectory() as directory:
        for entries in sizes:
            path = Path(directory) / f"batch{entries}.yaml"
            path.write_text(batch_yaml(entries), encoding="utf-8")
            if has_batch:
                out = str(Path(directory) / "out.json")
                seconds = run_process(CONVCOST, "batch", str(path), "--no-latency", "--format", "json", "-o", out)
                result["runs"].append({"entries": entries, "seconds": seconds})
                seconds = run_process(CONVCOST, "batch", str(path), "--formula-only", "--format", "json", "-o", out)
                result["formula_runs"].append({"entries": entries, "seconds": seconds})
        result["formula_ms_per_layer"] = _formula_only_ms(1000)
    for key, runs in (("marginal_ms_per_layer", result["runs"]), ("formula_marginal_ms_per_layer",
                                                                  result["formula_runs"])):  # fmt: skip
        if len(runs) >= 2:
            first, last = runs[0], runs[-1]
            result[key] = 1e3 * (last["seconds"] - first["seconds"]) / (last["entries"] - first["entries"])
    result["per_layer_ms"] = [1e3 * run["seconds"] / run["entries"] for run in result["runs"]]
    return result


def _formula_only_ms(entries: int) -> float:
    """kinds.plan + formulas for ``entries`` layers, in process: the floor under any batch run."""
    from convcost.cost import formulas, ops
    from convcost.spec import kinds
    from convcost.spec.kinds import parse_compare

    channels = (8, 16, 32)
    data = [{"cin": channels[i % 3], "cout": channels[(i // 3) % 3] * 2, "kernel": (3, 5)[(i // 9) % 2], "size": 16}
            for i in range(entries)]  # fmt: skip
    start = time.perf_counter()
    for item in data:
        spec = parse_compare(item)
        for stages in kinds.plan(spec).values():
            size = spec.size
            for stage in stages:
                ops.stage_cost(stage, (spec.batch, stage.cin, *size))
                size = formulas.output_size(stage, size)
    return 1e3 * (time.perf_counter() - start) / entries


# 4. stability: intervals, coverage, contention detection --------------------------------------------------

PAIR = {"cin": 32, "cout": 64, "kernel": 3, "padding": 1, "size": 112}
NEIGHBOUR = """
import sys, time
block = bytearray(64 << 20)  # 64 MiB: far past any private cache, so every copy streams memory
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:
    bytes(block)
"""


def busy_cpu_seconds() -> float | None:
    """CPU-seconds the whole machine has spent busy (all processes, all CPUs), from ``/proc/stat``; None elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def stability(threads: int, tune: bool, old_first: bool) -> dict[str, Any]:
    """One fresh-process measurement of the PAIR: the new adaptive harness and the old fixed 5-round one."""
    import torch

    from convcost.run import build, latency
    from convcost.run.calibrate import cached
    from convcost.spec import kinds
    from convcost.spec.compare import DType
    from convcost.spec.kinds import parse_compare

    if tune:
        latency.tune_allocator()
    spec = parse_compare(PAIR)
    cases = {}
    for kind, stages in kinds.plan(spec).items():
        module = build.prepare(build.layer(stages), DType.FLOAT32, "cpu")
        cases[str(kind)] = (module, build.input_tensor(32, (112, 112), 1, DType.FLOAT32, "cpu"))
    torch.set_num_threads(threads)
    reference = cached("cpu", DType.FLOAT32, threads)
    new_settings = latency.LatencySettings(tune_allocator=tune, stages=False)
    # the harness before issue 9: 5 rounds of 0.04 s per layer, the median of the rounds, no probe
    old_settings = latency.LatencySettings(tune_allocator=tune, stages=False, rounds=5, min_time=0.04, probe=False)
    row: dict[str, Any] = {"threads": threads, "allocator": latency.allocator_state(), "calibrated": bool(reference)}
    for name in ["old", "new"] if old_first else ["new", "old"]:
        settings = new_settings if name == "new" else old_settings
        # the ground truth for "quiet": how much CPU every other process on the machine used meanwhile
        busy_before, own_before, start = busy_cpu_seconds(), time.process_time(), time.perf_counter()
        run = latency.measure_run(cases, settings, [("dense", "separable")], reference=reference)
        wall = time.perf_counter() - start
        busy_after, own = busy_cpu_seconds(), time.process_time() - own_before
        others = None if busy_before is None or busy_after is None else max(0.0, busy_after - busy_before - own) / wall
        dense, separable = run.stats["dense"], run.stats["separable"]
        found = run.ratios[("dense", "separable")]
        if name == "new":
            row["new"] = {
                "speedup": found.best, "interval": list(found.best_interval), "typical": found.typical,
                "converged": dense.converged, "sampled_s": dense.sampled_s, "wall_s": wall, "rounds": dense.rounds,
                "dense_ms": dense.shown_ms, "separable_ms": separable.shown_ms,
                "dense_typical_ms": dense.median_ms, "separable_typical_ms": separable.median_ms,
                "busy": bool(run.contention and run.contention.busy),
                "memory_fraction": run.contention.memory_fraction if run.contention else None,
                "compute_fraction": run.contention.compute_fraction if run.contention else None,
                "cpu_wait_fraction": run.contention.cpu_wait_fraction if run.contention else None,
                "note": run.contention.note if run.contention else "", "other_cpus": others,
            }  # fmt: skip
        else:
            row["old"] = {
                "speedup": dense.median_ms / separable.median_ms, "wall_s": wall, "dense_ms": dense.median_ms,
                "separable_ms": separable.median_ms, "spread_pct": max(dense.spread_pct, separable.spread_pct),
            }  # fmt: skip
    return row


def windows(count: int) -> list[dict[str, float]]:
    """``count`` consecutive default measurements of the PAIR in one process, on the same modules and tensors."""
    from convcost.run import build, latency
    from convcost.run.calibrate import cached
    from convcost.spec import kinds
    from convcost.spec.compare import DType
    from convcost.spec.kinds import parse_compare

    latency.tune_allocator()
    spec = parse_compare(PAIR)
    cases = {}
    for kind, stages in kinds.plan(spec).items():
        module = build.prepare(build.layer(stages), DType.FLOAT32, "cpu")
        cases[str(kind)] = (module, build.input_tensor(32, (112, 112), 1, DType.FLOAT32, "cpu"))
    reference = cached("cpu", DType.FLOAT32, 1)
    rows = []
    for _ in range(count):
        run = latency.measure_run(cases, latency.LatencySettings(stages=False), [("dense", "separable")],
                                  reference=reference)  # fmt: skip
        found = run.ratios[("dense", "separable")]
        rows.append(
            {
                "speedup": found.best,
                "low": found.best_interval[0],
                "high": found.best_interval[1],
                "dense_ms": run.stats["dense"].shown_ms,
                "separable_ms": run.stats["separable"].shown_ms,
            }
        )
    return rows


def stability_child(
    threads: int, tune: bool, old_first: bool, cache: str, cpu: int | None, window_count: int = 0
) -> Any:
    """The same in a fresh process (mallopt cannot be undone within one), pinned to ``cpu`` where possible."""
    command = [PYTHON, __file__, "--child", f"--threads={threads}", f"--windows={window_count}"]
    if not tune:
        command.append("--no-tune")
    if old_first:
        command.append("--old-first")
    environment = dict(os.environ, CONVCOST_CACHE_DIR=cache)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=environment)
    _pin(process.pid, cpu)
    output, _ = process.communicate()
    if process.returncode:
        raise RuntimeError(f"child failed ({process.returncode})")
    return json.loads(output)


def _pin(pid: int, cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):  # pinning is a refinement: unpinned still measures
            os.sched_setaffinity(pid, {cpu})


def start_neighbour(seconds: float, cpu: int | None) -> subprocess.Popen[bytes]:
    """A process streaming memory for at most ``seconds`` (it stops itself; we also stop it)."""
    process = subprocess.Popen([PYTHON, "-c", NEIGHBOUR, str(seconds)])
    _pin(process.pid, cpu)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def bench_stability(runs: int) -> dict[str, Any]:
    """Calibrate, then ``runs`` fresh processes without and ``runs`` with a neighbour on every core, alternating."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    measure_cpu = cpus[0] if len(cpus) >= 2 else None
    with tempfile.TemporaryDirectory() as cache:
        environment = dict(os.environ, CONVCOST_CACHE_DIR=cache)
        subprocess.run([CONVCOST, "calibrate"], check=True, stdout=subprocess.DEVNULL, env=environment, cwd=ROOT)
        calibration = json.loads((Path(cache) / "calibration.json").read_text())
        entry = next(iter(calibration["entries"].values()))
        quiet, loaded = [], []
        for index in range(2 * runs):
            with_neighbour = index % 2 == 1
            # one per core: the measured process shares its core (time-sharing), and the other core streams
            # memory; a single neighbour on the other core alone slowed nothing measurably on a 2-vCPU VM
            places: list[int | None] = [*cpus] if cpus else [None, None]
            neighbours = [start_neighbour(30, cpu) for cpu in places] if with_neighbour else []
            try:
                time.sleep(0.2 if neighbours else 0)
                row = stability_child(1, True, index % 4 < 2, cache, measure_cpu)
            finally:
                for neighbour in neighbours:
                    stop(neighbour)
            (loaded if with_neighbour else quiet).append(row)
        # why the defaults: the allocator left alone, and 2 threads (each one fresh process, no neighbour)
        untuned = stability_child(1, False, False, cache, None)
        two = stability_child(2, True, False, cache, None)
        in_one = stability_child(1, True, False, cache, measure_cpu, window_count=6)
    return {"quiet": quiet, "neighbour": loaded, "calibration_busy": entry.get("busy"),
            "calibration_note": entry.get("contention_note"), "host_spread": entry.get("host_spread"),
            "host_windows": entry.get("host_windows"), "pinned": measure_cpu is not None,
            "untuned_1_thread": untuned, "tuned_2_threads": two, "windows": in_one}  # fmt: skip


def summarize_stability(result: dict[str, Any]) -> dict[str, Any]:
    quiet, loaded = result["quiet"], result["neighbour"]
    points = [row["new"]["speedup"] for row in quiet]
    middle = statistics.median(points)
    covered = sum(row["new"]["interval"][0] <= middle <= row["new"]["interval"][1] for row in quiet)
    old_points = [row["old"]["speedup"] for row in quiet]

    def median_of(rows: list[dict[str, Any]], key: str) -> float:
        return float(statistics.median(row["new"][key] for row in rows))

    effect = {key: median_of(loaded, key) / median_of(quiet, key)
              for key in ("dense_ms", "separable_ms", "dense_typical_ms", "separable_typical_ms")}  # fmt: skip
    waits = {label: [row["new"]["cpu_wait_fraction"] for row in rows if row["new"]["cpu_wait_fraction"] is not None]
             for label, rows in (("quiet", quiet), ("neighbour", loaded))}  # fmt: skip
    # runs without the synthetic neighbour in which other processes (other people's work) used a quarter of a CPU
    # or more meanwhile: the machine was not quiet, whatever the benchmark intended
    calm = [row for row in quiet if (row["new"]["other_cpus"] or 0.0) < 0.25]
    disturbed = [row for row in quiet if row not in calm]
    calm_points = [row["new"]["speedup"] for row in calm]
    calm_middle = statistics.median(calm_points) if calm_points else float("nan")
    window_points = [row["speedup"] for row in result["windows"]]
    window_middle = statistics.median(window_points)
    return {
        "neighbour_effect": effect, "cpu_wait": {label: [min(values), max(values)] if values else None
                                                 for label, values in waits.items()},
        "window_spread_pct": 100 * (max(window_points) - min(window_points)) / window_middle,
        "window_coverage": sum(row["low"] <= window_middle <= row["high"] for row in result["windows"])
        / len(window_points),
        "coverage": covered / len(quiet), "median_speedup": middle,
        "spread_pct": 100 * (max(points) - min(points)) / middle,
        "old_spread_pct": 100 * (max(old_points) - min(old_points)) / statistics.median(old_points),
        "wall_s": statistics.median(row["new"]["wall_s"] for row in quiet),
        "old_wall_s": statistics.median(row["old"]["wall_s"] for row in quiet),
        "converged": sum(row["new"]["converged"] for row in quiet) / len(quiet),
        "flagged_quiet": sum(row["new"]["busy"] for row in quiet) / len(quiet),
        "calm_runs": len(calm), "flagged_calm": sum(row["new"]["busy"] for row in calm),
        "disturbed_runs": len(disturbed), "flagged_disturbed": sum(row["new"]["busy"] for row in disturbed),
        "calm_coverage": sum(row["new"]["interval"][0] <= calm_middle <= row["new"]["interval"][1] for row in calm),
        "calm_median_speedup": calm_middle,
        "flagged_neighbour": sum(row["new"]["busy"] for row in loaded) / len(loaded),
    }  # fmt: skip


def print_stability(result: dict[str, Any], summary: dict[str, Any]) -> None:
    quiet, loaded = result["quiet"], result["neighbour"]
    print(f"\n4. dense/separable speedup of 32→64 3×3 pad 1 at 112×112, {len(quiet)} fresh processes without and "
          f"{len(loaded)} with a memory-streaming neighbour on every core"
          f"{' (the measurement pinned to one)' if result['pinned'] else ''}, alternating:")  # fmt: skip
    if result["calibration_busy"]:
        print(f"   ! the calibration itself looked busy: {result['calibration_note']}")
    if result.get("host_spread") is not None:
        print(f"   host term from the calibration: ±{result['host_spread']:.1%} ({result['host_windows']} probe "
              "windows), combined in quadrature with each bootstrap half-width")  # fmt: skip
    else:
        print("   no host term in the calibration: the intervals cover this window only")
    for label, rows in (("no neighbour", quiet), ("neighbour   ", loaded)):
        for row in rows:
            new, old = row["new"], row["old"]
            memory = "—" if new["memory_fraction"] is None else f"{new['memory_fraction']:.0%}"
            compute = "—" if new["compute_fraction"] is None else f"{new['compute_fraction']:.0%}"
            wait = "—" if new["cpu_wait_fraction"] is None else f"{new['cpu_wait_fraction']:.0%}"
            print(
                f"   {label}: new {new['speedup']:.2f}× ({new['interval'][0]:.2f}–{new['interval'][1]:.2f}) "
                f"typical {new['typical']:.2f}×, {new['rounds']} rounds, {new['sampled_s']:.1f} s sampled "
                f"{'converged' if new['converged'] else 'NOT converged'}; others used {new['other_cpus'] or 0:.2f} "
                f"CPU; waited {wait}, probe memory {memory} compute {compute} "
                f"{'BUSY' if new['busy'] else 'quiet'} | old {old['speedup']:.2f}× (IQR {old['spread_pct']:.0f}%)"
            )
    print(
        f"   coverage: {summary['coverage']:.0%} of the intervals without a neighbour contain the median of their "
        f"point estimates {summary['median_speedup']:.2f}× (target ≥ 90%) {mark(summary['coverage'] >= 0.9)}; "
        f"converged {summary['converged']:.0%}"
    )
    print(
        f"   spread of the point estimates: new {summary['spread_pct']:.1f}%, old fixed 5-round harness "
        f"{summary['old_spread_pct']:.1f}%"
    )
    print(
        f"   wall time per pair: new {summary['wall_s']:.2f} s (target ≤ 2 s, warm-up included) "
        f"{mark(summary['wall_s'] <= 2.0)}, old {summary['old_wall_s']:.2f} s"
    )
    shown = ", ".join(f"{row['speedup']:.2f}× ({row['low']:.2f}–{row['high']:.2f})" for row in result["windows"])
    print(f"   6 consecutive windows in one process, same buffers: {shown}; spread "
          f"{summary['window_spread_pct']:.0f}%, {summary['window_coverage']:.0%} contain their median")  # fmt: skip
    for label, row in (("allocator left alone, 1 thread", result["untuned_1_thread"]),
                       ("allocator tuned, 2 threads", result["tuned_2_threads"])):  # fmt: skip
        new, old = row["new"], row["old"]
        print(f"   {label}: dense {new['dense_ms']:.2f} ms best, separable {new['separable_ms']:.3f} ms; speedup "
              f"{new['speedup']:.2f}× ({new['interval'][0]:.2f}–{new['interval'][1]:.2f}), old harness "
              f"{old['speedup']:.2f}×")  # fmt: skip
    quiet_dense = statistics.median(row["new"]["dense_ms"] for row in quiet)
    print(f"   (default, allocator tuned, 1 thread: dense {quiet_dense:.2f} ms best, median of the runs above)")
    effect, waits = summary["neighbour_effect"], summary["cpu_wait"]
    print(
        f"   the neighbour's effect (median with ÷ median without): dense best {effect['dense_ms']:.2f}×, typical "
        f"{effect['dense_typical_ms']:.2f}×; separable best {effect['separable_ms']:.2f}×, typical "
        f"{effect['separable_typical_ms']:.2f}×; waited for a CPU: without "
        + ("—" if waits["quiet"] is None else f"{waits['quiet'][0]:.1%}–{waits['quiet'][1]:.1%}")
        + ", with "
        + ("—" if waits["neighbour"] is None else f"{waits['neighbour'][0]:.0%}–{waits['neighbour'][1]:.0%}")
        + " of the time"
    )
    print(
        f"   detection: busy flagged in {summary['flagged_neighbour']:.0%} of runs with the neighbour (target ≥ 90%) "
        f"{mark(summary['flagged_neighbour'] >= 0.9)}, {summary['flagged_quiet']:.0%} without (target ≤ 10%) "
        f"{mark(summary['flagged_quiet'] <= 0.1)}"
    )
    print(
        f"   of the runs without it, {summary['calm_runs']} had the machine to themselves (other processes under 0.25 "
        f"CPU): {summary['flagged_calm']} flagged; {summary['disturbed_runs']} shared it with other work: "
        f"{summary['flagged_disturbed']} flagged. Coverage among the calm ones: {summary['calm_coverage']} of "
        f"{summary['calm_runs']} contain their median {summary['calm_median_speedup']:.2f}×"
    )


# report ---------------------------------------------------------------------------------------------------


def json_target(value: str) -> Path:
    """--json PATH as an absolute path, relative to the directory bench.py was started in (never the repository
    root, where its child processes run); refused before the benchmark's minutes, not after them."""
    path = Path(value).expanduser().absolute()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a directory")
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {value}: {path.parent} is not a writable directory")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--json", type=json_target, metavar="PATH", help="also write every figure to this JSON file")
    parser.add_argument(
        "--only", type=int, choices=(1, 2, 3, 4, 5, 6), action="append", help="run only item N (repeat)"
    )
    parser.add_argument("--runs", type=int, default=10, help="item 4: fresh processes with and without a neighbour")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--no-tune", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--old-first", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--windows", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child and args.windows:
        print(json.dumps(windows(args.windows)))
        return
    if args.child:
        print(json.dumps(stability(args.threads, not args.no_tune, args.old_first)))
        return
    items = set(args.only or (1, 2, 3, 4, 5, 6))

    import torch

    repeat = 3 if args.quick else 7
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"convcost benchmark · torch {torch.__version__} · {os.cpu_count()} CPUs · load average {load:.2f}")
    results: dict[str, Any] = {"torch": torch.__version__, "cpus": os.cpu_count(), "load_before": load}

    started = time.perf_counter()
    if 1 in items:
        help_result = bench_help(repeat)
        results["help"] = help_result
        print(f"\n1. convcost --help {help_result['help_s'] * 1e3:.0f} ms vs import torch "
              f"{help_result['import_torch_s'] * 1e3:.0f} ms: ratio {help_result['ratio']:.3f} (target < 0.25) "
              f"{mark(help_result['ratio'] < 0.25)}")  # fmt: skip

    if 2 in items:
        models = bench_models(repeat)
        results["models"] = models
        print("\n2. counting a model, no latency (median of interleaved runs):")
        for row in models:
            speedup = row["ptflops_s"] / row["formula_s"]
            planned = row["ptflops_s"] / row["formula_planned_s"]
            agree = "= FlopCounterMode" if row["macs_formula"] == row["macs_flop_counter"] else (
                f"≠ FlopCounterMode {row['macs_flop_counter']:,}")  # fmt: skip
            print(
                f"   {row['model']}: ptflops {row['ptflops_s'] * 1e3:.0f} ms, FlopCounterMode "
                f"{row['flop_counter_s'] * 1e3:.0f} ms; by formula from the YAML file {row['formula_s'] * 1e3:.2f} ms "
                f"({speedup:.0f}× faster than ptflops, target ≥ 30× {mark(speedup >= 30)}), from the planned layers "
                f"{row['formula_planned_s'] * 1e3:.2f} ms ({planned:.0f}×, target ≥ 20× {mark(planned >= 20)})"
            )
            if row["formula_stages_s"]:
                times = row["formula_stages_s"].items()
                stages = ", ".join(f"{stage} {seconds * 1e3:.2f} ms" for stage, seconds in times)
                print(f"      the path from the file: {stages}")
            print(
                f"      MACs by formula {row['macs_formula']:,} {agree}; ptflops raw {row['macs_ptflops_raw']:,} "
                f"(it adds BN, activations and bias); formula path: {row['formula_path']}"
            )

    if 3 in items:
        sizes = (100, 1000) if args.quick else (250, 1000)
        batch = bench_batch(sizes)
        results["batch"] = batch
        print("\n3. a YAML batch without latency:")
        if batch["runs"]:
            per = ", ".join(f"{run['entries']} entries {run['seconds']:.1f} s "
                            f"({1e3 * run['seconds'] / run['entries']:.1f} ms/layer)"
                            for run in batch["runs"])  # fmt: skip
            marginal = batch["marginal_ms_per_layer"]
            print(f"   convcost batch --no-latency: {per}; marginal {marginal:.1f} ms per layer")
            print(
                "   (each entry builds its layers and runs both counters on a real tensor; that, not YAML, is the cost)"
            )
            per = ", ".join(f"{run['entries']} entries {run['seconds']:.2f} s" for run in batch["formula_runs"])
            marginal = batch["formula_marginal_ms_per_layer"]
            print(
                f"   convcost batch --formula-only: {per}; marginal {marginal:.2f} ms per layer (target < 1 ms) "
                f"{mark(marginal < 1)}"
            )
        else:
            print("   convcost batch does not exist yet: formula path only")
        formula_ms = batch["formula_ms_per_layer"]
        print(
            f"   formula only (parse_compare + kinds.plan + formulas, in process): {formula_ms:.3f} ms per layer "
            f"{mark(formula_ms < 1)}"
        )

    if 5 in items:
        invalid = bench_invalid(repeat)
        results["invalid_flags"] = invalid
        print(f"\n5. an invalid flag combination {invalid['invalid_s'] * 1e3:.0f} ms (exit 2) vs import torch "
              f"{invalid['import_torch_s'] * 1e3:.0f} ms: ratio {invalid['ratio']:.3f} (target < 0.25) "
              f"{mark(invalid['ratio'] < 0.25)}")  # fmt: skip

    if 6 in items:
        real_models = bench_real_models(repeat)
        results["real_models"] = real_models
        print("\n6. counting a model instance in process, 224×224, 1 thread (median of interleaved runs):")
        if "skipped" in real_models:
            print(f"   skipped: {real_models['skipped']}")
        for row in real_models.get("models", []):
            fvcore_s, meta_s = row["fvcore_s"], row["convcost_meta_s"]
            print(
                f"   {row['model']}: convcost {row['convcost_real_s'] * 1e3:.0f} ms (real tensors, one pass, both "
                f"counters), --meta {meta_s * 1e3:.0f} ms, fvcore {fvcore_s * 1e3:.0f} ms, FlopCounterMode alone "
                f"{row['flop_counter_s'] * 1e3:.0f} ms; meta {fvcore_s / meta_s:.1f}× faster than fvcore "
                f"(target ≥ 1× {mark(meta_s <= fvcore_s)})"
            )
            macs = row["macs"]
            (ours, seen_real), (ours_meta, seen_meta) = macs["convcost_real"], macs["convcost_meta"]
            print(f"      MACs: convcost's formulas {ours:,} (real), {ours_meta:,} (meta); FlopCounterMode in "
                  f"convcost's pass {seen_real:,} (real), {seen_meta:,} (meta); fvcore {macs['fvcore']:,}; "
                  f"FlopCounterMode alone {macs['flop_counter']:,}")  # fmt: skip

    if 4 in items:
        runs = 4 if args.quick else args.runs
        stability_result = bench_stability(runs)
        summary = summarize_stability(stability_result)
        results["stability"] = {**stability_result, "summary": summary}
        print_stability(stability_result, summary)
    results["wall_s"] = time.perf_counter() - started
    results["load_after"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nbenchmark took {results['wall_s']:.0f} s; load average now {results['load_after']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
