//! Data sets: where rows come from (MNIST IDX files, a generic Parquet layout, folders of images,
//! NumPy arrays, generated data), and the transforms every stage applies the same way (limit,
//! class filters, a held-out validation slice, jitter, flip, preprocessing).

pub mod idx;
pub mod images;
pub mod npy;
pub mod pairs;
pub mod parquet;
pub mod parquet_guard;
pub mod preprocess;
pub mod shape;
pub mod synthetic;

pub use preprocess::{Preprocess, flip};
pub use shape::ImageShape;

use distill_core::rng::Rng;
use distill_core::{CoreError, Result};
use ndarray::{Array2, ArrayViewMut2, Axis};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Which part of a data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

impl std::str::FromStr for Split {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            other => Err(CoreError::invalid(format!(
                "unknown split '{other}': use train or test"
            ))),
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
        })
    }
}

/// Where a data set's rows come from, parsed from a `--data` argument.
#[derive(Clone, Debug, PartialEq)]
pub enum DataSource {
    /// A folder holding the four MNIST IDX files (gzipped or not).
    Mnist(PathBuf),
    /// A folder holding `train.parquet` and `test.parquet`, or one Parquet file used for any split.
    Parquet(PathBuf),
    /// A generated data set with a known class hierarchy (`synthetic:classes=…`).
    Synthetic(synthetic::SyntheticSpec),
    /// Two MNIST digits side by side, 100 classes (`mnist-pairs:rows=…`).
    Pairs(pairs::PairsSpec),
    /// A folder of class folders of PNG/JPEG images (see [`images`]).
    Images(images::ImagesSpec),
    /// A NumPy `.npy` file with its labels, or a `.npz` archive (see [`npy`]).
    Npy(npy::NpySpec),
}

const MNIST_FILES: [(&str, &str); 2] = [
    ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
];

