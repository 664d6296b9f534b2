"""Data sets by name, split into train/val/test and held as in-memory tensors.

    sources     the built-in sets: generated, and the ones scikit-learn ships
    table       a user's .csv/.tsv/.parquet file: reading it, and each column's role
    preprocess  what is fitted on the train split (standardisation, or a ColumnTransformer
                for a table), saved with the run and applied to new rows at prediction
    split       train/val/test row indices, stratified for classes
    loading     load_dataset: all of the above, into a Dataset
    stream      data.stream=true: a table read block by block, never whole (split by a hash of the
                row number, preprocessing fitted in one pass, batches read from the file each epoch)

Classification splits are stratified; every statistic comes from the train split only;
the three splits are views of one float32 array, so a data set is held in memory once.
"""

from mlpkit.data.dataset import Dataset
from mlpkit.data.loading import load_dataset
from mlpkit.data.sources import DATASETS
from mlpkit.tasks import TASKS

__all__ = ["DATASETS", "TASKS", "Dataset", "load_dataset"]
