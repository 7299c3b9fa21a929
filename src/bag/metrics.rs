//! Scores replay traces: per-dimension errors, gripper events, chunk-switch discontinuity,
//! latent-token statistics, inference latency and skipped steps.
use serde::Serialize;

use super::replay::{EpisodeTrace, QueryRecord, ReplayTimings, SkipCounts, StepRecord};
use crate::lam::LatentActionAccuracy;

/// Vocabulary id of `<ACT_0>` in UniVLA's extended LLaMA tokenizer.
pub const LATENT_VOCAB_BASE: i64 = 32001;
/// Number of latent action codes.
pub const NUM_LATENT_CODES: usize = 16;
/// Default window (evaluated steps) within which a predicted gripper event matches a recorded one.
pub const DEFAULT_GRIPPER_TOLERANCE: usize = 5;

/// Knobs of the scoring.
#[derive(Debug, Clone, Serialize)]
pub struct MetricOptions {
    pub gripper_dim: Option<usize>,
    pub gripper_threshold: f64,
    pub gripper_tolerance_steps: usize,
}

impl Default for MetricOptions {
    fn default() -> Self {
        Self {
            gripper_dim: None,
            gripper_threshold: 0.0,
            gripper_tolerance_steps: DEFAULT_GRIPPER_TOLERANCE,
        }
    }
}

/// Error statistics of one action dimension, in robot units.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DimStats {
    pub name: String,
    pub mae: f64,
    pub rmse: f64,
    pub max_abs: f64,
    /// Mean of predicted − recorded.
    pub bias: f64,
}

/// Gripper open/close events (crossings of the threshold) matched between recording and prediction.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GripperStats {
    pub dim: usize,
    pub threshold: f64,
    pub tolerance_steps: usize,
    pub recorded_events: usize,
    pub predicted_events: usize,
    pub matched: usize,
    /// matched / predicted (1 when nothing was predicted and nothing recorded).
    pub precision: f64,
    /// matched / recorded (1 when nothing was recorded).
    pub recall: f64,
    /// Mean |Δ| of matched events, in steps and in bag milliseconds.
    pub mean_abs_timing_steps: Option<f64>,
    pub mean_abs_timing_ms: Option<f64>,
}

/// Jumps of the executed action (L2 norm of a(t) − a(t−1)) where a new result took over, and elsewhere.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct SwitchStats {
    pub switches: usize,
    pub mean_jump_at_switch: Option<f64>,
    pub max_jump_at_switch: Option<f64>,
    pub mean_change_between_switches: Option<f64>,
}

/// How often each latent code occurs and how often a query repeats the previous query's tokens.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatentStats {
    pub queries: usize,
    pub histogram: Vec<u64>,
    /// Ids outside the 16 codes.
    pub other: u64,
    pub history_agreement: Option<f64>,
}

/// Inference latency percentiles (milliseconds) over queries.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencyStats {
    pub count: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Metrics of one episode or of all episodes together.
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    pub name: String,
    pub frames: usize,
    pub evaluated_steps: usize,
    pub skipped_steps: usize,
    pub skipped: SkipCounts,
    pub dims: Vec<DimStats>,
    pub mae: f64,
    pub rmse: f64,
    pub gripper: Option<GripperStats>,
    pub switches: SwitchStats,
    pub latent: LatentStats,
    pub latency: Option<LatencyStats>,
    pub timings: ReplayTimings,
    /// Latent-action accuracy against the LAM (`--lam`), pooled over the scored episodes.
    pub latent_accuracy: Option<LatentAccuracyStats>,
}

/// Agreement of the policy's latent tokens with the LAM labels of the recorded frames.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct LatentAccuracyStats {
    /// Fraction of code positions that agree.
    pub token_accuracy: f64,
    /// Fraction of scored steps whose whole code tuple agrees.
    pub exact_accuracy: f64,
    /// Steps scored (policy queries with a LAM label).
    pub scored_steps: usize,
    /// Raw agreement counts.
    pub counts: LatentActionAccuracy,
}

