//! CUDA graphs: one recorded chain of kernels replayed with a single launch, through a small C++
//! shim over libtorch's `at::cuda::CUDAGraph` (tch has no graph API). The shim is compiled only
//! with the `cuda-graphs` feature (it needs CUDA headers); without it, or on a CPU device,
//! [`CudaGraph::capture`] reports that graphs are unavailable and callers run the same code
//! eagerly.
use tch::Device;

use super::error::{ModelError, Result};

/// Whether this build can capture CUDA graphs at all (the `cuda-graphs` feature).
pub const COMPILED: bool = cfg!(feature = "cuda-graphs");

/// A captured graph; replays on the device's current stream. Everything the recorded kernels
/// read or write (weights, caches, input and output buffers) must outlive it and stay in place.
#[derive(Debug)]
pub struct CudaGraph {
    #[cfg(feature = "cuda-graphs")]
    raw: shim::Handle,
}

impl CudaGraph {
    /// Runs `body` once on a side stream of `device` (warm-up: libraries create their handles
    /// and workspaces there), then records a second run of it into a graph; the recorded run
    /// executes nothing, so outputs hold what the warm-up computed until the first replay.
    /// `body` must not read device values back to the host nor change shapes between runs.
    pub fn capture(device: Device, body: impl FnMut() -> Result<()>) -> Result<Self> {
        let Device::Cuda(index) = device else {
            return Err(ModelError::Graph(format!(
                "CUDA graphs need a CUDA device, not {device:?}"
            )));
        };
        Self::capture_on(index, body)
    }

    #[cfg(feature = "cuda-graphs")]
    fn capture_on(index: usize, mut body: impl FnMut() -> Result<()>) -> Result<Self> {
        let raw = shim::Handle::new(index)?;
        raw.enter_side_stream()?;
        let recorded = (|| {
            body()?;
            raw.capture_begin()?;
            let run = body();
            // End the capture even when the body failed, so that the stream is usable again.
            let ended = raw.capture_end();
            run.and(ended)
        })();
        let left = raw.leave_side_stream();
        recorded.and(left)?;
        Ok(Self { raw })
    }

    #[cfg(not(feature = "cuda-graphs"))]
    fn capture_on(_: usize, _: impl FnMut() -> Result<()>) -> Result<Self> {
        Err(ModelError::Graph(
            "this build has no CUDA graph support (cargo feature `cuda-graphs`)".into(),
        ))
    }

    /// Launches the recorded kernels once.
    pub fn replay(&self) -> Result<()> {
        #[cfg(feature = "cuda-graphs")]
        return self.raw.replay();
        #[cfg(not(feature = "cuda-graphs"))]
        unreachable!("a CudaGraph exists only where the shim is compiled")
    }
}

#[cfg(feature = "cuda-graphs")]
mod shim {
    //! The C ABI of `csrc/cuda_graph.cpp`: every call returns 0 or, on a C++ exception, non-zero
    //! with the message in `univla_graph_last_error` (thread-local on the C++ side).
    use std::ffi::{c_int, c_void, CStr};
    use std::ptr::NonNull;

    use super::{ModelError, Result};

    extern "C" {
        fn univla_graph_last_error() -> *const std::ffi::c_char;
        fn univla_graph_new(device: c_int, out: *mut *mut c_void) -> c_int;
        fn univla_graph_enter_side_stream(g: *mut c_void) -> c_int;
        fn univla_graph_leave_side_stream(g: *mut c_void) -> c_int;
        fn univla_graph_capture_begin(g: *mut c_void) -> c_int;
        fn univla_graph_capture_end(g: *mut c_void) -> c_int;
        fn univla_graph_replay(g: *mut c_void) -> c_int;
        fn univla_graph_free(g: *mut c_void);
    }

    fn check(rc: c_int) -> Result<()> {
        if rc == 0 {
            return Ok(());
        }
        // SAFETY: the shim returns a pointer to its thread-local NUL-terminated message, valid
        // until its next call on this thread; it is copied at once.
        let msg = unsafe { CStr::from_ptr(univla_graph_last_error()) };
        Err(ModelError::Graph(msg.to_string_lossy().into_owned()))
    }

    /// Owns one `at::cuda::CUDAGraph` and the side stream it is captured on.
    #[derive(Debug)]
    pub(super) struct Handle(NonNull<c_void>);

    // SAFETY: the C++ object holds no thread-affine state: libtorch's CUDAGraph may be replayed
    // and destroyed from any thread (replay uses the calling thread's current stream).
    unsafe impl Send for Handle {}

    impl Handle {
        pub(super) fn new(device: usize) -> Result<Self> {
            let device = c_int::try_from(device).map_err(|_| ModelError::Graph(format!("device index {device}")))?;
            let mut raw = std::ptr::null_mut();
            // SAFETY: writes one pointer into `raw` on success.
            check(unsafe { univla_graph_new(device, &mut raw) })?;
            NonNull::new(raw)
                .map(Self)
                .ok_or_else(|| ModelError::Graph("the shim returned no graph".into()))
        }

        pub(super) fn enter_side_stream(&self) -> Result<()> {
            // SAFETY: `self.0` is a live handle from `univla_graph_new`.
            check(unsafe { univla_graph_enter_side_stream(self.0.as_ptr()) })
        }

        pub(super) fn leave_side_stream(&self) -> Result<()> {
            // SAFETY: as above.
            check(unsafe { univla_graph_leave_side_stream(self.0.as_ptr()) })
        }

        pub(super) fn capture_begin(&self) -> Result<()> {
            // SAFETY: as above.
            check(unsafe { univla_graph_capture_begin(self.0.as_ptr()) })
        }

        pub(super) fn capture_end(&self) -> Result<()> {
            // SAFETY: as above.
            check(unsafe { univla_graph_capture_end(self.0.as_ptr()) })
        }

        pub(super) fn replay(&self) -> Result<()> {
            // SAFETY: as above.
            check(unsafe { univla_graph_replay(self.0.as_ptr()) })
        }
    }

    impl Drop for Handle {
        fn drop(&mut self) {
            // SAFETY: the handle is freed exactly once, here.
            unsafe { univla_graph_free(self.0.as_ptr()) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_off_cuda_is_an_error_and_runs_nothing() {
        let mut runs = 0;
        let err = CudaGraph::capture(Device::Cpu, || {
            runs += 1;
            Ok(())
        })
        .unwrap_err();
        assert!(err.to_string().contains("CUDA device"), "{err}");
        assert_eq!(runs, 0);
    }
}
