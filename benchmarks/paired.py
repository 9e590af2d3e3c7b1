"""Is one method's lead over another larger than what the test images alone would move?

    python benchmarks/paired.py DATA A B [--names A,B] [--resamples 10000] [--seed 0]
                                [--post own|a] [--name NAME]

A and B are each a trained run folder (predicted at every image's own size with the
run's calibrated post-processing, as ``evaluate`` predicts it; with ``--post a`` both
runs with A's, to compare two networks apart from what their calibrations chose) or a
folder of label images named as DATA's images (``NAME.png``: what ``peer_stardist.py``
writes to ``PEER/pred/SPLIT/``). Both are scored on the same images against the same truth
(:func:`unet.evaluate.true_instances`), from their label images: object F1 at IoU 0.5
(matches pooled over images), count error (the mean over images of
:func:`unet.relative_count_error`) and pixel Dice of the labelled objects (pooled).

Two answers to "is the difference real", neither of which needs another training run:

* **per object**: of the true objects, how many only A matched and how many only B did
  (the discordant ones; the others count for both or neither), with McNemar's exact
  two-sided p-value on those two numbers, and each method's found objects that match
  nothing;
* **per image**: the paired bootstrap. The test images are drawn again with replacement
  (the same draw for both methods) ``--resamples`` times; each score of each method is
  computed over the draw, and the 2.5 and 97.5 percentiles of the difference (A - B) give
  a 95 % interval. Where it holds zero, the test set cannot tell the two apart. With
  fewer than five images only the per-object answer is given.

Neither says anything about a second training seed (a different network): that spread is
measured by training again (``foreign.py``'s seed rows). Prints one table and writes
``benchmarks/results/paired_NAME.json``. Nothing is trained.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from common import table, write_result

from unet.count import (count_labels, label_spores, match_spores, object_scores_from_counts,
                        relative_count_error)
from unet.evaluate import iter_predictions, true_instances
from unet.io import read_labels
from unet.metrics import confusion_counts, scores_from_counts
from unet.model import prediction_settings
from unet.run import load_run

#: Fewest test images for the bootstrap over images.
MIN_IMAGES = 5


def method_labels(source, item):
    """The label image of one method for one :class:`unet.evaluate.Prediction`."""
    if source["kind"] == "run":
        post = source["post"]
        return label_spores(item.prob, post["threshold"], post["min_area"], h=post["split_h"])
    path = source["path"] / f"{item.name}.png"
    if not path.is_file():
        raise SystemExit(f"{source['path']} has no {item.name}.png; give the label images "
                         f"of every image in the data folder.")
    labels = read_labels(path)
    if labels.shape != item.truth.shape:
        raise SystemExit(f"{path} is {labels.shape}, its image {item.truth.shape}.")
    return labels


def open_method(path):
    """A run folder (``config.json`` + ``model.keras``) or a folder of label images."""
    path = Path(path)
    if (path / "config.json").is_file():
        model, _ = load_run(path)
        return {"kind": "run", "path": path, "model": model,
                "post": prediction_settings(model, threshold="model", min_area="model",
                                            split_h="model")}
    if path.is_dir() and any(path.glob("*.png")):
        return {"kind": "labels", "path": path}
    raise SystemExit(f"{path} is neither a run folder nor a folder of label images (*.png).")


#: Columns of :func:`per_image`'s ``stats``: objects matched, found unmatched, true
#: unmatched; labelled pixels on truth, off truth, truth pixels unlabelled; objects found.
TP, FP, FN, PX_TP, PX_FP, PX_FN, COUNT = range(7)


def per_image(data, sources):
    """Per image and method: what :func:`scores` pools; and the true objects each matched.

    The images are read and predicted once per run (a label folder's labels are read
    beside the first run's predictions, or beside the images alone without any run).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, list of set)
        ``true``: int ``(images,)`` true object counts; ``stats``: int ``(images, 2, 7)``,
        the columns :data:`TP` ... :data:`COUNT`; for each method the
        ``(image name, true label)`` pairs it matched.
    """
    def no_model(raw):  # without a run the images are read only for their truth
        return np.zeros(raw.shape[:2], np.float32)

    runs = [s["model"] for s in sources if s["kind"] == "run"] or [no_model]
    true, stats, matched_true = [], [], [set(), set()]
    for items in zip(*(iter_predictions(model, data) for model in runs)):
        predicted = iter(items)
        truth, _ = true_instances(items[0])
        ids = np.unique(truth)
        ids = ids[ids > 0]
        true.append(ids.size)
        row = []
        for k, source in enumerate(sources):
            item = next(predicted) if source["kind"] == "run" else items[0]
            pred = method_labels(source, item)
            m = match_spores(truth, pred)
            matched_true[k].update((item.name, int(i)) for i in np.setdiff1d(ids, m["missed"]))
            px_tp, px_fp, px_fn, _ = confusion_counts(truth, pred)
            row.append((m["tp"], m["fp"], m["fn"], px_tp, px_fp, px_fn, count_labels(pred)))
        stats.append(row)
    return np.array(true, np.int64), np.array(stats, np.int64).reshape(-1, 2, 7), matched_true


def scores(true, stats, k, index=slice(None)):
    """Object F1, count error and Dice of method ``k`` pooled over the images ``index``."""
    tot = stats[index, k].sum(axis=0)
    tp, fp, fn = tot[TP], tot[FP], tot[FN]
    return {"f1": object_scores_from_counts(tp, fp, fn)["f1"],
            "count_error": float(np.mean(relative_count_error(true[index],
                                                              stats[index, k, COUNT]))),
            "dice": scores_from_counts(tot[PX_TP], tot[PX_FP], tot[PX_FN])["dice"]}


def bootstrap(true, stats, resamples, seed):
    """95 % intervals of A - B over images drawn again with replacement (paired)."""
    rng = np.random.default_rng(seed)
    n = len(true)
    diffs = {key: np.empty(resamples) for key in ("f1", "count_error", "dice")}
    for b in range(resamples):
        index = rng.integers(0, n, n)
        a, c = scores(true, stats, 0, index), scores(true, stats, 1, index)
        for key in diffs:
            diffs[key][b] = a[key] - c[key]
    return {key: {"low": float(np.percentile(d, 2.5)), "high": float(np.percentile(d, 97.5)),
                  "a_better": float(np.mean(d < 0) if key == "count_error" else np.mean(d > 0))}
            for key, d in diffs.items()}


def mcnemar(only_a, only_b):
    """Exact two-sided McNemar p-value of ``only_a`` against ``only_b`` discordant pairs."""
    from scipy.stats import binomtest

    n = only_a + only_b
    return 1.0 if n == 0 else float(binomtest(only_a, n, 0.5).pvalue)


def compare(data, a, b, names=("A", "B"), resamples=10000, seed=0, post="own"):
    """Both comparisons of methods ``a`` and ``b`` (paths, see the module) on ``data``.

    ``post``: ``"own"``, each run labelled with its calibrated post-processing, or
    ``"a"``, both runs with A's (``a`` must be a run).

    Returns
    -------
    dict
        ``scores`` of each method; the true objects ``matched_by_both`` and matched only
        by each, with ``mcnemar_p``; each method's found objects that match nothing
        (``unmatched_found``); with at least :data:`MIN_IMAGES` images, ``bootstrap``:
        for ``f1``, ``count_error`` and ``dice`` the 95 % interval (``low``, ``high``) of
        A - B and the share of draws where A is better (``a_better``).
    """
    names = list(names)
    sources = [open_method(a), open_method(b)]
    if post == "a":
        if sources[0]["kind"] != "run":
            raise SystemExit("--post a needs a run folder as A.")
        for source in sources[1:]:
            if source["kind"] == "run":
                source["post"] = sources[0]["post"]
    true, stats, (a_true, b_true) = per_image(data, sources)
    only_a, only_b = len(a_true - b_true), len(b_true - a_true)
    result = {"data": str(data), "a": str(a), "b": str(b), "names": names,
              "images": len(true), "true_objects": int(true.sum()),
              "scores": {n: scores(true, stats, k) for k, n in enumerate(names)},
              "matched_by_both": len(a_true & b_true),
              "matched_only": dict(zip(names, (only_a, only_b))),
              "mcnemar_p": mcnemar(only_a, only_b),
              "unmatched_found": {n: int(stats[:, k, FP].sum()) for k, n in enumerate(names)},
              "post": post, "resamples": resamples, "seed": seed}
    if len(true) >= MIN_IMAGES:
        result["bootstrap"] = bootstrap(true, stats, resamples, seed)
    return result


def interval(result, key):
    """``"+0.012 (-0.003 to +0.027)"``: A - B of one score and its interval, if any."""
    names = result["names"]
    a, b = (result["scores"][n][key] for n in names)
    ci = result.get("bootstrap", {}).get(key)
    return f"{a - b:+.3f}" + (f" ({ci['low']:+.3f} to {ci['high']:+.3f})" if ci else "")


def report(result):
    """The printed table and lines of one :func:`compare` result."""
    names, intervals = result["names"], result.get("bootstrap")
    lines = []
    for key in ("f1", "count_error", "dice"):
        a, b = (result["scores"][n][key] for n in names)
        ci = intervals[key] if intervals else None
        lines.append((key, f"{a:.3f}", f"{b:.3f}", f"{a - b:+.3f}",
                      f"{ci['low']:+.3f} to {ci['high']:+.3f}" if ci else "-",
                      f"{ci['a_better']:.0%}" if ci else "-"))
    head = ("score", *names, f"{names[0]} - {names[1]}", "95 % interval (images)",
            f"draws where {names[0]} is better")
    only = result["matched_only"]
    text = [f"{result['data']}: {result['images']} images, {result['true_objects']} true objects",
            table(lines, head),
            f"true objects matched by both {result['matched_by_both']}, only by {names[0]} "
            f"{only[names[0]]}, only by {names[1]} {only[names[1]]} (McNemar p = "
            f"{result['mcnemar_p']:.3g}); found objects matching nothing: "
            + ", ".join(f"{n} {result['unmatched_found'][n]}" for n in names)]
    if intervals is None:
        text.append(f"(fewer than {MIN_IMAGES} images: no bootstrap over images)")
    return "\n".join(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="a data folder with labels/ (a test split)")
    parser.add_argument("a", type=Path, help="method A: a run folder or a folder of label images")
    parser.add_argument("b", type=Path, help="method B: the same")
    parser.add_argument("--names", default="A,B", help="the two methods' names (default A,B)")
    parser.add_argument("--resamples", type=int, default=10000,
                        help="bootstrap draws (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="the draws' seed (default 0)")
    parser.add_argument("--post", choices=("own", "a"), default="own",
                        help="the runs' post-processing: each run's calibrated one (own, the "
                             "default) or A's for both (a), to compare the networks alone")
    parser.add_argument("--name", help="the result's name (benchmarks/results/paired_NAME.json)")
    args = parser.parse_args(argv)
    names = args.names.split(",")
    if len(names) != 2 or len(set(names)) != 2:
        parser.error("--names takes two different names separated by a comma")
    result = compare(args.data, args.a, args.b, names, args.resamples, args.seed, args.post)
    print(report(result))
    write_result(f"paired_{args.name or args.data.parent.name}", result)


if __name__ == "__main__":
    main()
