"""monitor.regularization: the share of the training loss that is the weight penalty, before training and at
the end."""

from __future__ import annotations

import math

from runner.diagnostics.context import DiagnosticOptions
from runner.diagnostics.monitors._shared import Observed, result
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, SKIP, WARN, CheckResult

CHECK = "monitor.regularization"
# A penalty that is most of the loss says the data term is swamped.
SHARE_LIMIT = 0.5
# Only a penalty that is nearly all of the loss from the start FAILs: the book's mnist_l2 (83% at the start,
# data loss still high after 5 epochs) is a deliberate, if too strong, choice the book shows as underfitting.
FAIL_SHARE = 0.9
DATA_FAR = 0.1  # a large share at the end matters only while the data loss is this share of chance or more
FIX = "lower the L2 factor (e.g. 10x-100x, to 1e-4) or remove it"


@check(
    CHECK,
    what="the regularisation penalty's share of the training loss on the probe batch, before training and at the end",
    threshold=f"WARN > {SHARE_LIMIT:g}, FAIL >= {FAIL_SHARE:g} before training",
    fix=FIX,
)
def check_regularization(observed: Observed, options: DiagnosticOptions) -> CheckResult:
    records, chance = observed.records, observed.chance
    limit = options.threshold(CHECK, SHARE_LIMIT)
    threshold = (
        f"regularisation share of the loss > {limit:g} before training, or at the end while the data "
        "loss is >= 10% of chance level (FAIL: >= 0.9 before training)"
    )
    if not any(records.reg_loss):
        return result(CHECK, SKIP, None, threshold, "the model has no weight regularisers")
    shares = [r / (r + d) if r + d > 0 else math.nan for r, d in zip(records.reg_loss, records.data_loss)]
    grad_ratio = [r / d if d > 0 else math.nan for r, d in zip(records.reg_grad_norm, records.data_grad_norm)]
    evidence = {
        "epochs": records.epochs,
        "reg_loss": records.reg_loss,
        "data_loss": records.data_loss,
        "share": shares,
        "reg_to_data_grad_norm": grad_ratio,
    }
    start, end = shares[0], shares[-1]
    data_far = chance is not None and records.data_loss[-1] >= DATA_FAR * chance
    message = (
        f"the regulariser is {start:.0%} of the loss before training and {end:.0%} at the end "
        f"(gradient norm {grad_ratio[-1]:.2g}x the data loss's)"
    )
    if start >= FAIL_SHARE:
        return result(CHECK, FAIL, end, threshold, f"strong regularisation: {message}", FIX, **evidence)
    # A penalty that grows to a quarter of the loss is what L2 on a small data set does by design (it fixed the
    # overfitting); only a penalty that is most of the loss says the data term is swamped.
    if start > limit or (end > limit and data_far):
        return result(CHECK, WARN, end, threshold, f"regularisation dominates: {message}", FIX, **evidence)
    return result(CHECK, PASS, end, threshold, message, **evidence)