/// Pools the LAM agreement counts of the traces that have them.
fn latent_accuracy(traces: &[EpisodeTrace]) -> Option<LatentAccuracyStats> {
    let mut scored = traces.iter().filter_map(|t| t.latent_accuracy).peekable();
    scored.peek()?;
    let counts = scored.fold(LatentActionAccuracy::default(), |a, b| LatentActionAccuracy {
        steps: a.steps + b.steps,
        tokens: a.tokens + b.tokens,
        token_matches: a.token_matches + b.token_matches,
        exact_matches: a.exact_matches + b.exact_matches,
    });
    Some(LatentAccuracyStats {
        token_accuracy: counts.token_accuracy(),
        exact_accuracy: counts.exact_accuracy(),
        scored_steps: counts.steps,
        counts,
    })
}

/// Scores one episode.
pub fn episode_metrics(trace: &EpisodeTrace, opts: &MetricOptions) -> Metrics {
    aggregate(&trace.name, std::slice::from_ref(trace), opts)
}

/// Scores several episodes together (errors pooled over all steps; events per episode, summed).
pub fn aggregate(name: &str, traces: &[EpisodeTrace], opts: &MetricOptions) -> Metrics {
    let dims = traces.iter().map(|t| t.dim_names.len()).max().unwrap_or(0);
    let names = traces
        .iter()
        .find(|t| t.dim_names.len() == dims)
        .map(|t| t.dim_names.clone())
        .unwrap_or_default();
    let steps: Vec<&StepRecord> = traces.iter().flat_map(|t| t.steps.iter()).collect();
    let dim_stats: Vec<DimStats> = (0..dims).map(|d| dim_stats(&names[d], d, &steps)).collect();
    let n = dim_stats.len().max(1) as f64;
    let mae = dim_stats.iter().map(|d| d.mae).sum::<f64>() / n;
    let rmse = (dim_stats.iter().map(|d| d.rmse * d.rmse).sum::<f64>() / n).sqrt();
    let mut skipped = SkipCounts::default();
    let mut timings = ReplayTimings::default();
    for t in traces {
        skipped.add(&t.skipped);
        timings.total_s += t.timings.total_s;
        timings.policy_s += t.timings.policy_s;
    }
    let gripper = opts.gripper_dim.filter(|&d| d < dims).map(|d| {
        let parts: Vec<GripperStats> = traces.iter().map(|t| gripper_stats(&t.steps, d, opts)).collect();
        merge_gripper(d, opts, &parts)
    });
    Metrics {
        name: name.to_string(),
        frames: traces.iter().map(|t| t.frames).sum(),
        evaluated_steps: steps.len(),
        skipped_steps: skipped.total(),
        skipped,
        dims: dim_stats,
        mae,
        rmse,
        gripper,
        switches: switch_stats(traces),
        latent: latent_stats(traces),
        latency: latency_stats(traces.iter().flat_map(|t| t.queries.iter())),
        timings,
        latent_accuracy: latent_accuracy(traces),
    }
}

fn dim_stats(name: &str, d: usize, steps: &[&StepRecord]) -> DimStats {
    let errs: Vec<f64> = steps
        .iter()
        .filter_map(|s| Some(s.predicted.get(d)? - s.ground_truth.get(d)?))
        .collect();
    let n = errs.len().max(1) as f64;
    DimStats {
        name: name.to_string(),
        mae: errs.iter().map(|e| e.abs()).sum::<f64>() / n,
        rmse: (errs.iter().map(|e| e * e).sum::<f64>() / n).sqrt(),
        max_abs: errs.iter().fold(0.0, |m: f64, e| m.max(e.abs())),
        bias: errs.iter().sum::<f64>() / n,
    }
}

/// Threshold crossings: (step index, rising?).
fn events(values: impl Iterator<Item = f64>, threshold: f64) -> Vec<(usize, bool)> {
    let mut out = Vec::new();
    let mut prev: Option<bool> = None;
    for (i, v) in values.enumerate() {
        let open = v > threshold;
        if prev.is_some_and(|p| p != open) {
            out.push((i, open));
        }
        prev = Some(open);
    }
    out
}

