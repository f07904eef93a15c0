"""One job: build, train, evaluate, diagnose and record a single run."""
