"""Apply a trained run to new rows.

    python predict.py <run_dir> new.csv                     # -> new.predictions.csv
    python predict.py <run_dir> new.parquet -o - --keep id  # to standard output, with the id column
    python predict.py <run_dir> train.csv --split test      # the run's own test rows of its training file
    python predict.py <run_dir> --export model.onnx         # the network as ONNX (mlpkit[export])

The arguments are parsed before torch or pandas are imported: --help answers at once.
"""

import sys
from pathlib import Path

try:
    import mlpkit  # noqa: F401  (installed with `pip install -e .`)
except ImportError:  # a checkout that was not installed: use its src/
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from mlpkit import startup
from mlpkit.predict import main

if __name__ == "__main__":
    startup.hold()  # the collector, until start-up is done: mlpkit.startup says why
    sys.exit(main())