fn gripper_stats(steps: &[StepRecord], d: usize, opts: &MetricOptions) -> GripperStats {
    let value = |v: &Vec<f64>| v.get(d).copied().unwrap_or(0.0);
    let rec = events(steps.iter().map(|s| value(&s.ground_truth)), opts.gripper_threshold);
    let pred = events(steps.iter().map(|s| value(&s.predicted)), opts.gripper_threshold);
    let mut used = vec![false; rec.len()];
    let mut dsteps = Vec::new();
    let mut dms = Vec::new();
    for &(pi, pdir) in &pred {
        let best = rec
            .iter()
            .enumerate()
            .filter(|(j, &(ri, rdir))| !used[*j] && rdir == pdir && ri.abs_diff(pi) <= opts.gripper_tolerance_steps)
            .min_by_key(|(_, &(ri, _))| ri.abs_diff(pi));
        if let Some((j, &(ri, _))) = best {
            used[j] = true;
            dsteps.push(ri.abs_diff(pi) as f64);
            dms.push((steps[ri].time_ns - steps[pi].time_ns).abs() as f64 / 1e6);
        }
    }
    let matched = dsteps.len();
    GripperStats {
        dim: d,
        threshold: opts.gripper_threshold,
        tolerance_steps: opts.gripper_tolerance_steps,
        recorded_events: rec.len(),
        predicted_events: pred.len(),
        matched,
        precision: ratio(matched, pred.len()),
        recall: ratio(matched, rec.len()),
        mean_abs_timing_steps: mean(&dsteps),
        mean_abs_timing_ms: mean(&dms),
    }
}

