"""Train ``repair``'s defect detector, a small fully convolutional network, and ship it as
models/repair.tflite with its sha256 in models/manifest.json.

    nice -n 10 python bench/train_repair.py ../shared/data/train --photos 7000 --minutes 65 \
        --hard-share 0.3 --zoom-share 0.2 --save run.weights.h5 --every 15 --out candidate.tflite

(``--out`` elsewhere than models/repair.tflite leaves the shipped model and the manifest alone;
``--init W --minutes 0 --out X`` only converts saved weights; bench/repair_dev.py compares
candidates and thresholds on the development generator.)

The photos are grey copies of the *training* set (``--zoom-share`` of them enlarged 1.2-2.5
times, as the photo's own detail is on a larger scan), cut into crops and damaged with the
development generator (tests/damage.py, ``old_print_damage``); a sixth of the crops stay
undamaged, so that the network also learns what to leave alone, and ``--hard-share`` of the
crops are placed where the photo has the most thin structure of its own (poles, wires,
window bars, hair, text), the things most easily taken for scratches. The target of each pixel is
whether the damage changed it by more than 2 L* (the benchmark's definition of a defect
pixel); pixels the damage changed a lot weigh more, because they cost the most PSNR when
missed. The benchmark (bench/repair_bench.py) measures on the validation photos with a
different generator.

The network sees the photo's features (plugins/repair.py ``features``: the grey level and
top-hat / black-hat responses at three widths, cheap in OpenCV) and returns a logit per pixel:
a 3x3 stem at full resolution, four dilated 3x3 convolutions at half resolution (dilations 1,
2, 4, 8: a field of view of about 70 pixels, enough to tell a long thin scratch from an edge
or texture), brought back to full resolution by depth-to-space (which LiteRT runs on any input
size, unlike resizing), and a 1x1 read-out that joins both. About 4 k multiply-adds a pixel.
Crops are 96 pixels square; quarter turns and mirroring multiply them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from coloi.color import lightness  # noqa: E402
from coloi.models import file_sha256  # noqa: E402
from coloi_plugins.repair import FEATURES, features  # noqa: E402
from tests.damage import old_print_damage  # noqa: E402

MODEL = REPO / "models" / "repair.tflite"
MANIFEST = REPO / "models" / "manifest.json"
CROP = 96
DEFECT_LSTAR = 2.0


def _thin_structure(grey: np.ndarray) -> np.ndarray:
    """How much thin bright or dark structure (up to about 4 pixels wide: poles, wires, window
    bars, hair, text) the photo has round each pixel: the sum of its top-hat and black-hat."""
    levels = cv2.convertScaleAbs(grey, alpha=255.0)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (9, 9))
    thin = cv2.morphologyEx(levels, cv2.MORPH_TOPHAT, kernel).astype(np.float32)
    thin += cv2.morphologyEx(levels, cv2.MORPH_BLACKHAT, kernel)
    return thin


def _corner(
    shape: tuple[int, ...], rng: np.random.Generator, thin: np.ndarray | None
) -> tuple[int, int]:
    """A crop's top left corner: at random, or (given ``thin``) the one of eight random ones
    whose crop holds the most thin structure of the photo's own. Those crops are the hard
    cases: the photo's own lines, which the detector must leave alone."""
    tops = rng.integers(0, shape[0] - CROP + 1, 8 if thin is not None else 1)
    lefts = rng.integers(0, shape[1] - CROP + 1, len(tops))
    if thin is None:
        return int(tops[0]), int(lefts[0])
    scores = [thin[t : t + CROP, x : x + CROP].sum() for t, x in zip(tops, lefts, strict=True)]
    best = int(np.argmax(scores))
    return int(tops[best]), int(lefts[best])


