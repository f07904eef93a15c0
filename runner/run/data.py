"""The data set a run's spec names, loaded without TensorFlow: the CLI reads and checks it before TensorFlow
loads, so that a data error reaches the user in seconds."""

from dataclasses import fields

from datasets import load_dataset
from runner.config.schema import DatasetFiles, SyntheticDataset


def load_data(dataset: DatasetFiles | SyntheticDataset):
    """The arrays a dataset spec names: its fields are the loader's options."""
    options = {item.name: getattr(dataset, item.name) for item in fields(dataset)}
    return load_dataset(options.pop("name"), **options)
