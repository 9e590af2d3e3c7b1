"""Throughput of the training input pipeline (tiles per second), with and without augmentation.

    python benchmarks/data_pipeline.py [--tile 284] [--batch 8] [--batches 25] [--gray]

Synthetic 100x100 RGB crops with ~10 disks each; border weights are precomputed once
(timed separately). With --gray the crops are gray replicated to RGB, which the
augmentation transforms as one channel. Compare the result with the training speed of the model: the
pipeline must deliver more tiles per second than a train step consumes.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from skimage.draw import disk  # noqa: E402

from unet import data  # noqa: E402
from unet.model import output_size  # noqa: E402


def synthetic_samples(n, size, seed=0, gray=False):
    rng = np.random.default_rng(seed)
    images, masks, labels = [], [], []
    for _ in range(n):
        lab = np.zeros((size, size), np.int32)
        for k in range(10):
            lab[disk(tuple(rng.integers(5, size - 5, 2)), 7, shape=lab.shape)] = k + 1
        labels.append(lab)
        masks.append((lab > 0).astype(np.uint8))
        image = rng.random((size, size, 1 if gray else 3)).astype(np.float32)
        images.append(np.repeat(image, 3, axis=-1) if gray else image)
    return data.Samples([f"s{i}" for i in range(n)], images, masks, labels)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile", type=int, default=284)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=25)
    parser.add_argument("--gray", action="store_true", help="gray crops replicated to RGB")
    args = parser.parse_args()
    out = output_size(args.tile)
    samples = synthetic_samples(64, min(out, 100), gray=args.gray)
    start = time.perf_counter()
    data.sample_weights(samples, "border")
    per_crop = (time.perf_counter() - start) / len(samples) * 1000
    print(f"border weights: {per_crop:.1f} ms per {min(out, 100)}x{min(out, 100)} crop (once)")
    kind = "gray" if args.gray else "RGB"
    print(f"CPU cores: {os.cpu_count()}, {kind} tile {args.tile} -> output {out}, batch {args.batch}")
    for name, augment in (("no augmentation", None), ("full augmentation", True)):
        ds = data.make_dataset(
            samples, args.tile, out, args.batch, augment=augment, weights="border", repeat=True
        )
        batches = iter(ds)
        for _ in range(3):  # warm-up: tracing, thread pools
            next(batches)
        start = time.perf_counter()
        for _ in range(args.batches):
            next(batches)
        rate = args.batches * args.batch / (time.perf_counter() - start)
        print(f"{name}: {rate:.0f} tiles/s")


if __name__ == "__main__":
    main()
