"""Overlap-tile prediction of a large field: seconds, megapixels/s and work ratio vs tile size.

    python benchmarks/tiling.py [--size 2048] [--max-tiles 200,320,420,540,680,800,1280,1600]
                                [--batches 1,2,4] [--repeats 2] [--precision auto]

The default spore model (``unet.train.Config()``, untrained: speed does not depend on
the weights) predicts a random ``--size`` x ``--size`` RGB image with
``unet.predict.predict_tiled`` for every tile size and batch size of the sweep (the
tiles the planner chooses under each ``--max-tiles`` value), and
with the default choice (``tile=None``: the plan :func:`unet.predict.plan_tiles`
makes under ``unet.predict.MAX_TILE``, and the default batch size). Reported: seconds,
output megapixels per second, the work ratio (input pixels computed / output
pixels) and the speed of the model per *input* pixel (which shows what larger tiles
cost or save beyond the ratio).

Writes benchmarks/results/tiling.json.
"""

from __future__ import annotations

import argparse
import inspect
import time

from common import fmt, machine, summary, table, write_result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="image side (2048)")
    parser.add_argument("--max-tiles", default="200,320,420,540,680,800,1280,1600",
                        help="MAX_TILE values whose tiles the sweep times")
    parser.add_argument("--batches", default="1,2,4", help="batch sizes of the sweep")
    parser.add_argument("--repeats", type=int, default=2, help="timings per setting (2)")
    parser.add_argument("--precision", default="auto", help="auto|fp32|bf16 (auto)")
    args = parser.parse_args(argv)

    import keras
    import numpy as np

    from unet import predict
    from unet.train import Config, resolve_precision

    config = Config()
    policy = resolve_precision(args.precision)
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    model = config.build_model()
    keras.mixed_precision.set_global_policy("float32")
    image = np.random.default_rng(0).random((args.size, args.size, 3), np.float32)
    megapixels = args.size**2 / 1e6
    default_batch = inspect.signature(predict.predict_tiled).parameters["batch_size"].default
    result = {"machine": machine(), "precision": policy, "size": args.size,
              "max_tile": predict.MAX_TILE, "default_batch": default_batch, "rows": []}

    def run(tile, batch):
        plan = predict.plan_tiles(image.shape, config.depth, config.padding, tile)
        predict.predict_tiled(model, image[: plan.tile[0], : plan.tile[1]], tile=plan.tile[0],
                              batch_size=1)  # warm-up: trace this tile size
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            predict.predict_tiled(model, image, tile=tile, batch_size=batch)
            times.append(time.perf_counter() - start)
        row = {
            "tile": plan.tile[0], "grid": plan.grid, "batch": batch,
            "work_ratio": plan.work_ratio, "seconds": summary(times),
            "output_mp_per_s": summary([megapixels / t for t in times]),
            "input_mp_per_s": summary([megapixels * plan.work_ratio / t for t in times]),
        }
        result["rows"].append(row)
        print(f"tile {row['tile']:5d} grid {plan.grid[0]}x{plan.grid[1]} batch {batch}: "
              f"work ratio {plan.work_ratio:.2f}, {fmt(row['seconds'], 2)} s, "
              f"{fmt(row['output_mp_per_s'], 2)} output MP/s", flush=True)
        return row

    tiles = sorted({
        predict.plan_tiles(image.shape, config.depth, config.padding, max_tile=int(m)).tile[0]
        for m in args.max_tiles.split(",")
    })
    for tile in tiles:
        for batch in (int(b) for b in args.batches.split(",")):
            plan = predict.plan_tiles(image.shape, config.depth, config.padding, tile)
            if batch > plan.n_tiles:
                continue  # a batch larger than the number of tiles changes nothing
            run(tile, batch)
    default = run(None, default_batch)
    default["default"] = True
    best = max(result["rows"], key=lambda r: r["output_mp_per_s"]["median"])
    result["best"] = {k: best[k] for k in ("tile", "batch", "work_ratio")}
    rows = [(r["tile"], f"{r['grid'][0]}x{r['grid'][1]}", r["batch"], f"{r['work_ratio']:.2f}",
             fmt(r["seconds"], 2), fmt(r["output_mp_per_s"], 2), fmt(r["input_mp_per_s"], 2),
             "default" if r.get("default") else "")
            for r in result["rows"]]
    print(table(rows, ("tile", "grid", "batch", "work ratio", "seconds", "output MP/s",
                       "input MP/s", "")))
    print(f"default (tile=None, MAX_TILE={predict.MAX_TILE}, batch {default_batch}): tile "
          f"{default['tile']}, work ratio {default['work_ratio']:.2f} (target <= 1.6), "
          f"{fmt(default['output_mp_per_s'], 2)} output MP/s; best of the sweep: tile "
          f"{best['tile']} batch {best['batch']} ({best['output_mp_per_s']['median']:.2f} MP/s)")
    write_result("tiling", result)
    return result


if __name__ == "__main__":
    main()
