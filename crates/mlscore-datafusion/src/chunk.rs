//! Column chunks copied from one Parquet file into another without passing through this process.
//!
//! The parquet crate's writer appends an encoded column chunk by reading its bytes from a
//! [`ChunkReader`] and writing them to its output. Copying a 282 MiB table that way reads every
//! byte into this process and writes it back out. Here the writer is handed a [`Placeholder`]
//! whose reader yields nothing worth keeping, and its output is a [`SpliceFile`]: when the stream
//! reaches a copied chunk's place, it has the kernel copy the chunk from its input file
//! (`copy_file_range` on Linux; the standard library falls back to a plain copy where the
//! kernel cannot) and drops the placeholder bytes as they arrive. The writer still counts every
//! byte, so the offsets it records in the footer are those of the copied bytes.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result as ParquetResult};
use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData};
use parquet::file::reader::{ChunkReader, Length};

/// An input file whose column chunks are copied.
pub(crate) struct ChunkSource {
    file: Arc<File>,
    path: Arc<Path>,
    size: u64,
}

impl ChunkSource {
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        Ok(Self { file: Arc::new(file), path: path.into(), size })
    }

    /// Where `chunk` lies in the file: its first byte and its length, checked against the
    /// file's size (a footer can claim any offset).
    fn range(&self, chunk: &ColumnChunkMetaData) -> io::Result<(u64, u64)> {
        let at = chunk.dictionary_page_offset().unwrap_or_else(|| chunk.data_page_offset());
        let (Ok(at), Ok(len)) = (u64::try_from(at), u64::try_from(chunk.compressed_size())) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "its footer gives a column chunk a negative offset or size",
            ));
        };
        if at.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("its footer puts a column chunk at bytes {at}..+{len}, past the file's {} bytes", self.size),
            ));
        }
        Ok((at, len))
    }
}

/// What the writer's `append_column` takes with a copy of column `column` of row group
/// `row_group` of the file whose footer is `meta`: the chunk's metadata as stored, and its page
/// index entries if `page_index` (an output keeps a page index only where every chunk in it has
/// one).
pub(crate) fn copied_close(
    meta: &ParquetMetaData,
    row_group: usize,
    column: usize,
    page_index: bool,
) -> ColumnCloseResult {
    fn entry<T: Clone>(index: Option<&Vec<Vec<T>>>, keep: bool, row_group: usize, column: usize) -> Option<T> {
        index.filter(|_| keep).and_then(|i| i.get(row_group)).and_then(|r| r.get(column)).cloned()
    }
    let rg = meta.row_group(row_group);
    let chunk = rg.column(column);
    ColumnCloseResult {
        bytes_written: chunk.compressed_size() as u64,
        rows_written: rg.num_rows() as u64,
        metadata: chunk.clone(),
        bloom_filter: None,
        column_index: entry(meta.column_index(), page_index, row_group, column),
        offset_index: entry(meta.offset_index(), page_index, row_group, column),
    }
}

/// A chunk to copy into the output stream at byte `at`.
struct Splice {
    at: u64,
    from: u64,
    len: u64,
    file: Arc<File>,
    path: Arc<Path>,
}

/// The copies an output stream has yet to make, in stream order, and where the next chunk of the
/// row group being written lands; shared between the code that appends chunks and the
/// [`SpliceFile`] the writer owns.
#[derive(Clone, Default)]
pub(crate) struct Splices(Arc<Mutex<Queue>>);

#[derive(Default)]
struct Queue {
    splices: VecDeque<Splice>,
    /// The output byte the next chunk starts at. The writer buffers what it is given, so its
    /// output cannot tell where a placeholder begins: the chunks' lengths can.
    at: u64,
}

