"""What another early-stopping patience would have done to runs already trained.

    python benchmarks/patience.py RUN [RUN ...] [--patience 500,700,1000,1500,2000,3000]

Nothing is trained. A run's ``history.csv`` holds the validation Dice that Keras'
``EarlyStopping`` read after every epoch; replaying its rule (stop once the score has not
risen for ``patience`` epochs) on those rows gives the step at which a run with another
``early_stopping_steps`` would have stopped, and the step of the network it would have
kept (the best validation Dice up to there, as the run's checkpoint keeps it).

The replay is exact while the other run would have been the same run: same data, seed
and config but for the patience. That holds up to where the shorter of the two
patiences stops it, as long as both patiences are at least the learning rate's
(``reduce_lr_steps``): ``train`` validates at an interval capped by the shorter of the
two (the runs of ``benchmarks/README.md`` matched their replays to the fourth digit). Where
the run's own early stopping ended it, a longer patience needs a training run to know what
follows; the table says ``beyond`` (and ``n/a`` for a patience shorter than the learning
rate's). Prints one table and writes
``benchmarks/results/patience.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import table, write_result

from unet.run import Config, read_history


def replay(val_dice, steps, patience):
    """``(stop step, kept step, kept val Dice, decided)`` of EarlyStopping's rule.

    ``decided`` is False when the history ends before the rule stops the run: then the
    run ended by its budget (or its own early stopping), and the stop step is its last.
    """
    best, kept, wait = -float("inf"), None, 0
    for value, step in zip(val_dice, steps):
        if value > best:
            best, kept, wait = float(value), int(step), 0
        else:
            wait += 1
            if wait >= patience:
                return int(step), kept, best, True
    return int(steps[-1]), kept, best, False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="trained run folders")
    parser.add_argument("--patience", default="500,700,1000,1500,2000,3000",
                        help="early_stopping_steps to replay, comma list")
    args = parser.parse_args(argv)
    patiences = [int(p) for p in args.patience.split(",")]

    rows, result = [], {}
    for run in args.runs:
        config = Config.load(run / "config.json", run=True)
        history = read_history(run / "history.csv")
        if "val_dice" not in history:
            raise SystemExit(f"{run} has no validation Dice in its history.csv.")
        steps = history["step"]
        own_stop, *_ = replay(history["val_dice"], steps,
                              config.patience(config.early_stopping_steps))
        ended_early = own_stop < config.steps
        entry = {"budget": config.steps, "steps_run": int(steps[-1]),
                 "early_stopping_steps": config.early_stopping_steps, "patience": {}}
        cells = []
        for p in patiences:
            stop, kept, best, decided = replay(history["val_dice"], steps, config.patience(p))
            replayed = None
            if p < config.reduce_lr_steps:
                cell = "n/a"  # not the same run: the validation interval may differ
            elif not decided and ended_early:
                cell = "beyond"  # the history ends before this patience decides
            else:
                replayed = {"stop": stop, "kept": kept, "val_dice": best}
                cell = f"{stop} / {kept} ({best:.3f})"
            entry["patience"][p] = replayed
            cells.append(cell)
        result[str(run)] = entry
        rows.append(("/".join(run.parts[-2:]), config.steps, int(steps[-1]), *cells))
    print(table(rows, ("run", "budget", "steps run",
                       *(f"{p}: stop / kept (val Dice)" for p in patiences))))
    write_result("patience", result)


if __name__ == "__main__":
    main()
