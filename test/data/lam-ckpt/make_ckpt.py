"""Writes lam_tiny.ckpt: the univla-tiny LAM fixture weights in the layout of the reference's
Lightning checkpoint (`lam-stage-2.ckpt`): a torch.save dict whose `state_dict` holds every
weight under the `lam.` prefix, next to the usual Lightning bookkeeping entries.

Run once with any Python that has torch (no numpy or safetensors needed):
    python make_ckpt.py ../univla-tiny/lam/lam_model.safetensors
"""
import json
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}


def read_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        start, end = info["data_offsets"]
        buf = bytearray(raw[base + start : base + end])
        out[key] = torch.frombuffer(buf, dtype=DTYPES[info["dtype"]]).reshape(info["shape"]).clone()
    return out


def main():
    weights = read_safetensors(sys.argv[1])
    ckpt = {
        "epoch": 0,
        "global_step": 200000,
        "pytorch-lightning_version": "2.2.0",
        "state_dict": {f"lam.{k}": v for k, v in sorted(weights.items())},
        "loops": {},
        "callbacks": {},
        "optimizer_states": [],
        "lr_schedulers": [],
        "hyper_parameters": {"lam_model_dim": 32, "lam_latent_dim": 16, "lam_num_latents": 16},
    }
    torch.save(ckpt, "lam_tiny.ckpt")


if __name__ == "__main__":
    main()
