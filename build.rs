//! Embeds an rpath to libtorch in every binary and test of this package, so they run without
//! LD_LIBRARY_PATH, and keeps libtorch_cuda linked (linkers drop it under `--as-needed`, since
//! nothing references its symbols directly; without it CUDA devices are never registered).
//! With the `cuda-graphs` feature, also compiles the C++ shim over libtorch's CUDA graphs
//! (`csrc/cuda_graph.cpp`) against libtorch's headers and the CUDA runtime headers.
use std::path::PathBuf;
use std::process::Command;

fn torch_lib_dir() -> Option<PathBuf> {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=VIRTUAL_ENV");
    if let Ok(lib) = std::env::var("LIBTORCH_LIB") {
        return Some(PathBuf::from(lib).join("lib"));
    }
    if let Ok(root) = std::env::var("LIBTORCH") {
        return Some(PathBuf::from(root).join("lib"));
    }
    // Same interpreter rule as torch-sys with LIBTORCH_USE_PYTORCH.
    let python = if std::env::var_os("VIRTUAL_ENV").is_some() {
        "python"
    } else {
        "python3"
    };
    let out = Command::new(python)
        .args([
            "-c",
            "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
        ])
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// The folder holding `cuda_runtime_api.h` and `crt/host_config.h`: `$CUDA_INCLUDE_DIR`, else
/// the NVIDIA wheels next to libtorch's (`nvidia/cu13/include`, …), else the toolkit's.
#[cfg(feature = "cuda-graphs")]
fn cuda_include_dir(torch_lib: &std::path::Path) -> Option<PathBuf> {
    println!("cargo:rerun-if-env-changed=CUDA_INCLUDE_DIR");
    let complete = |d: &std::path::Path| d.join("cuda_runtime_api.h").exists() && d.join("crt/host_config.h").exists();
    if let Some(dir) = std::env::var_os("CUDA_INCLUDE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let site = torch_lib.parent()?.parent()?;
    let wheels = ["cu13", "cu12", "cuda_runtime"].map(|w| site.join("nvidia").join(w).join("include"));
    wheels
        .into_iter()
        .chain([PathBuf::from("/usr/local/cuda/include")])
        .find(|d| complete(d))
}

#[cfg(feature = "cuda-graphs")]
fn build_cuda_graph_shim(torch_lib: &std::path::Path) {
    println!("cargo:rerun-if-changed=csrc/cuda_graph.cpp");
    let torch = torch_lib.parent().expect("libtorch's lib folder has a parent");
    let Some(cuda) = cuda_include_dir(torch_lib) else {
        panic!(
            "feature cuda-graphs: CUDA runtime headers not found; set CUDA_INCLUDE_DIR to a folder with \
             cuda_runtime_api.h and crt/host_config.h (the nvidia-cuda-runtime and nvidia-cuda-crt wheels)"
        );
    };
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("csrc/cuda_graph.cpp")
        .include(torch.join("include"))
        .include(torch.join("include/torch/csrc/api/include"))
        .include(cuda)
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .flag_if_supported("-Wno-unused-parameter")
        .compile("univla_cuda_graph");
    // The shim calls into libtorch_cuda and libc10_cuda directly.
    println!("cargo:rustc-link-search=native={}", torch_lib.display());
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,-lc10_cuda,--as-needed");
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let Some(dir) = torch_lib_dir() else {
        #[cfg(feature = "cuda-graphs")]
        panic!("feature cuda-graphs: libtorch not found (set LIBTORCH)");
        #[cfg(not(feature = "cuda-graphs"))]
        {
            println!("cargo:warning=libtorch not found: binaries will need LD_LIBRARY_PATH");
            return;
        }
    };
    let dir = dir.canonicalize().unwrap_or(dir);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    if dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-search=native={}", dir.display());
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
    #[cfg(feature = "cuda-graphs")]
    build_cuda_graph_shim(&dir);
}
