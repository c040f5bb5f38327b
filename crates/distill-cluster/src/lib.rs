//! Finding the class subsets for specialists (docs/method.md §5): the classes an ensemble confuses are
//! grouped by K-means on the columns of a class-by-class matrix of its predictions, either the
//! second-moment matrix of its predicted distributions (no labels needed) or its symmetrised confusion
//! matrix. The result is `specialists.yaml` ([`SpecialistSet`]) and a heatmap PNG.

pub mod ari;
pub mod cli;
pub mod heatmap;
pub mod kmeans;
pub mod matrix;
mod report;
pub mod specialists;
pub mod subsets;

pub use ari::ari;
pub use matrix::Method;
pub use report::Report;
pub use specialists::{SpecialistSet, Subset, read_specialists, write_specialists};
pub use subsets::SizeBounds;

use distill_core::CoreError;
use distill_core::math::{Combine, argmax_rows, ensemble_probs};
use distill_data::{ClassFilter, DataSource};
use distill_store::{SoftTargets, read_store};
use kmeans::{KMeansOptions, kmeans, squared_distances};
use ndarray::Array2;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Everything that can go wrong; each variant names the file or flag at fault.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A flag value, or a combination of them, that cannot work.
    #[error("{0}")]
    Invalid(String),
    /// A store this stage cannot cluster (one class, no labels, too few rows).
    #[error("{path}: {message}")]
    Store { path: PathBuf, message: String },
    /// A `specialists.yaml` that cannot be read or written.
    #[error("{path}: {message}")]
    Specialists { path: PathBuf, message: String },
    #[error("{path}: cannot encode the heatmap: {message}")]
    Png { path: PathBuf, message: String },
}

impl ClusterError {
    /// Whether the error comes from the user's input (flags, files); binaries exit with 2.
    pub fn is_user_error(&self) -> bool {
        match self {
            ClusterError::Core(e) => e.is_user_error(),
            ClusterError::Png { .. } => false,
            _ => true,
        }
    }
}

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

/// Settings of one clustering run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// The soft-target store (a file or a folder of parts).
    pub soft_targets: PathBuf,
    /// K: how many subsets (`--count`).
    pub count: usize,
    /// Where `specialists.yaml` goes.
    pub out: PathBuf,
    /// Where the heatmap goes; `None` puts it beside `out` as `<out stem>.png`.
    pub heatmap: Option<PathBuf>,
    pub method: Method,
    /// Temperature of the ensemble's distributions.
    pub temperature: f32,
    pub combine: Combine,
    /// The most subsets one class may belong to (1: no overlap).
    pub overlap: usize,
    /// How much farther than its own centroid another subset's centroid may be for a class to join
    /// it (see [`subsets::overlap`]).
    pub overlap_factor: f64,
    pub bounds: SizeBounds,
    /// A class whose off-diagonal mass is below this share of the mean class's is left to the
    /// generalist.
    pub min_confusion: f64,
    pub seed: u64,
    pub restarts: usize,
    /// Mini-batch K-means instead of Lloyd's.
    pub online: bool,
    /// Cluster only the store's rows of the first `limit` rows of its split (`None`: all).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Cluster only the store's rows of these classes (by label).
    #[serde(default)]
    pub classes: ClassFilter,
}

impl Config {
    /// A configuration with the defaults of the command line.
    pub fn new(soft_targets: PathBuf, count: usize, out: PathBuf) -> Self {
        Config {
            soft_targets,
            count,
            out,
            heatmap: None,
            method: Method::SecondMoment,
            temperature: 1.0,
            combine: Combine::Arithmetic,
            overlap: 1,
            overlap_factor: 1.5,
            bounds: SizeBounds { min: 1, max: None },
            min_confusion: 0.01,
            seed: 1,
            restarts: 10,
            online: false,
            limit: None,
            classes: ClassFilter::default(),
        }
    }

    /// The heatmap's path.
    pub fn heatmap_path(&self) -> PathBuf {
        self.heatmap
            .clone()
            .unwrap_or_else(|| self.out.with_extension("png"))
    }

