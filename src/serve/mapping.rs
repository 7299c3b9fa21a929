//! Which request keys hold the camera image, the proprio state and the instruction, per
//! embodiment (`config/serve/*.yaml`). Keys name a top-level entry (`observation/image`) or, when
//! no such entry exists, a path through nested maps split at `/` (`images/cam_high`).
use std::path::Path;

use super::ServeError;

/// The request layout of one embodiment.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// Name reported in the server's metadata.
    #[serde(default = "default_embodiment")]
    pub embodiment: String,
    /// The camera image: uint8 HxWx3 or 3xHxW, or float in [0, 1].
    #[serde(default = "default_image")]
    pub image: String,
    /// The proprio vector (joint positions); `null` when the embodiment sends none. Only heads
    /// that read proprio need it.
    #[serde(default = "default_state")]
    pub state: Option<String>,
    /// The instruction text.
    #[serde(default = "default_prompt")]
    pub prompt: String,
    /// A boolean that starts a new episode when true.
    #[serde(default = "default_reset")]
    pub reset: String,
}

fn default_embodiment() -> String {
    "libero".into()
}
fn default_image() -> String {
    "observation/image".into()
}
fn default_state() -> Option<String> {
    Some("observation/state".into())
}
fn default_prompt() -> String {
    "prompt".into()
}
fn default_reset() -> String {
    "reset".into()
}

impl Default for Mapping {
    /// The openpi LIBERO example's keys.
    fn default() -> Self {
        Self {
            embodiment: default_embodiment(),
            image: default_image(),
            state: default_state(),
            prompt: default_prompt(),
            reset: default_reset(),
        }
    }
}

impl Mapping {
    pub fn from_file(path: &Path) -> Result<Self, ServeError> {
        let text = std::fs::read_to_string(path).map_err(|e| ServeError::Config(format!("{}: {e}", path.display())))?;
        Self::from_yaml(&text).map_err(|e| ServeError::Config(format!("{}: {e}", path.display())))
    }

    pub fn from_yaml(text: &str) -> Result<Self, ServeError> {
        let m: Self = serde_yaml::from_str(text).map_err(|e| ServeError::Config(e.to_string()))?;
        for (field, key) in [("image", &m.image), ("prompt", &m.prompt), ("reset", &m.reset)] {
            if key.is_empty() {
                return Err(ServeError::Config(format!("`{field}` must name a key")));
            }
        }
        if m.state.as_deref() == Some("") {
            return Err(ServeError::Config("`state` must name a key or be null".into()));
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_strictness() {
        assert_eq!(Mapping::from_yaml("{}").unwrap(), Mapping::default());
        let m = Mapping::from_yaml("embodiment: aloha\nimage: images/cam_high\nstate: null\n").unwrap();
        assert_eq!(m.image, "images/cam_high");
        assert_eq!(m.state, None);
        let err = Mapping::from_yaml("imgae: x\n").unwrap_err().to_string();
        assert!(err.contains("imgae"), "{err}");
        assert!(Mapping::from_yaml("prompt: ''\n")
            .unwrap_err()
            .to_string()
            .contains("prompt"));
    }
}
