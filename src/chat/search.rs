//! Search across rooms: the newest messages holding every word asked for, in the rooms
//! the caller may read and no other, each with a snippet that marks the words found.
//! The matching is each database's full-text index (`db::messages::search`).

use crate::db::messages::{self as table, SearchWord};
use crate::domain::{Caller, Error, Message};
use sea_orm::DatabaseConnection;

/// Shortest and longest search text, in characters.
pub const MIN_QUERY_CHARS: usize = 2;
pub const MAX_QUERY_CHARS: usize = 200;
/// Words a search holds at most; past these the rest are not searched for.
const MAX_WORDS: usize = 8;
/// Results per page: by default, and at most.
pub const DEFAULT_LIMIT: u64 = 20;
pub const MAX_LIMIT: u64 = 100;
/// Characters of context a snippet shows before the first word found, and in all.
const SNIPPET_BEFORE: usize = 40;
const SNIPPET_CHARS: usize = 160;

/// What a search asks for: the text as sent, the numbers checked.
pub struct SearchQuery<'a> {
    pub q: Option<&'a str>,
    /// 1 to [`MAX_LIMIT`] (the HTTP layer's `SearchLimit` checks it).
    pub limit: u64,
    pub before: Option<i64>,
}

impl Default for SearchQuery<'_> {
    fn default() -> Self {
        SearchQuery {
            q: None,
            limit: DEFAULT_LIMIT,
            before: None,
        }
    }
}

/// A message found, and where in its text the words are.
pub struct Found {
    pub message: Message,
    pub snippet: String,
}

/// The newest messages, newest first, whose text holds every word of `q` (each word
/// matching the start of a word of the text, ignoring case), in every room the caller may
/// read: public rooms, and (signed in) their own private and direct ones; an admin's, all.
pub async fn search(
    db: &DatabaseConnection,
    caller: &Caller,
    query: SearchQuery<'_>,
) -> Result<Vec<Found>, Error> {
    let proven = caller.require_identity()?.map(|u| u.user_id.as_str());
    let words = words(query.q.unwrap_or_default())?;
    let (limit, before) = (query.limit, query.before);
    let readable = (!caller.admin).then(|| crate::db::rooms::visible_to(proven));
    // A bot's: its rooms' only, chosen by the query so a page is still whole.
    let only = caller.rooms.as_deref();
    let rows = table::search(db, &words, readable, only, before, limit).await?;
    Ok(rows
        .into_iter()
        .map(|message| Found {
            snippet: snippet(&message.text, &words),
            message,
        })
        .collect())
}

/// The words of a search text: runs of 2 or more letters and digits, lower-cased, each
/// once, the first [`MAX_WORDS`]; a word followed by `*` matches the start of a word
/// (`deploy*` finds "deployment"), any other a whole word. 400 for a text of fewer than 2
/// or more than 200 characters, or one with no such word.
pub fn words(q: &str) -> Result<Vec<SearchWord>, Error> {
    let q = q.trim();
    let chars: Vec<char> = q.chars().collect();
    if !(MIN_QUERY_CHARS..=MAX_QUERY_CHARS).contains(&chars.len()) {
        return Err(Error::bad_request(format!(
            "q must be {MIN_QUERY_CHARS} to {MAX_QUERY_CHARS} characters"
        )));
    }
    let mut words: Vec<SearchWord> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i].is_alphanumeric() {
            i += 1;
        }
        let text: String = chars[start..i].iter().copied().map(lower).collect();
        let prefix = chars.get(i) == Some(&'*');
        // A one-letter word matches most of any index: it is passed over.
        if i - start >= 2 && !words.iter().any(|w| w.text == text) && words.len() < MAX_WORDS {
            words.push(SearchWord { text, prefix });
        }
    }
    if words.is_empty() {
        return Err(Error::bad_request(
            "q must hold a word of 2 or more letters or digits",
        ));
    }
    Ok(words)
}

