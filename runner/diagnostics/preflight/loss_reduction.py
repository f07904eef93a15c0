"""preflight.loss_reduction: is the loss averaged over the batch, or summed?"""

from __future__ import annotations

import keras
import numpy as np

from runner.diagnostics.context import DiagnosticData, DiagnosticOptions
from runner.diagnostics.introspect import LossInfo, compiled_loss
from runner.diagnostics.preflight._shared import (
    STAGE,
    batch_loss,
    predict,
    probe_batch,
    result,
)
from runner.diagnostics.registry import check
from runner.diagnostics.result import FAIL, PASS, CheckResult

NAME = f"{STAGE}.loss_reduction"
SUM_REDUCTION_RATIO = 1.5  # loss on a batch repeated twice / loss on the batch: 1 for a mean, 2 for a sum
FIX = (
    "Use a mean reduction (reduction='sum_over_batch_size'), or the effective learning rate scales with the batch size."
)


def duplicated_batch_losses(
    model: keras.Model, loss: LossInfo, data: DiagnosticData, options: DiagnosticOptions
) -> tuple[float, float]:
    """The loss on a batch and on that batch repeated twice.  The model predicts each row on its own, so the
    repeated batch's predictions are the batch's repeated: one prediction, on initial_loss's probe batch,
    whose predict program is traced already (two more input shapes cost 0.2-0.4 s of tracing on JAX)."""
    x, y = probe_batch(data, options.probe_samples, options.seed)
    predictions = keras.ops.convert_to_numpy(predict(model, x))
    single = batch_loss(loss.fn, y, predictions)
    double = batch_loss(loss.fn, np.concatenate([y, y]), np.concatenate([predictions, predictions]))
    return single, double


@check(
    NAME,
    what="the loss on a batch repeated twice divided by the loss on the batch (1 for a mean, 2 for a sum)",
    threshold=SUM_REDUCTION_RATIO,
    fix=FIX,
    scope="model",
)
def check_loss_reduction(model: keras.Model, data: DiagnosticData, options: DiagnosticOptions) -> CheckResult:
    """A mean-reduced loss is unchanged when the batch is duplicated; a summed one doubles."""
    loss = compiled_loss(model)
    single, double = duplicated_batch_losses(model, loss, data, options)
    ratio = double / single if single > 0 else 1.0
    limit = options.threshold(NAME, SUM_REDUCTION_RATIO)
    evidence = {"loss": single, "loss_duplicated_batch": double, "reduction": loss.reduction}
    if ratio > limit:
        return result(
            NAME,
            FAIL,
            ratio,
            limit,
            f"the loss grows {ratio:.2f}x when the batch is duplicated: it is summed, not averaged",
            FIX,
            evidence=evidence,
        )
    return result(NAME, PASS, ratio, limit, f"loss averaged over the batch (ratio {ratio:.2f})", evidence=evidence)
