//! Typed ROS parameter values, parsed from YAML the way rcl does, and the per-node parameter map.
use std::collections::BTreeMap;
use std::fmt;

use serde_yaml::Value;

use super::error::RosArgsError;

/// One ROS 2 parameter value (the `rcl_interfaces/ParameterValue` kinds).
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Bool(bool),
    Integer(i64),
    Double(f64),
    String(String),
    BoolArray(Vec<bool>),
    IntegerArray(Vec<i64>),
    DoubleArray(Vec<f64>),
    StringArray(Vec<String>),
}

impl ParamValue {
    /// Parses a `-p name:=value` value: a YAML scalar or flow list (`[1, 2]`), typed like rcl
    /// (YAML 1.2 core schema: `true`/`false`, integers, floats incl. `.inf`/`.nan`, else string).
    pub fn parse_yaml(name: &str, text: &str) -> Result<Self, RosArgsError> {
        let value: Value = serde_yaml::from_str(text).map_err(|e| RosArgsError::ParamValue {
            name: name.to_string(),
            why: format!("not valid YAML ({e})"),
        })?;
        match value {
            // An empty value (`-p name:=`) is the empty string in rcl.
            Value::Null if text.trim().is_empty() => Ok(Self::String(String::new())),
            other => Self::from_yaml(name, &other),
        }
    }

    /// Converts a YAML node (scalar or sequence of scalars of one type).
    pub fn from_yaml(name: &str, value: &Value) -> Result<Self, RosArgsError> {
        let err = |why: String| RosArgsError::ParamValue {
            name: name.to_string(),
            why,
        };
        match value {
            Value::Sequence(items) => Self::from_sequence(name, items),
            Value::Mapping(_) => Err(err("a map is not a parameter value".into())),
            Value::Tagged(t) => Self::from_yaml(name, &t.value),
            scalar => match Scalar::of(scalar) {
                Some(Scalar::Bool(b)) => Ok(Self::Bool(b)),
                Some(Scalar::Int(i)) => Ok(Self::Integer(i)),
                Some(Scalar::Float(f)) => Ok(Self::Double(f)),
                Some(Scalar::Str(s)) => Ok(Self::String(s)),
                None => Err(err(format!("unsupported YAML value {scalar:?}"))),
            },
        }
    }

    fn from_sequence(name: &str, items: &[Value]) -> Result<Self, RosArgsError> {
        let err = |why: String| RosArgsError::ParamValue {
            name: name.to_string(),
            why,
        };
        let scalars: Vec<Scalar> = items
            .iter()
            .map(|v| Scalar::of(v).ok_or_else(|| err(format!("list element {v:?} is not a scalar"))))
            .collect::<Result<_, _>>()?;
        let Some(first) = scalars.first() else {
            // rcl cannot type an empty list; keep it as an empty string array (any array getter accepts it).
            return Ok(Self::StringArray(Vec::new()));
        };
        let mixed = || {
            err(format!(
                "list mixes {} and other types; ROS arrays hold one type",
                first.kind()
            ))
        };
        match first {
            Scalar::Bool(_) => scalars
                .iter()
                .map(|s| if let Scalar::Bool(b) = s { Ok(*b) } else { Err(mixed()) })
                .collect::<Result<_, _>>()
                .map(Self::BoolArray),
            Scalar::Int(_) => scalars
                .iter()
                .map(|s| if let Scalar::Int(i) = s { Ok(*i) } else { Err(mixed()) })
                .collect::<Result<_, _>>()
                .map(Self::IntegerArray),
            Scalar::Float(_) => scalars
                .iter()
                .map(|s| if let Scalar::Float(f) = s { Ok(*f) } else { Err(mixed()) })
                .collect::<Result<_, _>>()
                .map(Self::DoubleArray),
            Scalar::Str(_) => scalars
                .iter()
                .map(|s| {
                    if let Scalar::Str(t) = s {
                        Ok(t.clone())
                    } else {
                        Err(mixed())
                    }
                })
                .collect::<Result<_, _>>()
                .map(Self::StringArray),
        }
    }

