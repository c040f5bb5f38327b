//! A synthetic data set with a known two-level class hierarchy, for checking that clustering
//! recovers the groups an ensemble confuses, and that specialists trained on those groups help.
//!
//! Written `synthetic:classes=100,groups=10,dim=64,seed=1[,train=N,test=M,spread=S,separation=G]`.
//! In an unsquashed space of `dim` dimensions, with unit noise:
//!
//! - each group has a centre drawn from `N(0, (separation² / dim) I)`, so a group centre lies
//!   about `separation` from the origin whatever `dim` is, and two group centres about
//!   `separation · √2` apart;
//! - each class has a centre drawn around its group's centre from `N(0, (spread² / dim) I)`, so two
//!   classes of one group lie about `spread · √2` apart;
//! - each example is its class centre plus `N(0, I)` noise.
//!
//! The defaults (`separation = 8`, `spread = 2`) put classes of one group about 2.8 noise units
//! apart, which a classifier confuses often, and groups about 11 units apart, which it almost
//! never confuses. Every value `u` is squashed into `(0, 1)` by the logistic map
//! `x = 1 / (1 + exp(-u / σ))`, where `σ = √(1 + (spread² + separation²) / dim)` is the standard
//! deviation of `u` over the whole data set: monotone, so no class structure is lost, and the
//! values spread over most of `(0, 1)`.
//!
//! Classes are assigned to groups by a seeded permutation (class `perm[i]` joins group
//! `i mod groups`), so group sizes differ by at most one and the classes of a group are not
//! neighbours in numbering. Row `r` of either split has label `r mod classes`, so the first `n` rows
//! cover the classes evenly. The class and group centres come from one stream of `seed`; the train
//! and test examples from two others, so the splits are independent draws of the same classes.

use super::{Dataset, Split};
use distill_core::rng::Rng;
use distill_core::{CoreError, Result};
use ndarray::Array2;

/// The most values (f32) a synthetic data set may hold, rows of both splits and the class and
/// group centres together: 2³⁰, 4 GiB. A larger request is refused before anything is allocated.
pub const MAX_SYNTHETIC_VALUES: usize = 1 << 30;

/// The parameters of a synthetic data set; see the module documentation.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SyntheticSpec {
    pub classes: usize,
    pub groups: usize,
    pub dim: usize,
    pub seed: u64,
    /// Rows of the train split (default 50 per class).
    pub train: usize,
    /// Rows of the test split (default 20 per class).
    pub test: usize,
    /// Typical distance of a class centre from its group centre, in noise units.
    pub spread: f32,
    /// Typical distance of a group centre from the origin, in noise units.
    pub separation: f32,
}

const STREAM_CENTRES: u64 = 1;
const STREAM_TRAIN: u64 = 2;
const STREAM_TEST: u64 = 3;
const STREAM_GROUPS: u64 = 4;

impl Default for SyntheticSpec {
    fn default() -> Self {
        SyntheticSpec {
            classes: 100,
            groups: 10,
            dim: 64,
            seed: 1,
            train: 5000,
            test: 2000,
            spread: 2.0,
            separation: 8.0,
        }
    }
}

