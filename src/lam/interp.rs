//! Antialiased bicubic resampling, as `F.interpolate(mode="bicubic", antialias=True,
//! align_corners=False)` computes it: the DINOv2 hub code resamples its 37×37 position grid this
//! way. libtorch's plain bicubic kernel has no antialiasing, so the separable weights are built
//! here: Keys' cubic with a = −0.5 (the antialiased path uses PIL's coefficient, not the −0.75 of
//! plain bicubic), its support widened by the downsampling factor, weights normalised per output.
use tch::{Device, Kind, Tensor};

use super::error::{LamError, Result};

/// Keys' cubic convolution coefficient of PyTorch's antialiased bicubic filter.
const CUBIC_A: f64 = -0.5;
/// Half-width of the cubic kernel in input pixels before scaling.
const CUBIC_SUPPORT: f64 = 2.0;

fn cubic(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        ((CUBIC_A + 2.0) * x - (CUBIC_A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * CUBIC_A
    } else {
        0.0
    }
}

/// Resampling matrix [out_size × in_size] (row-major): output i = Σ_j w[i][j] · input j.
pub fn aa_bicubic_weights(in_size: usize, out_size: usize) -> Vec<f64> {
    let mut w = vec![0.0; out_size * in_size];
    if in_size == 0 || out_size == 0 {
        return w;
    }
    let scale = in_size as f64 / out_size as f64;
    let widen = scale.max(1.0);
    let support = CUBIC_SUPPORT * widen;
    for i in 0..out_size {
        let center = scale * (i as f64 + 0.5);
        // Truncation toward zero, then clamping, as the reference computes the window.
        let lo = ((center - support + 0.5) as i64).max(0) as usize;
        let hi = ((center + support + 0.5) as i64).clamp(0, in_size as i64) as usize;
        let row = &mut w[i * in_size..(i + 1) * in_size];
        let mut total = 0.0;
        for (j, slot) in row.iter_mut().enumerate().take(hi).skip(lo) {
            *slot = cubic((j as f64 - center + 0.5) / widen);
            total += *slot;
        }
        if total != 0.0 {
            row.iter_mut().for_each(|v| *v /= total);
        }
    }
    w
}

fn weight_matrix(in_size: usize, out_size: usize, device: Device) -> Result<Tensor> {
    let w = aa_bicubic_weights(in_size, out_size);
    Ok(Tensor::f_from_slice(&w)?
        .f_view([out_size as i64, in_size as i64])?
        .f_to_device(device)?)
}

/// Resizes `x` [.., H, W] to [.., out_h, out_w]; computed in f64, returned in `x`'s dtype.
pub fn resize_bicubic_aa(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let size = x.size();
    if size.len() < 2 || out_h == 0 || out_w == 0 {
        return Err(LamError::Input(format!(
            "cannot resize a tensor of shape {size:?} to {out_h}x{out_w}"
        )));
    }
    let (h, w) = (size[size.len() - 2] as usize, size[size.len() - 1] as usize);
    let device = x.device();
    let rows = weight_matrix(h, out_h, device)?;
    let cols = weight_matrix(w, out_w, device)?;
    let y = rows
        .f_matmul(&x.f_to_kind(Kind::Double)?)?
        .f_matmul(&cols.f_transpose(0, 1)?)?;
    Ok(y.f_to_kind(x.kind())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_rows_sum_to_one_and_identity_at_equal_size() {
        let w = aa_bicubic_weights(37, 16);
        for row in w.chunks(37) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        let id = aa_bicubic_weights(5, 5);
        for i in 0..5 {
            for j in 0..5 {
                assert!((id[i * 5 + j] - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
    }
}
