"""Launch univla_arm: `ros2 launch univla_ros arm.launch.py checkpoint:=/models/univla params_file:=...`.

Arguments (`--show-args`): see univla_launch.py."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from univla_launch import robot_launch  # noqa: E402


def generate_launch_description():
    return robot_launch('arm')
