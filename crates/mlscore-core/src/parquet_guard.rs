//! A check of a Parquet file's Thrift structures (footer and page headers) before the parquet
//! crate decodes them.
//!
//! The parquet crate (59.3) skips a Thrift field it does not know by walking it, and counts a
//! boolean inside a list as taking no bytes (in Thrift's compact protocol it takes one). A list
//! of booleans may declare 2^31 elements in five bytes: skipping it costs seconds, and a few such
//! lists in a 7 KB footer cost hours (found by fuzzing, `fuzz/regressions/parquet/`). Every value
//! in a compact-protocol collection takes at least one byte, so a collection that declares more
//! elements than bytes remain is damaged: this walk refuses it in time linear in the bytes,
//! before the crate sees them.

/// The deepest nesting of structs and collections accepted (the parquet crate allows 64 levels).
const MAX_DEPTH: usize = 64;

/// A Thrift compact-protocol reader over one buffer that records the integers of chosen fields.
struct Walk<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Field ids from the outermost struct to the current one (list levels add nothing).
    path: Vec<i16>,
}

/// What a walk calls back: integer fields by their path of field ids, and the end of structs.
trait Visit {
    fn int(&mut self, _path: &[i16], _value: i64) {}
    fn struct_end(&mut self, _path: &[i16]) {}
}

impl Visit for () {}

impl<'a> Walk<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Walk { buf, pos: 0, path: Vec::new() }
    }

    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.buf.get(self.pos).ok_or("the Thrift data ends early")?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a Thrift integer runs past 10 bytes".into())
    }

    fn zigzag(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        if self.buf.len() - self.pos < n {
            return Err("the Thrift data ends early".into());
        }
        self.pos += n;
        Ok(())
    }

    /// Elements a collection declares, refused where the bytes left cannot hold them.
    fn count(&mut self, declared: u64) -> Result<usize, String> {
        let left = self.buf.len() - self.pos;
        match usize::try_from(declared) {
            Ok(n) if n <= left => Ok(n),
            _ => Err(format!("a Thrift list declares {declared} elements where {left} bytes remain")),
        }
    }

    /// One value of compact type `ty`; `in_collection`: a boolean takes a byte there.
    fn value(&mut self, ty: u8, in_collection: bool, visit: &mut impl Visit) -> Result<(), String> {
        if self.path.len() > MAX_DEPTH {
            return Err(format!("Thrift structures nest deeper than {MAX_DEPTH} levels"));
        }
        match ty {
            1 | 2 => {
                if in_collection {
                    self.byte()?;
                }
            }
            3 => {
                self.byte()?;
            }
            4..=6 => {
                let v = self.zigzag()?;
                visit.int(&self.path, v);
            }
            7 => self.skip(8)?,
            8 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| "a Thrift string is too long".to_string())?;
                self.skip(len)?;
            }
            9 | 10 => {
                let head = self.byte()?;
                let declared = if head >> 4 == 15 { self.varint()? } else { u64::from(head >> 4) };
                let n = self.count(declared)?;
                self.path.push(-1);
                for _ in 0..n {
                    self.value(head & 0x0f, true, visit)?;
                }
                self.path.pop();
            }
            11 => {
                let declared = self.varint()?;
                if declared > 0 {
                    let kv = self.byte()?;
                    // A key and a value per entry: at least two bytes.
                    let n = self.count(declared.saturating_mul(2))? / 2;
                    self.path.push(-1);
                    for _ in 0..n {
                        self.value(kv >> 4, true, visit)?;
                        self.value(kv & 0x0f, true, visit)?;
                    }
                    self.path.pop();
                }
            }
            12 => self.fields(visit)?,
            13 => self.skip(16)?,
            t => return Err(format!("unknown Thrift type {t}")),
        }
        Ok(())
    }

    /// The fields of a struct, up to its stop byte.
    fn fields(&mut self, visit: &mut impl Visit) -> Result<(), String> {
        let mut last = 0i16;
        loop {
            let head = self.byte()?;
            if head == 0 {
                visit.struct_end(&self.path);
                return Ok(());
            }
            let id = match head >> 4 {
                0 => i16::try_from(self.zigzag()?).map_err(|_| "a Thrift field id is out of range".to_string())?,
                delta => last.wrapping_add(i16::from(delta)),
            };
            last = id;
            self.path.push(id);
            let done = self.value(head & 0x0f, false, visit);
            self.path.pop();
            done?;
        }
    }
}

