//! A pickle reader that executes nothing: the opcodes of protocols 0-5 interpreted into an inert
//! [`Graph`]. `GLOBAL`/`STACK_GLOBAL` record a name, `REDUCE`/`NEWOBJ` record the call they
//! describe and `BUILD` records the state: no callable is ever looked up or called. Names outside
//! the modules a scikit-learn model can reference (scikit-learn, numpy, the builtins it pickles)
//! are refused at the opcode that names them, so a pickle that would run `os.system` or a
//! cloudpickled function stops there, with an error that names it.

use std::collections::HashMap;

use crate::error::{ReadError, Result, invalid};
use crate::graph::{Graph, Id, Node};

/// The most nodes a file may build: every opcode builds at most one, so this bounds memory by
/// the file's size, with a ceiling against files that are mostly one-byte opcodes.
const MAX_NODES: usize = 50_000_000;

/// Reads a pickle into a graph.
pub(crate) fn read(bytes: &[u8]) -> Result<Graph> {
    Vm { bytes, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), graph: Graph::default() }.run()
}

struct Vm<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Id>,
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
    graph: Graph,
}

/// Why a name is refused, if it is; `None` for the names a scikit-learn pickle may hold.
pub(crate) fn refusal(module: &str, name: &str) -> Option<String> {
    let root = module.split('.').next().unwrap_or(module);
    let allowed = match root {
        // Classes and numpy's reconstruction functions: read by name, by mlscore's own code.
        "sklearn" | "numpy" | "xgboost" | "lightgbm" | "scipy" => true,
        "builtins" | "__builtin__" => matches!(
            name,
            "slice"
                | "bytearray"
                | "set"
                | "frozenset"
                | "complex"
                | "object"
                | "int"
                | "float"
                | "str"
                | "bool"
                | "list"
                | "dict"
                | "tuple"
                | "range"
        ),
        "collections" => matches!(name, "OrderedDict" | "defaultdict"),
        // A name like the others: scikit-learn's HistGradientBoosting keeps
        // `partial(check_array, ...)` in its preprocessor. No partial is ever called; the
        // estimator reader accepts only that one and refuses a FunctionTransformer holding any.
        "functools" => name == "partial",
        "copyreg" | "copy_reg" => matches!(name, "_reconstructor" | "__newobj__"),
        "_codecs" => name == "encode",
        _ => false,
    };
    if allowed {
        return None;
    }
    let what = if root == "cloudpickle" || module == "types" {
        "a function or class pickled by value (cloudpickle), which would run its code when loaded"
    } else if matches!(
        root,
        "os" | "posix"
            | "nt"
            | "subprocess"
            | "sys"
            | "builtins"
            | "__builtin__"
            | "shutil"
            | "socket"
            | "importlib"
            | "runpy"
            | "pickle"
            | "marshal"
    ) {
        "a call that runs arbitrary code when the pickle is loaded"
    } else {
        "a class or function outside scikit-learn and numpy (code mlscore does not run)"
    };
    Some(format!(
        "the pickle refers to {module}.{name}: {what}; mlscore reads pickles as data and never runs them. \
         If this is your own transformer or function, drop that step from the pipeline or log the model \
         as ONNX (skl2onnx) or skops"
    ))
}

