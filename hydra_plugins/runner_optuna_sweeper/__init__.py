"""Hydra sweeper ``runner_optuna``: Optuna search for the runner (the logic lives in ``runner.sweep.search``)."""