fn merge_gripper(d: usize, opts: &MetricOptions, parts: &[GripperStats]) -> GripperStats {
    let recorded: usize = parts.iter().map(|p| p.recorded_events).sum();
    let predicted: usize = parts.iter().map(|p| p.predicted_events).sum();
    let matched: usize = parts.iter().map(|p| p.matched).sum();
    let weighted = |f: fn(&GripperStats) -> Option<f64>| {
        let (s, n) = parts.iter().fold((0.0, 0usize), |(s, n), p| match f(p) {
            Some(v) => (s + v * p.matched as f64, n + p.matched),
            None => (s, n),
        });
        (n > 0).then(|| s / n as f64)
    };
    GripperStats {
        dim: d,
        threshold: opts.gripper_threshold,
        tolerance_steps: opts.gripper_tolerance_steps,
        recorded_events: recorded,
        predicted_events: predicted,
        matched,
        precision: ratio(matched, predicted),
        recall: ratio(matched, recorded),
        mean_abs_timing_steps: weighted(|p| p.mean_abs_timing_steps),
        mean_abs_timing_ms: weighted(|p| p.mean_abs_timing_ms),
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn l2(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt()
}

fn switch_stats(traces: &[EpisodeTrace]) -> SwitchStats {
    let mut at_switch = Vec::new();
    let mut between = Vec::new();
    for t in traces {
        for w in t.steps.windows(2) {
            let jump = l2(&w[1].predicted, &w[0].predicted);
            if w[1].switch {
                at_switch.push(jump);
            } else {
                between.push(jump);
            }
        }
    }
    SwitchStats {
        switches: at_switch.len(),
        mean_jump_at_switch: mean(&at_switch),
        max_jump_at_switch: at_switch.iter().copied().reduce(f64::max),
        mean_change_between_switches: mean(&between),
    }
}

/// Code index of a latent token id (vocabulary id or bare code).
pub fn latent_code(id: i64) -> Option<usize> {
    let code = if id >= LATENT_VOCAB_BASE {
        id - LATENT_VOCAB_BASE
    } else {
        id
    };
    usize::try_from(code).ok().filter(|&c| c < NUM_LATENT_CODES)
}

fn latent_stats(traces: &[EpisodeTrace]) -> LatentStats {
    let mut histogram = vec![0u64; NUM_LATENT_CODES];
    let mut other = 0;
    let mut queries = 0;
    let (mut same, mut pairs) = (0usize, 0usize);
    for t in traces {
        let mut prev: Option<&Vec<i64>> = None;
        for ids in t.queries.iter().map(|q| &q.latent_ids) {
            queries += 1;
            for &id in ids {
                match latent_code(id) {
                    Some(c) => histogram[c] += 1,
                    None => other += 1,
                }
            }
            if let Some(p) = prev {
                pairs += 1;
                same += usize::from(p == ids);
            }
            prev = Some(ids);
        }
    }
    LatentStats {
        queries,
        histogram,
        other,
        history_agreement: (pairs > 0).then(|| same as f64 / pairs as f64),
    }
}

/// Linear-interpolated percentile of sorted values (`q` in 0..=1).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn latency_stats<'a>(queries: impl Iterator<Item = &'a QueryRecord>) -> Option<LatencyStats> {
    let mut v: Vec<f64> = queries.map(|q| q.inference_ms).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(LatencyStats {
        count: v.len(),
        mean_ms: v.iter().sum::<f64>() / v.len() as f64,
        p50_ms: percentile(&v, 0.5),
        p90_ms: percentile(&v, 0.9),
        p99_ms: percentile(&v, 0.99),
        max_ms: v[v.len() - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(i: usize, gt: f64, pred: f64) -> StepRecord {
        StepRecord {
            frame: i,
            time_ns: i as i64 * 100_000_000,
            ground_truth: vec![gt],
            predicted: vec![pred],
            inference: true,
            switch: true,
            held: false,
        }
    }

    fn query(i: usize) -> QueryRecord {
        QueryRecord {
            frame: i,
            time_ns: i as i64 * 100_000_000,
            latent_ids: vec![32001 + (i % 2) as i64, 32003],
            inference_ms: i as f64,
        }
    }

    fn trace(steps: Vec<StepRecord>) -> EpisodeTrace {
        EpisodeTrace {
            name: "e".into(),
            bag: "e".into(),
            instruction: String::new(),
            command_topic: String::new(),
            command_type: String::new(),
            frames: steps.len(),
            queries: (0..steps.len()).map(query).collect(),
            steps,
            skipped: SkipCounts::default(),
            instruction_changes: 0,
            dim_names: vec!["g".into()],
            timings: ReplayTimings::default(),
            latent_accuracy: None,
        }
    }

    #[test]
    fn gripper_events_match_within_tolerance() {
        // Recorded opens at step 3 and closes at 7; predicted opens at 5 (2 late), closes at 15 (unmatched).
        let gt = |i: usize| if (3..7).contains(&i) { 1.0 } else { -1.0 };
        let pr = |i: usize| if (5..15).contains(&i) { 1.0 } else { -1.0 };
        let t = trace((0..20).map(|i| step(i, gt(i), pr(i))).collect());
        let opts = MetricOptions {
            gripper_dim: Some(0),
            gripper_tolerance_steps: 3,
            ..Default::default()
        };
        let g = episode_metrics(&t, &opts).gripper.unwrap();
        assert_eq!((g.recorded_events, g.predicted_events, g.matched), (2, 2, 1));
        assert_eq!(g.precision, 0.5);
        assert_eq!(g.recall, 0.5);
        assert_eq!(g.mean_abs_timing_steps, Some(2.0));
        assert_eq!(g.mean_abs_timing_ms, Some(200.0));
    }

    #[test]
    fn latent_histogram_and_agreement() {
        let t = trace((0..4).map(|i| step(i, 0.0, 0.0)).collect());
        let m = episode_metrics(&t, &MetricOptions::default());
        assert_eq!(m.latent.histogram[0], 2);
        assert_eq!(m.latent.histogram[1], 2);
        assert_eq!(m.latent.histogram[2], 4);
        // Token lists alternate, so no query repeats its predecessor.
        assert_eq!(m.latent.history_agreement, Some(0.0));
        let l = m.latency.unwrap();
        assert_eq!((l.p50_ms, l.max_ms), (1.5, 3.0));
    }

    #[test]
    fn percentile_interpolates() {
        let v = [0.0, 10.0, 20.0, 30.0, 40.0];
        assert_eq!(percentile(&v, 0.5), 20.0);
        assert_eq!(percentile(&v, 0.9), 36.0);
        assert_eq!(percentile(&v, 1.0), 40.0);
    }
}
