//! Fuzzes the whole `torch.save` reader (zip archive, pickle, storages, strided views).
#![no_main]

use std::io::Cursor;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = univla_ros::model::torch_pt::read_state_dict_from(Cursor::new(data), Path::new("fuzz.pt"), None);
    let _ =
        univla_ros::model::torch_pt::read_state_dict_from(Cursor::new(data), Path::new("fuzz.pt"), Some("state_dict"));
});