/// Checks the Thrift encoding of a Parquet footer (the `FileMetaData` bytes before its length
/// and `PAR1`): every collection fits in the bytes it has, nesting stays under 64 levels.
///
/// ```
/// // A struct whose field 1 is a list of booleans declaring 2^31 - 1 elements, in 8 bytes.
/// let hostile = [0x19, 0xf1, 0xff, 0xff, 0xff, 0xff, 0x07, 0x00];
/// let err = mlscore_core::check_parquet_footer(&hostile).unwrap_err();
/// assert!(err.contains("2147483647 elements"), "{err}");
/// // An empty struct is fine.
/// assert_eq!(mlscore_core::check_parquet_footer(&[0x00]), Ok(()));
/// ```
pub fn check_parquet_footer(metadata: &[u8]) -> Result<(), String> {
    Walk::new(metadata).fields(&mut ()).map_err(|e| format!("the footer is damaged: {e}"))
}

/// Where a column chunk's pages are, from its `ColumnMetaData`.
#[derive(Default)]
struct Chunks {
    current: [Option<i64>; 3],
    /// (first page offset, bytes of all pages).
    found: Vec<(i64, i64)>,
}

// FileMetaData.row_groups (4) -> RowGroup.columns (1) -> ColumnChunk.meta_data (3) ->
// ColumnMetaData: total_compressed_size (7), data_page_offset (9), dictionary_page_offset (11).
const COLUMN_META: [i16; 6] = [4, -1, 1, -1, 3, 0];

impl Visit for Chunks {
    fn int(&mut self, path: &[i16], value: i64) {
        if path.len() == 6 && path[..5] == COLUMN_META[..5] {
            match path[5] {
                7 => self.current[0] = Some(value),
                9 => self.current[1] = Some(value),
                11 => self.current[2] = Some(value),
                _ => {}
            }
        }
    }

    fn struct_end(&mut self, path: &[i16]) {
        if path == &COLUMN_META[..5]
            && let [Some(size), Some(data), dict] = std::mem::take(&mut self.current)
        {
            let first = dict.filter(|d| *d > 0 && *d < data).unwrap_or(data);
            self.found.push((first, size));
        }
    }
}

/// Gets the `compressed_page_size` (field 3) of a `PageHeader`.
#[derive(Default)]
struct PageSize(Option<i64>);

impl Visit for PageSize {
    fn int(&mut self, path: &[i16], value: i64) {
        if path == [3] {
            self.0 = Some(value);
        }
    }
}

/// The length of a Parquet file's footer, from the file's size and its last 8 bytes (the
/// footer's length, then `PAR1`); `None` for a file too short to hold one or not ending in
/// `PAR1`. The length is as declared: it may exceed the file.
///
/// ```
/// assert_eq!(mlscore_core::parquet_footer_length(100, &[20, 0, 0, 0, b'P', b'A', b'R', b'1']), Some(20));
/// assert_eq!(mlscore_core::parquet_footer_length(100, b"12345678"), None);
/// assert_eq!(mlscore_core::parquet_footer_length(11, &[0, 0, 0, 0, b'P', b'A', b'R', b'1']), None);
/// ```
pub fn parquet_footer_length(file_size: u64, tail: &[u8]) -> Option<usize> {
    match tail {
        [a, b, c, d, b'P', b'A', b'R', b'1'] if file_size >= 12 => Some(u32::from_le_bytes([*a, *b, *c, *d]) as usize),
        _ => None,
    }
}

/// Checks the Thrift encoding of a whole Parquet file held in memory: its footer, then the
/// header of every page of every column chunk the footer describes (page headers are Thrift
/// too). Offsets and sizes outside the file are left for the parquet crate to refuse.
///
/// ```
/// let err = mlscore_core::check_parquet_file(b"PAR1 not a parquet file").unwrap_err();
/// assert!(err.contains("footer"), "{err}");
/// ```
pub fn check_parquet_file(file: &[u8]) -> Result<(), String> {
    let n = file.len();
    let Some(len) = parquet_footer_length(n as u64, &file[n.saturating_sub(8)..]) else {
        return Err("no Parquet footer (the file does not end in PAR1)".into());
    };
    let Some(start) = (n - 8).checked_sub(len) else {
        return Err(format!("the footer claims {len} bytes; the file has {n}"));
    };
    let mut chunks = Chunks::default();
    Walk::new(&file[start..n - 8]).fields(&mut chunks).map_err(|e| format!("the footer is damaged: {e}"))?;
    for (first, size) in chunks.found {
        let (Ok(mut at), Ok(size)) = (usize::try_from(first), usize::try_from(size)) else { continue };
        let end = at.saturating_add(size).min(start);
        while at < end {
            let mut walk = Walk::new(&file[at..end]);
            let mut page = PageSize::default();
            walk.fields(&mut page).map_err(|e| format!("the page header at byte {at} is damaged: {e}"))?;
            let Some(body) = page.0.and_then(|s| usize::try_from(s).ok()) else { break };
            at = at.saturating_add(walk.pos).saturating_add(body);
        }
    }
    Ok(())
}
