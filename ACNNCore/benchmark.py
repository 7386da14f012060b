"""``acnn benchmark``: the paper's experiments (Tables I-III, Section III-F) as commands.

Each experiment trains what it needs into ``OUT/runs/KEY`` (reused when it is already there, resumed when
it was interrupted, an error when a run there had another recipe, e.g. another ``--budget``; ``--models
KEY=BUNDLE`` supplies a trained one instead), evaluates on held-out phantom
subjects (seed 1000, never used for training; the data set's own grid and acquisition, a quarter each at
0, 1, 2 and 3 mm slice misalignment) and writes ``OUT/EXPERIMENT.md`` with tables and PNG figures.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .bundle import read_meta, resolve
from .errors import InputError
from .evaluation import ef_agreement, evaluate_case
from .experiments import ACDC_BUDGETS, ACDC_METHODS, ACDC_SEG_KEYS, BUDGETS, SPECS
from .inference import CORRECTION_MAX_CHANGE, CORRECTION_REFUSED, check_max_change
from .io import write_table
from .metrics import dice, on_grid_of, ssim, wilcoxon_p
from .phantom.population import PhantomConfig, generate_subject, with_motion

TEST_SEED = 1000  # held-out subjects
LATENT_SEED = 2000  # the population whose codes are classified
MOTIONS = (0.0, 1.0, 2.0, 3.0)


SEG_METHODS = ("fcn2d", "seg3d", "unet3d", "aeseg", "seg3d-maug", "acnn-seg")
SR_METHODS = ("linear", "bspline", "srcnn", "unet3d-sr", "acnn-sr")
US_METHODS = ("unet3d", "acnn-seg")
NAMES = {**{k: v[0] for k, v in SPECS.items()}, "aeseg": "AE-Seg", "linear": "Linear", "bspline": "B-Spline"}

# The paper's numbers (real data: 200 MR stacks with HR ground truth, Table I; CETUS 3D-US, Table II;
# SR, Table III; ACDC classification, Section III-F), shown beside ours, never mixed with them.
PAPER_SEG = {  # endocardium (blood pool): MSD, HD, Dice; myocardium: MSD, HD, Dice; parameters
    "2D-FCN": (2.07, 11.37, .908, 1.58, 9.19, .727, "1.39M"),
    "3D-Seg": (1.77, 10.28, .923, 1.48, 10.15, .773, "1.60M"),
    "3D-UNet": (1.66, 9.94, .923, 1.45, 9.81, .764, "1.64M"),
    "AE-Seg": (1.75, 8.42, .926, 1.51, 8.52, .779, "1.68M"),
    "3D-Seg-MAug": (1.59, 8.52, .928, 1.37, 9.41, .785, "1.60M"),
    "ACNN-Seg": (1.37, 7.89, .939, 1.14, 7.31, .811, "1.60M"),
}
PAPER_SR = {"Linear": (.777, "-"), "B-Spline": (.779, "-"), "SR-CNN": (.783, ".29 s"), "3D-UNet": (.784, ".07 s"),
            "ACNN-SR": (.796, ".06 s")}
PAPER_US = {"FCN": {"ED": (1.98, 11.94, .906), "ES": (2.83, 12.45, .872), "ef_r": 0.885, "ef_bias": "2.74±12.01"},
            "ACNN-Seg": {"ED": (1.89, 6.96, .912), "ES": (2.09, 7.75, .873), "ef_r": 0.913, "ef_bias": "1.78±10.09"}}
PAPER_LATENT = {"ED": {"PCA": 76.6, "T-L": 83.3}, "ED+ES": {"PCA": 86.6, "T-L": 91.6}}


def _fmt(values, digits=3) -> str:
    v = np.asarray([x for x in values if np.isfinite(x)], float)
    return "-" if v.size == 0 else f"{v.mean():.{digits}f} ± {v.std():.{digits}f}"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def finished_run(run: Path) -> Path | None:
    """The bundle of a benchmark's run in RUN that ran to its end (RUN/model, its checkpoint dropped), else None."""
    from .training import BEST_MODEL, CHECKPOINT

    done = (run / BEST_MODEL / "model.json").is_file() and not (run / CHECKPOINT).is_file()
    return run / BEST_MODEL if done else None


