//! Input validation: camera messages to [`RgbImage`] and joint states mapped by joint name.
use std::time::{Duration, Instant};

use crate::node::control::core::clip;
use crate::ros::msgs::sensor_msgs::{CompressedImage, Image, JointState};
use crate::runtime::preprocess::header::check_pixels;
use crate::runtime::preprocess::{PixelEncoding, RgbImage};

/// A camera message as it arrived (decoded on the worker thread, not on the control loop).
#[derive(Clone, Debug)]
pub enum CameraFrame {
    Raw(Image),
    Compressed(CompressedImage),
    /// Already decoded (tests, synthetic cameras).
    Decoded(RgbImage),
}

impl CameraFrame {
    /// Validates and converts the frame to RGB8, refusing images of more than `max_pixels`
    /// before anything is decoded; the error says what is wrong with the frame.
    pub fn decode(&self, max_pixels: u64) -> Result<RgbImage, String> {
        match self {
            CameraFrame::Decoded(img) => Ok(img.clone()),
            CameraFrame::Compressed(c) => RgbImage::decode_limited(&c.data, max_pixels)
                .map_err(|e| format!("compressed image ('{}'): {e}", clip(&c.format, NAME_CHARS))),
            CameraFrame::Raw(m) => {
                let what = format!(
                    "image {}x{} '{}' step {}",
                    m.width,
                    m.height,
                    clip(&m.encoding, NAME_CHARS),
                    m.step
                );
                if m.width == 0 || m.height == 0 {
                    return Err(format!("{what}: empty"));
                }
                check_pixels(m.width, m.height, max_pixels).map_err(|e| format!("{what}: {e}"))?;
                let enc = PixelEncoding::from_ros(&m.encoding).map_err(|e| format!("{what}: {e}"))?;
                let row = m.width as usize * enc.bytes_per_pixel();
                if (m.step as usize) < row {
                    return Err(format!("{what}: step is shorter than a row of {row} bytes"));
                }
                let need = m.step as usize * (m.height as usize - 1) + row;
                if m.data.len() < need {
                    return Err(format!("{what}: truncated, {} bytes of {need}", m.data.len()));
                }
                RgbImage::from_raw(m.width, m.height, m.step as usize, enc, &m.data).map_err(|e| format!("{what}: {e}"))
            }
        }
    }
}

/// Longest joint name quoted from a message, and most names listed.
const NAME_CHARS: usize = 64;
const NAMES_LISTED: usize = 8;

/// At most [`NAMES_LISTED`] names of a message, each clipped, with the total count.
fn clip_list(names: &[String]) -> String {
    let shown: Vec<String> = names
        .iter()
        .take(NAMES_LISTED)
        .map(|n| format!("{:?}", clip(n, NAME_CHARS)))
        .collect();
    let more = names.len().saturating_sub(NAMES_LISTED);
    if more > 0 {
        format!("[{}, … {more} more]", shown.join(", "))
    } else {
        format!("[{}]", shown.join(", "))
    }
}

/// The latest position of each configured joint, merged from (possibly partial) JointState messages.
#[derive(Clone, Debug)]
pub struct JointCache {
    names: Vec<String>,
    values: Vec<Option<(f64, Instant)>>,
}

