//! A non-executing pickle interpreter (protocols 0-5) for the data `torch.save` writes.
//!
//! Nothing is imported or called: `GLOBAL`/`STACK_GLOBAL` become [`Node::Global`] names and
//! `REDUCE`/`NEWOBJ`/`BUILD` on them become inert [`Node::Object`] records (class, arguments,
//! state). A handful of harmless constructors are interpreted (`collections.OrderedDict` and
//! `builtins.dict` become dicts, `_codecs.encode(s, "latin1")` becomes bytes); the caller gives
//! meaning to the rest (e.g. `torch._utils._rebuild_tensor_v2`).
//!
//! Heap values live in an arena and are referred to by index, so a memo reference (`BINGET`) costs
//! O(1) and containers mutated after memoisation stay shared, as in Python. Every allocation is
//! bounded by [`Limits`] and by the input length: counts of memo entries, stack slots, nodes and
//! container items, and a byte budget over everything the arena holds that grows with the input
//! ([`BYTES_PER_INPUT_BYTE`] × length + [`BYTES_BASE`]), so hostile input costs bounded time and
//! memory (a large string memoised once and referenced a million times is never copied a million
//! times).
//!
//! This file is self-contained (no `crate::` paths) so the fuzz target can include it directly.
use std::collections::HashMap;
use std::fmt;

/// Bounds on the work a pickle may cause.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most entries in the memo.
    pub max_memo: usize,
    /// Most values on the stack (marks included).
    pub max_stack: usize,
    /// Most heap nodes (strings, containers, objects) created.
    pub max_nodes: usize,
    /// Most items held by all containers together (list/tuple/set entries, dict pairs count 2).
    pub max_items: usize,
    /// Most bytes the arena may hold (nodes, their text and items); [`parse`] lowers it further
    /// to [`BYTES_PER_INPUT_BYTE`] × input length + [`BYTES_BASE`].
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_memo: 1 << 20,
            max_stack: 1 << 20,
            max_nodes: 1 << 22,
            max_items: 1 << 23,
            max_bytes: 1 << 30,
        }
    }
}

/// Arena bytes allowed per input byte. A `torch.save` state dict needs about 13 by estimate (a
/// tensor entry of ~110 pickle bytes becomes ~10 nodes of ~100 bytes plus their text and
/// items); 32 leaves room without letting input amplify much.
pub const BYTES_PER_INPUT_BYTE: usize = 32;
/// Most keys [`Pickle::dict_keys`] lists.
pub const MAX_LISTED_KEYS: usize = 32;
/// Longest key text [`Pickle::dict_keys`] lists.
pub const MAX_LISTED_KEY_CHARS: usize = 80;
/// Arena bytes allowed on top of the per-input-byte share (small pickles).
pub const BYTES_BASE: usize = 1 << 20;

/// Why a pickle could not be interpreted; `offset` is the byte position of the opcode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickleError {
    pub offset: usize,
    pub reason: String,
}

impl fmt::Display for PickleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pickle byte {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for PickleError {}

/// Index of a heap node in [`Pickle::nodes`].
pub type NodeId = usize;

/// A stack value: scalars inline, everything else by reference into the arena.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Ref(NodeId),
}

/// A heap value.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Str(String),
    Bytes(Vec<u8>),
    /// An integer wider than 64 bits (little-endian two's complement bytes).
    BigInt(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
    /// A class or function named by module and qualified name; never resolved.
    Global {
        module: String,
        name: String,
    },
    /// A persistent id (torch: the storage descriptor tuple).
    PersId(Value),
    /// An object built by calling `class(*args)` in Python; recorded, not executed.
    Object {
        class: Value,
        args: Value,
        state: Option<Value>,
        list_items: Vec<Value>,
        dict_items: Vec<(Value, Value)>,
    },
}

/// The result of interpreting a pickle: the arena and the value `STOP` returned.
#[derive(Debug)]
pub struct Pickle {
    pub nodes: Vec<Node>,
    pub root: Value,
}

