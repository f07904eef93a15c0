"""Errors the runner reports to the user as a message, without a traceback."""


class RunnerError(Exception):
    """Base class: an expected failure with a message that says what to do."""


class ConfigError(RunnerError):
    """The composed configuration is invalid (a range, a choice or a contradiction)."""


class TrackingError(RunnerError):
    """The tracking store or the output directory cannot be used."""


class TrainingError(RunnerError):
    """Training produced an unusable result (e.g. the loss became NaN)."""


class Refused(BaseException):
    """A refusal found before anything ran, to be printed as the one line it is. Not an Exception: Hydra prints
    any Exception from its composition or its sweeper as a traceback, turns one from a callback into a warning
    (and swallows it while it guesses the run mode); this one passes through to runner.cli.main()."""
