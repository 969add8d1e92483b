"""A training run: data, network, loss, checkpoints, resume and a log kept with the model."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from coloi.training import data, network

CHECKPOINT = "checkpoint.keras"
BEST_WEIGHTS = "best.weights.h5"
LOG = "log.csv"
CONFIG = "run.json"


@dataclass
class TrainConfig:
    train_dir: str
    val_dir: str | None
    size: int = 128
    batch_size: int = 32
    epochs: int = 40
    learning_rate: float = 1e-3
    pretrained: str | None = None
    width: int = 96
    min_crop: int = 96
    cache_dir: str | None = None
    seed: int = 0
    rebalance: float = 0.5
    init_weights: str | None = None
    encoder: str = "mobilenet"
    pack_side: int = data.PACK_SIDE
    workers: int = 1
    # With a time budget, the learning rate follows a cosine over as many epochs as fit in it
    # (measured as the run goes), and ``epochs`` is only an upper bound.
    time_budget_min: float | None = None
    # A frozen ImageNet encoder (batch norm in inference mode too) keeps its general features
    # instead of memorising a small training set; only the decoder learns.
    freeze_encoder: bool = False
    # Fine-tuning: the encoder's weights learn (at the run's low learning rate) while its batch
    # norm keeps the ImageNet statistics.
    tune_encoder: bool = False
    weight_decay: float = 0.0


def _pack(source: str, cache_dir: str | None, name: str, side: int) -> np.ndarray:
    if source.endswith(data.PORTABLE_SUFFIX):
        return data.read_portable_pack(Path(source))
    cache = Path(cache_dir) / f"{name}_{side}.npy" if cache_dir else None
    return data.load_pack(Path(source), cache, side)


class TimeBudget(keras.callbacks.Callback):
    """Cosine learning rate over the epochs that fit in ``minutes``; stops when they are done.

    Epoch times (validation and checkpoint included) are measured between epoch starts; the
    first, which includes compilation, is left out of the estimate once there are others.
    """

    def __init__(
        self, minutes: float, learning_rate: float, max_epochs: int, say: Callable[[str], None]
    ) -> None:
        super().__init__()
        self.seconds, self.peak, self.max_epochs, self.say = (
            minutes * 60.0,
            learning_rate,
            max_epochs,
            say,
        )
        self.started = time.monotonic()
        self.starts: list[float] = []

    def _typical_epoch(self, now: float) -> float:
        durations = np.diff([*self.starts, now])
        return float(np.median(durations[1:] if len(durations) > 1 else durations))

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        now = time.monotonic()
        planned = self.max_epochs
        if self.starts:
            left = self.seconds - (now - self.started)
            planned = min(self.max_epochs, epoch + int(left // self._typical_epoch(now)))
        self.starts.append(now)
        progress = min(1.0, epoch / max(1, planned))
        rate = self.peak * (0.05 + 0.95 * 0.5 * (1.0 + np.cos(np.pi * progress)))
        self.model.optimizer.learning_rate.assign(float(rate))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        now = time.monotonic()
        if self.seconds - (now - self.started) < self._typical_epoch(now):
            self.say(f"time budget of {self.seconds / 60:.1f} min reached after epoch {epoch + 1}")
            self.model.stop_training = True


class EpochReport(keras.callbacks.Callback):
    """Validation a*b* error, photos/s and time left after each epoch; the best weights kept."""

    def __init__(
        self,
        run_dir: Path,
        val: data.AugmentedBatches | None,
        bins: np.ndarray,
        photos_per_epoch: int,
        total_epochs: int,
        say: Callable[[str], None],
    ) -> None:
        super().__init__()
        self.run_dir, self.val, self.bins = run_dir, val, bins
        self.photos_per_epoch, self.total_epochs, self.say = photos_per_epoch, total_epochs, say
        self.best = _best_so_far(run_dir / LOG)
        self.started = time.monotonic()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.started = time.monotonic()

    def _val_ab_error(self) -> dict[str, float]:
        if self.val is None:
            return {}
        errors: dict[str, list[float]] = {"val_ab_mae_t1": [], "val_ab_mae_t05": []}
        for index in range(len(self.val)):
            lightness, target = self.val[index]
            logits = np.asarray(self.model.predict_on_batch(lightness), dtype=np.float64)
            for key, temperature in (("val_ab_mae_t1", 1.0), ("val_ab_mae_t05", 0.5)):
                z = logits / temperature
                p = np.exp(z - z.max(-1, keepdims=True))
                ab = (p / p.sum(-1, keepdims=True)) @ self.bins
                errors[key].append(float(np.abs(ab - target).mean()))
        return {k: float(np.mean(v)) for k, v in errors.items()}

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        seconds = time.monotonic() - self.started
        row = {
            "epoch": epoch + 1,
            **{k: float(v) for k, v in (logs or {}).items()},
            **self._val_ab_error(),
            "learning_rate": float(np.asarray(self.model.optimizer.learning_rate)),
            "photos_per_s": self.photos_per_epoch / seconds,
            "epoch_s": seconds,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        log = self.run_dir / LOG
        new = not log.exists()
        with log.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        # The checkpoint is written before the log row, so a logged epoch always has one.
        partial = self.run_dir / f".{CHECKPOINT}"
        self.model.save(partial)
        partial.replace(self.run_dir / CHECKPOINT)
        score = float(row.get("val_ab_mae_t1", row.get("loss", 0.0)))  # type: ignore[arg-type]
        if score < self.best:
            self.best = score
            self.model.save_weights(self.run_dir / BEST_WEIGHTS)
        self.say(
            f"epoch {epoch + 1}/{self.total_epochs}  loss {row.get('loss', 0):.4f}  "
            f"val ab error {row.get('val_ab_mae_t1', float('nan')):.2f}  "
            f"{row['photos_per_s']:.1f} photos/s  {seconds:.0f} s"
        )


def _best_so_far(log: Path) -> float:
    if not log.exists():
        return float("inf")
    with log.open() as handle:
        scores = [float(r.get("val_ab_mae_t1") or r["loss"]) for r in csv.DictReader(handle)]
    return min(scores, default=float("inf"))


def _epochs_done(log: Path) -> int:
    if not log.exists():
        return 0
    with log.open() as handle:
        return max((int(r["epoch"]) for r in csv.DictReader(handle)), default=0)


def train(
    run_dir: Path, config: TrainConfig | None, resume: bool, say: Callable[[str], None] = print
) -> Path:
    """Train (or, with ``resume``, continue) the run in ``run_dir``; returns the checkpoint."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        saved = json.loads((run_dir / CONFIG).read_text())
        config = TrainConfig(**saved["config"])
        bins = np.asarray(saved["bins"], dtype="float32")
        weights = np.asarray(saved["weights"], dtype="float32")
    if config is None:
        raise ValueError("a new run needs a TrainConfig")

    train_pack = _pack(config.train_dir, config.cache_dir, "train", config.pack_side)
    val_pack = (
        _pack(config.val_dir, config.cache_dir, "val", config.pack_side) if config.val_dir else None
    )
    say(
        f"{len(train_pack)} training photos"
        + (f", {len(val_pack)} validation photos" if val_pack is not None else "")
    )
    if not resume:
        if config.init_weights and (Path(config.init_weights).parent / CONFIG).exists():
            # Starting from another run: its colour bins, or its head would not fit.
            start = json.loads((Path(config.init_weights).parent / CONFIG).read_text())
            bins, prior = (np.asarray(start[k], dtype="float32") for k in ("bins", "prior"))
            weights = network.rebalancing_weights(prior, config.rebalance)
        else:
            bins, weights, prior = network.colour_bins(
                np.concatenate(list(data.sample_ab(train_pack))), rebalance=config.rebalance
            )
        (run_dir / CONFIG).write_text(
            json.dumps(
                {
                    "config": asdict(config),
                    "bins": bins.tolist(),
                    "weights": weights.tolist(),
                    "prior": prior.tolist(),
                }
            )
        )
    say(f"{len(bins)} colour bins")

    batches = data.AugmentedBatches(
        train_pack,
        config.size,
        config.batch_size,
        seed=config.seed,
        min_crop=config.min_crop,
        workers=config.workers,
    )
    val = (
        data.AugmentedBatches(val_pack, config.size, config.batch_size, augment=False)
        if val_pack is not None
        else None
    )
    steps = len(batches) * config.epochs
    initial_epoch = _epochs_done(run_dir / LOG) if resume else 0
    if resume:
        model = keras.saving.load_model(
            run_dir / CHECKPOINT, custom_objects={"RebalancedBinLoss": network.RebalancedBinLoss}
        )
    else:
        pretrained = Path(config.pretrained) if config.pretrained else None
        model = network.build_network(
            len(bins),
            pretrained,
            config.width,
            config.encoder,
            trainable_encoder=not config.freeze_encoder,
            tune_encoder=config.tune_encoder,
        )
        if config.init_weights:  # start from another run's weights (same bins and width)
            model.load_weights(config.init_weights)
        schedule: Any = (
            config.learning_rate
            if config.time_budget_min
            else keras.optimizers.schedules.CosineDecay(
                config.learning_rate, decay_steps=steps, alpha=0.05, warmup_target=None
            )
        )
        optimizer = (
            keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
            if config.weight_decay
            else keras.optimizers.Adam(schedule)
        )
        model.compile(optimizer=optimizer, loss=network.RebalancedBinLoss(bins, weights))
    say(f"{model.count_params():,} parameters; starting at epoch {initial_epoch + 1}")
    callbacks: list[keras.callbacks.Callback] = [
        EpochReport(run_dir, val, bins, len(train_pack), config.epochs, say)
    ]
    if config.time_budget_min:
        callbacks.append(
            TimeBudget(config.time_budget_min, config.learning_rate, config.epochs, say)
        )
    model.fit(
        batches, epochs=config.epochs, initial_epoch=initial_epoch, verbose=0, callbacks=callbacks
    )
    return run_dir / CHECKPOINT
