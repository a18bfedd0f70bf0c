//! The inert object graph both readers build: what a pickle or skops file describes, as data.
//! Class references stay names, constructor calls stay `(callable, args, state)` records; only
//! numpy arrays and dtypes are interpreted here, by their documented layouts. Nothing in a graph
//! can run code, and every accessor checks what it reads.

use std::collections::HashMap;

use crate::error::{ReadError, Result, invalid};

/// A node's index in its [`Graph`].
pub type Id = usize;

/// One value of the graph.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Python's `None` (also what an unknown index reads as).
    None,
    /// A `bool`.
    Bool(bool),
    /// An `int` that fits 64 bits.
    Int(i64),
    /// An integer past 64 bits (kept as its little-endian two's complement bytes, never used).
    BigInt(Vec<u8>),
    /// A `float`.
    Float(f64),
    /// A `str`.
    Str(String),
    /// `bytes` or a `bytearray`.
    Bytes(Vec<u8>),
    /// A `list`'s items.
    List(Vec<Id>),
    /// A `tuple`'s items.
    Tuple(Vec<Id>),
    /// A `set`'s or `frozenset`'s items.
    Set(Vec<Id>),
    /// A `dict`'s (key, value) pairs, in insertion order.
    Dict(Vec<(Id, Id)>),
    /// A reference to a module-level name (`module.name`): a class or function, never resolved.
    Global {
        /// The module (`sklearn.tree._classes`).
        module: String,
        /// The name in it (`DecisionTreeClassifier`).
        name: String,
    },
    /// What `callable(*args)` would build (REDUCE, NEWOBJ), never built: with the state BUILD
    /// would give it and the items appended or set on it.
    Object {
        /// What would be called: a [`Node::Global`], for the classes this crate reads.
        callable: Id,
        /// Its arguments (a tuple).
        args: Id,
        /// The state `BUILD` would set (most often the instance's `__dict__`).
        state: Option<Id>,
        /// Items `APPEND`/`APPENDS` would add.
        list_items: Vec<Id>,
        /// Items `SETITEM`/`SETITEMS` would set.
        dict_items: Vec<(Id, Id)>,
    },
    /// A numpy array read by a reader that knows arrays (skops).
    Array(NdArray),
}

/// A numpy dtype, as far as scoring needs one.
#[derive(Debug, Clone, PartialEq)]
pub enum Dtype {
    /// IEEE floats of this many bytes (4 or 8).
    Float(usize),
    /// Signed integers of this many bytes.
    Int(usize),
    /// Unsigned integers of this many bytes.
    UInt(usize),
    /// One byte per item, 0 or 1.
    Bool,
    /// Fixed-width UTF-32 strings of this many characters (`<U3`).
    Unicode(usize),
    /// Python objects (strings, numbers, estimators).
    Object,
    /// A structured dtype: fields by name with their dtype and byte offset, and the item size.
    Struct(Vec<(String, Dtype, usize)>, usize),
}

impl Dtype {
    /// Bytes an item takes (objects are not stored as bytes).
    pub fn itemsize(&self) -> usize {
        match self {
            Dtype::Float(n) | Dtype::Int(n) | Dtype::UInt(n) => *n,
            Dtype::Bool => 1,
            Dtype::Unicode(n) => 4 * n,
            Dtype::Object => 0,
            Dtype::Struct(_, n) => *n,
        }
    }

    /// Parses a numpy type string (`<f8`, `|u1`, `<U3`, `O`, `f8`): byte order, kind, size.
    pub fn parse(s: &str) -> Result<Self> {
        let body = s.strip_prefix(['<', '|', '=']).unwrap_or(s);
        if s.starts_with('>') {
            return Err(ReadError::Unsupported(format!("big-endian numpy arrays ('{s}') are not read")));
        }
        let (kind, size) = body.split_at(body.char_indices().nth(1).map_or(body.len(), |(i, _)| i));
        let size: usize = if size.is_empty() { 0 } else { size.parse().map_err(|_| invalid!("dtype '{s}'"))? };
        let sized = |ok: &[usize], d: Dtype| {
            if ok.contains(&size) { Ok(d) } else { Err(invalid!("numpy dtype '{s}' has an unexpected size")) }
        };
        match kind {
            "f" => sized(&[4, 8], Dtype::Float(size)),
            "i" => sized(&[1, 2, 4, 8], Dtype::Int(size)),
            "u" => sized(&[1, 2, 4, 8], Dtype::UInt(size)),
            "b" => sized(&[0, 1], Dtype::Bool),
            "?" => Ok(Dtype::Bool),
            "U" => Ok(Dtype::Unicode(size)),
            "O" => sized(&[0, 4, 8], Dtype::Object),
            "V" => Ok(Dtype::Struct(Vec::new(), size)),
            _ => Err(ReadError::Unsupported(format!("numpy arrays of dtype '{s}' are not read"))),
        }
    }
}

