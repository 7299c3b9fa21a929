//! The `torch.save` reader: the fixture's `.pt` heads equal their safetensors twins exactly; a
//! Lightning-shaped checkpoint (made by test/data/torch_pt/make_fixtures.py) loads its `state_dict`
//! with every dtype and view kind; damaged files (truncated, flipped bytes, mutated pickles) give
//! errors, never panics.
mod common;

use std::collections::HashMap;
use std::io::{Cursor, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use common::checkpoint;
use tch::{Device, Kind, Tensor};
use univla_ros::model::torch_pt::{self, pickle};

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("test/data/torch_pt")
}

fn as_map(v: Vec<(String, Tensor)>) -> HashMap<String, Tensor> {
    v.into_iter().collect()
}

fn assert_same(what: &str, a: &Tensor, e: &Tensor) {
    assert_eq!(a.kind(), e.kind(), "{what}: dtype");
    assert_eq!(a.size(), e.size(), "{what}: shape");
    assert!(a.is_contiguous(), "{what}: not contiguous");
    assert!(a.equal(e), "{what}: values differ:\n{a}\nvs\n{e}");
}

#[test]
fn fixture_pt_files_equal_their_safetensors() {
    for name in ["action_decoder", "action_decoder_libero", "action_decoder_r2r"] {
        let pt = torch_pt::read_state_dict(&checkpoint().join(format!("{name}.pt")), None).unwrap();
        let keys_in_order: Vec<&str> = pt.iter().map(|(k, _)| k.as_str()).collect();
        assert!(
            keys_in_order.iter().any(|k| k.ends_with("visual_pool.latents")),
            "{name}: {keys_in_order:?}"
        );
        let st = as_map(Tensor::read_safetensors(checkpoint().join(format!("{name}.safetensors"))).unwrap());
        let pt = as_map(pt);
        let mut a: Vec<&String> = pt.keys().collect();
        let mut b: Vec<&String> = st.keys().collect();
        a.sort();
        b.sort();
        assert_eq!(a, b, "{name}: keys");
        for (k, t) in &pt {
            assert_same(&format!("{name}:{k}"), t, &st[k]);
        }
    }
}

fn f32s(v: &[f32], shape: &[i64]) -> Tensor {
    Tensor::from_slice(v).reshape(shape)
}

#[test]
fn lightning_checkpoint_state_dict_loads_every_dtype_and_view() {
    let path = data_dir().join("lightning_like.ckpt");
    let all = torch_pt::read_state_dict(&path, Some("state_dict")).unwrap();
    assert_eq!(all.len(), 16);
    let sd = torch_pt::strip_prefix(all, "lam.");
    let keys: Vec<&str> = sd.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys[..3], ["encoder.weight", "encoder.weight_t", "slice"], "file order");
    assert!(!keys.contains(&"other.bias") && !keys.contains(&"bias"));
    let sd = as_map(sd);
    assert_eq!(sd.len(), 15);
    let w = Tensor::arange(24, (Kind::Float, Device::Cpu)).reshape([4, 6]) / 8.0;
    assert_same("encoder.weight", &sd["encoder.weight"], &w);
    assert_same("encoder.weight_t", &sd["encoder.weight_t"], &w.tr().contiguous());
    let slice: Vec<f32> = (0..10).map(|i| (10 + 2 * i) as f32).collect();
    assert_same("slice", &sd["slice"], &f32s(&slice, &[10]));
    assert_same(
        "expanded",
        &sd["expanded"],
        &f32s(&[0.0, 1.0, 2.0, 0.0, 1.0, 2.0], &[2, 3]),
    );
    let half = (Tensor::arange(6, (Kind::Float, Device::Cpu)) * 0.5)
        .reshape([2, 3])
        .to_kind(Kind::Half);
    assert_same("half", &sd["half"], &half);
    let bf16 = (Tensor::arange(5, (Kind::Float, Device::Cpu)) - 2.0).to_kind(Kind::BFloat16);
    assert_same("bf16", &sd["bf16"], &bf16);
    let double = Tensor::from_slice(&[0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0]);
    assert_same("double", &sd["double"], &double);
    let long: Vec<i64> = (-3..3).map(|i| i * (1i64 << 40)).collect();
    assert_same("long", &sd["long"], &Tensor::from_slice(&long));
    assert_same("int", &sd["int"], &Tensor::from_slice(&[0i32, -1000, -2000, -3000]));
    assert_same("int8", &sd["int8"], &Tensor::from_slice(&[-128i8, -1, 0, 127]));
    assert_same("uint8", &sd["uint8"], &Tensor::from_slice(&[0u8, 255, 7]));
    assert_same("bool", &sd["bool"], &Tensor::from_slice(&[true, false, true]));
    assert_same("param", &sd["param"], &f32s(&[0.25, 1.25, 2.25], &[3]));
    assert_same("scalar", &sd["scalar"], &Tensor::from(2.5f32));
    assert_same(
        "empty",
        &sd["empty"],
        &Tensor::zeros([0, 3], (Kind::Float, Device::Cpu)),
    );
}

