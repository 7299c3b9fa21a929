"""Writes the msgpack-numpy golden messages of the unit tests in src/remote/codec.rs with openpi's own encoder.

    python3 -m venv /tmp/v && /tmp/v/bin/pip install msgpack numpy openpi-client==0.1.2
    /tmp/v/bin/python test/data/remote/make_golden.py test/data/remote
"""
import sys
from pathlib import Path

import numpy as np
from openpi_client import msgpack_numpy

out = Path(sys.argv[1])

# What an openpi client sends: an observation dict packed by msgpack_numpy.Packer.
request = {
    "observation/image": np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3),
    "observation/state": np.array([0.5, -1.25, 3.0], dtype=np.float64),
    "prompt": "pick up the cup",
    "reset": True,
}
(out / "request.msgpack").write_bytes(msgpack_numpy.Packer().pack(request))

# What a server answers: chunk [T, D] and action [D] in float32, tokens in int64, numpy scalars.
response = {
    "actions": (np.arange(4 * 7, dtype=np.float32).reshape(4, 7) * 0.25 - 1.0),
    "action": np.linspace(-0.5, 1.0, 7, dtype=np.float32),
    "latent_tokens": np.array([32001, 32010, 32100, 32005], dtype=np.int64),
    "episode_step": np.int64(5),
    "server_timing": {"infer_ms": 12.5, "batch_size": 1},
}
(out / "response.msgpack").write_bytes(msgpack_numpy.packb(response))

metadata = {
    "server": "univla",
    "version": "0.1.0",
    "embodiment": "real_world",
    "action_dim": 7,
    "chunk": np.int64(12),
    "latent_tokens": 4,
}
(out / "metadata.msgpack").write_bytes(msgpack_numpy.packb(metadata))
