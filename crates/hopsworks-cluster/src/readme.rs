//! The README's Troubleshooting section is keyed by every Reason this resource answers: each
//! `Failure::new` in this crate must have its key there: the first words of its longest fixed
//! part (the text between placeholders), enough to find the row from the Reason.

use std::path::Path;

/// The text of every string literal that opens a `Failure::new(…)` in `source`, as the compiler
/// reads it (a `\` at a line's end drops the break and the next line's indentation).
fn reasons(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in source.match_indices("Failure::new(") {
        let rest = &source[at + "Failure::new(".len()..];
        let rest = rest.trim_start();
        let rest = rest.strip_prefix("format!(").unwrap_or(rest).trim_start();
        let Some(body) = rest.strip_prefix('"') else {
            continue;
        };
        let mut text = String::new();
        let mut chars = body.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('\n') => {
                        while chars.peek().is_some_and(|c| c.is_whitespace()) {
                            chars.next();
                        }
                    }
                    Some('n') => text.push('\n'),
                    Some(other) => text.push(other),
                    None => break,
                },
                c => text.push(c),
            }
        }
        found.push(text);
    }
    found
}

/// The longest part of `reason` between its `{…}` placeholders.
fn fixed_part(reason: &str) -> &str {
    let mut longest = "";
    let mut rest = reason;
    loop {
        let (part, after) = match rest.find('{') {
            Some(open) => (
                &rest[..open],
                rest[open..].find('}').map(|c| &rest[open + c + 1..]),
            ),
            None => (rest, None),
        };
        if part.trim().len() > longest.trim().len() {
            longest = part.trim();
        }
        match after {
            Some(after) => rest = after,
            None => return longest,
        }
    }
}

fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// How many words of a Reason's fixed part the README must quote.
const KEY_WORDS: usize = 8;

fn key(reason: &str) -> String {
    let part = fixed_part(reason).trim_matches(|c: char| !c.is_alphanumeric());
    let words: Vec<&str> = part.split_whitespace().collect();
    words[..words.len().min(KEY_WORDS)].join(" ")
}

#[test]
fn every_reason_this_resource_answers_is_in_the_readme_troubleshooting() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(crate_dir.join("../../README.md")).unwrap();
    let section = readme
        .split("\n## Troubleshooting")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("the README has a Troubleshooting section");
    let section = squeeze(&section.replace('`', ""));
    let mut missing = Vec::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(crate_dir.join("src")).unwrap() {
        let path = entry.unwrap().path();
        if path.ends_with("readme.rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        for reason in reasons(&source) {
            let key = key(&reason);
            checked += 1;
            if !section.contains(&key) {
                missing.push(format!("{}: {key:?}", path.display()));
            }
        }
    }
    assert!(
        checked >= 20,
        "only {checked} Reasons found: the scan is broken"
    );
    assert!(
        missing.is_empty(),
        "Reasons missing from the README's Troubleshooting: {missing:#?}"
    );
}

#[test]
fn a_reason_is_read_as_the_compiler_reads_it() {
    let source = "Err(Failure::new(format!(\n    \"backup {} not done within {} minutes; the \\\n     cluster is left running\",\n x)))";
    assert_eq!(
        reasons(source),
        ["backup {} not done within {} minutes; the cluster is left running"]
    );
    assert_eq!(
        fixed_part("backup {} not done within {} minutes; the cluster is left running"),
        "minutes; the cluster is left running"
    );
}
