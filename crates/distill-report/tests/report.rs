//! The page against its inputs: every number of the results table equals `metrics.json`, every
//! figure is there, nothing is fetched from elsewhere; bad inputs fail with exit-code-2 errors and
//! leave no page; missing inputs are listed when allowed.
//!
//! `tests/fixtures/smoke/` holds what `pipelines/smoke.yaml` wrote (metrics.json from
//! distill-eval, the training records, specialists.yaml); `metrics-specialists.json` is the same
//! file with a hand-written `"specialists"` result added.

use std::path::{Path, PathBuf};

use distill_report::html::format_field;
use distill_report::{Config, ReportError, run};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/smoke")
        .join(name)
}

fn logs() -> Vec<PathBuf> {
    ["teacher-1", "teacher-2", "student", "baseline"]
        .iter()
        .map(|n| fixture(&format!("{n}.metrics.csv")))
        .collect()
}

fn config(out: &Path) -> Config {
    Config {
        metrics: Some(fixture("metrics.json")),
        train_logs: logs(),
        specialists: Some(fixture("specialists.yaml")),
        out: out.to_path_buf(),
        ..Config::default()
    }
}

/// The `(entry, field, value, text)` of every annotated cell of the results table.
fn table_cells(html: &str) -> Vec<(String, String, Option<String>, String)> {
    let start = html.find("<table id=\"results\"").expect("a results table");
    let end = start + html[start..].find("</table>").expect("the table ends");
    let table = &html[start..end];
    let attr = |tag: &str, name: &str| -> Option<String> {
        let key = format!("{name}=\"");
        let at = tag.find(&key)? + key.len();
        Some(tag[at..at + tag[at..].find('"')?].to_string())
    };
    let mut cells = Vec::new();
    let mut rest = table;
    while let Some(i) = rest.find("<td data-entry=") {
        rest = &rest[i..];
        let close = rest.find('>').expect("tag ends");
        let tag = &rest[..close];
        let text_end = rest.find("</td>").expect("cell ends");
        let text = rest[close + 1..text_end].to_string();
        cells.push((
            attr(tag, "data-entry").expect("entry"),
            attr(tag, "data-field").expect("field"),
            attr(tag, "data-value"),
            text,
        ));
        rest = &rest[text_end..];
    }
    cells
}

#[test]
fn every_number_of_the_table_is_metrics_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.html");
    let mut c = config(&out);
    c.metrics = Some(fixture("metrics-specialists.json"));
    c.paper = vec!["student=74".parse().unwrap()];
    let report = run(&c).unwrap();
    let html = std::fs::read_to_string(&out).unwrap();
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("metrics-specialists.json")).unwrap(),
    )
    .unwrap();
    let entries = json["entries"].as_array().unwrap();
    let cells = table_cells(&html);
    let fields = [
        "parameters",
        "file_bytes",
        "errors",
        "error_rate",
        "nll",
        "ece",
        "agreement",
        "latency_ms_batch1",
        "rows_per_s_batch256",
    ];
    for (k, e) in entries.iter().enumerate() {
        for f in fields {
            let cell = cells
                .iter()
                .find(|(entry, field, _, _)| *entry == k.to_string() && field == f)
                .unwrap_or_else(|| panic!("no cell for entries[{k}].{f}"));
            match e[f].as_f64() {
                Some(expected) => {
                    let value: f64 = cell.2.as_deref().expect("a value").parse().unwrap();
                    assert_eq!(value, expected, "entries[{k}].{f}");
                    assert_eq!(
                        cell.3,
                        format_field(f, expected),
                        "entries[{k}].{f} as printed"
                    );
                }
                None => assert_eq!((cell.2.as_deref(), cell.3.as_str()), (None, "-")),
            }
        }
    }
    let s = &json["specialists"];
    let combined = cells
        .iter()
        .find(|c| c.0 == "specialists" && c.1 == "combined_errors")
        .expect("the specialist system's row");
    assert_eq!(
        combined.2.as_deref().unwrap().parse::<f64>().unwrap(),
        s["combined_errors"].as_f64().unwrap()
    );
    for (k, e) in entries.iter().enumerate() {
        let paper = cells
            .iter()
            .find(|c| c.0 == k.to_string() && c.1 == "paper_errors")
            .expect("a paper column");
        if e["name"] == "student" {
            assert_eq!((paper.2.as_deref(), paper.3.as_str()), (Some("74"), "74"));
        } else {
            assert_eq!(paper.3, "-");
        }
    }
    assert_eq!(cells.len(), entries.len() * (fields.len() + 1) + 2);
    for id in &report.figures {
        let at = html
            .find(&format!(" id=\"{id}\" role=\"img\""))
            .unwrap_or_else(|| panic!("figure {id} is not on the page"));
        let tag = &html[html[..at].rfind('<').unwrap()..at];
        assert!(
            tag.starts_with("<svg "),
            "figure {id} is not an inline <svg>: {tag}"
        );
    }
    for expected in [
        "fig-learning-error",
        "fig-learning-loss",
        "fig-confusion-student",
        "fig-confusion-baseline",
        "fig-confusion-ensemble-arithmetic",
        "fig-per-class",
        "fig-reliability-student",
        "fig-reliability-teacher-1",
        "fig-clusters",
        "fig-tradeoff-size",
        "fig-tradeoff-latency",
        "fig-specialists",
    ] {
        assert!(
            report.figures.iter().any(|f| f == expected),
            "{expected} missing from {:?}",
            report.figures
        );
    }
    assert!(html.contains("id=\"provenance\""));
    let lower = html.to_ascii_lowercase();
    for banned in [
        "http:", "https:", "<script", "<link", "<img", "@import", "url(", "<iframe", "src=",
    ] {
        assert!(!lower.contains(banned), "the page contains `{banned}`");
    }
    assert!(!html.contains("id=\"missing\""));
}

