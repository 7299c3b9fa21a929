"""Writes the small torch.save files used by test/torch_pt.rs (run once with a Python that has torch;
the files are committed, the tests do not need Python).

    python make_fixtures.py   # in this directory

* lightning_like.ckpt: a PyTorch-Lightning-shaped checkpoint (protocol 2, the torch.save default) whose
  `state_dict` holds every supported dtype, views with storage offsets, transposed/expanded strides, a
  storage shared by two tensors, a Parameter, a 0-d and an empty tensor; next to it optimizer states,
  callbacks, loops and hyper-parameters with objects of classes the reader must not import.
* protocol4.pt: a small state dict written with pickle protocol 4 (FRAME, MEMOIZE, STACK_GLOBAL, ...).
* legacy.pt: the pre-1.6 (non-zip) format, which the reader rejects with an error.

Tensor values follow closed formulas that test/torch_pt.rs rebuilds independently.
"""
import argparse
import collections

import torch


class Hparams:
    """Stands for a user class a real checkpoint references (pickled by name, never importable)."""

    def __init__(self):
        self.hidden = 64
        self.name = "lam"


def state_dict():
    big = torch.arange(100, dtype=torch.float32)
    w = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 8
    sd = collections.OrderedDict()
    sd["lam.encoder.weight"] = w
    sd["lam.encoder.weight_t"] = w.t()  # shares w's storage, strides (1, 6)
    sd["lam.slice"] = big[10:30:2]  # offset 10, stride 2 into a 100-element storage
    sd["lam.expanded"] = torch.arange(3, dtype=torch.float32).expand(2, 3)  # stride (0, 1)
    sd["lam.half"] = torch.arange(6, dtype=torch.float16).reshape(2, 3) * 0.5
    sd["lam.bf16"] = torch.arange(5, dtype=torch.bfloat16) - 2
    sd["lam.double"] = torch.arange(4, dtype=torch.float64) / 3
    sd["lam.long"] = torch.arange(-3, 3, dtype=torch.int64) * (2**40)
    sd["lam.int"] = torch.arange(4, dtype=torch.int32) * -1000
    sd["lam.int8"] = torch.tensor([-128, -1, 0, 127], dtype=torch.int8)
    sd["lam.uint8"] = torch.tensor([0, 255, 7], dtype=torch.uint8)
    sd["lam.bool"] = torch.tensor([True, False, True])
    sd["lam.param"] = torch.nn.Parameter(torch.arange(3, dtype=torch.float32) + 0.25)
    sd["lam.scalar"] = torch.tensor(2.5)
    sd["lam.empty"] = torch.zeros(0, 3)
    sd["other.bias"] = torch.ones(2)
    return sd


def main():
    ckpt = {
        "epoch": 3,
        "global_step": 1234,
        "pytorch-lightning_version": "2.1.0",
        "state_dict": state_dict(),
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 1}}}},
        "callbacks": {"ModelCheckpoint{'monitor': 'val_loss'}": {"best_model_score": torch.tensor(0.5), "dirpath": "/tmp/x"}},
        "optimizer_states": [
            {
                "state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.zeros(4, 6)}},
                "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "weight_decay": 0.01, "params": [0]}],
            }
        ],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": {
            "model": Hparams(),
            "ns": argparse.Namespace(lr=0.1, tags=["a", "b"]),
            "big": 2**70,
            "neg": -(2**33),
            "float": 1.5,
            "none": None,
            "tuple": (1, "a", True),
            "set": {1, 2},
            "bytes": b"\x00\xff",
            "device": torch.device("cpu"),
            "dtype": torch.float16,
        },
    }
    torch.save(ckpt, "lightning_like.ckpt")
    small = collections.OrderedDict(a=torch.arange(6, dtype=torch.float32).reshape(2, 3), b=torch.tensor([7], dtype=torch.int64))
    torch.save(small, "protocol4.pt", pickle_protocol=4)
    torch.save(small, "legacy.pt", _use_new_zipfile_serialization=False)


if __name__ == "__main__":
    main()