impl JointCache {
    pub fn new(names: Vec<String>) -> Self {
        let values = vec![None; names.len()];
        Self { names, values }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Takes the configured joints from `js` by name; errors when the message is malformed or names
    /// none of them (e.g. wrong joint names), so the mistake is reported instead of ignored.
    pub fn update(&mut self, js: &JointState, now: Instant) -> Result<usize, String> {
        if js.position.len() != js.name.len() {
            return Err(format!(
                "joint state has {} names but {} positions",
                js.name.len(),
                js.position.len()
            ));
        }
        let mut matched = 0;
        for (name, &pos) in js.name.iter().zip(&js.position) {
            if let Some(i) = self.names.iter().position(|n| n == name) {
                if !pos.is_finite() {
                    return Err(format!("joint state position of '{}' is {pos}", clip(name, NAME_CHARS)));
                }
                self.values[i] = Some((pos, now));
                matched += 1;
            }
        }
        if matched == 0 && !self.names.is_empty() {
            return Err(format!(
                "joint state names {} contain none of the configured joints {:?}",
                clip_list(&js.name),
                self.names
            ));
        }
        Ok(matched)
    }

    /// Positions in configured order if every joint was updated within `timeout`.
    pub fn positions(&self, now: Instant, timeout: Duration) -> Option<Vec<f64>> {
        self.values
            .iter()
            .map(|v| {
                v.filter(|(_, t)| now.saturating_duration_since(*t) <= timeout)
                    .map(|(p, _)| p)
            })
            .collect()
    }

    /// Joints that are missing or older than `timeout`.
    pub fn stale_joints(&self, now: Instant, timeout: Duration) -> Vec<&str> {
        self.names
            .iter()
            .zip(&self.values)
            .filter(|(_, v)| v.is_none_or(|(_, t)| now.saturating_duration_since(t) > timeout))
            .map(|(n, _)| n.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_joint_state_costs_one_short_error() {
        let mut cache = JointCache::new(vec!["joint1".into()]);
        let js = JointState {
            name: (0..1_000_000).map(|i| format!("{}{i}", "x".repeat(100))).collect(),
            position: vec![0.0; 1_000_000],
            ..Default::default()
        };
        let e = cache.update(&js, Instant::now()).unwrap_err();
        assert!(e.len() < 2_000, "{} bytes", e.len());
        assert!(e.contains("999992 more"), "{e}");
        let nan = JointState {
            name: vec![format!("joint1{}", "y".repeat(1_000_000))],
            position: vec![f64::NAN],
            ..Default::default()
        };
        // Not a configured joint (the name is longer): reported, clipped.
        let e = cache.update(&nan, Instant::now()).unwrap_err();
        assert!(e.len() < 2_000, "{} bytes", e.len());
    }

    fn image(enc: &str, w: u32, h: u32, step: u32, len: usize) -> CameraFrame {
        CameraFrame::Raw(Image {
            width: w,
            height: h,
            encoding: enc.into(),
            step,
            data: vec![7; len],
            ..Default::default()
        })
    }

    const MAX: u64 = crate::runtime::preprocess::DEFAULT_MAX_PIXELS;

    #[test]
    fn raw_images_are_validated() {
        assert_eq!(image("rgb8", 4, 2, 12, 24).decode(MAX).unwrap().width(), 4);
        // Padded rows are fine.
        assert_eq!(image("bgr8", 4, 2, 16, 32).decode(MAX).unwrap().height(), 2);
        let e = image("rgb16", 4, 2, 24, 48).decode(MAX).unwrap_err();
        assert!(e.contains("rgb16"), "{e}");
        let e = image("rgb8", 4, 2, 12, 20).decode(MAX).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        let e = image("rgb8", 4, 2, 8, 24).decode(MAX).unwrap_err();
        assert!(e.contains("step"), "{e}");
        let e = image("rgb8", 0, 2, 0, 0).decode(MAX).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        assert!(image("yuv422", 4, 2, 8, 16).decode(MAX).is_ok());
        let bad = CameraFrame::Compressed(CompressedImage {
            format: "jpeg".into(),
            data: vec![1, 2, 3],
            ..Default::default()
        });
        assert!(bad.decode(MAX).unwrap_err().contains("jpeg"));
    }

    #[test]
    fn images_over_the_pixel_limit_are_refused_undecoded() {
        // A raw frame declaring 100 MP (its buffer would not even hold one row).
        let e = image("rgb8", 10_000, 10_000, 30_000, 16).decode(MAX).unwrap_err();
        assert!(e.contains("exceeds the limit"), "{e}");
        assert!(image("rgb8", 4, 2, 12, 24).decode(7).unwrap_err().contains("exceeds"));
        // A PNG whose header declares 32768x32768: refused from the header alone.
        let mut png = vec![0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n', 0, 0, 0, 13];
        png.extend(b"IHDR");
        png.extend(32768u32.to_be_bytes());
        png.extend(32768u32.to_be_bytes());
        png.extend([8, 2, 0, 0, 0, 0, 0, 0, 0]);
        let huge = CameraFrame::Compressed(CompressedImage {
            format: format!("png{}", "x".repeat(100_000)),
            data: png,
            ..Default::default()
        });
        let e = huge.decode(MAX).unwrap_err();
        assert!(e.contains("32768x32768") && e.len() < 500, "{e}");
    }

    #[test]
    fn joint_states_map_by_name_and_go_stale() {
        let t0 = Instant::now();
        let timeout = Duration::from_millis(100);
        let mut c = JointCache::new(vec!["a".into(), "b".into()]);
        let js = |names: &[&str], pos: &[f64]| JointState {
            name: names.iter().map(|s| s.to_string()).collect(),
            position: pos.to_vec(),
            ..Default::default()
        };
        // Order is taken from names, not positions; partial messages merge.
        c.update(&js(&["b", "x"], &[2.0, 9.0]), t0).unwrap();
        assert_eq!(c.positions(t0, timeout), None);
        assert_eq!(c.stale_joints(t0, timeout), vec!["a"]);
        c.update(&js(&["a"], &[1.0]), t0).unwrap();
        assert_eq!(c.positions(t0, timeout), Some(vec![1.0, 2.0]));
        assert_eq!(c.positions(t0 + Duration::from_millis(200), timeout), None);
        let e = c.update(&js(&["joint9"], &[0.0]), t0).unwrap_err();
        assert!(e.contains("none of the configured joints"), "{e}");
        assert!(c.update(&js(&["a", "b"], &[0.0]), t0).is_err());
        assert!(c.update(&js(&["a"], &[f64::NAN]), t0).is_err());
    }
}