#[test]
fn another_schema_version_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("metrics.json")).unwrap();
    let metrics = dir.path().join("metrics.json");
    std::fs::write(
        &metrics,
        text.replacen("\"schema_version\": 1", "\"schema_version\": 2", 1),
    )
    .unwrap();
    let out = dir.path().join("report.html");
    let mut c = config(&out);
    c.metrics = Some(metrics);
    let e = run(&c).unwrap_err();
    assert!(e.is_user_error());
    let m = e.to_string();
    assert!(
        m.contains("metrics.json")
            && m.contains("`schema_version` is 2")
            && m.contains("reads version 1"),
        "{m}"
    );
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left"
    );
}

#[test]
fn a_damaged_training_record_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("student.metrics.csv");
    let good = std::fs::read_to_string(fixture("student.metrics.csv")).unwrap();
    std::fs::write(&csv, good.replacen(",0.", ",zero.", 1)).unwrap();
    let out = dir.path().join("report.html");
    let mut c = config(&out);
    c.train_logs = vec![csv.clone()];
    let m = run(&c).unwrap_err().to_string();
    assert!(
        m.contains("student.metrics.csv")
            && m.contains("line 2")
            && m.contains("not a finite number"),
        "{m}"
    );
    std::fs::write(&csv, "epoch,loss\n1,0.5\n").unwrap();
    let m = run(&c).unwrap_err().to_string();
    assert!(m.contains("no `train_error` column"), "{m}");
    std::fs::write(&csv, &good[..good.len() - 20]).unwrap();
    let m = run(&c).unwrap_err().to_string();
    assert!(m.contains("cells, expected"), "{m}");
    assert!(!out.exists());
}

#[test]
fn missing_inputs_fail_unless_allowed_and_then_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.html");
    let mut c = config(&out);
    let gone = dir.path().join("student-2.metrics.csv");
    c.train_logs.push(gone.clone());
    c.metrics = Some(dir.path().join("metrics.json"));
    let e = run(&c).unwrap_err();
    assert!(
        matches!(e, ReportError::Missing { .. }) && e.is_user_error(),
        "{e}"
    );
    assert!(e.to_string().contains("--allow-missing"), "{e}");
    assert!(!out.exists());
    c.allow_missing = true;
    let report = run(&c).unwrap();
    assert_eq!(report.missing.len(), 2);
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("id=\"missing\""));
    assert!(html.contains("the eval stage writes it"));
    assert!(html.contains("the train stage of student-2.onnx"));
    assert!(report.figures.iter().any(|f| f == "fig-learning-error"));
    assert!(
        !report
            .figures
            .iter()
            .any(|f| f.starts_with("fig-confusion"))
    );
    let nothing = Config {
        metrics: Some(dir.path().join("none.json")),
        allow_missing: true,
        out: dir.path().join("empty.html"),
        ..Config::default()
    };
    let e = run(&nothing).unwrap_err();
    assert!(matches!(e, ReportError::Nothing(_)), "{e}");
}

