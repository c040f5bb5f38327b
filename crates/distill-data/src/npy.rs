//! NumPy arrays: a `.npz` archive or a `.npy` file with its labels beside it.
//!
//! - `--data FILE.npz` (or `npy:FILE.npz[,layout=nchw|nhwc]`): the archive holds the features as
//!   `x` or `x_train` and their labels as `y` or `y_train` (optional); `x_test` (with `y_test`)
//!   makes it a data set with a test split. Without `x_test` it is one set read whole for every
//!   split, as one Parquet file is (see [`crate::DataSource::single_file`]).
//! - `--data FILE.npy` (or `npy:FILE.npy[,y=LABELS.npy][,layout=…]`): the features; their labels
//!   are `y=` when given, else the file beside it whose name has the first `x`/`X` of the file
//!   name replaced by `y`/`Y` (`x.npy` → `y.npy`, `x_train.npy` → `y_train.npy`,
//!   `X_test.npy` → `Y_test.npy`), when it exists; otherwise the data has no labels. One set,
//!   read whole for every split.
//! - Features are `[N, D]` (flat rows), `[N, H, W]` (one-channel images), or `[N, C, H, W]` /
//!   `[N, H, W, C]` (images). A 4-d array is NHWC when its last dimension is 1 or 3 and its second
//!   is not, NCHW otherwise; `layout=nchw|nhwc` says which when both are 1 or 3. Rows are stored
//!   channel-major (`C,H,W`) either way.
//! - `uint8` features are scaled by 1/255; `float32` and `float64` are taken as they are. Labels
//!   are a 1-d (or `[N, 1]`) array of integers of any width, each `0 ≤ label <` [`crate::MAX_CLASSES`].
//! - Only little-endian C-order arrays are read (what `np.save` writes on every common machine);
//!   the byte count the header declares is checked against the file before anything is
//!   allocated. `.npz` members may be stored or deflate-compressed (`np.savez` and
//!   `np.savez_compressed`).

use crate::{Dataset, ImageShape, Split};
use distill_core::{CoreError, Result};
use ndarray::Array2;
use std::io::Read;
use std::path::{Path, PathBuf};

/// How a 4-d feature array is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Nchw,
    Nhwc,
}

/// A `.npy` or `.npz` source with its options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpySpec {
    pub path: PathBuf,
    /// The labels of a `.npy` file, when not found beside it by name.
    pub labels: Option<PathBuf>,
    pub layout: Option<Layout>,
}

const USAGE: &str = "write npy:FILE.npy[,y=LABELS.npy][,layout=nchw|nhwc] or \
                     npy:FILE.npz[,layout=nchw|nhwc], or give the .npy/.npz file alone";

/// The most bytes one array's header may declare: 64 KiB (NumPy writes far less).
const MAX_HEADER: usize = 1 << 16;

impl NpySpec {
    /// Parses the part after `npy:`.
    pub fn parse(text: &str) -> Result<Self> {
        let mut parts = text.split(',');
        let path = parts.next().unwrap_or_default().trim();
        if path.is_empty() {
            return Err(CoreError::invalid(format!(
                "npy data: no file given; {USAGE}"
            )));
        }
        let mut spec = NpySpec::file(PathBuf::from(path));
        let rest: Vec<&str> = parts.collect();
        for (key, value) in crate::options("npy", &rest.join(","), USAGE)? {
            match key.as_str() {
                "y" if !value.is_empty() => spec.labels = Some(PathBuf::from(value)),
                "layout" => {
                    spec.layout = Some(match value.to_ascii_lowercase().as_str() {
                        "nchw" => Layout::Nchw,
                        "nhwc" => Layout::Nhwc,
                        _ => {
                            return Err(CoreError::invalid(format!(
                                "npy data: layout={value} is not nchw or nhwc; {USAGE}"
                            )));
                        }
                    })
                }
                _ => {
                    return Err(CoreError::invalid(format!(
                        "npy data: unknown or empty field '{key}'; {USAGE}"
                    )));
                }
            }
        }
        if spec.labels.is_some() && spec.is_npz() {
            return Err(CoreError::invalid(format!(
                "npy data: y= is for a .npy file; a .npz holds its labels as y (or y_train); {USAGE}"
            )));
        }
        Ok(spec)
    }

    /// A file given as plain `--data FILE`.
    pub fn file(path: PathBuf) -> Self {
        NpySpec {
            path,
            labels: None,
            layout: None,
        }
    }

    fn is_npz(&self) -> bool {
        has_extension(&self.path, "npz")
    }

    /// The argument that reads this source back.
    pub fn describe(&self) -> String {
        let mut s = format!("npy:{}", self.path.display());
        if let Some(y) = &self.labels {
            s.push_str(&format!(",y={}", y.display()));
        }
        match self.layout {
            Some(Layout::Nchw) => s.push_str(",layout=nchw"),
            Some(Layout::Nhwc) => s.push_str(",layout=nhwc"),
            None => {}
        }
        s
    }

