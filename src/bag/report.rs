//! The evaluation report: JSON document and the terminal summary table.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::metrics::Metrics;
use super::replay::{BagTopics, CommandAlignment, Latency, ReplayMode};
use super::BagError;

/// Version of the JSON report layout (2: `command_alignment`).
pub const REPORT_VERSION: u32 = 2;

/// One episode (bag) of the report.
#[derive(Debug, Clone, Serialize)]
pub struct EpisodeReport {
    pub bag: PathBuf,
    pub instruction: String,
    pub command_topic: String,
    pub command_type: String,
    pub instruction_changes: usize,
    pub metrics: Metrics,
    pub plots: Vec<PathBuf>,
    pub output_bag: Option<PathBuf>,
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub version: u32,
    /// Which recorded command was each frame's ground truth.
    pub command_alignment: CommandAlignment,
    pub mode: ReplayMode,
    pub latency: Latency,
    pub topics: BagTopics,
    pub episodes: Vec<EpisodeReport>,
    pub overall: Metrics,
}

impl EvalReport {
    /// Writes the report as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<(), BagError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| BagError::Output {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        std::fs::write(path, text).map_err(|e| BagError::io(path, e))
    }

    /// Human summary: one row per episode plus overall, then per-dimension errors overall.
    pub fn summary_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "ground truth: commands aligned to frames by `{}` ({})",
            self.command_alignment.name(),
            match self.command_alignment {
                CommandAlignment::Next => "the first command recorded after each frame",
                CommandAlignment::AsOf => "the latest command at or before each frame",
                CommandAlignment::Nearest => "the command closest in time to each frame",
            }
        );
        let _ = writeln!(
            s,
            "{:<28} {:>6} {:>6} {:>6} {:>10} {:>10} {:>9} {:>9} {:>9} {:>7} {:>7} {:>6}",
            "episode",
            "frames",
            "steps",
            "skip",
            "MAE",
            "RMSE",
            "grip P",
            "grip R",
            "p50 ms",
            "LA tok",
            "LA ex",
            "LA n"
        );
        let rows = self
            .episodes
            .iter()
            .map(|e| &e.metrics)
            .chain(std::iter::once(&self.overall));
        for m in rows {
            let (gp, gr) = m.gripper.as_ref().map_or(("-".into(), "-".into()), |g| {
                (format!("{:.2}", g.precision), format!("{:.2}", g.recall))
            });
            let p50 = m.latency.as_ref().map_or("-".into(), |l| format!("{:.1}", l.p50_ms));
            let (la_tok, la_ex, la_n) = m
                .latent_accuracy
                .as_ref()
                .map_or(("-".into(), "-".into(), "-".into()), |a| {
                    (
                        format!("{:.3}", a.token_accuracy),
                        format!("{:.3}", a.exact_accuracy),
                        a.scored_steps.to_string(),
                    )
                });
            let _ = writeln!(
                s,
                "{:<28} {:>6} {:>6} {:>6} {:>10.4} {:>10.4} {:>9} {:>9} {:>9} {:>7} {:>7} {:>6}",
                truncate(&m.name, 28),
                m.frames,
                m.evaluated_steps,
                m.skipped_steps,
                m.mae,
                m.rmse,
                gp,
                gr,
                p50,
                la_tok,
                la_ex,
                la_n
            );
        }
        let _ = writeln!(
            s,
            "\n{:<16} {:>10} {:>10} {:>10} {:>10}",
            "dimension", "MAE", "RMSE", "max |e|", "bias"
        );
        for d in &self.overall.dims {
            let _ = writeln!(
                s,
                "{:<16} {:>10.4} {:>10.4} {:>10.4} {:>10.4}",
                truncate(&d.name, 16),
                d.mae,
                d.rmse,
                d.max_abs,
                d.bias
            );
        }
        let sw = &self.overall.switches;
        if let Some(j) = sw.mean_jump_at_switch {
            let _ = writeln!(
                s,
                "\nchunk switches: {} (mean jump {:.4}, max {:.4}; mean change between switches {})",
                sw.switches,
                j,
                sw.max_jump_at_switch.unwrap_or(f64::NAN),
                sw.mean_change_between_switches
                    .map_or("-".into(), |v| format!("{v:.4}"))
            );
        }
        if let Some(a) = self.overall.latent.history_agreement {
            let _ = writeln!(
                s,
                "latent tokens: {} queries, history agreement {:.2}",
                self.overall.latent.queries, a
            );
        }
        s
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let head: String = s.chars().take(n.saturating_sub(1)).collect();
        format!("{head}…")
    }
}
