//! skops files (`model.skops`): a zip of `schema.json`, which describes every object as a typed
//! node, and one `.npy` member per numpy array. Read into the same inert [`Graph`] as a pickle,
//! with the same refusal of names outside scikit-learn and numpy; `.npy` headers are parsed as
//! the literals they are, never evaluated.

use std::collections::HashMap;
use std::io::Read;

use serde_json::Value;

use crate::error::{ReadError, Result, invalid};
use crate::graph::{ArrayData, Dtype, Graph, Id, NdArray, Node};
use crate::pickle::refusal;

/// The largest member read (a model's arrays are far smaller; a zip can claim anything).
const MAX_MEMBER: u64 = 4 << 30;

/// The deepest nesting of schema nodes followed.
const MAX_DEPTH: usize = 200;

pub(crate) fn read(bytes: &[u8]) -> Result<Graph> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| invalid!("it is not a readable zip (skops) file: {e}"))?;
    let schema = member(&mut zip, "schema.json")?;
    let schema: Value = serde_json::from_slice(&schema).map_err(|e| invalid!("its schema.json is not JSON: {e}"))?;
    if let Some(p) = schema.get("protocol").and_then(Value::as_i64)
        && !(1..=2).contains(&p)
    {
        return Err(ReadError::Unsupported(format!("skops protocol {p} (protocols 1 and 2 are read)")));
    }
    let mut r = Reader { zip, graph: Graph::default(), ids: HashMap::new() };
    let root = r.node(&schema, 0)?;
    let Reader { graph, .. } = r;
    Ok(Graph::new(graph.nodes, root))
}

fn member(zip: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>, name: &str) -> Result<Vec<u8>> {
    let mut f = zip.by_name(name).map_err(|e| invalid!("its member '{name}' cannot be read: {e}"))?;
    if f.size() > MAX_MEMBER {
        return Err(invalid!("its member '{name}' declares {} bytes", f.size()));
    }
    let mut out = Vec::with_capacity(f.size().min(1 << 20) as usize);
    f.by_ref()
        .take(MAX_MEMBER)
        .read_to_end(&mut out)
        .map_err(|e| invalid!("its member '{name}' cannot be read: {e}"))?;
    Ok(out)
}

struct Reader<'a> {
    zip: zip::ZipArchive<std::io::Cursor<&'a [u8]>>,
    graph: Graph,
    /// Nodes by their skops `__id__`, for `CachedNode` references.
    ids: HashMap<i64, Id>,
}

fn text<'v>(v: &'v Value, key: &str) -> Result<&'v str> {
    v.get(key).and_then(Value::as_str).ok_or_else(|| invalid!("a skops node without '{key}'"))
}

