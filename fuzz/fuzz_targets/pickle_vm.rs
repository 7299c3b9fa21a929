//! Fuzzes the non-executing pickle interpreter on arbitrary bytes. The module is included by path
//! (it is self-contained), so this target builds without libtorch.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../src/model/torch_pt/pickle.rs"]
#[allow(dead_code)]
mod pickle;

/// Tighter than the defaults so that one input stays cheap.
const LIMITS: pickle::Limits = pickle::Limits {
    max_memo: 1 << 16,
    max_stack: 1 << 16,
    max_nodes: 1 << 18,
    max_items: 1 << 18,
    max_bytes: 1 << 26,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = pickle::parse(data, LIMITS) {
        let _ = p.describe(p.root);
        for key in p.dict_keys(p.root) {
            if let Some(v) = p.dict_get(p.root, &key) {
                let _ = p.describe(v);
            }
        }
    }
});