impl Vm<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8]> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.bytes.len()).ok_or_else(|| {
            ReadError::Truncated(format!(
                "{what} of {n} bytes at offset {} runs past the end of the file ({} bytes)",
                self.pos,
                self.bytes.len()
            ))
        })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1, "an argument")?[0])
    }

    fn uint(&mut self, n: usize) -> Result<u64> {
        let b = self.take(n, "an argument")?;
        let mut x = [0u8; 8];
        x[..n].copy_from_slice(b);
        Ok(u64::from_le_bytes(x))
    }

    fn size(&mut self, n: usize) -> Result<usize> {
        usize::try_from(self.uint(n)?).map_err(|_| invalid!("a length does not fit in memory"))
    }

    fn line(&mut self) -> Result<String> {
        let rest = &self.bytes[self.pos..];
        let end = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| ReadError::Truncated("a line without its end".into()))?;
        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(s)
    }

    fn push(&mut self, n: Node) -> Result<()> {
        if self.graph.nodes.len() >= MAX_NODES {
            return Err(invalid!("the pickle builds more than {MAX_NODES} objects"));
        }
        let id = self.graph.push(n);
        self.stack.push(id);
        Ok(())
    }

    fn pop(&mut self) -> Result<Id> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(invalid!("the pickle pops an empty stack at offset {}", self.pos));
        }
        Ok(self.stack.pop().unwrap_or_default())
    }

    fn top(&self) -> Result<Id> {
        self.stack.last().copied().ok_or_else(|| invalid!("the pickle reads an empty stack at offset {}", self.pos))
    }

    fn pop_mark(&mut self) -> Result<Vec<Id>> {
        let m = self.marks.pop().ok_or_else(|| invalid!("the pickle has no mark at offset {}", self.pos))?;
        if m > self.stack.len() {
            return Err(invalid!("the pickle's mark is past its stack"));
        }
        Ok(self.stack.split_off(m))
    }

    fn memo_get(&mut self, key: u64) -> Result<()> {
        let id =
            *self.memo.get(&key).ok_or_else(|| invalid!("the pickle reads memo entry {key}, which it never wrote"))?;
        self.stack.push(id);
        Ok(())
    }

    fn memo_put(&mut self, key: u64) -> Result<()> {
        let top = self.top()?;
        self.memo.insert(key, top);
        Ok(())
    }

    fn global(&mut self, module: String, name: String) -> Result<()> {
        if let Some(why) = refusal(&module, &name) {
            return Err(ReadError::Refused(why));
        }
        self.push(Node::Global { module, name })
    }

    fn string(&mut self, n: usize) -> Result<()> {
        let b = self.take(n, "a string")?;
        let s = std::str::from_utf8(b).map_err(|_| invalid!("a string that is not UTF-8"))?.to_string();
        self.push(Node::Str(s))
    }

    fn bytes(&mut self, n: usize) -> Result<()> {
        let b = self.take(n, "a bytes value")?.to_vec();
        self.push(Node::Bytes(b))
    }

    fn long(&mut self, n: usize) -> Result<()> {
        let b = self.take(n, "an integer")?.to_vec();
        if b.len() <= 8 {
            let mut x = [0u8; 8];
            x[..b.len()].copy_from_slice(&b);
            let mut v = i64::from_le_bytes(x);
            if !b.is_empty() && b.len() < 8 {
                let shift = 64 - 8 * b.len();
                v = (v << shift) >> shift;
            }
            self.push(Node::Int(v))
        } else {
            self.push(Node::BigInt(b))
        }
    }

    fn set_items(&mut self, target: Id, items: Vec<(Id, Id)>) -> Result<()> {
        match &mut self.graph.nodes[target] {
            Node::Dict(d) => d.extend(items),
            Node::Object { dict_items, .. } => dict_items.extend(items),
            _ => return Err(invalid!("the pickle sets items on something that is not a dictionary")),
        }
        Ok(())
    }

    fn append(&mut self, target: Id, items: Vec<Id>) -> Result<()> {
        match &mut self.graph.nodes[target] {
            Node::List(l) | Node::Set(l) => l.extend(items),
            Node::Object { list_items, .. } => list_items.extend(items),
            _ => return Err(invalid!("the pickle appends to something that is not a list")),
        }
        Ok(())
    }

    fn object(&mut self, callable: Id, args: Id) -> Result<()> {
        if !matches!(self.graph.node(callable), Node::Global { .. }) {
            return Err(invalid!("the pickle calls {}, which is not a class", self.graph.describe(callable)));
        }
        if !matches!(self.graph.node(args), Node::Tuple(_)) {
            return Err(invalid!("the pickle calls a class with arguments that are not a tuple"));
        }
        self.push(Node::Object { callable, args, state: None, list_items: Vec::new(), dict_items: Vec::new() })
    }

    fn run(mut self) -> Result<Graph> {
        loop {
            let at = self.pos;
            let op = self
                .take(1, "an opcode")
                .map_err(|_| ReadError::Truncated("the pickle ends before its STOP opcode".into()))?[0];
            match op {
                0x80 => {
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(ReadError::Unsupported(format!("pickle protocol {p} (protocols 0 to 5 are read)")));
                    }
                }
                0x95 => {
                    self.uint(8)?; // FRAME: a length hint only
                }
                b'.' => {
                    let root = self.pop()?;
                    self.graph.root = root;
                    return Ok(Graph::new(self.graph.nodes, root));
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let t = self.top()?;
                    self.stack.push(t);
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'p' => {
                    let k = self.line()?.trim().parse().map_err(|_| invalid!("a PUT without a number"))?;
                    self.memo_put(k)?;
                }
                b'q' => {
                    let k = self.uint(1)?;
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.uint(4)?;
                    self.memo_put(k)?;
                }
                b'g' => {
                    let k = self.line()?.trim().parse().map_err(|_| invalid!("a GET without a number"))?;
                    self.memo_get(k)?;
                }
                b'h' => {
                    let k = self.uint(1)?;
                    self.memo_get(k)?;
                }
                b'j' => {
                    let k = self.uint(4)?;
                    self.memo_get(k)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Node::Str(m), Node::Str(n)) = (self.graph.node(module).clone(), self.graph.node(name).clone())
                    else {
                        return Err(invalid!("STACK_GLOBAL without a module and a name"));
                    };
                    self.global(m, n)?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.object(callable, args)?;
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    self.object(cls, args)?;
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?;
                    match &mut self.graph.nodes[target] {
                        Node::Object { state: s, .. } => *s = Some(state),
                        _ => return Err(invalid!("the pickle gives a state to something that is not an object")),
                    }
                }
                b'}' => self.push(Node::Dict(Vec::new()))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push(Node::Dict(pairs(items)?))?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let t = self.top()?;
                    self.set_items(t, vec![(k, v)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let t = self.top()?;
                    self.set_items(t, pairs(items)?)?;
                }
                b']' => self.push(Node::List(Vec::new()))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Node::List(items))?;
                }
                b'a' => {
                    let v = self.pop()?;
                    let t = self.top()?;
                    self.append(t, vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let t = self.top()?;
                    self.append(t, items)?;
                }
                0x8f => self.push(Node::Set(Vec::new()))?,
                0x90 => {
                    let items = self.pop_mark()?;
                    let t = self.top()?;
                    self.append(t, items)?;
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Node::Set(items))?;
                }
                b')' => self.push(Node::Tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Node::Tuple(items))?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n + self.marks.last().copied().unwrap_or(0) {
                        return Err(invalid!("a TUPLE{n} with fewer than {n} values on the stack"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push(Node::Tuple(items))?;
                }
                b'N' => self.push(Node::None)?,
                0x88 => self.push(Node::Bool(true))?,
                0x89 => self.push(Node::Bool(false))?,
                b'I' => {
                    let l = self.line()?;
                    let n = match l.trim() {
                        "01" => Node::Bool(true),
                        "00" => Node::Bool(false),
                        t => Node::Int(t.parse().map_err(|_| invalid!("an INT that is not a number"))?),
                    };
                    self.push(n)?;
                }
                b'J' => {
                    let v = self.uint(4)? as u32 as i32;
                    self.push(Node::Int(i64::from(v)))?;
                }
                b'K' => {
                    let v = self.uint(1)?;
                    self.push(Node::Int(v as i64))?;
                }
                b'M' => {
                    let v = self.uint(2)?;
                    self.push(Node::Int(v as i64))?;
                }
                b'L' => {
                    let l = self.line()?;
                    let t = l.trim().trim_end_matches('L');
                    let n = t.parse().map(Node::Int).unwrap_or_else(|_| Node::BigInt(t.as_bytes().to_vec()));
                    self.push(n)?;
                }
                0x8a => {
                    let n = usize::from(self.u8()?);
                    self.long(n)?;
                }
                0x8b => {
                    let n = self.size(4)?;
                    self.long(n)?;
                }
                b'F' => {
                    let v = self.line()?.trim().parse().map_err(|_| invalid!("a FLOAT that is not a number"))?;
                    self.push(Node::Float(v))?;
                }
                b'G' => {
                    let b = self.take(8, "a float")?;
                    let v = f64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
                    self.push(Node::Float(v))?;
                }
                b'X' => {
                    let n = self.size(4)?;
                    self.string(n)?;
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    self.string(n)?;
                }
                0x8d => {
                    let n = self.size(8)?;
                    self.string(n)?;
                }
                b'V' => {
                    let l = self.line()?;
                    self.push(Node::Str(unescape_raw_unicode(&l)))?;
                }
                b'S' => {
                    let l = self.line()?;
                    let t = l.trim();
                    let t = t.strip_prefix(['\'', '"']).and_then(|t| t.strip_suffix(['\'', '"'])).unwrap_or(t);
                    self.push(Node::Str(t.to_string()))?;
                }
                b'T' => {
                    let n = self.size(4)?;
                    let b = self.take(n, "a string")?;
                    let s = b.iter().map(|c| char::from(*c)).collect();
                    self.push(Node::Str(s))?;
                }
                b'U' => {
                    let n = usize::from(self.u8()?);
                    let b = self.take(n, "a string")?;
                    let s = b.iter().map(|c| char::from(*c)).collect();
                    self.push(Node::Str(s))?;
                }
                b'B' => {
                    let n = self.size(4)?;
                    self.bytes(n)?;
                }
                b'C' => {
                    let n = usize::from(self.u8()?);
                    self.bytes(n)?;
                }
                0x8e | 0x96 => {
                    let n = self.size(8)?;
                    self.bytes(n)?;
                }
                b'i' | b'o' | 0x92 | b'P' | b'Q' | 0x82..=0x84 | 0x97 | 0x98 => {
                    return Err(ReadError::Unsupported(format!(
                        "pickle opcode 0x{op:02x} at offset {at}, which scikit-learn models saved by MLflow never use"
                    )));
                }
                _ => {
                    return Err(invalid!(
                        "byte 0x{op:02x} at offset {at} is not a pickle opcode: the file is not a pickle, or is damaged"
                    ));
                }
            }
        }
    }
}

