//! `vars`: their values (with `--set` overrides) and the `${...}` substitution into stages.

use super::*;
use serde_norway::Mapping;

/// The most bytes one value may have once its `${...}` are substituted (1 MiB, far above any
/// real pipeline's values): variables built from others would otherwise grow without bound.
pub const MAX_EXPANDED_BYTES: usize = 1 << 20;

/// The bytes of a value's scalars plus one per node, as far as [`MAX_EXPANDED_BYTES`] (the count
/// stops there).
fn value_size(v: &Value) -> usize {
    fn walk(v: &Value, total: &mut usize) {
        if *total > MAX_EXPANDED_BYTES {
            return;
        }
        *total += 1;
        match v {
            Value::String(s) => *total += s.len(),
            Value::Sequence(s) => s.iter().for_each(|x| walk(x, total)),
            Value::Mapping(m) => m.iter().for_each(|(k, x)| {
                walk(k, total);
                walk(x, total)
            }),
            Value::Tagged(t) => walk(&t.value, total),
            _ => *total += 8,
        }
    }
    let mut total = 0;
    walk(v, &mut total);
    total
}

impl Document {
    pub(super) fn resolve_vars(&self, vars: &Mapping, set: &[(String, String)]) -> Result<Mapping> {
        let names: Vec<String> = vars.keys().map(key_str).collect();
        if let Some((name, _)) = set.iter().find(|(n, _)| !names.contains(n)) {
            let known: Vec<&str> = names.iter().map(String::as_str).collect();
            let did_you_mean = suggest(name, &known)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(PipelineError::Usage(if names.is_empty() {
                format!(
                    "--set {name}=...: {} has no `vars:`, so there is nothing to set",
                    self.file.display()
                )
            } else {
                format!(
                    "--set {name}=...: {} has no variable `{name}`{did_you_mean}; its vars are {}",
                    self.file.display(),
                    names.join(", ")
                )
            }));
        }
        let mut done = Mapping::new();
        for (key, value) in vars {
            let k = key_str(key);
            if !is_name(&k) {
                return Err(self.error(
                    &["vars", &k],
                    format!("`{k}` is not a usable variable name"),
                    "use letters, digits, `_` and `-`",
                ));
            }
            // The last --set of a name wins, as with repeated flags elsewhere.
            let value = match set.iter().rev().find(|(n, _)| *n == k) {
                Some((_, raw)) => set_value(raw),
                None => value.clone(),
            };
            let v = self.subst_value(&value, &done, None, 0)?;
            done.insert(Value::String(k), v);
        }
        Ok(done)
    }

    /// The byte offset of the line of the key at `path`, where a search for a `${...}` starts.
    pub(super) fn offset_of(&self, path: &[&str]) -> usize {
        let line = self.outline.find(path).line;
        self.text
            .split_inclusive('\n')
            .take(line.saturating_sub(1))
            .map(str::len)
            .sum()
    }

    pub(super) fn subst_value(
        &self,
        v: &Value,
        vars: &Mapping,
        item: Option<&Value>,
        from: usize,
    ) -> Result<Value> {
        let mut total = 0usize;
        let mut count = |x: &Value| -> Result<()> {
            total = total.saturating_add(value_size(x));
            if total > MAX_EXPANDED_BYTES {
                return Err(self.too_large(from));
            }
            Ok(())
        };
        Ok(match v {
            Value::String(s) => self.subst_str(s, vars, item, from)?,
            Value::Sequence(s) => {
                let mut out = Vec::with_capacity(s.len());
                for x in s {
                    let x = self.subst_value(x, vars, item, from)?;
                    count(&x)?;
                    out.push(x);
                }
                Value::Sequence(out)
            }
            Value::Mapping(m) => {
                let mut out = Mapping::new();
                for (k, x) in m {
                    let x = self.subst_value(x, vars, item, from)?;
                    count(&x)?;
                    out.insert(k.clone(), x);
                }
                Value::Mapping(out)
            }
            other => other.clone(),
        })
    }

    fn too_large(&self, from: usize) -> PipelineError {
        self.var_error(
            "${",
            from,
            format!(
                "substituting the variables makes a value of more than {MAX_EXPANDED_BYTES} \
                 bytes"
            ),
            "a variable that repeats another several times grows with each level; write the \
             value out instead",
        )
    }

