"""Throughput of `predict` on a folder against `predict_tiled` alone on the same images.

`predict_images` reads, prepares, counts, measures and writes (mask, overlay with ids,
labels TIFF, ROIs, tables) besides the model's work; with `workers` > 0 that work
overlaps with inference (a reader thread one image ahead, a pool writing the images
already predicted). The goal: `predict` on a folder at >= 0.8 of the images/s of
`predict_tiled` alone on the images already in memory.

Usage: python benchmarks/throughput.py [--run spores] [--images 16] [--size 1024]

Prints images/s of: predict_tiled alone (images read and prepared beforehand),
predict_images with workers=0 (one step after the other) and with the default workers,
and the ratios. The images are synthetic dish fields (`unet.spores.render_field`, seeds
0..N-1) written as PNG to a temporary folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="spores", help="run, .keras file or shipped model (spores)")
    p.add_argument("--images", type=int, default=16, help="number of fields (16)")
    p.add_argument("--size", type=int, default=1024, help="field side in pixels (1024)")
    p.add_argument("--workers", type=int, default=2, help="predict's workers (2)")
    args = p.parse_args(argv)

    import unet  # noqa: F401
    from unet._tf import quiet_retracing
    from unet.batch import predict_images
    from unet.image import prepare_image
    from unet.io import read_image, save_png
    from unet.predict import predict_tiled
    from unet.run import load_run
    from unet.spores import render_field

    model, config = load_run(args.run)
    folder = Path(tempfile.mkdtemp(prefix="unet-throughput-"))
    images = folder / "images"
    images.mkdir()
    for seed in range(args.images):
        save_png(render_field(seed, (args.size, args.size))[0], images / f"field_{seed:03d}.png")
    prepared = [prepare_image(read_image(p), config.channels) for p in sorted(images.iterdir())]
    with quiet_retracing():
        predict_tiled(model, prepared[0])  # trace once, outside the timings

        def alone():
            start = time.perf_counter()
            for image in prepared:
                predict_tiled(model, image)
            return len(prepared) / (time.perf_counter() - start)

        def folder_run(workers, k):
            start = time.perf_counter()
            predict_images(model, [images], folder / f"out{k}", threshold=config.threshold,
                           workers=workers)
            return len(prepared) / (time.perf_counter() - start)

        # alternate, so that a change in the machine's load hits every variant alike
        rates = {"predict_tiled alone": [], "predict, workers=0": [],
                 f"predict, workers={args.workers}": []}
        for k in range(2):
            rates["predict_tiled alone"].append(alone())
            rates["predict, workers=0"].append(folder_run(0, f"s{k}"))
            rates[f"predict, workers={args.workers}"].append(folder_run(args.workers, f"w{k}"))
    best = {name: max(r) for name, r in rates.items()}
    base = best["predict_tiled alone"]
    print(f"{args.images} fields of {args.size}x{args.size} px, model {args.run}; "
          "best of 2 alternating runs:")
    for name, rate in best.items():
        print(f"  {name:<24} {rate:6.2f} images/s  ({rate / base:.2f} x predict_tiled alone)")
    ratio = best[f"predict, workers={args.workers}"] / base
    print(f"throughput ratio (goal >= 0.8): {ratio:.2f}")


if __name__ == "__main__":
    main()
