"""The runner on a GPU, through Keras's JAX backend: one prepared script for a short lease of a GPU machine.

    KERAS_BACKEND=jax RUNNER_DATA_DIR=data python bench/gpu.py --json gpu.json --markdown gpu.md
    JAX_PLATFORMS=cpu python bench/gpu.py --allow-cpu --budget 300      # a rehearsal on a machine without one

What it measures, in this order, each section skipped (and said so) once ``--budget`` seconds would be passed:

1. ``devices``: JAX's devices and the versions of JAX and Keras.
2. ``mnist``: ``python -m runner +experiment=mnist_dropout`` (batch 30, the book's) for ``--epochs`` epochs on
   the GPU (``--repeats`` times), then once on this machine's CPU (``JAX_PLATFORMS=cpu``), the book's plain Keras
   script once on the GPU (Keras's default: a step per call), the runner once with 256 steps per compiled call
   (its default is 32) and once at batch 1024: epoch seconds (median, the first left out), samples/s,
   the speed-up over the CPU.
3. ``limit``: what bounds an epoch at batch 30. The FLOPs of one epoch (bench/speed.py's count) over the GPU's
   measured matmul rate at the batch-30 layer shape (30x784x512) in one compiled loop, over the same rate with
   each product fetched to the host (bench/speed.py's CPU limit, done the same way), and over a large product's
   rate (4096^3, the chip's arithmetic). Beside them, the same network's whole epoch of training steps written
   in plain JAX as one compiled program (``jax.lax.scan`` over the batches, data on the GPU, Adam, no dropout):
   the least time XLA takes for this epoch's sequence of small kernels, with no Keras and no host between steps.
4. ``diagnostics``: ``diagnostics=full`` on mnist_dropout on the GPU (every check; the run must finish and no
   check may end in an error), then bench/diagnostics_overhead.py's quick and monitors at the book's 3 epochs.
5. ``sweep``: a 4-trial MNIST learning-rate grid with 1 job and with 2 joblib jobs sharing the GPU; while the
   2-job sweep runs, ``nvidia-smi`` is asked every half second how many processes hold GPU memory.
6. ``search``: bench/speed.py's wine search with pruning (16 trials x 27 epochs), 1 job and 2 jobs, on this
   machine's CPU cores (``JAX_PLATFORMS=cpu``): issue 16's parallel-search target on a machine with more cores
   than jobs.

Writes every measurement to --json and a Markdown table to --markdown (and stdout) after each section, so a run
cut short keeps what it measured. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench import speed, sweep_speed  # noqa: E402

EXPERIMENT = "mnist_dropout"
LARGE_BATCH = 1024
LONG_CALLS = 256  # steps per compiled call, against the runner's 32: what the host's round trips cost
SWEEP_TRIALS, SWEEP_EPOCHS = 4, 2
SEARCH_TRIALS, SEARCH_EPOCHS = speed.SEARCH["default"]
# Rough seconds per section on a GPU machine, for the budget (measured there in the first lease, then rounded up).
ESTIMATE = {"devices": 10, "mnist": 120, "limit": 40, "diagnostics": 120, "sweep": 120, "search": 150}

DEVICES_CODE = """
import json, jax, keras
devices = jax.devices()
print(json.dumps({"platform": devices[0].platform, "kinds": [d.device_kind for d in devices],
                  "jax": jax.__version__, "keras": keras.__version__, "backend": keras.backend.backend()}))
