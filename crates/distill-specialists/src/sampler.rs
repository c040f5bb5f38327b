//! The specialist's training stream: each epoch, every training row of the subset and as many rows
//! drawn at random (without replacement) from the other classes, shuffled together, so half of
//! what a specialist sees is its subset (PAPER §6).

use crate::targets::SubsetMap;
use distill_core::rng::Rng;

/// Draws each epoch's rows.
#[derive(Clone, Debug)]
pub struct HalfSampler {
    subset: Vec<usize>,
    others: Vec<usize>,
    seed: u64,
}

impl HalfSampler {
    /// Splits the rows (by their generalist `labels`) into the subset's and the others'.
    pub fn new(labels: &[u32], map: &SubsetMap, seed: u64) -> Self {
        let (mut subset, mut others) = (Vec::new(), Vec::new());
        for (r, &l) in labels.iter().enumerate() {
            if map.contains(l) {
                subset.push(r)
            } else {
                others.push(r)
            }
        }
        HalfSampler {
            subset,
            others,
            seed,
        }
    }

    pub fn subset_rows(&self) -> usize {
        self.subset.len()
    }

    pub fn other_rows(&self) -> usize {
        self.others.len()
    }

    /// Rows of other classes drawn each epoch: as many as the subset has, or all of them when
    /// there are fewer.
    pub fn others_per_epoch(&self) -> usize {
        self.subset.len().min(self.others.len())
    }

    pub fn epoch_len(&self) -> usize {
        self.subset.len() + self.others_per_epoch()
    }

    /// Share of the data's rows that belong to the subset (`π`).
    pub fn subset_share(&self) -> f64 {
        self.subset.len() as f64 / (self.subset.len() + self.others.len()).max(1) as f64
    }

    /// Share of subset rows in each epoch (`s`; 1/2 unless the others are fewer).
    pub fn sampled_share(&self) -> f64 {
        self.subset.len() as f64 / self.epoch_len().max(1) as f64
    }

    /// The rows of epoch `epoch`, shuffled; the same for the same seed and epoch.
    pub fn epoch(&self, epoch: usize) -> Vec<usize> {
        let mut rng = Rng::derive(self.seed, 0x5A3B_0000 + epoch as u64);
        let k = self.others_per_epoch();
        let mut others = self.others.clone();
        // A partial Fisher–Yates shuffle: the first k are a uniform draw without replacement.
        for i in 0..k {
            let j = i + rng.below(others.len() - i);
            others.swap(i, j);
        }
        let mut rows = self.subset.clone();
        rows.extend_from_slice(&others[..k]);
        rng.shuffle(&mut rows);
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_of_each_epoch_is_the_subset_and_the_rest_is_drawn_from_the_others() {
        // 1000 rows of 10 classes; the subset {3, 7} is 20% of them.
        let labels: Vec<u32> = (0..1000).map(|r| (r % 10) as u32).collect();
        let map = SubsetMap::new(&[3, 7], 10);
        let s = HalfSampler::new(&labels, &map, 4);
        assert_eq!(
            (s.subset_rows(), s.other_rows(), s.epoch_len()),
            (200, 800, 400)
        );
        assert!((s.subset_share() - 0.2).abs() < 1e-12);
        assert!((s.sampled_share() - 0.5).abs() < 1e-12);
        let mut seen_others = std::collections::HashSet::new();
        let mut per_class = [0usize; 10];
        for e in 0..20 {
            let rows = s.epoch(e);
            assert_eq!(rows.len(), 400);
            let distinct: std::collections::HashSet<_> = rows.iter().collect();
            assert_eq!(distinct.len(), 400, "no row twice in an epoch");
            let inside = rows.iter().filter(|&&r| map.contains(labels[r])).count();
            assert_eq!(inside, 200, "every subset row, once");
            for &r in &rows {
                per_class[labels[r] as usize] += 1;
                if !map.contains(labels[r]) {
                    seen_others.insert(r);
                }
            }
        }
        assert_eq!(s.epoch(3), s.epoch(3), "seeded");
        assert_ne!(s.epoch(3), s.epoch(4));
        // The others are drawn uniformly: each of the 8 other classes gets about 1/8 of the
        // 20 x 200 draws (500 each; a binomial standard deviation of about 21).
        for c in [0, 1, 2, 4, 5, 6, 8, 9] {
            assert!(
                (430..=570).contains(&per_class[c]),
                "class {c}: {}",
                per_class[c]
            );
        }
        assert_eq!(per_class[3], 20 * 100);
        assert!(
            seen_others.len() > 780,
            "draws reach almost every other row"
        );
    }

    #[test]
    fn a_subset_larger_than_the_rest_takes_all_the_others() {
        let labels: Vec<u32> = (0..100).map(|r| (r % 4) as u32).collect();
        let map = SubsetMap::new(&[0, 1, 2], 4);
        let s = HalfSampler::new(&labels, &map, 1);
        assert_eq!(s.others_per_epoch(), 25);
        assert_eq!(s.epoch(0).len(), 100);
        assert!((s.sampled_share() - s.subset_share()).abs() < 1e-12);
    }
}