    /// Checks the values that need no file (also run by `distill run` before any stage starts).
    pub fn check_values(&self) -> Result<()> {
        let bad = |m: String| Err(ClusterError::Invalid(m));
        if self.count == 0 {
            return bad("--count 0: ask for at least one subset".into());
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad(format!(
                "--temperature {} must be above 0",
                self.temperature
            ));
        }
        if self.overlap == 0 {
            return bad(
                "--overlap 0: a class belongs to at least its own subset; give 1 or more".into(),
            );
        }
        if !(self.overlap_factor.is_finite() && self.overlap_factor >= 1.0) {
            return bad(format!(
                "--overlap-factor {} must be 1 or more",
                self.overlap_factor
            ));
        }
        if !(0.0..1.0).contains(&self.min_confusion) {
            return bad(format!(
                "--min-confusion {} must be in [0, 1)",
                self.min_confusion
            ));
        }
        if self.restarts == 0 {
            return bad("--restarts 0: K-means needs at least one run".into());
        }
        self.bounds.validate()?;
        Ok(())
    }

    /// [`Config::check_values`], then the output paths (their folders exist, no input is an output).
    fn validate(&self) -> Result<()> {
        self.check_values()?;
        let bad = |message: String| Err(ClusterError::Invalid(message));
        let heatmap = self.heatmap_path();
        if heatmap == self.out {
            return bad(format!(
                "{}: the heatmap and the subsets would be the same file; give --heatmap another name",
                self.out.display()
            ));
        }
        distill_core::input::require_exists(
            "--soft-targets",
            &self.soft_targets,
            "the teach stage (distill-teach --out)",
        )?;
        let inputs = [("--soft-targets", self.soft_targets.as_path())];
        distill_core::atomic::check_output("--out", &self.out, &inputs)?;
        distill_core::atomic::check_output("--heatmap", &heatmap, &inputs)?;
        Ok(())
    }
}

/// Names of the classes of the data set a store was made from, when it has them (see
/// [`DataSource::class_names`]). `dataset` is the store's `dataset` field, with or without a
/// `:split` suffix.
pub fn class_names(dataset: &str) -> Option<Vec<String>> {
    source_of(dataset)?.class_names()
}

/// The source a store's `dataset` field names: `SOURCE:split` read without its split first (an
/// `images:DIR:train` would otherwise parse as the folder `DIR:train`), else the field whole.
fn source_of(dataset: &str) -> Option<DataSource> {
    dataset
        .rsplit_once(':')
        .filter(|(_, split)| matches!(*split, "train" | "test"))
        .and_then(|(head, _)| DataSource::parse(head).ok())
        .or_else(|| DataSource::parse(dataset).ok())
}

/// The true group of every class, when the store was made from a synthetic data set.
pub fn true_groups(dataset: &str) -> Option<Vec<usize>> {
    match source_of(dataset)? {
        DataSource::Synthetic(spec) => Some(spec.groups_of()),
        _ => None,
    }
}

/// The class-by-class matrix a store's ensemble gives under `config`'s method: the co-prediction
/// matrix `E[p pᵀ]` (the covariance plus `μ μᵀ`, see [`matrix::co_prediction`]) of its
/// distributions at the configured temperature, or its symmetrised, row-normalised confusion
/// matrix.
pub fn class_matrix(store: &SoftTargets, config: &Config) -> Result<Array2<f64>> {
    let path = &config.soft_targets;
    let probs = ensemble_probs(&store.views(), config.temperature, config.combine)?;
    match config.method {
        Method::SecondMoment => {
            if store.len() < 2 {
                return Err(ClusterError::Store {
                    path: path.clone(),
                    message: format!(
                        "the second-moment matrix needs at least 2 rows; the store has {}",
                        store.len()
                    ),
                });
            }
            Ok(matrix::co_prediction(probs.view()))
        }
        Method::Confusion => {
            let labels = store.complete_labels().ok_or_else(|| ClusterError::Store {
                path: path.clone(),
                message: "--method confusion needs a label for every row, and this store has \
                          rows without one; use --method second-moment, which needs no labels"
                    .into(),
            })?;
            if let Some(&l) = labels.iter().find(|&&l| l as usize >= store.classes()) {
                return Err(ClusterError::Store {
                    path: path.clone(),
                    message: format!("label {l} is not below the class count {}", store.classes()),
                });
            }
            let predicted = argmax_rows(probs.view());
            Ok(matrix::confusion(&predicted, &labels, store.classes()))
        }
    }
}

