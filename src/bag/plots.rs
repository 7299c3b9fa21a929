//! PNG plots per action dimension: recorded (blue) vs predicted (red) over bag time, policy
//! queries marked with red dots. Drawn with `plotters`' bitmap backend; tick labels use a
//! built-in 3×5 pixel font, so no system fonts (fontconfig) are needed.
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::replay::EpisodeTrace;
use super::BagError;

/// Plot size in pixels.
const WIDTH: u32 = 1200;
const HEIGHT: u32 = 420;
/// Space left of / below the plot area for tick labels.
const LEFT: u32 = 80;
const BOTTOM: u32 = 30;
const MARGIN: u32 = 12;
/// Space above the plot area for the title and legend.
const TOP: u32 = 30;
/// Pixel scale of the tick font.
const FONT_SCALE: i32 = 2;
/// Wanted number of ticks per axis.
const TICKS: f64 = 6.0;
const RECORDED: RGBColor = RGBColor(31, 119, 180);
const PREDICTED: RGBColor = RGBColor(214, 39, 40);
const GRID: RGBColor = RGBColor(225, 225, 225);

/// 3×5 glyphs (letters are case-insensitive): rows top to bottom, 3 bits each (4 = left column).
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c.to_ascii_lowercase() {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        'a' => [2, 5, 7, 5, 5],
        'b' => [6, 5, 6, 5, 6],
        'c' => [3, 4, 4, 4, 3],
        'd' => [6, 5, 5, 5, 6],
        'e' => [7, 4, 6, 4, 7],
        'f' => [7, 4, 6, 4, 4],
        'g' => [3, 4, 5, 5, 3],
        'h' => [5, 5, 7, 5, 5],
        'i' => [7, 2, 2, 2, 7],
        'j' => [1, 1, 1, 5, 2],
        'k' => [5, 5, 6, 5, 5],
        'l' => [4, 4, 4, 4, 7],
        'm' => [5, 7, 7, 5, 5],
        'n' => [6, 5, 5, 5, 5],
        'o' => [2, 5, 5, 5, 2],
        'p' => [6, 5, 6, 4, 4],
        'q' => [2, 5, 5, 6, 3],
        'r' => [6, 5, 6, 5, 5],
        's' => [3, 4, 2, 1, 6],
        't' => [7, 2, 2, 2, 2],
        'u' => [5, 5, 5, 5, 7],
        'v' => [5, 5, 5, 5, 2],
        'w' => [5, 5, 7, 7, 5],
        'x' => [5, 5, 2, 5, 5],
        'y' => [5, 5, 2, 2, 2],
        'z' => [7, 1, 2, 4, 7],
        '-' => [0, 0, 7, 0, 0],
        '.' => [0, 0, 0, 0, 2],
        '_' => [0, 0, 0, 0, 7],
        ':' => [0, 2, 0, 2, 0],
        '/' => [1, 1, 2, 4, 4],
        '(' => [2, 4, 4, 4, 2],
        ')' => [2, 1, 1, 1, 2],
        '=' => [0, 7, 0, 7, 0],
        ',' => [0, 0, 0, 2, 4],
        '+' => [0, 2, 7, 2, 0],
        ' ' => [0, 0, 0, 0, 0],
        _ => return None,
    })
}

/// Width of `text` in pixels.
fn text_width(text: &str) -> i32 {
    text.chars().count() as i32 * 4 * FONT_SCALE
}

/// Draws `text` with its top-left corner at (x, y).
fn draw_text<DB: DrawingBackend>(area: &DrawingArea<DB, plotters::coord::Shift>, text: &str, x: i32, y: i32) {
    for (i, c) in text.chars().enumerate() {
        let Some(rows) = glyph(c) else { continue };
        let gx = x + i as i32 * 4 * FONT_SCALE;
        for (r, bits) in rows.iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) != 0 {
                    let px = gx + col * FONT_SCALE;
                    let py = y + r as i32 * FONT_SCALE;
                    let _ = area.draw(&Rectangle::new(
                        [(px, py), (px + FONT_SCALE, py + FONT_SCALE)],
                        BLACK.filled(),
                    ));
                }
            }
        }
    }
}

