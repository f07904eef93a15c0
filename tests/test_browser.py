"""The MLflow UI as a person sees it: a real `mlflow server` on the runner's store, driven by headless Chromium.

One module-scoped record (a run with full diagnostics and a 3-trial search, both on generated data) is served
on a free loopback port; each test opens a fresh browser context and checks what someone browsing their results
looks for. Screenshots go to <record>/screenshots in the session's tmp folder and, when RUNNER_SCREENSHOTS_DIR
is set, there as well (docs/images/ holds two of them for the README).
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port, wait_for_http
from mlflow import MlflowClient

pytestmark = [pytest.mark.slow, pytest.mark.browser]

EXPERIMENT = "browser-demo"
GENERATED = [
    "dataset=synthetic",
    "dataset.task=regression",
    "dataset.n_samples=300",
    "trainer.verbose=0",
    f"tracking.experiment={EXPERIMENT}",
]
EPOCHS = 10
# As root in a container: no sandbox, no GPU; with no network, Chromium's background services stall pages.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 60_000  # the React app renders slowly on a loaded 2-core machine


def find_chromium() -> str | None:
    chosen = os.environ.get("RUNNER_CHROMIUM")
    if chosen:
        return chosen if Path(chosen).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through Playwright (which drives a system Chromium: no browser download)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the Python package playwright is not installed (pip install -e '.[test]')")
    executable = find_chromium()
    if executable is None:
        where = os.environ.get("RUNNER_CHROMIUM")
        pytest.skip(
            f"RUNNER_CHROMIUM={where} is not a file"
            if where
            else "no Chromium found (apt-get install chromium, or set RUNNER_CHROMIUM to its path)"
        )
    with sync_playwright() as driver:
        # launch() gives every browser a fresh temporary profile (user data dir)
        chromium = driver.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@dataclass
class Record:
    folder: Path
    uri: str
    experiment_id: str
    run_id: str  # the run with diagnostics
    run_name: str
    parent_id: str
    parent_name: str
    children: dict[str, str]  # run name -> run id
    best_run_id: str


def run_runner(folder: Path, *args: str) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


def write_record(folder: Path, uri: str) -> None:
    run_runner(
        folder,
        "+experiment=wine_mlp",
        *GENERATED,
        f"trainer.epochs={EPOCHS}",
        "diagnostics=full",
        "optimizer.learning_rate=3e-3",
        "diagnostics.probe_samples=64",
        f"tracking.uri={uri}",
    )
    # the single run logs its MLflow Model (the Models column); the trials do without, for time
    run_runner(
        folder,
        "-m",
        "+experiment=wine_mlp",
        "+sweep=smoke",
        *GENERATED,
        "tracking.log_model=false",
        f"tracking.uri={uri}",
    )


def read_record(folder: Path, uri: str) -> Record:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parent = next(run for run in runs if run.data.tags.get("runner.sweep") == "true")
    children = {
        run.info.run_name: run.info.run_id
        for run in runs
        if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    single = next(run for run in runs if run.data.tags.get("diag.suite") == "full")
    assert len(children) == 3 and len(runs) == 5, [run.info.run_name for run in runs]
    return Record(
        folder,
        uri,
        experiment.experiment_id,
        single.info.run_id,
        single.info.run_name,
        parent.info.run_id,
        parent.info.run_name,
        children,
        parent.data.tags["runner.best_run_id"],
    )


@pytest.fixture(scope="module")
def record(browser, tmp_path_factory) -> Record:
    """A run with diagnostics=full and a 3-trial Optuna search, in one experiment of a fresh SQLite store.

    Written once per test session: under pytest-xdist this module's tests may be spread over workers, and the
    first one to get here writes the store while the others wait on the lock and then read it.
    """
    import fcntl

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # each worker's basetemp is a folder in the session's
    folder = shared / "browser-record"
    uri = f"sqlite:///{folder}/store/mlflow.db"
    with open(shared / "browser-record.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "complete").exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed attempt left
            folder.mkdir()
            write_record(folder, uri)
            (folder / "complete").touch()
    return read_record(folder, uri)


@pytest.fixture(scope="module")
def ui(record, tmp_path_factory):
    """`mlflow server` on the record's store, bound to 127.0.0.1, as a person would start `mlflow ui`."""
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    port = free_port()
    log = tmp_path_factory.mktemp("mlflow-server") / "server.log"
    store = record.folder / "store"
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
                record.uri,
                "--artifacts-destination",
                str(store / "mlartifacts"),
            ],
            cwd=store,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/health", server, "mlflow server", log, timeout=180)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(WAIT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def screenshot(page, record: Record, name: str, height: int | None = None) -> Path:
    """Into the test output, and a copy into $RUNNER_SCREENSHOTS_DIR (the README's images) when set;
    ``height`` crops off the empty bottom of the window."""
    path = record.folder / "screenshots" / f"{name}.png"
    path.parent.mkdir(exist_ok=True)
    page.evaluate("document.activeElement && document.activeElement.blur()")  # no focus ring in the picture
    clip = {"x": 0, "y": 0, "width": page.viewport_size["width"], "height": height} if height else None
    page.screenshot(path=str(path), clip=clip)
    copy_to = os.environ.get("RUNNER_SCREENSHOTS_DIR")
    if copy_to:
        Path(copy_to).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(copy_to) / path.name)
    return path


