"""Guards on what a run accepts and records: Python targets named by configs, and secrets kept out of MLflow.

Imports neither TensorFlow nor MLflow: the command line checks a composed config with it before anything
heavy is loaded, and tracking.py passes every param, tag and text artifact through ``redact_*``.
"""

import os
import re
from collections.abc import Mapping

from omegaconf import DictConfig, ListConfig, OmegaConf

from runner.runtime.compat import child_node, is_none_or_missing, raw_node_value

# Hydra imports and calls whatever a `_target_` names (hydra.callbacks are instantiated before any job runs).
# Hydra's own policy only blocklists known-dangerous callables; builtins.open or urllib would still run.
ALLOWED_TARGET_PREFIXES = (
    "runner.",
    "models.",
    "datasets.",
    "keras.",
    "optuna.",
    "hydra_plugins.",
    "hydra._internal.core_plugins.",
    "hydra.experimental.callbacks.",
)
# Python's logging config instantiates `class` and `()` entries the same way.
ALLOWED_LOGGING_PREFIXES = ("logging.", "colorlog.")
TRUSTED_TARGETS_ENV = "RUNNER_TRUSTED_TARGETS"  # colon-separated extra prefixes, e.g. "mylab.callbacks."

REDACTED = "***"
SECRET_WORDS = frozenset(
    {
        "token",
        "tokens",
        "password",
        "passwd",
        "secret",
        "secrets",
        "key",
        "apikey",
        "passphrase",
        "credential",
        "credentials",
    }
)
MIN_SECRET_VALUE = 8  # shorter environment values are too likely to occur by chance in ordinary text
_URL_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):[^@/\s]*@")
# A secret-named key's value in `key=value` (overrides, query strings) and YAML `key: value` lines.
_ASSIGNMENT = re.compile(r"(?P<key>[\w.+~-]+)(?P<sep>=)(?P<value>'[^'\n]*'|\"[^\"\n]*\"|[^\s&,;'\"]+)")
_YAML_ITEM = re.compile(r"(?m)^(?P<key>[ \t]*(?:- )?[a-z0-9_.-]+)(?P<sep>:[ \t]+)(?P<value>\S.*)$")
# JSON and Python reprs of dicts: "key": "value", 'key': 'value'.
_QUOTED_ITEM = re.compile(
    r"""(?P<key>"[^"\n]+"|'[^'\n]+')(?P<sep>:\s*)"""
    r"""(?P<value>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')"""
)


class TargetNotAllowed(ValueError):
    """A config names a Python callable outside the packages the runner trusts."""


# ---------------------------------------------------------------- config-selected targets


def allowed_prefixes() -> tuple[str, ...]:
    extra = [p.strip() for p in os.environ.get(TRUSTED_TARGETS_ENV, "").split(":") if p.strip()]
    return ALLOWED_TARGET_PREFIXES + tuple(extra)


def target_problems(config: DictConfig) -> list[str]:
    """Every `_target_` (and logging `class`/`()`) in a composed config that points outside the allowed packages."""
    prefixes = allowed_prefixes()
    problems = []
    for path, key, value in _instantiated_names(config, ""):
        allowed = prefixes + (ALLOWED_LOGGING_PREFIXES if key != "_target_" else ())
        if not isinstance(value, str) or not value.startswith(allowed):
            problems.append(f"{path}={value!r}")
    return problems


def check_targets(config: DictConfig) -> None:
    problems = target_problems(config)
    if problems:
        raise TargetNotAllowed(
            "refused to instantiate Python objects named by the config: " + ", ".join(problems) + ". Only "
            f"classes from {', '.join(p.rstrip('.') for p in ALLOWED_TARGET_PREFIXES)} may be named by "
            f"_target_; if you trust another package, add its prefix to ${TRUSTED_TARGETS_ENV} "
            f"(e.g. {TRUSTED_TARGETS_ENV}=mylab.callbacks.). Nothing was run."
        )
    refusal = builder_refusal(config)
    if refusal:
        raise TargetNotAllowed(refusal)


def builder_refusal(config: DictConfig) -> str | None:
    """Why a composed config's ``model.builder`` (model=custom) may not be imported; None when it may, or when
    no builder is set (the config checks report an unset one)."""
    try:
        builder = OmegaConf.select(config, "model.builder", default=None)
        trusted = OmegaConf.select(config, "model.trusted_modules", default=None)
    except Exception as error:  # noqa: BLE001 - whatever the reason, a name that does not resolve is not trusted
        return f"refused to import model.builder: it does not resolve ({error}). Nothing was imported."
    return None if builder is None else untrusted_builder(builder, trusted or ())


