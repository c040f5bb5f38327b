//! The IDX format of the MNIST files (big-endian header, then raw bytes), gzipped or not.

use distill_core::{CoreError, Result};
use std::io::Read;
use std::path::Path;

/// Inflates `raw` (the bytes of `path`) when it starts with the gzip magic bytes. The IDX header
/// is inflated first, and no more than the size it declares is inflated after it: a file that
/// inflates to more is refused as soon as the excess appears, whatever its real size.
pub fn maybe_gunzip(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let bad_gzip = |e: std::io::Error| {
        CoreError::format(
            path,
            format!("not a valid gzip file ({e}); is it truncated?"),
        )
    };
    let mut decoder = flate2::read::MultiGzDecoder::new(&raw[..]);
    let mut out = Vec::new();
    (&mut decoder)
        .take(4)
        .read_to_end(&mut out)
        .map_err(bad_gzip)?;
    if out.len() < 4 {
        return Ok(out);
    }
    let rank = usize::from(out[3]);
    (&mut decoder)
        .take(4 * rank as u64)
        .read_to_end(&mut out)
        .map_err(bad_gzip)?;
    let Some(declared) = declared_size(&out, rank) else {
        return Ok(out);
    };
    let declared = declared.ok_or_else(|| {
        CoreError::format(
            path,
            "the IDX header declares more data than can be addressed; the file is damaged",
        )
    })?;
    decoder
        .take(declared as u64 + 1)
        .read_to_end(&mut out)
        .map_err(bad_gzip)?;
    if out.len() > declared {
        return Err(CoreError::format(
            path,
            format!(
                "inflates to more than the {declared} bytes its IDX header declares; the file \
                 is damaged or not an MNIST file: download it again"
            ),
        ));
    }
    Ok(out)
}

/// The whole size (header included) an IDX header of `rank` dimensions declares: `None` while
/// the header is incomplete, `Some(None)` when the size overflows.
fn declared_size(header: &[u8], rank: usize) -> Option<Option<usize>> {
    let len = 4 + 4 * rank;
    if header.len() < len {
        return None;
    }
    Some(
        (0..rank)
            .map(|i| {
                let o = 4 + 4 * i;
                u32::from_be_bytes([header[o], header[o + 1], header[o + 2], header[o + 3]])
                    as usize
            })
            .try_fold(1usize, |acc, d| acc.checked_mul(d))
            .and_then(|n| n.checked_add(len)),
    )
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
    let Some(expected) = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) else {
        return Err(CoreError::format(
            path,
            format!("IDX dimensions {dims:?} declare more data than can be addressed"),
        ));
    };
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

    #[test]
    fn gzip_is_inflated_no_further_than_the_header_declares() {
        use std::io::Write;
        let gz = |bytes: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        };
        let p = Path::new("x.idx.gz");
        let ok = idx(1, &[3], &[1, 2, 3]);
        assert_eq!(maybe_gunzip(p, gz(&ok)).unwrap(), ok);
        // 64 MiB of zeros behind a header that declares 3 bytes: refused after 4 bytes more.
        let long = idx(1, &[3], &vec![0u8; 64 << 20]);
        let e = maybe_gunzip(p, gz(&long)).unwrap_err().to_string();
        assert!(
            e.contains("more than the 11 bytes its IDX header declares"),
            "{e}"
        );
        let e = parse_u8(p, idx(3, &[u32::MAX, u32::MAX, u32::MAX], &[]), 3)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("more data than can be addressed"), "{e}");
    }
}