#[derive(Clone, Copy)]
enum Slot {
    Mark,
    Val(Value),
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    op_pos: usize,
    stack: Vec<Slot>,
    memo: HashMap<u32, Value>,
    nodes: Vec<Node>,
    limits: Limits,
    /// Items held by containers so far.
    items: usize,
    /// Arena bytes so far (see [`Limits::max_bytes`]).
    bytes: usize,
    /// The byte budget of this input.
    max_bytes: usize,
}

type Res<T> = Result<T, PickleError>;

/// Interprets `data` as a pickle and returns the arena and root value.
pub fn parse(data: &[u8], limits: Limits) -> Result<Pickle, PickleError> {
    let mut m = Machine {
        data,
        pos: 0,
        op_pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
        nodes: Vec::new(),
        limits,
        items: 0,
        bytes: 0,
        max_bytes: limits.max_bytes.min(
            data.len()
                .saturating_mul(BYTES_PER_INPUT_BYTE)
                .saturating_add(BYTES_BASE),
        ),
    };
    let root = m.run()?;
    Ok(Pickle { nodes: m.nodes, root })
}

impl Machine<'_> {
    fn err<T>(&self, reason: impl Into<String>) -> Res<T> {
        Err(PickleError {
            offset: self.op_pos,
            reason: reason.into(),
        })
    }

    fn take(&mut self, n: usize) -> Res<&[u8]> {
        let end = match self.pos.checked_add(n) {
            Some(end) if end <= self.data.len() => end,
            _ => return self.err(format!("truncated: needs {n} more bytes")),
        };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn take_len(&mut self, n: u64) -> Res<&[u8]> {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        self.take(n)
    }

    fn u8(&mut self) -> Res<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Res<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Res<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Res<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn line(&mut self) -> Res<String> {
        let rest = &self.data[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let s = String::from_utf8_lossy(&rest[..i]).into_owned();
                self.pos += i + 1;
                Ok(s)
            }
            None => self.err("truncated: unterminated text argument"),
        }
    }

    fn push(&mut self, v: Value) -> Res<()> {
        if self.stack.len() >= self.limits.max_stack {
            return self.err("stack limit exceeded");
        }
        self.stack.push(Slot::Val(v));
        Ok(())
    }

    /// Counts `items` new container items and `bytes` new arena bytes against the limits.
    fn charge(&mut self, items: usize, bytes: usize) -> Res<()> {
        self.items = self.items.saturating_add(items);
        if self.items > self.limits.max_items {
            return self.err(format!("container item limit of {} exceeded", self.limits.max_items));
        }
        let item_bytes = items.saturating_mul(std::mem::size_of::<Value>());
        self.bytes = self.bytes.saturating_add(bytes).saturating_add(item_bytes);
        if self.bytes > self.max_bytes {
            return self.err(format!(
                "memory budget of {} bytes exceeded ({BYTES_PER_INPUT_BYTE} per input byte + {BYTES_BASE})",
                self.max_bytes
            ));
        }
        Ok(())
    }

    fn alloc(&mut self, node: Node) -> Res<Value> {
        if self.nodes.len() >= self.limits.max_nodes {
            return self.err("node limit exceeded");
        }
        let (items, payload) = match &node {
            Node::Str(s) => (0, s.len()),
            Node::Bytes(b) | Node::BigInt(b) => (0, b.len()),
            Node::Tuple(v) | Node::List(v) | Node::Set(v) => (v.len(), 0),
            Node::Dict(d) => (2 * d.len(), 0),
            Node::Global { module, name } => (0, module.len() + name.len()),
            Node::PersId(_) => (0, 0),
            Node::Object {
                list_items, dict_items, ..
            } => (list_items.len() + 2 * dict_items.len(), 0),
        };
        self.charge(items, payload.saturating_add(std::mem::size_of::<Node>()))?;
        self.nodes.push(node);
        Ok(Value::Ref(self.nodes.len() - 1))
    }

    fn push_node(&mut self, node: Node) -> Res<()> {
        let v = self.alloc(node)?;
        self.push(v)
    }

    fn pop(&mut self) -> Res<Value> {
        match self.stack.pop() {
            Some(Slot::Val(v)) => Ok(v),
            Some(Slot::Mark) => self.err("unexpected MARK on the stack"),
            None => self.err("stack underflow"),
        }
    }

    fn top(&self) -> Res<Value> {
        match self.stack.last() {
            Some(Slot::Val(v)) => Ok(*v),
            Some(Slot::Mark) => self.err("unexpected MARK on the stack"),
            None => self.err("stack underflow"),
        }
    }

    /// Pops everything down to the most recent MARK (removing it) and returns it in order.
    fn pop_mark(&mut self) -> Res<Vec<Value>> {
        let Some(mark) = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)) else {
            return self.err("no MARK on the stack");
        };
        let items = self
            .stack
            .drain(mark + 1..)
            .map(|s| match s {
                Slot::Val(v) => v,
                Slot::Mark => Value::None,
            })
            .collect();
        self.stack.truncate(mark);
        Ok(items)
    }

    fn memo_put(&mut self, key: u32) -> Res<()> {
        let v = self.top()?;
        if self.memo.len() >= self.limits.max_memo && !self.memo.contains_key(&key) {
            return self.err("memo limit exceeded");
        }
        self.memo.insert(key, v);
        Ok(())
    }

    fn memo_get(&mut self, key: u32) -> Res<()> {
        match self.memo.get(&key) {
            Some(&v) => self.push(v),
            None => self.err(format!("memo key {key} not found")),
        }
    }

    fn node_mut(&mut self, v: Value) -> Option<&mut Node> {
        match v {
            Value::Ref(id) => self.nodes.get_mut(id),
            _ => None,
        }
    }

    fn str_of(&self, v: Value) -> Option<&str> {
        match v {
            Value::Ref(id) => match self.nodes.get(id) {
                Some(Node::Str(s)) => Some(s),
                _ => None,
            },
            _ => None,
        }
    }

    fn global_of(&self, v: Value) -> Option<(&str, &str)> {
        match v {
            Value::Ref(id) => match self.nodes.get(id) {
                Some(Node::Global { module, name }) => Some((module, name)),
                _ => None,
            },
            _ => None,
        }
    }

    fn tuple_of(&self, v: Value) -> Option<&[Value]> {
        match v {
            Value::Ref(id) => match self.nodes.get(id) {
                Some(Node::Tuple(t)) => Some(t),
                _ => None,
            },
            _ => None,
        }
    }

    fn append(&mut self, target: Value, items: Vec<Value>) -> Res<()> {
        self.charge(items.len(), 0)?;
        match self.node_mut(target) {
            Some(Node::List(l)) | Some(Node::Set(l)) => l.extend(items),
            Some(Node::Object { list_items, .. }) => list_items.extend(items),
            _ => return self.err("APPEND(S)/ADDITEMS target is not a list"),
        }
        Ok(())
    }

    fn set_items(&mut self, target: Value, items: Vec<Value>) -> Res<()> {
        if !items.len().is_multiple_of(2) {
            return self.err("SETITEMS with an odd number of values");
        }
        self.charge(items.len(), 0)?;
        let pairs = items.chunks_exact(2).map(|p| (p[0], p[1]));
        match self.node_mut(target) {
            Some(Node::Dict(d)) => d.extend(pairs),
            Some(Node::Object { dict_items, .. }) => dict_items.extend(pairs),
            _ => return self.err("SETITEM(S) target is not a dict"),
        }
        Ok(())
    }

    /// `class(*args)`: a few harmless constructors are interpreted, the rest recorded.
    fn reduce(&mut self, class: Value, args: Value) -> Res<Value> {
        let empty_args = self.tuple_of(args).is_some_and(|a| a.is_empty());
        if let Some((module, name)) = self.global_of(class) {
            let dict_like = matches!(
                (module, name),
                ("collections", "OrderedDict") | ("builtins", "dict") | ("__builtin__", "dict")
            );
            if dict_like && empty_args {
                return self.alloc(Node::Dict(Vec::new()));
            }
            if (module, name) == ("_codecs", "encode") {
                if let Some(&[text, enc]) = self.tuple_of(args) {
                    let latin1 = matches!(self.str_of(enc), Some("latin1") | Some("latin-1"));
                    if let (true, Some(text)) = (latin1, self.str_of(text)) {
                        let bytes: Option<Vec<u8>> = text.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect();
                        if let Some(bytes) = bytes {
                            return self.alloc(Node::Bytes(bytes));
                        }
                    }
                }
            }
        }
        self.alloc(Node::Object {
            class,
            args,
            state: None,
            list_items: Vec::new(),
            dict_items: Vec::new(),
        })
    }

    fn build(&mut self, target: Value, state: Value) -> Res<()> {
        match self.node_mut(target) {
            Some(Node::Object { state: s, .. }) => *s = Some(state),
            // OrderedDict state (e.g. a state dict's `_metadata`) carries nothing we need.
            Some(Node::Dict(_)) => {}
            _ => return self.err("BUILD on a value that is not an object"),
        }
        Ok(())
    }

    fn text_int(&self, s: &str) -> Res<Value> {
        let t = s.trim().trim_end_matches('L');
        match t {
            "00" => return Ok(Value::Bool(false)),
            "01" => return Ok(Value::Bool(true)),
            _ => {}
        }
        match t.parse::<i64>() {
            Ok(i) => Ok(Value::Int(i)),
            Err(_) => self.err(format!("bad integer literal {t:?}")),
        }
    }

    fn run(&mut self) -> Res<Value> {
        loop {
            self.op_pos = self.pos;
            let op = self.u8()?;
            match op {
                // PROTO, FRAME: framing only.
                0x80 => {
                    let p = self.u8()?;
                    if p > 5 {
                        return self.err(format!("unsupported pickle protocol {p}"));
                    }
                }
                0x95 => {
                    self.u64()?;
                }
                b'.' => return self.pop(),
                b'(' => {
                    if self.stack.len() >= self.limits.max_stack {
                        return self.err("stack limit exceeded");
                    }
                    self.stack.push(Slot::Mark);
                }
                b'0' => {
                    if self.stack.pop().is_none() {
                        return self.err("stack underflow");
                    }
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?;
                    self.push(v)?;
                }
                // Scalars.
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(i64::from(v)))?
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(i64::from(v)))?
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Value::Int(i64::from(v)))?
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        u64::from(self.u8()?)
                    } else {
                        u64::from(self.u32()?)
                    };
                    let bytes = self.take_len(n)?.to_vec();
                    let v = if bytes.len() <= 8 {
                        let fill = if bytes.last().is_some_and(|&b| b & 0x80 != 0) {
                            0xff
                        } else {
                            0
                        };
                        let mut a = [fill; 8];
                        a[..bytes.len()].copy_from_slice(&bytes);
                        Value::Int(i64::from_le_bytes(a))
                    } else {
                        self.alloc(Node::BigInt(bytes))?
                    };
                    self.push(v)?
                }
                b'I' | b'L' => {
                    let s = self.line()?;
                    let v = self.text_int(&s)?;
                    self.push(v)?
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push(Value::Float(f64::from_be_bytes(a)))?
                }
                b'F' => {
                    let s = self.line()?;
                    match s.trim().parse::<f64>() {
                        Ok(f) => self.push(Value::Float(f))?,
                        Err(_) => return self.err(format!("bad float literal {s:?}")),
                    }
                }
                // Strings and bytes.
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => u64::from(self.u32()?),
                        0x8c => u64::from(self.u8()?),
                        _ => self.u64()?,
                    };
                    let b = self.take_len(n)?;
                    let s = match std::str::from_utf8(b) {
                        Ok(s) => s.to_owned(),
                        Err(_) => return self.err("string is not valid UTF-8"),
                    };
                    self.push_node(Node::Str(s))?
                }
                b'V' => {
                    let s = self.line()?;
                    self.push_node(Node::Str(s))?
                }
                b'B' | b'C' | 0x8e | 0x96 | b'T' | b'U' => {
                    let n = match op {
                        b'B' | b'T' => u64::from(self.u32()?),
                        b'C' | b'U' => u64::from(self.u8()?),
                        _ => self.u64()?,
                    };
                    let b = self.take_len(n)?.to_vec();
                    self.push_node(Node::Bytes(b))?
                }
                b'S' => {
                    let s = self.line()?;
                    let t = s.trim();
                    let inner = t.get(1..t.len().saturating_sub(1)).unwrap_or("");
                    self.push_node(Node::Bytes(inner.as_bytes().to_vec()))?
                }
                // Containers.
                b']' => self.push_node(Node::List(Vec::new()))?,
                b'}' => self.push_node(Node::Dict(Vec::new()))?,
                b')' => self.push_node(Node::Tuple(Vec::new()))?,
                0x8f => self.push_node(Node::Set(Vec::new()))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push_node(Node::List(items))?
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push_node(Node::Tuple(items))?
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push_node(Node::Set(items))?
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    if !items.len().is_multiple_of(2) {
                        return self.err("DICT with an odd number of values");
                    }
                    let pairs = items.chunks_exact(2).map(|p| (p[0], p[1])).collect();
                    self.push_node(Node::Dict(pairs))?
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push_node(Node::Tuple(items))?
                }
                b'a' => {
                    let item = self.pop()?;
                    let target = self.top()?;
                    self.append(target, vec![item])?
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    self.append(target, items)?
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    let target = self.top()?;
                    self.set_items(target, vec![key, value])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    self.set_items(target, items)?
                }
                // Memo.
                b'q' => {
                    let k = self.u8()?;
                    self.memo_put(u32::from(k))?
                }
                b'r' => {
                    let k = self.u32()?;
                    self.memo_put(k)?
                }
                0x94 => {
                    let k = u32::try_from(self.memo.len()).unwrap_or(u32::MAX);
                    self.memo_put(k)?
                }
                b'p' => {
                    let s = self.line()?;
                    match s.trim().parse::<u32>() {
                        Ok(k) => self.memo_put(k)?,
                        Err(_) => return self.err(format!("bad memo key {s:?}")),
                    }
                }
                b'h' => {
                    let k = self.u8()?;
                    self.memo_get(u32::from(k))?
                }
                b'j' => {
                    let k = self.u32()?;
                    self.memo_get(k)?
                }
                b'g' => {
                    let s = self.line()?;
                    match s.trim().parse::<u32>() {
                        Ok(k) => self.memo_get(k)?,
                        Err(_) => return self.err(format!("bad memo key {s:?}")),
                    }
                }
                // Names and objects (recorded, never resolved or called).
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push_node(Node::Global { module, name })?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(module), Some(name)) = (self.str_of(module), self.str_of(name)) else {
                        return self.err("STACK_GLOBAL arguments are not strings");
                    };
                    let node = Node::Global {
                        module: module.to_owned(),
                        name: name.to_owned(),
                    };
                    self.push_node(node)?
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let class = self.pop()?;
                    let v = self.reduce(class, args)?;
                    self.push(v)?
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let class = self.pop()?;
                    let v = self.reduce(class, args)?;
                    self.push(v)?
                }
                b'i' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let items = self.pop_mark()?;
                    let class = self.alloc(Node::Global { module, name })?;
                    let args = self.alloc(Node::Tuple(items))?;
                    let v = self.reduce(class, args)?;
                    self.push(v)?
                }
                b'o' => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return self.err("OBJ without a class");
                    }
                    let class = items.remove(0);
                    let args = self.alloc(Node::Tuple(items))?;
                    let v = self.reduce(class, args)?;
                    self.push(v)?
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?;
                    self.build(target, state)?
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.push_node(Node::PersId(pid))?
                }
                b'P' => {
                    let s = self.line()?;
                    let pid = self.alloc(Node::Str(s))?;
                    self.push_node(Node::PersId(pid))?
                }
                0x98 => {}
                0x82..=0x84 => return self.err("extension registry codes (EXT*) are not supported"),
                0x97 => return self.err("out-of-band buffers (NEXT_BUFFER) are not supported"),
                _ => return self.err(format!("unknown opcode 0x{op:02x}")),
            }
        }
    }
}

