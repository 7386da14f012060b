#!/usr/bin/env bash
# The bundled real-data models: the ACDC shape prior (AE) and ACNN-Seg (LV, myocardium, RV), trained on
# the 70 ACDC patients of ../shared/data/acdc (7 of them held out for choosing the best epoch).
# ae-acdc: one H100, under 10 minutes, by the code of commit 01a3d67 (the AE with CE alone); today's code
# trains the newer variant (CE + soft Dice), which on the 7 held-out patients was not better (README,
# "Bundled models"). acnn-seg-acdc: an ensemble of four networks of one recipe, seeds 0-3, the same 7 patients
# held out (--split-seed 0), trained at once on one H200 (420 s for the four, 2026-12-04; there through
# benchmarks/acdc_gpu_ensembles.py, which feeds training the cases cut here, as float16 images).
# On a CPU (DEVICE=cpu, about 30 s per epoch on 2 cores) the AE takes some 90 minutes and each network 50.
# Run from the repository root.
set -euo pipefail
ACDC=${ACDC:-../shared/data/acdc}
DEVICE=${DEVICE:-auto}
COMMON=(--data "$ACDC" --config Resources/Models/acdc.yaml --device "$DEVICE" --workers 4)
acnn train ae --out runs/ae-acdc --epochs 190 --seed 0 "${COMMON[@]}"
for seed in 0 1 2 3; do
  acnn train seg --out "runs/acnn-seg-acdc/seed-$seed" --prior runs/ae-acdc --epochs 100 --seed "$seed" \
    --split-seed 0 "${COMMON[@]}"
done
rm -rf Resources/Models/ae-acdc
cp -r runs/ae-acdc/model Resources/Models/ae-acdc
acnn ensemble runs/acnn-seg-acdc/seed-{0,1,2,3} --out Resources/Models/acnn-seg-acdc --name acnn-seg-acdc \
  --overwrite --about "ACNN-Seg (LV blood pool, LV myocardium, RV blood pool) with the prior ae-acdc: four \
networks of one recipe (Resources/Models/acdc.yaml, 100 epochs, the best validation epoch of each) trained with \
seeds 0-3 on the 70 ACDC patients, the same 7 held out to choose the epochs (--split-seed 0); their \
probabilities are averaged"
