"""monitor.dead_units: the share of ReLU-family units of each hidden layer that stay (almost) silent on the
probe batch."""

from __future__ import annotations

import numpy as np

from runner.diagnostics.context import DiagnosticOptions
from runner.diagnostics.monitors._shared import Observed, activation_check
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, WARN, CheckResult

CHECK = "monitor.dead_units"
# A unit is dead when the 95th percentile of |activation| over the probe rows is below this: it may fire on a
# handful of rows, but too rarely and too weakly to matter.
DEAD_LEVEL = 1e-5
SHARE_LIMIT = 0.5  # a layer with more than half of its units dead has lost most of its width
WHAT = "dead units (95th percentile of |activation| < 1e-5)"
FIX = "use he_normal initialisation, zero or small positive biases, a lower learning rate, or leaky_relu/elu"
REGULARIZER_FIX = "lower the L2 factor; "  # put before FIX when a dominating weight penalty pruned the units


def dead_share(values: np.ndarray) -> float:
    """Share of units (last axis) whose 95th percentile of |activation| over the rows is below DEAD_LEVEL."""
    values = np.abs(values.reshape(-1, values.shape[-1]))
    return float(np.mean(np.percentile(values, 95, axis=0) < DEAD_LEVEL))


def regularizer_dominated(records) -> bool:
    """Whether the weight penalty was larger than the data loss at any measured epoch."""
    return any(r > d for r, d in zip(records.reg_loss, records.data_loss))


@check(
    CHECK,
    what="the share of each ReLU-family hidden layer's units whose 95th percentile of |activation| "
    "on the probe batch is below 1e-5, at the end of training",
    threshold=SHARE_LIMIT,
    fix=FIX,
)
def check_dead_units(observed: Observed, options: DiagnosticOptions) -> CheckResult:
    records = observed.records
    found = activation_check(CHECK, records.dead, options.threshold(CHECK, SHARE_LIMIT), observed, "relu", WHAT, FIX)
    # A dominating weight penalty shrinks whole units to zero (mnist_l2: 94% of a layer): the same cause as
    # monitor.regularization, so one FAIL there is enough and the fix named here is the regulariser's.
    if found.verdict == FAIL and regularizer_dominated(records):
        found.verdict = WARN
        found.message += "; likely pruned by the dominating regulariser (see monitor.regularization)"
        found.fix = REGULARIZER_FIX + found.fix
    return found
