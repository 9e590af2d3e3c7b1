"""``evaluate --report DIR``: the figures a person looks at to judge a model on their data.

:func:`write_report` predicts every image of a data folder once more (through
:func:`unet.evaluate.iter_predictions`, so exactly as :func:`unet.evaluate.evaluate`
sees them) and writes to ``DIR``:

* ``examples.png``: the worst images (lowest Dice) and typical ones (Dice nearest the
  median), each as image | truth | prediction | errors (false positives orange,
  false negatives purple);
* ``threshold.png``: the pooled Dice against the probability threshold, and, where the
  folder has true counts (``labels/`` or ``counts.csv``), the mean count error;
* ``sizes.png``: the equivalent diameters of the true and the predicted spores (where
  the folder has ``labels/``);
* ``per_image.csv`` (image, Dice at the threshold, counts) and ``report.md`` (the scores
  of :func:`unet.evaluate.evaluate` when given, and the figures).

Large images are shown by a central window of at most 256 x 256 pixels, so the report
holds little memory per image.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .count import label_spores, relative_count_error, resolve_min_area
from .evaluate import iter_predictions
from .io import find_pairs, read_counts, write_csv, write_text
from .metrics import scores_from_counts
from .model import FROM_MODEL, prediction_settings

#: Thresholds of the Dice curve, and the (fewer) ones where spores are counted.
THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)
COUNT_THRESHOLDS = np.round(np.arange(0.1, 0.91, 0.1), 2)
FIGURES = ("examples.png", "threshold.png", "sizes.png", "per_image.csv", "report.md")
_WINDOW = 256


def check_report_dir(report_dir, overwrite=False):
    """Refuse a report folder that is a file or already holds a report (unless overwrite)."""
    out = Path(report_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"`report_dir` {out} is a file; give a folder for the report.")
    clashes = [name for name in FIGURES if (out / name).exists()]
    if clashes and not overwrite:
        raise FileExistsError(f"{out} already holds a report ({clashes[0]}); choose another "
                              "`report_dir` or pass `overwrite=True`.")
    return out


def _window(array):
    h, w = array.shape[:2]
    top, left = max(0, (h - _WINDOW) // 2), max(0, (w - _WINDOW) // 2)
    return array[top:top + _WINDOW, left:left + _WINDOW]


def write_report(model, data_dir, report_dir, threshold=FROM_MODEL, tta=FROM_MODEL,
                 overwrite=False, scores=None, examples=3, progress=False, flatten=FROM_MODEL,
                 *, min_area=FROM_MODEL, split_h=FROM_MODEL):
    """Write the figures of a model's results on a data folder (see the module notes).

    Parameters
    ----------
    model : keras.Model or callable
        What :func:`unet.evaluate.iter_predictions` accepts.
    data_dir : path
        A data folder (``images/``, ``masks/``, optional ``labels/`` or ``counts.csv``).
    report_dir : path
        Output folder (created).
    threshold : float or "model"
        The threshold in use (marked on the curve; examples and sizes use it).
    tta : bool or "model"
        Test-time augmentation.
    overwrite : bool
        Replace a report already in ``report_dir``.
    scores : dict, optional
        The result of :func:`unet.evaluate.evaluate` on the same folder, quoted in
        ``report.md``.
    examples : int
        Worst and typical images shown (each).
    progress : bool
        Show a progress bar.
    flatten : int, None or "model"
        The background window (see :func:`unet.evaluate.iter_predictions`).
    min_area, split_h : int, float, None or "model"
        The post-processing that counts and sizes the spores (see
        :func:`unet.evaluate.evaluate`).

    ``"model"``, the default of every setting: what the model's run chose, as in
    :func:`unet.evaluate.evaluate` (:func:`unet.model.prediction_settings`).

    Returns
    -------
    pathlib.Path
        ``report_dir / "report.md"``.
    """
    from . import plot
    from .render import display_image

    out = check_report_dir(report_dir, overwrite)
    settings = prediction_settings(model, threshold=threshold, tta=tta, flatten=flatten,
                                   min_area=min_area, split_h=split_h)
    threshold = settings["threshold"]
    post = {"min_area": settings["min_area"], "h": settings["split_h"]}  # label_spores's
    truth_counts = read_counts(data_dir, [p.name for p in find_pairs(data_dir)])
    totals = np.zeros((len(THRESHOLDS), 4), np.int64)
    counted, rows, kept, true_sizes, pred_sizes = [], [], [], [], []
    for item in iter_predictions(model, data_dir, tta=settings["tta"], progress=progress,
                                 flatten=settings["flatten"]):
        prob, truth = item.prob, item.truth
        fg, bg = prob[truth], prob[~truth]
        for k, t in enumerate(THRESHOLDS):
            tp, fp = int((fg > t).sum()), int((bg > t).sum())
            totals[k] += (tp, fp, fg.size - tp, bg.size - fp)
        pred = prob > threshold
        tp = int((pred & truth).sum())
        dice = scores_from_counts(tp, int(pred.sum()) - tp, int(truth.sum()) - tp, 0)["dice"]
        labels = label_spores(prob, threshold, **post)
        row = {"image": item.name, "dice": dice, "count_pred": int(labels.max())}
        if item.name in truth_counts:
            row["count_true"] = truth_counts[item.name]
            counted.append((truth_counts[item.name],
                            [int(label_spores(prob, t, **post).max()) for t in COUNT_THRESHOLDS]))
        if item.labels is not None:
            true_sizes.append(np.bincount(item.labels.ravel())[1:])
        pred_sizes.append(np.bincount(labels.ravel())[1:])
        rows.append(row)
        kept.append((display_image(_window(np.asarray(item.image))), _window(truth),
                     _window(prob).astype(np.float16)))
    if not rows:
        raise FileNotFoundError(f"{data_dir} holds no images to report on.")
    out.mkdir(parents=True, exist_ok=True)

    # worst and typical images
    dice = np.array([r["dice"] for r in rows])
    order = np.argsort(dice, kind="stable")
    worst = list(order[:examples])
    typical = [i for i in np.argsort(np.abs(dice - np.median(dice)), kind="stable")
               if i not in worst][:examples]
    chosen = worst + typical
    names = [("worst " if i in worst else "typical ") + rows[i]["image"] for i in chosen]
    figure = plot.prediction_strip([kept[i][0] for i in chosen], [kept[i][1] for i in chosen],
                                   [kept[i][2].astype(np.float32) for i in chosen], names,
                                   threshold=threshold,
                                   title=f"{len(worst)} worst and {len(typical)} typical of "
                                   f"{len(rows)} images (threshold {threshold:g})")
    plot.save_figure(figure, out / "examples.png")

    # Dice and count error against the threshold
    curve = [scores_from_counts(*t)["dice"] for t in totals]
    errors = None
    if counted:
        true = np.array([c for c, _ in counted], float)
        pred = np.array([p for _, p in counted], float)
        errors = [float(np.mean(relative_count_error(true, pred[:, k])))
                  for k in range(len(COUNT_THRESHOLDS))]
    plot.save_figure(plot.threshold_curves(THRESHOLDS, curve, COUNT_THRESHOLDS, errors,
                                           chosen=threshold), out / "threshold.png")

    # sizes
    sizes = {"predicted": np.sqrt(4 * np.concatenate(pred_sizes) / np.pi)}
    if true_sizes:
        sizes = {"truth": np.sqrt(4 * np.concatenate(true_sizes) / np.pi), **sizes}
    plot.save_figure(plot.size_histogram(sizes, title="spore sizes (equivalent diameter)"),
                     out / "sizes.png")

    columns = ["image", "dice", "count_pred", "count_true"]
    write_csv(out / "per_image.csv", columns,
              [[r.get(c, "") if c != "dice" else repr(float(r["dice"])) for c in columns]
               for r in rows])
    best = int(np.argmax(curve))
    split = "relative" if settings["split_h"] is None else f"{settings['split_h']:g} px"
    lines = [f"# Evaluation report: {Path(data_dir)}", "",
             f"{len(rows)} images, threshold {threshold:g}, split height {split}, smallest "
             f"spore {resolve_min_area(post['min_area'])} px"
             f"{', test-time augmentation' if settings['tta'] else ''}."]
    if scores:
        shown = {k: v for k, v in scores.items() if not isinstance(v, list)}
        lines += ["", "Scores of `unet evaluate`:", "", "```", json.dumps(shown, indent=1), "```"]
    lines += [
        "", f"Highest pooled Dice on this folder: {curve[best]:.4f} at threshold "
        f"{THRESHOLDS[best]:g} (at {threshold:g}: "
        f"{curve[int(np.argmin(np.abs(THRESHOLDS - threshold)))]:.4f}). Choosing the threshold "
        "on the data you report on flatters it; use it to see whether the model's default is "
        "far off.", "",
        "![worst and typical images](examples.png)", "",
        "![Dice and count error against the threshold](threshold.png)", "",
        "![true and predicted spore sizes](sizes.png)", "",
        "Per image: [per_image.csv](per_image.csv).", ""]
    write_text(out / "report.md", "\n".join(lines))
    return out / "report.md"