impl DataSource {
    /// Recognises a data argument: a folder of MNIST IDX files, a folder of Parquet splits, a
    /// folder of class folders of images (see [`images`]), a Parquet file, a `.npy`/`.npz` file
    /// (see [`npy`]), `images:…`, `npy:…`, `synthetic:…` (see [`synthetic`]) or `mnist-pairs:…`
    /// (see [`pairs`]).
    pub fn parse(arg: &str) -> Result<Self> {
        if let Some(spec) = arg.strip_prefix("synthetic:") {
            let spec = synthetic::SyntheticSpec::parse(spec)?;
            return Ok(DataSource::Synthetic(spec));
        }
        if let Some(spec) = arg.strip_prefix("mnist-pairs:") {
            return Ok(DataSource::Pairs(pairs::PairsSpec::parse(spec)?));
        }
        if let Some(spec) = arg.strip_prefix("images:") {
            return Ok(DataSource::Images(images::ImagesSpec::parse(spec)?));
        }
        if let Some(spec) = arg.strip_prefix("npy:") {
            return Ok(DataSource::Npy(npy::NpySpec::parse(spec)?));
        }
        let path = PathBuf::from(arg);
        if path.is_dir() {
            let (images, _) = MNIST_FILES[0];
            if find_file(&path, images).is_some() {
                return Ok(DataSource::Mnist(path));
            }
            if path.join("train.parquet").is_file() || path.join("test.parquet").is_file() {
                return Ok(DataSource::Parquet(path));
            }
            if images::looks_like_images(&path) {
                return Ok(DataSource::Images(images::ImagesSpec::folder(path)));
            }
            return Err(CoreError::invalid(format!(
                "{arg}: this folder holds neither the MNIST IDX files ({images}[.gz], …), nor \
                 train.parquet/test.parquet, nor class folders of images ({}); --data reads \
                 {DATA_FORMATS}",
                images::EXTENSIONS.join(", ")
            )));
        }
        if path.is_file() {
            let extension = path
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase());
            return match extension.as_deref() {
                Some("npy" | "npz") => Ok(DataSource::Npy(npy::NpySpec::file(path))),
                Some(ext @ ("csv" | "tsv" | "txt")) => Err(CoreError::format(
                    &path,
                    format!(
                        "--data: a .{ext} text file is not read; --data reads {DATA_FORMATS}; \
                         convert it first (pandas: df.to_parquet, or numpy: np.save)"
                    ),
                )),
                _ => Ok(DataSource::Parquet(path)),
            };
        }
        let relative = if path.is_relative() {
            match std::env::current_dir() {
                Ok(cwd) => format!(
                    " ({arg} is looked up from the working folder {})",
                    cwd.display()
                ),
                Err(_) => " (it is looked up from the working folder)".to_string(),
            }
        } else {
            String::new()
        };
        Err(CoreError::invalid(format!(
            "--data {arg}: no such data set{relative}; --data reads {DATA_FORMATS}"
        )))
    }

    /// The file or folder on disk the rows are read from (`None` for generated data); a
    /// pipeline stage depends on it. Parses without touching the file system.
    pub fn input_path(arg: &str) -> Option<PathBuf> {
        if arg.starts_with("synthetic:") {
            return None;
        }
        if let Some(spec) = arg.strip_prefix("mnist-pairs:") {
            return Some(
                pairs::PairsSpec::parse(spec)
                    .map(|s| s.dir)
                    .unwrap_or_else(|_| pairs::PairsSpec::default().dir),
            );
        }
        for prefix in ["images:", "npy:"] {
            if let Some(spec) = arg.strip_prefix(prefix) {
                return Some(PathBuf::from(spec.split(',').next().unwrap_or_default()));
            }
        }
        Some(PathBuf::from(arg))
    }

    /// The one file or folder this source's rows all come from, when it has no train/test
    /// splits (a single Parquet file, a `.npy`, a `.npz` without `x_test`, a folder of class
    /// folders without `train/`/`test/`): every `--split` reads all its rows.
    pub fn single_file(&self) -> Option<&Path> {
        match self {
            DataSource::Parquet(p) if !p.is_dir() => Some(p),
            DataSource::Images(spec) if !spec.has_splits() => Some(&spec.dir),
            DataSource::Npy(spec) if !spec.has_splits().unwrap_or(false) => Some(&spec.path),
            _ => None,
        }
    }

    /// The names of the classes, when the source has them: the digits of MNIST, "00" to "99"
    /// of MNIST pairs, the class folders of an image folder (sorted).
    pub fn class_names(&self) -> Option<Vec<String>> {
        match self {
            DataSource::Mnist(_) => Some((0..10).map(|d| d.to_string()).collect()),
            DataSource::Pairs(_) => Some(
                (0..pairs::CLASSES)
                    .map(pairs::PairsSpec::class_name)
                    .collect(),
            ),
            DataSource::Images(spec) => spec.class_names().ok(),
            _ => None,
        }
    }

    /// A short description recorded in outputs' metadata.
    pub fn describe(&self) -> String {
        match self {
            DataSource::Mnist(p) | DataSource::Parquet(p) => p.display().to_string(),
            DataSource::Synthetic(spec) => spec.describe(),
            DataSource::Pairs(spec) => spec.describe(),
            DataSource::Images(spec) => spec.describe(),
            DataSource::Npy(spec) => spec.describe(),
        }
    }

    /// Loads a whole split.
    pub fn load(&self, split: Split) -> Result<Dataset> {
        match self {
            DataSource::Mnist(dir) => load_mnist(dir, split),
            DataSource::Synthetic(spec) => spec.load(split),
            DataSource::Pairs(spec) => spec.load(split),
            DataSource::Images(spec) => spec.load(split),
            DataSource::Npy(spec) => spec.load(split),
            DataSource::Parquet(path) => {
                let file = if path.is_dir() {
                    path.join(format!("{split}.parquet"))
                } else {
                    path.clone()
                };
                let mut ds = parquet::read_dataset(&file)?;
                ds.name = format!("{}:{split}", self.describe());
                Ok(ds)
            }
        }
    }
}

/// The formats `--data` reads, for messages about an argument that is none of them.
pub const DATA_FORMATS: &str = "a folder of MNIST IDX files, a folder with \
     train.parquet/test.parquet, one Parquet file (a list-of-floats 'features' column and an \
     optional integer 'label' column), a folder of class folders of PNG/JPEG images \
     (images:DIR[,size=HxW][,channels=1|3]), a NumPy .npy (labels in the y file beside it) or .npz \
     (npy:FILE[,y=LABELS][,layout=nchw|nhwc]), synthetic:... or mnist-pairs:...";

