#!/usr/bin/env bash
# The bundled real-data models: the ACDC shape prior (AE) and ACNN-Seg (LV, myocardium, RV), trained on
# the 70 ACDC patients of ../shared/data/acdc (7 of them held out for choosing the best epoch).
# About 40 minutes on 2 CPU cores. Run from the repository root.
set -euo pipefail
ACDC=${ACDC:-../shared/data/acdc}
CONFIG=Resources/Models/acdc.yaml
acnn train ae --data "$ACDC" --out runs/ae-acdc --config $CONFIG --epochs 40 --seed 0
acnn train seg --data "$ACDC" --out runs/acnn-seg-acdc --config $CONFIG --prior runs/ae-acdc --epochs 20 --seed 0
for m in ae-acdc acnn-seg-acdc; do
  rm -rf "Resources/Models/$m" && cp -r "runs/$m/model" "Resources/Models/$m"
done
