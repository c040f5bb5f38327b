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
        let members: Vec<Array2<f32>> = self
            .logits
            .iter()
            .map(|l| l.select(ndarray::Axis(0), &rows))
            .collect();
        let views: Vec<ArrayView2<f32>> = members.iter().map(|m| m.view()).collect();
        distill_core::math::ensemble_probs(&views, t, combine)
    }
}
