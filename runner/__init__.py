"""The experiment runner: composes config, data, model, training, evaluation and tracking."""

__version__ = "0.1.0"
