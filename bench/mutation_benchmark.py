"""Mutation benchmark of the diagnostics: faults from the mutation-testing literature (DeepCrime, Humbatova et
al., ISSTA 2021) seeded into the healthy corpus (bench/healthy_corpus).

    python bench/mutation_benchmark.py --jobs 2 --json /tmp/mutants.json
    python bench/mutation_benchmark.py --limit 10 --only lr_

Each operator changes one thing in a corpus ``Spec`` and declares the top-diagnosis causes that would be
right for it.  An operator applies to the setups its ``applies`` accepts; at most --per-operator of them
(default 12), picked in a fixed hashed order, so every operator gets >= 8 setups.  Mutants are interleaved by
operator, so --limit N samples many operators.

A mutant that does not actually hurt training is dropped and counted: hurt means its trained copy's test
score (balanced accuracy, or R^2 for regression; NaN predictions count as hurt) is below the healthy setup's
score at the same seed (a plain fit) minus HURT_MARGIN = 0.05.  Mutants whose run raised (Keras refused the
model) are counted as errors and left out too.  Detected: ``report.worst`` is WARN or FAIL.  Right: the
top diagnosis (``report.diagnosis.cause``) is in the operator's accepted set (never right while the Report
has no diagnosis).

Tuning and test halves: operators (and, separately, corpus setups) are sorted by
sha256("diag-halves-2026:" + name); the first half of each sorted list (rounded down) is the tuning half, the
rest the test half.
A mutant is "tuning" only when both its operator and its setup are; every other mutant is "test" (it holds
at least one thing the calibration never saw).  Calibrate on the tuning table, judge on the test table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.healthy_corpus import CORPUS, Spec
from bench.healthy_corpus.runs import diagnose_run, map_jobs, plain_run

HURT_MARGIN = 0.05
HALF_SALT = "diag-halves-2026"
TARGET_DETECTED, TARGET_RIGHT = 90.0, 80.0
CAUSES = frozenset(
    {
        "loss_output_mismatch",
        "lr_too_high",
        "lr_too_low",
        "unscaled_inputs",
        "unscaled_targets",
        "bad_init",
        "dead_relu",
        "vanishing_gradient",
        "exploding_gradient",
        "saturation",
        "too_few_epochs",
        "wrong_labels",
        "underfitting_capacity",
        "overfitting",
        "regularization_too_strong",
        "split_shift",
        "leakage",
        "bad_data",
        "missing_nonlinearity",
        "wrong_gradient",
        "none",
    }
)
# Batch size 1 multiplies the steps: keep that operator to setups this cheap (train rows x epochs).
BATCH1_MAX_STEPS = 12_000


@dataclass(frozen=True)
class Operator:
    name: str
    accepts: frozenset
    applies: Callable[[Spec], bool]
    mutate: Callable[[Spec], Spec]


def _train_rows(spec: Spec) -> int:
    return int(spec.rows * 0.6)


def _dense_stack(spec: Spec) -> bool:
    return spec.arch in ("mlp", "cnn")


def _raw_inputs_unscaled(spec: Spec) -> bool:
    """Setups whose raw inputs are far from unit scale, so dropping the scaler changes what the net sees."""
    return spec.input_scaling != "none" and (
        spec.feature_scale >= 10 or spec.input_scaling == "max" or spec.data == "house_prices"
    )


def _sigmoid_head(spec: Spec) -> bool:
    return spec.task == "binary" and spec.label_encoding == "binary" and spec.output_activation == "sigmoid"


def _change_loss(spec: Spec) -> Spec:
    # Regression trained with cross-entropy; a single sigmoid unit under categorical cross-entropy (loss 0).
    new = "binary_crossentropy" if spec.task == "regression" else "categorical_crossentropy"
    return replace(spec, loss=new)


def _wrong_units(spec: Spec) -> Spec:
    # A two-unit softmax head on one 0/1 label column (broadcast): the two outputs cannot both match it.
    return replace(spec, output_units=2, output_activation="softmax")


def _ops() -> tuple[Operator, ...]:
    f = frozenset
    everything = lambda spec: True
    return (
        Operator(
            "change_activation_sigmoid",
            f({"vanishing_gradient", "saturation", "underfitting_capacity", "lr_too_low", "too_few_epochs"}),
            lambda s: _dense_stack(s) and s.hidden_activation != "sigmoid",
            lambda s: replace(s, hidden_activation="sigmoid"),
        ),
        Operator(
            "change_loss",
            f({"loss_output_mismatch"}),
            lambda s: s.task == "regression" or _sigmoid_head(s),
            _change_loss,
        ),
        Operator(
            "flip_from_logits",
            f({"loss_output_mismatch"}),
            lambda s: s.task != "regression",
            lambda s: replace(s, from_logits=not s.from_logits),
        ),
        Operator(
            "lr_x100",
            f({"lr_too_high", "exploding_gradient", "dead_relu", "saturation"}),
            everything,
            lambda s: replace(s, learning_rate=s.learning_rate * 100),
        ),
        Operator(
            "lr_div1000",
            f({"lr_too_low", "too_few_epochs", "underfitting_capacity", "vanishing_gradient"}),
            everything,
            lambda s: replace(s, learning_rate=s.learning_rate / 1000),
        ),
        Operator(
            "init_zeros",
            f({"bad_init", "vanishing_gradient", "dead_relu"}),
            everything,
            lambda s: replace(s, initializer="zeros"),
        ),
        Operator(
            "init_constant",
            f({"bad_init", "saturation", "exploding_gradient", "dead_relu"}),
            everything,
            lambda s: replace(s, initializer="constant"),
        ),
        Operator(
            "init_huge_std",
            f({"bad_init", "exploding_gradient", "saturation", "dead_relu"}),
            everything,
            lambda s: replace(s, initializer="huge"),
        ),
        Operator(
            "remove_input_scaling",
            f({"unscaled_inputs"}),
            _raw_inputs_unscaled,
            lambda s: replace(s, input_scaling="none"),
        ),
        Operator(
            "remove_target_scaling",
            f({"unscaled_targets"}),
            lambda s: s.target_scaling,
            lambda s: replace(s, target_scaling=False),
        ),
        Operator("shuffle_labels", f({"wrong_labels"}), everything, lambda s: replace(s, shuffle_labels=True)),
        Operator(
            "cut_epochs",
            f({"too_few_epochs", "underfitting_capacity", "lr_too_low"}),
            lambda s: s.epochs >= 10,
            lambda s: replace(s, epochs=1 if s.epochs < 100 else 2),
        ),
        Operator(
            "dropout_0.9",
            f({"regularization_too_strong", "underfitting_capacity"}),
            everything,
            lambda s: replace(s, dropout=0.9),
        ),
        Operator(
            "huge_l2",
            f({"regularization_too_strong", "underfitting_capacity"}),
            everything,
            lambda s: replace(s, l2=1.0),
        ),
        Operator(
            "batch1_high_lr",
            f({"lr_too_high", "exploding_gradient", "dead_relu", "saturation"}),
            lambda s: s.batch_size > 1 and _train_rows(s) * s.epochs <= BATCH1_MAX_STEPS,
            lambda s: replace(s, batch_size=1, learning_rate=s.learning_rate * 30),
        ),
        Operator("wrong_output_units", f({"loss_output_mismatch"}), _sigmoid_head, _wrong_units),
        Operator(
            "softmax_on_sigmoid_head",
            f({"loss_output_mismatch"}),
            _sigmoid_head,
            lambda s: replace(s, output_activation="softmax"),
        ),
        Operator(
            "remove_nonlinearity",
            f({"missing_nonlinearity", "underfitting_capacity"}),
            _dense_stack,
            lambda s: replace(s, hidden_activation="linear"),
        ),
        Operator("split_shift", f({"split_shift"}), _raw_inputs_unscaled, lambda s: replace(s, scale_eval=False)),
    )


OPERATORS = _ops()
OPERATORS_BY_NAME = {operator.name: operator for operator in OPERATORS}


def halves(names: list[str]) -> dict[str, str]:
    """name -> 'tuning' or 'test': the first half of the names in salted-hash order is the tuning half."""
    ordered = _hashed_order(sorted(set(names)), HALF_SALT)
    return {name: "tuning" if rank < len(ordered) // 2 else "test" for rank, name in enumerate(ordered)}


def mutant_half(operator: str, setup: str) -> str:
    operator_half = halves([o.name for o in OPERATORS])[operator]
    setup_half = halves([s.name for s in CORPUS])[setup]
    return "tuning" if operator_half == setup_half == "tuning" else "test"


def _hashed_order(names: list[str], salt: str) -> list[str]:
    return sorted(names, key=lambda name: hashlib.sha256(f"{salt}:{name}".encode()).hexdigest())


def mutants(per_operator: int = 12, only: str = "") -> list[tuple[Operator, Spec, Spec]]:
    """(operator, healthy spec, mutant spec), interleaved by operator; mutants equal to their parent are skipped."""
    by_name = {spec.name: spec for spec in CORPUS}
    columns = []
    for operator in OPERATORS:
        names = [s.name for s in CORPUS if operator.applies(s) and operator.mutate(s) != s]
        chosen = _hashed_order(names, operator.name)[:per_operator]
        columns.append(
            [
                (operator, by_name[n], _named_mutant(operator, by_name[n]))
                for n in chosen
                if only in operator.name or only in n
            ]
        )
    return [column[i] for i in range(max(map(len, columns), default=0)) for column in columns if i < len(column)]


def _named_mutant(operator: Operator, parent: Spec) -> Spec:
    """The mutant, named ``<setup>__<operator>`` so progress lines and JSON say which fault it carries."""
    return replace(operator.mutate(parent), name=f"{parent.name}__{operator.name}")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", default="", help="operators or setups whose name contains this")
    parser.add_argument("--limit", type=int, default=0, help="run only the first N mutants (0: all)")
    parser.add_argument("--per-operator", type=int, default=12, help="setups per operator")
    parser.add_argument("--jobs", type=int, default=1, help="processes (each with 1 TensorFlow thread)")
    parser.add_argument("--json", type=Path, help="write every mutant's outcome here")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    chosen = mutants(args.per_operator, args.only)
    chosen = chosen[: args.limit] if args.limit else chosen
    started = time.perf_counter()
    parents = sorted({(parent.name, seed) for _, parent, _ in chosen for seed in args.seeds})
    print(
        f"{len(chosen)} mutants x {len(args.seeds)} seed(s); {len(parents)} healthy baselines; {args.jobs} job(s)",
        flush=True,
    )
    by_name = {spec.name: spec for spec in CORPUS}
    healthy = {
        (o["setup"], o["seed"]): o
        for o in map_jobs(
            plain_run, [(by_name[name], seed) for name, seed in parents], args.jobs, on_result=_baseline_progress
        )
    }
    entries = [(operator, parent, mutant, seed) for operator, parent, mutant in chosen for seed in args.seeds]
    runs = map_jobs(diagnose_run, [(mutant, seed) for _, _, mutant, seed in entries], args.jobs, on_result=_progress)
    rows = [
        _judge(operator, parent, seed, run, healthy[(parent.name, seed)])
        for (operator, parent, _, seed), run in zip(entries, runs)
    ]
    print(render(rows, time.perf_counter() - started))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"hurt_margin": HURT_MARGIN, "mutants": rows}, indent=1, default=str))


def _baseline_progress(run: dict) -> None:
    # Printed so that a run stopped part-way can still be scored from its log.
    score = "n/a" if run["score"] is None else f"{run['score']:.3f}"
    print(f"  healthy {run['setup']:32s} seed {run['seed']} score {score} {run['error'][:80]}", flush=True)


def _progress(run: dict) -> None:
    score = "n/a" if run["score"] is None else f"{run['score']:.3f}"
    print(
        f"  {run['setup']:32s} seed {run['seed']} {run['worst'] or 'ERROR':4s} cause {run['cause']} "
        f"score {score} {run['seconds']:.1f} s {run['error'][:80]}",
        flush=True,
    )


def _judge(operator: Operator, parent: Spec, seed: int, run: dict, healthy: dict) -> dict:
    status = "kept"
    if run["error"] or healthy["error"] or healthy["score"] is None:
        status = "error"
    elif not hurt(run["score"], healthy["score"]):
        status = "dropped"
    return {
        "operator": operator.name,
        "setup": parent.name,
        "seed": seed,
        "half": mutant_half(operator.name, parent.name),
        "status": status,
        "healthy_score": healthy["score"],
        "score": run["score"],
        "worst": run["worst"],
        "cause": run["cause"],
        "detected": run["worst"] in ("WARN", "FAIL"),
        "right": run["cause"] in operator.accepts,
        "flagged": [f["check"] for f in run["flagged"]],
        "error": run["error"] or healthy["error"],
        "seconds": run["seconds"],
    }


def hurt(mutant_score, healthy_score: float, margin: float = HURT_MARGIN) -> bool:
    """True when the mutant trains worse than the healthy setup by more than ``margin`` (NaN: hurt)."""
    if mutant_score is None or math.isnan(mutant_score):
        return True
    return mutant_score < healthy_score - margin


def render(rows: list[dict], wall: float) -> str:
    lines = []
    for name in ("tuning", "test"):
        lines += _half_table(name, [r for r in rows if r["half"] == name])
    lines.append(f"wall {wall:.0f} s; hurt = score below the healthy one by more than {HURT_MARGIN}")
    return "\n".join(lines)


def _half_table(name: str, rows: list[dict]) -> list[str]:
    header = (
        f"{'operator':26s} {'mutants':>7s} {'dropped':>7s} {'errors':>6s} {'kept':>4s} "
        f"{'detected':>8s} {'right':>5s}  top causes"
    )
    lines = ["", f"== {name} half ==", header]
    totals = Counter()
    for operator in OPERATORS:
        mine = [r for r in rows if r["operator"] == operator.name]
        if not mine:
            continue
        counts = _counts(mine)
        totals.update(counts)
        causes = Counter(str(r["cause"]) for r in mine if r["status"] == "kept").most_common(3)
        lines.append(
            f"{operator.name:26s} {counts['mutants']:7d} {counts['dropped']:7d} {counts['error']:6d} "
            f"{counts['kept']:4d} {counts['detected']:8d} {counts['right']:5d}  "
            + ", ".join(f"{c} {n}" for c, n in causes)
        )
    kept = max(1, totals["kept"])
    lines.append(
        f"{'total':26s} {totals['mutants']:7d} {totals['dropped']:7d} {totals['error']:6d} "
        f"{totals['kept']:4d} {totals['detected']:8d} {totals['right']:5d}"
    )
    lines.append(
        f"detected {100 * totals['detected'] / kept:.1f}% (target >= {TARGET_DETECTED:.0f}%), right top "
        f"diagnosis {100 * totals['right'] / kept:.1f}% (target >= {TARGET_RIGHT:.0f}%) of {totals['kept']} "
        "kept mutants"
    )
    return lines


def _counts(rows: list[dict]) -> Counter:
    kept = [r for r in rows if r["status"] == "kept"]
    return Counter(
        mutants=len(rows),
        dropped=sum(r["status"] == "dropped" for r in rows),
        error=sum(r["status"] == "error" for r in rows),
        kept=len(kept),
        detected=sum(r["detected"] for r in kept),
        right=sum(r["right"] for r in kept),
    )


if __name__ == "__main__":
    main()
