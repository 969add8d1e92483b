"""The portable packs of `tools/train-gpu.sh prepare` without the eight public benchmark sources.

For run `nobench`; from the repository:
    python models/training/nobench/filter_pack.py ../shared/data/train \
        .gpu2/train.pack.npz nobench/train.pack.npz  # and the same for val
A pack holds the folder's photos in sorted order, so the names select the crops.
"""

import sys
from pathlib import Path

import numpy as np

from coloi.training.data import photo_files

BENCH = ("bsds500", "bsd100", "set5", "set14", "urban100", "t91", "sunhays80", "camvid")
folder, pack, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
files = photo_files(folder)
with np.load(pack) as z:
    data, offsets, side = z["data"], z["offsets"], z["side"]
if len(offsets) != len(files) + 1:
    sys.exit(f"{pack}: {len(offsets) - 1} photos, but {folder} has {len(files)}: not its pack")
keep = [i for i, f in enumerate(files) if not f.name.startswith(BENCH)]
blobs = [data[offsets[i] : offsets[i + 1]] for i in keep]
new = np.cumsum([0] + [len(b) for b in blobs])
np.savez(out, data=np.concatenate(blobs), offsets=new, side=side)
print(len(files), "->", len(keep))
