"""The parts of model v2 that need no training data: the EfficientNet-Lite0 port, portable
packs, the coherent read-out, and the colour measures of ``coloi eval``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from coloi.evaluate import colour_errors, group_of
from tests.conftest import natural_photo

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")


def torch_layout_state(model: keras.Model, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random tensors named and shaped as EfficientNet-Lite0's PyTorch state_dict."""
    from coloi.training.encoders import LITE0_BLOCKS

    def bn(prefix: str, channels: int) -> dict[str, np.ndarray]:
        return {
            f"{prefix}.weight": rng.uniform(0.5, 1.5, channels).astype("float32"),
            f"{prefix}.bias": rng.normal(0, 0.1, channels).astype("float32"),
            f"{prefix}.running_mean": rng.normal(0, 0.1, channels).astype("float32"),
            f"{prefix}.running_var": rng.uniform(0.5, 1.5, channels).astype("float32"),
        }

    def conv(name: str, out: int, inp: int, k: int) -> dict[str, np.ndarray]:
        scale = (inp * k * k) ** -0.5  # keeps activations in range through 16 blocks
        return {f"{name}.weight": rng.normal(0, scale, (out, inp, k, k)).astype("float32")}

    state = {**conv("_conv_stem", 32, 3, 3), **bn("_bn0", 32)}
    width = 32
    for i, (k, _, e, out) in enumerate(LITE0_BLOCKS):
        mid = width * e
        if e != 1:
            state |= conv(f"_blocks.{i}._expand_conv", mid, width, 1) | bn(f"_blocks.{i}._bn0", mid)
        state[f"_blocks.{i}._depthwise_conv.weight"] = rng.normal(0, 1 / k, (mid, 1, k, k)).astype(
            "float32"
        )
        state |= bn(f"_blocks.{i}._bn1", mid) | conv(f"_blocks.{i}._project_conv", out, mid, 1)
        state |= bn(f"_blocks.{i}._bn2", out)
        width = out
    return state


def test_grey_lite0_equals_the_rgb_network_fed_grey(tmp_path: Path) -> None:
    from coloi.training import encoders

    rgb = encoders.efficientnet_lite0(3)
    state = torch_layout_state(rgb, np.random.default_rng(0))
    encoders.load_lite0_weights(rgb, state)
    # The compact copy that travels to a GPU machine reads back to the same tensors.
    encoders.save_npz(state, tmp_path / "lite0.npz", dtype="float32")
    grey = encoders.efficientnet_lite0(1)
    encoders.load_lite0_weights(grey, encoders.load_state_dict(tmp_path / "lite0.npz"))

    image = np.random.default_rng(1).uniform(-1, 1, (1, 64, 64, 1)).astype("float32")
    expected = np.asarray(rgb(np.repeat(image, 3, axis=3)))
    got = np.asarray(grey(image))
    assert got.shape == (1, 2, 2, 320)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())
    # A wrong mapping (say, depthwise kernels transposed the other way) would not match.
    assert np.abs(expected).max() > 0.1


def test_coherent_readout_in_keras_matches_numpy() -> None:
    from coloi.training.network import AnnealedMean, ReadOut

    rng = np.random.default_rng(2)
    bins = rng.uniform(-60, 60, (30, 2)).astype("float32")
    prior = rng.dirichlet(np.ones(30)).astype("float32")
    logits = rng.normal(0, 2, (1, 4, 4, 30)).astype("float32")
    readout = ReadOut(0.8, 0.25, 1.1, 0.5)
    layer = AnnealedMean(
        bins * readout.chroma_gain,
        readout.temperature,
        readout.logit_bias(prior),
        readout.coherent_gain,
    )
    np.testing.assert_allclose(
        np.asarray(layer(logits)), readout.apply(logits, bins, prior), atol=1e-3
    )
    # A split distribution (two opposite colours) stays muted; a coherent one gains colour.
    two = np.array([[50.0, 0.0], [-50.0, 0.0]], "float32")
    split = ReadOut(coherent_gain=1.0).apply(np.zeros((1, 2)), two, np.full(2, 0.5))
    coherent = ReadOut(coherent_gain=1.0).apply(np.array([[3.0, 0.0]]), two, np.full(2, 0.5))
    plain = ReadOut().apply(np.array([[3.0, 0.0]]), two, np.full(2, 0.5))
    assert np.abs(split).max() < 1e-3
    assert coherent[0, 0] > plain[0, 0] * 1.5


def test_chroma_knee_in_keras_matches_numpy_and_spares_near_grey() -> None:
    from coloi.training.network import AnnealedMean, ReadOut

    rng = np.random.default_rng(3)
    bins = rng.uniform(-80, 80, (30, 2)).astype("float32")
    prior = rng.dirichlet(np.ones(30)).astype("float32")
    logits = rng.normal(0, 3, (1, 8, 8, 30)).astype("float32")
    readout = ReadOut(knee=20.0, knee_gain=1.6)
    layer = AnnealedMean(bins, 1.0, readout.logit_bias(prior), 0.0, readout.knee, readout.knee_gain)
    np.testing.assert_allclose(
        np.asarray(layer(logits)), readout.apply(logits, bins, prior), atol=1e-3
    )
    plain = ReadOut().apply(logits, bins, prior)
    kneed = readout.apply(logits, bins, prior)
    before, after = np.hypot(*np.moveaxis(plain, -1, 0)), np.hypot(*np.moveaxis(kneed, -1, 0))
    low = before < 20
    assert low.any() and (~low).any()
    np.testing.assert_allclose(after[low], before[low], atol=1e-4)  # near grey: untouched
    # Above the knee the excess grows by the gain (up to the + 1 that keeps int8 division
    # safe), and the hue stays.
    expected = (
        20
        + 1.6 * (before[~low] - 20)
        + 0.6 * (before[~low] - 20) * (1 / (before[~low] + 1) - 1 / before[~low]) * before[~low]
    )
    np.testing.assert_allclose(after[~low], expected, rtol=1e-3)
    cosine = (plain * kneed).sum(-1)[~low] / (before[~low] * after[~low])
    assert cosine.min() > 0.9999