/// Refuses a store whose rows another stage would refuse: an example `index` that appears twice,
/// or a label not below the class count (its matrix would be indexed out of bounds or grow with
/// the label).
pub fn check_rows(store: &SoftTargets, path: &std::path::Path) -> Result<()> {
    let bad = |message: String| ClusterError::Store {
        path: path.to_path_buf(),
        message,
    };
    let mut seen = std::collections::HashMap::with_capacity(store.len());
    for (row, &index) in store.index.iter().enumerate() {
        if let Some(first) = seen.insert(index, row) {
            return Err(bad(format!(
                "example {index} appears twice (store rows {first} and {row}); a store holds each \
                 example once: make it again with distill-teach"
            )));
        }
    }
    let classes = store.classes();
    if let Some((row, label)) = store
        .labels
        .iter()
        .enumerate()
        .find_map(|(r, l)| l.filter(|&l| l as usize >= classes).map(|l| (r, l)))
    {
        return Err(bad(format!(
            "example {} has label {label}, but the store has {classes} classes (labels 0 to {}); \
             the store is damaged or was made from other data: make it again with distill-teach",
            store.index[row],
            classes.saturating_sub(1)
        )));
    }
    Ok(())
}

/// Reads the store, clusters its classes and writes `specialists.yaml` and the heatmap.
/// The store's rows `--limit` and the class filters keep: those of the first `limit` rows of the
/// split (by the row index the store records), whose label the filter keeps. Class filters need a
/// label on every row.
fn select_rows(store: SoftTargets, config: &Config) -> Result<SoftTargets> {
    if config.limit.is_none() && config.classes.is_empty() {
        return Ok(store);
    }
    config.classes.check_against(
        store.classes(),
        &format!("the store {}", config.soft_targets.display()),
    )?;
    let mut rows = Vec::with_capacity(store.len());
    for (r, (&index, label)) in store.index.iter().zip(&store.labels).enumerate() {
        if config.limit.is_some_and(|n| index >= n as u64) {
            continue;
        }
        if !config.classes.is_empty() {
            let Some(label) = label else {
                return Err(ClusterError::Store {
                    path: config.soft_targets.clone(),
                    message: format!(
                        "row {index} has no label, and --only-classes/--exclude-classes choose rows \
                         by label; leave the class filters out for a store without labels"
                    ),
                });
            };
            if !config.classes.keeps(*label) {
                continue;
            }
        }
        rows.push(r);
    }
    Ok(store.select_rows(&rows))
}