def untrusted_builder(builder: str, trusted_modules=()) -> str | None:
    """Why the function named by a ``model.builder`` ("package.module:function") may not be imported; None when
    it may: its module, or a package above it, is in the config's ``model.trusted_modules``, or its dotted
    name starts with a trusted target prefix (the runner's own, or one from $RUNNER_TRUSTED_TARGETS)."""
    module, _, function = str(builder).partition(":")
    named = [str(name).strip() for name in trusted_modules]
    if any(module == name or module.startswith(f"{name}.") for name in named if name):
        return None
    if f"{module}.{function}".startswith(allowed_prefixes()):
        return None
    package = module.split(".")[0] or "my_package"
    return (
        f"refused to import model.builder={str(builder)!r}: user code is trusted only when the config names its "
        f"package in model.trusted_modules or ${TRUSTED_TARGETS_ENV} holds a prefix of it, and neither names "
        f"{package}. If you trust it, add model.trusted_modules=[{package}] (trusted_modules: [{package}] in the "
        f"YAML), or export {TRUSTED_TARGETS_ENV}={package}. Nothing was imported."
    )


def _instantiated_names(node, path: str):
    """(path, key, value) of each `_target_`, and of each `class`/`()` under a logging config.

    Only those values are resolved (`_target_: ${oc.env:X}` is checked as resolved): other values may hold
    interpolations that only resolve inside a job, or override strings that merely look like one.
    """
    if isinstance(node, DictConfig) and not is_none_or_missing(node):
        keys = list(node.keys())
    elif isinstance(node, ListConfig) and not is_none_or_missing(node):
        keys = list(range(len(node)))
    else:
        return
    in_logging = path.startswith(("hydra.job_logging", "hydra.hydra_logging"))
    for key in keys:
        child_path = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else str(key)
        if key == "_target_" or (in_logging and key in ("class", "()")):
            try:
                value = node[key]
            except Exception:  # noqa: BLE001 - whatever the reason, an unknown target is not allowed
                value = f"<unresolvable: {raw_node_value(node, key)}>"
            yield child_path, key, value
        else:
            yield from _instantiated_names(child_node(node, key), child_path)


# ---------------------------------------------------------------- secrets


def is_secret_name(name: str) -> bool:
    """Whether a key or variable name says it holds a secret: `api_key`, `MLFLOW_TRACKING_TOKEN`, `dbPassword`
    (a whole word of the name, so `monkey` and `keyboard` are not)."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name))
    return any(word in SECRET_WORDS for word in re.split(r"[^a-z0-9]+", spaced.lower()))


def secret_env_values() -> list[str]:
    """Values of environment variables whose names say they are secrets, longest first."""
    values = {
        value
        for name, value in _environment_snapshot().items()
        if is_secret_name(name) and len(value) >= MIN_SECRET_VALUE
    }
    return sorted(values, key=len, reverse=True)


def _environment_snapshot() -> dict[str, str]:
    # os.environ.items() (and copy()) look each name up after listing the names, so a thread that unsets a
    # variable in between (MLflow's telemetry thread removes its session id) makes them raise KeyError.
    snapshot = {name: os.environ.get(name) for name in list(os.environ)}
    return {name: value for name, value in snapshot.items() if value is not None}


def redact_text(text: str) -> str:
    """Passwords in URLs, values of secret-named `key=value` / `key: value` pairs, and the values of secret
    environment variables, replaced by ***."""
    text = _URL_USERINFO.sub(lambda m: f"{m['head']}:{REDACTED}@", str(text))

    def hide(match: re.Match) -> str:
        name = match["key"].strip(" \t-+~\"'")
        return f"{match['key']}{match['sep']}{REDACTED}" if is_secret_name(name) else match[0]

    for pattern in (_ASSIGNMENT, _YAML_ITEM, _QUOTED_ITEM):
        text = pattern.sub(hide, text)
    for value in secret_env_values():
        text = text.replace(value, REDACTED)
    return text


def redact_mapping(values: Mapping[str, str]) -> dict[str, str]:
    """Params or tags: a secret-named key keeps its name (so users see it was set) with its value hidden."""
    return {
        key: REDACTED if is_secret_name(key) and str(value) not in ("", "None") else redact_text(str(value))
        for key, value in values.items()
    }
