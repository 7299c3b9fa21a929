#!/usr/bin/env bash
# Installs everything univla_ros needs to build and test on a fresh Debian 12 machine, idempotently:
#   * Debian packages (OpenCV, clang for the opencv bindings, iproute2 for the test namespace,
#     g++ and Fast DDS 2.9 for the C++ test peer that plays an rclcpp node on rmw_fastrtps),
#   * a Python virtual environment holding the PyPI torch==2.13.0 wheel (libtorch for `tch`),
#     kept in a cache outside the clone ($UNIVLA_CACHE, default ~/.cache/univla_ros) and linked
#     as ./.venv, so a second run, or a second clone, does not reinstall the multi-GB wheel set.
# Source scripts/env.sh afterwards (the other scripts do) to build with cargo.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"

TORCH_VERSION=2.13.0
cache=${UNIVLA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/univla_ros}
venv="$cache/venv-torch-$TORCH_VERSION"

say() { printf '[setup] %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------------------------
apt_pkgs=(libopencv-dev libclang-dev clang pkg-config iproute2 util-linux python3-venv g++ libfastrtps-dev)
missing=()
for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    say "installing Debian packages: ${missing[*]}"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    say "Debian packages present"
fi

# --- libtorch from the PyPI wheel --------------------------------------------------------------
have_torch() {
    [ -x "$venv/bin/python" ] &&
        "$venv/bin/python" -c "import torch,sys; sys.exit(0 if torch.__version__.split('+')[0]=='$TORCH_VERSION' else 1)" 2>/dev/null
}
if have_torch; then
    say "torch $TORCH_VERSION present in $venv"
else
    say "creating $venv with torch==$TORCH_VERSION (first run only; several GB)"
    mkdir -p "$cache"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
    have_torch || { say "torch $TORCH_VERSION did not install"; exit 1; }
fi
# PyPI `rosbags`: the independent rosbag2 writer the bag tests compare against.
ROSBAGS_VERSION=0.11.9
if ! "$venv/bin/python" -c "import rosbags, importlib.metadata as m, sys; sys.exit(m.version('rosbags') != '$ROSBAGS_VERSION')" 2>/dev/null; then
    say "installing rosbags==$ROSBAGS_VERSION into $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "rosbags==$ROSBAGS_VERSION"
fi
# The reference client of `univla serve`'s protocol, unmodified from PyPI, in its own venv
# (openpi-client needs numpy<2; test/serve_openpi.rs runs examples/openpi_remote.py with it).
OPENPI_CLIENT_VERSION=0.1.2
openpi_venv="$cache/venv-openpi-$OPENPI_CLIENT_VERSION"
if ! "$openpi_venv/bin/python" -c "import openpi_client.websocket_client_policy, importlib.metadata as m, sys; sys.exit(m.version('openpi-client') != '$OPENPI_CLIENT_VERSION')" 2>/dev/null; then
    say "creating $openpi_venv with openpi-client==$OPENPI_CLIENT_VERSION"
    python3 -m venv "$openpi_venv"
    "$openpi_venv/bin/pip" install --quiet --disable-pip-version-check "openpi-client==$OPENPI_CLIENT_VERSION" \
        numpy==1.26.4 msgpack==1.1.0 websockets==15.0.1 dm-tree==0.1.8 pillow==11.3.0 typing_extensions==4.15.0
fi
ln -sfn "$openpi_venv" "$here/.venv-openpi"
ln -sfn "$venv" "$here/.venv"
say "ready: source scripts/env.sh to build"