def link_folder(source: Path, link: Path) -> None:
    """Make LINK show SOURCE's files without copying them: a symbolic link, or, where the system refuses one
    (Windows without Developer Mode or administrator rights), a folder of hard links to its files, copies only
    where even those fail (another drive). The folder is built beside LINK and renamed when it is whole, so an
    interrupted run leaves no half folder behind."""
    try:
        link.symlink_to(source, target_is_directory=True)
    except OSError:
        partial = link.with_name(link.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(source, partial, copy_function=_hard_link_or_copy)
        partial.rename(link)


def _hard_link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _check_given(models: dict) -> None:
    """That every bundle given with ``--models KEY=BUNDLE[,BUNDLE...]`` is there, before any training: one
    missing is otherwise found only when its turn comes, after the models before it have trained."""
    for paths in models.values():
        for path in paths.split(","):
            resolve(path)


def train_to_end(config, data: Path, run: Path, prior: Path | None, what: str, say=print) -> Path:
    """CONFIG's model in RUN: taken as it is where the run there finished (:func:`finished_run`), resumed where
    it was interrupted (its checkpoint left), trained otherwise; then the checkpoint dropped: the bundle in
    RUN/model is what counts. A run there of another recipe (another ``--budget``; with PRIOR, another prior's
    weights) is an error, neither taken nor overwritten. WHAT names the model for the messages."""
    from .training import BEST_MODEL, CHECKPOINT, recipe, recipe_differences, recipe_of, train

    if (run / BEST_MODEL / "model.json").is_file():  # a run of this recipe, or of another
        may_change = ("device", "workers", "precision")  # not the epochs: a budget's run stands for another's
        now = recipe(config.to_dict(), read_meta(prior).get("weights_sha256") if prior else None,
                     may_change=may_change)
        differ = recipe_differences(recipe_of(read_meta(run / BEST_MODEL), may_change), now)
        if differ:
            raise InputError(f"{run} holds a model trained otherwise than {what} here: {'; '.join(differ)}. Give "
                             f"another --out, or remove {run} to train it again")
        if model := finished_run(run):
            return model
    resume = (run / CHECKPOINT).is_file()
    say(f"{'resuming' if resume else 'training'} {what} -> {run}")
    folder = train(config, data, run, prior, resume=resume, overwrite=not resume)
    (run / CHECKPOINT).unlink(missing_ok=True)
    return folder


class Benchmark:
    """Trains (or takes) the models an experiment needs and evaluates them on held-out subjects."""

    def __init__(self, data, out, budget: str = "cpu", models: dict | None = None, device: str = "auto",
                 test_subjects: int | None = None, say=print, seeds: int = 1):
        from .datasets import is_phantom, phantom_description

        self.data, self.out = Path(data), Path(out)
        if budget not in BUDGETS:
            raise InputError(f"--budget must be one of {', '.join(BUDGETS)}")
        if not is_phantom(self.data):
            raise InputError(f"{self.data} is not a phantom data set: the benchmarks need the phantom's HR ground "
                             "truth (make one with `acnn phantom`)")
        self.budget_name, self.budget = budget, BUDGETS[budget]
        if test_subjects is not None:
            if test_subjects < 1:
                raise InputError(f"--test-subjects must be at least 1, not {test_subjects}")
            self.budget = replace(self.budget, test_subjects=test_subjects)
        self.models = {k: str(v) for k, v in (models or {}).items()}
        unknown = set(self.models) - set(SPECS)
        if unknown:
            raise InputError(f"unknown model keys {sorted(unknown)}; known: {', '.join(SPECS)}")
        _check_given(self.models)
        if seeds < 1:
            raise InputError(f"--seeds must be at least 1, not {seeds}")
        self.device, self.say, self.seeds = device, say, seeds
        dataset = phantom_description(self.data)
        self.config = PhantomConfig.from_dict(dataset["config"])
        self.modality = dataset["modality"]
        self.out.mkdir(parents=True, exist_ok=True)

    # --- models ------------------------------------------------------------------------

    def model(self, key: str, seed: int = 0) -> Path:
        """A trained bundle for ``key``: given, already in OUT/runs/KEY (KEY-seedS for training seed S > 0),
        or trained now."""
        from .training import TrainConfig

        if key in self.models and seed == 0:
            return resolve(self.models[key])
        run = self.out / "runs" / (f"{key}-seed{seed}" if seed else key)
        name, settings, prior_key = SPECS[key]
        prior = self.model(prior_key) if prior_key else None
        b = self.budget
        epochs = {"ae": b.ae_epochs, "tl": b.tl_epochs}.get(key, b.epochs)
        config = TrainConfig.from_dict({**settings, "epochs": epochs, "batch_size": b.batch_size, "seed": seed,
                                        "device": self.device, "tl_predictor_epochs": b.tl_predictor_epochs})
        return train_to_end(config, self.data, run, prior, f"{name} ({key}, {epochs} epochs, seed {seed})", self.say)

    def parameters(self, key: str) -> int:
        if key == "aeseg":
            return self.parameters("unet3d") + self.parameters("ae")
        return int(read_meta(self.model(key)).get("parameters", 0))

    # --- data ----------------------------------------------------------------------------

    def held_out(self, n: int | None = None, seed: int = TEST_SEED) -> list[dict]:
        """Held-out cases on the data set's grid and acquisition, a quarter each at 0-3 mm motion."""
        n = n or self.budget.test_subjects
        cases = []
        for i in range(n):
            motion = MOTIONS[i % len(MOTIONS)] if self.modality == "mr" else 0.0
            config = with_motion(self.config, motion) if self.modality == "mr" else self.config
            ps = generate_subject(i, seed, config)
            for phase, vols in ps.phases.items():
                cases.append({"case": f"{ps.info['subject']}_{phase}", "subject": ps.info["subject"],
                              "group": ps.info["group"], "phase": phase, "motion_mm": motion, **vols})
        return cases

    # --- experiments -----------------------------------------------------------------------

    def run(self, experiment: str) -> Path:
        fn = {"seg": self.seg, "sr": self.sr, "us": self.us, "latent": self.latent}.get(experiment)
        if fn is None:
            raise InputError(f"unknown experiment {experiment!r}; use seg, sr, us or latent")
        if (experiment == "us") != (self.modality == "us"):
            raise InputError(f"the {experiment} experiment needs a {'US' if experiment == 'us' else 'MR'} phantom "
                             f"data set; {self.data} is {self.modality.upper()} "
                             f"(`acnn phantom --modality {'us' if experiment == 'us' else 'mr'}`)")
        t0 = time.time()
        body = fn()
        path = self.out / f"{experiment}.md"
        subjects = (f"subjects of seed {LATENT_SEED}" if experiment == "latent" else
                    f"held-out subjects of seed {TEST_SEED}")
        models = ", ".join(f"{k} = `{v}`" for k, v in self.models.items()) or "none"
        header = (f"# Benchmark: {experiment}\n\nData: `{self.data}` ({self.modality.upper()} phantom); evaluated on "
                  f"{subjects}, never seen in training. Budget `{self.budget_name}` ({self.budget}); models given "
                  f"rather than trained: {models}. {time.time() - t0:.0f} s on this machine.\n\n")
        path.write_text(header + body, encoding="utf-8")
        self.say(f"report: {path}")
        return path

    def _segment_all(self, methods, cases, structures, seed: int = 0):
        """{method: [row per case]}, with the predictions of the first and last case kept for figures."""
        from .inference import Segmenter, ShapeModel
        from .preprocessing import resample

        results, predictions = {}, {}
        for method in methods:
            self.say(f"evaluating {NAMES[method]}")
            if method == "aeseg":
                segmenter = Segmenter(self.model("unet3d"), self.device)
                shape = ShapeModel(self.model("ae"), self.device)
            else:
                segmenter, shape = Segmenter(self.model(method, seed), self.device), None
            rows, kept = [], {}
            for c in cases:
                t = time.perf_counter()
                pred = segmenter(c["lr"] if "lr" in c else c["us"]).labels
                if shape is not None:  # AE-Seg: the 3D-UNet's output through the autoencoder
                    pred = resample(shape.reconstruct(pred), pred.geometry, "nearest")
                seconds = time.perf_counter() - t
                truth = c["hr_gt"] if "hr_gt" in c else c["us_gt"]
                row = evaluate_case(pred, truth, structures)
                rows.append({"method": NAMES[method], "case": c["case"], "phase": c["phase"],
                             "motion_mm": c["motion_mm"], "seconds": seconds, **row})
                kept[c["case"]] = pred
            results[method], predictions[method] = rows, kept
        return results, predictions

    def seg(self) -> str:
        from .figures import seg_figure

        cases = self.held_out()
        results, predictions = self._segment_all(SEG_METHODS, cases, (1, 2))
        self._write_csv("seg_cases.csv", [r for rows in results.values() for r in rows])
        metrics = ["msd_mm_lv", "hd_mm_lv", "dice_lv", "msd_mm_myo", "hd_mm_myo", "dice_myo"]
        table = [[NAMES[m]] + [_fmt([r[k] for r in rows], 2 if "mm" in k else 3) for k in metrics]
                 + [f"{self.parameters(m):,}", sum(not r["plausible"] for r in rows)]
                 for m, rows in results.items()]
        ranked = sorted(results, key=lambda m: -np.mean([r["dice_myo"] for r in results[m]]))
        pairs = [tuple(ranked[:2])] + ([("acnn-seg", "seg3d")] if {"acnn-seg", "seg3d"} <= set(results)
                                       and set(ranked[:2]) != {"acnn-seg", "seg3d"} else [])
        for a, b in pairs:
            pvals = [_p(wilcoxon_p([r[k] for r in results[a]], [r[k] for r in results[b]])) for k in metrics]
            table.append([f"Wilcoxon {NAMES[a]} vs {NAMES[b]}"] + pvals + ["", ""])
        header = ["Method", "LV MSD (mm)", "LV HD (mm)", "LV Dice", "Myo MSD (mm)", "Myo HD (mm)", "Myo Dice",
                  "Parameters", f"Implausible (of {len(cases)})"]
        by_motion = [[NAMES[m]] + [_fmt([r["dice_myo"] for r in rows if r["motion_mm"] == mm])
                                   for mm in MOTIONS] for m, rows in results.items()]
        worst = max(cases, key=lambda c: (c["motion_mm"], c["case"]))
        figure = seg_figure(worst, {NAMES[m]: predictions[m][worst["case"]] for m in ("fcn2d", "acnn-seg")},
                            self.out / "seg_overlay.png")
        paper = [[m] + list(v) for m, v in PAPER_SEG.items()]
        seeds = [self._prior_over_seeds(cases, results)] if self.seeds > 1 else []
        return "\n\n".join([
            f"## Segmentation (Table I), {len(cases)} held-out stacks\n\nLV = blood pool (the paper's endocardium); "
            "distances in mm on the HR grid (MONAI); Dice on the HR grid; plausibility as in "
            "`ACNNCore.metrics.plausibility`. The p-values compare the two methods of highest myocardium Dice, "
            "and ACNN-Seg with 3D-Seg (the prior's effect).",
            _table(header, table),
            "### Myocardium Dice by slice misalignment\n\n"
            + _table(["Method"] + [f"{mm:.0f} mm" for mm in MOTIONS], by_motion),
            f"### Overlay (Fig. 6): `{worst['case']}` at {worst['motion_mm']:.0f} mm misalignment\n\n"
            f"![segmentation overlay]({figure.name})",
            *seeds,
            "### The paper's Table I (real MR, 200 stacks, HR ground truth) — for reference, not our data\n\n"
            + _table(["Method", "Endo MSD", "Endo HD", "Endo Dice", "Myo MSD", "Myo HD", "Myo Dice", "Params"],
                     paper),
        ]) + "\n"

    def _prior_over_seeds(self, cases, results) -> str:
        """3D-Seg and ACNN-Seg trained with seeds 0..N-1: the prior's effect beside the spread between runs.
        The Wilcoxon test pairs each case's metric averaged over the seeds."""
        runs = {m: [results[m]] + [self._segment_all([m], cases, (1, 2), seed)[0][m]
                                   for seed in range(1, self.seeds)] for m in ("seg3d", "acnn-seg")}
        metrics = [("dice_lv", "LV Dice", 3), ("hd_mm_lv", "LV HD (mm)", 2), ("dice_myo", "Myo Dice", 3),
                   ("hd_mm_myo", "Myo HD (mm)", 2)]
        per_case = {m: {k: np.nanmean([[r[k] for r in rows] for rows in runs[m]], axis=0) for k, _, _ in metrics}
                    for m in runs}
        implausible = {m: [sum(not r["plausible"] for r in rows) for rows in runs[m]] for m in runs}
        rows = [[seed] + [f"{np.nanmean([r[k] for r in runs[m][seed]]):.{d}f}" for k, _, d in metrics for m in runs]
                + [implausible[m][seed] for m in runs] for seed in range(self.seeds)]
        rows.append([f"mean over {self.seeds} seeds"]
                    + [f"{per_case[m][k].mean():.{d}f}" for k, _, d in metrics for m in runs]
                    + [f"{np.mean(implausible[m]):.1f}" for m in runs])
        rows.append(["Wilcoxon (case means)"] + [x for k, _, _ in metrics
                                                 for x in (_p(wilcoxon_p(*(per_case[m][k] for m in runs))), "")]
                    + ["", ""])
        header = ["Seed"] + [f"{label} {NAMES[m]}" for _, label, _ in metrics for m in runs] \
            + [f"Implausible {NAMES[m]}" for m in runs]
        return (f"### The prior's effect over {self.seeds} training seeds\n\n3D-Seg and ACNN-Seg trained "
                f"{self.seeds} times each, identical but for the seed (initial weights, batch order, augmentation, "
                "the subjects held out for validation; the two nets of one seed share them); seed 0 is the table "
                "above. Each seed's mean over the same held-out stacks; the Wilcoxon test pairs each stack's "
                "metric averaged over the seeds.\n\n" + _table(header, rows))

    def sr(self) -> str:
        from .figures import sr_figure
        from .inference import SuperResolver, interpolate_stack

        cases = self.held_out()
        factor = self.config.acquisition.factor
        rows, shown = {m: [] for m in SR_METHODS}, {}
        for method in SR_METHODS:
            self.say(f"evaluating {NAMES[method]}")
            model = None if method in ("linear", "bspline") else SuperResolver(self.model(method), self.device)
            for c in cases:
                t = time.perf_counter()
                hr = interpolate_stack(c["lr"], factor, method) if model is None else model(c["lr"])
                seconds = time.perf_counter() - t
                truth = c["hr"]
                hr = on_grid_of(hr, truth) if not hr.geometry.same_as(truth.geometry) else hr
                rows[method].append({"method": NAMES[method], "case": c["case"], "ssim": ssim(hr, truth),
                                     "seconds": seconds})
                if c is cases[-1]:
                    shown[NAMES[method]] = hr
        self._write_csv("sr_cases.csv", [r for v in rows.values() for r in v])
        ranked = sorted(rows, key=lambda m: -np.mean([r["ssim"] for r in rows[m]]))
        p = wilcoxon_p([r["ssim"] for r in rows[ranked[0]]], [r["ssim"] for r in rows[ranked[1]]])
        table = [[NAMES[m], _fmt([r["ssim"] for r in v]), f"{np.median([r['seconds'] for r in v]) * 1000:.0f} ms",
                  f"{self.parameters(m):,}" if m in SPECS else "-"] for m, v in rows.items()]
        figure = sr_figure(cases[-1], shown, self.out / "sr_montage.png")
        return "\n\n".join([
            f"## Super-resolution (Table III), {len(cases)} held-out stacks\n\nSSIM (MONAI, 3-D, 7-voxel window) "
            f"against the phantom's HR image; time per stack on this machine ({self.device}). "
            f"Wilcoxon {NAMES[ranked[0]]} vs {NAMES[ranked[1]]}: {_p(p)}.",
            _table(["Method", "SSIM", "Time per stack", "Parameters"], table),
            f"### Montage (Fig. 8), `{cases[-1]['case']}`\n\n![SR montage]({figure.name})",
            "### The paper's Table III (real MR, GTX-1080 times) — for reference, not our data\n\n"
            + _table(["Method", "SSIM", "Inference time"], [[m, *v] for m, v in PAPER_SR.items()]),
        ]) + "\n"

    def us(self) -> str:
        cases = self.held_out()
        results, _ = self._segment_all(US_METHODS, cases, (1,))
        self._write_csv("us_cases.csv", [r for rows in results.values() for r in rows])
        table = []
        for m, rows in results.items():
            row = [NAMES[m] if m != "unet3d" else "FCN (3D-UNet)"]
            for phase in ("ED", "ES"):
                sel = [r for r in rows if r["phase"] == phase]
                row += [_fmt([r["msd_mm_lv"] for r in sel], 2), _fmt([r["hd_mm_lv"] for r in sel], 2),
                        _fmt([r["dice_lv"] for r in sel])]
            a = ef_agreement(rows)
            row += [f"{a['r']:.3f}", f"{a['bias']:+.1f} ± {(a['loa'][1] - a['loa'][0]) / 2:.1f}"] if a else ["-", "-"]
            table.append(row)
        a, b = results["unet3d"], results["acnn-seg"]
        pvals = {k: _p(wilcoxon_p([r[k] for r in a], [r[k] for r in b])) for k in ("msd_mm_lv", "hd_mm_lv", "dice_lv")}
        header = ["Method", "ED MSD (mm)", "ED HD (mm)", "ED Dice", "ES MSD (mm)", "ES HD (mm)", "ES Dice",
                  "EF r", "EF bias ± LoA (%)"]
        paper = [[m, *v["ED"], *v["ES"], v["ef_r"], v["ef_bias"] + " ml"] for m, v in PAPER_US.items()]
        return "\n\n".join([
            f"## 3-D echo (Table II), {len(cases)} held-out volumes\n\nLV cavity; Wilcoxon FCN vs ACNN-Seg over "
            f"ED and ES: MSD {pvals['msd_mm_lv']}, HD {pvals['hd_mm_lv']}, Dice {pvals['dice_lv']}.",
            _table(header, table),
            "### The paper's Table II (CETUS 3D-US) — for reference, not our data\n\n" + _table(header, paper),
        ]) + "\n"

    def latent(self) -> str:
        from .figures import latent_histograms, traversal_montage
        from .inference import ShapeModel
        from .preprocessing import resample

        shape = ShapeModel(self.model("tl"), self.device)
        n = self.budget.latent_subjects
        self.say(f"encoding {n} subjects (seed {LATENT_SEED}) with the T-L predictor")
        codes, maps, groups = {"ED": [], "ES": []}, {"ED": [], "ES": []}, []
        for i in range(n):
            ps = generate_subject(i, LATENT_SEED, self.config)
            groups.append(ps.info["group"])
            for phase, vols in ps.phases.items():
                codes[phase].append(shape.encode_image(vols["hr"]))
                truth = vols["hr_gt"]  # spatially normalised: the model grid centred on the LV, at half resolution
                normalised = resample(truth, shape.placement(truth), "nearest").array[::2, ::2, ::2]
                maps[phase].append(np.concatenate([(normalised == v).ravel() for v in (1, 2)]))
        y = np.array(groups)
        features = {"T-L": {"ED": np.array(codes["ED"]), "ED+ES": np.hstack([codes["ED"], codes["ES"]])},
                    "PCA": {"ED": (np.array(maps["ED"]),), "ED+ES": (np.array(maps["ED"]), np.array(maps["ES"]))}}
        accuracy, importances = {}, None
        for phases in ("ED", "ED+ES"):
            accuracy[phases] = {"T-L": _classify(features["T-L"][phases], y),
                                "PCA": _classify_pca(features["PCA"][phases], y, shape.code_size)}
        importances = _importances(features["T-L"]["ED"], y)
        top = list(np.argsort(importances)[::-1][:5])
        hist = latent_histograms(np.array(codes["ED"]), shape.order[:16], y, self.out / "latent_histograms.png")
        montages = []
        for dim in shape.order[:3]:
            montages.append(traversal_montage(shape.traverse(dim, 7, 2.0), self.out / f"latent_traversal_dim{dim}.png",
                                              title=f"dimension {dim}: mean ± 2 std", render3d=True))
        rows = [[phases, f"{accuracy[phases]['PCA'][0]:.1f} ± {accuracy[phases]['PCA'][1]:.1f}",
                 f"{accuracy[phases]['T-L'][0]:.1f} ± {accuracy[phases]['T-L'][1]:.1f}",
                 f"{PAPER_LATENT[phases]['PCA']} / {PAPER_LATENT[phases]['T-L']}"] for phases in ("ED", "ED+ES")]
        folds = _folds(y)
        counts = ", ".join(f"{g}: {int((y == g).sum())}" for g in sorted(set(y)))
        return "\n\n".join([
            f"## Latent space (Section III-F), {n} subjects ({counts})"
            f"\n\nNOR / DCM / HCM from 64-d T-L codes (predicted from the HR image) against a 64-d PCA of the "
            f"spatially normalised ground-truth label maps (the model grid centred on the LV); random forest "
            f"(200 trees), {folds}-fold stratified cross-validation, accuracy mean ± std over folds (%).",
            _table(["Codes", "PCA", "T-L", "Paper (ACDC): PCA / T-L"], rows),
            f"Code dimensions the trees split on most (ED): {', '.join(f'{d} ({importances[d]:.2f})' for d in top)}.",
            f"### Code histograms, 16 most used dimensions (Fig. 9)\n\n![histograms]({hist.name})",
            "### Traversals over mean ± 2 std of the three most used dimensions (Fig. 5): short axis, long "
            "axis, myocardium in 3-D\n\n"
            + "\n\n".join(f"![traversal]({m.name})" for m in montages),
        ]) + "\n"

    def _write_csv(self, name: str, rows: list[dict]) -> Path:
        return write_table(rows, self.out / name)


def _folds(y) -> int:
    return int(max(2, min(10, min(np.unique(y, return_counts=True)[1]))))


def _forest():
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=200, random_state=0)