    /// Whether the source has a test split (a `.npz` holding `x_test`).
    pub fn has_splits(&self) -> Result<bool> {
        if !self.is_npz() {
            return Ok(false);
        }
        Ok(npz_names(&self.path)?.iter().any(|n| n == "x_test"))
    }

    /// Loads a split (every row for a source without splits).
    pub fn load(&self, split: Split) -> Result<Dataset> {
        let (x, y, x_origin) = if self.is_npz() {
            let names = npz_names(&self.path)?;
            let has = |n: &str| names.iter().any(|m| m == n);
            let (xn, yn) = if has("x_test") && split == Split::Test {
                ("x_test", "y_test")
            } else if has("x_train") {
                ("x_train", "y_train")
            } else if has("x") {
                ("x", "y")
            } else {
                return Err(CoreError::format(
                    &self.path,
                    format!(
                        "no features: the archive holds {} but no x or x_train array; save the \
                         features as x (np.savez(path, x=..., y=...))",
                        list(&names)
                    ),
                ));
            };
            let x = read_npz_member(&self.path, xn)?;
            let y = if has(yn) {
                Some(read_npz_member(&self.path, yn)?)
            } else {
                None
            };
            (x, y, format!("{}[{xn}]", self.path.display()))
        } else {
            let x = read_npy(&self.path)?;
            let labels = match &self.labels {
                Some(p) => Some(p.clone()),
                None => sibling_labels(&self.path).filter(|p| p.exists()),
            };
            let y = labels.map(|p| read_npy(&p).map(|a| (a, p))).transpose()?;
            (x, y.map(|(a, _)| a), self.path.display().to_string())
        };
        let (features, image) = features_of(&self.path, &x_origin, x, self.layout)?;
        let labels = y
            .map(|y| labels_of(&self.path, y, features.nrows()))
            .transpose()?;
        let classes = labels
            .as_ref()
            .and_then(|l| l.iter().max())
            .map_or(0, |&m| m as usize + 1);
        let ds = Dataset {
            name: format!("{}:{split}", self.describe()),
            index: (0..features.nrows() as u64).collect(),
            features,
            labels,
            classes,
            image,
        };
        ds.check_finite()?;
        Ok(ds)
    }
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .is_some_and(|e| e.to_string_lossy().eq_ignore_ascii_case(ext))
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "no arrays".to_string()
    } else {
        names.join(", ")
    }
}

/// The labels file beside `x`: the first `x`/`X` of its file name replaced by `y`/`Y`.
pub fn sibling_labels(x: &Path) -> Option<PathBuf> {
    let name = x.file_name()?.to_str()?;
    let at = name.find(['x', 'X'])?;
    let y = if &name[at..=at] == "x" { "y" } else { "Y" };
    Some(x.with_file_name(format!("{}{y}{}", &name[..at], &name[at + 1..])))
}

/// The array names (without `.npy`) in a `.npz` archive.
fn npz_names(path: &Path) -> Result<Vec<String>> {
    let archive = open_npz(path)?;
    Ok(archive
        .file_names()
        .filter_map(|n| n.strip_suffix(".npy"))
        .map(str::to_string)
        .collect())
}

fn open_npz(path: &Path) -> Result<zip::ZipArchive<std::fs::File>> {
    distill_core::input::check_regular("--data", path)?;
    let file = std::fs::File::open(path).map_err(|e| CoreError::io(path, e))?;
    zip::ZipArchive::new(file).map_err(|e| {
        CoreError::format(
            path,
            format!("not a readable .npz (zip) archive ({e}); save it again with np.savez"),
        )
    })
}

/// The element type of an array, as read.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    U8(Vec<u8>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    /// Any other integer type, widened.
    Int(Vec<i64>),
}

/// An array read from a `.npy` file or `.npz` member.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    /// NumPy's type string, e.g. `<f4`.
    pub descr: String,
    pub values: Values,
}

/// Reads a `.npy` file.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let meta = distill_core::input::check_regular("--data", path)?;
    let file = std::fs::File::open(path).map_err(|e| CoreError::io(path, e))?;
    parse_npy(path, &path.display().to_string(), file, meta.len())
}

fn read_npz_member(path: &Path, name: &str) -> Result<NpyArray> {
    let mut archive = open_npz(path)?;
    let member = format!("{name}.npy");
    let entry = archive.by_name(&member).map_err(|e| {
        CoreError::format(
            path,
            format!("cannot open array {name} in the archive ({e})"),
        )
    })?;
    let size = entry.size();
    let origin = format!("{}[{name}]", path.display());
    parse_npy(path, &origin, entry.take(size), size)
}

