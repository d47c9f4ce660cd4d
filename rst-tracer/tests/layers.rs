//! The userspace crate's layers: every module file under `src/` sits in one layer, and imports
//! only from the layers below it, or from its own layer without a cycle. A new module fails
//! here until it is placed in [`LAYERS`].
//!
//! Imports are the `crate::` and `super::` paths in the code (comments and strings left out):
//! `use` trees with nested `{...}` blocks and paths written inline. A path names the longest
//! module it starts with (`crate::forensics::Case` names `forensics`, `crate::forensics::ttl::x`
//! names `forensics::ttl`); `super::` in a folder's file names that folder's module, and inside
//! an inline module (`mod tests`) first the file itself. A folder's `mod.rs` reaching into its own
//! children by their bare names (`ttl::check`) is the folder's structure, not an import.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// The layers, bottom first: each module file (relative to `src/`) and the layer it is in.
const LAYERS: &[(&str, &[&str])] = &[
    // Wire types and formatting helpers: names, payload views, times, JSON text; and the
    // README's reference tables, which the unit tests read (test builds only).
    ("wire", &["wire/mod.rs", "wire/json.rs", "readme.rs"]),
    // Decoding the rings, and flow state.
    (
        "decode and flow state",
        &["event.rs", "flows.rs", "tracepoints.rs", "counters.rs"],
    ),
    // Pure functions of a case: findings and the verdict.
    (
        "forensics",
        &[
            "forensics/mod.rs",
            "forensics/aftermath.rs",
            "forensics/codes.rs",
            "forensics/duplicate.rs",
            "forensics/explain.rs",
            "forensics/fingerprint.rs",
            "forensics/ipid.rs",
            "forensics/kernel.rs",
            "forensics/sequence.rs",
            "forensics/silence.rs",
            "forensics/timing.rs",
            "forensics/ttl.rs",
        ],
    ),
    // Events -> flow table -> settle window -> verdict -> records, and the summaries.
    (
        "pipeline",
        &[
            "pipeline/mod.rs",
            "pipeline/record.rs",
            "pipeline/settle.rs",
            "pipeline/summary.rs",
        ],
    ),
    // Sinks: read the records the pipeline hands them.
    (
        "sinks",
        &[
            "report/mod.rs",
            "report/context.rs",
            "report/json.rs",
            "report/metrics.rs",
            "report/pcapng.rs",
            "report/text.rs",
        ],
    ),
    // Sources and the command line.
    (
        "sources and CLI",
        &[
            "source/mod.rs",
            "source/capture.rs",
            "source/link.rs",
            "source/live.rs",
            "source/prog_run.rs",
            "source/replay.rs",
            "attach.rs",
            "cli.rs",
            "exporter.rs",
            "iface.rs",
            "object.rs",
            "privileges.rs",
            "lib.rs",
            "main.rs",
        ],
    ),
];

/// A module's path from the crate root (`forensics::ttl`; `lib.rs` and `main.rs` are the roots).
fn module_of(file: &str) -> Vec<String> {
    let stem = file.strip_suffix(".rs").expect("a .rs file");
    let mut parts: Vec<String> = stem.split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        parts.clear();
    }
    parts
}

