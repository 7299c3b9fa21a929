//! `--ros-args` parsing as `ros2 run` and launch_ros pass them, and resolution of a node's name,
//! namespace, parameters and remapped topic names from them (rcl/rclcpp semantics).
//!
//! ```text
//! prog [args] --ros-args -r __node:=arm -r __ns:=/robot1 --params-file /tmp/p.yaml
//!      -r image:=/cam/color/image_raw -p rate_hz:=20.0 -- [more program args]
//! ```
use std::path::{Path, PathBuf};

use serde_yaml::Value;

use super::error::RosArgsError;
use super::names::{expand_name, node_pattern_matches, validate_namespace, validate_node_name, RemapKind, RemapRule};
use super::params::{flatten_params, yaml_key, ParamValue, Params};

/// The key under a node entry of a parameter file that holds the parameters.
const ROS_PARAMETERS_KEY: &str = "ros__parameters";

/// Log severity of `--log-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl LogLevel {
    fn parse(s: &str) -> Result<Self, RosArgsError> {
        match s.to_ascii_lowercase().as_str() {
            "debug" => Ok(Self::Debug),
            "info" => Ok(Self::Info),
            "warn" | "warning" => Ok(Self::Warn),
            "error" => Ok(Self::Error),
            "fatal" => Ok(Self::Fatal),
            _ => Err(RosArgsError::LogLevel(s.into())),
        }
    }

    /// The matching `tracing` filter directive (fatal maps to error).
    pub fn as_tracing_directive(&self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error | Self::Fatal => "error",
        }
    }
}

/// One parameter source, in command-line order.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamSource {
    /// A `--params-file`: node-name pattern -> parameters, in file order.
    File {
        path: PathBuf,
        entries: Vec<ParamFileEntry>,
    },
    /// A `-p [node:]name:=value` override.
    Override {
        node: Option<String>,
        name: String,
        value: ParamValue,
    },
}

/// One node entry of a parameter file: its node-name pattern (`/**`, `/robot/arm`) and values.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamFileEntry {
    pub node_pattern: String,
    pub values: Vec<(String, ParamValue)>,
}

/// Everything found between `--ros-args` and `--` (all blocks together).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RosArgs {
    /// `-r` rules in order (node/namespace renames and topic remaps).
    pub remaps: Vec<RemapRule>,
    /// `--params-file` and `-p` in order.
    pub params: Vec<ParamSource>,
    /// `--log-level level` (the default logger level).
    pub log_level: Option<LogLevel>,
    /// `--log-level logger:=level` entries.
    pub logger_levels: Vec<(String, LogLevel)>,
    /// `-e/--enclave`.
    pub enclave: Option<String>,
    /// `--log-config-file`.
    pub log_config_file: Option<PathBuf>,
    /// `--log-file-name`.
    pub log_file_name: Option<String>,
    /// `--enable/--disable-rosout-logs` (rcl default: enabled).
    pub rosout_logs: bool,
    /// `--enable/--disable-stdout-logs` (default: enabled).
    pub stdout_logs: bool,
    /// `--enable/--disable-external-lib-logs` (default: disabled).
    pub external_lib_logs: bool,
}