/// Parses a `.npy` stream of `available` bytes; `path` and `origin` name it in messages.
pub fn parse_npy(path: &Path, origin: &str, mut r: impl Read, available: u64) -> Result<NpyArray> {
    let bad = |why: String| CoreError::format(path, format!("{origin}: {why}"));
    let io = |e: std::io::Error| {
        bad(format!(
            "cannot read it ({e}); the file is cut short or damaged"
        ))
    };
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|_| {
        bad("not a NumPy .npy array (it is shorter than the .npy preamble)".to_string())
    })?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err(bad(
            "not a NumPy .npy array (it does not start with \\x93NUMPY); save it with np.save"
                .to_string(),
        ));
    }
    let header_len = match magic[6] {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b).map_err(io)?;
            u16::from_le_bytes(b) as usize
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b).map_err(io)?;
            u32::from_le_bytes(b) as usize
        }
        v => {
            return Err(bad(format!(
                "unknown .npy format version {v}; versions 1 to 3 are read"
            )));
        }
    };
    if header_len > MAX_HEADER {
        return Err(bad(format!(
            "its header declares {header_len} bytes, more than the {MAX_HEADER} a .npy header \
             may hold here; the file is damaged"
        )));
    }
    let mut header = vec![0u8; header_len];
    r.read_exact(&mut header).map_err(io)?;
    let header = String::from_utf8_lossy(&header).to_string();
    let (descr, fortran, shape) = parse_header(&header).map_err(|why| {
        bad(format!(
            "cannot read its header '{}' ({why})",
            header.trim()
        ))
    })?;
    if fortran {
        return Err(bad(
            "the array is in Fortran order; save np.ascontiguousarray(x) instead".to_string(),
        ));
    }
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("its shape {shape:?} is too large")))?;
    let item = item_size(&descr).ok_or_else(|| {
        bad(format!(
            "its element type {descr} is not read; save uint8, float32, float64 or \
             (labels) integers, little-endian"
        ))
    })?;
    let bytes = count
        .checked_mul(item)
        .ok_or_else(|| bad(format!("its shape {shape:?} is too large")))?;
    let preamble = (if magic[6] == 1 { 10 } else { 12 } + header_len) as u64;
    let left = available.saturating_sub(preamble);
    if bytes as u64 > left {
        return Err(bad(format!(
            "its header declares shape {shape:?} of {descr} ({bytes} bytes), but only {left} bytes \
             follow; the file is cut short or damaged"
        )));
    }
    let mut data = vec![0u8; bytes];
    r.read_exact(&mut data).map_err(io)?;
    let kind = descr.trim_start_matches(['<', '|', '=']);
    let values = match kind {
        "u1" => Values::U8(data),
        "f4" => Values::F32(
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        "f8" => Values::F64(
            data.chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap_or_default()))
                .collect(),
        ),
        _ => Values::Int(ints(kind, &data)),
    };
    Ok(NpyArray {
        shape,
        descr,
        values,
    })
}

/// The item size of a little-endian type string, `None` for a type not read.
fn item_size(descr: &str) -> Option<usize> {
    let (order, kind) = descr.split_at(1.min(descr.len()));
    let kind = if matches!(order, "<" | "|" | "=") {
        kind
    } else {
        descr
    };
    let size = match kind {
        "u1" | "i1" => 1,
        "u2" | "i2" => 2,
        "u4" | "i4" | "f4" => 4,
        "u8" | "i8" | "f8" => 8,
        _ => return None,
    };
    (size == 1 || order != "|").then_some(size)
}

fn ints(kind: &str, data: &[u8]) -> Vec<i64> {
    let le = |b: &[u8]| {
        let mut a = [0u8; 8];
        a[..b.len()].copy_from_slice(b);
        a
    };
    match kind {
        "i1" => data.iter().map(|&b| b as i8 as i64).collect(),
        "i2" => data
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]) as i64)
            .collect(),
        "i4" => data
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
            .collect(),
        "i8" => data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(le(b)))
            .collect(),
        "u2" | "u4" => {
            let n = if kind == "u2" { 2 } else { 4 };
            data.chunks_exact(n)
                .map(|b| u64::from_le_bytes(le(b)) as i64)
                .collect()
        }
        // u8: values above i64::MAX become negative and are refused as labels.
        _ => data
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(le(b)) as i64)
            .collect(),
    }
}

