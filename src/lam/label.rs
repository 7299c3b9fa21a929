//! `univla label`: latent-action labels of a frame sequence, written as JSON or CSV with the
//! `<ACT_i>` strings and code histograms.
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tch::Device;

use super::checkpoint;
use super::error::{LamError, Result};
use super::model::{LamConfig, LatentActionModel};
use super::preprocess::list_frame_files;
use super::sequence::{label_frames, StepLabel};
use crate::runtime::preprocess::RgbImage;

/// LAM frame interval k of LIBERO and CALVIN (o_t → o_{t+11}).
pub const INTERVAL_LIBERO: usize = 11;
pub const INTERVAL_CALVIN: usize = 11;
/// LAM frame interval of R2R (o_3 → o_6).
pub const INTERVAL_R2R: usize = 3;
/// Pairs per encoder batch unless told otherwise.
pub const DEFAULT_BATCH: usize = 8;

/// Benchmarks whose fine-tuning fixed the LAM frame interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LamDataset {
    Libero,
    Calvin,
    R2r,
    /// Real-world fine-tuning: k = window − 1.
    Realworld,
}

/// Frame interval k for a dataset; `window` is the real-world action chunk W (k = W − 1).
pub fn frame_interval(dataset: LamDataset, window: Option<usize>) -> Result<usize> {
    match dataset {
        LamDataset::Libero => Ok(INTERVAL_LIBERO),
        LamDataset::Calvin => Ok(INTERVAL_CALVIN),
        LamDataset::R2r => Ok(INTERVAL_R2R),
        LamDataset::Realworld => match window {
            Some(w) if w >= 2 => Ok(w - 1),
            Some(w) => Err(LamError::Config(format!("real-world window {w} must be ≥ 2"))),
            None => Err(LamError::Config(
                "--dataset realworld needs --window W (interval = W - 1)".into(),
            )),
        },
    }
}

/// Arguments of `univla label`.
#[derive(clap::Args, Clone, Debug)]
pub struct LabelArgs {
    /// LAM checkpoint: safetensors (with or without the `lam.` prefix) or Lightning `.ckpt`.
    #[arg(long, value_name = "LAM")]
    pub checkpoint: PathBuf,
    /// Folder of frames (PNG/JPEG), in file-name order.
    #[arg(long, value_name = "DIR")]
    pub video_frames: Option<PathBuf>,
    /// Frame interval k: label (o_t, o_{t+k}).
    #[arg(long, value_name = "K", conflicts_with = "dataset")]
    pub interval: Option<usize>,
    /// Take the interval of this benchmark (11 LIBERO/CALVIN, 3 R2R, W-1 real world).
    #[arg(long, value_enum)]
    pub dataset: Option<LamDataset>,
    /// Real-world action chunk W (with `--dataset realworld`).
    #[arg(long, value_name = "W")]
    pub window: Option<usize>,
    /// Output file, `.json` or `.csv` (CSV also writes `<stem>.histogram.csv`); with
    /// [`run_label_cli`], JSON goes to stdout when absent.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Torch device: cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Frame pairs per encoder batch.
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    pub batch_size: usize,
    /// Encoder attention heads (default: `lam_num_heads` of a Lightning .ckpt's hyper_parameters,
    /// else width/64).
    #[arg(long)]
    pub encoder_heads: Option<i64>,
    /// DINOv2 attention heads (default: `dino_num_heads` of a .ckpt's hyper_parameters, else
    /// width/64).
    #[arg(long)]
    pub dino_heads: Option<i64>,
}

impl LabelArgs {
    /// The frame interval the arguments select.
    pub fn resolve_interval(&self) -> Result<usize> {
        match (self.interval, self.dataset) {
            (Some(0), _) => Err(LamError::Config("--interval must be ≥ 1".into())),
            (Some(k), _) => Ok(k),
            (None, Some(d)) => frame_interval(d, self.window),
            (None, None) => Err(LamError::Config("give --interval K or --dataset".into())),
        }
    }

    pub fn lam_config(&self) -> LamConfig {
        LamConfig {
            encoder_heads: self.encoder_heads,
            dino_heads: self.dino_heads,
            ..LamConfig::default()
        }
    }
}

/// Parses `cpu`, `cuda`, `cuda:N` (as every `univla` command does; CUDA must be available).
pub fn parse_device(s: &str) -> Result<Device> {
    crate::runtime::device::parse_device(s).map_err(|e| LamError::Config(e.to_string()))
}

