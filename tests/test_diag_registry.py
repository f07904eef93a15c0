"""Every check is registered once, the same way in every stage, with the facts the catalogue prints."""

import numpy as np

from runner.diagnostics import DiagnosticData, DiagnosticOptions, diagnose, registry
from runner.diagnostics.result import STAGES


def test_every_stage_registers_its_checks_with_a_quantity_and_a_fix():
    entries = registry.checks()
    assert {entry.stage for entry in entries} == set(STAGES)
    assert len({entry.name for entry in entries}) == len(entries) >= 40
    for entry in entries:
        assert entry.what.strip(), f"{entry.name} does not say what it measures"
        informational = "information only" in entry.what  # never WARNs or FAILs, so it has nothing to fix
        assert entry.fix.strip() or informational, f"{entry.name} has no suggested fix"
        assert entry.run.__module__.rsplit(".", 1)[-1] in (entry.short_name, "capacity", "gradient_check"), (
            f"{entry.name} is not in a module of its own ({entry.run.__module__})"
        )


def test_a_full_run_reports_only_registered_checks_in_registry_order():
    import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid")]
    )
    model.compile("adam", "binary_crossentropy")
    data = DiagnosticData("binary", x[:64], y[:64], x[64:], y[64:])
    report = diagnose(model, data, "full", DiagnosticOptions(), fit_kwargs={"epochs": 2, "batch_size": 16})
    names = [result.check for result in report.results]
    known = [entry.name for entry in registry.checks()]
    assert set(names) <= set(known)
    for stage in ("monitor", "analysis"):
        ran = [name for name in names if name.startswith(stage + ".")]
        assert ran == [name for name in known if name in ran]
