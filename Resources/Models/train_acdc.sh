#!/usr/bin/env bash
# The real-data models: the ACDC shape prior (AE) and ACNN-Seg (LV, myocardium, RV), trained on
# the 70 ACDC patients of ../shared/data/acdc (7 of them held out for choosing the best epoch).
# About 40 minutes on 2 CPU cores. Run from the repository root. Not bundled yet: at this budget the
# ACNN-Seg reaches validation Dice LV .74, myocardium .00, RV .20 (see README, "Real cine MR").
# The copy into Resources/Models below is what bundles them once they are good enough.
set -euo pipefail
ACDC=${ACDC:-../shared/data/acdc}
CONFIG=Resources/Models/acdc.yaml
acnn train ae --data "$ACDC" --out runs/ae-acdc --config $CONFIG --epochs 40 --seed 0
acnn train seg --data "$ACDC" --out runs/acnn-seg-acdc --config $CONFIG --prior runs/ae-acdc --epochs 20 --seed 0
for m in ae-acdc acnn-seg-acdc; do
  rm -rf "Resources/Models/$m" && cp -r "runs/$m/model" "Resources/Models/$m"
done