#[test]
fn top_level_read_flattens_nested_dicts_and_skips_other_values() {
    let path = data_dir().join("lightning_like.ckpt");
    let all = as_map(torch_pt::read_state_dict(&path, None).unwrap());
    assert!(all.contains_key("state_dict.lam.encoder.weight"));
    let score = &all["callbacks.ModelCheckpoint{'monitor': 'val_loss'}.best_model_score"];
    assert_same("best_model_score", score, &Tensor::from(0.5f32));
    // Optimizer states sit in a list: not part of a state dict.
    assert!(!all.keys().any(|k| k.contains("exp_avg")));
    assert_eq!(all.len(), 17);
}

#[test]
fn missing_subkey_names_file_and_available_keys() {
    let path = data_dir().join("lightning_like.ckpt");
    let e = torch_pt::read_state_dict(&path, Some("model")).unwrap_err().to_string();
    assert!(e.contains("lightning_like.ckpt") && e.contains("`model`"), "{e}");
    assert!(e.contains("state_dict") && e.contains("optimizer_states"), "{e}");
    let e = torch_pt::read_state_dict(&path, Some("epoch")).unwrap_err().to_string();
    assert!(e.contains("expected a dict of tensors"), "{e}");
}

#[test]
fn protocol4_and_legacy_files() {
    let sd = as_map(torch_pt::read_state_dict(&data_dir().join("protocol4.pt"), None).unwrap());
    assert_same("a", &sd["a"], &f32s(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], &[2, 3]));
    assert_same("b", &sd["b"], &Tensor::from_slice(&[7i64]));
    let e = torch_pt::read_state_dict(&data_dir().join("legacy.pt"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("legacy.pt") && e.contains("zip"), "{e}");
    let e = torch_pt::read_state_dict(Path::new("no/such/file.pt"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no/such/file.pt"), "{e}");
}

/// A deterministic generator for mutation positions (no wall-clock or OS randomness).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn try_read(bytes: Vec<u8>, what: &str) -> Result<Vec<(String, Tensor)>, String> {
    let label = PathBuf::from(what);
    let r = catch_unwind(AssertUnwindSafe(|| {
        torch_pt::read_state_dict_from(Cursor::new(bytes), &label, None)
    }));
    match r {
        Ok(res) => res.map_err(|e| {
            let msg = e.to_string();
            assert!(msg.contains(what), "error does not name the file: {msg}");
            msg
        }),
        Err(_) => panic!("{what}: the reader panicked"),
    }
}

#[test]
fn truncated_files_are_errors() {
    for (file, count) in [
        (data_dir().join("lightning_like.ckpt"), 400usize),
        (checkpoint().join("action_decoder_libero.pt"), 60),
    ] {
        let bytes = std::fs::read(&file).unwrap();
        for i in 0..count {
            let cut = i * bytes.len() / count;
            let r = try_read(bytes[..cut].to_vec(), &format!("truncated-at-{cut}"));
            assert!(r.is_err(), "{}: truncation at {cut} was accepted", file.display());
        }
    }
}

#[test]
fn flipped_bytes_never_panic_and_are_caught_in_the_pickle() {
    let path = data_dir().join("lightning_like.ckpt");
    let bytes = std::fs::read(&path).unwrap();
    let pkl_range = {
        let mut z = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        let name = z.file_names().find(|n| n.ends_with("/data.pkl")).unwrap().to_owned();
        let f = z.by_name(&name).unwrap();
        f.data_start() as usize..(f.data_start() + f.compressed_size()) as usize
    };
    let mut rng = Lcg(0x5eed);
    let (mut in_pickle, mut caught) = (0, 0);
    for i in 0..600 {
        let mut m = bytes.clone();
        // Half the flips land in data.pkl, where the zip CRC must catch every single-bit error.
        let pos = if i % 2 == 0 {
            pkl_range.start + rng.next() as usize % pkl_range.len()
        } else {
            rng.next() as usize % m.len()
        };
        m[pos] ^= 1 << (rng.next() % 8);
        let result = try_read(m, &format!("flip-{i}-at-{pos}"));
        if pkl_range.contains(&pos) {
            in_pickle += 1;
            caught += usize::from(result.is_err());
        }
    }
    assert!(in_pickle >= 300);
    assert_eq!(caught, in_pickle, "bit flips inside data.pkl went unnoticed");
}

fn read_pickle(ckpt: &Path) -> (String, Vec<u8>, zip::ZipArchive<std::fs::File>) {
    let mut z = zip::ZipArchive::new(std::fs::File::open(ckpt).unwrap()).unwrap();
    let name = z.file_names().find(|n| n.ends_with("/data.pkl")).unwrap().to_owned();
    let mut pkl = Vec::new();
    z.by_name(&name).unwrap().read_to_end(&mut pkl).unwrap();
    (name, pkl, z)
}

/// Rebuilds the archive with a replacement `data.pkl` (so the CRC matches the mutation).
fn rezip(z: &mut zip::ZipArchive<std::fs::File>, pkl_name: &str, pkl: &[u8]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let name = f.name().to_owned();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        w.start_file(name.as_str(), opts).unwrap();
        w.write_all(if name == pkl_name { pkl } else { &data }).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn mutated_pickles_never_panic() {
    let (name, pkl, mut z) = read_pickle(&data_dir().join("lightning_like.ckpt"));
    // Unchanged, the rebuilt archive still loads: the harness itself is sound.
    assert_eq!(try_read(rezip(&mut z, &name, &pkl), "rezipped").unwrap().len(), 17);
    let mut rng = Lcg(42);
    let mut rejected = 0;
    // A pickle cut anywhere loses its STOP opcode: every truncation the reader sees must fail.
    let (mut truncations, mut truncations_rejected) = (0, 0);
    const MUTATIONS: usize = 1500;
    for i in 0..MUTATIONS {
        let mut m = pkl.clone();
        match i % 3 {
            0 => {
                let pos = rng.next() as usize % m.len();
                m[pos] = rng.next() as u8;
            }
            1 => m.truncate(rng.next() as usize % m.len()),
            _ => {
                let pos = rng.next() as usize % m.len();
                let len = (rng.next() as usize % 16).min(m.len() - pos);
                let src = rng.next() as usize % (m.len() - len);
                let chunk = m[src..src + len].to_vec();
                m.splice(pos..pos, chunk);
            }
        }
        let parsed = catch_unwind(|| pickle::parse(&m, pickle::Limits::default()));
        assert!(parsed.is_ok(), "pickle::parse panicked on mutation {i}");
        // The full reader only on a subset: rezipping costs more than parsing.
        if i % 5 == 0 {
            let failed = try_read(rezip(&mut z, &name, &m), &format!("pickle-mutation-{i}")).is_err();
            rejected += usize::from(failed);
            if i % 3 == 1 {
                truncations += 1;
                truncations_rejected += usize::from(failed);
            }
        }
    }
    assert!(
        truncations > 0 && truncations_rejected == truncations,
        "{truncations_rejected}/{truncations} truncated pickles rejected"
    );
    assert!(
        rejected > truncations,
        "no corrupted (not truncated) pickle was rejected"
    );
}

#[test]
fn deeply_nested_parameters_are_an_error_not_a_stack_overflow() {
    let (name, _, mut z) = read_pickle(&data_dir().join("lightning_like.ckpt"));
    let nested = |depth: usize| {
        let mut p = vec![0x80, 2, b'}', b'X', 1, 0, 0, 0, b'w', b'c'];
        p.extend(b"torch._utils\n_rebuild_parameter\n");
        p.extend([b'q', 0, b'0']);
        p.extend([b'h', 0].repeat(depth));
        p.push(b'N');
        p.extend([0x85, b'R'].repeat(depth));
        p.extend([b's', b'.']);
        p
    };
    // Within the pickle's memory budget, the reader's own nesting limit stops the walk.
    let e = try_read(rezip(&mut z, &name, &nested(5_000)), "nested.pt").unwrap_err();
    assert!(e.contains("nested too deeply"), "{e}");
    // Deeper, two nodes per two input bytes exceed the budget while the pickle is interpreted.
    let e = try_read(rezip(&mut z, &name, &nested(200_000)), "nested.pt").unwrap_err();
    assert!(e.contains("budget"), "{e}");
}

/// Writers for hand-made hostile pickles (protocol 2) and the archive around them.
mod hostile {
    use std::io::{Cursor, Write};

    pub fn text(p: &mut Vec<u8>, s: &str) {
        p.push(b'X');
        p.extend((s.len() as u32).to_le_bytes());
        p.extend(s.as_bytes());
    }

    pub fn int(p: &mut Vec<u8>, v: i32) {
        p.push(b'J');
        p.extend(v.to_le_bytes());
    }

    fn int_tuple(p: &mut Vec<u8>, vs: &[i32]) {
        p.push(b'(');
        for &v in vs {
            int(p, v);
        }
        p.push(b't');
    }

    /// `_rebuild_tensor_v2(storage(key, class, numel), offset, size, stride, False, {})`.
    pub fn tensor(p: &mut Vec<u8>, class: &str, key: &str, numel: i32, offset: i32, size: &[i32], stride: &[i32]) {
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.push(b'(');
        text(p, "storage");
        p.extend(format!("ctorch\n{class}\n").as_bytes());
        text(p, key);
        text(p, "cpu");
        int(p, numel);
        p.extend(b"tQ");
        int(p, offset);
        int_tuple(p, size);
        int_tuple(p, stride);
        p.push(0x89);
        p.extend(b"ccollections\nOrderedDict\n)R");
        p.extend(b"tR");
    }

    /// A `torch.save` zip: `archive/data.pkl`, `archive/data/<key>` and the byte order.
    pub fn archive(pkl: &[u8], storages: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        w.start_file("archive/data.pkl", opts).unwrap();
        w.write_all(pkl).unwrap();
        w.start_file("archive/byteorder", opts).unwrap();
        w.write_all(b"little").unwrap();
        for (key, data) in storages {
            w.start_file(format!("archive/data/{key}"), opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    /// `{key_i: value_i}` for `n` entries written by `entry(i, pickle)`, in SETITEMS batches of
    /// 1000 (as pickle writes them).
    pub fn dict(p: &mut Vec<u8>, n: usize, mut entry: impl FnMut(usize, &mut Vec<u8>)) {
        p.push(b'}');
        for start in (0..n).step_by(1000) {
            p.push(b'(');
            for i in start..n.min(start + 1000) {
                entry(i, p);
            }
            p.push(b'u');
        }
    }
}

#[test]
fn many_views_of_one_expanded_storage_fail_on_the_budget() {
    // 10⁵ entries, each the same memoised tensor: 2²⁶ doubles (512 MiB) expanded from a
    // one-element storage. Copying each would ask for 10⁵ × 512 MiB; the budget refuses the
    // first before any storage is read.
    let mut p = vec![0x80, 2];
    let mut first = true;
    hostile::dict(&mut p, 100_000, |i, p| {
        hostile::text(p, &format!("k{i}"));
        if first {
            hostile::tensor(p, "DoubleStorage", "0", 1, 0, &[1 << 26], &[0]);
            p.extend([b'q', 1]);
            first = false;
        } else {
            p.extend([b'h', 1]);
        }
    });
    p.push(b'.');
    let file = hostile::archive(&p, &[("0", 1.5f64.to_le_bytes().to_vec())]);
    let e = try_read(file, "expanded-views.pt").unwrap_err();
    assert!(e.contains("budget") && e.contains("k0"), "{e}");
}

#[test]
fn a_huge_key_referenced_a_million_times_fails_on_the_budget() {
    // One 1 MiB key, memoised once and used for 10⁶ entries of a one-element tensor: the keys
    // would be 1 TB of text if each were built.
    let mut p = vec![0x80, 2];
    hostile::tensor(&mut p, "FloatStorage", "0", 1, 0, &[1], &[1]);
    p.extend([b'q', 1, b'0']);
    hostile::dict(&mut p, 1_000_000, |i, p| {
        if i == 0 {
            hostile::text(p, &"k".repeat(1 << 20));
            p.extend([b'q', 2]);
        } else {
            p.extend([b'h', 2]);
        }
        p.extend([b'h', 1]);
    });
    p.push(b'.');
    let file = hostile::archive(&p, &[("0", 1.0f32.to_le_bytes().to_vec())]);
    let e = try_read(file, "huge-key.pt").unwrap_err();
    assert!(e.contains("budget") && e.contains("key"), "{e}");
}

#[test]
fn a_huge_name_memoised_for_many_globals_fails_in_the_pickle() {
    // STACK_GLOBAL on the same memoised 1 MiB strings 10⁵ times: 200 GB if each copied them.
    let mut p = vec![0x80, 4];
    hostile::text(&mut p, &"m".repeat(1 << 20));
    p.extend([b'q', 1]);
    p.push(b'(');
    for _ in 0..100_000 {
        p.extend([b'h', 1, b'h', 1, 0x93, b'0']);
    }
    p.extend([b'1', b'N', b'.']);
    let e = pickle::parse(&p, pickle::Limits::default()).unwrap_err().to_string();
    assert!(e.contains("budget"), "{e}");
}

#[test]
fn contiguous_views_share_their_storage() {
    // 100 slices of one 1000-element storage: one storage in memory, each slice a view into it.
    let mut p = vec![0x80, 2];
    hostile::dict(&mut p, 100, |i, p| {
        hostile::text(p, &format!("s{i}"));
        hostile::tensor(p, "FloatStorage", "0", 1000, 10 * i as i32, &[10], &[1]);
    });
    p.push(b'.');
    let data: Vec<u8> = (0..1000).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let sd = try_read(hostile::archive(&p, &[("0", data)]), "slices.pt").unwrap();
    assert_eq!(sd.len(), 100);
    let base = sd[0].1.data_ptr() as usize;
    for (i, (name, t)) in sd.iter().enumerate() {
        assert_eq!(name, &format!("s{i}"));
        assert_eq!(t.double_value(&[0]), (10 * i) as f64);
        assert_eq!(t.data_ptr() as usize, base + 40 * i, "{name} is a copy, not a view");
    }
}

#[test]
fn views_beyond_their_storage_and_inconsistent_storages_are_refused() {
    let read = |p: Vec<u8>, what: &str| {
        let data: Vec<u8> = (0..10).flat_map(|i| (i as f32).to_le_bytes()).collect();
        try_read(hostile::archive(&p, &[("0", data)]), what).unwrap_err()
    };
    // offset 4 + (3 − 1)·3 = 10: one past the end of a 10-element storage.
    let mut p = vec![0x80, 2];
    hostile::dict(&mut p, 1, |_, p| {
        hostile::text(p, "w");
        hostile::tensor(p, "FloatStorage", "0", 10, 4, &[3], &[3]);
    });
    p.push(b'.');
    let e = read(p, "extent.pt");
    assert!(e.contains("`w`") && e.contains("reaches element 10"), "{e}");
    // The same storage declared as floats and as doubles.
    let mut p = vec![0x80, 2];
    hostile::dict(&mut p, 2, |i, p| {
        hostile::text(p, &format!("t{i}"));
        let class = if i == 0 { "FloatStorage" } else { "DoubleStorage" };
        hostile::tensor(p, class, "0", 10, 0, &[2], &[1]);
    });
    p.push(b'.');
    let e = read(p, "two-kinds.pt");
    assert!(e.contains("`t1`") && e.contains("storage 0"), "{e}");
}
