#!/usr/bin/env bash
# The GPU check of univla_ros on a machine that has a CUDA PyTorch in its Python but no Rust
# toolchain and no OpenCV (a rented or shared GPU host reached by copying a few files).
#
#   scripts/device-check.sh bundle BUNDLE_DIR
#       Here (the build machine): builds a stripped `univla` against the libtorch of the GPU
#       host's PyTorch version ($DEVICE_TORCH, default 2.11.0; the PyPI wheel gives the headers and
#       libraries to link against), without the `opencv` feature, and puts it with this script
#       into BUNDLE_DIR (about 17 MB).
#   scripts/device-check.sh run BUNDLE_DIR RESULTS_DIR [--skip-7b]
#       There, from the repository root: runs the binary on that PyTorch's libtorch
#       (LD_LIBRARY_PATH=<torch>/lib): CUDA vs CPU parity on the golden fixture, the CLI in
#       f32/bf16/f16, and `univla bench` on the fixture and on a generated 7B checkpoint for
#       each decode mode ($BENCH_DECODE_MODES, default `dynamic fixed graphs`), plus the 7B's
#       greedy latent ids in each mode.
#       Writes logs and JSON into RESULTS_DIR and prints a short summary last.
#
# Settings: DEVICE_TORCH_VENV (where the link-only wheel goes), DEVICE_TARGET_DIR (cargo target
# of the bundle build), DEVICE_FEATURES (cargo features of the bundle, default `cuda-graphs`;
# empty for none), DEVICE_CUDA_HEADERS (the NVIDIA wheels whose CUDA runtime headers the
# cuda-graphs shim compiles against, matching the CUDA of $DEVICE_TORCH) and
# DEVICE_CUDA_HEADERS_DIR (where they are unpacked), DEVICE_PYTHON (the
# host's python3), DEVICE_SCRATCH (where the 15 GB 7B checkpoint is written, default /tmp),
# BENCH_STEPS, BENCH_DECODE_MODES, and DEVICE_CHECK_DEVICE=cpu to dry-run the run step on a
# machine without a GPU.
#
# Why a patched torch-sys: tch 0.26 expects libtorch 2.13 and its C wrapper
# (torch_api_generated.cpp) names a few ops that 2.11 lacks. The bundle step compiles that
# wrapper against the older headers and replaces the body of every function that does not
# compile with a thrown error (none of them is used here), then builds with
# LIBTORCH_BYPASS_VERSION_CHECK=1. Since the wrapper is compiled against the very headers of the
# libtorch it runs with, the C++ ABI matches; the remaining risk is a tch-side assumption about
# 2.13 behaviour, which the parity checks cover.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

