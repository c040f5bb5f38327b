//! A stage's expansion: `foreach` over a list or mapping into one stage per item, each with its
//! `${item}` substituted.

use super::*;

impl Document {
    pub(super) fn expand_stage(
        &self,
        name: &str,
        value: &Value,
        vars: &Mapping,
    ) -> Result<Vec<StageSpec>> {
        fn path<'a>(name: &'a str, k: &'a str) -> Vec<&'a str> {
            if k.is_empty() {
                vec!["stages", name]
            } else {
                vec!["stages", name, k]
            }
        }
        let at = |k: &'static str| path(name, k);
        if !is_name(name) {
            return Err(self.error(
                &at(""),
                format!("`{name}` is not a usable stage name"),
                "use letters, digits, `_` and `-` (`@` is added by foreach)",
            ));
        }
        let Value::Mapping(stage) = value else {
            return Err(self.error(
                &at(""),
                format!("stage {name} must be a mapping with `kind:` and `args:`"),
                "e.g. `kind: train` and `args:` with the stage's flags",
            ));
        };
        for key in stage.keys() {
            let k = key_str(key);
            if !STAGE_KEYS.contains(&k.as_str()) {
                return Err(self.error(
                    &path(name, &k),
                    format!("stage {name}: unknown key `{k}`"),
                    &format!(
                        "a stage's keys are {}{}",
                        STAGE_KEYS.join(", "),
                        suggest(&k, &STAGE_KEYS)
                            .map(|s| format!("; did you mean `{s}`?"))
                            .unwrap_or_default()
                    ),
                ));
            }
        }
        let kind_names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        let kind = match stage.get("kind") {
            Some(Value::String(s)) => Kind::parse(s).ok_or_else(|| {
                self.error(
                    &at("kind"),
                    format!("stage {name}: unknown kind `{s}`"),
                    &format!(
                        "kind is one of {}{}",
                        kind_names.join(", "),
                        suggest(s, &kind_names)
                            .map(|s| format!("; did you mean `{s}`?"))
                            .unwrap_or_default()
                    ),
                )
            })?,
            Some(_) => {
                return Err(self.error(
                    &at("kind"),
                    format!("stage {name}: `kind` must be a word"),
                    &format!("kind is one of {}", kind_names.join(", ")),
                ));
            }
            None => {
                return Err(self.error(
                    &at(""),
                    format!("stage {name} has no `kind`"),
                    &format!("add `kind:` with one of {}", kind_names.join(", ")),
                ));
            }
        };
        let args: Vec<(String, Value)> = match stage.get("args") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Mapping(m)) => m.iter().map(|(k, v)| (key_str(k), v.clone())).collect(),
            Some(_) => {
                return Err(self.error(
                    &at("args"),
                    format!("stage {name}: `args` must be a mapping of flag names to values"),
                    "e.g. `epochs: 3` on its own line under `args:`",
                ));
            }
        };
        let cmd = match (kind, stage.get("cmd")) {
            (Kind::Cmd, Some(Value::String(s))) => Some(s.clone()),
            (Kind::Cmd, _) => {
                return Err(self.error(
                    &at("cmd"),
                    format!("stage {name}: a cmd stage needs `cmd:` with a shell command"),
                    "e.g. `cmd: python export.py --out models/t.onnx`, with its `deps:` and `outs:`",
                ));
            }
            (_, Some(_)) => {
                return Err(self.error(
                    &at("cmd"),
                    format!("stage {name}: `cmd` is only for `kind: cmd`"),
                    "a built-in kind takes its flags under `args:`",
                ));
            }
            (_, None) => None,
        };
        if kind == Kind::Cmd && !args.is_empty() {
            return Err(self.error(
                &at("args"),
                format!("stage {name}: a cmd stage takes no `args`"),
                "write the flags into `cmd:` itself",
            ));
        }
        let list = |key: &'static str| -> Result<Vec<Value>> {
            match stage.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Sequence(s)) => Ok(s.clone()),
                Some(v @ Value::String(_)) => Ok(vec![v.clone()]),
                Some(_) => Err(self.error(
                    &at(key),
                    format!("stage {name}: `{key}` must be a list of paths"),
                    &format!("e.g. `{key}: [data/x.csv, models/]`"),
                )),
            }
        };
        let deps = list("deps")?;
        let outs = list("outs")?;
        let items: Option<Vec<Value>> = match stage.get("foreach") {
            None => None,
            Some(v) => match self.subst_value(v, vars, None, self.offset_of(&at("foreach")))? {
                Value::Sequence(s) if !s.is_empty() => Some(s),
                _ => {
                    return Err(self.error(
                        &at("foreach"),
                        format!("stage {name}: `foreach` must be a non-empty list"),
                        "e.g. `foreach: [1, 2, 3]`, then `${item}` in the args",
                    ));
                }
            },
        };
        let from = self.offset_of(&at(""));
        let one = |stage_name: String, item: Option<&Value>| -> Result<StageSpec> {
            let str_of = |v: &Value, key: &'static str| -> Result<String> {
                let v = self.subst_value(v, vars, item, from)?;
                scalar_string(&v).ok_or_else(|| {
                    self.error(
                        &at(key),
                        format!("stage {stage_name}: `{key}` must hold paths (strings)"),
                        "",
                    )
                })
            };
            Ok(StageSpec {
                name: stage_name.clone(),
                template: name.to_string(),
                kind,
                args: args
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), self.subst_value(v, vars, item, from)?)))
                    .collect::<Result<_>>()?,
                cmd: match &cmd {
                    Some(c) => Some(str_of(&Value::String(c.clone()), "cmd")?),
                    None => None,
                },
                deps: deps
                    .iter()
                    .map(|d| str_of(d, "deps"))
                    .collect::<Result<_>>()?,
                outs: outs
                    .iter()
                    .map(|d| str_of(d, "outs"))
                    .collect::<Result<_>>()?,
            })
        };
        match items {
            None => Ok(vec![one(name.to_string(), None)?]),
            Some(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let suffix = scalar_string(item).unwrap_or_else(|| i.to_string());
                    if let Some(c) = suffix.chars().find(|c| c.is_control()) {
                        return Err(self.error(
                            &at("foreach"),
                            format!(
                                "stage {name}: foreach item {} ({suffix:?}) holds the control \
                                 character {c:?}; an item names its stage (`{name}@ITEM`), which \
                                 is shown in logs, the lock and Slurm job scripts",
                                i + 1
                            ),
                            "write the item without newlines, tabs or other control \
                             characters, or make the items mappings (`- {v: ...}` with \
                             `${item.v}`), which name their stages by position",
                        ));
                    }
                    one(format!("{name}@{suffix}"), Some(item))
                })
                .collect(),
        }
    }
}
