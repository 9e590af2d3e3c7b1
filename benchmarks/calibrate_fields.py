"""A trained model's post-processing chosen anew on two annotated fields (``unet calibrate``).

    python benchmarks/calibrate_fields.py [--work DIR] [--styles dense,small,pale] [RUN FIELDS ...]

The shipped spore model was trained on crops of the generator's default style, and its
post-processing (threshold, split height, smallest object) was chosen on its validation
crops. Here it counts whole fields of other styles of the generator (``styles.py``: eight
1024² fields of each, data seed 5, which it never saw). ``unet.calibrate_run`` (what
``python -m unet calibrate`` does) chooses the post-processing anew on the first two
fields of a style; the model with its own choice and with the new one are then scored by
``unet.evaluate`` on the other six; and once more on the two fields' images, masks and
counts alone (``counts.csv``, no instance labels: the calibration then takes the
threshold of the best pixel Dice and minimises the count error). Further ``RUN FIELDS`` pairs (a run folder and a
folder of at least four annotated fields, e.g. a ``foreign.py`` run and its data's
``fields/``) are scored the same way: calibrated on the first two fields by name, scored
on the rest. Nothing is trained; a few minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from common import machine, table, write_result
from styles import style

from unet.evaluate import evaluate
from unet.io import find_pairs, read_counts, write_csv
from unet.run import load_run
from unet.spores import generate_dataset
from unet.train import calibrate_run

SCORES = ("dice", "object_f1", "ap_50_95", "count_error")


def split_fields(fields, out, first=2):
    """Links to the first ``first`` fields (by name) in OUT/a, to the rest in OUT/b, and
    the first ones' images and masks with their counts alone (no labels) in OUT/counts."""
    pairs = find_pairs(fields)
    if len(pairs) < first + 2:
        raise SystemExit(f"error: {fields} holds {len(pairs)} annotated images; give at least "
                         f"{first + 2}")
    counts = read_counts(fields)
    for part, chosen in (("a", pairs[:first]), ("b", pairs[first:]), ("counts", pairs[:first])):
        for pair in chosen:
            for path in (pair.image, pair.mask, None if part == "counts" else pair.labels):
                if path is not None:
                    target = out / part / path.parent.name / path.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if not target.exists():
                        target.symlink_to(path.resolve())
    write_csv(out / "counts" / "counts.csv", ["name", "count"],
              [[pair.name, counts[pair.name]] for pair in pairs[:first]])
    return out / "a", out / "b", out / "counts"


def post(config):
    return f"{config.threshold} / {config.split_h or 'relative'} / {config.min_area}"


def measure(name, model, fields, work):
    """Scores on the held-out fields before and after calibrating on the first two."""
    where = work / "calibrated" / "".join(c if c.isalnum() else "_" for c in name)
    shutil.rmtree(where, ignore_errors=True)
    labelled, score_on, counted = split_fields(fields, where)
    runs = {"the model's own": (model, None)}
    for label, folder, out in (("calibrated on 2 fields", labelled, where / "run"),
                               ("on their counts alone", counted, where / "run_counts")):
        runs[label] = (out, calibrate_run(model, folder, out)["calibration"])
    rows = []
    for label, (run, calibration) in runs.items():
        net, config = load_run(run)
        scores = evaluate(net, score_on)
        rows.append({"set": name, "post-processing": label, "chosen": post(config),
                     **{k: scores[k] for k in SCORES},
                     "count_pred": scores["count_pred"], "count_true": scores["count_true"]})
        if calibration is not None:
            rows[-1]["calibration"] = calibration
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="*", metavar="RUN FIELDS",
                        help="more runs with a folder of annotated fields")
    parser.add_argument("--work", type=Path, default=Path("/tmp/calibrate_fields"))
    parser.add_argument("--styles", default="dense,small,pale")
    args = parser.parse_args()
    if len(args.pairs) % 2:
        raise SystemExit("error: give RUN FIELDS in pairs")
    jobs = []
    for name in filter(None, args.styles.split(",")):
        data = args.work / "styles" / name
        if not (data / "fields").is_dir():
            generate_dataset(data, train=0, val=0, test=0, fields=8, seed=5, style=style(name))
        jobs.append((f"shipped model, {name} fields", "spores", data / "fields"))
    for run, fields in zip(args.pairs[::2], args.pairs[1::2]):
        jobs.append((Path(run).name, run, Path(fields)))
    rows = [row for name, model, fields in jobs for row in measure(name, model, fields, args.work)]
    print(table([(r["set"], r["post-processing"], r["chosen"], f"{r['dice']:.3f}",
                  f"{r['object_f1']:.3f}", f"{r['ap_50_95']:.3f}",
                  f"{100 * r['count_error']:.1f} %", f"{r['count_pred']} / {r['count_true']}")
                 for r in rows],
                ("set", "post-processing", "threshold / split h / min area", "Dice",
                 "object F1", "AP 0.5:0.95", "count error", "counted / true")))
    write_result("calibrate_fields", {"machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()