def crops(
    folder: Path,
    photos: int,
    per_photo: int,
    seed: int,
    zoom_share: float = 0.0,
    hard_share: float = 0.0,
) -> tuple[np.ndarray, ...]:
    """(features, target, weight) crops: (N, CROP, CROP, FEATURES) float16, (N, CROP, CROP)
    uint8 and float16."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    rng = np.random.default_rng(seed)
    files = [files[i] for i in rng.choice(len(files), min(photos, len(files)), replace=False)]
    xs, ys, ws = [], [], []
    for index, path in enumerate(files):
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if grey is None or min(grey.shape) < CROP:
            continue
        grey = grey.astype(np.float32) / 255.0
        if zoom_share > 0 and rng.random() < zoom_share:
            # The training photos are small (256 pixels); scans are larger, so their own thin
            # things (poles, wires, tripod legs) are several pixels wide, like scratches.
            zoom = rng.uniform(1.2, 2.5)
            grey = cv2.resize(grey, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
            grey = np.clip(grey, 0.0, 1.0)
        thin = _thin_structure(grey) if hard_share > 0 else None
        for repeat in range(per_photo):
            top, left = _corner(grey.shape, rng, thin if rng.random() < hard_share else None)
            crop = grey[top : top + CROP, left : left + CROP]
            amount = 0.0 if rng.random() < 1 / 6 else rng.uniform(0.3, 2.0)
            damaged, clean = old_print_damage(crop, seed * 1_000_003 + index * 17 + repeat, amount)
            error = np.abs(lightness(damaged) - lightness(clean))
            xs.append(features(damaged).astype(np.float16))
            ys.append((error > DEFECT_LSTAR).astype(np.uint8))
            ws.append((1.0 + np.minimum(error, 40.0) / 10.0).astype(np.float16))
    return np.stack(xs), np.stack(ys), np.stack(ws)


def network(stem: int = 12, half: int = 16, quarter: int = 32):  # type: ignore[no-untyped-def]
    import keras
    import tensorflow as tf
    from keras import layers

    def conv(x, channels, size=3, **options):  # type: ignore[no-untyped-def]
        return layers.Conv2D(channels, size, padding="same", activation="relu", **options)(x)

    def up(x, channels):  # type: ignore[no-untyped-def]
        # Depth-to-space runs on any input size in LiteRT, unlike resizing.
        x = conv(x, 4 * channels, 1)
        return layers.Lambda(lambda t: tf.nn.depth_to_space(t, 2))(x)

    inputs = keras.Input((None, None, FEATURES), name="features")
    full = conv(inputs, stem)
    halved = conv(conv(full, half, strides=2), half)
    quartered = conv(halved, quarter, strides=2)
    for rate in (1, 2, 4, 8):
        quartered = conv(quartered, quarter, dilation_rate=rate)
    halved = conv(layers.Concatenate()([halved, up(quartered, 8)]), half)
    joined = conv(layers.Concatenate()([full, up(halved, 8)]), 16, 1)
    logit = layers.Conv2D(1, 1, name="logit")(joined)
    return keras.Model(inputs, logit)


def convert(  # type: ignore[no-untyped-def]
    model, sample: np.ndarray, max_gap: float = 0.25
) -> tuple[bytes, str, float]:
    """The model for LiteRT: int8 (weights and activations, calibrated on ``sample``) when its
    logits stay within ``max_gap`` of the float model's on average, else float32. Returns the
    bytes, which it is and the mean gap."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    float_model = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None].astype(np.float32)] for x in sample)
    converter.inference_input_type = tf.float32
    converter.inference_output_type = tf.float32
    int8_model = converter.convert()
    interpreter = Interpreter(model_content=int8_model)
    index = interpreter.get_input_details()[0]["index"]
    gaps = []
    for x in sample[:32]:
        interpreter.resize_tensor_input(index, [1, *x.shape])
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, x[None].astype(np.float32))
        interpreter.invoke()
        out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        gaps.append(float(np.abs(out - model(x[None].astype(np.float32)).numpy()).mean()))
    gap = float(np.mean(gaps))
    if gap < max_gap:
        return int8_model, "int8", gap
    return float_model, "float32", gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="training photos")
    parser.add_argument("--photos", type=int, default=2600)
    parser.add_argument("--per-photo", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=15.0, help="training time budget")
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=3e-3, help="starting learning rate")
    parser.add_argument(
        "--zoom-share", type=float, default=0.0, help="share of photos enlarged 1.2-2.5 times"
    )
    parser.add_argument(
        "--hard-share",
        type=float,
        default=0.0,
        help="share of crops placed where the photo has the most thin structure of its own",
    )
    parser.add_argument("--init", type=Path, help="start from these weights (.weights.h5)")
    parser.add_argument(
        "--save",
        type=Path,
        help="also keep the weights here (.weights.h5), and every --every minutes a copy "
        "named after the minute (NAME-m30.weights.h5)",
    )
    parser.add_argument("--every", type=float, default=0.0, help="minutes between checkpoints")
    parser.add_argument(
        "--max-gap",
        type=float,
        default=0.25,
        help="the int8 model is kept when its logits are this close to the float model's on "
        "average; else float32 (several times slower)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=MODEL,
        help="the LiteRT model to write; the manifest is only updated for the shipped one",
    )
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    started = time.perf_counter()
    x, y, w = crops(
        args.folder, args.photos, args.per_photo, args.seed, args.zoom_share, args.hard_share
    )
    print(
        f"{len(x)} crops in {time.perf_counter() - started:.0f} s; "
        f"defect pixels {y.mean() * 100:.2f}%",
        flush=True,
    )
    keras.utils.set_random_seed(args.seed)
    model = network()
    if args.init:
        model.load_weights(str(args.init))

    def augment(xb, yb, wb):  # type: ignore[no-untyped-def]
        # Square top-hats commute with quarter turns and mirroring: the features stay true.
        stack = tf.concat(
            [
                tf.cast(xb, tf.float32),
                tf.cast(yb, tf.float32)[..., None],
                tf.cast(wb, tf.float32)[..., None],
            ],
            -1,
        )
        stack = tf.image.rot90(stack, tf.random.uniform([], 0, 4, tf.int32))
        stack = tf.image.random_flip_left_right(stack)
        return stack[..., :FEATURES], stack[..., FEATURES : FEATURES + 1], stack[..., -1]

    data = (
        tf.data.Dataset.from_tensor_slices((x, y, w))
        .shuffle(len(x), seed=args.seed)
        .repeat()
        .map(augment)
        .batch(args.batch)
        .prefetch(2)
    )
    optimiser = keras.optimizers.Adam(args.lr)
    loss = keras.losses.BinaryCrossentropy(from_logits=True)

    @tf.function
    def step(xb, yb, wb):  # type: ignore[no-untyped-def]
        with tf.GradientTape() as tape:
            value = loss(yb, model(xb, training=True), sample_weight=wb)
        grads = tape.gradient(value, model.trainable_variables)
        optimiser.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return value

    budget = args.minutes * 60
    train_start = time.perf_counter()
    steps, saved, running = 0, 0, []
    for xb, yb, wb in data:
        elapsed = time.perf_counter() - train_start
        if elapsed > budget:
            break
        # A cosine learning-rate decay over the time budget.
        optimiser.learning_rate.assign(args.lr * 0.5 * (1 + np.cos(np.pi * elapsed / budget)))
        running.append(float(step(xb, yb, wb)))
        steps += 1
        if args.save and args.every and elapsed > args.every * 60 * (saved + 1):
            saved += 1
            stem = args.save.name.removesuffix(".weights.h5")
            checkpoint = args.save.with_name(f"{stem}-m{round(saved * args.every)}.weights.h5")
            model.save_weights(str(checkpoint))
            print(f"saved {checkpoint.name} at step {steps}", flush=True)
        if steps % 200 == 0:
            print(f"step {steps} {elapsed:.0f} s loss {np.mean(running[-200:]):.4f}", flush=True)
    print(f"{steps} steps of {args.batch}", flush=True)

    record = {
        "script": "bench/train_repair.py",
        "photos": args.photos,
        "crops": len(x),
        "crop": CROP,
        "steps": steps,
        "batch": args.batch,
        "minutes": args.minutes,
        "seed": args.seed,
        "learning_rate": args.lr,
        "zoom_share": args.zoom_share,
        "hard_share": args.hard_share,
        "init": args.init.name if args.init else None,
        "damage": "tests/damage.py old_print_damage",
        "last_loss": round(float(np.mean(running[-200:])), 4) if running else None,
    }
    if args.save:
        model.save_weights(str(args.save))
        _record_path(args.save).write_text(json.dumps(record, indent=2) + "\n")
    if not steps and args.init and _record_path(args.init).exists():
        # Only converting saved weights: the model is the one their own run trained.
        record = json.loads(_record_path(args.init).read_text())
        record["converted_from"] = args.init.name
    picked = np.random.default_rng(args.seed).choice(len(x), min(200, len(x)), replace=False)
    content, kind, gap = convert(model, x[picked], args.max_gap)
    args.out.write_bytes(content)
    print(f"{kind} model, mean |logit - float logit| of int8 {gap:.3f}", flush=True)
    record.update(type=kind, int8_mean_abs_logit_gap=round(gap, 4))
    if args.out.resolve() != MODEL:
        print(f"wrote {args.out}")
        return
    manifest = json.loads(MANIFEST.read_text())
    entries = [e for e in manifest["models"] if e.get("name") != "repair"]
    entries.append(
        {
            "name": "repair",
            "format": "tflite",
            "file": MODEL.name,
            "sha256": file_sha256(MODEL),
            # The training crop: the network is fully convolutional and runs at any size that
            # is a multiple of 4 (the manifest asks every model for a positive input size).
            "input_size": CROP,
            "purpose": "defect detector of the repair preprocess step (trained on "
            f"{CROP} px crops; runs at any size that is a multiple of 4)",
            "training": record,
        }
    )
    manifest["models"] = entries
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {MODEL.relative_to(REPO)} and its manifest entry")


def _record_path(weights: Path) -> Path:
    """Where the record of the run that trained ``weights`` (NAME.weights.h5) is kept."""
    return weights.with_name(weights.name.removesuffix(".weights.h5") + ".json")


if __name__ == "__main__":
    main()
