"""Fixtures: where the real data is, an isolated environment, and tiny generated files in the real layouts."""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]

WINE_COLUMNS = [
    "fixed acidity",
    "volatile acidity",
    "citric acid",
    "residual sugar",
    "chlorides",
    "free sulfur dioxide",
    "total sulfur dioxide",
    "density",
    "pH",
    "sulphates",
    "alcohol",
    "quality",
]
SEIZURE_FEATURES = [f"X{i}" for i in range(1, 179)]


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    env = os.environ.get("RUNNER_DATA_DIR")
    candidate = Path(env) if env else REPO.parent / "shared" / "data"
    if not candidate.is_dir():
        pytest.skip(
            "real data not found: set RUNNER_DATA_DIR or place ../shared/data "
            "(wine/, seizure/, mnist/ as described in its README.md)"
        )
    return candidate


@pytest.fixture(scope="session", autouse=True)
def session_user_cache(tmp_path_factory):
    """One user cache (downloads, parsed data sets) per test session, off ~/.cache: tests share parses as
    runs do (an entry is keyed by options, file digests and code), and MNIST is parsed once per worker, not
    once per test. Tests of the cache itself use their own folders."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RUNNER_CACHE_DIR", str(tmp_path_factory.mktemp("user-cache")))
        yield


@pytest.fixture
def isolated_env(monkeypatch, tmp_path) -> Path:
    """No RUNNER_DATA_DIR, and a cache inside tmp_path; returns that (empty) cache directory."""
    monkeypatch.delenv("RUNNER_DATA_DIR", raising=False)
    monkeypatch.delenv("RUNNER_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return tmp_path / "xdg-cache" / "keras-runner" / "data"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Tests may fetch file:// URLs and 127.0.0.1 only; anything else is a bug in the test."""
    real_urlopen = urllib.request.urlopen

    def guarded(url, *args, **kwargs):
        full = url.full_url if isinstance(url, urllib.request.Request) else url
        parsed = urllib.parse.urlparse(full)
        if parsed.scheme != "file" and parsed.hostname not in ("127.0.0.1", "localhost"):
            raise AssertionError(f"a test tried to reach the network: {full}")
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", guarded)


# ---------------------------------------------------------------- generated data


def make_wine_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "fixed acidity": rng.uniform(4, 10, n).round(1),
            "volatile acidity": rng.uniform(0.1, 0.6, n).round(2),
            "citric acid": rng.uniform(0, 0.7, n).round(2),
            "residual sugar": rng.uniform(0.6, 20, n).round(1),
            "chlorides": rng.uniform(0.01, 0.1, n).round(3),
            "free sulfur dioxide": rng.integers(2, 100, n),
            "total sulfur dioxide": rng.integers(10, 300, n),
            "density": rng.uniform(0.987, 1.003, n).round(4),
            "pH": rng.uniform(2.8, 3.8, n).round(2),
            "sulphates": rng.uniform(0.2, 1.0, n).round(2),
            "alcohol": rng.uniform(8, 14, n).round(1),
            "quality": rng.integers(3, 10, n),
        }
    )
    return frame[WINE_COLUMNS]


