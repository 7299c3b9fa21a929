//! Bad checkpoints fail with messages that name the file and the key (never a panic), and
//! libtorch's CUDA library stays linked into our binaries.
mod common;

use std::path::Path;

use tch::{Device, Kind};
use univla_ros::model::checkpoint::CheckpointFiles;
use univla_ros::model::generate::Decoding;
use univla_ros::model::heads::ActionHead;
use univla_ros::model::vla::UniVla;
use univla_ros::runtime::preprocess::RgbImage;
use univla_ros::runtime::session::{Policy, PolicyOptions, Session};

fn copy_checkpoint(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(common::checkpoint()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn load_err(dir: &Path) -> String {
    let files = CheckpointFiles::locate(dir).unwrap();
    UniVla::load(&files, Kind::Float, Device::Cpu, false)
        .unwrap_err()
        .to_string()
}

#[test]
fn truncated_weights_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    copy_checkpoint(tmp.path());
    let weights = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_err(tmp.path());
    assert!(err.contains("model.safetensors"), "{err}");
    std::fs::write(&weights, b"not a safetensors file").unwrap();
    let err = load_err(tmp.path());
    assert!(
        err.contains("model.safetensors") && err.contains("safetensors"),
        "{err}"
    );
}

#[test]
fn config_that_disagrees_with_weights_names_key_and_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    copy_checkpoint(tmp.path());
    let cfg_path = tmp.path().join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["text_config"]["intermediate_size"] = serde_json::json!(200);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let err = load_err(tmp.path());
    assert!(
        err.contains("mlp.gate_proj.weight") && err.contains("[200, 64]") && err.contains("[172, 64]"),
        "{err}"
    );
    cfg["text_config"]["num_attention_heads"] = serde_json::json!(3);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let err = load_err(tmp.path());
    assert!(err.contains("not a multiple of num_attention_heads"), "{err}");
}

#[test]
fn missing_files_and_wrong_heads_are_explained() {
    let tmp = tempfile::tempdir().unwrap();
    copy_checkpoint(tmp.path());
    std::fs::remove_file(tmp.path().join("tokenizer.json")).unwrap();
    let err = CheckpointFiles::locate(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
    // A head whose width does not fit the LM.
    let head = tmp.path().join("bad_head.safetensors");
    let tensors =
        univla_ros::model::synthetic::head_tensors(univla_ros::model::synthetic::HeadVariant::Libero, 32, 16, 12);
    tch::Tensor::write_safetensors(&tensors, &head).unwrap();
    copy_checkpoint(tmp.path());
    let err = Policy::load(PolicyOptions::new(tmp.path(), &head))
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad_head.safetensors") && err.contains("32"), "{err}");
    // A truncated torch.save head.
    let pt = tmp.path().join("action_decoder.pt");
    let bytes = std::fs::read(&pt).unwrap();
    std::fs::write(&pt, &bytes[..bytes.len() - 100]).unwrap();
    let err = ActionHead::load(&pt, Device::Cpu)
        .err()
        .expect("truncated head must not load")
        .to_string();
    assert!(err.contains("action_decoder.pt"), "{err}");
}

#[test]
fn seeded_sampling_is_reproducible() {
    let run = |seed: i64| {
        let mut opts = PolicyOptions::new(common::checkpoint(), common::checkpoint().join("action_decoder_r2r.pt"));
        opts.decoding = Decoding::reference_sampling();
        opts.seed = Some(seed);
        let mut s = Session::new(Policy::load(opts).unwrap()).unwrap();
        s.reset("go to the chair");
        (0..3)
            .map(|t| {
                let img = RgbImage::load(common::fixture().join(format!("images/r2r_step{t}.png"))).unwrap();
                s.step(&img, None).unwrap().inference.unwrap().latent_ids
            })
            .collect::<Vec<_>>()
    };
    let a = run(11);
    assert_eq!(a, run(11));
    assert!(a.iter().flatten().all(|id| *id > 32000), "{a:?}");
}

#[test]
fn instructions_that_overflow_the_prompt_are_rejected() {
    let opts = PolicyOptions::new(common::checkpoint(), common::checkpoint().join("action_decoder_r2r.pt"));
    let mut s = Session::new(Policy::load(opts).unwrap()).unwrap();
    s.reset(&"walk ".repeat(2000));
    let img = RgbImage::load(common::fixture().join("images/r2r_step0.png")).unwrap();
    let err = s.step(&img, None).unwrap_err().to_string();
    assert!(err.contains("instruction too long"), "{err}");
    // The session stays usable.
    s.reset("walk to the chair");
    assert!(s.step(&img, None).is_ok());
}

#[test]
fn libtorch_cuda_stays_linked() {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let torch_dir = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .map(|p| Path::new(p).parent().unwrap().to_path_buf())
        .expect("libtorch_cpu.so is mapped");
    if torch_dir.join("libtorch_cuda.so").exists() {
        assert!(
            maps.contains("libtorch_cuda.so"),
            "libtorch_cuda.so exists but was dropped by the linker"
        );
    }
    // And CUDA availability agrees with the device count (false with none, as on CI).
    assert_eq!(tch::Cuda::is_available(), tch::Cuda::device_count() > 0);
}
