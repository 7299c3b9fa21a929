#!/usr/bin/env python3
"""Writes the test bags for test/bag_rosbags.rs with the independent PyPI `rosbags` writer.

Usage: make_bags.py OUT_DIR

Creates OUT_DIR/rosbags_mcap (MCAP, metadata v9) and OUT_DIR/rosbags_sqlite3 (sqlite3, metadata v8)
with identical content, plus OUT_DIR/expected.json listing every message's topic, bag timestamp
and CDR bytes (hex) so the Rust reader can be checked byte for byte.

Episode (frame k = 0..FRAMES-1 at 10 Hz, t_k = T0 + k*100 ms):
  /camera/image_raw   sensor_msgs/Image rgb8 WIDTHxHEIGHT, data[0] = k, data[1..] = (k*7+i) % 256
  /joint_trajectory   trajectory_msgs/JointTrajectory at t_k + 1 ms, positions = action(k): the
                      command sent in response to frame k, recorded just after it
  /joint_states       sensor_msgs/JointState at 20 Hz from t_0 - 20 ms, position = [0.5*j, -0.25*j]
  /instruction        std_msgs/String once at t_0 - 50 ms
  /weird              my_pkg/msg/Weird (a type the Rust side does not know), 5 messages
  /tf_like            geometry_msgs/msg/Twist, unrelated, 3 messages

OUT_DIR/alignment/jitter_mcap and OUT_DIR/alignment/jitter_sqlite3 hold the same frames with
only the commands, each still answering its frame but recorded at a varying delay: action(k) at
t_k + JITTER_LATE_MS for k < JITTER_SWITCH (closer to the next frame than to its own), and at
t_k + JITTER_EARLY_MS afterwards.
"""
import json
import sys
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

FRAMES = 20
WIDTH, HEIGHT = 32, 24
T0 = 1_700_000_000_000_000_000
PERIOD = 100_000_000
INSTRUCTION = "put the red block in the bowl"
COMMAND_DELAY = 1_000_000
JITTER_LATE_MS = 80
JITTER_EARLY_MS = 10
JITTER_SWITCH = 10


def action(k: int) -> list[float]:
    """Recorded command of frame k (exactly representable values); the last entry is a gripper."""
    return [0.25 * k, -0.5 * k, 0.125 * (k % 4), 1.0 if (k // 5) % 2 == 0 else -1.0]


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    store = get_typestore(Stores.ROS2_JAZZY)
    store.register(get_types_from_msg("int32 foo\nstring bar\n", "my_pkg/msg/Weird"))
    T = store.types
    Time = T["builtin_interfaces/msg/Time"]
    Duration = T["builtin_interfaces/msg/Duration"]
    Header = T["std_msgs/msg/Header"]

    def header(t: int, frame: str) -> object:
        return Header(stamp=Time(sec=t // 10**9, nanosec=t % 10**9), frame_id=frame)

    def trajectory(k: int, t: int) -> object:
        point = T["trajectory_msgs/msg/JointTrajectoryPoint"](
            positions=np.array(action(k), dtype=np.float64),
            velocities=np.array([], dtype=np.float64),
            accelerations=np.array([], dtype=np.float64),
            effort=np.array([], dtype=np.float64),
            time_from_start=Duration(sec=0, nanosec=100_000_000),
        )
        return T["trajectory_msgs/msg/JointTrajectory"](
            header=header(t, "base"), joint_names=["x", "y", "z", "gripper"], points=[point]
        )

    msgs = []  # (topic, type, t, message)
    jitter = []  # the alignment episode
    msgs.append(("/instruction", "std_msgs/msg/String", T0 - 50_000_000, T["std_msgs/msg/String"](data=INSTRUCTION)))
    for j in range(2 * FRAMES + 2):
        t = T0 - 20_000_000 + j * PERIOD // 2
        js = T["sensor_msgs/msg/JointState"](
            header=header(t, ""),
            name=["shoulder", "elbow"],
            position=np.array([0.5 * j, -0.25 * j], dtype=np.float64),
            velocity=np.array([], dtype=np.float64),
            effort=np.array([], dtype=np.float64),
        )
        msgs.append(("/joint_states", "sensor_msgs/msg/JointState", t, js))
    for k in range(FRAMES):
        t = T0 + k * PERIOD
        data = np.array([(k * 7 + i) % 256 for i in range(WIDTH * HEIGHT * 3)], dtype=np.uint8)
        data[0] = k
        img = T["sensor_msgs/msg/Image"](
            header=header(t, "camera"),
            height=HEIGHT,
            width=WIDTH,
            encoding="rgb8",
            is_bigendian=0,
            step=WIDTH * 3,
            data=data,
        )
        msgs.append(("/camera/image_raw", "sensor_msgs/msg/Image", t, img))
        tc = t + COMMAND_DELAY
        msgs.append(("/joint_trajectory", "trajectory_msgs/msg/JointTrajectory", tc, trajectory(k, tc)))
        jitter.append(("/camera/image_raw", "sensor_msgs/msg/Image", t, img))
        delay_ms = JITTER_LATE_MS if k < JITTER_SWITCH else JITTER_EARLY_MS
        tj = t + delay_ms * 1_000_000
        jitter.append(("/joint_trajectory", "trajectory_msgs/msg/JointTrajectory", tj, trajectory(k, tj)))
    for i in range(5):
        msgs.append(("/weird", "my_pkg/msg/Weird", T0 + i * 333_000_000, T["my_pkg/msg/Weird"](foo=i, bar="x" * i)))
    for i in range(3):
        V = T["geometry_msgs/msg/Vector3"]
        tw = T["geometry_msgs/msg/Twist"](linear=V(x=float(i), y=0.0, z=0.0), angular=V(x=0.0, y=0.0, z=-float(i)))
        msgs.append(("/tf_like", "geometry_msgs/msg/Twist", T0 + i * 500_000_000, tw))
    msgs.sort(key=lambda m: m[2])
    jitter.sort(key=lambda m: m[2])

    def write(path: Path, plugin: object, version: int, episode: list) -> None:
        with Writer(path, version=version, storage_plugin=plugin) as writer:
            conns = {}
            for topic, ty, _, _ in episode:
                if topic not in conns:
                    conns[topic] = writer.add_connection(topic, ty, typestore=store)
            for topic, ty, t, msg in episode:
                writer.write(conns[topic], t, store.serialize_cdr(msg, ty))
        (path / "instruction.txt").write_text(INSTRUCTION + "\n")

    expected = []
    (out / "alignment").mkdir(exist_ok=True)
    for suffix, plugin, version in (("mcap", StoragePlugin.MCAP, 9), ("sqlite3", StoragePlugin.SQLITE3, 8)):
        write(out / f"rosbags_{suffix}", plugin, version, msgs)
        write(out / "alignment" / f"jitter_{suffix}", plugin, version, jitter)
    for topic, ty, t, msg in msgs:
        expected.append({"topic": topic, "type": ty, "t": t, "cdr": store.serialize_cdr(msg, ty).hex()})
    (out / "expected.json").write_text(
        json.dumps({"frames": FRAMES, "width": WIDTH, "height": HEIGHT, "t0": T0, "period": PERIOD,
                    "instruction": INSTRUCTION, "actions": [action(k) for k in range(FRAMES)],
                    "messages": expected})
    )


if __name__ == "__main__":
    main()
