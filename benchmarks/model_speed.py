"""Model throughput and achieved GFLOP/s against a large matmul (the practical limit).

    python benchmarks/model_speed.py [--repeats 5] [--precisions fp32,bf16]
                                     [--models spore,paper] [--paper-batch 1]

For the default spore model (``unet.train.Config()``: its training tile, batch size
and loss; also sweeps of train-step speed over batch sizes and over training windows, the
latter beside the steps and minutes the default budget, ``steps="auto"``, gives each) and the documented 572 -> 388 paper model (31M parameters, softmax over 2
classes), in each precision: forward images/s and train-step images/s, and the
GFLOP/s they achieve, with the FLOPs counted from the layers
(:func:`unet.count_flops`; a train step = 3 forward passes). Beside them, an
n x n matmul's GFLOP/s in the same precision, measured in the same run: the ratio
achieved / matmul says how close the convolutions run to the machine's dense limit.
bf16 on a CPU needs AVX512_BF16 or AMX to be fast; fp16 is for GPUs only. Last, the
spore train step with and without XLA (``jit_compile=True``), which ``train`` leaves off
where it is slower.

Writes benchmarks/results/model_speed.json.
"""

from __future__ import annotations

import argparse

from common import fmt, machine, matmul_gflops, summary, table, timed, write_result

POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
MATMUL_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def build(name, policy, paper_batch, jit=False, window=100):
    """(model, tile, batch, loss, classes) for 'spore' or 'paper' under a dtype policy.

    The spore model's tile is the one of a ``window`` px training window (100: what
    ``crop_size=None`` chooses for the spore crops, a 188 px tile)."""
    import keras

    from unet import losses, unet_model
    from unet.train import Config

    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    if name == "spore":
        config = Config(crop_size=window)
        model = config.build_model()
        loss, batch, tile, classes = losses.get_loss(config.loss), config.batch_size, \
            config.tile_size, config.num_classes
    else:
        model = unet_model()  # (572, 572, 3) -> (388, 388, 2)
        loss, batch, tile, classes = "categorical_crossentropy", paper_batch, 572, 2
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, jit_compile=jit)
    keras.mixed_precision.set_global_policy("float32")
    return model, tile, batch, classes


