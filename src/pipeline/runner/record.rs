//! What the lock records of a stage: its entry while it runs and once it completed, and the
//! hashes of its inputs and outputs.

use super::*;

impl Runner<'_> {
    pub(in crate::pipeline) fn update_lock(&self, name: &str, entry: Entry) -> Result<()> {
        let mut lock = self
            .lock
            .lock()
            .map_err(|_| PipelineError::Usage("the lock's mutex was poisoned".into()))?;
        lock.stages.insert(name.to_string(), entry);
        let names: Vec<&str> = self.stages.iter().map(|s| s.name.as_str()).collect();
        lock.stages.retain(|k, _| names.contains(&k.as_str()));
        lock.write(&self.lock_file)
    }

    /// Creates the folders stage `i` writes into, and forgets what was known of its outputs.
    pub(in crate::pipeline) fn prepare_outputs(&self, i: usize) -> Result<()> {
        for o in &self.stages[i].outs {
            let dir = if o.folder {
                Some(o.path.as_path())
            } else {
                o.path.parent().filter(|p| !p.as_os_str().is_empty())
            };
            if let Some(dir) = dir {
                std::fs::create_dir_all(dir).map_err(|e| PipelineError::io(dir, e))?;
            }
            self.hasher.forget(&o.path);
        }
        Ok(())
    }

    /// The lock entry of stage `i` while it runs (`started`, no outputs yet).
    pub(in crate::pipeline) fn started_entry(&self, i: usize, d: &Decision) -> Entry {
        let stage = &self.stages[i];
        let mut command = stage.display_command();
        if d.resume {
            command.push_str(" --resume");
        }
        Entry {
            kind: stage.kind.name().to_string(),
            state: State::Started,
            args: stage.args_hash.clone(),
            command,
            deps: d.deps.clone(),
            outs: BTreeMap::new(),
            seconds: 0.0,
            report: None,
            version: Some(distill_core::TOOL_VERSION.to_string()),
        }
    }

    /// The SHA-256 of stage `i`'s outputs as they are now; an error naming a required one that
    /// is missing.
    pub(in crate::pipeline) fn output_hashes(&self, i: usize) -> Result<BTreeMap<String, String>> {
        let stage = &self.stages[i];
        let mut outs = BTreeMap::new();
        for o in &stage.outs {
            match self.hasher.hash(&o.path)? {
                Some(h) => {
                    outs.insert(key(&o.path), h);
                }
                None if o.required => {
                    return Err(PipelineError::Stage {
                        stage: stage.name.clone(),
                        message: format!("it completed without writing {}", o.path.display()),
                        user: true,
                    });
                }
                None => {}
            }
        }
        Ok(outs)
    }

    /// The SHA-256 of stage `i`'s inputs as they are now (those that exist).
    pub(in crate::pipeline) fn dep_hashes(&self, i: usize) -> Result<BTreeMap<String, String>> {
        let mut deps = BTreeMap::new();
        for d in &self.stages[i].deps {
            if let Some(h) = self.hasher.hash(&d.path)? {
                deps.insert(key(&d.path), h);
            }
        }
        Ok(deps)
    }
}