/// `descr`, `fortran_order` and `shape` of a header dict such as
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
fn parse_header(h: &str) -> std::result::Result<(String, bool, Vec<usize>), String> {
    let after = |key: &str| -> std::result::Result<&str, String> {
        let at = h
            .find(&format!("'{key}'"))
            .ok_or_else(|| format!("no '{key}'"))?;
        let rest = &h[at + key.len() + 2..];
        let colon = rest
            .find(':')
            .ok_or_else(|| format!("no value for '{key}'"))?;
        Ok(rest[colon + 1..].trim_start())
    };
    let d = after("descr")?;
    let quote = d.chars().next().filter(|c| *c == '\'' || *c == '"');
    let descr = match quote {
        Some(q) => d[1..]
            .split(q)
            .next()
            .ok_or("an unterminated descr")?
            .to_string(),
        None => return Err("descr is not a type string (a structured dtype is not read)".into()),
    };
    let f = after("fortran_order")?;
    let fortran = if f.starts_with("True") {
        true
    } else if f.starts_with("False") {
        false
    } else {
        return Err("fortran_order is neither True nor False".into());
    };
    let s = after("shape")?;
    let inner = s
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or("shape is not a tuple")?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.trim_end_matches('L').parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| format!("shape ({inner}) is not a tuple of whole numbers"))?;
    Ok((descr, fortran, shape))
}

/// Rows `[N, C·H·W]` channel-major and the image shape, from a features array.
fn features_of(
    path: &Path,
    origin: &str,
    x: NpyArray,
    layout: Option<Layout>,
) -> Result<(Array2<f32>, Option<ImageShape>)> {
    let bad = |why: String| CoreError::format(path, format!("{origin}: {why}"));
    let values: Vec<f32> = match x.values {
        Values::U8(v) => v.into_iter().map(|b| b as f32 / 255.0).collect(),
        Values::F32(v) => v,
        Values::F64(v) => v.into_iter().map(|f| f as f32).collect(),
        Values::Int(_) => {
            return Err(bad(format!(
                "the features are integers ({}); save them as uint8 pixels (scaled by 1/255 here) \
                 or as float32/float64 values",
                x.descr
            )));
        }
    };
    let (n, shape, nhwc) = match (x.shape.as_slice(), layout) {
        ([n, d], None) => (*n, ImageShape::new(1, 1, *d), false),
        ([n, h, w], None) => (*n, ImageShape::gray(*h, *w), false),
        ([n, a, b, c], layout) => {
            let small = |d: usize| d == 1 || d == 3;
            let nhwc = match layout {
                Some(l) => l == Layout::Nhwc,
                None if small(*c) && small(*a) => {
                    return Err(bad(format!(
                        "shape {:?} could be NCHW or NHWC; add layout=nchw or layout=nhwc \
                         (npy:{},layout=…)",
                        x.shape,
                        path.display()
                    )));
                }
                None => small(*c),
            };
            let shape = if nhwc {
                ImageShape::new(*c, *a, *b)
            } else {
                ImageShape::new(*a, *b, *c)
            };
            (*n, shape, nhwc)
        }
        (other, Some(_)) if other.len() != 4 => {
            return Err(bad(format!(
                "layout= is for a 4-d array, and the features have shape {other:?}"
            )));
        }
        (other, _) => {
            return Err(bad(format!(
                "the features have shape {other:?}; give [N, D], [N, H, W], [N, C, H, W] or \
                 [N, H, W, C]"
            )));
        }
    };
    if n == 0 || shape.values() == 0 {
        return Err(bad(format!(
            "the features have shape {:?}: no rows or no values per row",
            x.shape
        )));
    }
    let rows = if nhwc {
        let mut out = vec![0.0f32; values.len()];
        let (plane, c) = (shape.plane(), shape.channels);
        for (src, dst) in values
            .chunks_exact(shape.values())
            .zip(out.chunks_exact_mut(shape.values()))
        {
            for p in 0..plane {
                for ch in 0..c {
                    dst[ch * plane + p] = src[p * c + ch];
                }
            }
        }
        out
    } else {
        values
    };
    let features =
        Array2::from_shape_vec((n, shape.values()), rows).map_err(|e| bad(e.to_string()))?;
    let image = (x.shape.len() > 2).then_some(shape);
    Ok((features, image))
}

/// Labels from a 1-d or `[N, 1]` integer array of `rows` values.
fn labels_of(path: &Path, y: NpyArray, rows: usize) -> Result<Vec<u32>> {
    let bad = |why: String| CoreError::format(path, format!("labels: {why}"));
    let shape_ok = matches!(y.shape.as_slice(), [n] | [n, 1] if *n == rows);
    if !shape_ok {
        return Err(bad(format!(
            "shape {:?}, expected [{rows}] (one label per row of the features)",
            y.shape
        )));
    }
    let values: Vec<i64> = match y.values {
        Values::U8(v) => v.into_iter().map(i64::from).collect(),
        Values::Int(v) => v,
        Values::F32(_) | Values::F64(_) => {
            return Err(bad(format!(
                "the labels are floats ({}); save them as integers (y.astype('int64'))",
                y.descr
            )));
        }
    };
    crate::check_labels(path, values.into_iter().map(Some), None, rows)
}