impl Splices {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A row group starts at byte `written` of the output (the writer's own count).
    pub(crate) fn start(&self, written: usize) {
        self.queue().at = written as u64;
    }

    /// Arranges for `chunk` of `source` to be copied to the next chunk's place in the output;
    /// returns the reader to hand the writer's `append_column` with the chunk's metadata.
    pub(crate) fn copy(&self, source: &ChunkSource, chunk: &ColumnChunkMetaData) -> io::Result<Placeholder> {
        let (from, len) = source.range(chunk)?;
        let mut queue = self.queue();
        if len > 0 {
            let splice = Splice { at: queue.at, from, len, file: source.file.clone(), path: source.path.clone() };
            queue.splices.push_back(splice);
        }
        queue.at += len;
        Ok(Placeholder { from, len })
    }

    /// The writer writes a chunk of `len` bytes of its own next.
    pub(crate) fn skip(&self, len: u64) {
        self.queue().at += len;
    }

    /// After a row group: checks that the writer's count, `written`, is where its chunks end, so
    /// that every copy was made where the footer says its chunk is.
    pub(crate) fn check(&self, written: usize) -> io::Result<()> {
        let at = self.queue().at;
        if written as u64 != at {
            return Err(io::Error::other(format!(
                "the writer is at byte {written} where the row group's column chunks end at byte {at}"
            )));
        }
        Ok(())
    }

    fn pop(&self) -> Option<Splice> {
        self.queue().splices.pop_front()
    }
}

/// What the writer reads a copied chunk from: as many bytes as the chunk has, none of them read
/// from anywhere (the [`SpliceFile`] puts the chunk's own bytes in their place).
pub(crate) struct Placeholder {
    from: u64,
    len: u64,
}

impl Length for Placeholder {
    fn len(&self) -> u64 {
        self.from + self.len
    }
}

impl ChunkReader for Placeholder {
    type T = Blank;

    fn get_read(&self, start: u64) -> ParquetResult<Blank> {
        if start != self.from {
            return Err(ParquetError::General(format!(
                "a copied column chunk starts at byte {}, not {start}",
                self.from
            )));
        }
        Ok(Blank { left: self.len })
    }

    fn get_bytes(&self, start: u64, _length: usize) -> ParquetResult<Bytes> {
        Err(ParquetError::General(format!("the copied column chunk at byte {start} is not read by this process")))
    }
}

/// Reads `left` bytes it leaves as they are.
pub(crate) struct Blank {
    left: u64,
}

impl Read for Blank {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = usize::try_from(self.left).map_or(buf.len(), |left| left.min(buf.len()));
        self.left -= n as u64;
        Ok(n)
    }
}

/// A Parquet writer's output file that copies the chunks registered in its [`Splices`] from
/// their input files into their places, dropping the placeholder bytes written there.
pub(crate) struct SpliceFile {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
    /// Bytes of the stream taken so far (written, buffered or copied).
    pos: u64,
    /// The next copy to make, taken from `splices`, and whether it is made.
    next: Option<(Splice, bool)>,
    splices: Splices,
}

const BUFFER: usize = 1 << 20;

impl SpliceFile {
    pub(crate) fn create(path: &Path) -> io::Result<(Self, Splices)> {
        let file = File::create(path)?;
        let splices = Splices::default();
        let out = Self {
            file,
            path: path.to_path_buf(),
            buf: Vec::with_capacity(BUFFER),
            pos: 0,
            next: None,
            splices: splices.clone(),
        };
        Ok((out, splices))
    }

    /// Flushes the stream and checks that every copy registered was made.
    pub(crate) fn finish(mut self) -> io::Result<File> {
        self.flush()?;
        if self.next.is_some() || self.splices.pop().is_some() {
            return Err(io::Error::other(format!(
                "a column chunk was to be copied past the end of {}",
                self.path.display()
            )));
        }
        Ok(self.file)
    }

    fn write_buf(&mut self) -> io::Result<()> {
        write_out(&mut self.file, &mut self.buf)
    }

    /// Copies `s` to the end of the file.
    fn copy(file: &mut File, s: &Splice) -> io::Result<()> {
        let mut source = &*s.file;
        source.seek(SeekFrom::Start(s.from))?;
        let (from, len, path) = (s.from, s.len, s.path.display());
        let copied = io::copy(&mut source.take(len), file).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot copy the column chunk at byte {from} of {path}: {e}"))
        })?;
        if copied != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the column chunk at byte {from} of {path} ends after {copied} of its {len} bytes"),
            ));
        }
        Ok(())
    }
}

/// Writes `buf` to `file` and empties it.
fn write_out(file: &mut File, buf: &mut Vec<u8>) -> io::Result<()> {
    file.write_all(buf)?;
    buf.clear();
    Ok(())
}

