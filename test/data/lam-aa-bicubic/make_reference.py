"""Writes aa_bicubic.safetensors: reference outputs of PyTorch's antialiased bicubic resize.

Run once with any Python that has torch (no numpy needed):  python make_reference.py
Each case stores `<name>.input` [1, C, H, W] f32 (seeded randn) and `<name>.output`
[1, C, OH, OW] f32 = F.interpolate(input, size=(OH, OW), mode="bicubic", antialias=True,
align_corners=False), the call the DINOv2 hub code makes to resample its 37x37 position grid.
"""
import json
import struct

import torch
import torch.nn.functional as F

CASES = {
    # name: (channels, in_h, in_w, out_h, out_w)
    "grid37_to_16": (4, 37, 37, 16, 16),  # DINOv2-reg pos-embed grid 518 px -> 224 px
    "mixed_5x7_to_9x3": (2, 5, 7, 9, 3),  # upsample one axis, downsample the other
}


def main():
    torch.manual_seed(1234)
    tensors = {}
    for name, (c, h, w, oh, ow) in CASES.items():
        x = torch.randn(1, c, h, w, dtype=torch.float32)
        y = F.interpolate(x, size=(oh, ow), mode="bicubic", antialias=True, align_corners=False)
        tensors[f"{name}.input"] = x
        tensors[f"{name}.output"] = y
    header, blobs, offset = {}, [], 0
    for key in sorted(tensors):
        t = tensors[key].contiguous()
        blob = struct.pack(f"<{t.numel()}f", *t.flatten().tolist())
        header[key] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header["__metadata__"] = {"torch": torch.__version__, "generator": "make_reference.py"}
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * ((8 - len(head) % 8) % 8)
    with open("aa_bicubic.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for blob in blobs:
            f.write(blob)


if __name__ == "__main__":
    main()
