//! Column chunks copied from one Parquet file into another, never decoded.
//!
//! The parquet crate's writer appends an encoded column chunk by reading its bytes from a
//! [`ChunkReader`] and writing them to its output, through its own buffers. Here the writer is
//! handed a [`Placeholder`] whose reader yields nothing worth keeping, and its output is a
//! [`SpliceFile`]: when the stream reaches a copied chunk's place, it copies the chunk from its
//! input file itself (into a stage written past the page cache, or by the kernel from file to
//! file where direct I/O is refused: see `Output`) and drops the placeholder bytes as they
//! arrive. The writer still counts every byte, so the offsets it records in the footer are those
//! of the copied bytes.

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
    out: Output,
    /// Bytes of the stream taken so far (written, buffered or copied).
    pos: u64,
    /// The next copy to make, taken from `splices`, and whether it is made.
    next: Option<(Splice, bool)>,
    splices: Splices,
}

impl SpliceFile {
    /// Creates the file, written past the page cache where its file system allows (see
    /// [`Output`]).
    pub(crate) fn create(path: &Path) -> io::Result<(Self, Splices)> {
        let splices = Splices::default();
        let out = Self { out: Output::create(path, true)?, pos: 0, next: None, splices: splices.clone() };
        Ok((out, splices))
    }

    /// Writes what is left and checks that every copy registered was made.
    pub(crate) fn finish(self) -> io::Result<File> {
        if self.next.is_some() || self.splices.pop().is_some() {
            return Err(io::Error::other(format!(
                "a column chunk was to be copied past the end of {}",
                self.out.path.display()
            )));
        }
        self.out.finish()
    }
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
                                self.out.path.display()
                            )));
                        }
                        self.out.copy(s)?;
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
                    self.out.put(&rest[..take])?;
                    take
                }
            };
            self.pos += take as u64;
            rest = &rest[take..];
        }
        Ok(data.len())
    }

    /// Nothing: a direct output can only write whole blocks, and nothing reads the file before
    /// [`SpliceFile::finish`] writes the rest.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The alignment of direct writes: their memory, offsets and lengths (4 KiB covers disks of
/// 512-byte and 4 KiB sectors).
const ALIGN: usize = 4096;

/// Bytes staged before a write: 1 MiB, a multiple of [`ALIGN`].
const STAGE: usize = 1 << 20;

/// An output file and the bytes staged for it. Direct (`O_DIRECT`, Linux), whole staged blocks
/// go from this buffer to the disk, not into the page cache: the copied column chunks are read
/// from their inputs into it, and the file's last partial block is written through the page cache
/// after the file is opened again without the flag. Buffered (the fallback where the file system
/// refuses direct I/O, at open or at a write), copied chunks go from file to file by the kernel
/// (`copy_file_range`).
///
/// Why: a copying job's output is mostly the input's bytes. Through the page cache, writing
/// 2.8 GB took more system time than the job's own work (dirty pages allocated, accounted and
/// written back, while the input's cached pages compete for memory) and grew faster than the
/// rows; direct, the disk's DMA writes them and the kernel only copies the cached input.
struct Output {
    file: File,
    path: PathBuf,
    /// `raw[off..off + STAGE]` is the stage, its first byte aligned to [`ALIGN`].
    raw: Vec<u8>,
    off: usize,
    /// Bytes staged.
    filled: usize,
    direct: bool,
    /// Bytes in the file.
    written: u64,
}

impl Output {
    fn create(path: &Path, direct: bool) -> io::Result<Self> {
        let (file, direct) = match direct.then(|| open_direct(path)) {
            Some(Ok(file)) => (file, true),
            _ => (File::create(path)?, false),
        };
        let raw = vec![0u8; STAGE + ALIGN];
        let off = raw.as_ptr().align_offset(ALIGN);
        Ok(Self { file, path: path.to_path_buf(), raw, off, filled: 0, direct, written: 0 })
    }

    fn stage(&mut self) -> &mut [u8] {
        &mut self.raw[self.off..self.off + STAGE]
    }

    /// Appends `data` to the stream.
    fn put(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = (STAGE - self.filled).min(data.len());
            let at = self.filled;
            self.stage()[at..at + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == STAGE {
                self.drain(STAGE)?;
            }
        }
        Ok(())
    }

