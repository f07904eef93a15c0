"""The experiment's configuration: the schema dataclasses, their validation and the metric facts."""
