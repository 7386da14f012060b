#!/usr/bin/env bash
# The bundled real-data models: the ACDC shape prior (AE) and ACNN-Seg (LV, myocardium, RV), trained on
# the 70 ACDC patients of ../shared/data/acdc (7 of them held out for choosing the best epoch).
# The bundles were trained on one H100 (under 10 minutes each, about 2-3 s per epoch); the same commands
# run on a CPU (DEVICE=cpu) at about 30 s per epoch on 2 cores: some 3 hours for the two.
# They were made by the code of commit 01a3d67 (the AE with CE alone, the net without hr_head); today's code
# trains the newer variants, which on the 7 held-out patients were not better (README, "Bundled models";
# benchmarks/acdc_bundles.py compares two sets of bundles there).
# Run from the repository root.
set -euo pipefail
ACDC=${ACDC:-../shared/data/acdc}
DEVICE=${DEVICE:-auto}
COMMON=(--data "$ACDC" --config Resources/Models/acdc.yaml --seed 0 --device "$DEVICE" --workers 4)
acnn train ae --out runs/ae-acdc --epochs 190 "${COMMON[@]}"
acnn train seg --out runs/acnn-seg-acdc --prior runs/ae-acdc --epochs 160 "${COMMON[@]}"
for m in ae-acdc acnn-seg-acdc; do
  rm -rf "Resources/Models/$m" && cp -r "runs/$m/model" "Resources/Models/$m"
done