"""

LIMIT_CODE = """
import json, sys
sys.path.insert(0, "bench")
import gpu
print(json.dumps(gpu.limits_here()))
"""


# ---------------------------------------------------------------- measured in a child process (JAX only)


def compiled_matmul_rate(m: int, k: int, n: int, steps: int = 4000) -> float:
    """FLOP/s of ``steps`` (m, k) x (k, n) products run back to back inside one compiled loop: each step
    multiplies another slice of a stacked input, so XLA can neither hoist nor drop the products."""
    import jax
    import jax.numpy as jnp

    inputs = jax.random.normal(jax.random.key(0), (16, m, k), "float32")
    weights = jax.random.normal(jax.random.key(1), (k, n), "float32")

    @jax.jit
    def loop(a, w):
        def body(i, total):
            return total + a[i % 16] @ w

        return jax.lax.fori_loop(0, steps, body, jnp.zeros((m, n), "float32"))

    loop(inputs, weights).block_until_ready()
    return 2.0 * m * k * n * steps / _best_seconds(lambda: loop(inputs, weights).block_until_ready())


def compiled_epoch_seconds(batch: int, layers=speed.MNIST_LAYERS, rows: int = speed.MNIST_ROWS[0]) -> float:
    """Seconds of one epoch of training steps (forward, backward, Adam) of the MNIST MLP at ``batch``, written in
    plain JAX as one compiled program over data already on the device: the floor XLA sets for this epoch."""
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.key(0), len(layers) + 1)
    params = [
        (jax.random.normal(key, (fan_in, fan_out)) * (2.0 / fan_in) ** 0.5, jnp.zeros(fan_out))
        for key, fan_in, fan_out in zip(keys, layers[:-1], layers[1:])
    ]
    steps = rows // batch
    x = jax.random.normal(keys[-1], (steps, batch, layers[0]), "float32")
    y = jax.random.randint(keys[-2], (steps, batch), 0, layers[-1])

    def loss(weights, xb, yb):
        hidden = xb
        for w, b in weights[:-1]:
            hidden = jax.nn.relu(hidden @ w + b)
        logits = hidden @ weights[-1][0] + weights[-1][1]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), yb[:, None], axis=1))

    def step(state, data):
        weights, first, second, t = state
        grads = jax.grad(loss)(weights, *data)
        t = t + 1
        first = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, first, grads)
        second = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, second, grads)
        scale = 1e-3 * jnp.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        weights = jax.tree.map(lambda w, m, v: w - scale * m / (jnp.sqrt(v) + 1e-7), weights, first, second)
        return (weights, first, second, t), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    state = (params, zeros, zeros, jnp.zeros((), "float32"))
    epoch = jax.jit(lambda s: jax.lax.scan(step, s, (x, y))[0])
    jax.block_until_ready(epoch(state))
    return _best_seconds(lambda: jax.block_until_ready(epoch(state)))


def _best_seconds(call, times: int = 3) -> float:
    best = float("inf")
    for _ in range(times):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def limits_here() -> dict:
    """The limit section's measurements, in this process (its JAX device)."""
    import jax

    eager = speed.matmul_throughput(shapes=((30, 784, 512),), blocks=3, block_seconds=0.3)
    large = 4096 if jax.default_backend() == "gpu" else 1024  # a rehearsal on a CPU has no time for 4096^3
    return {
        "large_size": large,
        "compiled_30x784x512": compiled_matmul_rate(30, 784, 512),
        "eager_30x784x512": eager["30x784x512"],
        "compiled_large": compiled_matmul_rate(large, large, large, steps=20),
        "step_floor_batch30": compiled_epoch_seconds(30),
        f"step_floor_batch{LARGE_BATCH}": compiled_epoch_seconds(LARGE_BATCH),
    }


# ---------------------------------------------------------------- sections (this process starts the commands)