def measure(name, precision, repeats, paper_batch, batch=None, jit=False, window=100):
    import numpy as np
    import tensorflow as tf

    from unet import count_flops

    model, tile, default_batch, classes = build(name, POLICIES[precision], paper_batch, jit,
                                                window)
    batch = batch or default_batch
    out = model.compute_output_shape((batch, tile, tile, 3))[1]
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((batch, tile, tile, 3), np.float32))
    y = (rng.random((batch, out, out, classes)) > 0.5).astype(np.float32)
    if classes == 2:
        y[..., 1] = 1 - y[..., 0]
    y = tf.constant(y)
    forward = tf.function(lambda x: model(x, training=False))
    forward(x).numpy()
    fwd = timed(lambda: forward(x).numpy(), repeats)
    model.train_on_batch(x, y)
    train = timed(lambda: model.train_on_batch(x, y), repeats)
    flops = count_flops(model, tile)
    return {
        "model": name, "precision": precision, "tile": tile, "batch": batch,
        "params": model.count_params(), "gflop_per_image": flops / 1e9,
        "forward_images_per_s": summary([batch / t for t in fwd]),
        "forward_gflops": summary([batch * flops / t / 1e9 for t in fwd]),
        "train_images_per_s": summary([batch / t for t in train]),
        "train_gflops": summary([3 * batch * flops / t / 1e9 for t in train]),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timings per figure (5)")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma list (fp32,bf16)")
    parser.add_argument("--models", default="spore,paper", help="comma list (spore,paper)")
    parser.add_argument("--paper-batch", type=int, default=1, help="batch of the 572 model (1)")
    parser.add_argument("--matmul", type=int, default=2048, help="matmul size n (2048)")
    parser.add_argument("--spore-batches", default="4,8,16",
                        help="batch sizes for the spore model's train-step sweep (4,8,16)")
    parser.add_argument("--spore-windows", default="36,60,100,132,196",
                        help="training windows (px) for the spore model's train-step sweep "
                        "over tile sizes, beside the steps the default budget gives each "
                        "(36,60,100,132,196; empty: skip)")
    parser.add_argument("--no-xla", action="store_true",
                        help="skip the spore train step compiled with XLA (jit_compile=True)")
    args = parser.parse_args(argv)
    import keras

    precisions = args.precisions.split(",")
    result = {"machine": machine(), "matmul_n": args.matmul, "rows": []}
    print(f"machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, "
          f"GPU: {result['machine']['gpu']}")
    for name in args.models.split(","):
        for precision in precisions:
            # the limit measured right before and after the row (the machine is shared)
            limit = matmul_gflops(MATMUL_DTYPES[precision], args.matmul, args.repeats)
            row = measure(name, precision, args.repeats, args.paper_batch)
            limit += matmul_gflops(MATMUL_DTYPES[precision], args.matmul, args.repeats)
            row["matmul_gflops"] = summary(limit)
            row["forward_of_matmul"] = row["forward_gflops"]["median"] / summary(limit)["median"]
            row["train_of_matmul"] = row["train_gflops"]["median"] / summary(limit)["median"]
            result["rows"].append(row)
            keras.backend.clear_session()

    rows = []
    for r in result["rows"]:
        rows.append((
            f"{r['model']} {r['tile']}px x{r['batch']}", r["precision"],
            f"{r['gflop_per_image']:.1f}",
            fmt(r["matmul_gflops"], 0),
            fmt(r["forward_images_per_s"], 2), fmt(r["forward_gflops"], 0),
            f"{r['forward_of_matmul']:.2f}",
            fmt(r["train_images_per_s"], 2), fmt(r["train_gflops"], 0),
            f"{r['train_of_matmul']:.2f}",
        ))
    print(table(rows, ("model", "prec", "GFLOP/img", "matmul GFLOP/s", "fwd img/s",
                       "fwd GFLOP/s", "/mm", "train img/s", "train GFLOP/s", "/mm")))
    print(f"matmul: {args.matmul}^2, same precision, measured before and after each row; "
          "/mm = achieved / matmul")
    if args.spore_batches:
        sweep = []
        for batch in (int(b) for b in args.spore_batches.split(",")):
            for precision in precisions:
                r = measure("spore", precision, args.repeats, args.paper_batch, batch)
                sweep.append({"batch": batch, "precision": precision,
                              "train_images_per_s": r["train_images_per_s"]})
                keras.backend.clear_session()
        result["spore_batch_sweep"] = sweep
        print("spore model train step, images/s by batch size:")
        print(table([(r["batch"], r["precision"], fmt(r["train_images_per_s"], 1))
                     for r in sweep], ("batch", "precision", "train img/s")))
    if args.spore_windows:
        from unet.run import choose_steps

        sweep = []
        for window in (int(w) for w in args.spore_windows.split(",")):
            for precision in precisions:
                r = measure("spore", precision, args.repeats, args.paper_batch, window=window)
                step = r["batch"] / r["train_images_per_s"]["median"]  # seconds
                steps = choose_steps(r["tile"], r["batch"])
                sweep.append({"window": window, "tile": r["tile"], "precision": precision,
                              "step_seconds": step,
                              "us_per_tile_pixel": 1e6 * step / (r["batch"] * r["tile"] ** 2),
                              "auto_steps": steps, "auto_minutes": steps * step / 60})
                keras.backend.clear_session()
        result["spore_tile_sweep"] = sweep
        print("spore model train step by training window (batch 8), and the default budget "
              "(steps='auto': unet.run.choose_steps) in minutes of train steps alone:")
        print(table([(r["window"], r["tile"], r["precision"], f"{1000 * r['step_seconds']:.0f}",
                      f"{r['us_per_tile_pixel']:.3f}", r["auto_steps"], f"{r['auto_minutes']:.1f}")
                     for r in sweep], ("window", "tile", "precision", "ms/step",
                                       "us/tile px", "auto steps", "auto min")))
    if not args.no_xla:
        xla = []
        for precision in precisions:
            plain = measure("spore", precision, args.repeats, args.paper_batch)
            keras.backend.clear_session()
            compiled = measure("spore", precision, args.repeats, args.paper_batch, jit=True)
            keras.backend.clear_session()
            xla.append({"precision": precision,
                        "default_images_per_s": plain["train_images_per_s"],
                        "xla_images_per_s": compiled["train_images_per_s"],
                        "ratio": compiled["train_images_per_s"]["median"]
                        / plain["train_images_per_s"]["median"]})
        result["spore_xla"] = xla
        print("spore model train step, Keras default vs XLA (jit_compile=True), images/s:")
        print(table([(r["precision"], fmt(r["default_images_per_s"], 1),
                      fmt(r["xla_images_per_s"], 1), f"{r['ratio']:.2f}") for r in xla],
                    ("precision", "default", "XLA", "XLA / default")))
    if "fp32" in precisions and "bf16" in precisions:
        for name in args.models.split(","):
            by = {r["precision"]: r for r in result["rows"] if r["model"] == name}
            speedup = (by["bf16"]["train_images_per_s"]["median"]
                       / by["fp32"]["train_images_per_s"]["median"])
            result[f"{name} train speed-up bf16/fp32"] = speedup
            print(f"{name}: train step bf16 / fp32 = {speedup:.2f}x")
    write_result("model_speed", result)
    return result


if __name__ == "__main__":
    main()