def _classify(x, y) -> tuple[float, float]:
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    cv = StratifiedKFold(_folds(y), shuffle=True, random_state=0)
    s = cross_val_score(_forest(), x, y, cv=cv) * 100
    return float(s.mean()), float(s.std())


def _classify_pca(maps: tuple, y, components: int) -> tuple[float, float]:
    """PCA fitted inside each fold (per phase, ``components`` each), then the same forest."""
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline

    sizes = [m.shape[1] for m in maps]
    x = np.hstack(maps).astype(np.float32)
    n = min(components, len(y) - len(y) // _folds(y) - 1)
    starts = np.cumsum([0] + sizes)
    pcas = ColumnTransformer([(f"pca{i}", PCA(n, random_state=0), slice(starts[i], starts[i + 1]))
                              for i in range(len(maps))])
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    cv = StratifiedKFold(_folds(y), shuffle=True, random_state=0)
    s = cross_val_score(make_pipeline(pcas, _forest()), x, y, cv=cv) * 100
    return float(s.mean()), float(s.std())


def _importances(x, y) -> np.ndarray:
    return _forest().fit(x, y).feature_importances_


def parse_models(items) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(f"--models takes KEY=BUNDLE pairs (keys: {', '.join(SPECS)}), not {item!r}")
        key, value = item.split("=", 1)
        out[key] = value
    return out


# --- real data: ACDC ----------------------------------------------------------------------------

PRIOR_PAIRS = (("acnn-seg", "seg"), ("acnn-fcn2d", "fcn2d"))  # the prior's effect: each net with and without it
ACDC_MOTIONS = (0.0, 2.0, 4.0)
CROP = {"shape": [128, 128, 16], "spacing": [1.5, 1.5]}
PAPER_ACDC = {"ED": {"PCA": 76.6, "AE": 83.3}, "ED+ES": {"PCA": 86.6, "AE": 91.6}}


def fixed_split(patients: list[Path]) -> tuple[list[Path], list[Path]]:
    """The ACDC benchmark's split of the sorted patient folders: (training, test), every fifth for the test
    (ACDC sorts by group, so each group gives a fifth of its patients)."""
    test = patients[::5]
    return [p for p in patients if p not in test], test


def paired_degradation(rows: list[dict], a: str, b: str) -> tuple[int, int, list[str], float]:
    """Robustness of method a against method b, per image: the myocardium Dice each loses from no added
    misalignment to the largest (``ACDC_MOTIONS``), paired. Images where either method's output at no
    misalignment misses the LV altogether (LV Dice 0 or undefined) are left out: an output that is already
    wrong cannot degrade, and counting it would favour the method that failed. Returns (images where a
    loses less, images compared, the images left out, two-sided Wilcoxon p of the paired changes)."""
    score = {(r["method"], r["case"], r["motion_mm"]): (r["dice_lv"], r["dice_myo"]) for r in rows}
    first, last = ACDC_MOTIONS[0], ACDC_MOTIONS[-1]
    cases = list(dict.fromkeys(r["case"] for r in rows if r["method"] == a))
    missed = [c for c in cases if not all(score[m, c, first][0] > 0 for m in (a, b))]
    kept = [c for c in cases if c not in missed]
    change = {m: [score[m, c, last][1] - score[m, c, first][1] for c in kept] for m in (a, b)}
    less = sum(x > y for x, y in zip(change[a], change[b]))
    return less, len(kept), missed, wilcoxon_p(change[a], change[b])


class AcdcBenchmark:
    """ACDC (``../shared/data/acdc`` or any folder in its layout): a fixed split stated in the report
    (every fifth patient, sorted by number, is a test patient: 14 of 70, the groups balanced), the
    methods trained on the other 56, tested at 0, 2 and 4 mm simulated slice misalignment; pathology
    classification from the AE's codes of the ground truth against PCA."""

    def __init__(self, data, out, budget: str = "cpu", device: str = "auto", say=print, max_patients: int = 0,
                 workers: int = 0, models: dict | None = None, methods=ACDC_SEG_KEYS, correct: bool = False,
                 max_change: float | None = CORRECTION_MAX_CHANGE, tta: bool = False):
        from .datasets import acdc_patients, is_acdc

        self.data, self.out, self.device, self.say, self.workers = Path(data), Path(out), device, say, workers
        if not is_acdc(self.data):
            raise InputError(f"{self.data} is not in the ACDC layout (patientNNN/Info.cfg)")
        if (self.data / "Info.cfg").is_file():
            raise InputError(f"{self.data} is one patient's folder: give the ACDC folder that holds the patients")
        self.models = {k: str(v) for k, v in (models or {}).items()}  # KEY -> a trained bundle to use
        self.methods = tuple(methods)  # the segmentation methods evaluated
        self.correct = correct  # also each output corrected with the AE's shape space (ShapeModel.correct)
        check_max_change(max_change)
        self.max_change = max_change  # the correction's limit (of the LV's voxels); refused ones also without
        self.tta = tta  # every method with test-time augmentation (Segmenter(tta=True))
        for keys in (self.models, self.methods):
            if set(keys) - set(ACDC_METHODS):
                raise InputError(f"unknown method keys {sorted(set(keys) - set(ACDC_METHODS))}; known: "
                                 f"{', '.join(ACDC_METHODS)}")
        if "," in self.models.get("ae", ""):
            raise InputError("ae takes one bundle (the prior of ACNN-Seg and the classification's encoder), "
                             "not an ensemble")
        _check_given(self.models)
        if budget not in ACDC_BUDGETS:
            raise InputError(f"--budget must be one of {', '.join(ACDC_BUDGETS)}")
        self.budget_name, (self.epochs, self.ae_epochs) = budget, ACDC_BUDGETS[budget]
        patients = acdc_patients(self.data)
        if max_patients:  # spread over the list, which ACDC sorts by group
            patients = patients[:: max(1, len(patients) // max_patients)][:max_patients]
        self.train, self.test = fixed_split(patients)
        self.out.mkdir(parents=True, exist_ok=True)
        self.train_dir = self.out / "acdc-train"  # the training patients' folders, linked
        self.train_dir.mkdir(exist_ok=True)
        for p in self.train:
            link = self.train_dir / p.name
            if link.is_symlink() and link.resolve() != p.resolve():
                link.unlink()  # to where the data was before it moved, or to other data: to this data now
            if not link.exists():
                link_folder(p.resolve(), link)

    def model(self, key: str) -> Path | list[Path]:
        from .training import TrainConfig

        if key in self.models:  # a bundle, or an ensemble of bundles given as A,B,...
            paths = [resolve(p) for p in self.models[key].split(",")]
            return paths[0] if len(paths) == 1 else paths
        run = self.out / "runs" / key
        name, settings, prior_key = ACDC_METHODS[key]
        prior = self.model(prior_key) if prior_key else None
        epochs = self.ae_epochs if key == "ae" else self.epochs
        config = TrainConfig.from_dict({**settings, "epochs": epochs, "batch_size": 8, "device": self.device,
                                        "crop": CROP, "val_fraction": 0.1, "dice": settings["task"] in ("seg", "ae"),
                                        "workers": self.workers})
        return train_to_end(config, self.train_dir, run, prior, f"{name} ({key}, {epochs} epochs)", self.say)

    def _trains_anything(self) -> bool:
        """Whether this run trains a model rather than taking them all from --models."""
        return bool((set(self.methods) | {"ae"}) - set(self.models))  # the AE: the prior and the classification

    def run(self) -> Path:
        t0 = time.time()
        body = self.segmentation() + "\n\n" + self.classification()
        path = self.out / "acdc.md"
        path.write_text(
            f"# Benchmark: ACDC (real cine MR)\n\nData: `{self.data}`, {len(self.train) + len(self.test)} patients; "
            f"fixed split: test patients {', '.join(p.name[-3:] for p in self.test)} (every fifth), the other "
            f"{len(self.train)} for training. "
            + (f"Budget `{self.budget_name}` ({self.epochs} epochs, AE {self.ae_epochs}); crop {CROP['shape']} at "
               f"{CROP['spacing']} mm in-plane, slices as acquired; segmentation nets and AE trained with CE + soft "
               f"Dice; 10 % of the training patients held out to pick the best epoch. "
               if self._trains_anything() else "")
            + (f"Given, not trained here: {', '.join(f'{k} = `{v}`' for k, v in self.models.items())}. "
               if self.models else "")
            + ("Every method with test-time augmentation (`--tta`: its probabilities averaged over the input "
               "seen in nine views, turned by up to 10 degrees and moved 3 mm in-plane). " if self.tta else "")
            + f"{time.time() - t0:.0f} s on this machine.\n\n" + body, encoding="utf-8")
        self.say(f"report: {path}")
        return path

    def _cases(self):
        from .datasets import read_acdc_patient

        return [c for p in self.test for c in read_acdc_patient(p)]

    @staticmethod
    def motion(i: int, n_slices: int, motion: float) -> np.ndarray:
        """The simulated slice misalignment of test image ``i``: per slice (tx mm, ty mm, 0 degrees), each shift
        up to ``motion`` mm in any direction -- the same draw each run."""
        from .phantom.acquisition import draw_motion

        return draw_motion(n_slices, np.random.default_rng([i, int(motion * 10)]), motion, 0.0)

    @classmethod
    def _moved(cls, i: int, case, motion: float):
        """Test image ``i`` with its slices moved by :meth:`motion` (the expert's labels stay)."""
        from .phantom.acquisition import move_slices

        image = case.image
        if motion:
            image = image.with_array(move_slices(image.array, image.spacing, cls.motion(i, image.shape[2], motion)))
        return image

    def _prior_figure(self, rows: list, cases: list, key_a: str, key_b: str) -> str:
        """The test image where the prior helped most: the no-prior net's (``key_b``) output implausible, its
        ACNN-Seg's (``key_a``) plausible, the largest gain in myocardium Dice (any misalignment)."""
        from .figures import cut_through, seg_figure
        from .inference import Segmenter
        from .metrics import defects

        a, b = ACDC_METHODS[key_a][0], ACDC_METHODS[key_b][0]
        other = {(r["case"], r["motion_mm"]): r for r in rows if r["method"] == b}
        fixed = [(r["dice_myo"] - other[(r["case"], r["motion_mm"])]["dice_myo"], r) for r in rows
                 if r["method"] == a and r["plausible"] and not other[(r["case"], r["motion_mm"])]["plausible"]]
        if not fixed:
            return f"No test image where {b} gave an implausible output and {a} a plausible one."
        _, r = max(fixed, key=lambda t: t[0])
        i = [c.name for c in cases].index(r["case"])
        image = self._moved(i, cases[i], r["motion_mm"])
        predictions = {name: Segmenter(self.model(key), self.device, tta=self.tta)(image).labels
                       for key, name in ((key_b, "no prior"), (key_a, a))}
        figure = "acdc_overlay.png" if key_a == "acnn-seg" else f"acdc_overlay_{key_a}.png"
        seg_figure({"lr": image, "hr_gt": cases[i].labels}, predictions, self.out / figure,
                   titles=(r["case"], "expert"), margin=12, at=cut_through(defects(predictions["no prior"])))
        o = other[(r["case"], r["motion_mm"])]
        return (f"{a} against {b}: {len(fixed)} test images (of {len(other)}, all misalignments) have an "
                f"implausible output without the prior and a plausible one with it. The one where the prior helped "
                f"most, `{r['case']}` at {r['motion_mm']:.0f} mm misalignment: without the prior {o['problems']} "
                f"(myocardium Dice {o['dice_myo']:.3f}), {a} plausible ({r['dice_myo']:.3f}).\n\n"
                f"![{r['case']}: image, no prior, {a}, expert]({figure})")

    def segmentation(self) -> str:
        from .inference import Segmenter, ShapeModel
        from .postprocessing import clean_up

        cases = self._cases()
        shape = ShapeModel(self.model("ae"), self.device) if self.correct else None
        # each prediction as it comes, cleaned up, its myocardium closed, corrected with the shape model
        rows, cleaned, closed, corrected, unlimited = [], [], [], [], []
        most = (0, None)  # the correction that changed most (last method, no added motion): (voxels, figure data)
        for key in self.methods:
            segmenter = Segmenter(self.model(key), self.device, tta=self.tta)
            name = ACDC_METHODS[key][0]
            self.say(f"evaluating {name}")
            for motion in ACDC_MOTIONS:
                for i, c in enumerate(cases):
                    result = segmenter(self._moved(i, c, motion))
                    pred, clean = result.labels, clean_up(result.labels)
                    about = {"method": name, "case": c.name, "group": c.meta["group"], "phase": c.meta["phase"],
                             "motion_mm": motion}
                    rows.append({**about, "cleanup": "none", **evaluate_case(pred, c.labels, (1, 2, 3))})
                    cleaned.append({**about, "cleanup": "clean-up", **evaluate_case(clean, c.labels, (1, 2, 3))})
                    closed.append({**about, "cleanup": "closed",
                                   **evaluate_case(clean_up(pred, close_myocardium=True), c.labels, (1, 2, 3))})
                    if shape is not None:
                        labels, how = shape.correct(pred, result.probabilities, max_change=self.max_change)
                        changed = int(np.count_nonzero(labels.array != clean.array))
                        corrected.append({**about, "cleanup": "corrected", "correction": how,
                                          "changed_voxels": changed, **evaluate_case(labels, c.labels, (1, 2, 3))})
                        if key == self.methods[-1] and motion == 0 and changed > most[0]:
                            most = (changed, (c, clean, labels, corrected[-1]))
                        unlimited.append({**corrected[-1], "cleanup": "corrected, no limit"})
                        if how.startswith(CORRECTION_REFUSED):  # what the limit kept from happening
                            labels, how = shape.correct(pred, result.probabilities, max_change=None)
                            unlimited[-1] = {**about, "cleanup": "corrected, no limit", "correction": how,
                                             "changed_voxels": int(np.count_nonzero(labels.array != clean.array)),
                                             **evaluate_case(labels, c.labels, (1, 2, 3))}
        write_table(rows + cleaned + closed + corrected + unlimited, self.out / "acdc_cases.csv")
        methods = list(dict.fromkeys(r["method"] for r in rows))
        at0 = [r for r in rows if r["motion_mm"] == 0]
        table = _acdc_table(at0, methods)
        # the prior's effect: each ACNN-Seg against the same net without it, where both were evaluated
        pairs = [(ka, kb, ACDC_METHODS[ka][0], ACDC_METHODS[kb][0]) for ka, kb in PRIOR_PAIRS
                 if {ka, kb} <= set(self.methods)]
        p = {(a, b): {k: _p(wilcoxon_p([r[k] for r in at0 if r["method"] == a],
                                       [r[k] for r in at0 if r["method"] == b]))
                      for k in ("dice_lv", "dice_myo", "dice_rv", "hd_mm_lv", "hd_mm_myo")} for _, _, a, b in pairs}
        robust = []
        for m in methods:
            means = [np.nanmean([r["dice_myo"] for r in rows if r["method"] == m and r["motion_mm"] == mm])
                     for mm in ACDC_MOTIONS]
            implausible = [sum(not r["plausible"] for r in rows if r["method"] == m and r["motion_mm"] == mm)
                           for mm in ACDC_MOTIONS]
            robust.append([m] + [f"{v:.3f}" for v in means] + [f"{means[-1] - means[0]:+.3f}"]
                          + [" / ".join(str(n) for n in implausible)])
        robust_test = ""
        for _, _, a, b in pairs:  # per image, the change of myocardium Dice from 0 to the largest misalignment
            less, kept, missed, p_robust = paired_degradation(rows, a, b)
            robust_test += (f"\n\nPer image, {a} loses less myocardium Dice from 0 to {ACDC_MOTIONS[-1]:.0f} mm "
                            f"than {b} in {less} of {kept} (Wilcoxon on the paired changes, {_p(p_robust)})"
                            + (f"; left out: {', '.join(missed)}, where a method missed the LV altogether with no "
                               "added misalignment (LV Dice 0) and so had nothing to lose" if missed else "") + ".")
        from .metrics import plausibility

        gt_bad = sum(not plausibility(c.labels)["plausible"] for c in cases)
        header = ["Method", "ED LV Dice", "ED Myo Dice", "ED RV Dice", "LV Dice", "Myo Dice", "RV Dice",
                  "LV MSD (mm)", "Myo MSD (mm)", "LV HD (mm)", "Myo HD (mm)",
                  f"Implausible LV (of {len(at0) // len(methods)})",
                  "LV EF r, bias ± LoA (%)"]
        clean_table = _acdc_table([r for r in cleaned if r["motion_mm"] == 0], methods)
        closed_table = _acdc_table([r for r in closed if r["motion_mm"] == 0], methods)
        closed_bad = {m: [r["problems"] for r in closed if r["method"] == m and not r["plausible"]] for m in methods}
        return "\n\n".join([
            f"## Segmentation, {len(cases)} test images ({len(self.test)} patients, ED and ES), no added motion",
            "On the acquired grid against the expert labels; the models find the heart themselves. "
            "Columns without ED: ED and ES together.",
            _table(header, table),
            "".join(f"Wilcoxon {a} vs {b}: " + ", ".join(f"{k} {v}" for k, v in tests.items()) + ". "
                    for (a, b), tests in p.items())
            + f"The expert ground truth itself, by the same checks: {gt_bad} of {len(cases)} implausible.",
            "Anchors (not ours): the ACDC challenge's best entries reach about .96 (LV, ED), .90 (myocardium), "
            ".93 (RV, ED) Dice. What the models' working grid alone costs: the expert labels cut to it as the "
            "training targets are and mapped back as predictions are score Dice "
            + ", ".join(f"{s} {v:.3f}" for s, v in _working_grid_ceiling(cases).items()) + ".",
            "### The same predictions cleaned up (`acnn segment --clean-up`: each structure's largest connected "
            "part, the LV blood pool's holes filled in each slice)\n\n"
            + _table(header, clean_table),
            "### The same predictions with the myocardial ring closed (`acnn segment --close-myocardium`: after "
            "the clean-up, blood-pool voxels meeting anything else outside the basal third become myocardium)\n\n"
            + _table(header, closed_table)
            + "\n\nA rule, not a model: it makes the outputs pass the plausibility checks, whatever the network "
            "gave. Implausible after it, all misalignments: "
            + ", ".join(f"{m} {len(bad)} of {len(closed) // len(methods)}"
                        + (f" ({'; '.join(sorted(set(bad)))})" if bad else "") for m, bad in closed_bad.items())
            + " (a rule cannot draw a structure the network missed altogether).",
        ] + ([self._corrected_section(corrected, unlimited, cleaned, header, methods, most[1])]
             if self.correct else []) + [
            "### Robustness: the same images with simulated slice misalignment (per-slice in-plane shifts up to "
            "0, 2, 4 mm)\n\n" + _table(["Method"] + [f"Myo Dice {mm:.0f} mm" for mm in ACDC_MOTIONS]
                                        + ["change 0 -> 4 mm", "Implausible LV 0 / 2 / 4 mm"], robust)
            + robust_test,
        ] + (["### What the prior fixed\n\n" + "\n\n".join(self._prior_figure(rows, cases, ka, kb)
                                                               for ka, kb, _, _ in pairs)] if pairs else []))

    def _corrected_section(self, corrected: list, unlimited: list, cleaned: list, header: list, methods: list,
                           most) -> str:
        """The predictions corrected with the AE's shape space, against the same cleaned up; ``unlimited``: the
        same without the limit on how much of the LV a correction may change."""
        at0 = [r for r in corrected if r["motion_mm"] == 0]
        lines = []
        for m in methods:
            mine = [r for r in corrected if r["method"] == m]
            n_corrected = [sum(r["correction"].startswith("corrected") for r in mine if r["motion_mm"] == mm)
                           for mm in ACDC_MOTIONS]
            left = [sum(not r["plausible"] for r in mine if r["motion_mm"] == mm) for mm in ACDC_MOTIONS]
            before = [sum(not r["plausible"] for r in cleaned if r["method"] == m and r["motion_mm"] == mm)
                      for mm in ACDC_MOTIONS]
            change = {k: [r[k] for r in mine if r["motion_mm"] == 0] for k in ("dice_lv", "dice_myo", "dice_rv")}
            base = {k: [r[k] for r in cleaned if r["method"] == m and r["motion_mm"] == 0] for k in change}
            lines.append(f"{m}: implausible after the clean-up {' / '.join(map(str, before))} (0 / 2 / 4 mm), "
                         f"corrected {' / '.join(map(str, n_corrected))}, implausible after "
                         f"{' / '.join(map(str, left))}; Dice against the cleaned-up outputs at 0 mm "
                         + ", ".join(f"{k[5:].upper()} {np.nanmean(change[k]) - np.nanmean(base[k]):+.3f} "
                                     f"({_p(wilcoxon_p(change[k], base[k]))})" for k in change) + ".")
            refused = [r for r in mine if r["correction"].startswith(CORRECTION_REFUSED)]
            if refused:  # left implausible by the limit: what the correction would have done without it
                free = {(r["case"], r["motion_mm"]): r for r in unlimited if r["method"] == m}
                told = [(r, free[r["case"], r["motion_mm"]]) for r in refused]
                lines.append(f"{m}: {len(refused)} correction(s) refused for changing more than "
                             f"{self.max_change:.0%} of the LV's voxels; without that limit: "
                             + "; ".join(f"{r['case']} at {r['motion_mm']:.0f} mm {u['correction']}, myocardium "
                                         f"Dice {r['dice_myo']:.3f} -> {u['dice_myo']:.3f}" for r, u in told) + ".")
        return ("### The same predictions corrected with the shape model (`acnn segment --correct AE`: "
                "after the clean-up, an implausible output replaced by the nearest plausible one the AE's shape "
                "space offers, changing as little as it can)\n\n" + _table(header, _acdc_table(at0, methods))
                + "\n\n" + "\n".join(f"- {line}" for line in lines) + "\n\n" + self._corrected_figure(most))

    def _corrected_figure(self, most) -> str:
        """``most``: (case, cleaned up, corrected, row) of the test image the correction changed most (the last
        method, no added motion), or None -> a figure of its image, the two label maps and the expert's, cut
        where the correction changed most."""
        from .figures import cut_through, seg_figure

        if most is None:
            return "The shape model had nothing to correct."
        case, cleaned, corrected, r = most
        seg_figure({"lr": case.image, "hr_gt": case.labels}, {"cleaned up": cleaned, "corrected": corrected},
                   self.out / "acdc_corrected.png", titles=(r["case"], "expert"), margin=12,
                   at=cut_through(corrected.array != cleaned.array))
        return (f"The image the correction changed most, `{r['case']}` ({r['method']}): {r['correction']}; "
                f"myocardium Dice {r['dice_myo']:.3f}.\n\n"
                f"![{r['case']}: image, cleaned up, corrected, expert](acdc_corrected.png)")

    def classification(self) -> str:
        from .datasets import read_acdc_patient
        from .inference import ShapeModel
        from .preprocessing import resample

        shape = ShapeModel(self.model("ae"), self.device)
        patients = sorted(self.train + self.test)
        codes, maps, groups = {"ED": [], "ES": []}, {"ED": [], "ES": []}, []
        for p in patients:
            cases = read_acdc_patient(p)
            groups.append(cases[0].meta["group"])
            for c in cases:
                labels = c.labels.with_array(np.where(c.labels.array < shape.num_classes, c.labels.array, 0)
                                             .astype(np.uint8))
                codes[c.meta["phase"]].append(shape.encode(labels))
                normalised = resample(labels, shape.placement(labels), "nearest").array[::2, ::2, :]
                maps[c.meta["phase"]].append(np.concatenate([(normalised == v).ravel() for v in (1, 2, 3)]))
        y_all = np.array(groups)
        rows = []
        for label, keep in (("NOR / DCM / HCM", np.isin(y_all, ["NOR", "DCM", "HCM"])),
                            ("all five groups", np.ones(len(y_all), bool))):
            y = y_all[keep]
            for phases in ("ED", "ED+ES"):
                ae_x = np.array(codes["ED"])[keep] if phases == "ED" else \
                    np.hstack([np.array(codes["ED"]), np.array(codes["ES"])])[keep]
                pca_maps = (np.array(maps["ED"])[keep],) if phases == "ED" else \
                    (np.array(maps["ED"])[keep], np.array(maps["ES"])[keep])
                ae_acc, pca_acc = _classify(ae_x, y), _classify_pca(pca_maps, y, shape.code_size)
                paper = f"{PAPER_ACDC[phases]['PCA']} / {PAPER_ACDC[phases]['AE']}" if label.startswith("NOR") else "-"
                rows.append([label, phases, len(y), f"{pca_acc[0]:.1f} ± {pca_acc[1]:.1f}",
                             f"{ae_acc[0]:.1f} ± {ae_acc[1]:.1f}", paper])
        return "\n\n".join([
            "## Pathology classification (Section III-F) on ACDC",
            f"64-d codes of the ground-truth label maps (our AE, trained on the {len(self.train)} training "
            "patients' labels — unsupervised; the classifier never saw the groups) against a 64-d PCA of the "
            "spatially normalised label maps; random forest (200 trees), stratified 10-fold cross-validation over "
            "patients, accuracy mean ± std over folds (%). The paper's codes also encode label maps (of the LV "
            "blood pool and myocardium, by the AE of its T-L model).",
            _table(["Groups", "Codes", "Patients", "PCA", "AE", "Paper: PCA / T-L"], rows),
        ])


def _working_grid_ceiling(cases) -> dict[str, float]:
    """Mean Dice per structure of each expert label map cut to the models' grid (``CROP`` around its heart,
    nearest neighbour, as training targets are made) and mapped back onto its own grid as a Segmenter maps
    probabilities (each label linearly, then the largest): the best a perfect model could score."""
    from .preprocessing import crop_around_heart, resample_channels

    scores = []
    for c in cases:
        _, target = crop_around_heart(c.image, c.labels, CROP["shape"], CROP["spacing"])
        onehot = np.stack([(target.array == v).astype(np.float32) for v in range(4)])
        channels = resample_channels(onehot, target.geometry, c.labels.geometry, (1.0, 0.0, 0.0, 0.0))
        scores.append(dice(c.labels.with_array(np.argmax(channels, 0).astype(np.uint8)), c.labels, (1, 2, 3)))
    return {name: float(np.mean([s[v] for s in scores])) for name, v in (("LV", 1), ("myocardium", 2), ("RV", 3))}


def _acdc_table(rows: list[dict], methods: list[str]) -> list[list]:
    """Per method: ED Dice, Dice, distances, implausible count and EF agreement over ``rows``."""
    table = []
    for m in methods:
        sel = [r for r in rows if r["method"] == m]
        ed = [r for r in sel if r["phase"] == "ED"]
        table.append([m] + [_fmt([r[f"dice_{s}"] for r in ed]) for s in ("lv", "myo", "rv")]
                     + [_fmt([r[f"dice_{s}"] for r in sel]) for s in ("lv", "myo", "rv")]
                     + [_fmt([r[f"msd_mm_{s}"] for r in sel], 2) for s in ("lv", "myo")]
                     + [_fmt([r[f"hd_mm_{s}"] for r in sel], 2) for s in ("lv", "myo")]
                     + [sum(not r["plausible"] for r in sel), _ef(sel)])
    return table


def _ef(rows) -> str:
    a = ef_agreement(rows)
    return f"{a['r']:.3f}, {a['bias']:+.1f} ± {(a['loa'][1] - a['loa'][0]) / 2:.1f}" if a else "-"


