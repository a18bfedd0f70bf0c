//! Column chunks copied from one Parquet file into another, as the writer splices them.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use bytes::{Buf, Bytes};
use parquet::errors::{ParquetError, Result as ParquetResult};
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::reader::{ChunkReader, Length};

/// One column chunk's bytes, read from its file in one call, for the writer to copy: it asks a
/// [`ChunkReader`] for a reader at the chunk's file offset, and a `File` gives one that reads
/// 8 KiB a system call (44,000 reads for a 282 MiB table) from a duplicate of its descriptor made
/// for every chunk.
pub(crate) struct ChunkBytes {
    bytes: Bytes,
    /// The file offset of the first byte.
    at: u64,
}

impl ChunkBytes {
    pub(crate) fn read(file: &mut File, chunk: &ColumnChunkMetaData) -> std::io::Result<Self> {
        let at = chunk.dictionary_page_offset().unwrap_or_else(|| chunk.data_page_offset());
        let (Ok(at), Ok(len)) = (u64::try_from(at), usize::try_from(chunk.compressed_size())) else {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "a negative offset or size"));
        };
        let size = file.metadata()?.len();
        if at.checked_add(len as u64).is_none_or(|end| end > size) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("its footer puts a column chunk at bytes {at}..+{len}, past the file's {size} bytes"),
            ));
        }
        file.seek(SeekFrom::Start(at))?;
        let mut buf = Vec::with_capacity(len);
        file.take(len as u64).read_to_end(&mut buf)?;
        if buf.len() != len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the column chunk at byte {at} ends after {} of its {len} bytes", buf.len()),
            ));
        }
        Ok(Self { bytes: buf.into(), at })
    }

    /// The chunk's bytes from file offset `start` on.
    fn from(&self, start: u64) -> ParquetResult<Bytes> {
        let skip = start.checked_sub(self.at).and_then(|s| usize::try_from(s).ok()).filter(|s| *s <= self.bytes.len());
        skip.map(|s| self.bytes.slice(s..))
            .ok_or_else(|| ParquetError::General(format!("byte {start} is outside the column chunk read")))
    }
}

impl Length for ChunkBytes {
    fn len(&self) -> u64 {
        self.at + self.bytes.len() as u64
    }
}

impl ChunkReader for ChunkBytes {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> ParquetResult<Self::T> {
        Ok(self.from(start)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> ParquetResult<Bytes> {
        let b = self.from(start)?;
        if length > b.len() {
            return Err(ParquetError::General(format!("{length} bytes asked at {start}, past the column chunk read")));
        }
        Ok(b.slice(..length))
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
    fn a_chunk_is_read_whole_and_served_from_its_file_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let batch = RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from_iter_values(0..5000)) as _)]).unwrap();
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let whole = std::fs::read(&path).unwrap();
        let mut file = File::open(&path).unwrap();
        let meta = ParquetMetaDataReader::new().parse_and_finish(&file).unwrap();
        let chunk = meta.row_group(0).column(0).clone();
        let at = chunk.dictionary_page_offset().unwrap_or(chunk.data_page_offset()) as usize;
        let len = chunk.compressed_size() as usize;

        let bytes = ChunkBytes::read(&mut file, &chunk).unwrap();
        assert_eq!(bytes.len(), (at + len) as u64);
        let mut copied = Vec::new();
        bytes.get_read(at as u64).unwrap().read_to_end(&mut copied).unwrap();
        assert_eq!(copied, whole[at..at + len]);
        assert_eq!(bytes.get_bytes(at as u64 + 3, 10).unwrap(), whole[at + 3..at + 13]);
        // Offsets outside the chunk read are errors, not panics.
        assert!(bytes.get_read(at as u64 - 1).is_err());
        assert!(bytes.get_read((at + len + 1) as u64).is_err());
        assert!(bytes.get_bytes((at + len - 2) as u64, 3).is_err());

        // A footer that puts the chunk past the end of the file is refused before anything is
        // allocated for it.
        for size in [whole.len() as i64, i64::MAX] {
            let crafted = chunk.clone().into_builder().set_total_compressed_size(size).build().unwrap();
            let err = ChunkBytes::read(&mut file, &crafted).err().expect("past the end");
            assert!(err.to_string().contains("past the file's"), "{err}");
        }
        let negative = chunk.into_builder().set_data_page_offset(-1).set_dictionary_page_offset(None).build().unwrap();
        assert!(ChunkBytes::read(&mut file, &negative).is_err());
    }
}
