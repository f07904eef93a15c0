"""The ``hydra/sweeper=runner_optuna`` plugin: a thin shim that hands Hydra's launcher to ``runner.sweep.search``.

Hydra finds sweepers only in the ``hydra_plugins`` namespace package and imports every plugin on every start, so
this module registers the settings' schema (a plain dataclass) and imports the sweep wing only when a sweep
runs, as Hydra's own optuna plugin does with its ``_impl``.
"""

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper

from runner.config.sweeper import RunnerOptunaSweeperConf

ConfigStore.instance().store(
    group="hydra/sweeper", name="runner_optuna", node=RunnerOptunaSweeperConf, provider="keras-runner"
)


class RunnerOptunaSweeper(Sweeper):
    def __init__(self, **settings) -> None:
        super().__init__()
        self.settings = settings  # also in self.config.hydra.sweeper, where run_sweep reads them
        self.config = None
        self.launcher = None
        self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments):
        from runner.sweep.search import run_sweep

        def compose(overrides):
            return self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))

        from runner.errors import ConfigError, Refused

        try:
            return run_sweep(self.config, self.launcher, compose, list(arguments))
        except ConfigError as error:  # a setting, refused before any trial: one line, not Hydra's traceback
            raise Refused(str(error)) from None