pub fn run(config: &Config, progress: &distill_progress::Progress) -> Result<Report> {
    config.validate()?;
    let started = Instant::now();
    let path = &config.soft_targets;
    let store = read_store(path)?;
    check_rows(&store, path)?;
    let store = select_rows(store, config)?;
    let mut phases = vec![("read".to_string(), started.elapsed().as_secs_f64())];
    let mut lap = Instant::now();
    let mut phase = |name: &str| {
        phases.push((name.to_string(), lap.elapsed().as_secs_f64()));
        lap = Instant::now();
    };
    let store_error = |message: String| ClusterError::Store {
        path: path.clone(),
        message,
    };
    let classes = store.classes();
    if store.is_empty() {
        return Err(store_error("the store has no rows".into()));
    }
    if classes < 2 {
        return Err(store_error(format!(
            "the store has {classes} class; clustering needs at least 2 classes to confuse"
        )));
    }
    if config.count > classes {
        return Err(ClusterError::Invalid(format!(
            "--count {} is more than the {classes} classes of {}",
            config.count,
            path.display()
        )));
    }
    let m = class_matrix(&store, config)?;
    phase("matrix");

    let mass = matrix::off_diagonal_mass(m.view());
    let total: f64 = mass.iter().sum();
    if total <= 0.0 {
        return Err(store_error(format!(
            "the ensemble confuses no two classes at all (the {} matrix has no positive \
             off-diagonal entry); there is nothing to cluster{}",
            config.method,
            match config.method {
                Method::Confusion => ": try --method second-moment, which sees soft confusions",
                Method::SecondMoment => ": try a higher --temperature",
            }
        )));
    }
    let threshold = config.min_confusion * total / classes as f64;
    let (clustered, generalist): (Vec<usize>, Vec<usize>) =
        (0..classes).partition(|&c| mass[c] >= threshold && mass[c] > 0.0);
    let k = config.count;
    if k > clustered.len() {
        return Err(ClusterError::Invalid(format!(
            "--count {k}: only {} of the {classes} classes are confused with others ({} \
             are left to the generalist); ask for at most {} subsets, or lower --min-confusion",
            clustered.len(),
            generalist.len(),
            clustered.len()
        )));
    }
    config.bounds.check(clustered.len(), k)?;

    let features = matrix::features(m.view(), &clustered);
    let restarts = progress.task("k-means", config.restarts as u64, "restarts");
    let found = kmeans(
        features.view(),
        &KMeansOptions::new(k, config.restarts, config.seed, config.online),
        &|| restarts.inc(1),
    );
    restarts.finish();
    phase("k-means");
    let d2 = squared_distances(features.view(), found.centroids.view());
    let mut assignment = found.assignment.clone();
    subsets::rebalance(&mut assignment, d2.view(), config.bounds);
    let extra = subsets::overlap(
        &assignment,
        d2.view(),
        config.overlap,
        config.overlap_factor,
        config.bounds.max,
    );

    let mut groups: Vec<(Vec<usize>, Vec<usize>)> = (0..k)
        .map(|c| {
            let own: Vec<usize> = (0..clustered.len())
                .filter(|&i| assignment[i] == c)
                .map(|i| clustered[i])
                .collect();
            let joined: Vec<usize> = extra[c].iter().map(|&i| clustered[i]).collect();
            (own, joined)
        })
        .collect();
    groups.sort_by_key(|(own, _)| own.first().copied().unwrap_or(usize::MAX));

    let names = class_names(&store.meta.dataset).filter(|n| n.len() == classes);
    let mut covered = Array2::<bool>::from_elem((classes, classes), false);
    let subsets: Vec<Subset> = groups
        .iter()
        .enumerate()
        .map(|(id, (own, joined))| {
            let mut members: Vec<usize> = own.iter().chain(joined).copied().collect();
            members.sort_unstable();
            for &i in &members {
                for &j in &members {
                    covered[[i, j]] = true;
                }
            }
            Subset {
                id,
                classes: members.iter().map(|&c| c as u32).collect(),
                names: names
                    .as_ref()
                    .map(|n| members.iter().map(|&c| n[c].clone()).collect()),
                size: members.len(),
                captured: matrix::mass_within(m.view(), &members) / total,
                joined: joined.iter().map(|&c| c as u32).collect(),
            }
        })
        .collect();
    let covered_mass: f64 = m
        .indexed_iter()
        .filter(|&((i, j), &v)| i != j && v > 0.0 && covered[[i, j]])
        .map(|(_, &v)| v)
        .sum();

    let ari_vs_true_groups = true_groups(&store.meta.dataset)
        .filter(|g| g.len() == classes)
        .map(|truth| {
            let mut found = vec![0usize; classes];
            for (id, (own, _)) in groups.iter().enumerate() {
                for &c in own {
                    found[c] = id;
                }
            }
            for (n, &c) in generalist.iter().enumerate() {
                found[c] = k + n;
            }
            ari(&found, &truth)
        });

    let set = SpecialistSet {
        version: specialists::SPECIALISTS_VERSION,
        store: path.display().to_string(),
        dataset: store.meta.dataset.clone(),
        method: config.method,
        temperature: config.temperature,
        combine: config.combine,
        specialists: k,
        seed: config.seed,
        classes,
        rows: store.len(),
        overlap: config.overlap,
        captured: covered_mass / total,
        generalist_only: generalist.iter().map(|&c| c as u32).collect(),
        subsets,
        ari_vs_true_groups,
    };

    let order: Vec<usize> = groups
        .iter()
        .flat_map(|(own, _)| own.iter().copied())
        .chain(generalist.iter().copied())
        .collect();
    let blocks: Vec<usize> = groups.iter().map(|(own, _)| own.len()).collect();
    let heatmap = config.heatmap_path();
    let png = heatmap::render(m.view(), &order, &blocks).map_err(|message| ClusterError::Png {
        path: heatmap.clone(),
        message,
    })?;
    distill_core::atomic::write_bytes(&heatmap, &png)?;
    write_specialists(&config.out, &set)?;
    phase("subsets and outputs");
    Ok(Report {
        set,
        out: config.out.clone(),
        heatmap,
        teachers: store.logits.len(),
        seconds: started.elapsed().as_secs_f64(),
        phases,
        inertia: found.inertia,
    })
}
