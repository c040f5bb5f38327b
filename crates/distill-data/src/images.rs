//! A folder of images, one sub-folder per class: `images:DIR[,size=HxW][,channels=1|3]`, or just
//! `DIR` when it holds class folders of images (or `train/` and `test/` folders of them).
//!
//! - **Splits**: when `DIR` holds a `train` or a `test` folder, those are the two splits, each
//!   with one folder per class; otherwise `DIR`'s own sub-folders are the classes of one set,
//!   read whole for every split (as one Parquet file is; see [`crate::DataSource::single_file`]).
//! - **Classes** are the sorted names of the class folders (of `train/` when there are splits; a
//!   class folder of `test/` must be one of them, and may be missing); class `i` is the `i`-th
//!   name, and the names are kept as the data set's class list.
//! - **Files** read: `.png`, `.jpg` and `.jpeg` (any case), in sorted path order; names starting
//!   with `.` (such as `.DS_Store`) are skipped; any other file or a folder inside a class folder
//!   is refused by name.
//! - **Pixels** are scaled to `[0, 1]` (8-bit by 1/255, 16-bit by 1/65535); rows are channel-major
//!   (`C,H,W`). Grey images have 1 channel and colour images 3; the alpha channel of grey+alpha
//!   and RGBA images is dropped. Every image must have the same channel count (that of the first
//!   image in sorted order, or `channels=`); nothing is converted between grey and colour.
//! - **Size**: without `size=`, every image must have the first image's size; with `size=HxW`
//!   each image of another size is resized to it by bilinear interpolation (the `image` crate's
//!   triangle filter).

use crate::{Dataset, ImageShape, Split};
use distill_core::{CoreError, Result};
use image::{DynamicImage, imageops::FilterType};
use ndarray::Array2;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// The file extensions read, lower-case.
pub const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// A folder of class folders of images, with its options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagesSpec {
    pub dir: PathBuf,
    /// Resize every image to this `(height, width)`.
    pub size: Option<(usize, usize)>,
    /// The channel count every image must have (1 or 3).
    pub channels: Option<usize>,
}

const USAGE: &str = "write images:DIR[,size=HxW][,channels=1|3], e.g. images:photos,size=32x32";

impl ImagesSpec {
    /// Parses the part after `images:`.
    pub fn parse(text: &str) -> Result<Self> {
        let mut parts = text.split(',');
        let dir = parts.next().unwrap_or_default().trim();
        if dir.is_empty() {
            return Err(CoreError::invalid(format!(
                "images data: no folder given; {USAGE}"
            )));
        }
        let mut spec = ImagesSpec {
            dir: PathBuf::from(dir),
            size: None,
            channels: None,
        };
        let rest: Vec<&str> = parts.collect();
        for (key, value) in crate::options("images", &rest.join(","), USAGE)? {
            let bad = |why: &str| {
                CoreError::invalid(format!("images data: {key}={value} {why}; {USAGE}"))
            };
            match key.as_str() {
                "size" => {
                    let shape = ImageShape::parse(&value)
                        .ok()
                        .filter(|s| s.channels == 1)
                        .ok_or_else(|| bad("is not a size HxW of positive numbers"))?;
                    spec.size = Some((shape.height, shape.width));
                }
                "channels" => match value.as_str() {
                    "1" => spec.channels = Some(1),
                    "3" => spec.channels = Some(3),
                    _ => return Err(bad("is not 1 (grey) or 3 (colour)")),
                },
                _ => {
                    return Err(CoreError::invalid(format!(
                        "images data: unknown field '{key}'; {USAGE}"
                    )));
                }
            }
        }
        Ok(spec)
    }

    /// A folder given as plain `--data DIR` with no options.
    pub fn folder(dir: PathBuf) -> Self {
        ImagesSpec {
            dir,
            size: None,
            channels: None,
        }
    }

    /// The argument that reads this folder back (accepted by [`crate::DataSource::parse`]).
    pub fn describe(&self) -> String {
        let mut s = format!("images:{}", self.dir.display());
        if let Some((h, w)) = self.size {
            s.push_str(&format!(",size={h}x{w}"));
        }
        if let Some(c) = self.channels {
            s.push_str(&format!(",channels={c}"));
        }
        s
    }