def close_assistant(page) -> None:
    """MLflow opens its chat panel on a first visit; it only takes room from the page (and the screenshots)."""
    from playwright.sync_api import TimeoutError as NoPanel

    with contextlib.suppress(NoPanel):
        page.locator('[data-component-id="mlflow.assistant.chat_panel.close"]').click(timeout=5_000)


def open_runs(page, ui: str, record: Record, query: str = "") -> None:
    """The experiment's runs table in the "Model training" view (MLflow 3 starts a fresh browser on GenAI)."""
    page.goto(f"{ui}/#/experiments/{record.experiment_id}/runs?workflowType=machine_learning{query}")
    page.get_by_role("link", name=record.parent_name).wait_for()
    close_assistant(page)


def run_row(page, name: str):
    return page.locator("[role=row]", has_text=name).first


def row_index(page, name: str) -> int:
    return int(run_row(page, name).get_attribute("aria-rowindex"))


def poll(read, expected, seconds: float = 60):
    """``read()`` until it returns ``expected`` (the table re-renders when new data arrives) or time is up."""
    deadline = time.monotonic() + seconds
    while (value := read()) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    return value


def png_width(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[16:20], "big")  # the IHDR chunk, right after the signature


# ---------------------------------------------------------------- what a person looks for


def test_the_experiment_is_listed_and_opens_on_its_runs(page, ui, record):
    page.goto(f"{ui}/#/experiments")
    listed = page.get_by_role("link", name=EXPERIMENT, exact=True)
    listed.wait_for()
    close_assistant(page)
    screenshot(page, record, "experiments")

    page.get_by_text("Model training", exact=True).click()
    listed.click()
    page.wait_for_url(f"**/#/experiments/{record.experiment_id}/**")
    page.get_by_role("link", name=record.parent_name).wait_for()
    assert page.get_by_role("link", name=record.run_name).is_visible()
    assert "5 matching runs" in page.inner_text("body")


def test_sweep_trials_are_nested_under_their_parent(page, ui, record):
    open_runs(page, ui, record)
    parent = run_row(page, record.parent_name)
    child_links = [page.get_by_role("link", name=name, exact=True) for name in record.children]
    assert all(link.count() == 0 for link in child_links), "the children should start folded into the parent"

    parent.locator("[col-id*='Run Name'] button").click()  # the parent's expander, its only button
    for link in child_links:
        link.wait_for()
    parent_index = int(parent.get_attribute("aria-rowindex"))
    child_indexes = sorted(row_index(page, name) for name in record.children)
    assert child_indexes == [parent_index + 1, parent_index + 2, parent_index + 3]
    parent_x = page.get_by_role("link", name=record.parent_name).bounding_box()["x"]
    assert all(link.bounding_box()["x"] > parent_x for link in child_links), "children are indented"
    assert page.get_by_role("link", name=record.run_name).bounding_box()["x"] == parent_x

    screenshot(page, record, "sweep_trials", height=430)


