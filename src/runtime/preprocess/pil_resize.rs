//! A port of Pillow's `Image.resize(size, Image.BICUBIC)` for 8-bit RGB images (Pillow's
//! `ImagingResample`): a separable convolution whose cubic kernel (a = −0.5, support 2) is widened
//! by the scale factor when shrinking (antialiasing), with coefficients normalised per output
//! pixel and turned into 22-bit fixed point. The horizontal pass runs first and stores clipped,
//! rounded uint8 values; the vertical pass reads them. Bit-exact with Pillow.
use super::image::RgbImage;

/// Fractional bits of Pillow's fixed-point coefficients (`32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;
/// Support radius of the bicubic kernel at scale 1.
const BICUBIC_SUPPORT: f64 = 2.0;
/// The cubic convolution parameter Pillow uses.
const BICUBIC_A: f64 = -0.5;
const CHANNELS: usize = 3;

/// Keys' cubic convolution kernel with a = −0.5.
fn bicubic(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        ((BICUBIC_A + 2.0) * x - (BICUBIC_A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * BICUBIC_A
    } else {
        0.0
    }
}

/// Per output pixel: the first input index, and fixed-point weights of consecutive inputs.
struct Coefficients {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    weights: Vec<i32>,
}

impl Coefficients {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the full source range.
    fn new(in_size: usize, out_size: usize) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = BICUBIC_SUPPORT * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * ksize];
        let mut k = vec![0f64; ksize];
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // Truncation toward zero, then clamping, as the C casts do.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax.saturating_sub(xmin).min(ksize);
            let mut ww = 0.0;
            for (x, kx) in k.iter_mut().enumerate().take(n) {
                let w = bicubic(((x + xmin) as f64 - center + 0.5) * ss);
                *kx = w;
                ww += w;
            }
            let row = &mut weights[xx * ksize..xx * ksize + n];
            for (dst, &w) in row.iter_mut().zip(&k[..n]) {
                let w = if ww != 0.0 { w / ww } else { w };
                let fixed = w * f64::from(1u32 << PRECISION_BITS);
                *dst = if w < 0.0 {
                    (fixed - 0.5) as i32
                } else {
                    (fixed + 0.5) as i32
                };
            }
            bounds.push((xmin, n));
        }
        Self { bounds, ksize, weights }
    }

    fn of(&self, out: usize) -> (usize, &[i32]) {
        let (start, n) = self.bounds[out];
        (start, &self.weights[out * self.ksize..out * self.ksize + n])
    }
}

/// Pillow's `clip8`: drops the fraction of a rounded fixed-point sum, saturating to 0..=255.
fn clip8(v: i64) -> u8 {
    if v >= (1i64 << PRECISION_BITS << 8) {
        255
    } else if v <= 0 {
        0
    } else {
        (v >> PRECISION_BITS) as u8
    }
}

/// Rounding offset added to every fixed-point sum.
const HALF: i64 = 1 << (PRECISION_BITS - 1);

fn resample_horizontal(src: &[u8], in_w: usize, h: usize, out_w: usize) -> Vec<u8> {
    let c = Coefficients::new(in_w, out_w);
    let mut out = vec![0u8; out_w * h * CHANNELS];
    for y in 0..h {
        let row = &src[y * in_w * CHANNELS..(y + 1) * in_w * CHANNELS];
        for xx in 0..out_w {
            let (start, k) = c.of(xx);
            let mut ss = [HALF; CHANNELS];
            for (i, &w) in k.iter().enumerate() {
                let p = (start + i) * CHANNELS;
                for ch in 0..CHANNELS {
                    ss[ch] += i64::from(row[p + ch]) * i64::from(w);
                }
            }
            let o = (y * out_w + xx) * CHANNELS;
            for ch in 0..CHANNELS {
                out[o + ch] = clip8(ss[ch]);
            }
        }
    }
    out
}

fn resample_vertical(src: &[u8], w: usize, in_h: usize, out_h: usize) -> Vec<u8> {
    let c = Coefficients::new(in_h, out_h);
    let stride = w * CHANNELS;
    let mut out = vec![0u8; stride * out_h];
    for yy in 0..out_h {
        let (start, k) = c.of(yy);
        for x in 0..stride {
            let mut ss = HALF;
            for (i, &wt) in k.iter().enumerate() {
                ss += i64::from(src[(start + i) * stride + x]) * i64::from(wt);
            }
            out[yy * stride + x] = clip8(ss);
        }
    }
    out
}

/// `img.resize((width, height), Image.BICUBIC)` exactly as Pillow computes it; same size is a copy.
pub fn resize_bicubic(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (in_w, in_h) = (img.width() as usize, img.height() as usize);
    let (out_w, out_h) = (width.max(1) as usize, height.max(1) as usize);
    let mut data = img.as_raw().to_vec();
    if out_w != in_w {
        data = resample_horizontal(&data, in_w, in_h, out_w);
    }
    if out_h != in_h {
        data = resample_vertical(&data, out_w, in_h, out_h);
    }
    RgbImage::from_parts(out_w as u32, out_h as u32, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(256, 224), (192, 224), (200, 224), (640, 224), (7, 3)] {
            let c = Coefficients::new(i, o);
            for xx in 0..o {
                let s: i64 = c.of(xx).1.iter().map(|&w| i64::from(w)).sum();
                assert!((s - (1 << PRECISION_BITS)).abs() <= 8, "{i}->{o} at {xx}: {s}");
            }
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::filled(256, 192, [10, 128, 250]).unwrap();
        let out = resize_bicubic(&img, 224, 224);
        assert_eq!((out.width(), out.height()), (224, 224));
        assert!(out.as_raw().chunks_exact(3).all(|p| p == [10, 128, 250]));
    }

    #[test]
    fn same_size_is_identity() {
        let data: Vec<u8> = (0..5 * 4 * 3).map(|i| (i * 37 % 256) as u8).collect();
        let img = RgbImage::new(5, 4, data).unwrap();
        assert_eq!(resize_bicubic(&img, 5, 4), img);
    }
}
