//! From a K-means partition to specialist subsets: size bounds and overlapping memberships.
//! Both work on `d2[i, c]`, the squared distance from class `i`'s feature to centroid `c`, with the
//! centroids K-means found (they are not moved while classes are rebalanced).

use crate::{ClusterError, Result};
use ndarray::ArrayView2;

/// Bounds on the number of classes in a subset (before overlap adds members).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SizeBounds {
    pub min: usize,
    pub max: Option<usize>,
}

impl SizeBounds {
    /// Checks that the bounds make sense on their own: `1 ≤ min ≤ max`.
    pub fn validate(&self) -> Result<()> {
        if self.min == 0 {
            return Err(ClusterError::Invalid(
                "--min-size 0: every subset holds at least one class; give 1 or more".into(),
            ));
        }
        if let Some(max) = self.max
            && self.min > max
        {
            return Err(ClusterError::Invalid(format!(
                "--min-size {} is larger than --max-size {max}",
                self.min
            )));
        }
        Ok(())
    }

    /// Checks that `n` classes can be split into `k` subsets within the bounds.
    pub fn check(&self, n: usize, k: usize) -> Result<()> {
        self.validate()?;
        if let Some(max) = self.max
            && n > k * max
        {
            return Err(ClusterError::Invalid(format!(
                "{n} classes do not fit in {k} subsets of at most {max} classes; raise \
                 --max-size to at least {} or --count to at least {}",
                n.div_ceil(k),
                n.div_ceil(max)
            )));
        }
        if k * self.min > n {
            return Err(ClusterError::Invalid(format!(
                "{k} subsets of at least {} classes need {} classes, but only {n} are clustered; \
                 lower --min-size or --count",
                self.min,
                k * self.min
            )));
        }
        Ok(())
    }
}

fn sizes(assignment: &[usize], k: usize) -> Vec<usize> {
    let mut s = vec![0; k];
    for &c in assignment {
        s[c] += 1;
    }
    s
}

/// The cheapest single move of a class out of a cluster that `from` allows into a cluster that
/// `to` allows: the one that raises its squared distance to its centroid least.
fn cheapest_move(
    assignment: &[usize],
    d2: ArrayView2<f64>,
    from: impl Fn(usize) -> bool,
    to: impl Fn(usize) -> bool,
) -> Option<(usize, usize)> {
    let mut best: Option<(f64, usize, usize)> = None;
    for (i, &c) in assignment.iter().enumerate() {
        if !from(c) {
            continue;
        }
        for t in (0..d2.ncols()).filter(|&t| t != c && to(t)) {
            let cost = d2[[i, t]] - d2[[i, c]];
            if best.is_none_or(|(b, _, _)| cost < b) {
                best = Some((cost, i, t));
            }
        }
    }
    best.map(|(_, i, t)| (i, t))
}

/// Moves classes until every cluster's size is within `bounds` (which [`SizeBounds::check`] has
/// accepted for these many classes and clusters). First, while a cluster is over `max`, the
/// member whose move costs least (in squared distance to the new centroid minus that to its own)
/// goes to a cluster below `max`; then, while a cluster is under `min`, it takes the class whose
/// move costs least from a cluster above `min`. No move undoes an earlier fix, so this ends.
pub fn rebalance(assignment: &mut [usize], d2: ArrayView2<f64>, bounds: SizeBounds) {
    let k = d2.ncols();
    if let Some(max) = bounds.max {
        loop {
            let s = sizes(assignment, k);
            let Some(over) = (0..k).find(|&c| s[c] > max) else {
                break;
            };
            match cheapest_move(assignment, d2, |c| c == over, |t| s[t] < max) {
                Some((i, t)) => assignment[i] = t,
                None => break,
            }
        }
    }
    loop {
        let s = sizes(assignment, k);
        let Some(under) = (0..k).find(|&c| s[c] < bounds.min) else {
            break;
        };
        match cheapest_move(assignment, d2, |c| s[c] > bounds.min, |t| t == under) {
            Some((i, t)) => assignment[i] = t,
            None => break,
        }
    }
}