impl Reader<'_> {
    fn push(&mut self, n: Node, v: &Value) -> Id {
        let id = self.graph.push(n);
        self.remember(id, v)
    }

    /// Records `id` as the node of `v`'s skops `__id__` (if it has one and it is not taken), for
    /// later `CachedNode` references; returns `id`.
    fn remember(&mut self, id: Id, v: &Value) -> Id {
        if let Some(i) = v.get("__id__").and_then(Value::as_i64) {
            self.ids.entry(i).or_insert(id);
        }
        id
    }

    fn list(&mut self, v: &Value, depth: usize) -> Result<Vec<Id>> {
        v.get("content")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid!("a skops list without content"))?
            .iter()
            .map(|x| self.node(x, depth + 1))
            .collect()
    }

    fn global(&mut self, module: &str, name: &str) -> Result<Id> {
        if let Some(why) = refusal(module, name) {
            return Err(ReadError::Refused(why.replace("the pickle refers", "the skops file refers")));
        }
        Ok(self.graph.push(Node::Global { module: module.into(), name: name.into() }))
    }

    fn node(&mut self, v: &Value, depth: usize) -> Result<Id> {
        if depth > MAX_DEPTH {
            return Err(invalid!("its schema nests deeper than {MAX_DEPTH} levels"));
        }
        let loader = text(v, "__loader__")?;
        let module = v.get("__module__").and_then(Value::as_str).unwrap_or("builtins");
        let class = v.get("__class__").and_then(Value::as_str).unwrap_or("object");
        Ok(match loader {
            "CachedNode" => {
                let i = v
                    .get("__id__")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| invalid!("a skops reference without an id"))?;
                *self
                    .ids
                    .get(&i)
                    .ok_or_else(|| invalid!("a skops reference to object {i}, which comes later or not at all"))?
            }
            "JsonNode" => {
                let s = text(v, "content")?;
                let j = python_json(s)?;
                let id = self.json(&j, depth)?;
                self.remember(id, v)
            }
            "ListNode" | "TupleNode" | "SetNode" => {
                let items = self.list(v, depth)?;
                let n = match loader {
                    "ListNode" => Node::List(items),
                    "TupleNode" => Node::Tuple(items),
                    _ => Node::Set(items),
                };
                self.push(n, v)
            }
            "DictNode" | "DefaultDictNode" | "_DictWithDeprecatedKeysNode" => {
                let content = v.get("content").ok_or_else(|| invalid!("a skops dictionary without content"))?;
                let content = match loader {
                    "DictNode" => content,
                    _ => content
                        .get("main")
                        .and_then(|m| m.get("content"))
                        .ok_or_else(|| invalid!("a skops dictionary without content"))?,
                };
                let obj =
                    content.as_object().ok_or_else(|| invalid!("a skops dictionary whose content is not an object"))?;
                // JSON keys are strings: `key_types` says what each was (an int, for
                // `OrdinalEncoder._missing_indices`). The keys are read back sorted, not in the
                // order `key_types` lists them, so only one type for all of them is taken.
                let types: Vec<&str> = v
                    .get("key_types")
                    .and_then(|t| t.get("content"))
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|t| t.get("__class__").and_then(Value::as_str)).collect())
                    .unwrap_or_default();
                let key_type = match types.split_first() {
                    None => "str",
                    Some((first, rest)) if rest.iter().all(|t| t == first) => *first,
                    Some(_) => {
                        return Err(ReadError::Unsupported(
                            "a skops dictionary whose keys are of several types".into(),
                        ));
                    }
                };
                let mut items = Vec::with_capacity(obj.len());
                for (k, x) in obj {
                    let key = match key_type {
                        "int" => Node::Int(
                            k.parse().map_err(|_| invalid!("a skops dictionary key '{k}' said to be an integer"))?,
                        ),
                        "float" => Node::Float(
                            k.parse().map_err(|_| invalid!("a skops dictionary key '{k}' said to be a float"))?,
                        ),
                        _ => Node::Str(k.clone()),
                    };
                    let key = self.graph.push(key);
                    items.push((key, self.node(x, depth + 1)?));
                }
                self.push(Node::Dict(items), v)
            }
            "NdArrayNode" => {
                let a = match v.get("type").and_then(Value::as_str) {
                    Some("numpy") => {
                        let file = text(v, "file")?;
                        let bytes = member(&mut self.zip, file)?;
                        npy(&bytes).map_err(|e| match e {
                            ReadError::Invalid(m) => invalid!("array '{file}': {m}"),
                            e => e,
                        })?
                    }
                    Some("json") => {
                        let items = self.list(v, depth)?;
                        let shape = v.get("shape").ok_or_else(|| invalid!("a skops object array without its shape"))?;
                        let shape_id = self.node(shape, depth + 1)?;
                        let dims: Vec<usize> = self
                            .graph
                            .items(shape_id)?
                            .iter()
                            .map(|d| usize::try_from(self.graph.int(*d)?).map_err(|_| invalid!("a negative dimension")))
                            .collect::<Result<_>>()?;
                        // `tolist()` of an n-d array: nested lists, flattened to the items.
                        let mut flat = items;
                        for _ in 1..dims.len() {
                            let mut next = Vec::new();
                            for i in flat {
                                next.extend_from_slice(self.graph.items(i)?);
                            }
                            flat = next;
                        }
                        NdArray::new(Dtype::Object, dims, false, ArrayData::Objects(flat))?
                    }
                    t => return Err(invalid!("a skops array of type {t:?}")),
                };
                self.push(Node::Array(a), v)
            }
            "TypeNode" => {
                let id = self.global(module, class)?;
                self.remember(id, v)
            }
            "FunctionNode" => {
                // Older files name the function in `content`, newer ones on the node itself.
                let c = v.get("content");
                let m = c.and_then(|c| text(c, "module_path").ok()).unwrap_or(module);
                let f = c.and_then(|c| text(c, "function").ok()).unwrap_or(class);
                let id = self.global(m, f)?;
                self.remember(id, v)
            }
            "SliceNode" => {
                let c = v.get("content").ok_or_else(|| invalid!("a skops slice without content"))?;
                let mut args = Vec::new();
                for k in ["start", "stop", "step"] {
                    let x = c.get(k).cloned().unwrap_or(Value::Null);
                    args.push(self.json(&x, depth)?);
                }
                let callable = self.global("builtins", "slice")?;
                let args = self.graph.push(Node::Tuple(args));
                self.push(
                    Node::Object { callable, args, state: None, list_items: Vec::new(), dict_items: Vec::new() },
                    v,
                )
            }
            "BytesNode" | "BytearrayNode" => {
                let file = text(v, "file")?;
                let b = member(&mut self.zip, file)?;
                self.push(Node::Bytes(b), v)
            }
            // Random states and dtypes are never read by prediction: kept as nothing.
            "RandomStateNode" | "RandomGeneratorNode" | "DTypeNode" => self.push(Node::None, v),
            "PartialNode" => {
                // Kept as the pickle reader keeps one: `partial` with the function as its
                // argument, the arguments and keywords as its state (never called).
                let c = v.get("content").ok_or_else(|| invalid!("a skops partial without content"))?;
                let func = c.get("func").ok_or_else(|| invalid!("a skops partial without its function"))?;
                let func = self.node(func, depth + 1)?;
                let mut state = vec![func];
                for k in ["args", "kwds"] {
                    match c.get(k) {
                        Some(x) => state.push(self.node(x, depth + 1)?),
                        None => state.push(self.graph.push(Node::None)),
                    }
                }
                let callable = self.global("functools", "partial")?;
                let args = self.graph.push(Node::Tuple(vec![func]));
                let state = Some(self.graph.push(Node::Tuple(state)));
                self.push(Node::Object { callable, args, state, list_items: Vec::new(), dict_items: Vec::new() }, v)
            }
            "MethodNode" | "OperatorFuncNode" => {
                return Err(ReadError::Refused(format!(
                    "the skops file holds a function ({module}.{class}, a {loader}), which is code mlscore does not run; \
                     drop that step from the pipeline or log the model as ONNX"
                )));
            }
            _ => {
                // ObjectNode, ReduceNode-like nodes (TreeNode, LossNode, SGDNode, ...), and
                // ConstructorFromReduceNode: a class, its constructor arguments and its state.
                let callable = self.global(module, class)?;
                let args = match v.get("__reduce__").and_then(|r| r.get("args")) {
                    Some(a) => self.node(a, depth + 1)?,
                    None if loader == "ConstructorFromReduceNode" => match v.get("content") {
                        Some(c) => self.node(c, depth + 1)?,
                        None => self.graph.push(Node::Tuple(Vec::new())),
                    },
                    None => self.graph.push(Node::Tuple(Vec::new())),
                };
                let state = match v.get("content") {
                    Some(_) if loader == "ConstructorFromReduceNode" => None,
                    // A node whose content names its children, not a node itself (a
                    // MaskedArrayNode's `data` and `mask`, as a search's cv_results_ holds):
                    // kept as a dictionary of them.
                    Some(Value::Object(o)) if !o.contains_key("__loader__") => {
                        let mut items = Vec::with_capacity(o.len());
                        for (k, x) in o {
                            let key = self.graph.push(Node::Str(k.clone()));
                            items.push((key, self.node(x, depth + 1)?));
                        }
                        Some(self.graph.push(Node::Dict(items)))
                    }
                    Some(c) => Some(self.node(c, depth + 1)?),
                    None => None,
                };
                self.push(Node::Object { callable, args, state, list_items: Vec::new(), dict_items: Vec::new() }, v)
            }
        })
    }

    /// A plain JSON value (the content of a `JsonNode`).
    fn json(&mut self, j: &Value, depth: usize) -> Result<Id> {
        if depth > MAX_DEPTH {
            return Err(invalid!("its schema nests deeper than {MAX_DEPTH} levels"));
        }
        let n = match j {
            Value::Null => Node::None,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Node::Int(i),
                None => Node::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => match s.strip_prefix('\u{1}') {
                Some(special) => Node::Float(special.parse().unwrap_or(f64::NAN)),
                None => Node::Str(s.clone()),
            },
            Value::Array(a) => {
                let items = a.iter().map(|x| self.json(x, depth + 1)).collect::<Result<_>>()?;
                Node::List(items)
            }
            Value::Object(o) => {
                let mut items = Vec::new();
                for (k, x) in o {
                    let key = self.graph.push(Node::Str(k.clone()));
                    items.push((key, self.json(x, depth + 1)?));
                }
                Node::Dict(items)
            }
        };
        Ok(self.graph.push(n))
    }
}