    /// Substitutes every `${name}`, `${item}` and `${item.field}` in `s`. A string that is exactly
    /// one `${...}` takes the value's type (a number, a list); inside a longer string the value
    /// must be a scalar.
    pub(super) fn subst_str(
        &self,
        s: &str,
        vars: &Mapping,
        item: Option<&Value>,
        from: usize,
    ) -> Result<Value> {
        if !s.contains("${") {
            return Ok(Value::String(s.to_string()));
        }
        let mut out = String::new();
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let Some(len) = rest[start..].find('}') else {
                return Err(self.var_error(
                    &rest[start..],
                    from,
                    "`${` without a closing `}`".to_string(),
                    "write ${name}",
                ));
            };
            let raw = &rest[start..start + len + 1];
            let name = raw[2..raw.len() - 1].trim();
            let value = lookup(name, vars, item).ok_or_else(|| {
                let defined: Vec<String> = vars.keys().map(key_str).collect();
                let mut hint = if defined.is_empty() {
                    "define it under `vars:` at the top of the file".to_string()
                } else {
                    format!("defined variables: {}", defined.join(", "))
                };
                if name == "item" || name.starts_with("item.") {
                    hint = if item.is_some() {
                        "this foreach item has no such field".to_string()
                    } else {
                        "`${item}` is defined only in a stage with `foreach:`".to_string()
                    };
                }
                self.var_error(raw, from, format!("undefined variable `{name}`"), &hint)
            })?;
            if raw.len() == s.len() {
                if value_size(&value) > MAX_EXPANDED_BYTES {
                    return Err(self.too_large(from));
                }
                return Ok(value);
            }
            match scalar_string(&value) {
                Some(v) => {
                    out.push_str(&v);
                    if out.len() > MAX_EXPANDED_BYTES {
                        return Err(self.too_large(from));
                    }
                }
                None => {
                    return Err(self.var_error(
                        raw,
                        from,
                        format!("`{name}` is a list or mapping and cannot go inside a string"),
                        "use it as the whole value, e.g. `model: ${teachers}`",
                    ));
                }
            }
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
        Ok(Value::String(out))
    }

    pub(super) fn var_error(
        &self,
        raw: &str,
        from: usize,
        message: String,
        hint: &str,
    ) -> PipelineError {
        let at = self.text[from.min(self.text.len())..]
            .find(raw)
            .map(|i| i + from)
            .or_else(|| self.text.find(raw));
        let pos = at.map_or_else(Pos::default, |i| pos_of_offset(&self.text, i));
        self.error_at(pos, message, hint)
    }
}

/// A `--set` value: read as YAML (`4` a number, `true` a boolean, `[1, 2]` a list); text that is not
/// YAML, or is empty, is a string.
pub(super) fn set_value(raw: &str) -> Value {
    if raw.trim().is_empty() {
        return Value::String(raw.to_string());
    }
    match serde_norway::from_str::<Value>(raw) {
        Ok(Value::Null) | Err(_) => Value::String(raw.to_string()),
        Ok(v) => v,
    }
}

/// Splits `NAME=VALUE` (a `--set` argument).
pub fn parse_set(arg: &str) -> std::result::Result<(String, String), String> {
    match arg.split_once('=') {
        Some((name, value)) if is_name(name.trim()) => {
            Ok((name.trim().to_string(), value.to_string()))
        }
        _ => Err(format!(
            "--set {arg}: expected NAME=VALUE, a variable of the pipeline's `vars:` and its value \
             (e.g. --set student_epochs=2)"
        )),
    }
}

fn lookup(name: &str, vars: &Mapping, item: Option<&Value>) -> Option<Value> {
    let mut parts = name.split('.');
    let first = parts.next()?;
    let mut value = match (first, item) {
        ("item", Some(i)) => i.clone(),
        _ => vars.get(first)?.clone(),
    };
    for p in parts {
        value = match &value {
            Value::Mapping(m) => m.get(p)?.clone(),
            Value::Sequence(s) => s.get(p.parse::<usize>().ok()?)?.clone(),
            _ => return None,
        };
    }
    Some(value)
}
