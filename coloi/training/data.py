"""Training photos: a compact pack of colour photos, and augmented batches drawn from it.

The pack is an array of square uint8 BGR crops (centre crops after resizing the short side),
so an epoch decodes nothing. Batches are random crops at random scales, resized to the training
size and randomly flipped; the network's input is the L* of each crop's OpenCV grey copy and
its target the crop's a*b* at a quarter of the training size.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import cv2
import keras
import numpy as np

from coloi.color import ab_of_grey_photo
from coloi.discovery import find_photos

PACK_SIDE = 224
# A portable pack: the square crops as WebP, to carry a training set where the photos are not
# (a GPU machine with a small upload); see :func:`write_portable_pack`.
PORTABLE_SUFFIX = ".pack.npz"


def photo_files(folder: Path) -> list[Path]:
    """Every photo under ``folder`` (recursively, sorted), by the rule ``coloi run`` and
    ``coloi watch`` use (:func:`coloi.discovery.find_photos`)."""
    return find_photos(folder)


def square_crop(bgr: np.ndarray, side: int) -> np.ndarray:
    """Resize so the short side is ``side``, then take the centre square."""
    h, w = bgr.shape[:2]
    scale = side / min(h, w)
    size = (max(side, round(w * scale)), max(side, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(bgr, size, interpolation=interpolation)
    top, left = (resized.shape[0] - side) // 2, (resized.shape[1] - side) // 2
    return resized[top : top + side, left : left + side]


def build_pack(folder: Path, side: int = PACK_SIDE) -> np.ndarray:
    """Square crops (N, side, side, 3) of every colour photo under ``folder``."""
    crops = []
    for path in photo_files(folder):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is not None:
            crops.append(square_crop(bgr, side))
    return np.stack(crops)


def load_pack(folder: Path, cache: Path | None, side: int = PACK_SIDE) -> np.ndarray:
    """The pack of ``folder``, read from ``cache`` (an .npy file) when it is there."""
    if cache is not None and cache.exists():
        return np.load(cache)
    pack = build_pack(folder, side)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, pack)
    return pack


def write_portable_pack(folder: Path, path: Path, side: int, quality: int = 85) -> int:
    """Square crops of ``folder``'s photos, WebP-encoded, in one ``.pack.npz``; returns bytes."""
    blobs = []
    for photo in build_pack(folder, side):
        ok, encoded = cv2.imencode(".webp", photo, [cv2.IMWRITE_WEBP_QUALITY, quality])
        if not ok:
            raise ValueError(f"{path}: WebP encoding failed")
        blobs.append(encoded.ravel())
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    np.savez(path, data=np.concatenate(blobs), offsets=offsets, side=side)
    return int(offsets[-1])


def read_portable_pack(path: Path) -> np.ndarray:
    """The pack (N, side, side, 3) of a ``.pack.npz`` made by :func:`write_portable_pack`."""
    with np.load(path) as saved:
        blob, offsets = saved["data"], saved["offsets"]
    photos = [cv2.imdecode(blob[a:b], cv2.IMREAD_COLOR) for a, b in itertools.pairwise(offsets)]
    if any(p is None for p in photos):
        raise ValueError(f"{path}: a photo in the pack cannot be decoded")
    return np.stack(photos)  # type: ignore[arg-type]


def network_pair(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(L* input (H, W, 1), a*b* target at quarter resolution (H/4, W/4, 2)) of one crop."""
    lightness, ab = ab_of_grey_photo(bgr)
    h, w = lightness.shape
    target = cv2.resize(ab, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    return lightness[:, :, None], target


class AugmentedBatches(keras.utils.PyDataset):
    """Random crops (scale ``min_crop``..pack side), resized to ``size``, flipped at random."""

    def __init__(
        self,
        pack: np.ndarray,
        size: int,
        batch_size: int,
        seed: int = 0,
        min_crop: int = 96,
        augment: bool = True,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.pack, self.size, self.batch_size = pack, size, batch_size
        self.min_crop, self.augment = min_crop, augment
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(len(pack))

    def __len__(self) -> int:
        return math.ceil(len(self.pack) / self.batch_size)

    def on_epoch_end(self) -> None:
        self.order = self.rng.permutation(len(self.pack))

    def _crop(self, photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        side = photo.shape[0]
        if not self.augment:
            return cv2.resize(photo, (self.size, self.size), interpolation=cv2.INTER_AREA)
        crop = int(rng.integers(min(self.min_crop, side), side + 1))
        top, left = rng.integers(0, side - crop + 1, size=2)
        patch = photo[top : top + crop, left : left + crop]
        interpolation = cv2.INTER_AREA if crop > self.size else cv2.INTER_LINEAR
        patch = cv2.resize(patch, (self.size, self.size), interpolation=interpolation)
        return patch[:, ::-1] if rng.random() < 0.5 else patch

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng((int(self.rng.integers(1 << 31)), index))
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        pairs = [network_pair(np.ascontiguousarray(self._crop(self.pack[i], rng))) for i in chosen]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def sample_ab(pack: np.ndarray, count: int = 2000, side: int = 56) -> Iterator[np.ndarray]:
    """a*b* of up to ``count`` photos of the pack at a small size, for the colour-bin prior."""
    step = max(1, len(pack) // count)
    for photo in pack[::step]:
        yield network_pair(cv2.resize(photo, (side * 4, side * 4), interpolation=cv2.INTER_AREA))[1]
