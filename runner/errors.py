"""Errors the runner reports to the user as a message, without a traceback."""


class RunnerError(Exception):
    """Base class: an expected failure with a message that says what to do."""


class ConfigError(RunnerError):
    """The composed configuration is invalid (a range, a choice or a contradiction)."""


class TrackingError(RunnerError):
    """The tracking store or the output directory cannot be used."""


class TrainingError(RunnerError):
    """Training produced an unusable result (e.g. the loss became NaN)."""
