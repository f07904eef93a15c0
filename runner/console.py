"""The console summary at the end of a run: final metrics, the run id, and where to look."""

from runner.tracking import sqlite_path

SPLITS = ("train", "val", "test")


def metrics_table(metrics: dict[str, float]) -> list[str]:
    """Rows of metric x split from keys like "val_mae" (those present for every split)."""
    names = []
    for key in metrics:
        split, _, name = key.partition("_")
        if split in SPLITS and name not in names and all(f"{s}_{name}" in metrics for s in SPLITS):
            names.append(name)
    width = max([len(name) for name in names] + [6])
    lines = [f"  {'metric':<{width}}  " + "  ".join(f"{split:>9}" for split in SPLITS)]
    for name in names:
        cells = (metrics.get(f"{split}_{name}") for split in SPLITS)
        lines.append(f"  {name:<{width}}  " + "  ".join(f"{value:>9.4f}" if value is not None else f"{'':>9}"
                                                        for value in cells))
    return lines


def ui_command(uri: str) -> str:
    if sqlite_path(uri) is not None:
        return f"mlflow ui --backend-store-uri {uri}   (then open http://127.0.0.1:5000)"
    return f"open {uri} in a browser"


def print_summary(cfg: dict, result, tracking_uri: str) -> None:
    metrics = result.metrics
    lines = [
        "",
        f"== {cfg['name']}: finished {int(metrics['epochs_run'])} epochs in {metrics['train_seconds']:.1f} s; "
        f"kept epoch {int(metrics['best_epoch'])} (best {cfg['trainer']['checkpoint']['monitor']} = "
        f"{result.objective:.4f}) ==",
        *metrics_table(metrics),
        f"  run id:    {result.run_id} (experiment {cfg['tracking']['experiment']!r})",
        f"  artifacts: {result.artifact_uri}",
        f"  run folder: {result.output_dir}",
        f"  browse:    {ui_command(tracking_uri)}",
        *getattr(result, "diagnostics", []),  # the non-PASS diagnostic verdicts and their fixes
    ]
    print("\n".join(lines), flush=True)