def test_colour_errors_count_false_colour_and_wrong_hue() -> None:
    truth = np.zeros((10, 10, 2), "float32")
    truth[:5] = (40.0, 0.0)  # top half red-ish, bottom half neutral
    output = np.zeros_like(truth)
    output[:5, :5] = (40.0, 0.0)  # right hue
    output[:5, 5:] = (-40.0, 0.0)  # opposite hue
    output[5:, :3] = (0.0, 30.0)  # colour where the truth is neutral
    false_colour, wrong, both = colour_errors(output, truth)
    assert false_colour == pytest.approx(0.15)
    assert (wrong, both) == (25, 50)


def test_group_of() -> None:
    root = Path("/photos")
    assert group_of(root / "a" / "intel_1.jpg", root, "folder") == "a"
    assert group_of(root / "intel_1.jpg", root, "folder") == "."
    assert group_of(root / "a" / "intel_1.jpg", root, "prefix") == "intel"
    assert group_of(root / "x.jpg", root, "prefix") == "(no prefix)"


@pytest.mark.slow
def test_train_on_a_portable_pack_with_lite0_and_a_time_budget(cli, tmp_path: Path) -> None:
    from coloi.training import data, encoders

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(6):
        cv2.imwrite(str(photos / f"src{i % 2}_{i}.jpg"), natural_photo(80, 96, seed=i))
    pack = tmp_path / "train.pack.npz"
    assert data.write_portable_pack(photos, pack, side=64) > 0
    restored = data.read_portable_pack(pack)
    assert restored.shape == (6, 64, 64, 3)
    original = data.build_pack(photos, 64)
    assert np.abs(restored.astype(int) - original).mean() < 6  # lossy, but close

    weights = tmp_path / "lite0.npz"
    encoders.save_npz(
        torch_layout_state(encoders.efficientnet_lite0(3), np.random.default_rng(3)), weights
    )
    run = tmp_path / "run"
    result = cli(
        "train",
        pack,
        run,
        "--val",
        photos,
        "--encoder",
        "efficientnet-lite0",
        "--pretrained",
        weights,
        "--pack-side",
        "64",
        "--size",
        "64",
        "--batch-size",
        "3",
        "--width",
        "8",
        "--epochs",
        "3",
        "--time-budget",
        "5",
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    saved = json.loads((run / "run.json").read_text())
    assert saved["config"]["encoder"] == "efficientnet-lite0"
    assert (run / "best.weights.h5").exists()
    # The learning rate follows a cosine over the epochs that fit (here: --epochs caps them).
    with (run / "log.csv").open() as handle:
        rates = [float(row["learning_rate"]) for row in csv.DictReader(handle)]
    assert len(rates) == 3 and rates[0] > rates[1] > rates[2]

    wrong = cli("train", pack, tmp_path / "run2", "--encoder", "resnet")
    assert wrong.exit_code == 1 and "--encoder resnet" in wrong.stderr


def test_readout_is_chosen_on_other_sources_than_it_is_judged_on() -> None:
    from coloi.training.tune import split_by_source

    files = [Path(f"/val/{source}_{i}.jpg") for source in ("a", "b", "c", "d") for i in range(3)]
    tune, judge = split_by_source([*files, Path("/val/x.jpg"), Path("/val/y.jpg")])
    tuned = {group_of(p, p.parent, "prefix") for p in tune}
    judged = {group_of(p, p.parent, "prefix") for p in judge}
    assert tuned - {"(no prefix)"} == {"a", "c"} and judged - {"(no prefix)"} == {"b", "d"}
    assert len(tune) == len(judge) == 7


def test_readout_choice_puts_honesty_before_colour() -> None:
    from coloi.training.network import ReadOut
    from coloi.training.tune import choose

    def row(psnr: float, colour: float, false: float) -> dict[str, float]:
        return {"psnr": psnr, "colourfulness_ratio": colour, "false_colour": false}

    plain, vivid, garish = ReadOut(), ReadOut(chroma_gain=1.1), ReadOut(chroma_gain=1.5)
    table = {
        plain: row(25.0, 0.80, 0.01),
        vivid: row(24.6, 0.88, 0.02),
        garish: row(23.0, 1.10, 0.06),
    }
    # None is both colourful enough and honest: the best PSNR among the honest ones.
    assert choose(table, colour_floor=0.9) == plain
    # Colourful enough and honest: the best PSNR among those.
    assert choose(table, colour_floor=0.85) == vivid
