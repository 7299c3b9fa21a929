#!/usr/bin/env python3
"""Reads a bag with the independent PyPI `rosbags` reader, using only the message definitions
stored in the bag (no built-in typestore), and prints a JSON summary for test/bag_rosbags.rs.

Usage: read_bag.py BAG_DIR
Output: {"topics": {topic: type}, "messages": [{"topic", "t", "fields": {...}}]}
"""
import json
import sys
from pathlib import Path

from rosbags.highlevel import AnyReader


def summarize(msg: object) -> dict:
    """Plain-JSON view of the fields the test checks."""
    out = {}
    for name in ("data", "position", "ids", "tokens", "markers", "points", "linear", "pose", "width", "height",
                 "encoding", "name"):
        if not hasattr(msg, name):
            continue
        v = getattr(msg, name)
        if name == "markers":
            out[name] = [{"text": m.text, "type": m.type, "frame_id": m.header.frame_id} for m in v]
        elif name == "points":
            out[name] = [list(map(float, p.positions)) for p in v]
        elif name == "linear":
            out[name] = [v.x, v.y, v.z]
        elif name == "pose":
            out[name] = [v.position.x, v.orientation.w]
        elif hasattr(v, "tolist"):
            out[name] = v.tolist()
        elif isinstance(v, list):
            out[name] = list(v)
        else:
            out[name] = v
    return out


def main() -> None:
    with AnyReader([Path(sys.argv[1])]) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        msgs = []
        for conn, t, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            msgs.append({"topic": conn.topic, "t": t, "fields": summarize(msg)})
    json.dump({"topics": topics, "messages": msgs}, sys.stdout)


if __name__ == "__main__":
    main()
