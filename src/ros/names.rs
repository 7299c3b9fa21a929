//! ROS 2 name rules (rcl semantics): validation, expansion of relative and `~` names against the
//! node, remap rules, and the node-name patterns of parameter files (`/**`, `/*/arm`).
use super::error::RosArgsError;

/// True if `token` is a valid name token: `[A-Za-z_][A-Za-z0-9_]*`.
fn valid_token(token: &str) -> bool {
    let mut chars = token.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Validates a node base name (one token).
pub fn validate_node_name(name: &str) -> Result<(), RosArgsError> {
    if valid_token(name) {
        Ok(())
    } else {
        Err(RosArgsError::InvalidName {
            kind: "node name",
            name: name.into(),
            why: "must be one token of letters, digits and '_', not starting with a digit".into(),
        })
    }
}

/// Validates an absolute namespace (`/` or `/a/b`).
pub fn validate_namespace(ns: &str) -> Result<(), RosArgsError> {
    let invalid = |why: &str| RosArgsError::InvalidName {
        kind: "namespace",
        name: ns.into(),
        why: why.into(),
    };
    if !ns.starts_with('/') {
        return Err(invalid("must be fully qualified (start with '/')"));
    }
    if ns == "/" {
        return Ok(());
    }
    if ns.ends_with('/') {
        return Err(invalid("must not end with '/'"));
    }
    if ns[1..].split('/').all(valid_token) {
        Ok(())
    } else {
        Err(invalid(
            "tokens must be letters, digits and '_', not starting with a digit, separated by single '/'",
        ))
    }
}

/// Validates a fully qualified topic/service name.
fn validate_fq_name(name: &str, original: &str) -> Result<(), RosArgsError> {
    let invalid = |why: &str| RosArgsError::InvalidName {
        kind: "topic name",
        name: original.into(),
        why: why.into(),
    };
    if name == "/" || name.ends_with('/') {
        return Err(invalid("must not end with '/'"));
    }
    if name[1..].split('/').all(valid_token) {
        Ok(())
    } else {
        Err(invalid(
            "tokens must be letters, digits and '_', not starting with a digit, separated by single '/'",
        ))
    }
}

/// Joins a namespace and a relative name.
fn join(ns: &str, rel: &str) -> String {
    if ns == "/" {
        format!("/{rel}")
    } else {
        format!("{ns}/{rel}")
    }
}

/// Expands a topic or service name to its fully qualified form (rcl_expand_topic_name):
/// `/abs` stays, `rel` -> `<ns>/rel`, `~` -> `<ns>/<node>`, `~/x` -> `<ns>/<node>/x`, and the
/// substitutions `{node}` and `{ns}`/`{namespace}`.
pub fn expand_name(name: &str, node_ns: &str, node_name: &str) -> Result<String, RosArgsError> {
    if name.is_empty() {
        return Err(RosArgsError::InvalidName {
            kind: "topic name",
            name: name.into(),
            why: "is empty".into(),
        });
    }
    let ns_sub = if node_ns == "/" { "" } else { node_ns };
    let substituted = name
        .replace("{node}", node_name)
        .replace("{namespace}", ns_sub)
        .replace("{ns}", ns_sub);
    let private = join(node_ns, node_name);
    let full = if substituted.starts_with('/') {
        substituted
    } else if substituted == "~" {
        private
    } else if let Some(rest) = substituted.strip_prefix("~/") {
        format!("{private}/{rest}")
    } else if substituted.starts_with('~') {
        return Err(RosArgsError::InvalidName {
            kind: "topic name",
            name: name.into(),
            why: "'~' must be followed by '/' or end the name".into(),
        });
    } else {
        join(node_ns, &substituted)
    };
    validate_fq_name(&full, name)?;
    Ok(full)
}

/// What a remap rule replaces.
#[derive(Debug, Clone, PartialEq)]
pub enum RemapKind {
    /// `__node:=new` / `__name:=new`.
    NodeName(String),
    /// `__ns:=/new`.
    Namespace(String),
    /// `from:=to` for topic and service names.
    Name { from: String, to: String },
}

/// One `-r [node:]from:=to` rule.
#[derive(Debug, Clone, PartialEq)]
pub struct RemapRule {
    /// Applies only to the node with this (original) name when set.
    pub node: Option<String>,
    pub kind: RemapKind,
}

impl RemapRule {
    /// Parses the text after `-r`.
    pub fn parse(rule: &str) -> Result<Self, RosArgsError> {
        let malformed = || RosArgsError::MalformedRule {
            kind: "remap",
            rule: rule.into(),
            expected: "[node:]from:=to, __node:=name or __ns:=/namespace",
        };
        let (lhs, to) = rule.split_once(":=").ok_or_else(malformed)?;
        // A node prefix is `node:` before the match part; `~` and `/` names cannot contain ':'.
        let (node, from) = match lhs.split_once(':') {
            Some((n, f)) => {
                validate_node_name(n)?;
                (Some(n.to_string()), f)
            }
            None => (None, lhs),
        };
        if from.is_empty() || to.is_empty() {
            return Err(malformed());
        }
        let kind = match from {
            "__node" | "__name" => {
                validate_node_name(to)?;
                RemapKind::NodeName(to.to_string())
            }
            "__ns" => {
                validate_namespace(to)?;
                RemapKind::Namespace(to.to_string())
            }
            _ if from.starts_with("__") => return Err(malformed()),
            _ => RemapKind::Name {
                from: from.to_string(),
                to: to.to_string(),
            },
        };
        Ok(Self { node, kind })
    }

    /// True if the rule applies to a node whose name (before remapping) is `node_name`.
    pub fn applies_to(&self, node_name: &str) -> bool {
        self.node.as_deref().is_none_or(|n| n == node_name)
    }
}

/// Matches a parameter-file node key against a node's fully qualified name. A key without a leading
/// `/` is made absolute; `*` matches one token and `**` zero or more (rclcpp semantics).
pub fn node_pattern_matches(pattern: &str, node_fqn: &str) -> bool {
    let pattern = pattern.trim_start_matches('/');
    let pat: Vec<&str> = if pattern.is_empty() {
        Vec::new()
    } else {
        pattern.split('/').collect()
    };
    let name: Vec<&str> = node_fqn
        .trim_start_matches('/')
        .split('/')
        .filter(|t| !t.is_empty())
        .collect();
    match_tokens(&pat, &name)
}

fn match_tokens(pat: &[&str], name: &[&str]) -> bool {
    match pat.split_first() {
        None => name.is_empty(),
        Some((&"**", rest)) => (0..=name.len()).any(|skip| match_tokens(rest, &name[skip..])),
        Some((p, rest)) => match name.split_first() {
            Some((n, name_rest)) => (*p == "*" || p == n) && match_tokens(rest, name_rest),
            None => false,
        },
    }
}