/// The most classes a data set may have (labels are below it): 1,048,576, far above any real
/// label set (ImageNet-21k has about 21,000), and small enough that per-class arrays fit.
pub const MAX_CLASSES: usize = 1 << 20;

/// Checks the labels of the `rows` rows of `path` (`None` for a missing label) and returns them:
/// each is a whole number below `declared` classes when the file declares a count, else below
/// [`MAX_CLASSES`].
pub fn check_labels(
    path: &Path,
    labels: impl IntoIterator<Item = Option<i64>>,
    declared: Option<usize>,
    rows: usize,
) -> Result<Vec<u32>> {
    let bound = declared.unwrap_or(MAX_CLASSES);
    let mut out = Vec::with_capacity(rows);
    for (row, label) in labels.into_iter().enumerate() {
        match label {
            Some(l) if l >= 0 && (l as u64) < bound as u64 => out.push(l as u32),
            Some(l) if l < 0 => {
                return Err(CoreError::format(
                    path,
                    format!("label {l} in row {row} is negative; labels are class numbers 0, 1, …"),
                ));
            }
            Some(l) => {
                let why = match declared {
                    Some(c) => format!("is not below the {c} classes the file declares"),
                    None => format!(
                        "is above the most classes a data set may have ({MAX_CLASSES}; the file \
                         has {rows} rows)"
                    ),
                };
                return Err(CoreError::format(
                    path,
                    format!("label {l} in row {row} {why}; labels are class numbers 0 to C-1"),
                ));
            }
            None => {
                return Err(CoreError::format(
                    path,
                    format!(
                        "label at row {row} is null; give every row a label or drop the column"
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// Parses `key=value,key=value` options of a data source `kind` (refusing a part that is not
/// `key=value`, or a key given twice); `usage` ends each message.
pub(crate) fn options(kind: &str, text: &str, usage: &str) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').ok_or_else(|| {
            CoreError::invalid(format!("{kind} data: '{part}' is not key=value; {usage}"))
        })?;
        let key = key.trim().to_string();
        if out.iter().any(|(k, _)| *k == key) {
            return Err(CoreError::invalid(format!(
                "{kind} data: {key} is given twice; {usage}"
            )));
        }
        out.push((key, value.trim().to_string()));
    }
    Ok(out)
}

/// `STEM.gz` or `STEM` in `dir`: whatever is there under that name (a FIFO, a folder or a
/// broken symlink too, which reading then refuses by name).
fn find_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.gz"), stem.to_string()]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| std::fs::symlink_metadata(p).is_ok())
}

/// Rows of features in `[0, 1]` with their labels and their row numbers in the source split.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// A name such as `data/mnist:train`.
    pub name: String,
    /// `[N, D]` features.
    pub features: Array2<f32>,
    /// One label per row, when the data set has labels.
    pub labels: Option<Vec<u32>>,
    /// Each row's position in the source split (the soft-target store joins on it).
    pub index: Vec<u64>,
    /// Number of classes of the data set (labels are below it).
    pub classes: usize,
    /// The image shape when each row is an image (`C,H,W`, channel-major).
    pub image: Option<ImageShape>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.features.nrows()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn width(&self) -> usize {
        self.features.ncols()
    }

    /// The labels, or an error saying that this use needs them.
    pub fn require_labels(&self, what: &str) -> Result<&[u32]> {
        self.labels.as_deref().ok_or_else(|| {
            CoreError::invalid(format!(
                "{}: {what} needs labels, and this data set has none",
                self.name
            ))
        })
    }

    /// The rows at `rows`, in that order.
    pub fn select(&self, rows: &[usize]) -> Dataset {
        Dataset {
            name: self.name.clone(),
            features: self.features.select(Axis(0), rows),
            labels: self
                .labels
                .as_ref()
                .map(|l| rows.iter().map(|&r| l[r]).collect()),
            index: rows.iter().map(|&r| self.index[r]).collect(),
            classes: self.classes,
            image: self.image,
        }
    }

    /// The first `n` rows (all of them when there are fewer).
    pub fn limit(self, n: usize) -> Dataset {
        if n >= self.len() {
            return self;
        }
        let rows: Vec<usize> = (0..n).collect();
        self.select(&rows)
    }

    /// Splits off a held-out validation slice of `n` rows chosen by a fixed permutation, so the
    /// same rows are held out in every run and by every stage. Returns `(rest, validation)`.
    pub fn split_validation(&self, n: usize) -> Result<(Dataset, Dataset)> {
        if n >= self.len() {
            return Err(CoreError::invalid(format!(
                "{}: a validation slice of {n} rows leaves nothing to train on ({} rows)",
                self.name,
                self.len()
            )));
        }
        let perm = Rng::new(0x05EE_D0F0_A11D).permutation(self.len());
        let mut val: Vec<usize> = perm[..n].to_vec();
        let mut rest: Vec<usize> = perm[n..].to_vec();
        val.sort_unstable();
        rest.sort_unstable();
        Ok((self.select(&rest), self.select(&val)))
    }

    /// Keeps the rows whose label passes `filter`.
    pub fn filter_classes(self, filter: &ClassFilter) -> Result<Dataset> {
        if filter.is_empty() {
            return Ok(self);
        }
        filter.check_against(self.classes, &format!("the data {}", self.name))?;
        let labels = self.require_labels("a class filter")?;
        let rows: Vec<usize> = (0..self.len())
            .filter(|&r| filter.keeps(labels[r]))
            .collect();
        if rows.is_empty() {
            return Err(CoreError::invalid(format!(
                "{}: no rows are left after the class filter ({filter})",
                self.name
            )));
        }
        Ok(self.select(&rows))
    }

    /// Checks that every value is finite.
    pub fn check_finite(&self) -> Result<()> {
        if let Some((i, _)) = self.features.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(CoreError::invalid(format!(
                "{}: row {} column {} is not a finite number",
                self.name, i.0, i.1
            )));
        }
        Ok(())
    }
}