/// A numpy array: its items as bytes (C order) or as graph nodes (object arrays).
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    /// The items' type.
    pub dtype: Dtype,
    /// The dimensions (their product is the item count, checked).
    pub shape: Vec<usize>,
    /// The items, in C (row-major) order.
    pub data: ArrayData,
}

/// A numpy array's items.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayData {
    /// Fixed-size items as their little-endian bytes.
    Bytes(Vec<u8>),
    /// Python objects (an `object` array), as graph nodes.
    Objects(Vec<Id>),
}

impl NdArray {
    /// Checks the shape against the data, and puts Fortran-ordered data in C order.
    pub fn new(dtype: Dtype, shape: Vec<usize>, fortran: bool, data: ArrayData) -> Result<Self> {
        let count = shape
            .iter()
            .try_fold(1usize, |a, d| a.checked_mul(*d))
            .ok_or_else(|| invalid!("array shape {shape:?} overflows"))?;
        let data = match data {
            ArrayData::Bytes(b) => {
                let size = dtype.itemsize();
                ensure_len(b.len(), count.checked_mul(size), &shape, &dtype)?;
                if fortran && shape.len() > 1 && size > 0 {
                    ArrayData::Bytes(fortran_to_c(&b, &shape, size))
                } else {
                    ArrayData::Bytes(b)
                }
            }
            ArrayData::Objects(o) => {
                if dtype != Dtype::Object {
                    return Err(invalid!("a {dtype:?} array is given as Python objects"));
                }
                ensure_len(o.len(), Some(count), &shape, &dtype)?;
                if fortran && shape.len() > 1 {
                    ArrayData::Objects(fortran_to_c(&o, &shape, 1))
                } else {
                    ArrayData::Objects(o)
                }
            }
        };
        Ok(Self { dtype, shape, data })
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the array has no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Item `i`'s bytes.
    fn item(&self, i: usize) -> &[u8] {
        let size = self.dtype.itemsize();
        match &self.data {
            ArrayData::Bytes(b) => &b[i * size..(i + 1) * size],
            ArrayData::Objects(_) => &[],
        }
    }
}

fn ensure_len(found: usize, expected: Option<usize>, shape: &[usize], dtype: &Dtype) -> Result<()> {
    if Some(found) == expected {
        Ok(())
    } else {
        Err(invalid!(
            "an array of shape {shape:?} and dtype {dtype:?} holds {found} items or bytes, not {}",
            expected.map_or("a countable number".into(), |e| e.to_string())
        ))
    }
}

/// Reorders items stored column-major into row-major order.
fn fortran_to_c<T: Clone>(data: &[T], shape: &[usize], size: usize) -> Vec<T> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(data.len());
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..n {
        // Row-major position `idx`: its column-major offset.
        let mut off = 0;
        let mut stride = 1;
        for (d, i) in shape.iter().zip(&idx) {
            off += i * stride;
            stride *= d;
        }
        out.extend_from_slice(&data[off * size..(off + 1) * size]);
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}

/// The nodes of one file, and its root.
#[derive(Debug, Default)]
pub struct Graph {
    pub(crate) nodes: Vec<Node>,
    /// The object the file describes (what `pickle.load` would return).
    pub root: Id,
    /// Arrays decoded once (pickles describe them as constructor calls).
    arrays: std::cell::RefCell<HashMap<Id, std::rc::Rc<NdArray>>>,
}

/// The deepest nesting the accessors follow (a cycle or a hostile nesting ends here).
const MAX_DEPTH: usize = 200;

impl Graph {
    pub(crate) fn new(nodes: Vec<Node>, root: Id) -> Self {
        Self { nodes, root, arrays: Default::default() }
    }

