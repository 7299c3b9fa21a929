//! Parsing the device and dtype users name in configs and on the command line.
use tch::{Device, Kind};

use super::session::RuntimeError;

/// `cpu`, `cuda` (= `cuda:0`) or `cuda:N`; CUDA must really be available (libtorch's CUDA
/// library linked and a GPU present).
pub fn parse_device(s: &str) -> Result<Device, RuntimeError> {
    let s = s.trim().to_ascii_lowercase();
    let device = match s.as_str() {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => Device::Cuda(0),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => Device::Cuda(i),
            _ => {
                return Err(RuntimeError::Invalid(format!(
                    "unknown device `{s}`: use cpu, cuda or cuda:N"
                )))
            }
        },
    };
    let available = tch::Cuda::device_count();
    match device {
        Device::Cuda(i) if (i as i64) < available => Ok(device),
        _ => Err(RuntimeError::Invalid(format!(
            "device `{s}` requested but libtorch sees {available} CUDA device(s){}",
            if available == 0 {
                " (no GPU, or a CPU-only libtorch)"
            } else {
                ""
            }
        ))),
    }
}

/// `f32`/`float32`, `bf16`/`bfloat16`, `f16`/`float16`/`half`.
pub fn parse_dtype(s: &str) -> Result<Kind, RuntimeError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "f32" | "float32" | "float" | "fp32" => Ok(Kind::Float),
        "bf16" | "bfloat16" => Ok(Kind::BFloat16),
        "f16" | "float16" | "half" | "fp16" => Ok(Kind::Half),
        other => Err(RuntimeError::Invalid(format!(
            "unknown dtype `{other}`: use f32, bf16 or f16"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_rejects_others() {
        assert_eq!(parse_device("CPU").unwrap(), Device::Cpu);
        assert!(parse_device("gpu").unwrap_err().to_string().contains("unknown device"));
        if tch::Cuda::device_count() == 0 {
            assert!(parse_device("cuda:0")
                .unwrap_err()
                .to_string()
                .contains("0 CUDA device"));
        }
        assert_eq!(parse_dtype("bf16").unwrap(), Kind::BFloat16);
        assert_eq!(parse_dtype("float32").unwrap(), Kind::Float);
        assert!(parse_dtype("int8").is_err());
    }
}
