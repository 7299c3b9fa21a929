//! Forward kinematics of a serial chain read from a URDF file, so a joint-space action chunk can be
//! drawn as an end-effector path (rviz markers) without a ROS robot model at run time.
//!
//! Only the kinematic tree is read: `<link name>` and, for each `<joint>`, its name, type, parent,
//! child, `<origin xyz rpy>` and `<axis xyz>`. Joints off the base→tip chain are checked for a
//! name, a parent and a child only, so a floating base or an odd gripper elsewhere in the file does
//! not stop a valid arm chain from loading.
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use nalgebra::{Isometry3, Translation3, Unit, UnitQuaternion, Vector3};

/// A zero-length axis cannot be normalised.
const MIN_AXIS_NORM: f64 = 1e-12;
/// How `from_str` names its input in error messages.
const TEXT_LABEL: &str = "<URDF text>";

/// What can go wrong reading a URDF chain or matching it to the node's joints.
#[derive(Debug, thiserror::Error)]
pub enum UrdfError {
    #[error("cannot read URDF file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not valid XML: {source}")]
    Xml {
        file: String,
        #[source]
        source: roxmltree::Error,
    },
    #[error("{file}: the root element is <{found}>, expected <robot>")]
    NotRobot { file: String, found: String },
    #[error("{file}: {element} lacks the required attribute '{attribute}'")]
    MissingAttribute {
        file: String,
        element: String,
        attribute: &'static str,
    },
    #[error("{file}: {what} '{name}' is defined twice")]
    Duplicate {
        file: String,
        what: &'static str,
        name: String,
    },
    #[error("{file}: {role} link '{link}' is not defined (links: {known})")]
    UnknownLink {
        file: String,
        role: String,
        link: String,
        known: String,
    },
    #[error("{file}: link '{link}' has two parents: joints '{first}' and '{second}'")]
    TwoParents {
        file: String,
        link: String,
        first: String,
        second: String,
    },
    #[error(
        "{file}: tip link '{tip}' is not reachable from base link '{base}' (the tip's ancestors are: {ancestors})"
    )]
    Unreachable {
        file: String,
        base: String,
        tip: String,
        ancestors: String,
    },
    #[error("{file}: the joints above link '{link}' form a cycle")]
    Cycle { file: String, link: String },
    #[error("{file}: joint '{joint}' has type '{kind}'; a chain supports revolute, continuous, prismatic and fixed")]
    UnsupportedJoint { file: String, joint: String, kind: String },
    #[error("{file}: joint '{joint}': {attribute} has a bad number '{value}'")]
    BadNumber {
        file: String,
        joint: String,
        attribute: &'static str,
        value: String,
    },
    #[error("{file}: joint '{joint}': {attribute} needs {expected} values, got {found}")]
    WrongCount {
        file: String,
        joint: String,
        attribute: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("{file}: joint '{joint}' has a zero-length <axis xyz>")]
    ZeroAxis { file: String, joint: String },
    #[error("the URDF chain {base} → {tip} moves joint(s) {missing} that are not in 'joint_names' [{configured}]")]
    MissingJoints {
        base: String,
        tip: String,
        missing: String,
        configured: String,
    },
}

/// How a chain joint moves its child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JointKind {
    /// Rotation about the axis by the position in radians (URDF `revolute` and `continuous`).
    Revolute,
    /// Translation along the axis by the position in metres.
    Prismatic,
    /// No motion; the joint only contributes its origin.
    Fixed,
}

/// One joint of the chain: the child frame is `origin · motion(q)` in the parent frame.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainJoint {
    pub name: String,
    pub kind: JointKind,
    pub origin: Isometry3<f64>,
    /// Unit axis in the joint frame (meaningless for fixed joints).
    pub axis: Unit<Vector3<f64>>,
}

impl ChainJoint {
    /// The joint's transform from parent link to child link at position `q`.
    fn transform(&self, q: f64) -> Isometry3<f64> {
        match self.kind {
            JointKind::Fixed => self.origin,
            JointKind::Revolute => self.origin * UnitQuaternion::from_axis_angle(&self.axis, q),
            JointKind::Prismatic => self.origin * Translation3::from(self.axis.into_inner() * q),
        }
    }
}

/// A serial chain from a base link to a tip link, ready for forward kinematics.
#[derive(Clone, Debug, PartialEq)]
pub struct UrdfChain {
    base: String,
    tip: String,
    /// Base to tip, fixed joints included.
    joints: Vec<ChainJoint>,
}

/// Largest URDF file read (robot descriptions with inline meshes stay well below).
const MAX_URDF_BYTES: u64 = 64 << 20;
/// Most XML nodes parsed, entity expansions included.
const MAX_URDF_NODES: u32 = 4_000_000;

/// The tree structure of one `<joint>` before its kinematics are read.
struct RawJoint<'a, 'i> {
    node: roxmltree::Node<'a, 'i>,
    name: &'a str,
    parent: &'a str,
}

