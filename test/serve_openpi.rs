//! The unmodified PyPI `openpi-client` (0.1.2, in the venv `scripts/setup.sh` links as
//! `.venv-openpi`) drives `univla serve` through `examples/openpi_remote.py` and gets the latent
//! tokens, chunks and actions of `univla infer --json --greedy`. Fails (does not skip) when that
//! venv is missing.
mod serve_common;

use std::path::PathBuf;
use std::process::Command;

use serve_common::{floats, max_diff, ServerProc, INSTRUCTION};

#[test]
fn openpi_client_gets_the_actions_of_infer() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv-openpi/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup.sh (it installs openpi-client==0.1.2 into its own venv)",
        python.display()
    );
    let reference = serve_common::infer_json(3);
    let server = ServerProc::start(&["--api-key", "k"]);
    let port = server.addr.rsplit(':').next().unwrap().to_owned();
    let mut cmd = Command::new(&python);
    cmd.arg(root.join("examples/openpi_remote.py"))
        .args(["--port", &port, "--api-key", "k", "--prompt", INSTRUCTION]);
    for t in 0..3 {
        cmd.arg(serve_common::image_path(t));
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "openpi client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["metadata"]["server"], "univla_ros");
    assert_eq!(got["metadata"]["action_dim"], 7);
    for (t, want) in reference.iter().enumerate() {
        let step = &got["steps"][t];
        assert_eq!(step["episode_step"], t);
        assert_eq!(floats(&step["latent_tokens"]), floats(&want["latent_ids"]), "step {t}");
        let d = max_diff(&floats(&step["actions"]), &floats(&want["chunk"]));
        assert!(d <= 1e-5, "step {t}: actions differ by {d:e}");
        let d = max_diff(&floats(&step["action"]), &floats(&want["action"]));
        assert!(d <= 1e-5, "step {t}: action differs by {d:e}");
    }
}
