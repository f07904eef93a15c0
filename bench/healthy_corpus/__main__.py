"""Train every corpus setup once without diagnostics and print its test score against its floor."""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="", help="setups whose name contains this")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from bench.healthy_corpus import CORPUS, materialise, score_model

    for spec in (s for s in CORPUS if args.only in s.name):
        started = time.perf_counter()
        model, data, fit_kwargs = materialise(spec, args.seed)
        model.fit(data.x_train, data.y_train, verbose=0, **fit_kwargs)
        score = score_model(model, data, spec)
        flag = "ok" if score >= spec.min_score else "BELOW FLOOR"
        print(
            f"{spec.name:32s} score {score:6.3f}  floor {spec.min_score:.2f}  {flag:11s} "
            f"{time.perf_counter() - started:5.1f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
