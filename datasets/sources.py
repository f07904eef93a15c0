"""Known data files: accepted sha256 digests and canonical download URLs."""

# Paths are relative to a data root (data_dir, RUNNER_DATA_DIR or the cache).
# Several digests may be accepted for one file when equivalent copies exist.
SHA256: dict[str, frozenset[str]] = {
    "wine/winequality-red.csv": frozenset({"4a402cf041b025d4566d954c3b9ba8635a3a8a01e039005d97d6a710278cf05e"}),
    "wine/winequality-white.csv": frozenset({"76c3f809815c17c07212622f776311faeb31e87610d52c26d87d6e361b169836"}),
    "wine/winequality-names.txt": frozenset({"37b5752920ad3cf32a882b49483e09540e18d78e85353f919789b72817aaf4a6"}),
    "wine/book_split/train_data.csv": frozenset({"8af66945bc616c61fbf2dd8ae1af92331199f34c0cc3f300e3d159ed8f26d4fa"}),
    "wine/book_split/val_data.csv": frozenset({"88ec15006fffc9555939ddfa5d1ec9694e0cb40b1c840a21fbaafcfb5426cbad"}),
    "wine/book_split/test_data.csv": frozenset({"430654d36c4d9fef6e9467796a0b376d79ae4792bc906495436fc9434566efc8"}),
    "seizure/epileptic_seizure_recognition.csv": frozenset(
        {"4b3f6024ea24a864c0de51b2ba477bf8b9e4974e8cc01a00dcf45bfc59d48deb"}
    ),
    "seizure/kaggle_epileptic_seizure_recognition.csv": frozenset(
        {"5ac55c71de5df20d2f47c39300c5b61df18ac5d1c40315e586310b794c32a98b"}
    ),
    "seizure/book_split/train_data.csv": frozenset(
        {"6db1b197db0c87ad9d0784244a3d2e81144ef2a597840529db3a0f19811be951"}
    ),
    "seizure/book_split/val_data.csv": frozenset({"e24ba4d964ccd1f0cbaa0c498975e5aa801abe22e89b9a853c315c982b61e3b9"}),
    "seizure/book_split/test_data.csv": frozenset({"b2afc9d7d365943ad45c1d4fdae6226b1614d52dd9616e1c9289e62e7b6835f7"}),
    # The shared copy is rebuilt from the original IDX arrays, so its zip bytes differ
    # from Keras's file while the arrays are identical; accept both.
    "mnist/mnist.npz": frozenset(
        {
            "38727c8ccfdb9fde55b8ff2dbf6fba5f26e2366bf8305b4661be9161596ec5cb",
            "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
        }
    ),
}

# Only files with an entry here are ever downloaded (book splits never are).
URLS: dict[str, str] = {
    "wine/winequality-white.csv": "https://archive.ics.uci.edu/ml/machine-learning-databases/wine-quality/winequality-white.csv",
    "seizure/epileptic_seizure_recognition.csv": "https://archive.ics.uci.edu/ml/machine-learning-databases/00388/data.csv",
    "mnist/mnist.npz": "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
}