DEVICE_TORCH=${DEVICE_TORCH:-2.11.0}
DEVICE_FEATURES=${DEVICE_FEATURES-cuda-graphs}
# torch 2.11.0's CUDA 13.0 (its `cuda-toolkit==13.0.2` pin): the runtime API headers and the
# compiler-runtime headers they include.
DEVICE_CUDA_HEADERS=${DEVICE_CUDA_HEADERS:-nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88}
say() { printf '[device-check] %s\n' "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

# --- bundle (build machine) --------------------------------------------------------------------

# Compiles one torch-sys C++ file against $1's headers; prints the line numbers of errors.
error_lines() {
    local torch=$1 file=$2
    g++ -std=c++17 -fsyntax-only -D_GLIBCXX_USE_CXX11_ABI=1 -DGLOG_USE_GLOG_EXPORT \
        -I"$torch/include" -I"$torch/include/torch/csrc/api/include" -I"$(dirname "$file")" "$file" 2>&1 |
        sed -n "s|^$file:\([0-9]*\):[0-9]*: error:.*|\1|p" | sort -un
}

# Replaces the PROTECT(...) body around each given line with a thrown "not in this libtorch".
stub_functions() {
    local file=$1
    shift
    python3 - "$file" "$@" <<'PY'
import sys
path, lines = sys.argv[1], sorted({int(x) for x in sys.argv[2:]})
src = open(path).read().split("\n")
done = set()
for ln in lines:
    i = ln - 1
    start = i
    while start >= 0 and not src[start].lstrip().startswith("PROTECT("):
        start -= 1
    end = i
    while end < len(src) and src[end] != "  )":
        end += 1
    if start < 0 or end >= len(src) or start in done:
        continue
    done.add(start)
    src[start + 1:end] = ['    throw std::runtime_error("not available in this libtorch version");'] + [""] * (end - start - 2)
open(path, "w").write("\n".join(src))
print(len(done))
PY
}

bundle() {
    local out=${1:?usage: device-check.sh bundle BUNDLE_DIR}
    command -v cargo >/dev/null || die "cargo is needed on the build machine"
    local cache=${UNIVLA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/univla_ros}
    local venv=${DEVICE_TORCH_VENV:-$cache/venv-torch-$DEVICE_TORCH-link}
    if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('torch').split('+')[0] != '$DEVICE_TORCH')" 2>/dev/null; then
        say "installing the torch==$DEVICE_TORCH wheel (headers and libraries only, no CUDA wheels) into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps "torch==$DEVICE_TORCH"
    fi
    local torch
    torch=$(echo "$venv"/lib/python3*/site-packages/torch)
    [ -f "$torch/lib/libtorch_cuda.so" ] || die "$torch has no libtorch_cuda.so (a CPU-only wheel?)"
    # The cuda-graphs shim includes libtorch's CUDA headers, which include the CUDA runtime's:
    # those come from NVIDIA's header wheels, unpacked into a folder of their own.
    local cuda_include=
    if [[ ",$DEVICE_FEATURES," == *,cuda-graphs,* ]]; then
        local headers=${DEVICE_CUDA_HEADERS_DIR:-$venv/cuda-headers}
        cuda_include=$(echo "$headers"/nvidia/cu*/include)
        if [ ! -f "$cuda_include/cuda_runtime_api.h" ] || [ ! -f "$cuda_include/crt/host_config.h" ]; then
            say "installing CUDA runtime headers ($DEVICE_CUDA_HEADERS) into $headers"
            # shellcheck disable=SC2086 # a list of requirements
            "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --upgrade --target "$headers" $DEVICE_CUDA_HEADERS
            cuda_include=$(echo "$headers"/nvidia/cu*/include)
        fi
        [ -f "$cuda_include/crt/host_config.h" ] || die "no CUDA runtime headers in $headers"
    fi

    local target=${DEVICE_TARGET_DIR:-${CARGO_TARGET_DIR:-$root/target}/device-torch-$DEVICE_TORCH}
    local stage=$target/stage
    mkdir -p "$stage"

    # torch-sys, patched for this libtorch.
    local tsys
    tsys=$(cd "$root" && cargo metadata --format-version 1 --locked 2>/dev/null |
        python3 -c "import json,sys; print(next(p['manifest_path'] for p in json.load(sys.stdin)['packages'] if p['name']=='torch-sys'))")
    tsys=$(dirname "$tsys")
    local marker=$stage/torch-sys/.patched-for-libtorch-$DEVICE_TORCH
    local f lines=() round
    [ -f "$marker" ] || { rm -rf "$stage/torch-sys" && cp -r "$tsys" "$stage/torch-sys" && chmod -R u+w "$stage/torch-sys"; }
    # Patched once; the copy is kept so that torch-sys is not rebuilt on every bundle.
    [ -f "$marker" ] || for f in torch_api.cpp torch_api_generated.cpp; do
        for round in 1 2 3; do
            mapfile -t lines < <(error_lines "$torch" "$stage/torch-sys/libtch/$f")
            ((${#lines[@]})) || break
            say "$f: stubbing $(stub_functions "$stage/torch-sys/libtch/$f" "${lines[@]}") function(s) missing from libtorch $DEVICE_TORCH (round $round)"
        done
        ((${#lines[@]} == 0)) || die "$f still does not compile against libtorch $DEVICE_TORCH"
    done
    touch "$marker"

    # The sources, staged so that the patch does not rewrite the checkout's Cargo.lock.
    rm -rf "$stage/src" && mkdir -p "$stage/src"
    (cd "$root" && git ls-files -co --exclude-standard | tar -cf - -T -) | tar -xf - -C "$stage/src"

    say "building univla (release, no opencv, features: ${DEVICE_FEATURES:-none}) against libtorch $DEVICE_TORCH"
    (
        cd "$stage/src"
        unset LIBTORCH_USE_PYTORCH VIRTUAL_ENV LIBTORCH_LIB
        # --allow-shlib-undefined: libtorch_cuda's CUDA libraries (cuBLAS, cuDNN, …) are found on
        # the GPU host at run time; the build machine needs none of them.
        LIBTORCH=$torch LIBTORCH_BYPASS_VERSION_CHECK=1 CARGO_TARGET_DIR=$target \
            CUDA_INCLUDE_DIR=$cuda_include RUSTFLAGS="-C link-arg=-Wl,--allow-shlib-undefined" \
            cargo build --release --no-default-features --features "$DEVICE_FEATURES" --bin univla \
            --config "patch.crates-io.torch-sys.path='$stage/torch-sys'"
    )
    mkdir -p "$out"
    strip -o "$out/univla" "$target/release/univla"
    cp "$root/scripts/device-check.sh" "$out/device-check.sh"
    {
        echo "torch $DEVICE_TORCH, features: ${DEVICE_FEATURES:-none}"
        (cd "$root" && echo "commit $(git rev-parse --short HEAD 2>/dev/null), $(git status --short | wc -l) files changed")
    } >"$out/BUILD_INFO"
    say "bundle ready: $(du -sh "$out" | cut -f1) in $out"
}

# --- run (GPU host) ----------------------------------------------------------------------------

run() {
    local bundle=${1:?usage: device-check.sh run BUNDLE_DIR RESULTS_DIR [--skip-7b]}
    local results=${2:?usage: device-check.sh run BUNDLE_DIR RESULTS_DIR [--skip-7b]}
    local skip_7b=${3:-}
    bundle=$(cd "$bundle" && pwd)
    mkdir -p "$results"
    results=$(cd "$results" && pwd)
    [ -d test/data/univla-tiny ] || die "run from the repository root (test/data/univla-tiny not found)"
    local python=${DEVICE_PYTHON:-python3}
    local torchlib
    torchlib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    export LD_LIBRARY_PATH=$torchlib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    local bin=$bundle/univla
    # DEVICE_CHECK_DEVICE=cpu dry-runs the script on a machine without a GPU (7B step skipped).
    local dev=${DEVICE_CHECK_DEVICE:-cuda}
    [ "$dev" = cuda ] || skip_7b=--skip-7b
    local fx=test/data/univla-tiny
    local ck=$fx/checkpoint
    {
        nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv || true
        "$python" -c 'import torch; print("python torch", torch.__version__, "cuda", torch.version.cuda)'
        cat "$bundle/BUILD_INFO" 2>/dev/null || true
        ldd "$bin" | grep -E 'libtorch_cuda|libcudart|not found' || true
    } 2>&1 | tee "$results/env.txt"
    if ldd "$bin" | grep -q 'not found'; then die "shared libraries missing (see env.txt)"; fi

    # 0. The card's ceilings, measured as METHOD-style references for the floor: a 4 GiB
    # device-to-device copy (bytes read + written) and an 8192³ bf16 matrix product.
    "$python" - <<'PY' 2>&1 | tee "$results/ceilings.txt" || true
import torch
def timed(fn, reps=10):
    for _ in range(3): fn()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); torch.cuda.synchronize(); ts.append(a.elapsed_time(b))
    return sorted(ts)[len(ts) // 2] / 1e3
x = torch.randint(0, 255, (4 << 30,), dtype=torch.uint8, device="cuda"); y = torch.empty_like(x)
t = timed(lambda: y.copy_(x)); print(f"copy: {2 * x.numel() / t / 1e12:.2f} TB/s (read + write)")
del x, y
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
t = timed(lambda: a @ b); print(f"bf16 matmul 8192^3: {2 * 8192**3 / t / 1e12:.0f} TFLOP/s")
PY
    [ "${PIPESTATUS[0]}" = 0 ] || say "ceilings not measured (no GPU?)"

    # 1. Parity on the golden fixture: every variant, CUDA f32/bf16/f16 vs CPU f32.
    "$python" - "$fx" "$results/proprio.json" <<'PY'
import json, sys
from safetensors.numpy import load_file
fx, out = sys.argv[1], sys.argv[2]
g = json.load(open(f"{fx}/golden.json"))
t = load_file(f"{fx}/golden.safetensors")
n = len(g["deploy"]["steps"])
json.dump([t[f"deploy/step{i}/proprio"].reshape(-1).astype(float).tolist() for i in range(n)], open(out, "w"))
for v in ("deploy", "libero", "r2r"):
    open(f"{out}.{v}.instruction", "w").write(g[v]["instruction"])
PY
    local v decoder extra images
    for v in deploy libero r2r; do
        case $v in
        deploy) decoder=action_decoder.pt extra=(--proprio "$results/proprio.json") ;;
        libero) decoder=action_decoder_libero.pt extra=(--unnorm-key libero_10_no_noops) ;;
        r2r) decoder=action_decoder_r2r.pt extra=() ;;
        esac
        images=()
        for t in 0 1 2 3 4 5; do images+=(--image "$fx/images/${v}_step$t.png"); done
        say "compare $v: CUDA f32/bf16/f16 vs CPU f32"
        "$bin" compare --checkpoint "$ck" --decoder "$ck/$decoder" --device "$dev" --dtypes f32,bf16,f16 \
            --instruction "$(cat "$results/proprio.json.$v.instruction")" "${images[@]}" "${extra[@]}" \
            --json >"$results/compare_$v.json" 2>>"$results/log.txt" || say "compare $v failed (see log.txt)"
        # cuDNN convolutions (the patch embeddings) run in TF32 by default, as in PyTorch; the
        # same f32 comparison with TF32 off in every NVIDIA library shows what that costs.
        NVIDIA_TF32_OVERRIDE=0 "$bin" compare --checkpoint "$ck" --decoder "$ck/$decoder" --device "$dev" --dtypes f32 \
            --instruction "$(cat "$results/proprio.json.$v.instruction")" "${images[@]}" "${extra[@]}" \
            --json >"$results/compare_${v}_notf32.json" 2>>"$results/log.txt" || say "compare $v (no TF32) failed (see log.txt)"
    done
    # The CLI itself on CUDA (tokens must equal the golden ones, which the CPU tests pin).
    images=()
    for t in 0 1 2 3 4 5; do images+=(--image "$fx/images/r2r_step$t.png"); done
    "$bin" infer --greedy --json --device "$dev" --dtype f32 --checkpoint "$ck" --decoder "$ck/action_decoder_r2r.pt" \
        --instruction "$(cat "$results/proprio.json.r2r.instruction")" "${images[@]}" >"$results/infer_r2r_f32.json" 2>>"$results/log.txt" ||
        say "infer r2r failed (see log.txt)"

    # 2. Speed on the fixture (launch-bound: a floor for per-step overhead), for each way of
    # running the decode steps (`graphs` also replays the vision towers and the projector).
    local mode modes=${BENCH_DECODE_MODES:-dynamic fixed graphs}
    for mode in $modes; do
        "$bin" bench --checkpoint "$ck" --decoder "$ck/action_decoder.pt" --device "$dev" --dtype bf16 \
            --decode "$mode" --steps 50 --warmup 5 --json >"$results/bench_tiny_cuda_bf16_$mode.json" 2>>"$results/log.txt" ||
            say "bench tiny $mode failed (see log.txt)"
    done

    # 3. The 7B preset: drawn on the GPU, streamed to disk, loaded straight to the GPU in bf16.
    if [ "$skip_7b" != --skip-7b ]; then
        local ck7=${DEVICE_SCRATCH:-/tmp}/univla-7b
        local t0=$SECONDS
        "$bin" make-checkpoint --preset 7b --head realworld --device cuda --out "$ck7" 2>>"$results/log.txt"
        say "7b checkpoint written in $((SECONDS - t0)) s: $(du -sh "$ck7" | cut -f1)"
        for mode in $modes; do
            t0=$SECONDS
            "$bin" bench --checkpoint "$ck7" --decoder "$ck7/action_decoder.safetensors" \
                --realworld-stats "$ck7/realworld_stats.json" --device cuda --dtype bf16 --decode "$mode" \
                --steps "${BENCH_STEPS:-50}" --warmup 5 --json >"$results/bench_7b_cuda_bf16_$mode.json" 2>>"$results/log.txt" ||
                say "bench 7b $mode failed (see log.txt)"
            say "7b bench $mode (load included) took $((SECONDS - t0)) s"
        done
        # The same greedy latent ids from every decode mode on the 7B in bf16 (fixture images).
        images=()
        for t in 0 1 2 3 4 5; do images+=(--image "$fx/images/r2r_step$t.png"); done
        for mode in $modes; do
            "$bin" infer --greedy --json --device cuda --dtype bf16 --decode "$mode" --checkpoint "$ck7" \
                --decoder "$ck7/action_decoder.safetensors" --realworld-stats "$ck7/realworld_stats.json" \
                --proprio "$results/proprio.json" --instruction "$(cat "$results/proprio.json.r2r.instruction")" \
                "${images[@]}" >"$results/infer_7b_bf16_$mode.json" 2>>"$results/log.txt" || say "infer 7b $mode failed (see log.txt)"
        done
    fi
    summary "$results" | tee "$results/summary.txt"
}

# Prints the short table of a results folder.
summary() {
    "${DEVICE_PYTHON:-python3}" - "$1" <<'PY'
import glob, json, os, sys
d = sys.argv[1]
for f in ("env.txt", "ceilings.txt"):
    if os.path.exists(f"{d}/{f}"):
        print(open(f"{d}/{f}").read().strip())
print("== parity vs CPU f32 (fixture, 6 steps; min cosines over steps; [steps whose forced tokens agree])")
print(f"{'variant':14} {'target':16} {'tok free':>9} {'tok forced':>10} {'cos vis':>9} {'cos latent':>10} {'cos logits':>10} {'cos chunk':>9} {'cos action':>10} {'max|da|':>8}")
for v in [x + s for x in ("deploy", "libero", "r2r") for s in ("", "_notf32")]:
    p = f"{d}/compare_{v}.json"
    if not os.path.exists(p):
        print(v, "missing"); continue
    for r in json.load(open(p)):
        # Teacher-forced hidden states and logits diverge after a differing token: minima over
        # the steps whose 4 tokens agree (the step count in brackets).
        agree = [x for x in r["steps"] if x["forced_ids"] == x["reference_ids"]]
        if agree:
            r["min_cos_latent_action"] = min(x["cos_latent_action"] for x in agree)
            r["min_cos_logits"] = min(x["cos_logits"] for x in agree)
        print(f"{v:14} {r['device']+' '+r['dtype']:16} {r['free_tokens_equal']:>4}/{r['tokens_total']:<4} "
              f"{r['forced_tokens_equal']:>5}/{r['tokens_total']:<4} {r['min_cos_visual_embed']:9.6f} "
              f"{r['min_cos_latent_action']:10.6f} {r['min_cos_logits']:10.6f} {r['min_cos_chunk']:9.6f} "
              f"{r['min_cos_action']:10.6f} {r['max_abs_action']:8.1e} [{len(agree)}]")
def ids(p):
    try:
        return [s["latent_ids"] for s in json.load(open(p))]
    except (OSError, ValueError, KeyError, TypeError):
        return None
p = f"{d}/infer_r2r_f32.json"
if os.path.exists(p):
    print("infer r2r cuda f32 latent ids:", ids(p))
runs = sorted(glob.glob(f"{d}/infer_7b_bf16_*.json"))
if runs:
    got = {os.path.basename(p)[len("infer_7b_bf16_"):-5]: ids(p) for p in runs}
    first = next(iter(got.values()))
    print("== 7b bf16 greedy latent ids (r2r images) by decode mode:", "all identical" if all(v == first for v in got.values()) else "DIFFER")
    for mode, v in got.items():
        print(f"  {mode:8} {v}")
for p in sorted(glob.glob(f"{d}/bench_*.json")):
    name = os.path.basename(p)[:-5]
    if os.path.getsize(p) == 0:
        print(name, "missing"); continue
    b = json.load(open(p))
    print(f"== {name}: decode {b.get('decode')}, {b['steps']} steps, image {b['image']}, GPU memory in use {b.get('gpu_mem_used_mib')} MiB, peak RSS {b['peak_rss_mib']:.0f} MiB")
    print(f"{'stage':12} {'p50 ms':>8} {'p95 ms':>8} {'min ms':>8}")
    order = ["preprocess", "vision", "projector", "prefill", "token1", "decode1", "decode2", "decode3", "head", "postprocess"]
    stages = sorted(b["stages_ms"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
    for s, v in stages + [("step", b["step_ms"])]:
        print(f"{s:12} {v['median']:8.3f} {v['p95']:8.3f} {v['min']:8.3f}")
PY
}

case "${1:-}" in
bundle)
    shift
    bundle "$@"
    ;;
run)
    shift
    run "$@"
    ;;
summary)
    shift
    summary "$@"
    ;;
*)
    sed -n '2,16p' "$0" >&2
    exit 2
    ;;
esac
