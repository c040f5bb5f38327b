//! Defences against damaged Parquet files that the `parquet` crate would panic on instead of
//! returning an error (found by fuzzing the store reader: a negative column-chunk offset makes
//! `ColumnChunkMetaData::byte_range` assert). Checked up front for a precise message; any other
//! panic inside the decoder is caught by `data::parquet::guard_decoder`.

use distill_core::{CoreError, Result};
use parquet::file::metadata::ParquetMetaData;
use std::path::Path;

/// Refuses footers whose column chunks have negative offsets or sizes.
pub fn check_column_chunks(path: &Path, metadata: &ParquetMetaData) -> Result<()> {
    for (g, group) in metadata.row_groups().iter().enumerate() {
        for (c, column) in group.columns().iter().enumerate() {
            let start = column
                .dictionary_page_offset()
                .unwrap_or(column.data_page_offset());
            if start < 0 || column.compressed_size() < 0 {
                return Err(CoreError::format(
                    path,
                    format!(
                        "damaged Parquet footer: row group {g}, column {c} has offset {start} and \
                         size {} (they cannot be negative); the file is corrupt, write it again",
                        column.compressed_size()
                    ),
                ));
            }
        }
    }
    Ok(())
}
