//! Every relative link in README.md, BENCHMARKS.md and docs/*.md points somewhere: to a file or
//! folder of the repository, and, when it names a `#anchor` in a markdown file, to a heading there.
//! Anchors follow GitHub's rules, so a link that works here works on GitHub.
//!
//! Only std: the test reads files and nothing of the service, so it builds in moments.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The anchor GitHub gives a heading: lowercase, every space a `-`, and every other character
/// that is not a letter, a digit, `-` or `_` dropped (backticks, colons, quotes, dots, slashes…).
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .flat_map(char::to_lowercase)
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The markdown's text with fenced code blocks and inline code spans blanked out (newlines kept,
/// so offsets still give the right line), since nothing in code is a link.
fn without_code(markdown: &str) -> String {
    blank_code_spans(&without_fences(markdown))
}

/// The markdown's text with its fenced code blocks blanked out, newlines kept: a `#` line in a
/// fence is no heading.
fn without_fences(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len());
    let mut fence: Option<String> = None;
    for line in markdown.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let marker: String = trimmed
            .chars()
            .take_while(|&c| c == '`' || c == '~')
            .collect();
        match &fence {
            Some(open) => {
                if marker.len() >= open.len() && marker.starts_with(&open[..1]) {
                    fence = None;
                }
                out.push_str(if line.ends_with('\n') { "\n" } else { "" });
            }
            None if marker.len() >= 3
                && marker.chars().all(|c| c == marker.as_bytes()[0] as char) =>
            {
                fence = Some(marker);
                out.push_str(if line.ends_with('\n') { "\n" } else { "" });
            }
            None => out.push_str(line),
        }
    }
    out
}

/// Blanks each inline code span: a run of backticks up to the next run of the same length within
/// the same paragraph. A run with no partner is left as text, as markdown does.
fn blank_code_spans(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = chars.clone();
    let run_at = |i: usize| chars[i..].iter().take_while(|&&c| c == '`').count();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            i += 1;
            continue;
        }
        let open = run_at(i);
        let mut j = i + open;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '\n' && chars.get(j + 1) == Some(&'\n') {
                break;
            }
            if chars[j] == '`' {
                let run = run_at(j);
                if run == open {
                    close = Some(j + run);
                    break;
                }
                j += run;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                for c in &mut out[i..end] {
                    if *c != '\n' {
                        *c = ' ';
                    }
                }
                i = end;
            }
            None => i += open,
        }
    }
    out.into_iter().collect()
}

/// Every anchor a markdown file offers: one per ATX heading (`#` to `######`) outside code, a
/// repeated heading getting `-1`, `-2`… as on GitHub. A link in a heading counts by its text, and
/// a code span by what it holds.
fn anchors(markdown: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for line in without_fences(markdown).lines() {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let text = link_texts_only(line[hashes..].trim().trim_end_matches('#').trim());
        let base = anchor(&text);
        let mut candidate = base.clone();
        let mut n = 0;
        while seen.contains(&candidate) {
            n += 1;
            candidate = format!("{base}-{n}");
        }
        seen.insert(candidate);
    }
    seen
}