/// One step as written out.
#[derive(Clone, Debug, Serialize)]
pub struct StepRecord {
    #[serde(flatten)]
    pub label: StepLabel,
    pub tokens: String,
}

/// Everything `univla label` produces.
#[derive(Clone, Debug, Serialize)]
pub struct LabelReport {
    pub checkpoint: String,
    pub interval: usize,
    pub num_frames: usize,
    pub codebook_size: usize,
    pub steps: Vec<StepRecord>,
    /// Uses of each task-centric code over all steps and queries.
    pub histogram: Vec<u64>,
    /// Uses of each task-irrelevant code.
    pub histogram_uncontrol: Vec<u64>,
}

impl LabelReport {
    pub fn new(
        model: &LatentActionModel,
        checkpoint: &Path,
        interval: usize,
        num_frames: usize,
        labels: Vec<StepLabel>,
    ) -> Self {
        let count = |size: usize, pick: &dyn Fn(&StepLabel) -> &[i64]| {
            let mut h = vec![0u64; size];
            for code in labels.iter().flat_map(|l| pick(l).iter()) {
                if let Some(slot) = usize::try_from(*code).ok().and_then(|c| h.get_mut(c)) {
                    *slot += 1;
                }
            }
            h
        };
        let histogram = count(model.codebook_size(), &|l| &l.action.codes);
        let histogram_uncontrol = count(model.uncontrol_codebook_size(), &|l| &l.action.uncontrol_codes);
        let steps = labels
            .into_iter()
            .map(|label| StepRecord {
                tokens: label.action.tokens(),
                label,
            })
            .collect();
        Self {
            checkpoint: checkpoint.display().to_string(),
            interval,
            num_frames,
            codebook_size: model.codebook_size(),
            steps,
            histogram,
            histogram_uncontrol,
        }
    }

    /// Per-step CSV: step, target_step, code_0.., tokens, uncontrol_0.., margin.
    pub fn steps_csv(&self) -> String {
        let q = self.steps.first().map_or(0, |s| s.label.action.codes.len());
        let mut out = String::from("step,target_step");
        (0..q).for_each(|i| out.push_str(&format!(",code_{i}")));
        out.push_str(",tokens");
        (0..q).for_each(|i| out.push_str(&format!(",uncontrol_{i}")));
        out.push_str(",margin\n");
        for s in &self.steps {
            let a = &s.label.action;
            out.push_str(&format!("{},{}", s.label.step, s.label.target_step));
            a.codes.iter().for_each(|c| out.push_str(&format!(",{c}")));
            out.push_str(&format!(",{}", s.tokens));
            a.uncontrol_codes.iter().for_each(|c| out.push_str(&format!(",{c}")));
            out.push_str(&format!(",{}\n", a.margin));
        }
        out
    }

    /// Histogram CSV: code, token, count, uncontrol_count.
    pub fn histogram_csv(&self) -> String {
        let mut out = String::from("code,token,count,uncontrol_count\n");
        let n = self.histogram.len().max(self.histogram_uncontrol.len());
        for i in 0..n {
            let c = self.histogram.get(i).copied().unwrap_or(0);
            let u = self.histogram_uncontrol.get(i).copied().unwrap_or(0);
            out.push_str(&format!("{i},<ACT_{i}>,{c},{u}\n"));
        }
        out
    }

    /// Writes JSON (`.json`) or CSV (`.csv` + `<stem>.histogram.csv`); returns the files written.
    pub fn write(&self, path: &Path) -> Result<Vec<PathBuf>> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("json") => {
                write_file(path, &self.to_json()?)?;
                Ok(vec![path.to_path_buf()])
            }
            Some("csv") => {
                let hist = histogram_path(path);
                write_file(path, &self.steps_csv())?;
                write_file(&hist, &self.histogram_csv())?;
                Ok(vec![path.to_path_buf(), hist])
            }
            _ => Err(LamError::Output {
                path: path.to_path_buf(),
                reason: "output must end in .json or .csv".into(),
            }),
        }
    }

    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| LamError::Output {
            path: PathBuf::from("<json>"),
            reason: e.to_string(),
        })
    }

    /// A short human-readable summary with the code histogram.
    pub fn summary(&self) -> String {
        let total: u64 = self.histogram.iter().sum();
        let mut out = format!(
            "{} frames, interval {}, {} labeled steps\ncode  count  share\n",
            self.num_frames,
            self.interval,
            self.steps.len()
        );
        for (code, count) in self.histogram.iter().enumerate() {
            let share = if total > 0 {
                100.0 * *count as f64 / total as f64
            } else {
                0.0
            };
            out.push_str(&format!("{code:>4}  {count:>5}  {share:5.1}%\n"));
        }
        out
    }
}

