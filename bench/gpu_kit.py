"""Everything bench/gpu.py needs on a GPU machine that cannot reach a package index: the runner's dependencies as
wheels for that machine's Python, less the packages it already has, and the data sets.

    python bench/gpu_kit.py --have machine-packages.txt --data ../shared/data --out .devkit
    # there:  pip install --no-index --no-deps --target /tmp/site .devkit/whl/*.whl
    #         PYTHONPATH=/tmp/site KERAS_BACKEND=jax RUNNER_DATA_DIR=.devkit/data python bench/gpu.py ...

``--have`` lists the distributions installed there (one name per line, or comma-separated; a ``pip list`` or
``pip freeze`` output works too): the kit leaves them out, except the few whose newer versions the carried
packages need (``ALWAYS``). TensorFlow is never carried: bench/gpu.py runs Keras on JAX, which the GPU machine
brings with its CUDA build. The resolution is pip's, for ``--python`` on manylinux x86-64; a pin that PyPI
has only as source (``SOURCE_ONLY``) is built into a wheel here first (it is pure Python).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE_ONLY = ("antlr4-python3-runtime==4.9.3",)  # hydra-core 1.3's parser runtime: an sdist on PyPI
ALWAYS = {"protobuf", "typing-extensions"}  # MLflow's OpenTelemetry and pydantic need recent ones
EXTRAS = ("nvidia-ml-py>=12",)  # the GPU's utilisation, memory and power in the runs' system metrics
DATA_SETS = ("mnist", "wine")  # what bench/gpu.py trains on
MANYLINUX = ("manylinux1", "manylinux2014", *(f"manylinux_2_{n}" for n in (17, 24, 27, 28, 31, 34, 35)))


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.strip().lower())


def requirements() -> list[str]:
    """The project's dependencies without TensorFlow (bench/gpu.py runs on JAX), and EXTRAS."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [r for r in project["dependencies"] if not normalised(r).startswith("tensorflow")]
    return [*wanted, *EXTRAS]


def installed_names(text: str) -> set[str]:
    """Distribution names from a list, ``pip list`` or ``pip freeze`` output."""
    names = set()
    for line in text.replace(",", "\n").splitlines():
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if match and not set(match.group(1)) <= set("-"):
            names.add(normalised(match.group(1)))
    return names - {"package"}  # pip list's header


def wheel_name(path: Path) -> str:
    return normalised(path.name.split("-")[0])


def download(python: str, folder: Path) -> None:
    local = folder / "built"
    for pin in SOURCE_ONLY:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(local), pin], check=True)
    platforms = [arg for tag in MANYLINUX for arg in ("--platform", f"{tag}_x86_64")]
    command = [
        *(sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", python),
        *("--implementation", "cp", *platforms, "--platform", "any", "--find-links", str(local)),
        *("-d", str(folder / "all"), *requirements()),
    ]
    subprocess.run(command, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--have", type=Path, required=True, help="the distributions the GPU machine has")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="RUNNER_DATA_DIR here")
    parser.add_argument("--out", type=Path, default=REPO / ".devkit")
    parser.add_argument("--python", default="3.12", help="the GPU machine's Python version")
    args = parser.parse_args(argv)
    have = installed_names(args.have.read_text()) - ALWAYS
    missing = [name for name in DATA_SETS if not (args.data / name).is_dir()]
    if missing:
        parser.error(f"--data {args.data} has no {', '.join(missing)}")
    wheels = args.out / "whl"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as scratch:
        download(args.python, Path(scratch))
        carried = [w for w in sorted(Path(scratch, "all").glob("*.whl")) if wheel_name(w) not in have]
        for wheel in carried:
            shutil.copy2(wheel, wheels)
    for name in DATA_SETS:
        shutil.rmtree(args.out / "data" / name, ignore_errors=True)
        shutil.copytree(args.data / name, args.out / "data" / name)
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"{len(carried)} wheels and {', '.join(DATA_SETS)} in {args.out}: {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
