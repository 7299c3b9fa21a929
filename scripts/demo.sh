#!/usr/bin/env bash
# The main job on a fresh machine: installs what is missing, builds univla, writes a small random
# checkpoint in the official on-disk format, and runs the policy on it: a few control steps of
# each head (real-world arm, LIBERO-style arm, R2R navigation) on synthetic camera images.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
./scripts/setup.sh
# shellcheck source=env.sh
source scripts/env.sh
cargo build --release --locked --bin univla
univla=target/release/univla
out=${UNIVLA_DEMO_DIR:-target/demo}
ckpt="$out/checkpoint"
[ -f "$ckpt/model.safetensors" ] || "$univla" make-checkpoint --out "$ckpt" --preset tiny --seed 1
images=(test/data/univla-tiny/images/deploy_step0.png test/data/univla-tiny/images/deploy_step1.png test/data/univla-tiny/images/deploy_step2.png)
echo "== real-world arm head (z-score actions, temporal ensemble over the last 8 of 12 steps)"
"$univla" infer --checkpoint "$ckpt" --decoder "$ckpt/action_decoder.safetensors" --seed 0 \
    --realworld-stats "$ckpt/realworld_stats.json" --proprio <(echo '[[0,0,0,0,0,0,0],[0,0,0,0,0,0,0],[0,0,0,0,0,0,0]]') \
    --instruction "put the red cup on the blue plate" "${images[@]/#/--image=}"
echo "== LIBERO-style end-effector head"
"$univla" infer --checkpoint "$ckpt" --decoder "$ckpt/action_decoder_libero.safetensors" --greedy \
    --unnorm-key libero_10_no_noops --instruction "put both the alphabet soup and the tomato sauce in the basket" "${images[@]/#/--image=}"
echo "== R2R navigation head"
"$univla" infer --checkpoint "$ckpt" --decoder "$ckpt/action_decoder_r2r.safetensors" --greedy \
    --instruction "walk past the kitchen table and stop at the black chair" "${images[@]/#/--image=}"
echo "== benchmark (tiny checkpoint, CPU)"
"$univla" bench --checkpoint "$ckpt" --decoder "$ckpt/action_decoder_libero.safetensors" --greedy \
    --unnorm-key libero_10_no_noops --steps 5 --warmup 1
