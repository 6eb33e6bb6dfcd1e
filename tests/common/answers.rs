//! What an answer must say, shared by the process tests (`tests/common`) and the
//! in-process tier (`tests/app`).
#![allow(dead_code)] // each test file uses its own part

use serde_json::Value;

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