    pub(crate) fn push(&mut self, n: Node) -> Id {
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    /// The node `id` ([`Node::None`] if there is no such node).
    pub fn node(&self, id: Id) -> &Node {
        self.nodes.get(id).unwrap_or(&Node::None)
    }

    /// `module.name` of a Global node.
    pub fn global(&self, id: Id) -> Option<String> {
        match self.node(id) {
            Node::Global { module, name } => Some(format!("{module}.{name}")),
            _ => None,
        }
    }

    /// The class an object node was built from (`module.Class`).
    pub fn class_of(&self, id: Id) -> Option<String> {
        match self.node(id) {
            Node::Object { callable, args, .. } => {
                let c = self.global(*callable)?;
                // copyreg._reconstructor(cls, base, state) and __newobj__: the class is the first argument.
                if c == "copyreg._reconstructor" || c == "copy_reg._reconstructor" {
                    return self.tuple(*args).ok()?.first().and_then(|a| self.global(*a));
                }
                Some(c)
            }
            _ => None,
        }
    }

    /// An object's attribute dictionary (the state BUILD gave it).
    pub fn attrs(&self, id: Id) -> Result<&[(Id, Id)]> {
        match self.node(id) {
            Node::Object { state: Some(s), .. } => match self.node(*s) {
                Node::Dict(items) => Ok(items),
                // (dict, slots) states: the dict part.
                Node::Tuple(t) if t.len() == 2 => match self.node(t[0]) {
                    Node::Dict(items) => Ok(items),
                    _ => Err(invalid!("an object's state is not a dictionary")),
                },
                _ => Err(invalid!("an object's state is not a dictionary")),
            },
            Node::Object { state: None, .. } => Ok(&[]),
            Node::Dict(items) => Ok(items),
            _ => Err(invalid!("expected an object, found {}", self.describe(id))),
        }
    }

    /// An attribute by name, if present.
    pub fn attr(&self, id: Id, name: &str) -> Result<Option<Id>> {
        Ok(self.attrs(id)?.iter().find(|(k, _)| matches!(self.node(*k), Node::Str(s) if s == name)).map(|(_, v)| *v))
    }

    /// An attribute by name, if present and not None (Python's `getattr(obj, name, None) is
    /// not None`).
    pub fn attr_set(&self, id: Id, name: &str) -> Result<Option<Id>> {
        Ok(self.attr(id, name)?.filter(|v| !matches!(self.node(*v), Node::None)))
    }

    /// A required attribute.
    pub fn get(&self, id: Id, name: &str) -> Result<Id> {
        self.attr(id, name)?.ok_or_else(|| {
            invalid!(
                "{} has no attribute '{name}' (is it fitted?)",
                self.class_of(id).unwrap_or_else(|| "the object".into())
            )
        })
    }

    /// A short description of a node, for errors.
    pub fn describe(&self, id: Id) -> String {
        match self.node(id) {
            Node::None => "None".into(),
            Node::Bool(b) => format!("{b}"),
            Node::Int(i) => format!("the integer {i}"),
            Node::BigInt(_) => "a large integer".into(),
            Node::Float(f) => format!("the number {f}"),
            Node::Str(s) => format!("the string '{s}'"),
            Node::Bytes(_) => "bytes".into(),
            Node::List(_) => "a list".into(),
            Node::Tuple(_) => "a tuple".into(),
            Node::Set(_) => "a set".into(),
            Node::Dict(_) => "a dictionary".into(),
            Node::Global { module, name } => format!("{module}.{name}"),
            Node::Object { .. } => format!("a {} object", self.class_of(id).unwrap_or_else(|| "?".into())),
            Node::Array(_) => "an array".into(),
        }
    }

    /// A string node's text.
    pub fn str(&self, id: Id) -> Result<&str> {
        match self.node(id) {
            Node::Str(s) => Ok(s),
            _ => Err(invalid!("expected a string, found {}", self.describe(id))),
        }
    }

    /// A string node's text, or `None` for Python's None.
    pub fn opt_str(&self, id: Id) -> Result<Option<&str>> {
        match self.node(id) {
            Node::None => Ok(None),
            _ => self.str(id).map(Some),
        }
    }

    /// The bytes of a `bytes` or `bytearray` (protocol 5 and skops store a bytearray as bytes;
    /// protocols 3 and 4 as `bytearray(b'...')`).
    pub fn bytes(&self, id: Id) -> Result<&[u8]> {
        match self.node(id) {
            Node::Bytes(b) => Ok(b),
            Node::Object { callable, args, .. } if self.global(*callable).as_deref() == Some("builtins.bytearray") => {
                match self.tuple(*args)? {
                    [] => Ok(&[]),
                    [b] => match self.node(*b) {
                        Node::Bytes(b) => Ok(b),
                        _ => Err(invalid!("a bytearray built from {}, not from bytes", self.describe(*b))),
                    },
                    _ => Err(invalid!("a bytearray built from several arguments (an encoded string)")),
                }
            }
            _ => Err(invalid!("expected bytes, found {}", self.describe(id))),
        }
    }

    /// A boolean: a bool, an integer or a numpy scalar, non-zero being true.
    pub fn bool(&self, id: Id) -> Result<bool> {
        match self.node(id) {
            Node::Bool(b) => Ok(*b),
            Node::Int(i) => Ok(*i != 0),
            _ => match self.scalar(id)? {
                Some(v) => Ok(v != 0.0),
                None => Err(invalid!("expected a boolean, found {}", self.describe(id))),
            },
        }
    }

    /// An integer: an int, a bool, or a numpy scalar holding a whole number.
    pub fn int(&self, id: Id) -> Result<i64> {
        match self.node(id) {
            Node::Int(i) => Ok(*i),
            Node::Bool(b) => Ok(i64::from(*b)),
            _ => match self.scalar(id)? {
                Some(v) if v.fract() == 0.0 && v.abs() < 9e15 => Ok(v as i64),
                _ => Err(invalid!("expected an integer, found {}", self.describe(id))),
            },
        }
    }

    /// A number: a float, an int, a bool or a numpy scalar.
    pub fn float(&self, id: Id) -> Result<f64> {
        match self.node(id) {
            Node::Float(f) => Ok(*f),
            Node::Int(i) => Ok(*i as f64),
            Node::Bool(b) => Ok(f64::from(u8::from(*b))),
            // skops keeps a numpy scalar as a 0-d array.
            _ if self.is_array(id) => {
                let a = self.array(id)?;
                if !a.shape.is_empty() || a.len() != 1 {
                    return Err(invalid!("expected a number, found {}", self.describe(id)));
                }
                match &a.data {
                    ArrayData::Objects(o) => match self.node(o[0]) {
                        Node::Float(f) => Ok(*f),
                        Node::Int(i) => Ok(*i as f64),
                        _ => Err(invalid!("expected a number, found {}", self.describe(o[0]))),
                    },
                    ArrayData::Bytes(_) => number(&a, 0),
                }
            }
            _ => self.scalar(id)?.ok_or_else(|| invalid!("expected a number, found {}", self.describe(id))),
        }
    }

    /// A numpy scalar (`numpy.core.multiarray.scalar(dtype, bytes)`) as a number.
    fn scalar(&self, id: Id) -> Result<Option<f64>> {
        let Node::Object { callable, args, .. } = self.node(id) else { return Ok(None) };
        let Some(c) = self.global(*callable) else { return Ok(None) };
        if !c.ends_with("multiarray.scalar") {
            return Ok(None);
        }
        let a = self.tuple(*args)?;
        let [dt, raw, ..] = a else { return Err(invalid!("a numpy scalar without its bytes")) };
        let dtype = self.dtype(*dt)?;
        let Node::Bytes(b) = self.node(*raw) else { return Err(invalid!("a numpy scalar without its bytes")) };
        let arr = NdArray::new(dtype, vec![], false, ArrayData::Bytes(b.clone()))?;
        Ok(Some(number(&arr, 0)?))
    }

    /// The items of a list, tuple or set (or of an object built by appending to it).
    pub fn items(&self, id: Id) -> Result<&[Id]> {
        match self.node(id) {
            Node::List(v) | Node::Tuple(v) | Node::Set(v) => Ok(v),
            Node::Object { list_items, .. } if !list_items.is_empty() => Ok(list_items),
            _ => Err(invalid!("expected a list, found {}", self.describe(id))),
        }
    }

    /// A tuple's items (lists and sets are read alike).
    pub fn tuple(&self, id: Id) -> Result<&[Id]> {
        self.items(id)
    }

    /// A numpy dtype node (`numpy.dtype(str, align, copy)` with its state) or a type string.
    pub fn dtype(&self, id: Id) -> Result<Dtype> {
        self.dtype_at(id, 0)
    }

    fn dtype_at(&self, id: Id, depth: usize) -> Result<Dtype> {
        if depth > MAX_DEPTH {
            return Err(invalid!("dtypes nest too deeply"));
        }
        match self.node(id) {
            Node::Str(s) => Dtype::parse(s),
            Node::Object { callable, args, state, .. } if self.global(*callable).as_deref() == Some("numpy.dtype") => {
                let a = self.tuple(*args)?;
                let kind = self.str(*a.first().ok_or_else(|| invalid!("a dtype without its type"))?)?;
                let mut dt = Dtype::parse(kind)?;
                if let Some(s) = state {
                    let st = self.tuple(*s)?;
                    // (version, byteorder, subarray, names, fields, elsize, alignment, flags)
                    if let Some(order) = st.get(1)
                        && self.str(*order).ok() == Some(">")
                        && dt.itemsize() > 1
                    {
                        return Err(ReadError::Unsupported("big-endian numpy arrays are not read".into()));
                    }
                    if let (Dtype::Struct(fields, size), Some(names), Some(fdict)) = (&mut dt, st.get(3), st.get(4))
                        && let (Node::Tuple(names), Node::Dict(fd)) = (self.node(*names), self.node(*fdict))
                    {
                        for n in names {
                            let name = self.str(*n)?;
                            let (_, spec) = fd
                                .iter()
                                .find(|(k, _)| self.str(*k).ok() == Some(name))
                                .ok_or_else(|| invalid!("dtype field '{name}' has no description"))?;
                            let spec = self.tuple(*spec)?;
                            let [fdt, off, ..] = spec else { return Err(invalid!("dtype field '{name}'")) };
                            let fdt = self.dtype_at(*fdt, depth + 1)?;
                            let off = usize::try_from(self.int(*off)?).map_err(|_| invalid!("dtype field offset"))?;
                            if off + fdt.itemsize() > *size {
                                return Err(invalid!("dtype field '{name}' lies past its item"));
                            }
                            fields.push((name.to_string(), fdt, off));
                        }
                    }
                    if let (Dtype::Unicode(n), Some(elsize)) = (&mut dt, st.get(5))
                        && *n == 0
                    {
                        *n = usize::try_from(self.int(*elsize)?).unwrap_or(0) / 4;
                    }
                }
                Ok(dt)
            }
            _ => Err(invalid!("expected a numpy dtype, found {}", self.describe(id))),
        }
    }

    /// Whether a node is a numpy array.
    pub fn is_array(&self, id: Id) -> bool {
        match self.node(id) {
            Node::Array(_) => true,
            Node::Object { callable, .. } => self
                .global(*callable)
                .is_some_and(|c| c.ends_with("multiarray._reconstruct") || c.ends_with("numeric._frombuffer")),
            _ => false,
        }
    }

    /// A numpy array node, decoded (once).
    pub fn array(&self, id: Id) -> Result<std::rc::Rc<NdArray>> {
        if let Some(a) = self.arrays.borrow().get(&id) {
            return Ok(a.clone());
        }
        let a = std::rc::Rc::new(self.decode_array(id)?);
        self.arrays.borrow_mut().insert(id, a.clone());
        Ok(a)
    }

    fn decode_array(&self, id: Id) -> Result<NdArray> {
        let shape_of = |id: Id| -> Result<Vec<usize>> {
            match self.node(id) {
                Node::Int(n) => Ok(vec![usize::try_from(*n).map_err(|_| invalid!("negative array dimension"))?]),
                _ => self
                    .tuple(id)?
                    .iter()
                    .map(|d| usize::try_from(self.int(*d)?).map_err(|_| invalid!("negative array dimension")))
                    .collect(),
            }
        };
        match self.node(id) {
            Node::Array(a) => Ok(a.clone()),
            Node::Object { callable, args, state, .. } => {
                let c = self.global(*callable).unwrap_or_default();
                if c.ends_with("multiarray._reconstruct") {
                    let s = state.ok_or_else(|| invalid!("a numpy array without its data"))?;
                    let st = self.tuple(s)?;
                    let [_, shape, dtype, fortran, raw] = st else {
                        return Err(invalid!("a numpy array's state has {} fields, not 5", st.len()));
                    };
                    let dtype = self.dtype(*dtype)?;
                    let shape = shape_of(*shape)?;
                    let fortran = self.bool(*fortran)?;
                    let data = match self.node(*raw) {
                        Node::Bytes(b) => ArrayData::Bytes(b.clone()),
                        Node::Str(s) if dtype != Dtype::Object => {
                            // Protocol 0-2 pickles give the bytes as a latin-1 string.
                            ArrayData::Bytes(s.chars().map(|c| c as u32 as u8).collect())
                        }
                        Node::List(items) => ArrayData::Objects(items.clone()),
                        _ => return Err(invalid!("a numpy array's data is {}", self.describe(*raw))),
                    };
                    NdArray::new(dtype, shape, fortran, data)
                } else if c.ends_with("numeric._frombuffer") {
                    let a = self.tuple(*args)?;
                    let [raw, dtype, shape, order] = a else { return Err(invalid!("_frombuffer takes 4 arguments")) };
                    let Node::Bytes(b) = self.node(*raw) else { return Err(invalid!("_frombuffer without bytes")) };
                    let dtype = self.dtype(*dtype)?;
                    let fortran = self.str(*order)? == "F";
                    NdArray::new(dtype, shape_of(*shape)?, fortran, ArrayData::Bytes(b.clone()))
                } else {
                    Err(invalid!("expected a numpy array, found {}", self.describe(id)))
                }
            }
            _ => Err(invalid!("expected a numpy array, found {}", self.describe(id))),
        }
    }

    /// A numeric array's items as float64 (object arrays of numbers too).
    pub fn f64s(&self, id: Id) -> Result<(Vec<f64>, Vec<usize>)> {
        let a = self.array(id)?;
        let v = match &a.data {
            ArrayData::Objects(o) => o.iter().map(|i| self.float(*i)).collect::<Result<_>>()?,
            ArrayData::Bytes(_) => (0..a.len()).map(|i| number(&a, i)).collect::<Result<_>>()?,
        };
        Ok((v, a.shape.clone()))
    }

    /// A 1-d numeric array, or a list of numbers, as float64.
    pub fn vector(&self, id: Id) -> Result<Vec<f64>> {
        if self.is_array(id) {
            return Ok(self.f64s(id)?.0);
        }
        match self.node(id) {
            Node::List(v) | Node::Tuple(v) => v.iter().map(|i| self.float(*i)).collect(),
            _ => Ok(vec![self.float(id)?]),
        }
    }

    /// One field of a structured array, item by item, as float64.
    pub fn field(&self, a: &NdArray, name: &str) -> Result<Vec<f64>> {
        let Dtype::Struct(fields, _) = &a.dtype else { return Err(invalid!("expected a structured array")) };
        let (_, dt, off) = fields
            .iter()
            .find(|(n, ..)| n == name)
            .ok_or_else(|| invalid!("the structured array has no field '{name}'"))?;
        let size = dt.itemsize();
        (0..a.len())
            .map(|i| {
                let item = a.item(i);
                scalar_bytes(dt, &item[*off..*off + size])
            })
            .collect()
    }

    /// Whether a structured array has a field.
    pub fn has_field(a: &NdArray, name: &str) -> bool {
        matches!(&a.dtype, Dtype::Struct(f, _) if f.iter().any(|(n, ..)| n == name))
    }

    /// An array's (or list's) items as labels: numbers, strings or booleans.
    pub fn labels(&self, id: Id) -> Result<Labels> {
        let items: Vec<Label> = if self.is_array(id) {
            let a = self.array(id)?;
            match (&a.dtype, &a.data) {
                (Dtype::Unicode(n), ArrayData::Bytes(b)) => {
                    b.chunks(4 * n.max(&1)).take(a.len()).map(|c| utf32(c).map(Label::Str)).collect::<Result<_>>()?
                }
                (Dtype::Bool, ArrayData::Bytes(b)) => b.iter().map(|v| Label::Bool(*v != 0)).collect(),
                (Dtype::Float(_), _) => self.f64s(id)?.0.into_iter().map(Label::Float).collect(),
                (Dtype::Int(_) | Dtype::UInt(_), _) => {
                    self.f64s(id)?.0.into_iter().map(|v| Label::Int(v as i64)).collect()
                }
                (Dtype::Object, ArrayData::Objects(o)) => o.iter().map(|i| self.label(*i)).collect::<Result<_>>()?,
                _ => return Err(invalid!("labels of dtype {:?}", a.dtype)),
            }
        } else {
            self.items(id)?.iter().map(|i| self.label(*i)).collect::<Result<_>>()?
        };
        Labels::new(items)
    }

    fn label(&self, id: Id) -> Result<Label> {
        Ok(match self.node(id) {
            Node::Str(s) => Label::Str(s.clone()),
            Node::Bool(b) => Label::Bool(*b),
            Node::Int(i) => Label::Int(*i),
            // NaN among object categories is a missing-value category, as None is (pandas 3's
            // `str` columns hold their nulls as NaN when an encoder is fitted on them).
            Node::Float(f) if f.is_nan() => Label::None,
            Node::Float(f) => Label::Float(*f),
            Node::None => Label::None,
            _ => {
                let v = self.float(id)?;
                if v.is_nan() { Label::None } else { Label::Float(v) }
            }
        })
    }
}

/// One class label or category.
#[derive(Debug, Clone, PartialEq)]
pub enum Label {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
    /// None or NaN (a missing-value category).
    None,
}

/// A list of labels of one kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    /// Integers (booleans among integers count as 0 and 1, as numpy stores them).
    Int(Vec<i64>),
    /// Floats (None or NaN among numbers is NaN).
    Float(Vec<f64>),
    /// Strings.
    Str(Vec<String>),
    /// Booleans.
    Bool(Vec<bool>),
    /// Strings with a missing-value category (a `None` or NaN among object categories).
    StrOrNone(Vec<Option<String>>),
}

impl Labels {
    fn new(items: Vec<Label>) -> Result<Self> {
        if items.iter().all(|l| matches!(l, Label::Int(_) | Label::Bool(_)))
            && items.iter().any(|l| matches!(l, Label::Int(_)))
        {
            return Ok(Labels::Int(
                items
                    .iter()
                    .map(|l| {
                        if let Label::Int(i) = l {
                            *i
                        } else if let Label::Bool(b) = l {
                            i64::from(*b)
                        } else {
                            0
                        }
                    })
                    .collect(),
            ));
        }
        if !items.is_empty() && items.iter().all(|l| matches!(l, Label::Bool(_))) {
            return Ok(Labels::Bool(items.iter().map(|l| matches!(l, Label::Bool(true))).collect()));
        }
        if items.iter().all(|l| matches!(l, Label::Int(_) | Label::Float(_) | Label::None)) {
            return Ok(Labels::Float(
                items
                    .iter()
                    .map(|l| match l {
                        Label::Int(i) => *i as f64,
                        Label::Float(f) => *f,
                        _ => f64::NAN,
                    })
                    .collect(),
            ));
        }
        if items.iter().all(|l| matches!(l, Label::Str(_))) {
            return Ok(Labels::Str(
                items.into_iter().map(|l| if let Label::Str(s) = l { s } else { String::new() }).collect(),
            ));
        }
        if items.iter().all(|l| matches!(l, Label::Str(_) | Label::None)) {
            return Ok(Labels::StrOrNone(
                items.into_iter().map(|l| if let Label::Str(s) = l { Some(s) } else { None }).collect(),
            ));
        }
        Err(ReadError::Unsupported("labels or categories that mix strings and numbers are not read".into()))
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        match self {
            Labels::Int(v) => v.len(),
            Labels::Float(v) => v.len(),
            Labels::Str(v) => v.len(),
            Labels::Bool(v) => v.len(),
            Labels::StrOrNone(v) => v.len(),
        }
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(feature = "arrow")]
impl Labels {
    /// The Arrow type of these labels: int64, float64, utf8 or boolean.
    pub fn arrow_type(&self) -> arrow_schema::DataType {
        use arrow_schema::DataType;
        match self {
            Labels::Int(_) => DataType::Int64,
            Labels::Float(_) => DataType::Float64,
            Labels::Str(_) | Labels::StrOrNone(_) => DataType::Utf8,
            Labels::Bool(_) => DataType::Boolean,
        }
    }

