//! K-means on the rows of a matrix: Lloyd's algorithm from k-means++ seeds with restarts, and an
//! online (mini-batch) variant for thousands of points. Distances to all centroids are computed
//! with one GEMM, `|x|² - 2 x·c + |c|²`.

use distill_core::rng::Rng;
use ndarray::{Array1, Array2, ArrayView2, Axis};

/// The result of a clustering: each row's cluster, the centroids and the inertia (sum of squared
/// distances of the rows to their centroids).
#[derive(Clone, Debug, PartialEq)]
pub struct Clustering {
    pub assignment: Vec<usize>,
    pub centroids: Array2<f64>,
    pub inertia: f64,
}

/// How K-means runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KMeansOptions {
    pub k: usize,
    /// Independent runs from different seeds; the one with the lowest inertia is kept.
    pub restarts: usize,
    pub seed: u64,
    /// Lloyd iterations at most (each run stops earlier when no row changes cluster).
    pub max_iter: usize,
    /// Mini-batch updates instead of Lloyd's full passes.
    pub online: bool,
    /// Rows per mini-batch.
    pub batch: usize,
}

impl KMeansOptions {
    pub fn new(k: usize, restarts: usize, seed: u64, online: bool) -> Self {
        KMeansOptions {
            k,
            restarts,
            seed,
            max_iter: 300,
            online,
            batch: 256,
        }
    }
}

/// Squared distances `[rows, k]` from every row of `x` to every centroid.
pub fn squared_distances(x: ArrayView2<f64>, centroids: ArrayView2<f64>) -> Array2<f64> {
    let xx: Array1<f64> = x.rows().into_iter().map(|r| r.dot(&r)).collect();
    let cc: Array1<f64> = centroids.rows().into_iter().map(|r| r.dot(&r)).collect();
    let mut d = x.dot(&centroids.t());
    for (mut row, &xn) in d.rows_mut().into_iter().zip(xx.iter()) {
        for (v, &cn) in row.iter_mut().zip(cc.iter()) {
            *v = (xn - 2.0 * *v + cn).max(0.0);
        }
    }
    d
}

fn nearest(d: ArrayView2<f64>) -> (Vec<usize>, Vec<f64>) {
    d.rows()
        .into_iter()
        .map(|row| {
            let mut best = 0;
            for (c, &v) in row.iter().enumerate() {
                if v < row[best] {
                    best = c;
                }
            }
            (best, row[best])
        })
        .unzip()
}

/// k-means++ seeding: the first centroid uniformly, each next one with probability proportional
/// to the squared distance to the nearest centroid chosen so far.
fn seed_centroids(x: ArrayView2<f64>, k: usize, rng: &mut Rng) -> Array2<f64> {
    let n = x.nrows();
    let mut centroids = Array2::zeros((k, x.ncols()));
    let first = rng.below(n);
    centroids.row_mut(0).assign(&x.row(first));
    let mut closest: Vec<f64> = squared_distances(x, centroids.slice(ndarray::s![..1, ..]))
        .column(0)
        .to_vec();
    for c in 1..k {
        let total: f64 = closest.iter().sum();
        let pick = if total > 0.0 {
            let target = rng.uniform_f64() * total;
            let mut acc = 0.0;
            closest
                .iter()
                .position(|&d| {
                    acc += d;
                    acc > target
                })
                .unwrap_or(n - 1)
        } else {
            rng.below(n)
        };
        centroids.row_mut(c).assign(&x.row(pick));
        let d = squared_distances(x, centroids.slice(ndarray::s![c..c + 1, ..]));
        for (m, &v) in closest.iter_mut().zip(d.column(0)) {
            *m = m.min(v);
        }
    }
    centroids
}

/// Means of the rows of each cluster; a cluster left empty takes the row farthest from its own
/// centroid (which leaves a cluster of at least two rows), so every cluster keeps a member.
fn update_centroids(
    x: ArrayView2<f64>,
    assignment: &mut [usize],
    dist: &[f64],
    centroids: &mut Array2<f64>,
) {
    let k = centroids.nrows();
    let mut counts = vec![0usize; k];
    centroids.fill(0.0);
    for (row, &c) in x.rows().into_iter().zip(assignment.iter()) {
        let mut centroid = centroids.row_mut(c);
        centroid += &row;
        counts[c] += 1;
    }
    let mut order: Vec<usize> = (0..x.nrows()).collect();
    order.sort_by(|&a, &b| dist[b].total_cmp(&dist[a]));
    let mut donors = order.into_iter();
    for c in 0..k {
        if counts[c] > 0 {
            continue;
        }
        for r in donors.by_ref() {
            let from = assignment[r];
            if counts[from] > 1 {
                let row = x.row(r);
                let mut old = centroids.row_mut(from);
                old -= &row;
                counts[from] -= 1;
                assignment[r] = c;
                centroids.row_mut(c).assign(&row);
                counts[c] = 1;
                break;
            }
        }
    }
    for (mut centroid, &n) in centroids.rows_mut().into_iter().zip(&counts) {
        if n > 0 {
            centroid /= n as f64;
        }
    }
}

fn lloyd(x: ArrayView2<f64>, mut centroids: Array2<f64>, max_iter: usize) -> Clustering {
    let mut assignment = vec![usize::MAX; x.nrows()];
    for _ in 0..max_iter {
        let (next, dist) = nearest(squared_distances(x, centroids.view()).view());
        if next == assignment {
            break;
        }
        assignment = next;
        update_centroids(x, &mut assignment, &dist, &mut centroids);
    }
    clustering(x, assignment, centroids)
}