    /// Whether the folder holds `train/` or `test/` split folders.
    pub fn has_splits(&self) -> bool {
        has_splits(&self.dir)
    }

    /// The class folders' sorted names (those of `train/` when the folder has splits).
    pub fn class_names(&self) -> Result<Vec<String>> {
        let root = if self.has_splits() {
            self.dir.join("train")
        } else {
            self.dir.clone()
        };
        let names: Vec<String> = class_folders(&root)?
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        if names.is_empty() {
            return Err(CoreError::format(
                &root,
                format!(
                    "this folder holds no class folders; an image data set is one sub-folder of \
                     images per class ({} files){}",
                    EXTENSIONS.join(", "),
                    if self.has_splits() {
                        ", inside train/ and test/"
                    } else {
                        ""
                    }
                ),
            ));
        }
        Ok(names)
    }

    /// Loads a split: `DIR/train` or `DIR/test` when the folder has splits, else all of `DIR`.
    pub fn load(&self, split: Split) -> Result<Dataset> {
        if !self.dir.is_dir() {
            return Err(CoreError::invalid(format!(
                "images data: {} is not a folder; {USAGE}",
                self.dir.display()
            )));
        }
        let names = self.class_names()?;
        let root = if self.has_splits() {
            let root = self.dir.join(split.to_string());
            if !root.is_dir() {
                return Err(CoreError::format(
                    &root,
                    format!(
                        "no {split} folder: {} has a train/ or test/ folder, so it needs both, \
                         each with one folder per class",
                        self.dir.display()
                    ),
                ));
            }
            root
        } else {
            self.dir.clone()
        };
        let mut files: Vec<(PathBuf, u32)> = Vec::new();
        for (name, folder) in class_folders(&root)? {
            let label = names.binary_search(&name).map_err(|_| {
                CoreError::format(
                    &folder,
                    format!(
                        "class folder '{name}' is not among the training classes ({}); every \
                         class folder of test/ needs one of the same name in train/",
                        names.join(", ")
                    ),
                )
            })?;
            let images = image_files(&folder)?;
            if images.is_empty() {
                return Err(CoreError::format(
                    &folder,
                    format!(
                        "the class folder is empty: it holds no images ({} files); add images \
                         or remove the folder",
                        EXTENSIONS.join(", ")
                    ),
                ));
            }
            files.extend(images.into_iter().map(|p| (p, label as u32)));
        }
        let decoded: Vec<Result<Decoded>> = files
            .par_iter()
            .map(|(path, _)| decode(path, self.size))
            .collect();
        let first = match decoded.first() {
            Some(Ok(d)) => d,
            Some(Err(_)) | None => {
                return Err(decoded
                    .into_iter()
                    .find_map(|d| d.err())
                    .unwrap_or_else(|| {
                        CoreError::format(&root, "no images in the class folders")
                    }));
            }
        };
        let (first_path, _) = &files[0];
        let channels = self.channels.unwrap_or(first.shape.channels);
        let shape = ImageShape::new(channels, first.shape.height, first.shape.width);
        let mut features = Array2::<f32>::zeros((files.len(), shape.values()));
        for (r, ((path, _), d)) in files.iter().zip(decoded).enumerate() {
            let d = d?;
            if d.shape.channels != channels {
                let from = if self.channels.is_some() {
                    "channels= asks for".to_string()
                } else {
                    format!("the first image, {}, has", first_path.display())
                };
                return Err(CoreError::format(
                    path,
                    format!(
                        "this image has {} channel(s) ({}), but {from} {channels}; give every \
                         image the same colour type (grey, or RGB)",
                        d.shape.channels,
                        channel_words(d.shape.channels)
                    ),
                ));
            }
            if d.shape != shape {
                return Err(CoreError::format(
                    path,
                    format!(
                        "this image is {}x{}, but the first image, {}, is {}x{}; give every image \
                         the same size or resize them all with images:{},size=HxW",
                        d.shape.height,
                        d.shape.width,
                        first_path.display(),
                        shape.height,
                        shape.width,
                        self.dir.display()
                    ),
                ));
            }
            features
                .row_mut(r)
                .assign(&ndarray::ArrayView1::from(&d.values));
        }
        Ok(Dataset {
            name: format!("{}:{split}", self.describe()),
            features,
            labels: Some(files.iter().map(|(_, l)| *l).collect()),
            index: (0..files.len() as u64).collect(),
            classes: names.len(),
            image: Some(shape),
        })
    }
}