def devices() -> dict:
    _, done = speed.timed([sys.executable, "-c", DEVICES_CODE], speed.environment("jax"))
    result = json.loads(done.stdout.strip().splitlines()[-1])
    smi = shutil.which("nvidia-smi")
    if smi:
        query = [smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        result["nvidia_smi"] = subprocess.run(query, capture_output=True, text=True).stdout.strip()
    return result


def mnist(epochs: int, repeats: int, work: Path) -> dict:
    store = work / "mlflow.db"
    speed.create_store(store)
    runs: dict[str, list] = {"gpu": [], "cpu": [], "plain-gpu": [], f"gpu-{LONG_CALLS}-steps-per-call": []}
    for repeat in range(repeats):
        print(f"mnist on the GPU, repetition {repeat + 1}", flush=True)
        runs["gpu"].append(
            speed.run_runner(EXPERIMENT, epochs, speed.SEED + repeat, work / f"gpu{repeat}", store, "jax")
        )
    print("mnist on the CPU", flush=True)
    with mock.patch.dict(os.environ, {"JAX_PLATFORMS": "cpu"}):
        runs["cpu"].append(speed.run_runner(EXPERIMENT, epochs, speed.SEED, work / "cpu", store, "jax"))
    print("mnist, the plain script on the GPU", flush=True)
    runs["plain-gpu"].append(speed.run_plain(EXPERIMENT, epochs, speed.SEED, work / "plain", backend="jax"))
    print(f"mnist on the GPU, {LONG_CALLS} steps per call", flush=True)
    long_calls = [f"trainer.steps_per_execution={LONG_CALLS}"]
    runs[f"gpu-{LONG_CALLS}-steps-per-call"].append(
        speed.run_runner(EXPERIMENT, epochs, speed.SEED, work / "long", store, "jax", extra=long_calls)
    )
    print(f"mnist on the GPU at batch {LARGE_BATCH}", flush=True)
    large = [f"trainer.batch_size={LARGE_BATCH}"]
    runs[f"gpu-batch{LARGE_BATCH}"] = [
        speed.run_runner(EXPERIMENT, epochs, speed.SEED, work / "large", store, "jax", extra=large)
    ]
    rows = speed.MNIST_ROWS[0]
    return {variant: asdict(speed.summarise(variant_runs, rows)) for variant, variant_runs in runs.items()}


def limit() -> dict:
    _, done = speed.timed([sys.executable, "-c", LIMIT_CODE], speed.environment("jax"))
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["epoch_flops"] = speed.epoch_flops(speed.MNIST_LAYERS, *speed.MNIST_ROWS)
    return result


def diagnostics(epochs: int, work: Path) -> dict:
    folder = work / "full"
    command = [
        *(sys.executable, "-m", "runner", f"+experiment={EXPERIMENT}", f"trainer.epochs={epochs}"),
        *(
            "diagnostics=full",
            f"hydra.run.dir={folder}",
            f"tracking.uri=sqlite:///{work}/mlflow.db",
            "trainer.verbose=0",
        ),
    ]
    wall, _ = speed.timed(command, speed.environment("jax"))
    report = json.loads((folder / "diagnostics" / "report.json").read_text())
    checks = report["checks"]
    result = {
        "full_wall": wall,
        "worst": report["worst"],
        "verdicts": dict(Counter(check["verdict"] for check in checks)),
        # a check that raised is reported as a SKIP naming the error: a bug in the check, on this device
        "raised": [check["check"] for check in checks if "error" in (check.get("evidence") or {})],
        "slowest": sorted(((check["seconds"], check["check"]) for check in checks), reverse=True)[:3],
    }
    overhead = work / "overhead.json"
    overhead_command = [
        *(sys.executable, str(REPO / "bench" / "diagnostics_overhead.py"), "--only", EXPERIMENT, "--epochs", "book"),
        *("--repeats", "1", "--suites", "none,quick,monitors", "--json", str(overhead)),
    ]
    speed.timed(overhead_command, speed.environment("jax"))
    result["overhead"] = json.loads(overhead.read_text())[EXPERIMENT]
    return result


class GpuProcesses:
    """Samples, every half second in a thread, how many processes hold memory on the GPU and how much."""

    def __init__(self):
        self.smi = shutil.which("nvidia-smi")
        self.most, self.memory_mib, self._stop = (0 if self.smi else None), 0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        query = [self.smi, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
        while not self._stop.wait(0.5):
            lines = subprocess.run(query, capture_output=True, text=True).stdout.strip().splitlines()
            used = [
                int(line.split(",")[1])
                for line in lines
                if line.count(",") == 1 and line.split(",")[1].strip().isdigit()
            ]
            self.most = max(self.most, len(used))
            self.memory_mib = max(self.memory_mib, sum(used))

    def __enter__(self):
        if self.smi:
            self._thread.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        if self.smi:
            self._thread.join(timeout=5)


def sweep(work: Path) -> list[dict]:
    base = sweep_speed.sweep_overrides(EXPERIMENT, SWEEP_TRIALS, SWEEP_EPOCHS, synthetic=False)
    result = []
    for i, (label, extra) in enumerate(sweep_speed.configurations(2, os.cpu_count() or 1, skip_unlimited=True)):
        with GpuProcesses() as gpu:
            outcome = sweep_speed.run_sweep(label, extra, base, work / f"sweep{i}", SWEEP_TRIALS)
        gpus = trial_gpus(work / f"sweep{i}" / "mlflow.db")
        result.append(
            {**asdict(outcome), "gpu_processes": gpu.most, "gpu_memory_mib": gpu.memory_mib, "trial_gpus": gpus}
        )
    return result


def trial_gpus(database: Path) -> list[str]:
    """The ``runner.gpus`` tag of every trial run: how many GPUs each job saw."""
    return [run.data.tags.get("runner.gpus", "?") for run in sweep_speed.trial_runs(database)]


def search(work: Path) -> list[dict]:
    base = sweep_speed.search_overrides("wine_mlp", SEARCH_TRIALS, SEARCH_EPOCHS, 3)
    result = []
    with mock.patch.dict(os.environ, {"JAX_PLATFORMS": "cpu"}):
        for i, (label, extra) in enumerate(sweep_speed.search_configurations(2)):
            outcome = sweep_speed.run_sweep(label, extra, base, work / f"search{i}", SEARCH_TRIALS)
            result.append({**asdict(outcome), "trials_per_hour": outcome.trials_per_hour})
    return result


# ---------------------------------------------------------------- the table


def mnist_rows(result: dict, epochs: int) -> list[list[str]]:
    rows = []
    cpu_epoch = result.get("cpu", {}).get("epoch")
    for variant, summary in result.items():
        vs_cpu = f"{cpu_epoch / summary['epoch']:.1f}x the CPU's epoch speed" if cpu_epoch and variant != "cpu" else ""
        rows.append(
            [
                f"{EXPERIMENT}, {epochs} ep.: {variant}",
                f"{summary['epoch']:.3f} s/epoch, {summary['samples_per_second']:,.0f} samples/s; whole command "
                f"{summary['wall']:.1f} s, first step at {summary['first_step'] or 0:.1f} s; "
                f"test accuracy {summary['metric']:.4f}",
                vs_cpu,
            ]
        )
    return rows


def limit_rows(result: dict, mnist_result: dict) -> list[list[str]]:
    flops = result["epoch_flops"]
    epoch = mnist_result.get("gpu", {}).get("epoch")
    large = mnist_result.get(f"gpu-batch{LARGE_BATCH}", {}).get("epoch")
    rows = [["limit", f"one epoch: {flops:.3g} FLOPs (6 x MACs x 55,000 + 2 x MACs x 5,000)", ""]]
    for key, label in (
        ("compiled_30x784x512", "30x784x512 products in one compiled loop"),
        ("eager_30x784x512", "30x784x512 products, each fetched to the host (bench/speed.py's limit)"),
        ("compiled_large", f"{result['large_size']}^3 products in one compiled loop (the chip's arithmetic)"),
    ):
        rate = result[key]
        at_rate = flops / rate
        distance = f"the runner's batch-30 epoch is {epoch / at_rate:.0f}x this" if epoch else ""
        rows.append(["limit", f"{label}: {rate / 1e12:.3f} TFLOP/s -> {at_rate * 1e3:.2f} ms/epoch", distance])
    for batch, measured in ((30, epoch), (LARGE_BATCH, large)):
        floor = result[f"step_floor_batch{batch}"]
        note = f"the runner's epoch at batch {batch} is {measured / floor:.1f}x this" if measured else ""
        rows.append(["limit", f"plain-JAX epoch of training steps at batch {batch}, one program: {floor:.3f} s", note])
    return rows


def diagnostics_rows(result: dict) -> list[list[str]]:
    verdicts = ", ".join(f"{count} {verdict}" for verdict, count in sorted(result["verdicts"].items()))
    slowest = ", ".join(f"{name} {seconds:.1f} s" for seconds, name in result["slowest"])
    raised = ", ".join(result["raised"]) or "none"
    rows = [
        [
            "diagnostics",
            f"diagnostics=full, whole command {result['full_wall']:.1f} s: {verdicts}",
            f"checks that raised: {raised}",
        ],
        ["diagnostics", f"slowest checks: {slowest}", f"worst verdict {result['worst']}"],
    ]
    medians = result["overhead"]
    none = medians["none"][0]
    for suite in ("quick", "monitors"):
        extra = medians[suite][0] - none
        rows.append(
            ["diagnostics", f"{suite} at 3 epochs: {extra:+.1f} s on a {none:.1f} s job", f"{extra / none:+.0%}"]
        )
    return rows


def sweep_rows(result: list[dict], section: str) -> list[list[str]]:
    base = result[0]["seconds"] if result else 0
    rows = []
    for outcome in result:
        shared = (
            f"; at most {outcome['gpu_processes']} processes on the GPU ({outcome['gpu_memory_mib']} MiB), "
            f"GPUs per trial {','.join(outcome['trial_gpus'])}"
            if outcome.get("gpu_processes") is not None
            else ""
        )
        rows.append(
            [
                section,
                f"{outcome['label']}: {outcome['seconds']:.1f} s, {outcome['finished']}/{outcome['trials']} trials, "
                f"CPU {outcome['cpu_s']:.0f} s{shared}",
                f"{base / outcome['seconds']:.2f}x vs 1 job",
            ]
        )
    return rows


def table(report: dict, epochs: int) -> str:
    rows = []
    if "devices" in report:
        d = report["devices"]
        rows.append(
            [
                "devices",
                f"{d['platform']}: {', '.join(d['kinds'])}; JAX {d['jax']}, Keras {d['keras']}",
                d.get("nvidia_smi", ""),
            ]
        )
    if "mnist" in report:
        rows += mnist_rows(report["mnist"], epochs)
    if "limit" in report:
        rows += limit_rows(report["limit"], report.get("mnist", {}))
    if "diagnostics" in report:
        rows += diagnostics_rows(report["diagnostics"])
    if "sweep" in report:
        rows += sweep_rows(report["sweep"], f"sweep ({SWEEP_TRIALS} MNIST trials x {SWEEP_EPOCHS} ep., GPU)")
    if "search" in report:
        rows += sweep_rows(report["search"], f"search ({SEARCH_TRIALS} wine trials x {SEARCH_EPOCHS} ep., CPU cores)")
    for section, why in report["skipped"].items():
        rows.append([section, "skipped", why])
    for section, error in report["errors"].items():
        rows.append([section, "FAILED", " ".join(error.replace("|", "/").split())[:300]])
    return speed.markdown(["section", "measure", "compared"], rows)


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the MNIST runs")
    parser.add_argument("--repeats", type=int, default=2, help="MNIST runs on the GPU")
    parser.add_argument("--budget", type=float, default=480, help="seconds; sections that would pass it are skipped")
    parser.add_argument("--only", default=",".join(ESTIMATE), help="comma-separated sections")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=None, help="run folders (default: a temp folder)")
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (a rehearsal)")
    args = parser.parse_args(argv)
    speed.prepare_environment()
    os.environ["KERAS_BACKEND"] = "jax"
    work = args.output or Path(tempfile.mkdtemp(prefix="gpu-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RUNNER_CACHE_DIR", str(work / "cache"))
    report: dict = {
        "settings": {"epochs": args.epochs, "repeats": args.repeats, "code": speed.code_state()},
        "errors": {},
        "skipped": {},
        "seconds": {},
    }
    started = time.perf_counter()
    sections = {
        "devices": devices,
        "mnist": lambda: mnist(args.epochs, args.repeats, work / "mnist"),
        "limit": limit,
        "diagnostics": lambda: diagnostics(2, work / "diagnostics"),
        "sweep": lambda: sweep(work / "sweep"),
        "search": lambda: search(work / "search"),
    }
    wanted = [part for part in args.only.split(",") if part]
    for section, measure in sections.items():
        if section not in wanted:
            continue
        elapsed = time.perf_counter() - started
        if elapsed + ESTIMATE[section] > args.budget:
            report["skipped"][section] = f"budget: {elapsed:.0f} s spent, about {ESTIMATE[section]} s more"
            continue
        print(f"== {section} ({elapsed:.0f} s in)", flush=True)
        began = time.perf_counter()
        try:
            report[section] = measure()
        except Exception as error:  # a broken section must not cost the others their numbers
            report["errors"][section] = f"{type(error).__name__}: {str(error).strip()[-1500:]}"
            print(f"{section} failed: {report['errors'][section]}", file=sys.stderr, flush=True)
        report["seconds"][section] = time.perf_counter() - began
        if section == "devices" and report.get("devices", {}).get("platform") != "gpu" and not args.allow_cpu:
            report["errors"]["devices"] = f"no GPU: JAX runs on {report.get('devices', {}).get('platform')}"
            _write(report, args, args.epochs)
            return 2
        _write(report, args, args.epochs)
    print(f"\nmeasured in {time.perf_counter() - started:.0f} s; code {report['settings']['code']}; folders in {work}")
    return 1 if report["errors"] else 0


def _write(report: dict, args, epochs: int) -> None:
    text = table(report, epochs)
    print(text, flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
