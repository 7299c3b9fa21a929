//! Arguments shared by the subcommands that load a policy.
use std::path::PathBuf;

use univla_ros::model::generate::Decoding;
use univla_ros::runtime::device::{parse_device, parse_dtype};
use univla_ros::runtime::postprocess::Preset;
use univla_ros::runtime::preprocess::ResizeMethod;
use univla_ros::runtime::session::{Execution, PolicyOptions};

#[derive(clap::Args, Clone)]
#[command(group(clap::ArgGroup::new("decoding").args(["greedy", "seed"])))]
pub struct PolicyArgs {
    /// HF checkpoint directory (config.json, *.safetensors, tokenizer.json, …).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Action decoder head (`action_decoder.pt` as torch.save writes it, or .safetensors).
    #[arg(long)]
    pub decoder: PathBuf,
    /// Greedy decoding of the latent tokens (deterministic).
    #[arg(long)]
    pub greedy: bool,
    /// Sample as the reference deploys (T 0.75, top-k 50, top-p 0.9) with this seed.
    #[arg(long)]
    pub seed: Option<i64>,
    /// Dataset key for q01/q99 un-normalisation (LIBERO/Bridge), e.g. libero_10_no_noops.
    #[arg(long)]
    pub unnorm_key: Option<String>,
    /// Post-processing preset: libero, bridge, calvin, realworld, r2r (default: from the head).
    #[arg(long)]
    pub preset: Option<String>,
    /// Real-world z-score statistics (YAML/JSON with action_mean/std, qpos_mean/std).
    #[arg(long)]
    pub realworld_stats: Option<PathBuf>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32, bf16 or f16 for the VLM (heads always run in f32).
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Image resize: pil (exact reference), opencv-cubic or opencv-area (faster).
    #[arg(long, default_value = "pil")]
    pub resize: String,
    /// Decode steps: auto (CUDA graphs where built in and on CUDA, else dynamic), dynamic, fixed
    /// (device-side positions, eager) or graphs.
    #[arg(long, default_value = "auto")]
    pub decode: String,
    /// libtorch intra-op threads (default: libtorch's choice).
    #[arg(long)]
    pub threads: Option<i32>,
}

impl PolicyArgs {
    pub fn options(&self) -> anyhow::Result<PolicyOptions> {
        if let Some(n) = self.threads {
            tch::set_num_threads(n);
        }
        let mut o = PolicyOptions::new(&self.checkpoint, &self.decoder);
        o.device = parse_device(&self.device)?;
        o.dtype = parse_dtype(&self.dtype)?;
        o.decoding = if self.greedy {
            Decoding::Greedy
        } else {
            Decoding::reference_sampling()
        };
        o.seed = self.seed;
        o.unnorm_key = self.unnorm_key.clone();
        o.preset = match &self.preset {
            Some(p) => Some(Preset::from_name(p).ok_or_else(|| anyhow::anyhow!("unknown preset `{p}`"))?),
            None => None,
        };
        o.realworld_stats = self.realworld_stats.clone();
        o.execution = Execution::Ensemble;
        o.resize = match self.resize.as_str() {
            "pil" => ResizeMethod::PilBicubic,
            "opencv-cubic" => ResizeMethod::OpenCvCubic,
            "opencv-area" => ResizeMethod::OpenCvArea,
            other => anyhow::bail!("unknown resize `{other}`: pil, opencv-cubic or opencv-area"),
        };
        o.decode = self.decode.parse()?;
        o.progress = true;
        Ok(o)
    }
}
