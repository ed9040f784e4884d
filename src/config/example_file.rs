//! `config.toml.example` is the one list of keys: every key the service accepts is there with its
//! default, every key there is accepted, and the defaults written there are the code's. A value
//! marked `# example` (a URL, an origin) is one to replace, not a default, and is exempt from the
//! last check only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::{Settings, SettingsSources};

const EXAMPLE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml.example");

fn example_text() -> String {
    std::fs::read_to_string(EXAMPLE_PATH).expect("config.toml.example is readable")
}

/// Every leaf value under its dotted key (`session.jwt.cookie`).
fn flatten(table: &toml::Table, prefix: &str, into: &mut BTreeMap<String, toml::Value>) {
    for (key, value) in table {
        let dotted = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => flatten(inner, &dotted, into),
            leaf => {
                into.insert(dotted, leaf.clone());
            }
        }
    }
}

fn keys_of(table: &toml::Table) -> BTreeMap<String, toml::Value> {
    let mut keys = BTreeMap::new();
    flatten(table, "", &mut keys);
    keys
}

/// The code's defaults, as the file would write them (secrets as empty strings).
fn defaults() -> BTreeMap<String, toml::Value> {
    keys_of(&toml::Table::try_from(Settings::default()).expect("the defaults serialize"))
}

fn example() -> BTreeMap<String, toml::Value> {
    keys_of(&toml::from_str(&example_text()).expect("config.toml.example is TOML"))
}

/// The keys whose value the file marks as an example: `key = value  # example: …`.
fn marked_as_example(text: &str) -> BTreeSet<String> {
    let mut section = String::new();
    let mut marked = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[') {
            section = header
                .split(']')
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned();
            continue;
        }
        let Some((key, rest)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() || key.starts_with('#') {
            continue;
        }
        let comment = rest.split_once(" # ").map(|(_, comment)| comment.trim());
        if comment.is_some_and(|comment| comment.starts_with("example")) {
            marked.insert(format!("{section}.{key}"));
        }
    }
    marked
}

#[test]
fn every_key_the_service_accepts_is_in_the_example_and_no_other() {
    let defaults = defaults();
    let example = example();
    let missing: Vec<_> = defaults
        .keys()
        .filter(|key| !example.contains_key(*key))
        .collect();
    let unknown: Vec<_> = example
        .keys()
        .filter(|key| !defaults.contains_key(*key))
        .collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "config.toml.example lacks {missing:?} and has keys the service does not take: {unknown:?}"
    );
    // And the service's own loader takes the file as it is.
    let sources = SettingsSources {
        file: Some(Path::new(EXAMPLE_PATH).to_path_buf()),
        ..SettingsSources::default()
    };
    if let Err(error) = Settings::load_with_env(&sources, []) {
        panic!("config.toml.example does not load: {error}");
    }
}

#[test]
fn the_defaults_written_in_the_example_are_the_codes() {
    let defaults = defaults();
    let marked = marked_as_example(&example_text());
    // The marking itself is checked: the example values are the ones a partner must replace.
    assert_eq!(
        marked.iter().map(String::as_str).collect::<Vec<_>>(),
        ["browser.allowed_origins", "proof.base_url", "proof.origin"],
    );
    let differing: Vec<String> = example()
        .into_iter()
        .filter(|(key, _)| !marked.contains(key))
        .filter_map(|(key, written)| {
            let default = defaults.get(&key)?;
            (default != &written).then(|| format!("{key}: written {written}, the code's {default}"))
        })
        .collect();
    assert!(differing.is_empty(), "{differing:#?}");
}

#[test]
fn a_value_marked_example_is_recognised_and_nothing_else() {
    let text = "[a]\nx = \"https://e.example\" # example: replace it\ny = 1 # the default\n\
                # z = 2 # example, but commented out\n[b.c]\nw = [] # example list\n";
    assert_eq!(
        marked_as_example(text).into_iter().collect::<Vec<_>>(),
        ["a.x", "b.c.w"]
    );
}
