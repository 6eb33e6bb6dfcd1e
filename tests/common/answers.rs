//! What an answer must say, shared by the process tests (`tests/common`) and the
//! in-process tier (`tests/app`).
#![allow(dead_code)] // each test file uses its own part

use serde_json::Value;
use std::collections::HashMap;

/// A 4xx or 5xx answered as ChatFlow's app reads it: JSON with a one-line `detail` that
/// says `contains`.
pub fn assert_detail(answer: &(u16, Value), status: u16, contains: &str) {
    assert_eq!(answer.0, status, "{answer:?}");
    let detail = answer.1["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no detail: {answer:?}"));
    assert!(!detail.contains('\n'), "{detail}");
    assert!(
        detail.contains(contains),
        "{detail:?} should say {contains:?}"
    );
}

/// The `username: text` part of each transcript line, after checking the timestamp.
pub fn lines(transcript: &str) -> Vec<String> {
    if transcript.is_empty() {
        return Vec::new();
    }
    transcript
        .split('\n')
        .map(|line| {
            let bytes = line.as_bytes();
            assert!(
                bytes.len() > 21
                    && bytes[0] == b'['
                    && bytes[20] == b']'
                    && bytes[21] == b' '
                    && chrono::NaiveDateTime::parse_from_str(&line[1..20], "%Y-%m-%d %H:%M:%S")
                        .is_ok(),
                "not a transcript line: {line:?}"
            );
            line[22..].to_string()
        })
        .collect()
}

/// What the unicode tests post (`username`, `msg`): names, messages and markup in many
/// scripts, emoji, a tab; each must come back as written.
pub const UNICODE_CASES: [(&str, &str); 6] = [
    ("zoë", "héllo wörld"),
    ("李雷", "你好，世界"),
    ("ناديا", "مرحبا بالعالم"),
    ("🦀 rustacean", "emoji 🎉👩‍👩‍👧 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"),
    ("tab", "a\tb"),
    ("quote", "<script>alert(\"x\")</script> & 'q'"),
];

/// The transcript's lines (`w<writer>: <n>`) hold each of `writers` writers' `each`
/// messages once, in the order each writer sent them.
pub fn assert_every_writer_in_order(lines: &[String], writers: usize, each: u32) {
    assert_eq!(lines.len(), writers * each as usize);
    let mut seen: HashMap<&str, Vec<u32>> = HashMap::new();
    for line in lines {
        let (user, n) = line.split_once(": ").unwrap();
        seen.entry(user).or_default().push(n.parse().unwrap());
    }
    assert_eq!(seen.len(), writers);
    for (user, ns) in seen {
        assert_eq!(
            ns,
            (0..each).collect::<Vec<_>>(),
            "{user}'s messages, in order, once each"
        );
    }
}
