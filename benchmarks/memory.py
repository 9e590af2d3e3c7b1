"""Peak memory (resident set size) of training and of predicting a 4096 x 4096 image.

    python benchmarks/memory.py [--data data/spores] [--train-limit 1000] [--size 4096]
                                [--precision auto]

Each measurement runs in its own Python process (``ru_maxrss`` of that process):

* ``baseline``: import the package, build the default model (``unet.train.Config()``).
* ``train``: ``unet.train.train`` of the default config for one epoch on
  ``--train-limit`` training crops (and the validation split), as ``make demo`` runs it.
* ``predict``: ``unet.predict.predict_tiled`` of a random ``--size``^2 RGB image with the
  default tiling. The image (float32) and the probability map alone take
  ``size**2 * 16`` bytes; for contrast, the activations of one forward pass over the
  whole image at once are estimated from the layer shapes (:func:`unet.shape_trace`):
  overlap-tiling must need far less.

With ``--predict-sizes 4096 8192 ...`` it measures instead the whole ``predict`` of one
large image file per size (``unet.batch.predict_images`` with the shipped spore model, as
``python -m unet predict IMAGE --out OUT`` runs it: read, normalise, tile, count, write
every output), each in its own process, and prints per size the peak RSS, the seconds and
what :func:`unet.batch.predict_memory` estimated before reading the pixels (plus the
RSS with the model loaded, to compare with the peak). The image is
a mosaic of the generated dish fields (``data/spores/fields``), mirrored so that no seam
cuts a spore, saved as an uncompressed TIFF (``--predict-format tif``) or a PNG (``png``).

    python benchmarks/memory.py --predict-sizes 4096 8192 12000 [--predict-format tif]

Writes benchmarks/results/memory.json (``memory_predict.json`` with ``--predict-sizes``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine, table, write_result

MB = 1024 * 1024


def peak_rss_mb():
    """Peak resident set size of this process so far, MB.

    Linux's ``VmHWM`` (the high-water mark of this process's own memory) where there is
    one: ``ru_maxrss`` also counts the process the child was started from (Linux keeps
    the larger of the two across ``exec``), which for the large sizes is this script's
    parent holding the mosaic it just wrote (about 1.9 GB at 20000²).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB


def child(kind, args):
    """Run one measurement in this (fresh) process; print one JSON line."""
    import keras
    import numpy as np

    from unet.train import Config, resolve_precision

    config = Config()
    policy = resolve_precision(args.precision)
    out = {"kind": kind, "precision": policy}
    start = time.perf_counter()
    if kind == "baseline":
        keras.mixed_precision.set_global_policy(policy)
        config.build_model()
    elif kind == "train":
        import dataclasses

        from unet.train import train

        config = dataclasses.replace(config, steps=config.steps_per_epoch, calibrate=False,
                                     train_limit=args.train_limit)
        with tempfile.TemporaryDirectory() as run:
            result = train(config, args.data, Path(run) / "run", precision=args.precision,
                           strategy="default", verbose=0)
        out["crops"] = args.train_limit
        out["epoch_seconds"] = result["seconds"]
    elif kind == "predict":
        from unet.predict import plan_tiles, predict_tiled

        keras.mixed_precision.set_global_policy(policy)
        model = config.build_model()
        image = np.random.default_rng(0).random((args.size, args.size, 3), np.float32)
        out["rss_before_predict_mb"] = peak_rss_mb()
        kwargs = {"batch_size": args.predict_batch} if args.predict_batch else {}
        prob = predict_tiled(model, image, **kwargs)
        plan = plan_tiles(image.shape, config.depth, config.padding)
        out.update(size=args.size, tile=plan.tile[0], grid=plan.grid, shape=prob.shape)
    out["seconds"] = time.perf_counter() - start
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out, default=str))


def mosaic(size, fields_dir):
    """A ``size``^2 RGB image tiled from the dish fields, mirrored at every seam (uint8)."""
    import numpy as np

    from unet.io import read_image

    field = read_image(sorted(Path(fields_dir).glob("*.png"))[0])[..., :3]
    block = np.concatenate([field, field[::-1]], axis=0)
    block = np.concatenate([block, block[:, ::-1]], axis=1)
    reps = -(-size // block.shape[0])
    row = np.concatenate([block] * reps, axis=1)[:, :size]
    return np.concatenate([row] * reps, axis=0)[:size]


def predict_file_child(path):
    """``predict`` of one image file in this (fresh) process; print one JSON line."""
    from unet import batch, io
    from unet.batch import predict_images
    from unet.run import load_run

    out = {"kind": "predict-file", "file_mb": Path(path).stat().st_size / MB}
    start = time.perf_counter()
    model = load_run("spores")[0]
    out["rss_after_model_mb"] = peak_rss_mb()
    if hasattr(batch, "predict_memory"):  # what predict's up-front check expects
        lazy = hasattr(io, "TiffRows") and io.TiffRows.open(path) is not None
        header = io.image_header(path)
        need = (batch.predict_memory(header, lazy) if hasattr(batch, "STRIP_PIXELS")
                else batch.predict_memory(path))
        out["estimate_mb"] = out["rss_after_model_mb"] + need / MB
        out["available_mb"] = io.available_memory() / MB
    with tempfile.TemporaryDirectory() as tmp:
        counts = predict_images(model, [path], Path(tmp) / "out")
    out["count"] = counts[0][1]
    out["seconds"] = time.perf_counter() - start
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out, default=str))