impl UrdfChain {
    /// Reads the chain `base` → `tip` from a URDF file.
    pub fn from_file(path: &Path, base: &str, tip: &str) -> Result<Self, UrdfError> {
        let read_err = |source| UrdfError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        if !meta.is_file() || meta.len() > MAX_URDF_BYTES {
            return Err(read_err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not a regular file of at most {MAX_URDF_BYTES} bytes"),
            )));
        }
        let xml = std::fs::read_to_string(path).map_err(read_err)?;
        Self::parse(&xml, &path.display().to_string(), base, tip)
    }

    /// Reads the chain `base` → `tip` from URDF text (errors name it `<URDF text>`).
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(xml: &str, base: &str, tip: &str) -> Result<Self, UrdfError> {
        Self::parse(xml, TEXT_LABEL, base, tip)
    }

    fn parse(xml: &str, file: &str, base: &str, tip: &str) -> Result<Self, UrdfError> {
        let opts = roxmltree::ParsingOptions {
            allow_dtd: true,
            nodes_limit: MAX_URDF_NODES,
            ..Default::default()
        };
        let doc = roxmltree::Document::parse_with_options(xml, opts).map_err(|source| UrdfError::Xml {
            file: file.to_string(),
            source,
        })?;
        let root = doc.root_element();
        if root.tag_name().name() != "robot" {
            return Err(UrdfError::NotRobot {
                file: file.to_string(),
                found: root.tag_name().name().to_string(),
            });
        }
        let missing = |element: String, attribute| UrdfError::MissingAttribute {
            file: file.to_string(),
            element,
            attribute,
        };
        let children = |tag: &'static str| root.children().filter(move |n| n.tag_name().name() == tag);

        let mut links: Vec<&str> = Vec::new();
        for l in children("link") {
            let name = l.attribute("name").ok_or_else(|| missing("a <link>".into(), "name"))?;
            if links.contains(&name) {
                return Err(UrdfError::Duplicate {
                    file: file.to_string(),
                    what: "link",
                    name: name.to_string(),
                });
            }
            links.push(name);
        }
        let unknown = |role: String, link: &str| UrdfError::UnknownLink {
            file: file.to_string(),
            role,
            link: link.to_string(),
            known: links.join(", "),
        };

        // Each link's parent joint, by child link name.
        let mut parent_of: HashMap<&str, RawJoint> = HashMap::new();
        let mut joint_names: HashSet<&str> = HashSet::new();
        for j in children("joint") {
            let name = j.attribute("name").ok_or_else(|| missing("a <joint>".into(), "name"))?;
            if !joint_names.insert(name) {
                return Err(UrdfError::Duplicate {
                    file: file.to_string(),
                    what: "joint",
                    name: name.to_string(),
                });
            }
            let link_of = |tag: &'static str| {
                j.children()
                    .find(|n| n.tag_name().name() == tag)
                    .and_then(|n| n.attribute("link"))
                    .ok_or_else(|| missing(format!("joint '{name}' <{tag}>"), "link"))
            };
            let (parent, child) = (link_of("parent")?, link_of("child")?);
            for (role, link) in [("parent", parent), ("child", child)] {
                if !links.contains(&link) {
                    return Err(unknown(format!("joint '{name}' {role}"), link));
                }
            }
            if let Some(first) = parent_of.get(child) {
                return Err(UrdfError::TwoParents {
                    file: file.to_string(),
                    link: child.to_string(),
                    first: first.name.to_string(),
                    second: name.to_string(),
                });
            }
            parent_of.insert(child, RawJoint { node: j, name, parent });
        }
        for (role, link) in [("base", base), ("tip", tip)] {
            if !links.contains(&link) {
                return Err(unknown(role.to_string(), link));
            }
        }

        // Walk up from the tip; every step visits a new joint, so at most one step per joint.
        let mut up: Vec<&RawJoint> = Vec::new();
        let mut link = tip;
        while link != base {
            let Some(j) = parent_of.get(link) else {
                let mut ancestors: Vec<&str> = vec![tip];
                ancestors.extend(up.iter().map(|j| j.parent));
                return Err(UrdfError::Unreachable {
                    file: file.to_string(),
                    base: base.to_string(),
                    tip: tip.to_string(),
                    ancestors: ancestors.join(" ← "),
                });
            };
            if up.len() >= parent_of.len() {
                return Err(UrdfError::Cycle {
                    file: file.to_string(),
                    link: tip.to_string(),
                });
            }
            up.push(j);
            link = j.parent;
        }
        let joints = up
            .iter()
            .rev()
            .map(|j| read_joint(j, file))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            base: base.to_string(),
            tip: tip.to_string(),
            joints,
        })
    }

    pub fn base_link(&self) -> &str {
        &self.base
    }

    pub fn tip_link(&self) -> &str {
        &self.tip
    }

    /// All joints of the chain, base to tip, fixed ones included.
    pub fn joints(&self) -> &[ChainJoint] {
        &self.joints
    }

    fn movable(&self) -> impl Iterator<Item = &ChainJoint> {
        self.joints.iter().filter(|j| j.kind != JointKind::Fixed)
    }

    /// The movable joints along the chain, base to tip (the order `tip_pose` expects).
    pub fn joint_names(&self) -> Vec<&str> {
        self.movable().map(|j| j.name.as_str()).collect()
    }

    /// Number of movable joints.
    pub fn dof(&self) -> usize {
        self.movable().count()
    }

    /// For each movable chain joint, its index in the node's `configured` joint names (which may
    /// hold extra joints, e.g. a gripper); an error lists every chain joint that is missing.
    pub fn index_map(&self, configured: &[String]) -> Result<Vec<usize>, UrdfError> {
        let mut map = Vec::new();
        let mut missing = Vec::new();
        for name in self.joint_names() {
            match configured.iter().position(|c| c == name) {
                Some(i) => map.push(i),
                None => missing.push(format!("'{name}'")),
            }
        }
        if !missing.is_empty() {
            return Err(UrdfError::MissingJoints {
                base: self.base.clone(),
                tip: self.tip.clone(),
                missing: missing.join(", "),
                configured: configured.join(", "),
            });
        }
        Ok(map)
    }

    /// Pose of the tip link in the base link frame for `positions` given in `joint_names()` order
    /// (radians for revolute, metres for prismatic). Missing trailing positions count as 0 and
    /// extra ones are ignored, so this never panics.
    pub fn tip_pose(&self, positions: &[f64]) -> Isometry3<f64> {
        let mut q = positions.iter().copied();
        self.joints.iter().fold(Isometry3::identity(), |pose, j| {
            let qi = if j.kind == JointKind::Fixed {
                0.0
            } else {
                q.next().unwrap_or(0.0)
            };
            pose * j.transform(qi)
        })
    }

    /// The tip pose for every chunk row, each row in the node's configured joint order, picking the
    /// chain joints with `map` (from [`Self::index_map`]). A row that lacks one of the indices in
    /// `map`, or holds a non-finite value there, is skipped, so the result may be shorter than
    /// `points` but never panics or holds NaN poses.
    pub fn tip_path(&self, points: &[Vec<f64>], map: &[usize]) -> Vec<Isometry3<f64>> {
        let mut q = Vec::with_capacity(map.len());
        points
            .iter()
            .filter_map(|row| {
                q.clear();
                for &i in map {
                    q.push(row.get(i).copied().filter(|v| v.is_finite())?);
                }
                Some(self.tip_pose(&q))
            })
            .collect()
    }
}