impl SyntheticSpec {
    /// Parses the part after `synthetic:`, e.g. `classes=40,groups=8,dim=32,seed=3`. Unnamed
    /// fields take their defaults; `train` and `test` default to 50 and 20 rows per class.
    pub fn parse(text: &str) -> Result<Self> {
        let mut spec = SyntheticSpec::default();
        let (mut train, mut test) = (None, None);
        let usage = "write e.g. synthetic:classes=100,groups=10,dim=64,seed=1 (optional: train=N, \
                     test=M, spread=S, separation=G)";
        let mut seen: Vec<&str> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| {
                CoreError::invalid(format!(
                    "synthetic data: '{part}' is not key=value; {usage}"
                ))
            })?;
            if seen.contains(&key.trim()) {
                return Err(CoreError::invalid(format!(
                    "synthetic data: {} is given twice; give each field once; {usage}",
                    key.trim()
                )));
            }
            seen.push(key.trim());
            let bad = || {
                CoreError::invalid(format!(
                    "synthetic data: '{value}' is not a valid value for {key}; {usage}"
                ))
            };
            let int = || value.trim().parse::<usize>().map_err(|_| bad());
            let real = || {
                value
                    .trim()
                    .parse::<f32>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(bad)
            };
            match key.trim() {
                "classes" => spec.classes = int()?,
                "groups" => spec.groups = int()?,
                "dim" => spec.dim = int()?,
                "seed" => spec.seed = value.trim().parse::<u64>().map_err(|_| bad())?,
                "train" => train = Some(int()?),
                "test" => test = Some(int()?),
                "spread" => spec.spread = real()?,
                "separation" => spec.separation = real()?,
                other => {
                    return Err(CoreError::invalid(format!(
                        "synthetic data: unknown field '{other}'; {usage}"
                    )));
                }
            }
        }
        spec.train = train.unwrap_or(spec.classes.saturating_mul(50));
        spec.test = test.unwrap_or(spec.classes.saturating_mul(20));
        spec.validate()?;
        Ok(spec)
    }

    fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(CoreError::invalid(format!("synthetic data: {m}")));
        if self.classes < 2 {
            return fail(format!("classes={} must be at least 2", self.classes));
        }
        if self.groups == 0 || self.groups > self.classes {
            return fail(format!(
                "groups={} must be between 1 and the number of classes ({})",
                self.groups, self.classes
            ));
        }
        if self.dim == 0 {
            return fail("dim must be at least 1".into());
        }
        if self.train == 0 || self.test == 0 {
            return fail("train and test must be at least 1 row".into());
        }
        let values = self
            .train
            .checked_add(self.test)
            .and_then(|rows| rows.checked_add(self.classes + self.groups))
            .and_then(|rows| rows.checked_mul(self.dim));
        if values.is_none_or(|v| v > MAX_SYNTHETIC_VALUES) {
            return fail(format!(
                "classes={}, dim={}, train={}, test={} make more than {MAX_SYNTHETIC_VALUES} \
                 values (4 GiB); use fewer rows or dimensions",
                self.classes, self.dim, self.train, self.test
            ));
        }
        Ok(())
    }

    /// The canonical argument, with every field spelled out (recorded in outputs' metadata and
    /// accepted back by [`SyntheticSpec::parse`]).
    pub fn describe(&self) -> String {
        format!(
            "synthetic:classes={},groups={},dim={},seed={},train={},test={},spread={},separation={}",
            self.classes,
            self.groups,
            self.dim,
            self.seed,
            self.train,
            self.test,
            self.spread,
            self.separation
        )
    }

    /// The true group of every class.
    pub fn groups_of(&self) -> Vec<usize> {
        let perm = Rng::derive(self.seed, STREAM_GROUPS).permutation(self.classes);
        let mut group = vec![0; self.classes];
        for (i, &class) in perm.iter().enumerate() {
            group[class] = i % self.groups;
        }
        group
    }

    /// The true group of `class` (`class < classes`).
    pub fn group_of(&self, class: usize) -> Option<usize> {
        self.groups_of().get(class).copied()
    }

    /// `σ`, the scale of the logistic squashing map (see the module documentation).
    pub fn squash_scale(&self) -> f32 {
        (1.0 + (self.spread.powi(2) + self.separation.powi(2)) / self.dim as f32).sqrt()
    }

    /// Class centres `[classes, dim]` in the unsquashed space.
    fn class_centres(&self) -> Array2<f32> {
        let mut rng = Rng::derive(self.seed, STREAM_CENTRES);
        let d = self.dim as f32;
        let g_scale = self.separation / d.sqrt();
        let c_scale = self.spread / d.sqrt();
        let group_centres =
            Array2::from_shape_simple_fn((self.groups, self.dim), || rng.normal() * g_scale);
        let groups = self.groups_of();
        let mut centres = Array2::zeros((self.classes, self.dim));
        for (class, mut row) in centres.rows_mut().into_iter().enumerate() {
            for (v, &g) in row.iter_mut().zip(group_centres.row(groups[class])) {
                *v = g + rng.normal() * c_scale;
            }
        }
        centres
    }

    /// Generates a whole split.
    pub fn load(&self, split: Split) -> Result<Dataset> {
        self.validate()?;
        let (rows, stream) = match split {
            Split::Train => (self.train, STREAM_TRAIN),
            Split::Test => (self.test, STREAM_TEST),
        };
        let centres = self.class_centres();
        let mut rng = Rng::derive(self.seed, stream);
        let labels: Vec<u32> = (0..rows).map(|r| (r % self.classes) as u32).collect();
        let scale = self.squash_scale();
        let mut features = Array2::zeros((rows, self.dim));
        for (mut row, &label) in features.rows_mut().into_iter().zip(&labels) {
            for (v, &c) in row.iter_mut().zip(centres.row(label as usize)) {
                let u = c + rng.normal();
                *v = 1.0 / (1.0 + (-u / scale).exp());
            }
        }
        Ok(Dataset {
            name: format!("{}:{split}", self.describe()),
            features,
            labels: Some(labels),
            index: (0..rows as u64).collect(),
            classes: self.classes,
            image: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_defaults_and_roundtrip() {
        let s = SyntheticSpec::parse("classes=12,groups=3,dim=5,seed=9").unwrap();
        assert_eq!((s.classes, s.groups, s.dim, s.seed), (12, 3, 5, 9));
        assert_eq!((s.train, s.test), (600, 240));
        let back = s.describe();
        let again = SyntheticSpec::parse(back.strip_prefix("synthetic:").unwrap()).unwrap();
        assert_eq!(s, again);
        for bad in [
            "classes=1",
            "groups=0",
            "classes=4,groups=5",
            "dim=0",
            "colour=3",
            "seed",
        ] {
            let e = SyntheticSpec::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("synthetic data:"), "{bad}: {e}");
        }
    }

    #[test]
    fn deterministic_balanced_and_in_unit_range() {
        let s = SyntheticSpec::parse("classes=10,groups=3,dim=8,seed=4,train=100,test=30").unwrap();
        let a = s.load(Split::Train).unwrap();
        let b = s.load(Split::Train).unwrap();
        assert_eq!(a.features, b.features);
        assert_eq!(a.len(), 100);
        assert!(a.features.iter().all(|&v| (0.0..=1.0).contains(&v)));
        let t = s.load(Split::Test).unwrap();
        assert_eq!(t.len(), 30);
        assert_ne!(a.features.row(0), t.features.row(0));
        let groups = s.groups_of();
        let mut sizes = [0; 3];
        for &g in &groups {
            sizes[g] += 1;
        }
        assert_eq!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap(), 1);
        assert_eq!(s.group_of(7), Some(groups[7]));
        assert_eq!(s.group_of(10), None);
        let other = SyntheticSpec { seed: 5, ..s };
        assert_ne!(other.load(Split::Train).unwrap().features, a.features);
    }

    /// Nearest-class-mean on the train split confuses classes within a group and (almost) never
    /// across groups, which is what the data set is for.
    #[test]
    fn confusions_stay_within_groups() {
        let s = SyntheticSpec::parse("classes=20,groups=4,dim=32,seed=2").unwrap();
        let train = s.load(Split::Train).unwrap();
        let test = s.load(Split::Test).unwrap();
        let labels = train.labels.as_ref().unwrap();
        let mut means = Array2::<f32>::zeros((20, 32));
        for (row, &l) in train.features.rows().into_iter().zip(labels) {
            let mut m = means.row_mut(l as usize);
            m += &row;
        }
        means /= 50.0;
        let groups = s.groups_of();
        let (mut within, mut across, mut right) = (0, 0, 0);
        for (row, &l) in test
            .features
            .rows()
            .into_iter()
            .zip(test.labels.as_ref().unwrap())
        {
            let best = (0..20)
                .min_by(|&a, &b| {
                    let da = (&means.row(a) - &row).mapv(|v| v * v).sum();
                    let db = (&means.row(b) - &row).mapv(|v| v * v).sum();
                    da.total_cmp(&db)
                })
                .unwrap();
            if best == l as usize {
                right += 1;
            } else if groups[best] == groups[l as usize] {
                within += 1;
            } else {
                across += 1;
            }
        }
        assert!(within >= 80, "within-group errors {within}");
        assert!(across <= 2, "across-group errors {across}");
        assert!(right >= 200, "correct {right}");
    }
}