fn pairs(items: Vec<Id>) -> Result<Vec<(Id, Id)>> {
    if !items.len().is_multiple_of(2) {
        return Err(invalid!("a dictionary with an odd number of keys and values"));
    }
    Ok(items.chunks_exact(2).map(|c| (c[0], c[1])).collect())
}

/// Protocol 0's `raw-unicode-escape`: `\uXXXX` and `\UXXXXXXXX`, other bytes as latin-1.
fn unescape_raw_unicode(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && matches!(chars.peek(), Some('u' | 'U')) {
            let n = if chars.next() == Some('u') { 4 } else { 8 };
            let hex: String = chars.by_ref().take(n).collect();
            if let Some(ch) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                out.push(ch);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shell_command_is_refused_by_name() {
        // pickle.dumps of a class whose __reduce__ returns (os.system, ("echo hi",)), protocol 4.
        let p = b"\x80\x04\x95\x1e\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94\x8c\x07echo hi\x94\x85\x94R\x94.";
        match read(p) {
            Err(ReadError::Refused(m)) => assert!(m.contains("posix.system") && m.contains("arbitrary code"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncation_and_huge_lengths_are_errors() {
        assert!(matches!(read(b"\x80\x04"), Err(ReadError::Truncated(_))));
        // BINBYTES8 declaring 2^60 bytes.
        let p = b"\x80\x04\x8e\x00\x00\x00\x00\x00\x00\x00\x10.";
        assert!(matches!(read(p), Err(ReadError::Truncated(_))));
        assert!(matches!(read(b"\x80\x04h\x05."), Err(ReadError::Invalid(_))));
        assert!(matches!(read(b"\xff"), Err(ReadError::Invalid(_))));
    }

    #[test]
    fn containers_and_memo() {
        // {'a': [1, 2.5, 'x'], 'b': same list}
        let p =
            b"\x80\x04}\x94(\x8c\x01a\x94]\x94(K\x01G@\x04\x00\x00\x00\x00\x00\x00\x8c\x01x\x94e\x8c\x01b\x94h\x02u.";
        let g = read(p).unwrap();
        let a = g.get(g.root, "a").unwrap();
        let b = g.get(g.root, "b").unwrap();
        assert_eq!(a, b);
        assert_eq!(g.items(a).unwrap().len(), 3);
        assert_eq!(g.float(g.items(a).unwrap()[1]).unwrap(), 2.5);
    }
}
