"""ImageNet encoders on one grey channel, and the feature maps a U-Net taps from them.

Each encoder takes L* in [0, 100] and applies the preprocessing its ImageNet weights were
trained with, treating L* x 2.55 as the grey level (on grey ImageNet photos this costs
EfficientNet-Lite0 under a point of top-1 against true luma; ``shared/pretrained/README.md``).
An RGB network's first kernel summed over its input channels gives a grey image the response the
RGB network gives to that image repeated on three channels.

- ``mobilenet``: Keras MobileNet v1, alpha 0.25 (Keras Applications weights, ``.h5``).
- ``efficientnet-lite0``: Google's EfficientNet-Lite0 (ReLU6, no squeeze-excite), rebuilt here
  layer for layer and read from the PyTorch state_dict without torch (``.pth``), or from an
  ``.npz`` of the same tensors (:func:`save_npz`, to carry the weights where the ``.pth``
  would not fit).
"""

from __future__ import annotations

import collections
import pickle
import struct
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

ENCODERS = ("mobilenet", "efficientnet-lite0")

# (kernel, stride, expansion, output channels) of EfficientNet-Lite0's 16 blocks.
LITE0_BLOCKS = (
    (3, 1, 1, 16),
    (3, 2, 6, 24),
    (3, 1, 6, 24),
    (5, 2, 6, 40),
    (5, 1, 6, 40),
    (3, 2, 6, 80),
    (3, 1, 6, 80),
    (3, 1, 6, 80),
    (5, 1, 6, 112),
    (5, 1, 6, 112),
    (5, 1, 6, 112),
    (5, 2, 6, 192),
    (5, 1, 6, 192),
    (5, 1, 6, 192),
    (5, 1, 6, 192),
    (3, 1, 6, 320),
)
# Outputs tapped at strides 4, 8, 16 and 32.
LITE0_SKIPS = ("blocks_2", "blocks_4", "blocks_10", "blocks_15")
MOBILENET_SKIPS = ("conv_pw_3_relu", "conv_pw_5_relu", "conv_pw_11_relu", "conv_pw_13_relu")


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Tensors of a legacy (pre-1.6, non-zip) PyTorch file, or of an ``.npz``; no torch needed."""
    if path.suffix == ".npz":
        with np.load(path) as saved:
            return {name: saved[name].astype(np.float32) for name in saved.files}
    kinds = {"FloatStorage": np.float32, "LongStorage": np.int64}
    storage_kind: dict[str, str] = {}

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return lambda storage, offset, size, stride, *rest: (storage, offset, size, stride)
            if module == "torch" and name in kinds:
                return name
            raise pickle.UnpicklingError(f"unexpected {module}.{name} in {path}")

        def persistent_load(self, pid: Any) -> Any:  # ('storage', kind, key, location, numel)
            storage_kind[pid[2]] = pid[1]
            return pid[2]

    with path.open("rb") as handle:
        for _ in range(3):  # magic number, protocol version, system info
            pickle.load(handle)
        meta = Unpickler(handle).load()
        storages = {}
        for key in pickle.load(handle):
            (count,) = struct.unpack("<q", handle.read(8))
            dtype = np.dtype(kinds[storage_kind[key]])
            storages[key] = np.frombuffer(handle.read(count * dtype.itemsize), dtype)
    tensors = {}
    for name, (key, offset, size, stride) in meta.items():
        flat = storages[key]
        tensors[name] = np.lib.stride_tricks.as_strided(
            flat[offset:], size, [s * flat.itemsize for s in stride]
        ).copy()
    return tensors


def save_npz(state: dict[str, np.ndarray], path: Path, dtype: str = "float16") -> None:
    """The encoder's tensors (no classifier, no batch counters) as a compact ``.npz``."""
    kept = {
        k: v.astype(dtype)
        for k, v in state.items()
        if not k.startswith("_fc") and v.dtype != np.int64
    }
    np.savez_compressed(path, **kept)  # type: ignore[arg-type]


def _conv_bn(x: Any, filters: int, kernel: int, stride: int, name: str, bn: str, relu: bool) -> Any:
    x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(
        x
    )
    x = layers.BatchNormalization(epsilon=1e-3, name=f"{name}_{bn}")(x)
    return layers.ReLU(6.0, name=f"{name}_relu")(x) if relu else x