    /// The rcl type name, for messages (`bool`, `integer`, `double`, `string`, `double array`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Bool(_) => "bool",
            Self::Integer(_) => "integer",
            Self::Double(_) => "double",
            Self::String(_) => "string",
            Self::BoolArray(_) => "bool array",
            Self::IntegerArray(_) => "integer array",
            Self::DoubleArray(_) => "double array",
            Self::StringArray(_) => "string array",
        }
    }

    /// Converts to the ros2-client value (to declare it on a node).
    pub(crate) fn to_ros2_client(&self) -> ros2_client::ParameterValue {
        use ros2_client::ParameterValue as P;
        match self.clone() {
            Self::Bool(b) => P::Boolean(b),
            Self::Integer(i) => P::Integer(i),
            Self::Double(f) => P::Double(f),
            Self::String(s) => P::String(s),
            Self::BoolArray(v) => P::BooleanArray(v),
            Self::IntegerArray(v) => P::IntegerArray(v),
            Self::DoubleArray(v) => P::DoubleArray(v),
            Self::StringArray(v) => P::StringArray(v),
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "bool {b}"),
            Self::Integer(i) => write!(f, "integer {i}"),
            Self::Double(d) => write!(f, "double {d}"),
            Self::String(s) => write!(f, "string {s:?}"),
            Self::BoolArray(v) => write!(f, "bool array {v:?}"),
            Self::IntegerArray(v) => write!(f, "integer array {v:?}"),
            Self::DoubleArray(v) => write!(f, "double array {v:?}"),
            Self::StringArray(v) => write!(f, "string array {v:?}"),
        }
    }
}

/// A YAML scalar after rcl-like typing.
enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl Scalar {
    fn of(v: &Value) -> Option<Self> {
        match v {
            Value::Bool(b) => Some(Self::Bool(*b)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Some(Self::Int(i)),
                None => n.as_f64().map(Self::Float),
            },
            Value::String(s) => Some(Self::Str(s.clone())),
            Value::Tagged(t) => Self::of(&t.value),
            Value::Null | Value::Sequence(_) | Value::Mapping(_) => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Bool(_) => "bools",
            Self::Int(_) => "integers",
            Self::Float(_) => "floats",
            Self::Str(_) => "strings",
        }
    }
}

/// The parameters of one node, after files and `-p` overrides are applied (ordered by name).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    values: BTreeMap<String, ParamValue>,
}

impl Params {
    /// Empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (or overrides) one parameter.
    pub fn set(&mut self, name: impl Into<String>, value: ParamValue) {
        self.values.insert(name.into(), value);
    }