/// Whether `dir` holds `train/` or `test/` split folders.
fn has_splits(dir: &Path) -> bool {
    dir.join("train").is_dir() || dir.join("test").is_dir()
}

/// Whether `dir` looks like an image data set: it has split folders, or its first sub-folder
/// (sorted) holds an image file.
pub fn looks_like_images(dir: &Path) -> bool {
    if has_splits(dir) {
        return true;
    }
    let Ok(folders) = class_folders(dir) else {
        return false;
    };
    folders
        .first()
        .and_then(|(_, f)| image_files(f).ok())
        .is_some_and(|files| !files.is_empty())
}

fn channel_words(channels: usize) -> &'static str {
    match channels {
        1 => "grey",
        3 => "colour",
        _ => "other",
    }
}

/// The sub-folders of `dir` as `(name, path)`, sorted by name; hidden ones skipped.
fn class_folders(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| CoreError::io(dir, e))? {
        let entry = entry.map_err(|e| CoreError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        out.push((name, entry.path()));
    }
    out.sort();
    Ok(out)
}

/// The image files of a class folder, sorted; anything else but hidden files is refused.
fn image_files(folder: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(folder).map_err(|e| CoreError::io(folder, e))? {
        let entry = entry.map_err(|e| CoreError::io(folder, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let extension = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        if path.is_dir() {
            return Err(CoreError::format(
                &path,
                "a folder inside a class folder; a class folder holds only image files (nested \
                 folders are not read)",
            ));
        }
        if !extension.is_some_and(|e| EXTENSIONS.contains(&e.as_str())) {
            return Err(CoreError::format(
                &path,
                format!(
                    "not an image file: a class folder holds only {} files; move this file out",
                    EXTENSIONS.map(|e| format!(".{e}")).join(", ")
                ),
            ));
        }
        out.push(path);
    }
    out.sort();
    Ok(out)
}

/// One decoded image: its shape and its channel-major values in `[0, 1]`.
struct Decoded {
    shape: ImageShape,
    values: Vec<f32>,
}

/// Decodes `path` (refusing anything but a regular file), drops alpha, resizes to `size` when
/// given and different, and lays the pixels out channel-major.
fn decode(path: &Path, size: Option<(usize, usize)>) -> Result<Decoded> {
    distill_core::input::check_regular("--data", path)?;
    let unreadable = |e: image::ImageError| {
        CoreError::format(
            path,
            format!("cannot read this image ({e}); replace or remove the file"),
        )
    };
    let img = image::ImageReader::open(path)
        .map_err(|e| CoreError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| CoreError::io(path, e))?
        .decode()
        .map_err(unreadable)?;
    let grey = matches!(
        img,
        DynamicImage::ImageLuma8(_)
            | DynamicImage::ImageLumaA8(_)
            | DynamicImage::ImageLuma16(_)
            | DynamicImage::ImageLumaA16(_)
    );
    let (w, h) = (img.width(), img.height());
    let target = size.map(|(h, w)| (w as u32, h as u32));
    let resize = target.filter(|&t| t != (w, h));
    let (channels, values, (w, h)) = if grey {
        let mut buf = img.to_luma32f();
        if let Some((tw, th)) = resize {
            buf = image::imageops::resize(&buf, tw, th, FilterType::Triangle);
        }
        let dims = buf.dimensions();
        (1, buf.into_raw(), dims)
    } else {
        let mut buf = img.to_rgb32f();
        if let Some((tw, th)) = resize {
            buf = image::imageops::resize(&buf, tw, th, FilterType::Triangle);
        }
        let dims = buf.dimensions();
        let plane = (dims.0 * dims.1) as usize;
        let raw = buf.into_raw();
        let mut chw = vec![0.0f32; 3 * plane];
        for (p, px) in raw.chunks_exact(3).enumerate() {
            for c in 0..3 {
                chw[c * plane + p] = px[c];
            }
        }
        (3, chw, dims)
    };
    Ok(Decoded {
        shape: ImageShape::new(channels, h as usize, w as usize),
        values: values.into_iter().map(|v| v.clamp(0.0, 1.0)).collect(),
    })
}