def efficientnet_lite0(channels: int = 1, head: bool = False) -> keras.Model:
    """EfficientNet-Lite0 on ``channels`` input planes already scaled to about [-1, 1].

    Layer names follow the PyTorch state_dict (``blocks_N`` for ``_blocks.N``), so that
    :func:`load_lite0_weights` can map one onto the other. With ``head``: the 1280-channel head,
    global pooling and the 1000-class ImageNet classifier (for checking the weights).
    """
    inputs = keras.Input((None, None, channels), name="grey_unit")
    x = _conv_bn(inputs, 32, 3, 2, "stem", "bn0", relu=True)
    width = 32
    for index, (kernel, stride, expansion, out) in enumerate(LITE0_BLOCKS):
        name = f"blocks_{index}"
        y = x
        if expansion != 1:
            y = _conv_bn(y, width * expansion, 1, 1, f"{name}_expand", "bn0", relu=True)
        y = layers.DepthwiseConv2D(
            kernel, stride, padding="same", use_bias=False, name=f"{name}_depthwise"
        )(y)
        y = layers.BatchNormalization(epsilon=1e-3, name=f"{name}_bn1")(y)
        y = layers.ReLU(6.0, name=f"{name}_depthwise_relu")(y)
        y = layers.Conv2D(out, 1, use_bias=False, name=f"{name}_project")(y)
        y = layers.BatchNormalization(epsilon=1e-3, name=f"{name}_bn2")(y)
        x = (
            layers.Add(name=name)([x, y])
            if stride == 1 and width == out
            else layers.Identity(name=name)(y)
        )
        width = out
    if head:
        x = _conv_bn(x, 1280, 1, 1, "head", "bn1", relu=True)
        x = layers.GlobalAveragePooling2D(name="pool")(x)
        x = layers.Dense(1000, name="fc")(x)
    return keras.Model(inputs, x, name="efficientnet_lite0")


def _bn(state: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]


def load_lite0_weights(model: keras.Model, state: dict[str, np.ndarray]) -> None:
    """Copy PyTorch EfficientNet-Lite0 tensors into :func:`efficientnet_lite0`'s layers."""
    channels = model.input.shape[-1]

    def conv(name: str) -> list[np.ndarray]:
        kernel = state[f"{name}.weight"]
        if channels == 1 and kernel.shape[1] == 3:  # the stem, on a grey input
            kernel = kernel.sum(axis=1, keepdims=True)
        return [kernel.transpose(2, 3, 1, 0)]

    pairs: dict[str, list[np.ndarray]] = {
        "stem_conv": conv("_conv_stem"),
        "stem_bn0": _bn(state, "_bn0"),
    }
    for index, (_, _, expansion, _) in enumerate(LITE0_BLOCKS):
        torch_name, name = f"_blocks.{index}", f"blocks_{index}"
        if expansion != 1:
            pairs[f"{name}_expand_conv"] = conv(f"{torch_name}._expand_conv")
            pairs[f"{name}_expand_bn0"] = _bn(state, f"{torch_name}._bn0")
        pairs[f"{name}_depthwise"] = [
            state[f"{torch_name}._depthwise_conv.weight"].transpose(2, 3, 0, 1)
        ]
        pairs[f"{name}_bn1"] = _bn(state, f"{torch_name}._bn1")
        pairs[f"{name}_project"] = conv(f"{torch_name}._project_conv")
        pairs[f"{name}_bn2"] = _bn(state, f"{torch_name}._bn2")
    if any(layer.name == "fc" for layer in model.layers):
        pairs["head_conv"] = conv("_conv_head")
        pairs["head_bn1"] = _bn(state, "_bn1")
        pairs["fc"] = [state["_fc.weight"].T, state["_fc.bias"]]
    for layer_name, weights in pairs.items():
        model.get_layer(layer_name).set_weights(weights)


def _grey_lite0(pretrained: Path | None) -> tuple[layers.Layer, keras.Model]:
    body = efficientnet_lite0(1)
    if pretrained is not None:
        load_lite0_weights(body, load_state_dict(pretrained))
    # L* x 2.55 stands for the grey level; the weights expect (level - 127) / 128.
    scale = layers.Rescaling(2.55 / 128.0, offset=-127.0 / 128.0, name="lite0_preprocess")
    return scale, keras.Model(
        body.input, [body.get_layer(n).output for n in LITE0_SKIPS], name="encoder"
    )


def _grey_mobilenet(pretrained: Path | None) -> tuple[layers.Layer, keras.Model]:
    grey = keras.applications.MobileNet(
        input_shape=(None, None, 1), alpha=0.25, include_top=False, weights=None
    )
    if pretrained is not None:
        rgb = keras.applications.MobileNet(
            input_shape=(224, 224, 3), alpha=0.25, include_top=False, weights=None
        )
        rgb.load_weights(str(pretrained))
        for source, target in zip(rgb.layers, grey.layers, strict=True):
            weights = source.get_weights()
            if source.name == "conv1":
                weights = [weights[0].sum(axis=2, keepdims=True)]
            target.set_weights(weights)
    scale = layers.Rescaling(1.0 / 50.0, offset=-1.0, name="to_unit_range")
    return scale, keras.Model(
        grey.input, [grey.get_layer(n).output for n in MOBILENET_SKIPS], name="encoder"
    )


def grey_encoder(name: str, pretrained: Path | None) -> tuple[layers.Layer, keras.Model]:
    """(L* -> the encoder's input scale, encoder: scaled input -> features at strides 4, 8,
    16 and 32)."""
    if name == "mobilenet":
        return _grey_mobilenet(pretrained)
    if name == "efficientnet-lite0":
        return _grey_lite0(pretrained)
    raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