/// `[text](target)` becomes `text`.
fn link_texts_only(heading: &str) -> String {
    let mut out = String::new();
    let mut rest = heading;
    while let Some(start) = rest.find("](") {
        let Some(end) = rest[start..].find(')') else {
            break;
        };
        out.push_str(&rest[..start].replacen('[', "", 1));
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

/// The targets of the links outside code, each with its line: inline links and images
/// (`[text](target "title")`, the text possibly over several lines) and reference definitions
/// (`[name]: target`).
fn links(markdown: &str) -> Vec<(usize, String)> {
    let text = without_code(markdown);
    let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("](") {
        let start = from + at + 2;
        let Some(len) = text[start..].find(')') else {
            break;
        };
        let inside = text[start..start + len].trim();
        let target = inside.split_whitespace().next().unwrap_or("");
        let target = target.trim_start_matches('<').trim_end_matches('>');
        found.push((line_of(start), target.to_string()));
        from = start + len;
    }
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix('[')
            && let Some(close) = rest.find("]:")
            && !rest[..close].contains('[')
            && let Some(target) = rest[close + 2..].split_whitespace().next()
        {
            found.push((index + 1, target.trim_matches(['<', '>']).to_string()));
        }
    }
    found
}

/// A link that leaves the repository (`https:`, `mailto:`…) is not ours to check.
fn is_external(target: &str) -> bool {
    match target.find(':') {
        Some(colon) => {
            let scheme = &target[..colon];
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
                && !target.starts_with('#')
        }
        None => false,
    }
}

/// What is wrong with the links of one markdown file, one line per broken link.
fn broken_links(file: &Path) -> Vec<String> {
    let markdown = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let dir = file.parent().expect("a file is in a folder");
    let mut broken = Vec::new();
    for (line, target) in links(&markdown) {
        if target.is_empty() {
            broken.push(format!("{}:{line}: an empty link", file.display()));
            continue;
        }
        if is_external(&target) {
            continue;
        }
        let (path, fragment) = match target.split_once('#') {
            Some((path, fragment)) => (path, Some(fragment)),
            None => (target.as_str(), None),
        };
        let resolved: PathBuf = if path.is_empty() {
            file.to_path_buf()
        } else {
            dir.join(path)
        };
        if !resolved.exists() {
            broken.push(format!(
                "{}:{line}: {target}: there is no {}",
                file.display(),
                resolved.display()
            ));
            continue;
        }
        let Some(fragment) = fragment else { continue };
        if resolved.extension().is_some_and(|e| e == "md") {
            let heading_file = fs::read_to_string(&resolved).unwrap_or_default();
            if !anchors(&heading_file).contains(fragment) {
                broken.push(format!(
                    "{}:{line}: {target}: {} has no heading with the anchor #{fragment}",
                    file.display(),
                    resolved.display()
                ));
            }
        }
    }
    broken
}

/// README.md, BENCHMARKS.md, the Kubernetes manifests' README and every markdown file in docs/.
fn documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![
        root.join("README.md"),
        root.join("BENCHMARKS.md"),
        root.join("deploy/kubernetes/README.md"),
    ];
    let mut docs: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("docs/ is readable").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

#[test]
fn anchors_follow_githubs_rules() {
    let cases = [
        (
            "Health, readiness and shutdown",
            "health-readiness-and-shutdown",
        ),
        (
            "Live status: `GET /checkout/{id}/events`",
            "live-status-get-checkoutidevents",
        ),
        (
            "`trusted_proxies` and the real client IP",
            "trusted_proxies-and-the-real-client-ip",
        ),
        (
            "Tokens from an identity provider (`jwks`)",
            "tokens-from-an-identity-provider-jwks",
        ),
        (
            "Your app's own sessions: `source = \"forward\"`",
            "your-apps-own-sessions-source--forward",
        ),
        (
            "Double submits: `Idempotency-Key` and the dedupe window",
            "double-submits-idempotency-key-and-the-dedupe-window",
        ),
        (
            "A slow Proof: many checkouts waiting at once",
            "a-slow-proof-many-checkouts-waiting-at-once",
        ),
        (
            "The service alone: `benches/load.sh`",
            "the-service-alone-benchesloadsh",
        ),
        (
            "  Trailing and leading spaces  ",
            "trailing-and-leading-spaces",
        ),
        ("Déjà vu, 100 %", "déjà-vu-100-"),
        ("snake_case and kebab-case", "snake_case-and-kebab-case"),
    ];
    for (heading, expected) in cases {
        assert_eq!(anchor(heading), expected, "the anchor of {heading:?}");
    }
}

#[test]
fn a_repeated_heading_gets_a_numbered_anchor_and_code_is_not_a_heading() {
    let markdown = "# Results\n\n## Results\n\n```toml\n# not a heading\n```\n\n### [Linked](x.md) heading ##\n\n## `GET /kyc-status`\n";
    let found = anchors(markdown);
    let expected: HashSet<String> = ["results", "results-1", "linked-heading", "get-kyc-status"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn links_are_found_outside_code_only() {
    let markdown = "\
See [the API](docs/api.md#errors) and [a link whose text
runs on](sessions.md \"a title\").
`[not a link](nowhere.md)` and ``a `[code](span.md)` too``

```md
[inside a fence](fenced.md)
```

![an image](img.png)
[ref]: <docs/ref.md>
";
    let found = links(markdown);
    let expected: Vec<(usize, String)> = vec![
        (1, "docs/api.md#errors".into()),
        (2, "sessions.md".into()),
        (9, "img.png".into()),
        (10, "docs/ref.md".into()),
    ];
    assert_eq!(found, expected);
}

#[test]
fn a_broken_link_or_anchor_is_reported_and_external_links_are_not_checked() {
    let dir = std::env::temp_dir().join(format!("proof-bff-docs-test-{}", std::process::id()));
    fs::create_dir_all(dir.join("docs")).unwrap();
    fs::write(dir.join("docs/there.md"), "# There\n\n## A section\n").unwrap();
    fs::write(
        dir.join("README.md"),
        "[ok](docs/there.md#a-section) [ok too](#top) [web](https://example.com/nowhere.md)\n\
         [gone](docs/gone.md) [bad anchor](docs/there.md#no-such-section)\n\n# Top\n",
    )
    .unwrap();
    let broken = broken_links(&dir.join("README.md"));
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(broken.len(), 2, "{broken:#?}");
    assert!(
        broken[0].contains("docs/gone.md: there is no"),
        "{}",
        broken[0]
    );
    assert!(
        broken[1].contains("has no heading with the anchor #no-such-section"),
        "{}",
        broken[1]
    );
}

#[test]
fn every_relative_link_in_the_docs_points_somewhere() {
    let files = documents();
    assert!(
        files.len() >= 10,
        "README.md, BENCHMARKS.md and docs/*.md: {files:?}"
    );
    let broken: Vec<String> = files.iter().flat_map(|file| broken_links(file)).collect();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_links_every_page_of_the_docs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = fs::read_to_string(root.join("README.md")).expect("README.md is readable");
    let linked: HashSet<String> = links(&readme)
        .into_iter()
        .map(|(_, target)| target.split('#').next().unwrap_or_default().to_string())
        .collect();
    let unlinked: Vec<String> = documents()
        .iter()
        .filter_map(|path| path.strip_prefix(root).ok())
        .map(|path| path.to_string_lossy().into_owned())
        .filter(|path| path.starts_with("docs/") && !linked.contains(path))
        .collect();
    assert!(
        unlinked.is_empty(),
        "not in the README's index: {unlinked:?}"
    );
}