/// Python's `json.dumps` output, which writes NaN and infinities as bare `NaN`, `Infinity` and
/// `-Infinity` (not JSON): those are read as their floats.
fn python_json(s: &str) -> Result<Value> {
    match serde_json::from_str(s) {
        Ok(v) => Ok(v),
        Err(e) => {
            let marked = s
                .replace("-Infinity", r#""\u0001-inf""#)
                .replace("Infinity", r#""\u0001inf""#)
                .replace("NaN", r#""\u0001nan""#);
            serde_json::from_str(&marked).map_err(|_| invalid!("a skops JSON value is not JSON: {e}"))
        }
    }
}

/// A `.npy` file: magic, version, a header that is a Python dict literal, then the data.
fn npy(b: &[u8]) -> Result<NdArray> {
    if !b.starts_with(b"\x93NUMPY") || b.len() < 10 {
        return Err(invalid!("not a .npy array"));
    }
    let (len, start) = match b[6] {
        1 => (usize::from(u16::from_le_bytes([b[8], b[9]])), 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(ReadError::Unsupported(format!(".npy version {v}"))),
    };
    let header = b.get(start..start + len).ok_or_else(|| ReadError::Truncated("a .npy header".into()))?;
    let header = std::str::from_utf8(header).map_err(|_| invalid!("a .npy header that is not text"))?;
    let lit = Literal::parse(header)?;
    let Literal::Dict(d) = lit else { return Err(invalid!("a .npy header that is not a dictionary")) };
    let get = |k: &str| d.iter().find(|(key, _)| matches!(key, Literal::Str(s) if s == k)).map(|(_, v)| v);
    let dtype = descr(get("descr").ok_or_else(|| invalid!("a .npy header without 'descr'"))?)?;
    let fortran = matches!(get("fortran_order"), Some(Literal::Bool(true)));
    let shape = match get("shape") {
        Some(Literal::Seq(s)) => s
            .iter()
            .map(|x| match x {
                Literal::Int(i) => usize::try_from(*i).map_err(|_| invalid!("a negative .npy dimension")),
                _ => Err(invalid!("a .npy dimension that is not an integer")),
            })
            .collect::<Result<Vec<_>>>()?,
        _ => return Err(invalid!("a .npy header without 'shape'")),
    };
    NdArray::new(dtype, shape, fortran, ArrayData::Bytes(b[start + len..].to_vec()))
}

fn descr(l: &Literal) -> Result<Dtype> {
    match l {
        Literal::Str(s) => Dtype::parse(s),
        Literal::Seq(fields) => {
            let mut out = Vec::new();
            let mut offset = 0usize;
            for f in fields {
                let Literal::Seq(parts) = f else { return Err(invalid!("a .npy structured field")) };
                let (Some(Literal::Str(name)), Some(t), None) = (parts.first(), parts.get(1), parts.get(2)) else {
                    return Err(ReadError::Unsupported("structured .npy fields with sub-arrays".into()));
                };
                let dt = descr(t)?;
                let size = dt.itemsize();
                if !name.is_empty() {
                    out.push((name.clone(), dt, offset));
                }
                offset = offset.checked_add(size).ok_or_else(|| invalid!("a .npy item size overflows"))?;
            }
            Ok(Dtype::Struct(out, offset))
        }
        _ => Err(invalid!("a .npy 'descr' that is neither a type nor fields")),
    }
}

/// The Python literals a `.npy` header holds.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    Int(i64),
    Bool(bool),
    None,
    Seq(Vec<Literal>),
    Dict(Vec<(Literal, Literal)>),
}

impl Literal {
    fn parse(s: &str) -> Result<Self> {
        let mut p = Parser { s: s.as_bytes(), i: 0, depth: 0 };
        let v = p.value()?;
        Ok(v)
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn value(&mut self) -> Result<Literal> {
        self.depth += 1;
        if self.depth > 32 {
            return Err(invalid!("a .npy header nests too deeply"));
        }
        let v = match self.peek().ok_or_else(|| invalid!("a .npy header ends early"))? {
            b'\'' | b'"' => {
                let q = self.s[self.i];
                self.i += 1;
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i] != q {
                    self.i += 1;
                }
                let t = String::from_utf8_lossy(&self.s[start..self.i.min(self.s.len())]).into_owned();
                self.i += 1;
                Literal::Str(t)
            }
            open @ (b'(' | b'[' | b'{') => {
                self.i += 1;
                let close = match open {
                    b'(' => b')',
                    b'[' => b']',
                    _ => b'}',
                };
                let (mut items, mut pairs) = (Vec::new(), Vec::new());
                loop {
                    if self.peek() == Some(close) {
                        self.i += 1;
                        break;
                    }
                    let v = self.value()?;
                    if open == b'{' {
                        if self.peek() != Some(b':') {
                            return Err(invalid!("a .npy header dictionary without ':'"));
                        }
                        self.i += 1;
                        pairs.push((v, self.value()?));
                    } else {
                        items.push(v);
                    }
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(c) if c == close => {}
                        _ => return Err(invalid!("a malformed .npy header")),
                    }
                }
                if open == b'{' { Literal::Dict(pairs) } else { Literal::Seq(items) }
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len() && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'-') {
                    self.i += 1;
                }
                match &self.s[start..self.i] {
                    b"True" => Literal::Bool(true),
                    b"False" => Literal::Bool(false),
                    b"None" => Literal::None,
                    t => Literal::Int(
                        std::str::from_utf8(t)
                            .ok()
                            .and_then(|t| t.trim_end_matches('L').parse().ok())
                            .ok_or_else(|| invalid!("a .npy header value"))?,
                    ),
                }
            }
        };
        self.depth -= 1;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_headers() {
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        let h = "{'descr': [('a', '<i8'), ('', '|V7'), ('b', '|u1')], 'fortran_order': False, 'shape': (2,), }\n";
        b.extend((h.len() as u16).to_le_bytes());
        b.extend(h.as_bytes());
        b.extend([0u8; 32]);
        let a = npy(&b).unwrap();
        assert_eq!(a.dtype, Dtype::Struct(vec![("a".into(), Dtype::Int(8), 0), ("b".into(), Dtype::UInt(1), 15)], 16));
        assert_eq!(a.shape, vec![2]);
        // A shape far past the data is an error, not an allocation.
        let h = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,), }\n";
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((h.len() as u16).to_le_bytes());
        b.extend(h.as_bytes());
        assert!(npy(&b).is_err());
    }
}
