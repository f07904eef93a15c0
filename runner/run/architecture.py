"""The network drawn as a picture, ``model/architecture.png``, beside its text summary (reports/model_summary.txt).

Keras draws it through pydot and Graphviz's ``dot`` program. Both are optional outside this project's own
installation (``dot`` is a system package): without them the run goes on and its log says what to install.
"""

import logging
import shutil
import time
from pathlib import Path

log = logging.getLogger("runner")
NOT_DRAWN = "architecture.png not drawn: %s — the text summary is in model_summary.txt"
UNBUILT = "the model has no input shape before training (its layers are built by the first batch)"


def missing_tool() -> str | None:
    """What drawing needs and this machine lacks, as the note's reason; None when nothing is missing."""
    try:
        import pydot  # noqa: F401  (Keras has imported it already when it is there: no cost)
    except ImportError:
        return "the Python package pydot is not installed; pip install pydot"
    if shutil.which("dot") is None:  # pydot runs `dot` through the PATH, as this looks it up
        return "Graphviz's dot program was not found; install graphviz (apt-get install graphviz)"
    return None


def draw(model, path: Path) -> bool:
    """``model``'s layers with their names and shapes into the PNG ``path``; False, with a note in the log,
    when it could not be drawn."""
    reason = missing_tool() or (None if model.built else UNBUILT)
    if reason:
        log.info(NOT_DRAWN, reason)
        return False
    import keras

    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        keras.utils.plot_model(model, to_file=str(path), show_shapes=True, show_layer_names=True)
    except Exception as error:  # a picture is not worth a run: any failure to draw it is reported, not raised
        log.warning(NOT_DRAWN, f"{type(error).__name__}: {error}")
        path.unlink(missing_ok=True)
        return False
    log.debug("architecture.png drawn in %.2f s", time.perf_counter() - started)
    return True
