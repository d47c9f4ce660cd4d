//! The JSON contract: the schemas in `schema/` (draft 2020-12), loaded with the `jsonschema`
//! crate, and a check of a record against the schema of its `type`.

use std::{collections::BTreeMap, path::PathBuf};

use jsonschema::{Retrieve, Uri, Validator};
use serde_json::Value;

/// The schema file of each record type.
pub const FILES: [(&str, &str); 7] = [
    ("reset", "reset.json"),
    ("after_reset", "after_reset.json"),
    ("retransmit", "sample.json"),
    ("ttl_change", "sample.json"),
    ("silence", "silence.json"),
    ("summary", "summary.json"),
    ("stats", "stats.json"),
];

/// The repository's `schema/` directory.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schema")
}

/// Reads schema file `name` from [`dir`].
pub fn read(name: &str) -> Value {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Serves the schemas' relative references (`defs.json#/...`) from [`dir`], and nothing else.
struct SchemaDir;

impl Retrieve for SchemaDir {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri.as_str().rsplit('/').next().unwrap_or_default();
        let path = dir().join(name);
        if !path.is_file() {
            return Err(format!("{uri} is not one of schema/'s files").into());
        }
        Ok(read(name))
    }
}

/// A validator for every record type.
pub struct Schemas {
    by_type: BTreeMap<&'static str, Validator>,
}

impl Schemas {
    /// Loads and compiles every schema (a schema that is not valid draft 2020-12 fails here).
    pub fn load() -> Schemas {
        let by_type = FILES
            .iter()
            .map(|(kind, file)| {
                let validator = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft202012)
                    .with_base_uri(format!("file:///rst-tracer/schema/{file}"))
                    .with_retriever(SchemaDir)
                    .should_validate_formats(true)
                    .build(&read(file))
                    .unwrap_or_else(|e| panic!("schema/{file} does not compile: {e}"));
                (*kind, validator)
            })
            .collect();
        Schemas { by_type }
    }

    /// Checks `record` against the schema of its `type`; says what is wrong, with where.
    pub fn check(&self, record: &Value) -> Result<(), String> {
        let kind = record["type"].as_str().unwrap_or("(no type)");
        let Some(validator) = self.by_type.get(kind) else {
            return Err(format!("no schema for records of type {kind:?}"));
        };
        let errors: Vec<String> = validator
            .iter_errors(record)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("{kind}: {}", errors.join("; ")))
        }
    }

    /// Checks every record, and that each of `must_have` types is among them; returns how many
    /// records of each type were checked.
    pub fn check_all(&self, records: &[Value], must_have: &[&str]) -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        let wrong: Vec<String> = records
            .iter()
            .filter_map(|r| {
                *seen
                    .entry(r["type"].as_str().unwrap_or("?").to_string())
                    .or_insert(0) += 1;
                self.check(r).err().map(|e| format!("{e}\n  in {r}"))
            })
            .take(5)
            .collect();
        assert!(
            wrong.is_empty(),
            "records outside the schema:\n{}",
            wrong.join("\n")
        );
        for kind in must_have {
            assert!(seen.contains_key(*kind), "no {kind} record among {seen:?}");
        }
        seen
    }
}