def predict_sizes(args):
    """The ``--predict-sizes`` mode: one process per size, each predicting one file."""
    from PIL import Image

    import tifffile

    result = {"machine": machine(), "format": args.predict_format, "runs": []}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.predict_sizes:
            path = Path(tmp) / f"mosaic_{size}.{args.predict_format}"
            image = mosaic(size, Path(args.data) / "fields" / "images")
            if args.predict_format == "png":
                Image.MAX_IMAGE_PIXELS = None
                Image.fromarray(image).save(path, compress_level=1)
            else:
                tifffile.imwrite(path, image, photometric="rgb")
            del image
            done = subprocess.run([sys.executable, __file__, "--predict-file", str(path)],
                                  capture_output=True, text=True, check=False)
            path.unlink()
            if done.returncode:
                lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
                run = {"size": size, "error": lines[-1] if lines else f"exit {done.returncode}"}
                print(f"{size}^2: failed: {run['error']}", flush=True)
                rows.append((f"{size}^2", "-", "-", "-", run["error"][:90]))
            else:
                run = dict(json.loads(done.stdout.strip().splitlines()[-1]), size=size)
                est = f"{run['estimate_mb']:.0f}" if "estimate_mb" in run else "-"
                print(f"{size}^2: peak RSS {run['peak_rss_mb']:.0f} MB, {run['seconds']:.0f} s, "
                      f"estimate {est} MB", flush=True)
                rows.append((f"{size}^2", f"{run['peak_rss_mb']:.0f}", f"{run['seconds']:.0f}",
                             est, str(run["count"])))
            result["runs"].append(run)
    print(table(rows, ("image", "peak RSS MB", "seconds", "estimate MB", "spores")))
    write_result("memory_predict", result)
    return result


def whole_image_activations_mb(size, config, bytes_per_value=4):
    """Activations of one forward pass over the whole (mirror-padded) image at once, MB."""
    from unet import input_size_for_output, shape_trace

    side = input_size_for_output(size, config.depth, config.padding)
    rows = shape_trace(side, config.depth, config.padding, config.filters, config.channels)
    first = rows[1].size**2 * rows[1].channels * bytes_per_value / MB
    total = sum(r.size**2 * r.channels for r in rows) * bytes_per_value / MB
    return first, total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "spores"))
    parser.add_argument("--train-limit", type=int, default=1000, help="training crops (1000)")
    parser.add_argument("--size", type=int, default=4096, help="predicted image side (4096)")
    parser.add_argument("--precision", default="auto", help="auto|fp32|bf16 (auto)")
    parser.add_argument("--predict-batch", type=int,
                        help="tiles per model call when predicting (predict_tiled's default)")
    parser.add_argument("--only", default="baseline,train,predict",
                        help="comma list of baseline, train, predict")
    parser.add_argument("--predict-sizes", type=int, nargs="+", metavar="SIZE",
                        help="instead: predict one SIZE^2 image file per size (whole predict)")
    parser.add_argument("--predict-format", choices=("tif", "png"), default="tif",
                        help="file format of --predict-sizes images (tif)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--predict-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args)
    if args.predict_file:
        return predict_file_child(args.predict_file)
    if args.predict_sizes:
        return predict_sizes(args)

    from unet.train import Config

    result = {"machine": machine(), "runs": {}}
    for kind in args.only.split(","):
        command = [sys.executable, __file__, "--child", kind, "--data", args.data,
                   "--train-limit", str(args.train_limit), "--size", str(args.size),
                   "--precision", args.precision]
        if args.predict_batch:
            command += ["--predict-batch", str(args.predict_batch)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"{kind} failed:\n{done.stderr[-2000:]}")
        result["runs"][kind] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{kind}: peak RSS {result['runs'][kind]['peak_rss_mb']:.0f} MB", flush=True)
    first, total = whole_image_activations_mb(args.size, Config())
    base = result["runs"]["baseline"]["peak_rss_mb"]
    predict = result["runs"]["predict"]
    data_mb = args.size**2 * 16 / MB
    result["whole_image_first_layer_mb"] = first
    result["whole_image_all_layers_mb"] = total
    result["image_and_output_mb"] = data_mb
    rows = [
        ("import + build default model", f"{base:.0f}", ""),
        (f"train 1 epoch, {args.train_limit} crops", f"{result['runs']['train']['peak_rss_mb']:.0f}",
         f"+{result['runs']['train']['peak_rss_mb'] - base:.0f}"),
        (f"predict {args.size}^2 (tile {predict['tile']}, {predict['grid'][0]}x"
         f"{predict['grid'][1]})", f"{predict['peak_rss_mb']:.0f}",
         f"+{predict['peak_rss_mb'] - base:.0f} (image + output {data_mb:.0f})"),
    ]
    print(table(rows, ("process", "peak RSS MB", "over baseline MB")))
    print(f"for contrast, one forward pass over the whole {args.size}^2 image at once: first "
          f"layer {first:.0f} MB, all layers {total:.0f} MB (float32)")
    write_result("memory", result)
    return result


if __name__ == "__main__":
    main()