/// `<dir>/<stem>.histogram.csv` next to a CSV output.
pub fn histogram_path(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "labels".into());
    out.with_file_name(format!("{stem}.histogram.csv"))
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    let err = |e: std::io::Error| LamError::Output {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut f = std::fs::File::create(path).map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)
}

/// Labels frames from any source with the model and interval the arguments select, and writes
/// the output (`--out`); the report is returned either way.
pub fn run_label_frames<I>(args: &LabelArgs, frames: I) -> Result<LabelReport>
where
    I: IntoIterator<Item = Result<RgbImage>>,
{
    let interval = args.resolve_interval()?;
    let device = parse_device(&args.device)?;
    let model = checkpoint::load_model(&args.checkpoint, &args.lam_config(), device)?;
    let (labels, num_frames) = label_frames(&model, frames, interval, args.batch_size)?;
    if num_frames <= interval {
        return Err(LamError::Input(format!(
            "{num_frames} frames: need more than the interval {interval}"
        )));
    }
    let report = LabelReport::new(&model, &args.checkpoint, interval, num_frames, labels);
    if let Some(out) = &args.out {
        report.write(out)?;
    }
    Ok(report)
}

/// `univla label` on `--video-frames DIR` (the `--bag` source will call [`run_label_frames`]).
/// Writes `--out` if given and prints nothing.
pub fn run_label(args: &LabelArgs) -> Result<LabelReport> {
    let dir = args
        .video_frames
        .as_ref()
        .ok_or_else(|| LamError::Config("give --video-frames DIR".into()))?;
    let files = list_frame_files(dir)?;
    if files.is_empty() {
        return Err(LamError::Input(format!("{}: no PNG/JPEG frames", dir.display())));
    }
    run_label_frames(args, files.iter().map(|p| Ok(RgbImage::load(p)?)))
}

/// The whole `univla label` command: [`run_label`], then the JSON report on stdout when there is
/// no `--out`, and the code histogram on stderr.
pub fn run_label_cli(args: &LabelArgs) -> Result<LabelReport> {
    let report = run_label(args)?;
    if args.out.is_none() {
        println!("{}", report.to_json()?);
    }
    eprint!("{}", report.summary());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        label: LabelArgs,
    }

    fn parse(args: &[&str]) -> std::result::Result<LabelArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("label").chain(args.iter().copied())).map(|c| c.label)
    }

    #[test]
    fn interval_from_flag_or_dataset() {
        let a = parse(&["--checkpoint", "lam.safetensors", "--interval", "5"]).unwrap();
        assert_eq!(a.resolve_interval().unwrap(), 5);
        let a = parse(&["--checkpoint", "x", "--dataset", "calvin"]).unwrap();
        assert_eq!(a.resolve_interval().unwrap(), 11);
        let a = parse(&["--checkpoint", "x", "--dataset", "r2r"]).unwrap();
        assert_eq!(a.resolve_interval().unwrap(), 3);
        let a = parse(&["--checkpoint", "x", "--dataset", "realworld", "--window", "12"]).unwrap();
        assert_eq!(a.resolve_interval().unwrap(), 11);
        let a = parse(&["--checkpoint", "x", "--dataset", "realworld"]).unwrap();
        assert!(a.resolve_interval().is_err());
        assert!(parse(&["--checkpoint", "x", "--interval", "3", "--dataset", "libero"]).is_err());
        let a = parse(&["--checkpoint", "x"]).unwrap();
        assert!(a.resolve_interval().is_err());
        assert_eq!(a.batch_size, DEFAULT_BATCH);
    }

    #[test]
    fn devices() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        assert!(parse_device("gpu").is_err());
    }

    #[test]
    fn histogram_file_name() {
        assert_eq!(
            histogram_path(Path::new("/o/labels.csv")),
            Path::new("/o/labels.histogram.csv")
        );
    }
}