def test_sorting_by_the_objective_puts_the_sweeps_best_trial_first(page, ui, record):
    client = MlflowClient(tracking_uri=record.uri)
    best_name = client.get_run(record.best_run_id).info.run_name
    objective = {name: client.get_run(run_id).data.metrics["val_loss"] for name, run_id in record.children.items()}
    assert min(objective, key=objective.get) == best_name  # what the runner tagged is what sorting will show
    open_runs(page, ui, record)

    page.get_by_role("button", name="Sort: Created").click()
    page.get_by_placeholder("Search").last.fill("val_loss")
    page.get_by_role("menuitemcheckbox", name="val_loss", exact=True).click()
    page.get_by_role("button", name="Sort: val_loss").click()
    page.get_by_role("button", name="Sort ascending").click()
    page.keyboard.press("Escape")
    page.wait_for_url("**orderByAsc=true**")
    expected = sorted(objective, key=objective.get)
    shown = poll(lambda: sorted(record.children, key=lambda name: row_index(page, name)), expected)
    assert shown == expected, "trials in table order vs by val_loss"
    # the parent has no val_loss of its own (it holds best_val_loss): it drops below its trials
    assert row_index(page, record.parent_name) > max(row_index(page, name) for name in record.children)
    screenshot(page, record, "sorted_by_val_loss")


def test_two_runs_compare_side_by_side(page, ui, record):
    client = MlflowClient(tracking_uri=record.uri)
    names = sorted(record.children)[:2]
    open_runs(page, ui, record)
    run_row(page, record.parent_name).locator("[col-id*='Run Name'] button").click()
    for name in names:
        run_row(page, name).locator("input.ag-checkbox-input").check()
    page.get_by_role("button", name="Compare", exact=True).click()
    page.wait_for_url("**/#/compare-runs?runs=**")
    page.get_by_text("Comparing 2 Runs").wait_for()
    text = page.inner_text("body")
    for name in names:
        assert name in text
        assert client.get_run(record.children[name]).data.params["optimizer.learning_rate"] in text
    screenshot(page, record, "compare")


def test_a_runs_chart_shows_val_loss_at_every_epoch(page, ui, record):
    from playwright.sync_api import expect

    history = MlflowClient(tracking_uri=record.uri).get_metric_history(record.run_id, "val_loss")
    assert [point.step for point in history] == list(range(1, EPOCHS + 1))
    page.goto(
        f"{ui}/#/experiments/{record.experiment_id}/runs/{record.run_id}/model-metrics?workflowType=machine_learning"
    )
    close_assistant(page)
    page.get_by_placeholder("Search metric charts").fill("val_loss")
    chart = page.locator(".js-plotly-plot")
    expect(chart).to_have_count(1, timeout=WAIT_MS)
    # Plotly keeps what it draws on its element: the points of the line, not just pixels
    traces = chart.evaluate("element => element.data.map(trace => ({x: trace.x, y: trace.y}))")
    assert traces and all(trace["x"] == [point.step for point in history] for trace in traces)
    assert traces[0]["y"] == pytest.approx([point.value for point in history])
    assert "Step" in chart.inner_text()

    page.get_by_placeholder("Search metric charts").fill("val_")
    expect(chart).to_have_count(3, timeout=WAIT_MS)
    screenshot(page, record, "run_val_metrics", height=630)


