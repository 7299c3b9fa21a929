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

/// CUDA runtime sonames libtorch may have loaded, newest first.
const CUDART_SONAMES: [&str; 4] = [
    "libcudart.so.13",
    "libcudart.so.12",
    "libcudart.so.11.0",
    "libcudart.so",
];

/// Device memory in use on CUDA device `index`, in MiB: total − free as `cudaMemGetInfo` reports
/// it (device-wide: this process's CUDA context and caching allocator, and any other process).
/// Looks the function up in the CUDA runtime libtorch already loaded, so it costs no link-time
/// dependency; `None` when no CUDA runtime is loaded (CPU-only libtorch) or no such device exists.
pub fn cuda_memory_in_use_mib(index: usize) -> Option<f64> {
    type MemGetInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> i32;
    type SetDevice = unsafe extern "C" fn(i32) -> i32;
    let index = i32::try_from(index).ok()?;
    for soname in CUDART_SONAMES {
        let name = std::ffi::CString::new(soname).ok()?;
        // SAFETY: RTLD_NOLOAD only returns a handle to a library already loaded; nothing is run.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
        if handle.is_null() {
            continue;
        }
        // SAFETY: the symbols are looked up by their documented C names; the pointers are only
        // used if found, with the CUDA runtime's signatures.
        let (get, set) = unsafe {
            (
                libc::dlsym(handle, c"cudaMemGetInfo".as_ptr()),
                libc::dlsym(handle, c"cudaSetDevice".as_ptr()),
            )
        };
        let result = if get.is_null() || set.is_null() {
            None
        } else {
            // SAFETY: see above; both functions only write through the given pointers.
            unsafe {
                let get: MemGetInfo = std::mem::transmute::<*mut libc::c_void, MemGetInfo>(get);
                let set: SetDevice = std::mem::transmute::<*mut libc::c_void, SetDevice>(set);
                let (mut free, mut total) = (0usize, 0usize);
                (set(index) == 0 && get(&mut free, &mut total) == 0)
                    .then(|| total.saturating_sub(free) as f64 / (1024.0 * 1024.0))
            }
        };
        // SAFETY: balances the dlopen above (the library stays loaded by libtorch).
        unsafe { libc::dlclose(handle) };
        if result.is_some() {
            return result;
        }
    }
    None
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

    #[test]
    fn cuda_memory_is_none_without_that_device() {
        // Runs the lookup in the loaded CUDA runtime on CPU machines too (cudaSetDevice fails).
        let count = tch::Cuda::device_count();
        assert_eq!(cuda_memory_in_use_mib(count as usize), None);
        if count > 0 {
            assert!(cuda_memory_in_use_mib(0).is_some_and(|m| m > 0.0));
        }
    }
}
