"""The colourisation network, written in backend-agnostic Keras 3 (``keras.ops`` only).

L* goes in; the network predicts, at a quarter of the input resolution, a distribution over
quantised a*b* colour bins (Zhang et al. 2016). The exported model ends with an annealed-mean
read-out that turns the distribution into one a*b* value per pixel: temperature 1 gives the mean
(accurate but muted), lower temperatures move towards the mode (vivid). Upsampling inside the
network is nearest-neighbour only, since bilinear resizing breaks under full-integer int8
quantisation; the smooth upsampling to full resolution is done by the pipeline.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from coloi.training import encoders


@dataclass(frozen=True)
class ReadOut:
    """How the bin distribution becomes one a*b* per pixel.

    ``temperature`` 1 gives the mean, lower moves towards the mode. ``prior_boost`` tilts the
    distribution away from common (greyish) colours by adding ``prior_boost * log(weight)`` to
    the logits, with the paper's rebalancing weights (a per-pixel, evidence-aware boost: a
    confident pixel barely moves). ``chroma_gain`` scales the result.

    ``coherent_gain`` adds colour only where the network agrees with itself: the mean is
    scaled by ``1 + coherent_gain * k``, where the coherence ``k = |E[ab]| / E[|ab|]`` is 1 when
    all the probability lies in one hue direction and near 0 when it is flat or split between
    distant colours. A muted mean of a confident hue is restored; a split stays muted, rather
    than becoming a confident wrong colour.

    ``knee`` and ``knee_gain`` shape chroma like a tone curve: a pixel whose chroma is under
    ``knee`` keeps it; above, the excess is multiplied by ``knee_gain``. Colour the network
    committed to becomes more vivid; near-grey guesses, where it hedges, stay near grey.
    """

    temperature: float = 1.0
    prior_boost: float = 0.0
    chroma_gain: float = 1.0
    coherent_gain: float = 0.0
    knee: float = 0.0
    knee_gain: float = 1.0

    def logit_bias(self, prior: np.ndarray) -> np.ndarray:
        weights = 1.0 / (0.5 * prior + 0.5 / len(prior))
        return (self.prior_boost * np.log(weights / weights.max())).astype("float32")

    def apply(self, logits: np.ndarray, bins: np.ndarray, prior: np.ndarray) -> np.ndarray:
        """The read-out in NumPy, for sweeps (the same arithmetic as :class:`AnnealedMean`)."""
        z = (logits + self.logit_bias(prior)) / self.temperature
        p = np.exp(z - z.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        mean = p @ (bins * self.chroma_gain)
        if self.coherent_gain:
            spread = p @ (np.hypot(bins[:, 0], bins[:, 1]) * self.chroma_gain)
            coherence = np.hypot(mean[..., 0], mean[..., 1]) / (spread + 1e-6)
            mean = mean * (1.0 + self.coherent_gain * coherence)[..., None]
        if self.knee_gain != 1.0:
            chroma = np.hypot(mean[..., 0], mean[..., 1])
            excess = np.maximum(chroma - self.knee, 0.0) / (chroma + 1.0)
            mean = mean * (1.0 + (self.knee_gain - 1.0) * excess)[..., None]
        return mean.astype("float32")


@keras.saving.register_keras_serializable(package="coloi")
class AnnealedMean(layers.Layer):
    """Logits over colour bins -> expected a*b* under softmax((logits + bias) / temperature)."""

    def __init__(
        self,
        bins: Any,
        temperature: float = 1.0,
        bias: Any = None,
        coherent_gain: float = 0.0,
        knee: float = 0.0,
        knee_gain: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bins = np.asarray(bins, dtype="float32")
        self.temperature = float(temperature)
        self.bias = (
            np.zeros(len(self.bins), "float32")
            if bias is None
            else np.asarray(bias, dtype="float32")
        )
        self.coherent_gain = float(coherent_gain)
        self.knee, self.knee_gain = float(knee), float(knee_gain)

    def call(self, logits: Any) -> Any:
        z = (logits + ops.convert_to_tensor(self.bias)) / self.temperature
        p = ops.softmax(z, axis=-1)
        mean = ops.matmul(p, ops.convert_to_tensor(self.bins))
        if self.coherent_gain:
            radius = np.hypot(self.bins[:, 0], self.bins[:, 1])[:, None].astype("float32")
            spread = ops.matmul(p, ops.convert_to_tensor(radius))
            length = ops.sqrt(ops.sum(ops.square(mean), axis=-1, keepdims=True))
            mean = mean * (1.0 + self.coherent_gain * length / (spread + 1e-6))
        if self.knee_gain != 1.0:
            chroma = ops.sqrt(ops.sum(ops.square(mean), axis=-1, keepdims=True))
            # + 1, not + epsilon: int8 division fails on a divisor that quantises to zero.
            excess = ops.relu(chroma - self.knee) / (chroma + 1.0)
            mean = mean * (1.0 + (self.knee_gain - 1.0) * excess)
        return mean

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            bins=self.bins.tolist(),
            temperature=self.temperature,
            bias=self.bias.tolist(),
            coherent_gain=self.coherent_gain,
            knee=self.knee,
            knee_gain=self.knee_gain,
        )
        return config


def _conv(x: Any, filters: int, name: str, dilation: int = 1) -> Any:
    x = layers.Conv2D(
        filters, 3, padding="same", use_bias=False, dilation_rate=dilation, name=f"{name}_conv"
    )(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _batch_norms(model: keras.Model) -> Iterator[layers.BatchNormalization]:
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            yield layer
        elif isinstance(layer, keras.Model):
            yield from _batch_norms(layer)


def build_network(
    num_bins: int,
    pretrained: Path | None = None,
    width: int = 96,
    encoder: str = "mobilenet",
    trainable_encoder: bool = True,
    tune_encoder: bool = False,
) -> keras.Model:
    """The logits network: L* (B, H, W, 1) in [0, 100] -> bin logits (B, H/4, W/4, bins).

    H and W must be multiples of 32. ``encoder`` is one of :data:`encoders.ENCODERS`; with
    ``trainable_encoder`` False its weights (and batch-norm statistics) stay as loaded. With
    ``tune_encoder`` its weights learn but its batch-norm layers stay as loaded and run in
    inference mode: fine-tuning a pretrained encoder, whose statistics a batch of grey crops
    would otherwise pull away from those its weights were learnt with.
    """
    lightness = keras.Input((None, None, 1), name="lightness")
    scale, features = encoders.grey_encoder(encoder, pretrained)
    features.trainable = trainable_encoder
    if tune_encoder:
        for layer in _batch_norms(features):
            layer.trainable = False  # Keras runs a frozen batch norm in inference mode
    quarter, eighth, sixteenth, bottom = features(scale(lightness))

    y = layers.UpSampling2D(2, interpolation="nearest", name="up16")(bottom)
    y = layers.Concatenate(name="cat16")([y, sixteenth])
    y = _conv(y, 2 * width, "dec16")
    y = layers.UpSampling2D(2, interpolation="nearest", name="up8")(y)
    y = layers.Concatenate(name="cat8")([y, eighth])
    y = _conv(y, width, "dec8a")
    y = _conv(y, width, "dec8b", dilation=2)
    y = layers.UpSampling2D(2, interpolation="nearest", name="up4")(y)
    y = layers.Concatenate(name="cat4")([y, quarter])
    y = _conv(y, width, "dec4a")
    y = _conv(y, width, "dec4b")
    logits = layers.Conv2D(num_bins, 1, name="bin_logits")(y)
    return keras.Model(lightness, logits, name="coloi_logits")


def inference_model(
    logits_model: keras.Model,
    bins: np.ndarray,
    readout: ReadOut,
    prior: np.ndarray,
    size: int | None = None,
) -> keras.Model:
    """The shipped model: L* in, a*b* at a quarter of the input resolution out."""
    shape = (size, size, 1) if size else (None, None, 1)
    lightness = keras.Input(shape, name="lightness")
    ab = AnnealedMean(
        bins * readout.chroma_gain,
        readout.temperature,
        readout.logit_bias(prior),
        readout.coherent_gain,
        readout.knee,
        readout.knee_gain,
        name="annealed_mean",
    )(logits_model(lightness))
    return keras.Model(lightness, ab, name="coloi")


@keras.saving.register_keras_serializable(package="coloi")
class RebalancedBinLoss(keras.losses.Loss):
    """Cross-entropy against soft-encoded a*b* targets, weighted to favour rare colours.

    ``y_true`` is the target a*b* at the logits' resolution (B, h, w, 2). Each pixel's target is
    a Gaussian (sigma 5) over the bins, and its weight is the rebalancing weight of its nearest
    bin, so that desaturated colours do not dominate (Zhang et al. 2016, section 2.2).
    """

    def __init__(self, bins: Any, weights: Any, sigma: float = 5.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bins = np.asarray(bins, dtype="float32")
        self.weights = np.asarray(weights, dtype="float32")
        self.sigma = float(sigma)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        bins = ops.convert_to_tensor(self.bins)
        dist2 = (
            ops.sum(ops.square(y_true), axis=-1, keepdims=True)
            - 2.0 * ops.matmul(y_true, ops.transpose(bins))
            + ops.sum(ops.square(bins), axis=-1)
        )
        target = ops.softmax(-dist2 / (2.0 * self.sigma**2), axis=-1)
        weight = ops.take(ops.convert_to_tensor(self.weights), ops.argmin(dist2, axis=-1))
        cross_entropy = -ops.sum(target * ops.log_softmax(y_pred, axis=-1), axis=-1)
        return weight * cross_entropy

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(bins=self.bins.tolist(), weights=self.weights.tolist(), sigma=self.sigma)
        return config


def colour_bins(
    ab_samples: np.ndarray,
    grid: float = 10.0,
    min_share: float = 2e-6,
    rebalance: float = 0.5,
    sigma_bins: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bins (Q, 2) of the a*b* grid that the photos use, their rebalancing weights (Q,) and
    their smoothed prior (Q,).

    A bin is kept when at least ``min_share`` of the sampled pixels fall in it. Weights are
    ``1 / ((1 - rebalance) * smoothed_prior + rebalance / Q)``, normalised to a mean of 1 under
    the prior: ``rebalance`` 0.5 is the paper's, 1 means no rebalancing (every bin weighs the
    same, and the temperature-1 read-out estimates the conditional mean).
    """
    ab = ab_samples.reshape(-1, 2)
    index = np.round(ab / grid).astype(np.int64)
    keys, counts = np.unique(index, axis=0, return_counts=True)
    share = counts / counts.sum()
    keep = share >= min_share
    bins = (keys[keep] * grid).astype("float32")
    prior = share[keep]
    # Smooth the prior over neighbouring bins (Gaussian in bin units), as in the paper.
    d2 = ((keys[keep][:, None, :] - keys[keep][None, :, :]) ** 2).sum(-1)
    kernel = np.exp(-d2 / (2 * sigma_bins**2))
    prior = kernel @ prior / kernel.sum(1)
    prior /= prior.sum()
    return bins, rebalancing_weights(prior, rebalance), prior.astype("float32")


def rebalancing_weights(prior: np.ndarray, rebalance: float) -> np.ndarray:
    """``1 / ((1 - rebalance) * prior + rebalance / Q)``, with a mean of 1 under the prior."""
    weights = 1.0 / ((1 - rebalance) * prior + rebalance / len(prior))
    return (weights / (weights * prior).sum()).astype("float32")
