"""Export a training run as shipped models: the Keras model for ``tf-gpu`` and the int8 TFLite
model of the same network for ``tflite``, with their manifest entries.

The int8 model is calibrated on real photos and checked against the float model, since
full-integer quantisation can break parts of a network (e.g. bilinear resizing).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from coloi.models import MANIFEST, file_sha256
from coloi.training import data, network
from coloi.training.network import ReadOut
from coloi.training.train import BEST_WEIGHTS, CONFIG, LOG


def load_logits_network(run_dir: Path) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """The run's best weights in a fresh network, its colour bins and its saved run record."""
    saved = json.loads((run_dir / CONFIG).read_text())
    bins = np.asarray(saved["bins"], dtype="float32")
    model = network.build_network(
        len(bins), None, saved["config"]["width"], saved["config"].get("encoder", "mobilenet")
    )
    model.load_weights(run_dir / BEST_WEIGHTS)
    return model, bins, saved


def calibration_inputs(folder: Path, size: int, count: int) -> list[np.ndarray]:
    """L* inputs (1, size, size, 1) of up to ``count`` photos, spread across the folder."""
    files = data.photo_files(folder)
    step = max(1, len(files) // count)
    inputs = []
    for path in files[::step][:count]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        small = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA)
        lightness, _ = data.network_pair(small)
        inputs.append(lightness[None].astype(np.float32))
    return inputs


MAX_INT8_GAP = 1.5  # mean |delta a*b*| allowed between the int8 and the float model


def convert_int8(model: Any, size: int, calibration: list[np.ndarray] | None) -> bytes:
    """int8 TFLite of ``model`` at a fixed size, float input and output.

    With ``calibration`` photos: full-integer (static) quantisation, every activation's range
    fixed from those photos. Without: int8 weights, with activations quantised to int8 at run
    time from each photo's own range (XNNPACK's dynamically quantised kernels).
    """
    import tempfile

    import keras
    import tensorflow as tf

    fixed = keras.Model(*_fixed_size(model, size))

    def representative() -> Iterator[list[np.ndarray]]:
        for sample in calibration or []:
            yield [sample]

    with tempfile.TemporaryDirectory() as saved:
        fixed.export(saved, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if calibration is not None:
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.float32
            converter.inference_output_type = tf.float32
        result: bytes = converter.convert()
    return result


def _fixed_size(model: Any, size: int) -> tuple[Any, Any]:
    """The model's graph re-applied to an input of fixed shape (1, size, size, 1)."""
    import keras

    lightness = keras.Input((size, size, 1), batch_size=1, name="lightness")
    return lightness, model(lightness)


def int8_gap(model: Any, tflite_path: Path, inputs: list[np.ndarray]) -> float:
    """Mean |delta a*b*| between the float Keras model and the int8 TFLite model."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path))
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]["index"]
    gaps = []
    for sample in inputs:
        interpreter.set_tensor(source, sample)
        interpreter.invoke()
        quantised = interpreter.get_tensor(target)
        gaps.append(float(np.abs(np.asarray(model(sample)) - quantised).mean()))
    return float(np.mean(gaps))


def export(
    run_dir: Path,
    model_dir: Path,
    name: str,
    readout: ReadOut | None,
    size: int,
    calibration_dir: Path,
    check_dir: Path,
    calibration_count: int = 300,
    colour_floor: float = 0.9,
    say: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Write ``name.keras`` and ``name-int8.tflite`` into ``model_dir`` and list them first in
    its manifest (replacing earlier entries of the same names). Returns the new entries.

    With ``readout`` None it is chosen by :func:`coloi.training.tune.choose` on the photos of
    every other source in ``check_dir`` and then measured on the other sources, unseen by the
    choice (:func:`coloi.training.tune.split_by_source`).
    """
    from coloi.training import tune

    logits, bins, saved = load_logits_network(run_dir)
    prior = np.asarray(saved["prior"], dtype="float32")
    sweep_rows = None
    judged = None
    if readout is None:
        tuning, judging = tune.split_by_source(data.photo_files(check_dir))
        say(
            f"choosing the read-out on {len(tuning)} photos of {check_dir} "
            f"(colourfulness ratio >= {colour_floor}, false colour <= "
            f"{tune.MAX_FALSE_COLOUR:.1%})"
        )
        table = tune.sweep(logits, bins, prior, tuning, size=size)
        readout = tune.choose(table, colour_floor)
        sweep_rows = [{**asdict(r), **s} for r, s in table.items()]
        say(f"read-out {readout}: {table[readout]}")
        if judging:
            judged = tune.sweep(logits, bins, prior, judging, [readout], size=size)[readout]
            say(f"on the {len(judging)} photos of the other sources: {judged}")
    model = network.inference_model(logits, bins, readout, prior)
    model_dir.mkdir(parents=True, exist_ok=True)
    keras_path = model_dir / f"{name}.keras"
    model.save(keras_path)
    say(f"wrote {keras_path}")

    calibration = calibration_inputs(calibration_dir, size, calibration_count)
    tflite_path = model_dir / f"{name}-int8.tflite"
    check = calibration_inputs(check_dir, size, 100)
    tflite_path.write_bytes(convert_int8(model, size, calibration))
    gaps = {"static": int8_gap(model, tflite_path, check)}
    say(
        f"wrote {tflite_path} (static int8, calibrated on {len(calibration)} photos): "
        f"int8 vs float mean |delta ab| = {gaps['static']:.3f}"
    )
    quantisation = "static"
    if gaps["static"] > MAX_INT8_GAP:
        # Static ranges were too coarse for this network: fall back to run-time ranges.
        tflite_path.write_bytes(convert_int8(model, size, None))
        gaps["dynamic"] = int8_gap(model, tflite_path, check)
        quantisation = "dynamic"
        say(
            f"static gap over {MAX_INT8_GAP}: wrote {tflite_path} with dynamic int8 "
            f"activations: mean |delta ab| = {gaps['dynamic']:.3f}"
        )
    gap = gaps[quantisation]

    log_rows = (run_dir / LOG).read_text().strip().splitlines()
    training = {
        "run": run_dir.name,
        "config": saved["config"],
        "colour_bins": len(bins),
        "epochs": len(log_rows) - 1,
        "readout": asdict(readout),
        "readout_sweep_on_half_of_sources": sweep_rows,
        "readout_on_other_sources": judged,
        "last_log_row": dict(zip(log_rows[0].split(","), log_rows[-1].split(","), strict=False)),
    }
    entries = [
        {
            "name": name,
            "format": "keras",
            "file": keras_path.name,
            "sha256": file_sha256(keras_path),
            "input_size": size,
            "training": training,
        },
        {
            "name": f"{name}-int8",
            "format": "tflite",
            "file": tflite_path.name,
            "sha256": file_sha256(tflite_path),
            "input_size": size,
            "training": training,
            "quantisation": quantisation,
            "int8_vs_float_mean_abs_ab": round(gap, 4),
            "int8_vs_float_mean_abs_ab_tried": {k: round(v, 4) for k, v in gaps.items()},
        },
    ]
    manifest_path = model_dir / MANIFEST
    old = json.loads(manifest_path.read_text())["models"] if manifest_path.exists() else []
    kept = [e for e in old if e.get("name") not in {name, f"{name}-int8"}]
    manifest_path.write_text(json.dumps({"models": entries + kept}, indent=2) + "\n")
    return entries