impl RosArgs {
    /// Splits `args` (the whole argv, program name included) into ROS arguments and the rest,
    /// which is returned unchanged and in order for the program's own parser.
    pub fn parse<I, S>(args: I) -> Result<(Self, Vec<String>), RosArgsError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut out = Self {
            rosout_logs: true,
            stdout_logs: true,
            ..Self::default()
        };
        let mut rest = Vec::new();
        let mut in_ros = false;
        let mut it = args.into_iter().map(Into::into);
        while let Some(arg) = it.next() {
            if arg == "--ros-args" {
                in_ros = true;
                continue;
            }
            if !in_ros {
                rest.push(arg);
                continue;
            }
            let mut value = |flag: &str| it.next().ok_or_else(|| RosArgsError::MissingValue(flag.to_string()));
            match arg.as_str() {
                "--" => in_ros = false,
                "-r" | "--remap" => out.remaps.push(RemapRule::parse(&value(&arg)?)?),
                "-p" | "--param" => out.params.push(parse_param_rule(&value(&arg)?)?),
                "--params-file" => {
                    let path = PathBuf::from(value(&arg)?);
                    let entries = load_params_file(&path)?;
                    out.params.push(ParamSource::File { path, entries });
                }
                "--log-level" => out.parse_log_level(&value(&arg)?)?,
                "--log-config-file" => out.log_config_file = Some(PathBuf::from(value(&arg)?)),
                "--log-file-name" => out.log_file_name = Some(value(&arg)?),
                "-e" | "--enclave" => out.enclave = Some(value(&arg)?),
                "--enable-rosout-logs" => out.rosout_logs = true,
                "--disable-rosout-logs" => out.rosout_logs = false,
                "--enable-stdout-logs" => out.stdout_logs = true,
                "--disable-stdout-logs" => out.stdout_logs = false,
                "--enable-external-lib-logs" => out.external_lib_logs = true,
                "--disable-external-lib-logs" => out.external_lib_logs = false,
                _ => return Err(RosArgsError::UnknownFlag(arg)),
            }
        }
        Ok((out, rest))
    }

    /// [`RosArgs::parse`] on `std::env::args()`.
    pub fn from_env() -> Result<(Self, Vec<String>), RosArgsError> {
        Self::parse(std::env::args())
    }

    fn parse_log_level(&mut self, text: &str) -> Result<(), RosArgsError> {
        match text.split_once(":=") {
            Some((logger, level)) if !logger.is_empty() => {
                self.logger_levels.push((logger.to_string(), LogLevel::parse(level)?));
            }
            Some(_) => {
                return Err(RosArgsError::MalformedRule {
                    kind: "log level",
                    rule: text.into(),
                    expected: "level or logger:=level",
                })
            }
            None => self.log_level = Some(LogLevel::parse(text)?),
        }
        Ok(())
    }

    /// Resolves the node identity from its default name and namespace (as the code would pass them
    /// to rclcpp) plus these arguments: node/namespace remaps, parameters and topic remaps.
    pub fn resolve_node(&self, default_name: &str, default_ns: &str) -> Result<NodeIdentity, RosArgsError> {
        validate_node_name(default_name)?;
        let default_ns = absolute_ns(default_ns);
        validate_namespace(&default_ns)?;
        // rcl: the first matching rule of each kind wins.
        let name = self
            .remaps
            .iter()
            .filter(|r| r.applies_to(default_name))
            .find_map(|r| match &r.kind {
                RemapKind::NodeName(n) => Some(n.clone()),
                _ => None,
            })
            .unwrap_or_else(|| default_name.to_string());
        let namespace = self
            .remaps
            .iter()
            .filter(|r| r.applies_to(default_name))
            .find_map(|r| match &r.kind {
                RemapKind::Namespace(n) => Some(n.clone()),
                _ => None,
            })
            .unwrap_or(default_ns);
        let fqn = if namespace == "/" {
            format!("/{name}")
        } else {
            format!("{namespace}/{name}")
        };
        let mut remaps = Vec::new();
        for rule in self.remaps.iter().filter(|r| r.applies_to(default_name)) {
            if let RemapKind::Name { from, to } = &rule.kind {
                remaps.push((
                    expand_name(from, &namespace, &name)?,
                    expand_name(to, &namespace, &name)?,
                ));
            }
        }
        let mut params = Params::new();
        // Files in order (their matching entries in file order), then -p overrides in order.
        for source in &self.params {
            if let ParamSource::File { entries, .. } = source {
                for entry in entries {
                    if node_pattern_matches(&entry.node_pattern, &fqn) {
                        for (k, v) in &entry.values {
                            params.set(k.clone(), v.clone());
                        }
                    }
                }
            }
        }
        for source in &self.params {
            if let ParamSource::Override {
                node,
                name: pname,
                value,
            } = source
            {
                if node.as_deref().is_none_or(|n| n == name || n == default_name) {
                    params.set(pname.clone(), value.clone());
                }
            }
        }
        Ok(NodeIdentity {
            name,
            namespace,
            fqn,
            params,
            remaps,
        })
    }
}

/// Makes a namespace given by code absolute (`robot` -> `/robot`, `` -> `/`), as rclcpp does.
fn absolute_ns(ns: &str) -> String {
    if ns.starts_with('/') {
        ns.to_string()
    } else {
        format!("/{ns}")
    }
}

