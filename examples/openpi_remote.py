"""Drives `univla serve` with openpi's own client (PyPI openpi-client==0.1.2, unmodified).
Usage: python examples/openpi_remote.py --port 8000 --prompt "pick up the cup" a.png b.png"""
import argparse, json
import numpy as np
from PIL import Image
from openpi_client import websocket_client_policy

ap = argparse.ArgumentParser()
ap.add_argument("--host", default="127.0.0.1")
ap.add_argument("--port", type=int, default=8000)
ap.add_argument("--api-key")
ap.add_argument("--prompt", required=True)
ap.add_argument("images", nargs="+")
args = ap.parse_args()

policy = websocket_client_policy.WebsocketClientPolicy(host=args.host, port=args.port, api_key=args.api_key)
steps = []
for path in args.images:  # one control step per camera image, history carried over
    obs = {
        "observation/image": np.asarray(Image.open(path).convert("RGB")),  # uint8 HxWx3
        "observation/state": np.zeros(8, dtype=np.float32),
        "prompt": args.prompt,
    }
    out = policy.infer(obs)
    steps.append({k: out[k].tolist() for k in ("actions", "action", "latent_tokens")} | {"episode_step": out["episode_step"]})
print(json.dumps({"metadata": policy.get_server_metadata(), "steps": steps}))
