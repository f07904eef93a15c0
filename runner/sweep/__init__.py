"""The sweep wing: Optuna search, pruning, the parent MLflow run, trial links and the sweep report."""