/// Which classes a transfer set keeps: `only` these (when given), minus `exclude`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClassFilter {
    pub only: Option<Vec<u32>>,
    pub exclude: Vec<u32>,
}

impl ClassFilter {
    pub fn is_empty(&self) -> bool {
        self.only.is_none() && self.exclude.is_empty()
    }

    pub fn keeps(&self, label: u32) -> bool {
        self.only.as_ref().is_none_or(|o| o.contains(&label)) && !self.exclude.contains(&label)
    }

    /// Every named class must exist in a data set of `classes` classes; the error names the flag
    /// (`--only-classes` or `--exclude-classes`), the class and the data's class count.
    pub fn check(&self, classes: usize) -> Result<()> {
        self.check_against(classes, "the data")
    }

    /// [`ClassFilter::check`], naming the data as `what` (e.g. "the data data/mnist:train").
    pub fn check_against(&self, classes: usize, what: &str) -> Result<()> {
        let named = (self.only.iter().flatten().map(|&c| ("--only-classes", c)))
            .chain(self.exclude.iter().map(|&c| ("--exclude-classes", c)));
        for (flag, c) in named {
            if c as usize >= classes {
                return Err(CoreError::invalid(format!(
                    "{flag}: class {c} does not exist in {what}, which has {classes} classes \
                     (0 to {}); name classes below {classes}",
                    classes.saturating_sub(1)
                )));
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for ClassFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[u32]| {
            v.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut parts = vec![];
        if let Some(o) = &self.only {
            parts.push(format!("only {}", list(o)));
        }
        if !self.exclude.is_empty() {
            parts.push(format!("excluding {}", list(&self.exclude)));
        }
        if parts.is_empty() {
            parts.push("all classes".into());
        }
        f.write_str(&parts.join(", "))
    }
}

/// Parses a comma-separated class list such as `7,8`.
pub fn parse_class_list(s: &str) -> Result<Vec<u32>> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.trim().parse::<u32>().map_err(|_| {
                CoreError::invalid(format!(
                    "'{p}' in class list '{s}' is not a class number; write e.g. 3 or 7,8"
                ))
            })
        })
        .collect()
}