/// Sculley's web-scale K-means: each mini-batch of rows (drawn with replacement) moves its rows'
/// centroids towards them with a per-centroid rate of `1 / (rows seen by that centroid)`; ten
/// passes' worth of rows (at least 50 batches), then one assignment of every row.
fn online(
    x: ArrayView2<f64>,
    mut centroids: Array2<f64>,
    opts: &KMeansOptions,
    rng: &mut Rng,
) -> Clustering {
    let n = x.nrows();
    let batch = opts.batch.clamp(1, n);
    let steps = (10 * n).div_ceil(batch).max(50);
    let mut seen = vec![0usize; centroids.nrows()];
    let mut rows = vec![0usize; batch];
    for _ in 0..steps {
        for r in rows.iter_mut() {
            *r = rng.below(n);
        }
        let xb = x.select(Axis(0), &rows);
        let (assign, _) = nearest(squared_distances(xb.view(), centroids.view()).view());
        for (row, &c) in xb.rows().into_iter().zip(&assign) {
            seen[c] += 1;
            let eta = 1.0 / seen[c] as f64;
            let mut centroid = centroids.row_mut(c);
            centroid.zip_mut_with(&row, |m, &v| *m += eta * (v - *m));
        }
    }
    let (mut assignment, dist) = nearest(squared_distances(x, centroids.view()).view());
    update_centroids(x, &mut assignment, &dist, &mut centroids);
    clustering(x, assignment, centroids)
}

fn clustering(x: ArrayView2<f64>, assignment: Vec<usize>, centroids: Array2<f64>) -> Clustering {
    let inertia = x
        .rows()
        .into_iter()
        .zip(&assignment)
        .map(|(row, &c)| {
            let d = &row - &centroids.row(c);
            d.dot(&d)
        })
        .sum();
    Clustering {
        assignment,
        centroids,
        inertia,
    }
}

/// Clusters the rows of `x` into `opts.k` clusters (`1 ≤ k ≤ rows`), keeping the restart of
/// lowest inertia. Restart `r` is seeded from `Rng::derive(seed, r)`, so a seed fixes the result.
/// `on_restart` is called after each restart (for progress).
pub fn kmeans(x: ArrayView2<f64>, opts: &KMeansOptions, on_restart: &dyn Fn()) -> Clustering {
    let mut best: Option<Clustering> = None;
    for r in 0..opts.restarts.max(1) {
        let mut rng = Rng::derive(opts.seed, r as u64);
        let start = seed_centroids(x, opts.k, &mut rng);
        let run = if opts.online {
            online(x, start, opts, &mut rng)
        } else {
            lloyd(x, start, opts.max_iter)
        };
        on_restart();
        if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
            best = Some(run);
        }
    }
    best.unwrap_or_else(|| clustering(x, vec![0; x.nrows()], Array2::zeros((opts.k, x.ncols()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three tight, well separated blobs of 20 points in 5 dimensions.
    fn blobs() -> (Array2<f64>, Vec<usize>) {
        let mut rng = Rng::new(11);
        let centres = [
            [0.0, 0.0, 0.0, 0.0, 0.0],
            [5.0, 5.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 5.0, -5.0],
        ];
        let truth: Vec<usize> = (0..60).map(|i| i % 3).collect();
        let x = Array2::from_shape_fn((60, 5), |(i, j)| {
            centres[truth[i]][j] + 0.3 * rng.normal() as f64
        });
        (x, truth)
    }

    fn same_partition(a: &[usize], b: &[usize]) -> bool {
        (0..a.len()).all(|i| (0..a.len()).all(|j| (a[i] == a[j]) == (b[i] == b[j])))
    }

    #[test]
    fn finds_obvious_blobs_with_lloyd_and_online() {
        let (x, truth) = blobs();
        for online in [false, true] {
            let count = std::cell::Cell::new(0);
            let c = kmeans(x.view(), &KMeansOptions::new(3, 4, 7, online), &|| {
                count.set(count.get() + 1)
            });
            assert_eq!(count.get(), 4);
            assert!(
                same_partition(&c.assignment, &truth),
                "online={online}: {:?}",
                c.assignment
            );
            let direct: f64 = (0..60)
                .map(|i| {
                    let d = &x.row(i) - &c.centroids.row(c.assignment[i]);
                    d.dot(&d)
                })
                .sum();
            assert!((direct - c.inertia).abs() < 1e-9);
            assert!(
                c.inertia < 60.0 * 5.0 * 0.3 * 0.3 * 1.5,
                "inertia {}",
                c.inertia
            );
        }
    }

    #[test]
    fn seeded_and_never_leaves_a_cluster_empty() {
        let (x, _) = blobs();
        let a = kmeans(x.view(), &KMeansOptions::new(3, 2, 1, false), &|| {});
        let b = kmeans(x.view(), &KMeansOptions::new(3, 2, 1, false), &|| {});
        assert_eq!(a, b);
        // As many clusters as points, including duplicated points: every cluster keeps one.
        let mut dup = x.slice(ndarray::s![..6, ..]).to_owned();
        let first = dup.row(0).to_owned();
        dup.row_mut(1).assign(&first);
        for online in [false, true] {
            let c = kmeans(dup.view(), &KMeansOptions::new(6, 3, 2, online), &|| {});
            let mut used = c.assignment.clone();
            used.sort_unstable();
            used.dedup();
            assert_eq!(used.len(), 6, "online={online}: {:?}", c.assignment);
        }
    }
}
