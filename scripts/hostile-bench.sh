#!/usr/bin/env bash
# Hostile-input benchmark: generates a corpus of corrupted and malicious checkpoints, images,
# bags and node settings in a temporary directory (nothing large is stored), runs each through
# the CLI or a node binary as a user would, and prints one row per case: exit code, seconds and
# peak RSS, against a normal `univla infer` run on the tiny fixture.
#
# Budget (checked, the script exits 1 on a miss): every case ends in under 2 s with a non-zero exit
# (never 101, a panic) and a one-line error, and peaks at most 300 MiB above the normal run.
#
#   scripts/hostile-bench.sh [--release]     # default: the debug binaries (cargo build first)
#
# The node cases fail at start-up, before any DDS socket is opened; the script still runs them in
# a private network namespace when it can (as root), like the tests.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=env.sh
source scripts/env.sh
profile=debug
[ "${1:-}" = "--release" ] && profile=release
cargo_flags=()
[ "$profile" = release ] && cargo_flags=(--release)
cargo build --locked "${cargo_flags[@]}" --bin univla --bin univla_arm --bin univla_nav >&2
bin="$root/target/$profile"
py="$root/.venv/bin/python"
fixture="$root/test/data/univla-tiny"
image="$fixture/images/libero_step0.png"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
budget_s=2
budget_rss_mib=300

# --- the corpus --------------------------------------------------------------------------------
ckpt() { # ckpt NAME PYTHON-EDIT: a copy of the fixture checkpoint with one JSON file edited
    local d="$work/$1"
    cp -r "$fixture/checkpoint" "$d"
    "$py" - "$d" "$2" <<'EOF'
import json, sys, pathlib
d = pathlib.Path(sys.argv[1])
file, path, value = sys.argv[2].split("|")
p = d / file
j = json.loads(p.read_text())
node = j
keys = path.split(".")
# A key of digits indexes a list.
idx = lambda k: int(k) if k.isdigit() else k
for k in keys[:-1]:
    node = node[idx(k)]
node[idx(keys[-1])] = json.loads(value)
p.write_text(json.dumps(j))
EOF
}
ckpt kv_heads_0 'config.json|text_config.num_key_value_heads|0'
ckpt max_pos_neg 'config.json|text_config.max_position_embeddings|-1'
ckpt rope_theta_0 'config.json|text_config.rope_theta|0'
ckpt eos_outside 'config.json|text_config.eos_token_id|1000000000'
ckpt hidden_indivisible 'config.json|text_config.hidden_size|33'
ckpt image_mean_short 'preprocessor_config.json|tvf_normalize_params.0.mean|[0.5]'

