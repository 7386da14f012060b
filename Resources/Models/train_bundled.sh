#!/usr/bin/env bash
# How the bundled phantom models were made (each bundle's model.json records its own command).
# Run from the repository root; about 1.5 h on 2 CPU cores, minutes on a GPU.
set -euo pipefail
acnn phantom --out data/train --subjects 80 --seed 1 --motion 2
ae="--batch-size 4"
acnn train ae  --data data/train --out runs/ae-phantom --epochs 15 $ae
acnn train seg --data data/train --out runs/seg3d-phantom --epochs 30 $ae
acnn train seg --data data/train --out runs/acnn-seg-phantom --prior runs/ae-phantom --epochs 30 $ae
acnn train sr  --data data/train --out runs/sr-phantom --epochs 20 $ae
acnn train tl  --data data/train --out runs/tl-phantom --prior runs/ae-phantom --epochs 10 $ae \
    --config Resources/Models/tl-cpu.yaml
acnn train sr  --data data/train --out runs/acnn-sr-phantom --prior runs/tl-phantom --epochs 20 $ae
# the echo mode: 64^3 volumes of 1.75 x 1.75 x 1.875 mm (the default 1 mm grid is 6x the voxels)
acnn phantom --out data/us --subjects 60 --seed 1 --modality us --us-grid 64 64 64 --us-spacing 1.75 1.75 1.875
acnn train ae  --data data/us --out runs/ae-us --epochs 15 $ae
acnn train seg --data data/us --out runs/acnn-seg-us --prior runs/ae-us --epochs 20 $ae
for m in ae-phantom seg3d-phantom acnn-seg-phantom sr-phantom tl-phantom acnn-sr-phantom ae-us acnn-seg-us; do
  rm -rf "Resources/Models/$m" && cp -r "runs/$m/model" "Resources/Models/$m"
done
