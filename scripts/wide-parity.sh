#!/usr/bin/env bash
# Parity at the released widths against goldens of the official UniVLA code
# (test/data/wide-golden.json): writes the `wide` checkpoint from the goldens' seed (2.9 GB, in
# DIR or a temporary directory that is removed afterwards), then runs the ignored tests of
# test/wide_parity.rs: f32 on the CPU (prompts, ids and latent tokens identical, chunks and
# actions within 1e-4), and bf16/f16 against the f32 goldens (agreement printed).
# Needs about 7 GB of memory and 3 GB of disk; a few minutes on two cores.
# Usage: scripts/wide-parity.sh [DIR]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
./scripts/setup.sh
# shellcheck source=env.sh
source scripts/env.sh

golden=test/data/wide-golden.json
seed=$(sed -n 's/^ *"seed": *\([0-9][0-9]*\).*/\1/p' "$golden" | head -n 1)
layers=$(sed -n 's/^ *"llm_layers": *\([0-9][0-9]*\).*/\1/p' "$golden" | head -n 1)
if [ -z "$seed" ] || [ -z "$layers" ]; then
    echo "no checkpoint seed or llm_layers in $golden" >&2
    exit 1
fi
if [ $# -ge 1 ]; then
    dir=$1
    mkdir -p "$dir"
else
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
fi
ckpt="$dir/wide-seed$seed"
if [ ! -f "$ckpt/model.safetensors" ]; then
    # All three heads: they are drawn after the VLM in this order, as for the goldens.
    cargo run --locked --bin univla -- make-checkpoint --preset wide --llm-layers "$layers" \
        --seed "$seed" --out "$ckpt"
fi
UNIVLA_WIDE_CHECKPOINT="$ckpt" cargo test --locked --test wide_parity -- --ignored --nocapture --test-threads=1