"$py" - "$work" "$image" <<'EOF'
import struct, sys, zlib, pathlib
out = pathlib.Path(sys.argv[1])
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
# A valid PNG of 32768x32768 gray pixels, all zero: about 1 MB on disk, 1 GiB decoded.
w = h = 32768
comp = zlib.compressobj(9)
row = b"\0" * (w + 1)
parts = [comp.compress(row) for _ in range(h)]
parts.append(comp.flush())
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
png += chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
(out / "bomb.png").write_bytes(png)
# A JPEG whose frame header declares 65535x65535.
sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 65535, 65535, 1) + b"\x01\x11\x00"
(out / "huge.jpg").write_bytes(b"\xff\xd8" + sof + b"\xff\xd9")
normal = pathlib.Path(sys.argv[2]).read_bytes()
(out / "truncated.png").write_bytes(normal[: len(normal) // 2])
(out / "not_an_image.png").write_bytes(b"GIF89a" + b"\0" * 64)
EOF

# Bags: written by the independent PyPI `rosbags` (test/bags/make_bags.py), then damaged.
"$py" test/bags/make_bags.py "$work/bags" >/dev/null
mcap_dir="$work/bags/rosbags_mcap"
db3_dir="$work/bags/rosbags_sqlite3"
mkdir -p "$work/fifo_bag" && mkfifo "$work/fifo_bag/x.db3"
cp -r "$mcap_dir" "$work/escape_bag"
sed -i 's|^\(\s*\)- \(.*\.mcap\)$|\1- ../../../../etc/passwd|' "$work/escape_bag/metadata.yaml"
cp -r "$db3_dir" "$work/view_bag"
"$py" - "$work/view_bag" <<'EOF'
import glob, sqlite3, sys
db = sqlite3.connect(glob.glob(sys.argv[1] + "/*.db3")[0])
db.executescript(
    "ALTER TABLE messages RENAME TO real_messages;"
    "CREATE VIEW messages AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
    "SELECT i AS id, 1 AS topic_id, i AS timestamp, x'00' AS data FROM n;")
db.commit()
EOF
cp -r "$mcap_dir" "$work/chunk_tb_bag"
cp -r "$mcap_dir" "$work/summary_tb_bag"
"$py" - "$work/chunk_tb_bag" "$work/summary_tb_bag" <<'EOF'
import glob, struct, sys
def patch(d, what):
    f = glob.glob(d + "/*.mcap")[0]
    b = bytearray(open(f, "rb").read())
    footer = len(b) - 8 - 29
    start, offsets = struct.unpack_from("<QQ", b, footer + 9)
    end = offsets or footer
    at = start
    while at < end:
        op, n = b[at], struct.unpack_from("<Q", b, at + 1)[0]
        if what == "chunk" and op == 0x08:
            struct.pack_into("<Q", b, at + 9 + n - 8, 1 << 40)  # uncompressed_size
            break
        if what == "summary":
            struct.pack_into("<Q", b, at + 1, 1 << 40)  # the first summary record's length
            break
        at += 9 + n
    b[len(b) - 12:len(b) - 8] = b"\0\0\0\0"  # summary CRC: not computed
    open(f, "wb").write(bytes(b))
patch(sys.argv[1], "chunk")
patch(sys.argv[2], "summary")
EOF
cp -r "$mcap_dir" "$work/truncated_bag"
f=$(ls "$work"/truncated_bag/*.mcap) && truncate -s 2000 "$f"

# A URDF with nested entities (a "billion laughs"): 10^9 expansions if nothing stops them.
{
    echo '<?xml version="1.0"?><!DOCTYPE r ['
    echo '<!ENTITY a "aaaaaaaaaa">'
    prev=a
    for e in b c d e f g h i; do
        echo "<!ENTITY $e \"$(printf '&%s;' $prev $prev $prev $prev $prev $prev $prev $prev $prev $prev)\">"
        prev=$e
    done
    echo ']><robot name="r"><link name="base_link">&i;</link></robot>'
} >"$work/laughs.urdf"

# --- the runs ----------------------------------------------------------------------------------
netns=()
if [ "$(id -u)" -eq 0 ] && unshare --net true 2>/dev/null; then
    netns=(unshare --net --)
fi
printf '%-40s %5s %8s %10s  %s\n' case exit seconds "peak MiB" "error (first line)"
fail=0
normal_mib=0

# run NAME CMD...: runs one case and checks it against the budget.
run() {
    local name=$1 err="$work/stderr" code secs kib mib msg lines
    shift
    set +e
    RUST_BACKTRACE=0 RUST_LOG=error timeout 30 "${netns[@]}" /usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null 2>"$err"
    code=$?
    set -e
    read -r secs kib < <(tail -n 1 "$work/time") || { secs=99; kib=0; }
    mib=$((kib / 1024))
    msg=$(grep -v '^\s*$' "$err" | head -n 1 | cut -c1-110 || true)
    lines=$(grep -cv '^\s*$' "$err" || true)
    printf '%-40s %5s %8s %10s  %s\n' "$name" "$code" "$secs" "$mib" "$msg"
    if [ "$name" = "normal infer" ]; then
        normal_mib=$mib
        [ "$code" -eq 0 ] || { echo "  !! the normal run failed"; fail=1; }
        return
    fi
    if [ "$code" -eq 0 ] || [ "$code" -eq 101 ] || [ "$code" -ge 124 ]; then
        echo "  !! exit $code (want a clean non-zero exit)"; fail=1
    fi
    if awk -v s="$secs" -v b="$budget_s" 'BEGIN { exit !(s + 0 >= b) }'; then
        echo "  !! over ${budget_s} s"; fail=1
    fi
    if [ "$mib" -gt $((normal_mib + budget_rss_mib)) ]; then
        echo "  !! peak RSS ${mib} MiB > normal ${normal_mib} + ${budget_rss_mib} MiB"; fail=1
    fi
    if [ "$lines" -gt 1 ]; then
        echo "  !! $lines lines on stderr (want a one-line error)"; fail=1
    fi
}

infer=("$bin/univla" infer --greedy --unnorm-key libero_10_no_noops --instruction "pick up the bowl")
infer_img() { run "$1" "${infer[@]}" --checkpoint "$fixture/checkpoint" --decoder "$fixture/checkpoint/action_decoder_libero.pt" --image "$2"; }
infer_ck() { run "$1" "${infer[@]}" --checkpoint "$work/$2" --decoder "$work/$2/action_decoder_libero.pt" --image "$image"; }
eval_bag() {
    run "$1" "$bin/univla" eval-bag --checkpoint "$fixture/checkpoint" --decoder "$fixture/checkpoint/action_decoder_libero.pt" \
        --greedy --unnorm-key libero_10_no_noops --camera /camera/image_raw --command /joint_trajectory \
        --quiet --no-plots -o "$work/out" "$2"
}
arm=("$bin/univla_arm" --ros-args -p "checkpoint:=$fixture/checkpoint" -p "decoder:=$fixture/checkpoint/action_decoder_libero.pt"
    -p "unnorm_key:=libero_10_no_noops" -p "joint_names:=[a,b,c,d,e,f,g]")

infer_img "normal infer" "$image"
infer_ck "config num_key_value_heads=0" kv_heads_0
infer_ck "config max_position_embeddings=-1" max_pos_neg
infer_ck "config rope_theta=0" rope_theta_0
infer_ck "config eos_token_id outside vocab" eos_outside
infer_ck "config hidden_size not divisible" hidden_indivisible
infer_ck "preprocessor mean too short" image_mean_short
infer_img "PNG 32768x32768 (1 MB file)" "$work/bomb.png"
infer_img "JPEG header 65535x65535" "$work/huge.jpg"
infer_img "PNG truncated" "$work/truncated.png"
infer_img "not PNG/JPEG" "$work/not_an_image.png"
eval_bag "bag: FIFO named x.db3" "$work/fifo_bag"
eval_bag "bag: metadata path leaves the bag" "$work/escape_bag"
eval_bag "bag: sqlite messages = recursive view" "$work/view_bag"
eval_bag "bag: MCAP chunk of 1 TiB" "$work/chunk_tb_bag"
eval_bag "bag: MCAP summary record of 1 TiB" "$work/summary_tb_bag"
eval_bag "bag: MCAP truncated" "$work/truncated_bag"
run "arm: control_rate_hz:=1e-300" "${arm[@]}" -p control_rate_hz:=1e-300
run "arm: image_timeout_s:=1e20" "${arm[@]}" -p image_timeout_s:=1e20
run "arm: max_image_pixels:=0" "${arm[@]}" -p max_image_pixels:=0
run "arm: URDF billion laughs" "${arm[@]}" -p "urdf_path:=$work/laughs.urdf" -p urdf_base_link:=base_link -p urdf_tip_link:=tool0
run "nav: turn_deg:=1e300" "$bin/univla_nav" --ros-args -p "checkpoint:=$fixture/checkpoint" \
    -p "decoder:=$fixture/checkpoint/action_decoder_r2r.pt" -p turn_deg:=1e300

echo "profile: $profile; budget: < ${budget_s} s, peak RSS <= normal (${normal_mib} MiB) + ${budget_rss_mib} MiB"
exit $fail
