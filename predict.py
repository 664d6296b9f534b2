"""Apply a trained run to new rows.

    python predict.py <run_dir> new.csv                     # -> new.predictions.csv
    python predict.py <run_dir> new.parquet -o - --keep id  # to standard output, with the id column
    python predict.py <run_dir> --export model.onnx         # the network as ONNX (mlpkit[export])
"""

import sys
from pathlib import Path

try:
    import mlpkit  # noqa: F401  (installed with `pip install -e .`)
except ImportError:  # a checkout that was not installed: use its src/
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from mlpkit.predict import main

if __name__ == "__main__":
    sys.exit(main())