/// Reads the type, origin and axis of a chain joint.
fn read_joint(j: &RawJoint, file: &str) -> Result<ChainJoint, UrdfError> {
    let name = j.name;
    let kind_attr = j.node.attribute("type").ok_or_else(|| UrdfError::MissingAttribute {
        file: file.to_string(),
        element: format!("joint '{name}'"),
        attribute: "type",
    })?;
    let kind = match kind_attr {
        "revolute" | "continuous" => JointKind::Revolute,
        "prismatic" => JointKind::Prismatic,
        "fixed" => JointKind::Fixed,
        other => {
            return Err(UrdfError::UnsupportedJoint {
                file: file.to_string(),
                joint: name.to_string(),
                kind: other.to_string(),
            })
        }
    };
    let attr = |tag: &str, key: &str| {
        j.node
            .children()
            .find(|n| n.tag_name().name() == tag)
            .and_then(|n| n.attribute(key))
    };
    let triple = |tag, key, label: &'static str, default: [f64; 3]| match attr(tag, key) {
        None => Ok(default),
        Some(text) => parse_triple(text, file, name, label),
    };
    let xyz = triple("origin", "xyz", "<origin xyz>", [0.0; 3])?;
    let rpy = triple("origin", "rpy", "<origin rpy>", [0.0; 3])?;
    let axis = triple("axis", "xyz", "<axis xyz>", [1.0, 0.0, 0.0])?;
    let origin = Isometry3::from_parts(
        Translation3::new(xyz[0], xyz[1], xyz[2]),
        UnitQuaternion::from_euler_angles(rpy[0], rpy[1], rpy[2]),
    );
    let axis = match Unit::try_new(Vector3::from(axis), MIN_AXIS_NORM) {
        Some(a) => a,
        None if kind == JointKind::Fixed => Vector3::x_axis(),
        None => {
            return Err(UrdfError::ZeroAxis {
                file: file.to_string(),
                joint: name.to_string(),
            })
        }
    };
    Ok(ChainJoint {
        name: name.to_string(),
        kind,
        origin,
        axis,
    })
}

/// Parses exactly three finite numbers separated by whitespace.
fn parse_triple(text: &str, file: &str, joint: &str, attribute: &'static str) -> Result<[f64; 3], UrdfError> {
    let values = text
        .split_whitespace()
        .map(|s| {
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| UrdfError::BadNumber {
                    file: file.to_string(),
                    joint: joint.to_string(),
                    attribute,
                    value: s.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let found = values.len();
    values.try_into().map_err(|_| UrdfError::WrongCount {
        file: file.to_string(),
        joint: joint.to_string(),
        attribute,
        expected: 3,
        found,
    })
}

#[cfg(test)]
#[path = "urdf_tests.rs"]
mod tests;