def make_seizure_frame(per_class: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 5 * per_class
    frame = pd.DataFrame(rng.integers(-800, 800, (n, 178)), columns=SEIZURE_FEATURES)
    frame.insert(0, "id", [f"X{i % 23 + 1}.V1.{i}" for i in range(n)])
    frame["y"] = rng.permutation(np.repeat(np.arange(1, 6), per_class))
    return frame


def split_rows(n: int, seed: int) -> dict[str, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_hold = n // 10
    return {"train": np.sort(order[2 * n_hold :]), "val": order[:n_hold], "test": order[n_hold : 2 * n_hold]}


@dataclass
class FakeData:
    """A data root with small files in the same layouts as the real ones."""

    root: Path
    wine: pd.DataFrame
    seizure: pd.DataFrame
    mnist: dict

    def path(self, relpath: str) -> Path:
        return self.root / relpath

    def load(self, name: str, **options):
        from datasets import load_dataset

        # Generated files can never match the published digests.
        options = {"data_dir": str(self.root), "download": False, "verify_checksum": False, **options}
        return load_dataset(name, **options)

    def write_wine_full(self, frame: pd.DataFrame, relpath: str = "wine/winequality-white.csv") -> Path:
        path = self.path(relpath)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = ";".join(f'"{c}"' for c in frame.columns)
        body = frame.to_csv(sep=";", index=False, header=False)
        path.write_text(header + "\n" + body)
        return path

    def write_wine_book(self, frame: pd.DataFrame) -> None:
        for name, rows in split_rows(len(frame), 1).items():
            path = self.path(f"wine/book_split/{name}_data.csv")
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.iloc[rows].to_csv(path, index=False)

    def write_seizure_uci(self, frame: pd.DataFrame, relpath="seizure/epileptic_seizure_recognition.csv") -> Path:
        header = ",".join(['""'] + [f'"{c}"' for c in frame.columns[1:]])
        lines = [f'"{row[0]}",' + ",".join(str(v) for v in row[1:]) for row in frame.itertuples(index=False)]
        return self._write_lines(relpath, [header] + lines, "\n")

    def write_seizure_kaggle(
        self, frame: pd.DataFrame, relpath="seizure/kaggle_epileptic_seizure_recognition.csv"
    ) -> Path:
        header = ",".join(["Unnamed"] + list(frame.columns[1:]))
        lines = [",".join(str(v) for v in row) for row in frame.itertuples(index=False)]
        return self._write_lines(relpath, [header] + lines, "\r\n")

    def write_seizure_book(self, frame: pd.DataFrame) -> None:
        book = frame.drop(columns="id").assign(y=(frame["y"] == 1).astype(int))
        for name, rows in split_rows(len(frame), 2).items():
            path = self.path(f"seizure/book_split/{name}_data.csv")
            path.parent.mkdir(parents=True, exist_ok=True)
            book.iloc[rows].to_csv(path, index=False)

    def write_mnist(self, arrays: dict, relpath: str = "mnist/mnist.npz") -> Path:
        path = self.path(relpath)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            np.savez_compressed(handle, **arrays)
        return path

    def _write_lines(self, relpath: str, lines: list[str], newline: str) -> Path:
        path = self.path(relpath)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes((newline.join(lines) + newline).encode())
        return path


def make_mnist_arrays(n_train: int = 100, n_test: int = 30, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": np.arange(n_train, dtype=np.uint8) % 10,
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": np.arange(n_test, dtype=np.uint8) % 10,
    }


@pytest.fixture
def fake_data(tmp_path, isolated_env) -> FakeData:
    """Wine (200 rows), seizure (5 x 40 rows, both layouts) with book splits, and a 100+30 image mnist."""
    fake = FakeData(tmp_path / "data", make_wine_frame(200, 0), make_seizure_frame(40, 0), make_mnist_arrays())
    fake.write_wine_full(fake.wine)
    fake.write_wine_book(fake.wine)
    fake.write_seizure_uci(fake.seizure)
    fake.write_seizure_kaggle(fake.seizure)
    fake.write_seizure_book(fake.seizure)
    fake.write_mnist(fake.mnist)
    return fake


# ---------------------------------------------------------------- tracking servers


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(url: str, process, what: str, log: Path, timeout: float = 60) -> None:
    """Poll ``url`` until it answers; fail the test with the end of ``log`` if ``process`` exits or
    ``timeout`` seconds pass."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if process.poll() is not None:
                pytest.fail(
                    f"{what} exited during start-up (exit status {process.returncode}):\n"
                    + log.read_text(errors="replace")[-3000:]
                )
            time.sleep(0.5)
    pytest.fail(f"{what} did not answer {url} within {timeout:.0f} s:\n" + log.read_text(errors="replace")[-3000:])


@pytest.fixture
def mlflow_server(tmp_path):
    """Starts real `mlflow server`s on free loopback ports with proxied artifacts; all stop after the test.

    ``start(backend_store_uri, artifacts_destination)`` returns the server's http:// URI.
    """
    import subprocess
    import sys

    mlflow_cli = Path(sys.executable).parent / "mlflow"
    if not mlflow_cli.exists():
        pytest.skip(f"no mlflow command beside {sys.executable}")
    servers = []

    def start(backend_store_uri: str, artifacts_destination: Path) -> str:
        port = free_port()
        log = tmp_path / f"mlflow-server-{port}.log"
        with open(log, "wb") as output:
            server = subprocess.Popen(
                [
                    str(mlflow_cli),
                    "server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--workers",
                    "1",
                    "--backend-store-uri",
                    backend_store_uri,
                    "--artifacts-destination",
                    str(artifacts_destination),
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        servers.append(server)
        uri = f"http://127.0.0.1:{port}"
        wait_for_http(uri + "/health", server, "mlflow server", log, timeout=180)  # 60+ s on 2 busy cores
        return uri

    try:
        yield start
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)


SMOKE_SWEEP = ["+experiment=wine_mlp", "+sweep=smoke", "trainer.verbose=0"]


def compose_sweep(tmp_path: Path, *overrides: str):
    """The composed multirun config (with its hydra node) the sweeper receives, on a store under tmp_path."""
    from hydra import compose, initialize_config_dir

    from runner.config.paths import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(
            config_name="config",
            return_hydra_config=True,
            overrides=[*SMOKE_SWEEP, f"tracking.uri=sqlite:///{tmp_path}/store/mlflow.db", *overrides],
        )