/// The code of `text` with comments blanked and string and char literals emptied, so that
/// neither can hold a path; lengths and line breaks are kept.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, c: u8| out.push(if c == b'\n' { b'\n' } else { b' ' });
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    out.extend_from_slice(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if b[i] == b'r'
            && matches!(b.get(i + 1), Some(b'"' | b'#'))
            && (!ident(b, i) || (b[i - 1] == b'b' && !ident(b, i - 1)))
        {
            // A raw string: r"...", r#"..."#.
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            if b.get(i + 1 + hashes) != Some(&b'"') {
                out.push(b[i]);
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            out.push(b'"');
            i += 2 + hashes;
            while i < b.len() && !b[i..].starts_with(&close) {
                blank(&mut out, b[i]);
                i += 1;
            }
            out.push(b'"');
            i += close.len();
        } else if b[i] == b'"' {
            out.push(b'"');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    blank(&mut out, b[i]);
                    i += 1;
                }
                if i < b.len() {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
            out.push(b'"');
            i += 1;
        } else if b[i] == b'\'' && is_char_literal(b, i) {
            // `'x'`, or an escape: `'\n'`, `'\''`, `'\u{7f}'` (its closing quote comes after the
            // escaped character).
            let end = if b[i + 1] == b'\\' {
                (i + 3..b.len())
                    .find(|&k| b[k] == b'\'')
                    .unwrap_or(b.len() - 1)
            } else {
                i + 2
            };
            out.push(b'\'');
            out.extend(std::iter::repeat_n(b' ', end - i - 1));
            out.push(b'\'');
            i = end + 1;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("only ASCII replaced")
}

/// Whether byte `i` continues an identifier (so an `r` there is not a raw string's).
fn ident(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// Whether the `'` at `i` opens a char literal (`'a'`, `'\n'`, `'"'`) rather than a lifetime.
fn is_char_literal(b: &[u8], i: usize) -> bool {
    match b.get(i + 1) {
        Some(b'\\') => true,
        Some(_) => b.get(i + 2) == Some(&b'\''),
        None => false,
    }
}

/// The paths of a `use` tree (`a::{b, c::{d as e}}` -> `a::b`, `a::c::d`), each as segments.
fn use_paths(tree: &str) -> Vec<Vec<String>> {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = Vec::new();
    expand(&tree, &mut Vec::new(), &mut out);
    out
}

fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim().trim_end_matches("::");
        let body = tree[open + 1..tree.rfind('}').expect("a closed use block")].to_string();
        let depth = prefix.len();
        prefix.extend(
            head.split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
        let mut level = 0;
        let mut start = 0;
        for (k, c) in body.char_indices() {
            match c {
                '{' => level += 1,
                '}' => level -= 1,
                ',' if level == 0 => {
                    expand(&body[start..k], prefix, out);
                    start = k + 1;
                }
                _ => {}
            }
        }
        expand(&body[start..], prefix, out);
        prefix.truncate(depth);
    } else if !tree.is_empty() {
        let path = tree.split(" as ").next().expect("a path").trim();
        let mut full = prefix.clone();
        full.extend(path.split("::").map(|s| s.trim().to_string()));
        out.push(full);
    }
}

/// How many inline modules (`mod tests { ... }`) enclose each byte of `code`.
fn inline_depths(code: &str) -> Vec<usize> {
    let b = code.as_bytes();
    let mut depths = vec![0; b.len()];
    // Brace depth at which each open inline module began.
    let mut open: Vec<usize> = Vec::new();
    let mut braces = 0usize;
    let mut pending_mod = false;
    let mut i = 0;
    while i < b.len() {
        let word_start = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if word_start && b[i..].starts_with(b"mod ") {
            pending_mod = true;
        }
        match b[i] {
            b';' => pending_mod = false,
            b'{' => {
                braces += 1;
                if pending_mod {
                    open.push(braces);
                    pending_mod = false;
                }
            }
            b'}' => {
                if open.last() == Some(&braces) {
                    open.pop();
                }
                braces = braces.saturating_sub(1);
            }
            _ => {}
        }
        depths[i] = open.len();
        i += 1;
    }
    depths
}

/// One import: the module it names, and the path as written.
struct Import {
    module: Vec<String>,
    written: String,
}

/// The imports of the module `me` (from file `file`) whose code is `code`: every `crate::` and
/// `super::` path, each resolved to the longest known module it starts with.
fn imports(me: &[String], code: &str, modules: &BTreeSet<Vec<String>>) -> Vec<Import> {
    let depths = inline_depths(code);
    let mut paths: Vec<(usize, Vec<String>)> = Vec::new();
    let b = code.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let starts_word = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        let rest = &code[i..];
        if starts_word && rest.starts_with("use ") {
            let end = rest.find(';').expect("a use ends with ;");
            let tree = rest[4..end].trim();
            if tree.starts_with("crate::") || tree.starts_with("super::") {
                for p in use_paths(tree) {
                    paths.push((i, p));
                }
            }
            i += end + 1;
            continue;
        }
        let after_colons = i >= 2 && &b[i - 2..i] == b"::";
        if starts_word
            && !after_colons
            && (rest.starts_with("crate::") || rest.starts_with("super::"))
        {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let path: Vec<String> = rest[..len]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            paths.push((i, path));
            i += len;
            continue;
        }
        i += 1;
    }
    let mut out = Vec::new();
    for (at, path) in paths {
        let written = path.join("::");
        let (base, rest): (Vec<String>, &[String]) = if path[0] == "crate" {
            (Vec::new(), &path[1..])
        } else {
            let supers = path.iter().take_while(|s| *s == "super").count();
            // `super` inside an inline module climbs out of it first, staying in this file.
            let Some(ups) = supers.checked_sub(depths[at]) else {
                continue;
            };
            // `super` of `forensics::ttl` (forensics/ttl.rs) is `forensics`, of `forensics`
            // (forensics/mod.rs) the crate root.
            let mut base = me.to_vec();
            for _ in 0..ups {
                base.pop();
            }
            (base, &path[supers..])
        };
        let mut full = base;
        full.extend(rest.iter().cloned());
        let module = (0..=full.len())
            .rev()
            .map(|k| full[..k].to_vec())
            .find(|m| modules.contains(m))
            .unwrap_or_default();
        if module != me {
            out.push(Import { module, written });
        }
    }
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, relative to `src/`, with `/` separators.
fn rust_files(dir: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(src()).expect("under src");
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The problems of the crate's files against [`LAYERS`]: unplaced files, upward imports, and
/// cycles within a layer.
fn problems(files: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut layer_of: BTreeMap<&str, usize> = BTreeMap::new();
    for (n, (_, members)) in LAYERS.iter().enumerate() {
        for f in *members {
            assert!(layer_of.insert(f, n).is_none(), "{f} is in two layers");
        }
    }
    for f in layer_of.keys() {
        if !files.contains_key(*f) {
            problems.push(format!("{f} is in LAYERS but not in src/"));
        }
    }
    let modules: BTreeSet<Vec<String>> = files.keys().map(|f| module_of(f)).collect();
    let file_of: BTreeMap<Vec<String>, &str> = files
        .keys()
        .filter(|f| f.as_str() != "main.rs")
        .map(|f| (module_of(f), f.as_str()))
        .collect();
    // Same-layer edges, for the cycle check.
    let mut edges: BTreeMap<&str, BTreeMap<&str, String>> = BTreeMap::new();
    for (file, text) in files {
        let Some(&mine) = layer_of.get(file.as_str()) else {
            problems.push(format!(
                "{file} is in no layer: place it in LAYERS in tests/layers.rs"
            ));
            continue;
        };
        let me = module_of(file);
        for import in imports(&me, &code_only(text), &modules) {
            let Some(target) = file_of.get(&import.module) else {
                continue;
            };
            let Some(&theirs) = layer_of.get(target) else {
                continue;
            };
            if theirs > mine {
                problems.push(format!(
                    "{file} (layer {}) imports {} from {target} (layer {}, above it)",
                    LAYERS[mine].0, import.written, LAYERS[theirs].0
                ));
            } else if theirs == mine {
                edges
                    .entry(file.as_str())
                    .or_default()
                    .entry(target)
                    .or_insert(import.written);
            }
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|w| format!("{} ({})", w[0], edges[w[0]][w[1]]))
            .collect();
        problems.push(format!(
            "import cycle within a layer: {} -> {}",
            steps.join(" -> "),
            cycle[0]
        ));
    }
    problems
}

/// A cycle in `edges`, as the files along it with the first repeated at the end.
fn find_cycle<'a>(edges: &BTreeMap<&'a str, BTreeMap<&'a str, String>>) -> Option<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit<'a>(
        node: &'a str,
        edges: &BTreeMap<&'a str, BTreeMap<&'a str, String>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        marks.insert(node, Mark::Open);
        stack.push(node);
        for next in edges.get(node).into_iter().flat_map(|e| e.keys()) {
            match marks.get(next) {
                Some(Mark::Open) => {
                    let from = stack.iter().position(|n| n == next).expect("on the stack");
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next);
                    return Some(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(c) = visit(next, edges, marks, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        marks.insert(node, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in edges.keys() {
        if !marks.contains_key(node) {
            if let Some(c) = visit(node, edges, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn crate_files() -> BTreeMap<String, String> {
    let mut names = Vec::new();
    rust_files(&src(), &mut names);
    names
        .into_iter()
        .map(|f| {
            let text = fs::read_to_string(src().join(&f)).expect("a readable source file");
            (f, text)
        })
        .collect()
}

#[test]
fn every_module_imports_only_from_below_or_its_own_layer_without_cycles() {
    let problems = problems(&crate_files());
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_check_sees_upward_imports_cycles_and_unplaced_files() {
    let mut files = crate_files();
    let add = |files: &mut BTreeMap<String, String>, file: &str, code: &str| {
        files.get_mut(file).expect("a crate file").push_str(code);
    };
    // An upward import in a nested block, an inline path, and one through `super` in a test.
    let mut up = files.clone();
    add(
        &mut up,
        "flows.rs",
        "\nuse crate::{event::Seen, pipeline::{summary::SummaryWindow as W}};\n",
    );
    add(
        &mut up,
        "wire/json.rs",
        "\nfn f() { crate::report::text::duration(1.0); }\n",
    );
    add(
        &mut up,
        "forensics/ttl.rs",
        "\n#[cfg(test)]\nmod more {\n    use super::super::super::pipeline::Sink;\n}\n",
    );
    let found = problems(&up);
    for expected in [
        "flows.rs (layer decode and flow state) imports crate::pipeline::summary::SummaryWindow from pipeline/summary.rs",
        "wire/json.rs (layer wire) imports crate::report::text::duration from report/text.rs",
        "forensics/ttl.rs (layer forensics) imports super::super::super::pipeline::Sink from pipeline/mod.rs",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(expected)),
            "{expected}\nnot in:\n{}",
            found.join("\n")
        );
    }
    assert_eq!(found.len(), 3, "{found:#?}");
    // Paths in comments and strings are not imports.
    let mut quiet = files.clone();
    add(
        &mut quiet,
        "event.rs",
        "\n// crate::report::Format\n/* use crate::pipeline::Sink; */\nconst S: &str = \"crate::cli::Cli\";\n",
    );
    assert!(problems(&quiet).is_empty(), "{:#?}", problems(&quiet));
    // A cycle within a layer.
    let mut cycle = files.clone();
    add(&mut cycle, "event.rs", "\nuse crate::flows::FlowTable;\n");
    let found = problems(&cycle);
    assert!(
        found.iter().any(|p| p.starts_with(
            "import cycle within a layer: event.rs (crate::flows::FlowTable) -> flows.rs"
        )),
        "{found:#?}"
    );
    // A file in no layer.
    files.insert("newcomer.rs".into(), String::new());
    assert_eq!(
        problems(&files),
        ["newcomer.rs is in no layer: place it in LAYERS in tests/layers.rs"]
    );
}
