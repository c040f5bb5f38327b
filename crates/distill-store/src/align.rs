//! Aligning a store with a data set: the store row of each of the data set's rows, by row id.

use super::*;

impl SoftTargets {
    /// For each row of `ds`, the store row holding its soft targets. Refuses a store that does not
    /// cover the data set's rows, disagrees on labels, or has another class count.
    pub fn align(&self, ds: &Dataset, store_path: &Path) -> Result<Vec<usize>> {
        if self.meta.classes != ds.classes {
            return Err(CoreError::invalid(format!(
                "{}: the store has {} classes but the data set {} has {}; make the store from \
                 this data set with distill-teach",
                store_path.display(),
                self.meta.classes,
                ds.name,
                ds.classes
            )));
        }
        let mut by_index = std::collections::HashMap::with_capacity(self.len());
        for (row, &i) in self.index.iter().enumerate() {
            by_index.insert(i, row);
        }
        let mut rows = Vec::with_capacity(ds.len());
        for (r, &i) in ds.index.iter().enumerate() {
            let Some(&row) = by_index.get(&i) else {
                // A store of the first N rows (distill-teach --limit N) is the common case.
                let first_rows = self.index.iter().enumerate().all(|(k, &x)| x == k as u64);
                let hint = if first_rows {
                    format!("; or keep to the rows it has with --limit {}", self.len())
                } else {
                    String::new()
                };
                return Err(CoreError::invalid(format!(
                    "{}: the store has no row for example {i} of {} (it covers {} rows of split \
                     '{}'); run distill-teach on the same data and split{hint}",
                    store_path.display(),
                    ds.name,
                    self.len(),
                    self.meta.split
                )));
            };
            if let (Some(labels), Some(stored)) = (&ds.labels, self.labels[row])
                && labels[r] != stored
            {
                return Err(CoreError::invalid(format!(
                    "{}: example {i} has label {stored} in the store but {} in {}; the store was \
                     made from other data",
                    store_path.display(),
                    labels[r],
                    ds.name
                )));
            }
            rows.push(row);
        }
        Ok(rows)
    }

    /// The ensemble's targets at temperature `t` for each row of `ds`, in `ds`'s order: the store
    /// aligned with [`SoftTargets::align`], its teachers combined by
    /// [`distill_core::math::ensemble_probs`].
    pub fn ensemble_for(
        &self,
        ds: &Dataset,
        store_path: &Path,
        t: f32,
        combine: distill_core::math::Combine,
    ) -> Result<Array2<f32>> {
        let rows = self.align(ds, store_path)?;
        if rows.len() == self.len() && rows.iter().enumerate().all(|(i, &r)| i == r) {
            // The data set is the store's rows in the store's order (the usual case): no copy.
            return distill_core::math::ensemble_probs(&self.views(), t, combine);
        }
        distill_core::math::ensemble_probs(&self.select_rows(&rows).views(), t, combine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Layout, SCHEMA_VERSION, StoreMeta};
    use distill_core::math::{Combine, ensemble_probs};
    use ndarray::array;

    fn store() -> SoftTargets {
        SoftTargets {
            meta: StoreMeta {
                schema_version: SCHEMA_VERSION,
                classes: 3,
                teachers: Vec::new(),
                dataset: "toy".into(),
                split: "train".into(),
                transform: "none".into(),
                tool_version: distill_core::TOOL_VERSION.into(),
                shard: None,
                layout: Layout::Full,
                top_k: None,
            },
            index: vec![0, 1, 2],
            labels: vec![Some(0), Some(1), Some(2)],
            logits: vec![
                array![[2.0, 0.0, -1.0], [0.0, 3.0, 1.0], [1.0, 1.0, 4.0]],
                array![[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 2.0]],
            ],
        }
    }

    fn data(index: Vec<u64>) -> Dataset {
        let n = index.len();
        Dataset {
            name: "toy".into(),
            features: Array2::zeros((n, 1)),
            labels: Some(index.iter().map(|&i| i as u32).collect()),
            index,
            classes: 3,
            image: None,
        }
    }

    #[test]
    fn targets_follow_the_data_sets_rows_with_or_without_a_copy() {
        let s = store();
        let path = Path::new("toy.parquet");
        let all = ensemble_probs(&s.views(), 2.0, Combine::Arithmetic).unwrap();
        // The store's own rows in its order: the no-copy path.
        let same = s
            .ensemble_for(&data(vec![0, 1, 2]), path, 2.0, Combine::Arithmetic)
            .unwrap();
        assert_eq!(same, all);
        // Another order and a subset: the rows selected first.
        let some = s
            .ensemble_for(&data(vec![2, 0]), path, 2.0, Combine::Arithmetic)
            .unwrap();
        assert_eq!(some.row(0), all.row(2));
        assert_eq!(some.row(1), all.row(0));
    }
}
