"""evaluate --report: the figures and tables a person looks at."""

import csv

import pytest
from PIL import Image

from unet.report import write_report
from unet.run import load_run


def test_report_writes_figures_and_per_image_rows(tmp_path, trained_run, sample_dir):
    model, config = load_run(trained_run[0])
    out = tmp_path / "report"
    path = write_report(model, sample_dir / "test", out, threshold=config.threshold,
                        scores={"dice": 0.5, "per_image": []})
    assert path == out / "report.md"
    for name in ("examples.png", "threshold.png", "sizes.png"):
        width, height = Image.open(out / name).size
        assert width > 300 and height > 200, name
    rows = list(csv.DictReader(open(out / "per_image.csv")))
    assert len(rows) == 4 and all(0 <= float(r["dice"]) <= 1 for r in rows)
    assert all(r["count_true"] != "" for r in rows)  # the sample has counts.csv
    text = path.read_text()
    assert "examples.png" in text and '"dice": 0.5' in text
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_report(model, sample_dir / "test", out)
    write_report(model, sample_dir / "test", out, overwrite=True)


def test_report_counts_the_spores_as_evaluate_does(tmp_path, trained_run, sample_dir):
    from conftest import copy_run

    from unet.evaluate import evaluate

    run = copy_run(trained_run[0], tmp_path / "run", min_area=200, split_h=3.0)
    model, _ = load_run(run)  # counts with the run's post-processing, as evaluate does
    folder = sample_dir / "test"
    result = evaluate(model, folder)
    path = write_report(model, folder, tmp_path / "report", scores=result)
    rows = list(csv.DictReader(open(path.parent / "per_image.csv")))
    assert [int(r["count_pred"]) for r in rows] == [r["count_pred"] for r in result["per_image"]]
    assert "split height 3 px, smallest spore 200 px." in path.read_text()