    /// The raw value, if set.
    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.values.get(name)
    }

    /// True if the parameter is set.
    pub fn contains(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// All parameters in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &ParamValue)> {
        self.values.iter()
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True if no parameter is set.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn type_err(name: &str, expected: &'static str, found: &ParamValue) -> RosArgsError {
        RosArgsError::ParamType {
            name: name.to_string(),
            expected,
            found: found.to_string(),
        }
    }

    /// A float parameter; integers are accepted (`-p rate:=20` means 20.0).
    pub fn f64(&self, name: &str) -> Result<Option<f64>, RosArgsError> {
        match self.get(name) {
            None => Ok(None),
            Some(ParamValue::Double(f)) => Ok(Some(*f)),
            Some(ParamValue::Integer(i)) => Ok(Some(*i as f64)),
            Some(other) => Err(Self::type_err(name, "a float", other)),
        }
    }

    /// An integer parameter.
    pub fn i64(&self, name: &str) -> Result<Option<i64>, RosArgsError> {
        match self.get(name) {
            None => Ok(None),
            Some(ParamValue::Integer(i)) => Ok(Some(*i)),
            Some(other) => Err(Self::type_err(name, "an integer", other)),
        }
    }

    /// A non-negative integer parameter.
    pub fn u64(&self, name: &str) -> Result<Option<u64>, RosArgsError> {
        match self.i64(name)? {
            None => Ok(None),
            Some(i) => u64::try_from(i).map(Some).map_err(|_| RosArgsError::ParamRange {
                name: name.to_string(),
                why: format!("must be >= 0, got {i}"),
            }),
        }
    }

    /// A bool parameter.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, RosArgsError> {
        match self.get(name) {
            None => Ok(None),
            Some(ParamValue::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(Self::type_err(name, "a bool", other)),
        }
    }

    /// A string parameter.
    pub fn string(&self, name: &str) -> Result<Option<String>, RosArgsError> {
        match self.get(name) {
            None => Ok(None),
            Some(ParamValue::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(Self::type_err(name, "a string", other)),
        }
    }

    /// A float array; integer arrays are accepted, an empty list of any type is an empty array.
    pub fn f64_array(&self, name: &str) -> Result<Option<Vec<f64>>, RosArgsError> {
        match self.get(name) {
            None => Ok(None),
            Some(ParamValue::DoubleArray(v)) => Ok(Some(v.clone())),
            Some(ParamValue::IntegerArray(v)) => Ok(Some(v.iter().map(|i| *i as f64).collect())),
            Some(ParamValue::StringArray(v)) if v.is_empty() => Ok(Some(Vec::new())),
            Some(other) => Err(Self::type_err(name, "a float array", other)),
        }
    }

    /// An integer array; an empty list of any type is an empty array.
    pub fn i64_array(&self, name: &str) -> Result<Option<Vec<i64>>, RosArgsError> {
        match self.get(name) {
            None => Ok(None),
            Some(ParamValue::IntegerArray(v)) => Ok(Some(v.clone())),
            Some(ParamValue::StringArray(v)) if v.is_empty() => Ok(Some(Vec::new())),
            Some(other) => Err(Self::type_err(name, "an integer array", other)),
        }
    }

    /// A string array.
    pub fn string_array(&self, name: &str) -> Result<Option<Vec<String>>, RosArgsError> {
        match self.get(name) {
            None => Ok(None),
            Some(ParamValue::StringArray(v)) => Ok(Some(v.clone())),
            Some(other) => Err(Self::type_err(name, "a string array", other)),
        }
    }

    /// [`Params::f64`] with a default.
    pub fn f64_or(&self, name: &str, default: f64) -> Result<f64, RosArgsError> {
        Ok(self.f64(name)?.unwrap_or(default))
    }

    /// [`Params::i64`] with a default.
    pub fn i64_or(&self, name: &str, default: i64) -> Result<i64, RosArgsError> {
        Ok(self.i64(name)?.unwrap_or(default))
    }

    /// [`Params::u64`] with a default.
    pub fn u64_or(&self, name: &str, default: u64) -> Result<u64, RosArgsError> {
        Ok(self.u64(name)?.unwrap_or(default))
    }

    /// [`Params::bool`] with a default.
    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool, RosArgsError> {
        Ok(self.bool(name)?.unwrap_or(default))
    }

    /// [`Params::string`] with a default.
    pub fn string_or(&self, name: &str, default: &str) -> Result<String, RosArgsError> {
        Ok(self.string(name)?.unwrap_or_else(|| default.to_string()))
    }

    /// A float that must be finite and > 0 (rates, periods), with a default.
    pub fn positive_f64_or(&self, name: &str, default: f64) -> Result<f64, RosArgsError> {
        let v = self.f64_or(name, default)?;
        if v.is_finite() && v > 0.0 {
            Ok(v)
        } else {
            Err(RosArgsError::ParamRange {
                name: name.to_string(),
                why: format!("must be a finite number > 0, got {v}"),
            })
        }
    }
}

/// Flattens a `ros__parameters` map: nested maps become dotted names (`gains: {kp: 1}` -> `gains.kp`).
pub(crate) fn flatten_params(
    prefix: &str,
    map: &serde_yaml::Mapping,
    out: &mut Vec<(String, ParamValue)>,
) -> Result<(), RosArgsError> {
    for (k, v) in map {
        let key = yaml_key(k).ok_or_else(|| RosArgsError::ParamValue {
            name: format!("{prefix}{k:?}"),
            why: "parameter names must be strings".into(),
        })?;
        let name = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        match v {
            Value::Mapping(inner) => flatten_params(&name, inner, out)?,
            other => out.push((name.clone(), ParamValue::from_yaml(&name, other)?)),
        }
    }
    Ok(())
}

/// A YAML mapping key as a string (numbers and bools are allowed as keys, like rcl).
pub(crate) fn yaml_key(k: &Value) -> Option<String> {
    match k {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
