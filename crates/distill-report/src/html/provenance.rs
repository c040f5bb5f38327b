//! The page's last section: where every input came from (files, hashes, versions, commands).

use std::fmt::Write as _;
use std::path::Path;

use super::{Builder, escape};
use crate::Inputs;

fn kv(b: &mut Builder, key: &str, value: &str) {
    let _ = writeln!(
        b.body,
        "<tr><th class=\"text\">{}</th><td>{value}</td></tr>",
        escape(key)
    );
}

fn hash_of(path: &Path) -> String {
    distill_core::sha256_file(path).unwrap_or_else(|_| "unreadable".into())
}

pub(super) fn provenance(b: &mut Builder, inputs: &Inputs) {
    b.push("<section id=\"provenance\"><h2>Provenance</h2>\n<table class=\"kv\"><tbody>\n");
    kv(b, "distill-report", &escape(distill_core::TOOL_VERSION));
    if let Some(crate::PipelineFiles {
        path: p,
        sha256: hash,
        lock,
    }) = &inputs.pipeline
    {
        kv(
            b,
            "pipeline",
            &format!(
                "<code>{}</code> <span class=\"hash\">{}</span>",
                escape(&p.display().to_string()),
                escape(hash)
            ),
        );
        match lock {
            Some((l, h)) => kv(
                b,
                "lock",
                &format!(
                    "<code>{}</code> <span class=\"hash\">{}</span>",
                    escape(&l.display().to_string()),
                    escape(h)
                ),
            ),
            None => kv(b, "lock", "none (the pipeline has not run)"),
        }
    }
    if let Some((p, m)) = &inputs.metrics {
        kv(
            b,
            "metrics",
            &format!(
                "<code>{}</code> <span class=\"hash\">{}</span> (distill-eval {}, schema {})",
                escape(&p.display().to_string()),
                escape(&hash_of(p)),
                escape(&m.tool_version),
                m.schema_version
            ),
        );
        kv(
            b,
            "evaluation data",
            &format!(
                "{} ({}), {} rows, {} classes, provider {}",
                escape(&m.dataset),
                escape(&m.transform),
                m.rows,
                m.classes,
                escape(&m.provider)
            ),
        );
    }
    if let Some((p, s)) = &inputs.store {
        kv(
            b,
            "soft targets",
            &format!(
                "<code>{}</code>: {} ({}), {} classes{}, by distill-teach {}",
                escape(&p.display().to_string()),
                escape(&s.dataset),
                escape(&s.transform),
                s.classes,
                match s.top_k {
                    Some(k) => format!(
                        " (top-{k} layout: the {k} largest logits per row and teacher, the rest as \
                         one mass)"
                    ),
                    None => String::new(),
                },
                escape(&s.tool_version)
            ),
        );
    }
    if let Some((p, m)) = &inputs.manifest {
        kv(
            b,
            "specialists manifest",
            &format!(
                "<code>{}</code> <span class=\"hash\">{}</span> (distill {})",
                escape(&p.display().to_string()),
                escape(&hash_of(p)),
                escape(&m.tool_version)
            ),
        );
    }
    if let Some((p, _)) = &inputs.specialists {
        kv(
            b,
            "subsets",
            &format!(
                "<code>{}</code> <span class=\"hash\">{}</span>",
                escape(&p.display().to_string()),
                escape(&hash_of(p))
            ),
        );
    }
    b.push("</tbody></table>\n");
    if let Some((_, s)) = &inputs.store {
        b.push("<h3>Teachers</h3><table><thead><tr><th class=\"text\">teacher</th><th class=\"text\">file</th><th class=\"text\">output</th><th class=\"text\">SHA-256</th></tr></thead><tbody>\n");
        for t in &s.teachers {
            let _ = writeln!(
                b.body,
                "<tr><td>{}</td><td class=\"text\"><code>{}</code></td><td class=\"text\">{}</td><td class=\"hash\">{}</td></tr>",
                escape(&t.name),
                escape(&t.path),
                t.kind,
                escape(&t.sha256)
            );
        }
        b.push("</tbody></table>\n");
    }
    if let Some((_, m)) = &inputs.metrics {
        b.push("<h3>Models evaluated</h3><table><thead><tr><th class=\"text\">model</th><th class=\"text\">file</th><th class=\"text\">SHA-256</th></tr></thead><tbody>\n");
        for e in m.entries.iter().filter(|e| !e.is_ensemble()) {
            let _ = writeln!(
                b.body,
                "<tr><td>{}</td><td class=\"text\"><code>{}</code></td><td class=\"hash\">{}</td></tr>",
                escape(&e.name),
                escape(e.path.as_deref().unwrap_or("-")),
                escape(e.sha256.as_deref().unwrap_or("-"))
            );
        }
        b.push("</tbody></table>\n");
    }
    if !inputs.stages.is_empty() {
        b.push("<h3>Stages</h3><table><thead><tr><th class=\"text\">stage</th><th class=\"text\">kind</th><th class=\"text\">state</th><th>seconds</th><th class=\"text\">command</th></tr></thead><tbody>\n");
        for s in &inputs.stages {
            // A report stage is `started` in the lock while it draws this page.
            let drawing = s.kind == "report" && s.state == "started";
            let class = match s.state.as_str() {
                "complete" => "state-complete",
                _ if drawing => "state-complete",
                "started" => "state-started",
                _ => "state-never",
            };
            let state = if drawing {
                "drawing this page"
            } else {
                s.state.as_str()
            };
            let _ = writeln!(
                b.body,
                "<tr><td>{}</td><td class=\"text\">{}</td><td class=\"text {class}\">{}</td><td>{}</td><td class=\"command hash\">{}</td></tr>",
                escape(&s.name),
                escape(&s.kind),
                escape(state),
                s.seconds.map(|v| format!("{v:.1}")).unwrap_or_default(),
                escape(&s.command)
            );
        }
        b.push("</tbody></table>\n");
    }
    b.push("</section>\n");
}
