"""A corpus of small, healthy Keras training setups for judging the diagnostics on code they were not tuned on.

    from bench.healthy_corpus import CORPUS, materialise, score_model
    model, data, fit_kwargs = materialise(CORPUS[0], seed=0)

Each setup is a frozen ``Spec`` (spec.py): data generator and options, scaling, architecture, loss,
optimiser, batch size, epochs, ... so mutation operators can change one thing at a time.  Importing this
package does not import Keras.  ``python -m bench.healthy_corpus [--only S]`` trains each setup once (plain
fit) and prints its test score against its floor.
"""

from bench.healthy_corpus.build import materialise, score_model
from bench.healthy_corpus.setups import BY_NAME, CORPUS
from bench.healthy_corpus.spec import Spec

__all__ = ["BY_NAME", "CORPUS", "Spec", "materialise", "score_model"]