/// A pipeline whose first stage failed has written nothing the report draws; with the pipeline
/// file the page still says which stages ran and what is missing, rather than refusing.
#[test]
fn a_pipeline_that_failed_at_its_first_stage_still_gets_its_page() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("p.yaml");
    std::fs::write(
        &pipeline,
        "stages:\n  teacher:\n    kind: train\n    args: {out: t.onnx}\n  eval:\n    kind: eval\n    args: {model: t.onnx, out: metrics.json}\n",
    )
    .unwrap();
    let c = Config {
        metrics: Some(dir.path().join("metrics.json")),
        pipeline: Some(pipeline),
        allow_missing: true,
        out: dir.path().join("report.html"),
        ..Config::default()
    };
    let report = run(&c).unwrap();
    assert_eq!(report.missing.len(), 1);
    let html = std::fs::read_to_string(&c.out).unwrap();
    assert!(
        html.contains("id=\"missing\""),
        "the page lists the missing metrics"
    );
    assert!(
        html.contains("teacher") && html.contains("eval"),
        "the page lists the stages"
    );
}

#[test]
fn the_specialists_result_is_read_tolerantly() {
    let dir = tempfile::tempdir().unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("metrics.json")).unwrap()).unwrap();
    let mut json = json;
    json["specialists"] = serde_json::json!({
        "by_covering": [
            {"covering": 0, "count": 812},
            {"covering": 1, "count": 1188, "generalist_correct": 1100, "combined_correct": 1111}
        ],
        "a_field_from_the_future": true
    });
    let metrics = dir.path().join("metrics.json");
    std::fs::write(&metrics, serde_json::to_string(&json).unwrap()).unwrap();
    let out = dir.path().join("report.html");
    let mut c = config(&out);
    c.metrics = Some(metrics);
    let report = run(&c).unwrap();
    assert!(report.figures.iter().any(|f| f == "fig-specialists"));
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(
        html.contains("+1.00% (1188 rows)"),
        "the gain 11/1100 is drawn"
    );
    assert!(html.contains("n/a (812 rows)"));
}

/// An entry's label metrics are read through the type distill-eval writes them from; a file
/// written before `top_k` and `reliability` were recorded still loads (both empty, and the page
/// leaves the reliability figure out), and a missing required metric is named.
#[test]
fn entries_read_through_the_shared_summary_and_old_files_load() {
    let text = std::fs::read_to_string(fixture("metrics.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let m = distill_report::inputs::read_metrics(&fixture("metrics.json")).unwrap();
    for (e, j) in m.entries.iter().zip(json["entries"].as_array().unwrap()) {
        let written: distill_core::metrics::Summary = serde_json::from_value(j.clone()).unwrap();
        assert_eq!(e.metrics, written, "{}", e.name);
        assert!(!e.metrics.top_k.is_empty() && !e.metrics.reliability.is_empty());
    }

    let dir = tempfile::tempdir().unwrap();
    let mut old = json.clone();
    for e in old["entries"].as_array_mut().unwrap() {
        let e = e.as_object_mut().unwrap();
        e.remove("top_k").unwrap();
        e.remove("reliability").unwrap();
    }
    let path = dir.path().join("metrics.json");
    std::fs::write(&path, serde_json::to_string(&old).unwrap()).unwrap();
    let read = distill_report::inputs::read_metrics(&path).unwrap();
    for (e, new) in read.entries.iter().zip(&m.entries) {
        assert!(e.metrics.top_k.is_empty() && e.metrics.reliability.is_empty());
        assert_eq!(
            (e.metrics.errors, e.metrics.nll, &e.metrics.confusion),
            (new.metrics.errors, new.metrics.nll, &new.metrics.confusion)
        );
    }
    let out = dir.path().join("report.html");
    let mut c = config(&out);
    c.metrics = Some(path.clone());
    let report = run(&c).unwrap();
    assert!(
        !report
            .figures
            .iter()
            .any(|f| f.starts_with("fig-reliability"))
    );

    old["entries"][0].as_object_mut().unwrap().remove("nll");
    std::fs::write(&path, serde_json::to_string(&old).unwrap()).unwrap();
    let e = distill_report::inputs::read_metrics(&path).unwrap_err();
    assert!(e.to_string().contains("nll"), "{e}");
}

/// A point of an SVG figure, in pixels.
type Pixel = (i32, i32);

/// The `(cx, cy)` of every `<circle>` and the two ends of every two-point `<polyline>` of an
/// SVG figure (as plotters' SVG backend writes them).
fn circles_and_segments(svg: &str) -> (Vec<Pixel>, Vec<[Pixel; 2]>) {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let key = format!(" {name}=\"");
        let at = tag.find(&key)? + key.len();
        Some(tag[at..at + tag[at..].find('"')?].to_string())
    };
    let tags = |open: &str| -> Vec<String> {
        svg.match_indices(open)
            .map(|(i, _)| svg[i..i + svg[i..].find('>').expect("the tag ends")].to_string())
            .collect()
    };
    let number = |s: &str| s.trim().parse::<f64>().expect("a number").round() as i32;
    let circles = tags("<circle ")
        .iter()
        .map(|t| {
            (
                number(&attr(t, "cx").expect("cx")),
                number(&attr(t, "cy").expect("cy")),
            )
        })
        .collect();
    let segments = tags("<polyline ")
        .iter()
        .filter_map(|t| {
            let ends: Vec<Pixel> = attr(t, "points")?
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').expect("x,y");
                    (number(x), number(y))
                })
                .collect();
            (ends.len() == 2).then(|| [ends[0], ends[1]])
        })
        .collect();
    (circles, segments)
}