fn load_mnist(dir: &Path, split: Split) -> Result<Dataset> {
    let (images_stem, labels_stem) = match split {
        Split::Train => MNIST_FILES[0],
        Split::Test => MNIST_FILES[1],
    };
    let missing = |stem: &str| {
        CoreError::invalid(format!(
            "{}: missing {stem}.gz (the MNIST {split} split)",
            dir.display()
        ))
    };
    let images_path = find_file(dir, images_stem).ok_or_else(|| missing(images_stem))?;
    let labels_path = find_file(dir, labels_stem).ok_or_else(|| missing(labels_stem))?;
    let (images, labels) = rayon::join(|| read_idx(&images_path, 3), || read_idx(&labels_path, 1));
    let (images, labels) = (images?, labels?);
    let (n, h, w) = (images.dims[0], images.dims[1], images.dims[2]);
    if labels.dims[0] != n {
        return Err(CoreError::format(
            &labels_path,
            format!(
                "{n} images in {} but {} labels here; the two files must come from the same split",
                images_path.display(),
                labels.dims[0]
            ),
        ));
    }
    if let Some(bad) = labels.data.iter().position(|&l| l > 9) {
        return Err(CoreError::format(
            &labels_path,
            format!("label {} at row {bad} is not a digit 0-9", labels.data[bad]),
        ));
    }
    let mut features = Array2::<f32>::zeros((n, h * w));
    features
        .as_slice_mut()
        .expect("a new array is contiguous")
        .par_chunks_mut(1 << 16)
        .zip(images.data.par_chunks(1 << 16))
        .for_each(|(out, bytes)| {
            for (o, &b) in out.iter_mut().zip(bytes) {
                *o = b as f32 / 255.0;
            }
        });
    Ok(Dataset {
        name: format!("{}:{split}", dir.display()),
        features,
        labels: Some(labels.data.iter().map(|&l| l as u32).collect()),
        index: (0..n as u64).collect(),
        classes: 10,
        image: Some(ImageShape::gray(h, w)),
    })
}

/// Reads an IDX file once: checks its bytes against `SHA256SUMS`, inflates and parses them.
fn read_idx(path: &Path, rank: usize) -> Result<idx::IdxBytes> {
    distill_core::input::check_regular("--data", path)?;
    let raw = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
    verify_checksum(path, &raw)?;
    idx::parse_u8(path, idx::maybe_gunzip(path, raw)?, rank)
}

/// Checks the bytes of `path` against the `SHA256SUMS` beside it, when that lists the file.
pub fn verify_checksum(path: &Path, bytes: &[u8]) -> Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    let sums = dir.join("SHA256SUMS");
    let Ok(text) = std::fs::read_to_string(&sums) else {
        return Ok(());
    };
    let name = path.file_name().map(|n| n.to_string_lossy().to_string());
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(expected), Some(file)) = (parts.next(), parts.next()) else {
            continue;
        };
        if Some(file.trim_start_matches('*').to_string()) == name {
            let found = distill_core::sha256_hex(bytes);
            if found != expected {
                return Err(CoreError::Checksum {
                    path: path.to_path_buf(),
                    expected: expected.to_string(),
                    found,
                });
            }
        }
    }
    Ok(())
}

/// Translates each image row of `x` (channel-major rows of `shape`) by a random whole-pixel offset
/// of up to `max_shift` pixels in each direction, the same offset for every channel of a row,
/// filling uncovered pixels with zero ("jitter").
pub fn jitter(x: &mut ArrayViewMut2<f32>, shape: ImageShape, max_shift: usize, rng: &mut Rng) {
    jitter_filled(x, shape, max_shift, &[0.0], rng);
}