/// Extra memberships for overlapping subsets: each class may join up to `m - 1` clusters besides
/// its own. Class `i` is a candidate for cluster `c` when its distance to `c`'s centroid is at most
/// `factor` times its reference distance: the larger of its distance to its own centroid and the
/// median of that distance over all classes (so a class sitting on its centroid is not held to a
/// radius of zero). Candidates join nearest-first (by that ratio), and never push a cluster past
/// `max` classes. Returns the extra members of each cluster, ascending.
pub fn overlap(
    assignment: &[usize],
    d2: ArrayView2<f64>,
    m: usize,
    factor: f64,
    max: Option<usize>,
) -> Vec<Vec<usize>> {
    let k = d2.ncols();
    let mut extra = vec![Vec::new(); k];
    if m <= 1 || k <= 1 {
        return extra;
    }
    let own: Vec<f64> = assignment
        .iter()
        .enumerate()
        .map(|(i, &c)| d2[[i, c]].sqrt())
        .collect();
    let mut sorted = own.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    let mut candidates: Vec<(f64, usize, usize)> = Vec::new();
    for (i, &c) in assignment.iter().enumerate() {
        let reference = own[i].max(median);
        if reference <= 0.0 {
            continue;
        }
        for t in (0..k).filter(|&t| t != c) {
            let ratio = d2[[i, t]].sqrt() / reference;
            if ratio <= factor {
                candidates.push((ratio, i, t));
            }
        }
    }
    candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut size = sizes(assignment, k);
    let mut joined = vec![1usize; assignment.len()];
    for (_, i, t) in candidates {
        if joined[i] >= m || max.is_some_and(|mx| size[t] >= mx) {
            continue;
        }
        extra[t].push(i);
        size[t] += 1;
        joined[i] += 1;
    }
    for e in &mut extra {
        e.sort_unstable();
    }
    extra
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn bounds_are_checked() {
        let b = |min, max| SizeBounds { min, max };
        assert!(b(1, None).check(10, 3).is_ok());
        assert!(b(4, Some(4)).check(12, 3).is_ok());
        let e = b(5, Some(3)).check(10, 3).unwrap_err().to_string();
        assert!(
            e.contains("--min-size 5 is larger than --max-size 3"),
            "{e}"
        );
        let e = b(1, Some(3)).check(10, 3).unwrap_err().to_string();
        assert!(e.contains("do not fit"), "{e}");
        let e = b(4, None).check(10, 3).unwrap_err().to_string();
        assert!(e.contains("need 12 classes"), "{e}");
        assert!(b(0, None).check(10, 3).is_err());
    }

    #[test]
    fn rebalance_moves_the_cheapest_classes() {
        // Five classes in cluster 0, one in cluster 1; class 4 is the closest to centroid 1.
        let d2 = array![
            [0.0, 9.0],
            [0.1, 8.0],
            [0.2, 7.0],
            [0.3, 5.0],
            [0.4, 1.0],
            [9.0, 0.0]
        ];
        let mut a = vec![0, 0, 0, 0, 0, 1];
        rebalance(
            &mut a,
            d2.view(),
            SizeBounds {
                min: 1,
                max: Some(3),
            },
        );
        assert_eq!(a, vec![0, 0, 0, 1, 1, 1]);
        let mut a = vec![0, 0, 0, 0, 0, 1];
        rebalance(&mut a, d2.view(), SizeBounds { min: 2, max: None });
        assert_eq!(a, vec![0, 0, 0, 0, 1, 1]);
    }

    #[test]
    fn overlap_joins_near_clusters_only() {
        // Class 2 sits between the clusters; the others are far from the other centroid.
        let d2 = array![
            [0.01, 4.0],
            [0.04, 4.0],
            [1.0, 1.21],
            [4.0, 0.04],
            [4.0, 0.01]
        ];
        let a = [0, 0, 0, 1, 1];
        let none: Vec<Vec<usize>> = vec![vec![], vec![]];
        assert_eq!(overlap(&a, d2.view(), 1, 1.5, None), none);
        assert_eq!(overlap(&a, d2.view(), 2, 1.5, None), vec![vec![], vec![2]]);
        assert_eq!(overlap(&a, d2.view(), 2, 1.5, Some(2)), none);
        assert_eq!(
            overlap(&a, d2.view(), 3, 100.0, None),
            vec![vec![3, 4], vec![0, 1, 2]]
        );
    }
}