impl Write for SpliceFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            if self.next.is_none() {
                self.next = self.splices.pop().map(|s| (s, false));
            }
            let take = match &mut self.next {
                // Placeholder bytes: the chunk is copied when the first of them arrives.
                Some((s, copied)) if self.pos >= s.at => {
                    if !*copied {
                        if self.pos != s.at {
                            return Err(io::Error::other(format!(
                                "a column chunk was to be copied to byte {} of {}, which is already written",
                                s.at,
                                self.path.display()
                            )));
                        }
                        write_out(&mut self.file, &mut self.buf)?;
                        Self::copy(&mut self.file, s)?;
                        *copied = true;
                    }
                    let end = s.at + s.len;
                    let skip = (end - self.pos).min(rest.len() as u64) as usize;
                    if self.pos + skip as u64 == end {
                        self.next = None;
                    }
                    skip
                }
                next => {
                    let before = next.as_ref().map_or(u64::MAX, |(s, _)| s.at - self.pos);
                    let take = before.min(rest.len() as u64) as usize;
                    if self.buf.len() + take > BUFFER {
                        self.write_buf()?;
                    }
                    if take >= BUFFER {
                        self.file.write_all(&rest[..take])?;
                    } else {
                        self.buf.extend_from_slice(&rest[..take]);
                    }
                    take
                }
            };
            self.pos += take as u64;
            rest = &rest[take..];
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_buf()?;
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::ParquetMetaDataReader;

    use super::*;

    #[test]
    fn chunks_are_copied_into_their_places_in_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let batch = RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from_iter_values(0..5000)) as _)]).unwrap();
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let whole = std::fs::read(&path).unwrap();
        let meta = ParquetMetaDataReader::new().parse_and_finish(&File::open(&path).unwrap()).unwrap();
        let chunk = meta.row_group(0).column(0).clone();
        let at = chunk.dictionary_page_offset().unwrap_or(chunk.data_page_offset()) as usize;
        let len = chunk.compressed_size() as usize;
        let source = ChunkSource::open(&path).unwrap();

        // Real bytes, the chunk twice (the second right after the first, written in odd
        // pieces), real bytes again.
        let out_path = dir.path().join("out");
        let (mut out, splices) = SpliceFile::create(&out_path).unwrap();
        out.write_all(b"head").unwrap();
        splices.start(4);
        let first = splices.copy(&source, &chunk).unwrap();
        let second = splices.copy(&source, &chunk).unwrap();
        std::io::copy(&mut first.get_read(at as u64).unwrap(), &mut out).unwrap();
        let mut blank = vec![7u8; len];
        second.get_read(at as u64).unwrap().read_exact(&mut blank).unwrap();
        for piece in blank.chunks(333) {
            out.write_all(piece).unwrap();
        }
        splices.check(4 + 2 * len).unwrap();
        assert!(splices.check(4 + 2 * len - 1).is_err());
        splices.skip(4);
        out.write_all(b"tail").unwrap();
        splices.check(4 + 2 * len + 4).unwrap();
        out.finish().unwrap();
        let chunk_bytes = &whole[at..at + len];
        assert_eq!(std::fs::read(&out_path).unwrap(), [b"head", chunk_bytes, chunk_bytes, b"tail"].concat());

        // The writer can only start reading a placeholder where the chunk starts.
        assert!(first.get_read(at as u64 + 1).is_err());
        assert!(first.get_bytes(at as u64, 1).is_err());

        // A copy registered at a place the stream has passed, or past its end, is an error.
        let (mut out, splices) = SpliceFile::create(&out_path).unwrap();
        out.write_all(b"head").unwrap();
        splices.start(2);
        splices.copy(&source, &chunk).unwrap();
        assert!(out.write_all(&[0; 8]).is_err());
        let (mut out, splices) = SpliceFile::create(&out_path).unwrap();
        splices.start(100);
        splices.copy(&source, &chunk).unwrap();
        out.write_all(b"head").unwrap();
        assert!(out.finish().unwrap_err().to_string().contains("past the end"));

        // A footer that puts the chunk past the end of the file is refused before any copy.
        for size in [whole.len() as i64, i64::MAX] {
            let crafted = chunk.clone().into_builder().set_total_compressed_size(size).build().unwrap();
            let err = splices.copy(&source, &crafted).err().expect("past the end");
            assert!(err.to_string().contains("past the file's"), "{err}");
        }
        let negative = chunk.into_builder().set_data_page_offset(-1).set_dictionary_page_offset(None).build().unwrap();
        assert!(splices.copy(&source, &negative).is_err());
    }
}