    /// The labels at `idx` (class indices) as an Arrow array of [`Labels::arrow_type`]; the
    /// first index at or past [`Labels::len`] as the error (a damaged model's).
    pub fn take(&self, idx: &[usize]) -> std::result::Result<arrow_array::ArrayRef, usize> {
        use std::sync::Arc;

        use arrow_array::{BooleanArray, Float64Array, Int64Array, StringArray};
        if let Some(i) = idx.iter().find(|i| **i >= self.len()) {
            return Err(*i);
        }
        Ok(match self {
            Labels::Int(c) => Arc::new(Int64Array::from_iter_values(idx.iter().map(|i| c[*i]))),
            Labels::Float(c) => Arc::new(Float64Array::from_iter_values(idx.iter().map(|i| c[*i]))),
            Labels::Str(c) => Arc::new(StringArray::from_iter_values(idx.iter().map(|i| &c[*i]))),
            Labels::StrOrNone(c) => Arc::new(StringArray::from_iter(idx.iter().map(|i| c[*i].as_deref()))),
            Labels::Bool(c) => Arc::new(BooleanArray::from_iter(idx.iter().map(|i| Some(c[*i])))),
        })
    }
}

/// Item `i` of a numeric array.
fn number(a: &NdArray, i: usize) -> Result<f64> {
    scalar_bytes(&a.dtype, a.item(i))
}

fn scalar_bytes(dt: &Dtype, b: &[u8]) -> Result<f64> {
    let arr = |n: usize| -> [u8; 8] {
        let mut x = [0u8; 8];
        x[..n].copy_from_slice(&b[..n]);
        x
    };
    Ok(match dt {
        Dtype::Float(8) => f64::from_le_bytes(arr(8)),
        Dtype::Float(4) => f64::from(f32::from_le_bytes(arr(4)[..4].try_into().unwrap_or([0; 4]))),
        Dtype::Int(n) => {
            let x = i64::from_le_bytes(arr(*n));
            // Sign-extend from n bytes.
            let shift = 64 - 8 * n;
            ((x << shift) >> shift) as f64
        }
        Dtype::UInt(n) => u64::from_le_bytes(arr(*n)) as f64,
        Dtype::Bool => f64::from(b.first().copied().unwrap_or(0) != 0),
        _ => return Err(invalid!("expected numbers, found an array of {dt:?}")),
    })
}

/// A NUL-padded UTF-32LE string.
fn utf32(b: &[u8]) -> Result<String> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .take_while(|c| *c != 0)
        .map(|c| char::from_u32(c).ok_or_else(|| invalid!("a string array holds an invalid character")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_order_is_transposed() {
        // [[1, 2, 3], [4, 5, 6]] stored column-major.
        let data: Vec<u8> = [1u8, 4, 2, 5, 3, 6].to_vec();
        let a = NdArray::new(Dtype::UInt(1), vec![2, 3], true, ArrayData::Bytes(data)).unwrap();
        assert_eq!(a.data, ArrayData::Bytes(vec![1, 2, 3, 4, 5, 6]));
    }

    #[test]
    fn byte_counts_are_checked() {
        let e = NdArray::new(Dtype::Float(8), vec![1_000_000_000_000], false, ArrayData::Bytes(vec![0; 16]));
        assert!(matches!(e, Err(ReadError::Invalid(_))));
        assert!(NdArray::new(Dtype::Float(8), vec![usize::MAX, 3], false, ArrayData::Bytes(vec![])).is_err());
    }

    #[test]
    fn dtype_strings() {
        assert_eq!(Dtype::parse("<f8").unwrap(), Dtype::Float(8));
        assert_eq!(Dtype::parse("|u1").unwrap(), Dtype::UInt(1));
        assert_eq!(Dtype::parse("<U12").unwrap(), Dtype::Unicode(12));
        assert!(matches!(Dtype::parse(">f8"), Err(ReadError::Unsupported(_))));
        assert!(Dtype::parse("<f3").is_err());
    }
}
