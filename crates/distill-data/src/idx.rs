//! The IDX format of the MNIST files (big-endian header, then raw bytes), gzipped or not.

use distill_core::{CoreError, Result};
use std::io::Read;
use std::path::Path;

/// Inflates `raw` (the bytes of `path`) when it starts with the gzip magic bytes.
pub fn maybe_gunzip(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 5);
    flate2::read::MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .map_err(|e| {
            CoreError::format(
                path,
                format!("not a valid gzip file ({e}); is it truncated?"),
            )
        })?;
    Ok(out)
}

/// An IDX array of unsigned bytes.
pub struct IdxBytes {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Parses an IDX file of unsigned bytes with `rank` dimensions (1 for labels, 3 for images).
pub fn parse_u8(path: &Path, mut bytes: Vec<u8>, rank: usize) -> Result<IdxBytes> {
    if bytes.len() < 4 {
        return Err(CoreError::format(
            path,
            "too short for an IDX header (4 bytes)",
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(CoreError::format(
            path,
            "not an IDX file: the first two bytes must be zero",
        ));
    }
    if bytes[2] != 0x08 {
        return Err(CoreError::format(
            path,
            format!(
                "IDX element type 0x{:02x} is not supported: expected unsigned bytes (0x08)",
                bytes[2]
            ),
        ));
    }
    let found_rank = bytes[3] as usize;
    if found_rank != rank {
        return Err(CoreError::format(
            path,
            format!("expected an IDX array of rank {rank}, found rank {found_rank}"),
        ));
    }
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(CoreError::format(path, "truncated IDX header"));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let expected: usize = dims.iter().product();
    let found = bytes.len() - header;
    if found != expected {
        return Err(CoreError::format(
            path,
            format!(
                "IDX dimensions {dims:?} need {expected} data bytes, found {found}; the file is {}",
                if found < expected {
                    "truncated"
                } else {
                    "longer than its header says"
                }
            ),
        ));
    }
    bytes.drain(..header);
    Ok(IdxBytes { dims, data: bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(rank: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, rank];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn parses_and_rejects() {
        let p = Path::new("x.idx");
        let ok = parse_u8(p, idx(1, &[3], &[1, 2, 3]), 1).unwrap();
        assert_eq!(ok.dims, vec![3]);
        assert_eq!(ok.data, vec![1, 2, 3]);
        let e = parse_u8(p, idx(1, &[4], &[1, 2, 3]), 1)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("truncated"), "{e}");
        let e = parse_u8(p, idx(3, &[1, 1, 1], &[1]), 1)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("rank 1"), "{e}");
        let e = parse_u8(p, b"\x01\x02\x08\x01".to_vec(), 1)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not an IDX"), "{e}");
    }
}
