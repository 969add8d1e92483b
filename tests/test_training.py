"""``coloi train``, ``--resume``, ``coloi export`` and ``coloi eval`` end to end on a few tiny
photos the test makes (the real training data is not needed)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import pytest

from tests.conftest import natural_photo

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for i in range(12):
        cv2.imwrite(str(folder / f"p{i:02}.jpg"), natural_photo(80, 96, seed=i))
    return folder


def epochs_logged(run: Path) -> list[int]:
    with (run / "log.csv").open() as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def test_train_resume_export_and_use(cli, tmp_path: Path, photos: Path) -> None:
    run = tmp_path / "run"
    common = ["--size", "64", "--batch-size", "4", "--width", "8"]
    result = cli("train", photos, run, "--val", photos, "--epochs", "1", *common)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "epoch 1/1" in result.stdout
    assert epochs_logged(run) == [1]

    refused = cli("train", photos, run, "--epochs", "1", *common)
    assert refused.exit_code == 1 and "already there" in refused.stderr

    # --resume continues the same run (its settings come from run.json), to more epochs.
    config = json.loads((run / "run.json").read_text())
    config["config"]["epochs"] = 2
    (run / "run.json").write_text(json.dumps(config))
    resumed = cli("train", photos, run, "--resume")
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    assert "starting at epoch 2" in resumed.stdout
    assert epochs_logged(run) == [1, 2]

    models = tmp_path / "models"
    exported = cli(
        "export",
        run,
        models,
        "--calibration",
        photos,
        "--check",
        photos,
        "--temperature",
        "0.5",
        "--size",
        "64",
        "--name",
        "tiny",
    )
    assert exported.exit_code == 0, exported.stdout + exported.stderr
    manifest = json.loads((models / "manifest.json").read_text())["models"]
    assert [m["format"] for m in manifest] == ["keras", "tflite"]
    assert manifest[1]["int8_vs_float_mean_abs_ab"] < 5.0

    out = tmp_path / "out"
    for backend in ("tflite", "tf-gpu"):
        used = cli(
            "run", "-b", backend, "--model-dir", models, photos / "p00.jpg", "-o", out / backend
        )
        assert used.exit_code == 0, used.stderr
        assert cv2.imread(str(out / backend / "p00.jpg")).shape == (80, 96, 3)

    measured = cli(
        "eval",
        photos,
        "--model-dir",
        models,
        "-b",
        "tflite",
        "--json",
        "--sheet",
        tmp_path / "sheet.png",
    )
    assert measured.exit_code == 0, measured.stderr
    report = json.loads(measured.stdout)
    assert report["photos"] == 12
    assert set(report["coloi"]) == {
        "psnr",
        "auc",
        "colourfulness_ratio",
        "false_colour",
        "wrong_hue",
    }
    assert report["grey_baseline"]["colourfulness_ratio"] < 0.05
    assert report["grey_baseline"]["false_colour"] == 0.0  # grey paints no colour

    tree = tmp_path / "tree"
    for folder, names in (("a", ("p00.jpg", "p01.jpg")), ("b", ("p02.jpg",))):
        (tree / folder).mkdir(parents=True)
        for name in names:
            (tree / folder / name).write_bytes((photos / name).read_bytes())
    by_folder = cli("eval", tree, "--model-dir", models, "-b", "tflite", "--json", "--by", "folder")
    assert by_folder.exit_code == 0, by_folder.stderr
    groups = json.loads(by_folder.stdout)["groups"]
    assert {name: group["photos"] for name, group in groups.items()} == {"a": 2, "b": 1}
    assert cv2.imread(str(tmp_path / "sheet.png")) is not None


def test_resume_without_checkpoint_is_refused(cli, tmp_path: Path, photos: Path) -> None:
    result = cli("train", photos, tmp_path / "nothing", "--resume")
    assert result.exit_code == 1 and "no checkpoint" in result.stderr


def test_tune_encoder_trains_its_weights_and_keeps_its_batch_norm(
    cli, tmp_path: Path, photos: Path
) -> None:
    import keras
    import numpy as np

    from coloi.training.network import RebalancedBinLoss

    common = ["--size", "64", "--batch-size", "4", "--width", "8", "--epochs", "1"]
    refused = cli("train", photos, tmp_path / "both", "--tune-encoder", "--freeze-encoder", *common)
    assert refused.exit_code == 1 and "choose one" in refused.stderr

    statistics_kept = {}
    for mode in ("--tune-encoder", "--learning-rate=1e-3"):
        run = tmp_path / mode.strip("-").split("=")[0]
        result = cli("train", photos, run, mode, *common)
        assert result.exit_code == 0, result.stdout + result.stderr
        model = keras.saving.load_model(
            run / "checkpoint.keras", custom_objects={"RebalancedBinLoss": RebalancedBinLoss}
        )
        encoder = next(layer for layer in model.layers if isinstance(layer, keras.Model))
        norms = [
            layer for layer in encoder.layers if isinstance(layer, keras.layers.BatchNormalization)
        ]
        assert norms
        # Without pretrained weights the statistics start at mean 0, variance 1.
        statistics_kept[mode] = all(
            np.array_equal(layer.moving_mean.numpy(), np.zeros_like(layer.moving_mean.numpy()))
            for layer in norms
        )
        assert encoder.trainable_weights  # its convolutions are trained in both modes
    assert statistics_kept == {"--tune-encoder": True, "--learning-rate=1e-3": False}