impl Pickle {
    /// The heap node `v` refers to, if any.
    pub fn node(&self, v: Value) -> Option<&Node> {
        match v {
            Value::Ref(id) => self.nodes.get(id),
            _ => None,
        }
    }

    pub fn as_str(&self, v: Value) -> Option<&str> {
        match self.node(v) {
            Some(Node::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self, v: Value) -> Option<i64> {
        match v {
            Value::Int(i) => Some(i),
            Value::Bool(b) => Some(i64::from(b)),
            _ => None,
        }
    }

    pub fn as_tuple(&self, v: Value) -> Option<&[Value]> {
        match self.node(v) {
            Some(Node::Tuple(t)) => Some(t),
            _ => None,
        }
    }

    /// Items of a dict (or of a dict-like recorded object such as a `defaultdict`).
    pub fn as_dict(&self, v: Value) -> Option<&[(Value, Value)]> {
        match self.node(v) {
            Some(Node::Dict(d)) => Some(d),
            Some(Node::Object { dict_items, .. }) if !dict_items.is_empty() => Some(dict_items),
            _ => None,
        }
    }

    /// `(module, name)` of a global reference.
    pub fn as_global(&self, v: Value) -> Option<(&str, &str)> {
        match self.node(v) {
            Some(Node::Global { module, name }) => Some((module, name)),
            _ => None,
        }
    }

    /// A dict entry by string key.
    pub fn dict_get(&self, dict: Value, key: &str) -> Option<Value> {
        self.as_dict(dict)?
            .iter()
            .find(|(k, _)| self.as_str(*k) == Some(key))
            .map(|(_, v)| *v)
    }

    /// The string keys of a dict, for error messages: at most [`MAX_LISTED_KEYS`] of them, each
    /// cut to [`MAX_LISTED_KEY_CHARS`] characters (a hostile dict may repeat a huge key millions
    /// of times), with a last entry saying how many were left out.
    pub fn dict_keys(&self, dict: Value) -> Vec<String> {
        let Some(d) = self.as_dict(dict) else { return Vec::new() };
        let mut keys: Vec<String> = d
            .iter()
            .filter_map(|(k, _)| match *k {
                Value::Int(i) => Some(i.to_string()),
                k => self.as_str(k).map(|s| {
                    let mut cut: String = s.chars().take(MAX_LISTED_KEY_CHARS).collect();
                    if cut.len() < s.len() {
                        cut.push('…');
                    }
                    cut
                }),
            })
            .take(MAX_LISTED_KEYS + 1)
            .collect();
        if keys.len() > MAX_LISTED_KEYS {
            keys.truncate(MAX_LISTED_KEYS);
            keys.push(format!("… ({} entries in all)", d.len()));
        }
        keys
    }

    /// A dict key as text: strings as-is, integers in decimal.
    pub fn key_string(&self, k: Value) -> Option<String> {
        match k {
            Value::Int(i) => Some(i.to_string()),
            _ => self.as_str(k).map(str::to_owned),
        }
    }

    /// A short description of a value (for error messages).
    pub fn describe(&self, v: Value) -> String {
        match v {
            Value::None => "None".into(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Ref(_) => match self.node(v) {
                Some(Node::Str(s)) => format!("str {:?}", s.chars().take(40).collect::<String>()),
                Some(Node::Bytes(b)) => format!("bytes[{}]", b.len()),
                Some(Node::BigInt(_)) => "big int".into(),
                Some(Node::Tuple(t)) => format!("tuple[{}]", t.len()),
                Some(Node::List(l)) => format!("list[{}]", l.len()),
                Some(Node::Dict(d)) => format!("dict[{}]", d.len()),
                Some(Node::Set(s)) => format!("set[{}]", s.len()),
                Some(Node::Global { module, name }) => format!("{module}.{name}"),
                Some(Node::PersId(_)) => "persistent id".into(),
                Some(Node::Object { class, .. }) => match self.as_global(*class) {
                    Some((m, n)) => format!("{m}.{n}(...)"),
                    None => "object".into(),
                },
                None => "dangling reference".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_protocol2_dict_with_memo_and_globals() {
        // {'a': 1, 'b': [2, 'a'], 'c': collections.OrderedDict()} written by hand in protocol 2.
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'('];
        p.extend([b'X', 1, 0, 0, 0, b'a', b'q', 1, b'K', 1]);
        p.extend([b'X', 1, 0, 0, 0, b'b', b']', b'q', 2, b'(', b'K', 2, b'h', 1, b'e']);
        p.extend([b'X', 1, 0, 0, 0, b'c', b'c']);
        p.extend(b"collections\nOrderedDict\n");
        p.extend([b')', b'R', b'u', b'.']);
        let pk = parse(&p, Limits::default()).unwrap();
        assert_eq!(pk.dict_keys(pk.root), vec!["a", "b", "c"]);
        assert_eq!(pk.dict_get(pk.root, "a"), Some(Value::Int(1)));
        let b = pk.dict_get(pk.root, "b").unwrap();
        match pk.node(b) {
            Some(Node::List(l)) => {
                assert_eq!(l[0], Value::Int(2));
                assert_eq!(pk.as_str(l[1]), Some("a"));
            }
            other => panic!("not a list: {other:?}"),
        }
        assert!(matches!(pk.node(pk.dict_get(pk.root, "c").unwrap()), Some(Node::Dict(d)) if d.is_empty()));
    }

    #[test]
    fn unknown_globals_are_recorded_not_called() {
        let mut p = vec![0x80, 2, b'c'];
        p.extend(b"os\nsystem\n");
        p.extend([b'X', 2, 0, 0, 0, b'l', b's', 0x85, b'R', b'.']);
        let pk = parse(&p, Limits::default()).unwrap();
        assert_eq!(pk.describe(pk.root), "os.system(...)");
    }

    #[test]
    fn long1_and_negative_ints() {
        let p = [0x80, 2, 0x8a, 2, 0x00, 0x80, b'J', 0xff, 0xff, 0xff, 0xff, 0x86, b'.'];
        let pk = parse(&p, Limits::default()).unwrap();
        assert_eq!(pk.as_tuple(pk.root).unwrap(), &[Value::Int(-32768), Value::Int(-1)]);
    }

    #[test]
    fn hostile_inputs_fail_cleanly() {
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![b'.'],
            vec![b'X', 0xff, 0xff, 0xff, 0xff],
            vec![b'h', 3, b'.'],
            vec![b'u', b'.'],
            vec![0x8d, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            vec![b'(', b'K', 1, b'd', b'.'],
            vec![0x80, 9],
        ];
        for c in cases {
            assert!(parse(&c, Limits::default()).is_err(), "{c:?}");
        }
        let many = vec![b'N'; 100];
        let limits = Limits {
            max_stack: 10,
            ..Limits::default()
        };
        assert!(parse(&many, limits).is_err());
    }

    #[test]
    fn latin1_bytes_are_decoded() {
        let mut p = vec![0x80, 2, b'c'];
        p.extend(b"_codecs\nencode\n");
        p.extend([b'X', 2, 0, 0, 0, 0xc3, 0xbf, b'X', 6, 0, 0, 0]);
        p.extend(b"latin1");
        p.extend([0x86, b'R', b'.']);
        let pk = parse(&p, Limits::default()).unwrap();
        assert_eq!(pk.node(pk.root), Some(&Node::Bytes(vec![0xff])));
    }
}