def test_plots_and_the_diagnostics_report_open_in_the_artifact_viewer(page, ui, record):
    artifacts = Path(
        MlflowClient(tracking_uri=record.uri).get_run(record.run_id).info.artifact_uri.removeprefix("file://")
    )
    page.goto(f"{ui}/#/experiments/{record.experiment_id}/runs/{record.run_id}/artifacts?workflowType=machine_learning")
    close_assistant(page)
    page.get_by_text("plots", exact=True).click()
    page.get_by_text("learning_curves.png", exact=True).click()
    image = page.locator("img[src^='blob:']").first
    image.wait_for()
    page.wait_for_function("image => image.complete && image.naturalWidth > 0", arg=image.element_handle())
    assert image.evaluate("image => image.naturalWidth") == png_width(artifacts / "plots" / "learning_curves.png")
    screenshot(page, record, "artifact_plot")

    page.get_by_text("diagnostics", exact=True).click()
    page.get_by_text("report.html", exact=True).click()
    report = page.frame_locator("iframe").first
    report.get_by_role("heading", name="Diagnostics:").wait_for()
    shown = report.locator("body").inner_text()
    checks = json.loads((artifacts / "diagnostics" / "report.json").read_text())["checks"]
    assert len(checks) > 10
    for check in checks:
        assert check["check"] in shown and check["verdict"] in shown
    screenshot(page, record, "artifact_report")


def row_cell(page, name: str, column: str):
    """The cell of ``column`` in the row of run ``name``: the grid splits a row between its pinned and scrolling
    parts, one element each, that share the row's index."""
    return page.locator(f"[role=row][aria-rowindex='{row_index(page, name)}'] [col-id*='{column}']").first


def test_the_runs_table_shows_each_runs_data_sets_and_model(page, ui, record):
    run = MlflowClient(tracking_uri=record.uri).get_run(record.run_id)
    expected = {
        f"{item.dataset.name} ({item.dataset.digest})": next(tag.value for tag in item.tags)
        for item in run.inputs.dataset_inputs
    }
    assert sorted(expected.values()) == ["test", "train", "val"]
    [output] = run.outputs.model_outputs
    open_runs(page, ui, record)

    datasets = row_cell(page, record.run_name, "Dataset")
    datasets.get_by_role("button", name=next(iter(expected))).wait_for(state="attached")
    # the cell shows the first data set and a "+2" for the others, which are in it all the same
    shown = [name for name in datasets.get_by_role("button").all_inner_texts() if name in expected]
    contexts = [context.strip().lower() for context in datasets.get_by_role("status").all_inner_texts()]
    assert dict(zip(shown, contexts, strict=True)) == expected, "each split's data set with its context"

    model = row_cell(page, record.run_name, "Models").get_by_role("link", name="mlflow_model", exact=True)
    assert model.get_attribute("href").endswith(f"/experiments/{record.experiment_id}/models/{output.model_id}")
    screenshot(page, record, "runs_datasets_models", height=430)


def test_a_runs_system_metrics_tab_draws_the_sampled_cpu_use(page, ui, record):
    from playwright.sync_api import expect

    client = MlflowClient(tracking_uri=record.uri)
    system = sorted(key for key in client.get_run(record.run_id).data.metrics if key.startswith("system/"))
    history = client.get_metric_history(record.run_id, "system/cpu_utilization_percentage")
    assert len(history) >= 2, "the run lasted long enough for the monitor to sample it more than once"
    page.goto(f"{ui}/#/experiments/{record.experiment_id}/runs/{record.run_id}/overview?workflowType=machine_learning")
    close_assistant(page)
    page.get_by_role("tab", name="System metrics").click()
    page.wait_for_url("**/system-metrics**")
    # the section counts its charts, one per metric (drawn as they scroll into view)
    section = page.get_by_role("figure").filter(has_text="System metrics")
    expect(section).to_contain_text(f"({len(system)})")
    expect(page.get_by_role("heading", name="cpu_utilization_percentage", exact=True)).to_be_visible()

    page.get_by_placeholder("Search metric charts").fill("cpu_utilization")
    chart = page.locator(".js-plotly-plot")
    expect(chart).to_have_count(1, timeout=WAIT_MS)
    traces = chart.evaluate("element => element.data.map(trace => ({x: trace.x, y: trace.y}))")
    assert traces and traces[0]["x"] == [point.timestamp for point in history], "one point per sample, at its time"
    assert traces[0]["y"] == pytest.approx([point.value for point in history], abs=0.1)
    screenshot(page, record, "run_system_metrics", height=630)