/// [`jitter`], filling the uncovered pixels of channel `c` with `fill[c]` (or `fill[0]` for every
/// channel when it holds one value): e.g. what a raw zero becomes after a [`Preprocess`], so that
/// jittering preprocessed rows gives the preprocessed jittered raw rows. Draws from `rng` exactly
/// as [`jitter`] does.
pub fn jitter_filled(
    x: &mut ArrayViewMut2<f32>,
    shape: ImageShape,
    max_shift: usize,
    fill: &[f32],
    rng: &mut Rng,
) {
    let blank = |ch: usize| fill.get(ch).or(fill.first()).copied().unwrap_or(0.0);
    let (h, w) = (shape.height, shape.width);
    let span = 2 * max_shift + 1;
    let mut src = vec![0.0f32; shape.values()];
    for mut row in x.rows_mut() {
        let dy = rng.below(span) as isize - max_shift as isize;
        let dx = rng.below(span) as isize - max_shift as isize;
        if dx == 0 && dy == 0 {
            continue;
        }
        for (s, v) in src.iter_mut().zip(row.iter()) {
            *s = *v;
        }
        for ch in 0..shape.channels {
            let base = ch * shape.plane();
            for r in 0..h as isize {
                let sr = r - dy;
                for c in 0..w as isize {
                    let sc = c - dx;
                    let v = if sr >= 0 && sr < h as isize && sc >= 0 && sc < w as isize {
                        src[base + (sr as usize) * w + sc as usize]
                    } else {
                        blank(ch)
                    };
                    row[base + (r as usize) * w + c as usize] = v;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn jitter_moves_a_pixel_within_bounds() {
        let mut rng = Rng::new(5);
        for _ in 0..50 {
            let mut x = Array2::<f32>::zeros((1, 25));
            x[[0, 12]] = 1.0;
            jitter(&mut x.view_mut(), ImageShape::gray(5, 5), 2, &mut rng);
            let pos = x.iter().position(|&v| v == 1.0).unwrap();
            assert_eq!(x.sum(), 1.0);
            let (r, c) = (pos / 5, pos % 5);
            assert!(r.abs_diff(2) <= 2 && c.abs_diff(2) <= 2);
        }
    }

    #[test]
    fn jitter_shifts_every_channel_of_a_row_alike() {
        let shape = ImageShape::new(3, 4, 5);
        let mut rng = Rng::new(11);
        let original = Array2::from_shape_fn((8, 60), |(r, i)| (r * 60 + i + 1) as f32);
        let mut x = original.clone();
        jitter(&mut x.view_mut(), shape, 1, &mut rng);
        for (row, before) in x.rows().into_iter().zip(original.rows()) {
            let plane = |v: &ndarray::ArrayView1<f32>, c: usize| -> Vec<f32> {
                v.iter().skip(c * 20).take(20).copied().collect()
            };
            // The offset is the one under which channel 0 moved; channels 1 and 2 moved by it too.
            let moved = plane(&row, 0);
            let found = (-1isize..=1)
                .flat_map(|dy| (-1isize..=1).map(move |dx| (dy, dx)))
                .find(|&(dy, dx)| {
                    (0..20).all(|p| {
                        let (r, c) = ((p / 5) as isize - dy, (p % 5) as isize - dx);
                        let expected = if (0..4).contains(&r) && (0..5).contains(&c) {
                            before[(r * 5 + c) as usize]
                        } else {
                            0.0
                        };
                        moved[p] == expected
                    })
                });
            let (dy, dx) = found.expect("channel 0 is a shift of the original by at most 1");
            for ch in 1..3 {
                for p in 0..20 {
                    let (r, c) = ((p / 5) as isize - dy, (p % 5) as isize - dx);
                    let expected = if (0..4).contains(&r) && (0..5).contains(&c) {
                        before[ch * 20 + (r * 5 + c) as usize]
                    } else {
                        0.0
                    };
                    assert_eq!(row[ch * 20 + p], expected, "channel {ch} pixel {p}");
                }
            }
        }
    }

    #[test]
    fn jitter_of_preprocessed_rows_is_the_preprocessed_jitter_of_raw_rows() {
        let shape = ImageShape::new(3, 4, 5);
        let raw = Array2::from_shape_fn((16, 60), |(r, i)| ((r * 7 + i * 3) % 11) as f32 / 10.0);
        let p = Preprocess::parse("scale=2,mean=0.5:0.25:0.125,std=0.5:2:4").unwrap();
        let mut blank = Array2::<f32>::zeros((1, 3));
        p.apply(&mut blank.view_mut(), Some(ImageShape::new(3, 1, 1)))
            .unwrap();
        // By hand: (0 * 2 - mean) / std per channel.
        assert_eq!(blank.row(0).to_vec(), vec![-1.0, -0.125, -0.03125]);

        let mut jittered_raw = raw.clone();
        jitter(&mut jittered_raw.view_mut(), shape, 2, &mut Rng::new(4));
        p.apply(&mut jittered_raw.view_mut(), Some(shape)).unwrap();
        let mut pre = raw.clone();
        p.apply(&mut pre.view_mut(), Some(shape)).unwrap();
        let fill = blank.row(0).to_vec();
        jitter_filled(&mut pre.view_mut(), shape, 2, &fill, &mut Rng::new(4));
        assert_eq!(pre, jittered_raw);
        assert_ne!(pre, {
            let mut unshifted = raw.clone();
            p.apply(&mut unshifted.view_mut(), Some(shape)).unwrap();
            unshifted
        });
    }

    #[test]
    fn class_filter_and_validation_are_deterministic() {
        let ds = Dataset {
            name: "t".into(),
            features: Array2::from_shape_fn((20, 2), |(i, j)| (i * 2 + j) as f32),
            labels: Some((0..20).map(|i| i % 4).collect()),
            index: (0..20).collect(),
            classes: 4,
            image: None,
        };
        let f = ClassFilter {
            only: None,
            exclude: vec![3],
        };
        let kept = ds.clone().filter_classes(&f).unwrap();
        assert_eq!(kept.len(), 15);
        assert!(kept.labels.as_ref().unwrap().iter().all(|&l| l != 3));
        let bad = ClassFilter {
            only: Some(vec![7]),
            exclude: vec![],
        };
        let e = ds.clone().filter_classes(&bad).unwrap_err().to_string();
        assert_eq!(
            e,
            "--only-classes: class 7 does not exist in the data t, which has 4 classes (0 to 3); \
             name classes below 4"
        );
        let bad = ClassFilter {
            only: None,
            exclude: vec![4],
        };
        let e = ds.clone().filter_classes(&bad).unwrap_err().to_string();
        assert!(
            e.starts_with("--exclude-classes: class 4 does not exist"),
            "{e}"
        );
        let (a, v) = ds.split_validation(5).unwrap();
        let (a2, v2) = ds.split_validation(5).unwrap();
        assert_eq!(v.index, v2.index);
        assert_eq!(a.index, a2.index);
        assert_eq!(a.len() + v.len(), 20);
        assert!(v.index.iter().all(|i| !a.index.contains(i)));
        let _ = array![1];
    }
}

/// The rows a stage works on: a source, a split, the first `limit` rows, and a class filter.
/// Every stage selects its data this way, so the same flags mean the same rows everywhere.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Selection {
    /// A `--data` argument (see [`DataSource::parse`]).
    pub data: String,
    pub split: Split,
    pub limit: Option<usize>,
    #[serde(default)]
    pub classes: ClassFilter,
}

impl Selection {
    /// Loads the split, keeps the first `limit` rows, then applies the class filter.
    pub fn load(&self) -> Result<Dataset> {
        let source = DataSource::parse(&self.data)?;
        let mut ds = source.load(self.split)?;
        if let Some(n) = self.limit {
            if n == 0 {
                return Err(CoreError::invalid(
                    "--limit 0 selects no rows; give a positive number",
                ));
            }
            ds = ds.limit(n);
        }
        ds.filter_classes(&self.classes)
    }

    /// The split the rows come from as outputs label it: `train` or `test`, or `all` when `data`
    /// is a single file (it has no splits: every `--split` reads all its rows).
    pub fn split_label(&self) -> String {
        if self.is_single_file() {
            "all".to_string()
        } else {
            self.split.to_string()
        }
    }

    /// Whether `data` is one data file rather than a folder of splits or generated data.
    pub fn is_single_file(&self) -> bool {
        DataSource::parse(&self.data).is_ok_and(|s| s.single_file().is_some())
    }

    /// Where the rows come from, in words: `the test split of DATA`, or for a single file `all
    /// rows of FILE (one file: it has no separate test split)`.
    pub fn rows_origin(&self) -> String {
        if self.is_single_file() {
            format!(
                "all rows of {} (one file: it has no separate test split)",
                self.data
            )
        } else {
            format!("the {} split of {}", self.split, self.data)
        }
    }

    /// [`Selection::describe`] with `split=all` for a single file, whose rows are all read
    /// whatever the split.
    pub fn describe_rows(&self) -> String {
        let described = self.describe();
        if self.is_single_file() {
            described.replacen(&format!("split={}", self.split), "split=all", 1)
        } else {
            described
        }
    }

    /// A description of the transform, for outputs' metadata.
    pub fn describe(&self) -> String {
        let mut s = format!("split={}", self.split);
        if let Some(n) = self.limit {
            s.push_str(&format!(", limit={n}"));
        }
        if !self.classes.is_empty() {
            s.push_str(&format!(", {}", self.classes));
        }
        s
    }
}