/// One character lower-cased to one character, so positions in a text and in its
/// lower-cased copy are the same.
fn lower(c: char) -> char {
    let mut lowered = c.to_lowercase();
    match (lowered.next(), lowered.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

/// Up to [`SNIPPET_CHARS`] characters of `text` around the first word found, as HTML:
/// the text escaped, each word of the text that a searched word matches inside `<mark>`,
/// and `…` where text was left out. Safe to show as HTML.
pub fn snippet(text: &str, words: &[SearchWord]) -> String {
    let chars: Vec<char> = text.chars().collect();
    let lowered: Vec<char> = chars.iter().copied().map(lower).collect();
    let words: Vec<(Vec<char>, bool)> = words
        .iter()
        .map(|w| (w.text.chars().collect(), w.prefix))
        .collect();
    // Each word of the text that a searched word begins: (start, end) in characters.
    let mut marks: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if !chars[i].is_alphanumeric() {
            i += 1;
            continue;
        }
        let end = (i..chars.len())
            .find(|&j| !chars[j].is_alphanumeric())
            .unwrap_or(chars.len());
        let found = &lowered[i..end];
        if words
            .iter()
            .any(|(w, prefix)| found == &w[..] || (*prefix && found.starts_with(w)))
        {
            marks.push((i, end));
        }
        i = end;
    }
    let first = marks.first().map_or(0, |m| m.0);
    let start = first.saturating_sub(SNIPPET_BEFORE);
    let end = (start + SNIPPET_CHARS).min(chars.len());
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    let mut marks = marks.into_iter().peekable();
    let mut at = start;
    while at < end {
        match marks.peek() {
            Some(&(_, to)) if to <= at => {
                marks.next();
            }
            Some(&(from, to)) if from <= at => {
                let to = to.min(end);
                out.push_str("<mark>");
                escape_into(&mut out, &chars[at..to]);
                out.push_str("</mark>");
                at = to;
                marks.next();
            }
            Some(&(from, _)) => {
                let to = from.min(end);
                escape_into(&mut out, &chars[at..to]);
                at = to;
            }
            None => {
                escape_into(&mut out, &chars[at..end]);
                at = end;
            }
        }
    }
    if end < chars.len() {
        out.push('…');
    }
    out
}

fn escape_into(out: &mut String, chars: &[char]) {
    for &c in chars {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(q: &str) -> Vec<String> {
        words(q).unwrap().into_iter().map(|w| w.text).collect()
    }

    #[test]
    fn words_are_letters_and_digits_lower_cased_once_each() {
        assert_eq!(texts("  Deploy v2, DEPLOY!"), ["deploy", "v2"]);
        assert_eq!(texts("Ünïcode straße"), ["ünïcode", "straße"]);
        let found = words("deploy* now").unwrap();
        assert_eq!(
            (found[0].prefix, found[1].prefix),
            (true, false),
            "a star makes a prefix"
        );
        for bad in ["", "a", " x ", "--", "!?"] {
            assert!(words(bad).is_err(), "{bad:?}");
        }
        assert!(words(&"x".repeat(201)).is_err());
        assert_eq!(
            words("aa bb cc dd ee ff gg hh ii jj").unwrap().len(),
            MAX_WORDS
        );
        // One letter alone is no word to search for.
        assert_eq!(texts("a plan"), ["plan"]);
        assert!(words("a b c").is_err());
    }

    #[test]
    fn a_snippet_marks_the_words_found_and_escapes_the_rest() {
        let prefix = words("deploy*").unwrap();
        assert_eq!(
            snippet("<b>Deploying</b> now & redeploy later", &prefix),
            "&lt;b&gt;<mark>Deploying</mark>&lt;/b&gt; now &amp; redeploy later"
        );
        let whole = words("deploy").unwrap();
        assert_eq!(
            snippet("deploying, then deploy", &whole),
            "deploying, then <mark>deploy</mark>"
        );
        let long = format!("{} the deploy {}", "x ".repeat(100), "y ".repeat(100));
        let cut = snippet(&long, &prefix);
        assert!(cut.starts_with('…') && cut.ends_with('…'), "{cut}");
        assert!(cut.contains("<mark>deploy</mark>"), "{cut}");
        assert!(cut.chars().count() < SNIPPET_CHARS + 20);
        // Nothing found (a word the index matched differently): the text's start.
        assert_eq!(snippet("hello", &prefix), "hello");
    }
}
