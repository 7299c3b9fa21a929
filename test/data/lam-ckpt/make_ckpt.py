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
        # What the reference's `DINO_LAM.save_hyperparameters()` records, at the fixture's sizes
        # (lam_golden.json `config.ctor`), plus `dino_num_heads`: the reference hard-codes DINOv2-B
        # (64-wide heads), the fixture's 48-wide stand-in has 3 heads, which the weights cannot tell.
        "hyper_parameters": {
            "image_channels": 3,
            "lam_model_dim": 32,
            "lam_latent_dim": 16,
            "lam_num_latents": 16,
            "lam_patch_size": 14,
            "lam_enc_blocks": 2,
            "lam_dec_blocks": 1,
            "lam_num_heads": 4,
            "lam_dropout": 0.0,
            "vq_beta": 0.25,
            "log_interval": 1000,
            "log_path": "log_imgs",
            "task_name": "lam_openx",
            "make_data_pair": False,
            "dino_num_heads": 3,
        },
    }
    torch.save(ckpt, "lam_tiny.ckpt")


if __name__ == "__main__":
    main()
