//! Where things are in a pipeline's YAML text: line and column of the keys of its block mappings,
//! so that errors found after parsing (an unknown flag, a missing input) can point at the key.

use std::collections::HashMap;

/// A 1-based line and column in the pipeline file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// The positions of the keys of every block mapping, by key path (`["stages", "train", "args",
/// "epochs"]`). List items appear in a path as `-`. Keys inside flow collections (`{a: 1}`) and
/// block scalars (`|`, `>`) are not seen; [`Outline::find`] then falls back to the nearest key
/// that encloses them.
#[derive(Debug, Default)]
pub struct Outline {
    keys: HashMap<Vec<String>, Pos>,
}

impl Outline {
    /// Scans `text` line by line, tracking the nesting of keys by their indentation.
    pub fn scan(text: &str) -> Outline {
        let mut keys = HashMap::new();
        let mut stack: Vec<(usize, String)> = Vec::new();
        let mut block_scalar_above: Option<usize> = None;
        for (n, line) in text.lines().enumerate() {
            let content = line.trim_start_matches(' ');
            let indent = line.len() - content.len();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            if let Some(col) = block_scalar_above {
                if indent > col {
                    continue;
                }
                block_scalar_above = None;
            }
            if content.starts_with("---") || content.starts_with("...") {
                stack.clear();
                continue;
            }
            let mut col = indent;
            let mut rest = content;
            while rest == "-" || rest.starts_with("- ") {
                stack.retain(|(c, _)| *c < col);
                stack.push((col, "-".to_string()));
                let after = &rest[1..];
                let item = after.trim_start_matches(' ');
                col += 1 + after.len() - item.len();
                rest = item;
            }
            let Some((key, value)) = split_key(rest) else {
                continue;
            };
            stack.retain(|(c, _)| *c < col);
            stack.push((col, key));
            let path: Vec<String> = stack.iter().map(|(_, k)| k.clone()).collect();
            keys.entry(path).or_insert(Pos {
                line: n + 1,
                column: col + 1,
            });
            let value = value.trim_start();
            if value.starts_with('|') || value.starts_with('>') {
                block_scalar_above = Some(col);
            }
        }
        Outline { keys }
    }

    /// The position of the key at `path`, or of the deepest key above it that was seen.
    pub fn find(&self, path: &[&str]) -> Pos {
        let mut owned: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        while !owned.is_empty() {
            if let Some(p) = self.keys.get(&owned) {
                return *p;
            }
            owned.pop();
        }
        Pos { line: 1, column: 1 }
    }

    /// The position of the key at exactly `path`, if it was seen.
    pub fn get(&self, path: &[&str]) -> Option<Pos> {
        let owned: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        self.keys.get(&owned).copied()
    }
}

/// Splits `key: value` (plain, single- or double-quoted key) into the key and the rest after the
/// colon; `None` when the line holds no mapping key.
fn split_key(s: &str) -> Option<(String, &str)> {
    let (key, after) = match s.chars().next()? {
        q @ ('"' | '\'') => {
            let end = s[1..].find(q)? + 1;
            (s[1..end].to_string(), s[end + 1..].trim_start_matches(' '))
        }
        '{' | '[' | '#' | '&' | '*' | '!' | '|' | '>' | '%' | '@' | '`' => return None,
        _ => {
            let mut at = None;
            for (i, c) in s.char_indices() {
                if c == '#' && i > 0 && s[..i].ends_with(' ') {
                    return None;
                }
                if c == ':'
                    && s[i + 1..]
                        .chars()
                        .next()
                        .is_none_or(|n| n == ' ' || n == '\t')
                {
                    at = Some(i);
                    break;
                }
            }
            let i = at?;
            (s[..i].trim_end().to_string(), &s[i..])
        }
    };
    let value = after.strip_prefix(':')?;
    if !(value.is_empty() || value.starts_with([' ', '\t'])) {
        return None;
    }
    Some((key, value))
}

/// The 1-based line and column of byte offset `at` in `text`.
pub fn pos_of_offset(text: &str, at: usize) -> Pos {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Pos { line, column }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
vars:
  data: data/mnist   # a comment
stages:
  teacher:
    kind: train
    foreach:
      - 1
      - 2
    args:
      data: ${data}
      hidden: 32
  teach:
    kind: teach
    args:
      model:
        - path: a.onnx
          mean: 0.1
      'out': x.parquet
  run:
    kind: cmd
    cmd: |
      echo a: b
      python x.py
    outs: [y]
";

    fn at(line: usize, column: usize) -> Pos {
        Pos { line, column }
    }

    #[test]
    fn finds_nested_keys_by_indentation() {
        let o = Outline::scan(TEXT);
        assert_eq!(o.find(&["vars", "data"]), at(2, 3));
        assert_eq!(o.find(&["stages", "teacher", "args", "hidden"]), at(11, 7));
        assert_eq!(o.find(&["stages", "teach", "kind"]), at(13, 5));
        assert_eq!(o.find(&["stages", "teach", "args", "out"]), at(18, 7));
        assert_eq!(
            o.find(&["stages", "teach", "args", "model", "-", "mean"]),
            at(17, 11)
        );
        assert_eq!(o.find(&["stages", "run", "outs"]), at(24, 5));
    }

    #[test]
    fn block_scalars_are_skipped_and_missing_keys_fall_back() {
        let o = Outline::scan(TEXT);
        assert_eq!(o.get(&["stages", "run", "cmd", "echo a"]), None);
        assert_eq!(o.find(&["stages", "teacher", "args", "epochs"]), at(9, 5));
        assert_eq!(o.find(&["nothing"]), at(1, 1));
    }

    #[test]
    fn offsets_become_lines_and_columns() {
        let i = TEXT.find("${data}").unwrap();
        assert_eq!(pos_of_offset(TEXT, i), at(10, 13));
    }
}