/// The figure `id` of the page.
fn figure<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!(" id=\"{id}\" "))
        .unwrap_or_else(|| panic!("no {id}"));
    let start = html[..at].rfind("<svg").expect("an <svg> element");
    &html[start..start + html[start..].find("</svg>").expect("the <svg> ends")]
}

/// Segments of `svg` that join two of its points.
fn joining_lines(svg: &str) -> usize {
    let (circles, segments) = circles_and_segments(svg);
    let near = |a: Pixel, b: Pixel| (a.0 - b.0).abs() <= 1 && (a.1 - b.1).abs() <= 1;
    segments
        .iter()
        .filter(|[a, b]| {
            !near(*a, *b)
                && circles.iter().any(|&c| near(c, *a))
                && circles.iter().any(|&c| near(c, *b))
        })
        .count()
}

/// Quantised variants of the student (written by distill-eval with `variant_of`) are joined to
/// it in both cost figures, linked by the name eval recorded or only by the float file's
/// SHA-256, labelled by their method; the table gains the agreement column; a metrics.json
/// without `variant_of` (the smoke fixture) renders with neither.
#[test]
fn quantised_variants_are_joined_to_their_float_model() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("metrics.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();

    let out = dir.path().join("old.html");
    run(&config(&out)).unwrap();
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(!html.contains("float agree %"));
    for id in ["fig-tradeoff-size", "fig-tradeoff-latency"] {
        assert_eq!(joining_lines(figure(&html, id)), 0, "{id}");
    }

    let entries = json["entries"].as_array_mut().unwrap();
    let student = entries[0].clone();
    assert_eq!(student["name"], "student");
    let sha = student["sha256"].clone();
    let variant = |name: &str, method: &str, bytes: u64, source: serde_json::Value| {
        let mut e = student.clone();
        e["name"] = name.into();
        e["sha256"] = format!("{name}-sha").into();
        e["file_bytes"] = bytes.into();
        e["errors"] = (student["errors"].as_u64().unwrap() + 2).into();
        e["error_rate"] = (student["error_rate"].as_f64().unwrap() * 1.1).into();
        e["latency_ms_batch1"] = (student["latency_ms_batch1"].as_f64().unwrap() / 3.0).into();
        e["variant_of"] = serde_json::json!({
            "method": method,
            "source_sha256": sha,
            "source": source,
            "agreement": 0.9965,
            "max_abs_diff": 0.3389,
            "max_abs_diff_of": "logits",
        });
        e
    };
    entries.insert(
        1,
        variant("student.int8", "static-int8", 92_000, "student".into()),
    );
    // Linked by the SHA-256 only, with a method that needs escaping.
    entries.insert(
        2,
        variant("student.fp16", "fp16 <&>", 180_000, serde_json::Value::Null),
    );
    let path = dir.path().join("metrics.json");
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
    let out = dir.path().join("report.html");
    let mut c = config(&out);
    c.metrics = Some(path);
    let report = run(&c).unwrap();
    let html = std::fs::read_to_string(&out).unwrap();
    for id in ["fig-tradeoff-size", "fig-tradeoff-latency"] {
        assert!(report.figures.iter().any(|f| f == id));
        let svg = figure(&html, id);
        assert_eq!(joining_lines(svg), 2, "{id}: {svg}");
        assert!(svg.contains("static-int8"), "{id}");
        assert!(svg.contains("fp16 &lt;&amp;&gt;"), "{id}");
        assert!(!svg.contains("<&>"), "{id}");
    }
    assert!(html.contains("float agree %"));
    let cells = table_cells(&html);
    let find = |entry: &str, field: &str| {
        cells
            .iter()
            .find(|c| c.0 == entry && c.1 == field)
            .unwrap_or_else(|| panic!("no {field} cell for entry {entry}"))
            .clone()
    };
    let agree = find("1", "float_agreement");
    assert_eq!(
        (agree.2.as_deref(), agree.3.as_str()),
        (Some("0.9965"), "99.65")
    );
    assert_eq!(find("1", "max_abs_diff").3, "0.3389 logit");
    assert_eq!(find("0", "float_agreement").3, "-");
    assert_eq!(find("0", "max_abs_diff").3, "-");
}
