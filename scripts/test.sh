#!/usr/bin/env bash
# The project's test command: installs what is missing, checks formatting and lints, builds
# everything, then runs every test inside a private network namespace (DDS multicast and
# discovery traffic can only reach loopback there; the DDS tests refuse to run anywhere else).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
./scripts/setup.sh
# shellcheck source=env.sh
source scripts/env.sh

cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --no-run
# The build without OpenCV (GPU hosts reached with the binary alone, see scripts/device-check.sh):
# lints, and its image decoding and preprocessing against the golden fixture (no DDS involved).
cargo clippy --locked --no-default-features --all-targets -- -D warnings
cargo test --locked --no-default-features --test preprocess --test cli_infer
cargo test --locked --no-default-features --lib -- runtime::

# Build products are ready; nothing below needs the network.
netns_setup='ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo'
if [ "$(id -u)" -eq 0 ]; then
    ns=(unshare --net)
else
    ns=(unshare --map-root-user --net)
fi
exec "${ns[@]}" -- sh -c "$netns_setup && exec cargo test --locked --offline $* -- --test-threads=2"