/// Round tick spacing (1, 2 or 5 × 10^k) for a range.
fn tick_step(range: f64) -> f64 {
    if !(range.is_finite() && range > 0.0) {
        return 1.0;
    }
    let raw = range / TICKS;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

fn tick_label(v: f64, step: f64) -> String {
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let s = format!("{v:.decimals$}");
    if s == "-0" || s.chars().all(|c| c == '-' || c == '0' || c == '.') && s.starts_with('-') {
        s.trim_start_matches('-').to_string()
    } else {
        s
    }
}

/// Keeps file names portable.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes one PNG per dimension into `dir` (`<episode>_<dim>.png`) and returns their paths.
pub fn plot_episode(trace: &EpisodeTrace, dir: &Path) -> Result<Vec<PathBuf>, BagError> {
    std::fs::create_dir_all(dir).map_err(|e| BagError::io(dir, e))?;
    let mut out = Vec::new();
    for (d, name) in trace.dim_names.iter().enumerate() {
        let path = dir.join(format!("{}_{}.png", sanitize(&trace.name), sanitize(name)));
        plot_dimension(trace, d, &path).map_err(|why| BagError::Output {
            path: path.clone(),
            why,
        })?;
        out.push(path);
    }
    Ok(out)
}

fn plot_dimension(trace: &EpisodeTrace, d: usize, path: &Path) -> Result<(), String> {
    let t0 = trace.steps.first().map_or(0, |s| s.time_ns);
    let secs = |t: i64| (t - t0) as f64 * 1e-9;
    let rec: Vec<(f64, f64)> = trace
        .steps
        .iter()
        .filter_map(|s| Some((secs(s.time_ns), *s.ground_truth.get(d)?)))
        .collect();
    let pred: Vec<(f64, f64)> = trace
        .steps
        .iter()
        .filter_map(|s| Some((secs(s.time_ns), *s.predicted.get(d)?)))
        .collect();
    let queries: Vec<(f64, f64)> = trace
        .steps
        .iter()
        .filter(|s| s.inference)
        .filter_map(|s| Some((secs(s.time_ns), *s.predicted.get(d)?)))
        .collect();
    let x_max = rec.last().map_or(1.0, |p| p.0).max(1e-3);
    let (mut y_min, mut y_max) = rec
        .iter()
        .chain(&pred)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    if !(y_min.is_finite() && y_max.is_finite()) {
        (y_min, y_max) = (-1.0, 1.0);
    }
    let pad = ((y_max - y_min) * 0.05).max(1e-6);
    let (y_min, y_max) = (y_min - pad, y_max + pad);

    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .margin(MARGIN)
        .margin_top(TOP)
        .x_label_area_size(BOTTOM)
        .y_label_area_size(LEFT)
        .build_cartesian_2d(0.0..x_max, y_min..y_max)
        .map_err(|e| e.to_string())?;

    let ystep = tick_step(y_max - y_min);
    let xstep = tick_step(x_max);
    let yticks: Vec<f64> = (((y_min / ystep).ceil() as i64)..=((y_max / ystep).floor() as i64))
        .map(|k| k as f64 * ystep)
        .collect();
    let xticks: Vec<f64> = (0..=((x_max / xstep).floor() as i64))
        .map(|k| k as f64 * xstep)
        .collect();
    for &y in &yticks {
        chart
            .draw_series(LineSeries::new([(0.0, y), (x_max, y)], GRID))
            .map_err(|e| e.to_string())?;
    }
    for &x in &xticks {
        chart
            .draw_series(LineSeries::new([(x, y_min), (x, y_max)], GRID))
            .map_err(|e| e.to_string())?;
    }
    chart
        .draw_series(LineSeries::new(rec, RECORDED.stroke_width(2)))
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(LineSeries::new(pred, PREDICTED.stroke_width(1)))
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(queries.into_iter().map(|p| Circle::new(p, 2, PREDICTED.filled())))
        .map_err(|e| e.to_string())?;
    // Frame and tick labels.
    let (x0, y0) = chart.backend_coord(&(0.0, y_min));
    let (x1, y1) = chart.backend_coord(&(x_max, y_max));
    root.draw(&Rectangle::new([(x0, y1), (x1, y0)], BLACK.stroke_width(1)))
        .map_err(|e| e.to_string())?;
    for &y in &yticks {
        let (_, py) = chart.backend_coord(&(0.0, y));
        let label = tick_label(y, ystep);
        draw_text(&root, &label, x0 - 6 - text_width(&label), py - 2 * FONT_SCALE);
    }
    for &x in &xticks {
        let (px, _) = chart.backend_coord(&(x, y_min));
        let label = format!("{}s", tick_label(x, xstep));
        draw_text(&root, &label, px - text_width(&label) / 2, y0 + 6);
    }
    // Title and legend.
    let mae = trace
        .steps
        .iter()
        .filter_map(|s| Some((s.predicted.get(d)? - s.ground_truth.get(d)?).abs()))
        .sum::<f64>()
        / trace.steps.len().max(1) as f64;
    let name = trace.dim_names.get(d).map_or("", String::as_str);
    let title = format!("{} {name}  mae {mae:.4}", trace.name);
    draw_text(&root, &title, x0, 8);
    let mut lx = x0 + text_width(&title) + 40;
    for (label, color) in [("recorded", RECORDED), ("predicted", PREDICTED)] {
        root.draw(&Rectangle::new([(lx, 12), (lx + 24, 14)], color.filled()))
            .map_err(|e| e.to_string())?;
        draw_text(&root, label, lx + 30, 8);
        lx += 30 + text_width(label) + 24;
    }
    root.draw(&Circle::new((lx + 12, 13), 3, PREDICTED.filled()))
        .map_err(|e| e.to_string())?;
    draw_text(&root, "policy query", lx + 30, 8);
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(1.0), 0.2);
        assert_eq!(tick_step(30.0), 5.0);
        assert_eq!(tick_label(-0.0, 0.2), "0.0");
        assert_eq!(tick_label(0.4, 0.2), "0.4");
        assert!(glyph('#').is_none() && glyph('7').is_some() && glyph('Q') == glyph('q'));
    }
}