    /// Appends the column chunk `s` names to the stream.
    fn copy(&mut self, s: &Splice) -> io::Result<()> {
        let (from, len, path) = (s.from, s.len, s.path.display());
        let fail = |e: io::Error| {
            io::Error::new(e.kind(), format!("cannot copy the column chunk at byte {from} of {path}: {e}"))
        };
        if !self.direct {
            let filled = self.filled;
            self.drain(filled)?;
            let mut source = &*s.file;
            source.seek(SeekFrom::Start(from)).map_err(fail)?;
            let copied = io::copy(&mut source.take(len), &mut self.file).map_err(fail)?;
            self.written += copied;
            if copied != len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the column chunk at byte {from} of {path} ends after {copied} of its {len} bytes"),
                ));
            }
            return Ok(());
        }
        let mut done = 0;
        while done < len {
            let n = usize::try_from(len - done).map_or(STAGE - self.filled, |left| left.min(STAGE - self.filled));
            let at = self.filled;
            read_at(&s.file, &mut self.stage()[at..at + n], from + done).map_err(fail)?;
            self.filled += n;
            done += n as u64;
            if self.filled == STAGE {
                self.drain(STAGE)?;
            }
        }
        Ok(())
    }

    /// Writes the stage's first `n` bytes (a multiple of [`ALIGN`] when direct) and keeps the rest
    /// at its start.
    fn drain(&mut self, n: usize) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let (off, filled) = (self.off, self.filled);
        let mut done = 0;
        while done < n {
            match self.file.write(&self.raw[off + done..off + n]) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(k) => {
                    done += k;
                    self.written += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A file system that opened the file direct but refuses its writes (or a short
                // write that left the file unaligned): the page cache then, from the file's end.
                Err(e) if self.direct && e.kind() == io::ErrorKind::InvalidInput => {
                    self.reopen_buffered().map_err(|_| e)?;
                }
                Err(e) => return Err(e),
            }
        }
        self.raw.copy_within(off + n..off + filled, off);
        self.filled -= n;
        Ok(())
    }

    /// Goes on through the page cache: the file opened again without `O_DIRECT`, at its end.
    fn reopen_buffered(&mut self) -> io::Result<()> {
        let mut file = std::fs::OpenOptions::new().write(true).open(&self.path)?;
        file.seek(SeekFrom::Start(self.written))?;
        self.file = file;
        self.direct = false;
        Ok(())
    }

    /// Writes what is staged: its whole blocks as they are, the last partial one through the
    /// page cache.
    fn finish(mut self) -> io::Result<File> {
        if self.direct {
            self.drain(self.filled / ALIGN * ALIGN)?;
            if self.filled > 0 && self.direct {
                self.reopen_buffered()?;
            }
        }
        let filled = self.filled;
        self.drain(filled)?;
        self.file.flush()?;
        Ok(self.file)
    }
}

/// Opens `path` for writing past the page cache, where the platform has a way.
fn open_direct(path: &Path) -> io::Result<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).custom_flags(libc::O_DIRECT).open(path)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

/// Fills `buf` from `file` at byte `at`.
fn read_at(file: &File, buf: &mut [u8], at: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, at)
    }
    #[cfg(not(unix))]
    {
        let mut f = file;
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(buf)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::ParquetMetaDataReader;

    use super::*;

    /// A stream of several stages' worth of bytes, its own and copied ones at odd offsets and
    /// lengths, comes out whole: direct, buffered, and direct turned buffered midway (as a
    /// refused direct write turns it); the last partial block too.
    #[test]
    fn outputs_write_every_byte_direct_buffered_or_both() {
        let dir = tempfile::tempdir().unwrap();
        let source_path = dir.path().join("source");
        let mut x = 7u64;
        let mut bytes = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (x >> 56) as u8
                })
                .collect()
        };
        let source_bytes = bytes(3 * STAGE + 1234);
        std::fs::write(&source_path, &source_bytes).unwrap();
        let source = ChunkSource::open(&source_path).unwrap();
        let own: Vec<Vec<u8>> = [1, 4095, 4097, STAGE - 3, 2 * STAGE + 5, 0, 333].iter().map(|n| bytes(*n)).collect();
        let copies = [(0u64, 5000u64), (17, STAGE as u64 + 9), (4096, 4096), (99, 2 * STAGE as u64), (3, 1)];
        for (direct, switch_at) in [(true, None), (false, None), (true, Some(3))] {
            let path = dir.path().join(format!("out-{direct}-{switch_at:?}"));
            let mut out = Output::create(&path, direct).unwrap();
            let mut want = Vec::new();
            for (i, piece) in own.iter().enumerate() {
                if switch_at == Some(i) && out.direct {
                    out.reopen_buffered().unwrap();
                }
                out.put(piece).unwrap();
                want.extend_from_slice(piece);
                if let Some(&(from, len)) = copies.get(i) {
                    let splice = Splice { at: 0, from, len, file: source.file.clone(), path: source.path.clone() };
                    out.copy(&splice).unwrap();
                    want.extend_from_slice(&source_bytes[from as usize..(from + len) as usize]);
                }
            }
            out.finish().unwrap();
            let got = std::fs::read(&path).unwrap();
            assert_eq!(got.len(), want.len(), "direct {direct}, switched at {switch_at:?}");
            assert!(got == want, "direct {direct}, switched at {switch_at:?}: the bytes differ");
        }
        // A copy past the source's end is an error that names the source.
        let mut out = Output::create(&dir.path().join("short"), true).unwrap();
        let len = source_bytes.len() as u64;
        let splice = Splice { at: 0, from: len - 10, len: 20, file: source.file.clone(), path: source.path.clone() };
        let err = out.copy(&splice).unwrap_err().to_string();
        assert!(err.contains("source"), "{err}");
    }

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
