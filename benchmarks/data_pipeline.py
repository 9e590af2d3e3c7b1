"""Is the input pipeline ever the bottleneck? Train steps fed by it vs fed from memory.

    python benchmarks/data_pipeline.py [--data data/spores] [--limit 400] [--steps 8]
                                       [--rounds 5] [--precision auto] [--batch 8]

1. The pipeline alone: tiles per second and CPU milliseconds per tile of
   ``unet.data.make_dataset`` over the training crops, without augmentation and
   with the default augmentation (as ``unet.train.train`` uses it).
2. The train step of the default model (``unet.train.Config()``, the precision
   ``--precision`` resolves to) fed by that pipeline vs fed with the same batches
   held in memory, in alternating rounds of ``--steps`` steps (a fresh pipeline
   iterator each round, warmed up by two untimed steps, so it gets no head start).
   The ratio pipeline / memory of images per second is the figure that matters
   (target >= 0.9): the two cores are shared by the augmentation and the train step.
   The process's CPU use (100 % = one core) is printed beside each, and the ratio of
   CPU time per image (in memory / with the pipeline), which a busy shared machine
   disturbs less than the wall-clock ratio.

Writes benchmarks/results/data_pipeline.json.
"""

from __future__ import annotations

import argparse
import time

from common import ROOT, fmt, machine, summary, write_result


def pipeline_alone(samples, tile, out, batch, augment, batches=20, repeats=3):
    """Tiles/s and CPU ms per tile of make_dataset drained on its own."""
    from unet.data import make_dataset

    iterator = iter(make_dataset(samples, tile, out, batch, augment=augment, repeat=True))
    for _ in range(3):  # tracing, thread pools
        next(iterator)
    rates, cpu = [], []
    for _ in range(repeats):
        wall, proc = time.perf_counter(), time.process_time()
        for _ in range(batches):
            next(iterator)
        wall, proc = time.perf_counter() - wall, time.process_time() - proc
        rates.append(batches * batch / wall)
        cpu.append(proc / (batches * batch) * 1000)
    return {"tiles_per_s": summary(rates), "cpu_ms_per_tile": summary(cpu)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "spores"),
                        help="data set root with train/ (default data/spores)")
    parser.add_argument("--limit", type=int, default=400, help="training crops to load (400)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (Config default)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per round (8)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (5)")
    parser.add_argument("--precision", default="auto", help="auto|fp32|bf16 (auto)")
    parser.add_argument("--depth", type=int, help="model depth (Config default)")
    parser.add_argument("--filters", type=int, help="model filters (Config default)")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    from unet import data, losses, metrics
    from unet.train import Config, resolve_precision

    import dataclasses

    config = Config()
    config = dataclasses.replace(config, depth=args.depth or config.depth,
                                 filters=args.filters or config.filters)
    samples = data.load_folder(f"{args.data}/train", channels=config.channels, limit=args.limit)
    # the training window train chooses for these crops (crop_size=None): 100 for the spores
    config = dataclasses.replace(config, crop_size=data.choose_crop_size(
        samples, config.depth, config.padding))
    batch = args.batch or config.batch_size
    tile, out = config.tile_size, config.output_tile_size
    result = {"machine": machine(), "tile": tile, "out": out, "batch": batch,
              "filters": config.filters, "depth": config.depth, "crops": len(samples)}
    print(f"{len(samples)} training crops, {config.filters} filters, depth {config.depth}, "
          f"tile {tile} -> {out}, batch {batch}")

    for name, augment in (("no augmentation", None), ("default augmentation", True)):
        alone = pipeline_alone(samples, tile, out, batch, augment)
        result[f"pipeline alone, {name}"] = alone
        print(f"pipeline alone, {name}: {fmt(alone['tiles_per_s'], 0)} tiles/s, "
              f"{fmt(alone['cpu_ms_per_tile'], 2)} CPU ms/tile")

    policy = resolve_precision(args.precision)
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    model = config.build_model()
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                  loss=losses.get_loss(config.loss),
                  weighted_metrics=metrics.segmentation_metrics(config.threshold))
    model.make_train_function()
    pipeline = data.make_dataset(samples, tile, out, batch, augment=True, repeat=True,
                                 seed=config.seed)
    held = list(pipeline.take(4))
    memory = tf.data.Dataset.from_tensor_slices(
        tuple(tf.stack([b[k] for b in held]) for k in range(3))
    ).repeat()

    def steps_per_s(dataset):
        iterator = iter(dataset)
        for _ in range(2):  # warm-up, untimed
            model.train_function(iterator)
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            logs = model.train_function(iterator)
        float(logs["loss"])  # wait for the last step
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        images = args.steps * batch
        return images / wall, cpu / wall * 100, cpu / images * 1000

    mem, pipe, ratios, mem_cpu, pipe_cpu, cost_ratios = [], [], [], [], [], []
    for _ in range(args.rounds):
        rate, cpu, mem_cost = steps_per_s(memory)
        mem.append(rate)
        mem_cpu.append(cpu)
        rate, cpu, pipe_cost = steps_per_s(pipeline)
        pipe.append(rate)
        pipe_cpu.append(cpu)
        ratios.append(pipe[-1] / mem[-1])
        cost_ratios.append(mem_cost / pipe_cost)
    result["precision"] = policy
    result["train, in-memory images/s"] = summary(mem)
    result["train, pipeline images/s"] = summary(pipe)
    result["train, in-memory CPU %"] = summary(mem_cpu)
    result["train, pipeline CPU %"] = summary(pipe_cpu)
    result["ratio pipeline/memory"] = summary(ratios)
    result["CPU cost ratio memory/pipeline"] = summary(cost_ratios)
    print(f"train step ({policy}): in memory {fmt(summary(mem))} images/s at "
          f"{fmt(summary(mem_cpu), 0)} % CPU, fed by the pipeline {fmt(summary(pipe))} "
          f"images/s at {fmt(summary(pipe_cpu), 0)} % CPU")
    print(f"ratio pipeline / in-memory: {fmt(summary(ratios), 3)}  (target >= 0.9)")
    print(f"CPU time per image, in memory / with the pipeline: {fmt(summary(cost_ratios), 3)} "
          "(the ratio two free cores would give; less sensitive to a shared machine)")
    write_result("data_pipeline", result)
    return result


if __name__ == "__main__":
    main()