/// Parses the text after `-p`: `[node:]name:=value`.
fn parse_param_rule(rule: &str) -> Result<ParamSource, RosArgsError> {
    let malformed = || RosArgsError::MalformedRule {
        kind: "parameter",
        rule: rule.into(),
        expected: "[node:]name:=value",
    };
    let (lhs, value) = rule.split_once(":=").ok_or_else(malformed)?;
    let (node, name) = match lhs.split_once(':') {
        Some((n, p)) => {
            validate_node_name(n)?;
            (Some(n.to_string()), p)
        }
        None => (None, lhs),
    };
    if name.is_empty() {
        return Err(malformed());
    }
    Ok(ParamSource::Override {
        node,
        name: name.to_string(),
        value: ParamValue::parse_yaml(name, value)?,
    })
}

/// Reads a parameter file: node keys (possibly nested as namespace levels) down to
/// `ros__parameters`, whose maps are flattened to dotted names.
pub fn load_params_file(path: &Path) -> Result<Vec<ParamFileEntry>, RosArgsError> {
    let text = std::fs::read_to_string(path).map_err(|source| RosArgsError::ParamFileIo {
        path: path.into(),
        source,
    })?;
    parse_params_yaml(path, &text)
}

/// [`load_params_file`] on text already read (`path` only labels errors).
pub fn parse_params_yaml(path: &Path, text: &str) -> Result<Vec<ParamFileEntry>, RosArgsError> {
    let file_err = |why: String| RosArgsError::ParamFile { path: path.into(), why };
    let root: Value = serde_yaml::from_str(text).map_err(|e| file_err(format!("not valid YAML: {e}")))?;
    let mut entries = Vec::new();
    match root {
        Value::Mapping(map) => collect_nodes("", &map, &mut entries).map_err(|e| match e {
            RosArgsError::ParamFile { why, .. } => file_err(why),
            other => other,
        })?,
        Value::Null => {}
        _ => return Err(file_err("top level must be a map of node names".into())),
    }
    Ok(entries)
}

fn collect_nodes(prefix: &str, map: &serde_yaml::Mapping, out: &mut Vec<ParamFileEntry>) -> Result<(), RosArgsError> {
    let err = |why: String| RosArgsError::ParamFile {
        path: PathBuf::new(),
        why,
    };
    for (k, v) in map {
        let key = yaml_key(k).ok_or_else(|| err(format!("node key {k:?} is not a string")))?;
        let Value::Mapping(inner) = v else {
            return Err(err(format!(
                "entry '{prefix}{key}' must be a map with '{ROS_PARAMETERS_KEY}' (found {})",
                yaml_kind(v)
            )));
        };
        if key == ROS_PARAMETERS_KEY {
            if prefix.is_empty() {
                return Err(err(format!(
                    "'{ROS_PARAMETERS_KEY}' must be under a node name such as '/**'"
                )));
            }
            let mut values = Vec::new();
            flatten_params("", inner, &mut values)?;
            out.push(ParamFileEntry {
                node_pattern: prefix.trim_end_matches('/').to_string(),
                values,
            });
        } else {
            let next = format!("{prefix}{}/", key.trim_end_matches('/'));
            collect_nodes(&next, inner, out)?;
        }
    }
    Ok(())
}

fn yaml_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a map",
        Value::Tagged(_) => "a tagged value",
    }
}

/// A node's resolved identity: final name and namespace, parameters and topic remaps.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeIdentity {
    /// Node base name after `__node:=`.
    pub name: String,
    /// Absolute namespace after `__ns:=`.
    pub namespace: String,
    /// `namespace/name`.
    pub fqn: String,
    /// Parameters for this node (files, then `-p`).
    pub params: Params,
    /// Topic/service remaps with both sides expanded against this node: (from, to).
    pub remaps: Vec<(String, String)>,
}

impl NodeIdentity {
    /// Resolves a topic or service name the node uses: expansion, then the first matching remap.
    pub fn resolve_topic(&self, name: &str) -> Result<String, RosArgsError> {
        let full = expand_name(name, &self.namespace, &self.name)?;
        Ok(self
            .remaps
            .iter()
            .find(|(from, _)| *from == full)
            .map(|(_, to)| to.clone())
            .unwrap_or(full))
    }
}
