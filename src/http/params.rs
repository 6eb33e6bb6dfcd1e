//! Query parameters as types. Each type parses its own value, refuses one out of bounds
//! with a one-line reason that names the parameter, and describes itself in the OpenAPI
//! document from the same numbers. A route's query is then one struct (`FromForm` for
//! Rocket, `IntoParams` for the document), so what the server takes and what the document
//! says cannot drift apart.
//!
//! A reason names the parameter by its key as the route knows it, never by what the client
//! wrote around it (`limit[<b>]=0` is refused as `limit`).
//!
//! None of these is an `Option<T>` field: Rocket takes a value that fails to parse for an
//! `Option<T>` as absent, and `?limit=abc` would quietly be the default. Absence is each
//! type's own default instead, and a bad value is a 400.

use crate::domain::limits::{self, MAX_HISTORY_MINUTES, MAX_WAIT_SECS};
use crate::domain::Error;
use rocket::form::{self, error::ErrorKind, FromFormField, ValueField};
use serde_json::json;
use std::borrow::Cow;
use std::time::Duration;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};

/// The reason a route's query was refused: the first parameter's own reason (each type
/// gives one that names it), as a 400.
pub fn refused(errors: form::Errors<'_>) -> Error {
    let reason = errors.iter().next().map(|err| match &err.kind {
        ErrorKind::Validation(reason) => reason.to_string(),
        kind => match &err.name {
            Some(name) => format!("{name}: {kind}"),
            None => kind.to_string(),
        },
    });
    Error::bad_request(reason.unwrap_or_else(|| "the query is not one this route takes".into()))
}

/// The parameter's name as the route knows it: what precedes any `.` or `[` the client put
/// after it.
fn name_of<'v>(field: &ValueField<'v>) -> &'v str {
    let source: &'v str = field.name.source().as_str();
    source.split(['.', '[']).next().unwrap_or(source)
}

fn invalid<'v, T>(reason: String) -> form::Result<'v, T> {
    Err(form::Error::validation(reason).into())
}

fn integer(format: KnownFormat) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(format)))
}

/// `limit=`: how many rows, 1 to `MAX`; `DEFAULT` when absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit<const DEFAULT: u64, const MAX: u64>(pub u64);

/// A page of a list: messages, files, notifications (`domain::limits`).
pub type PageLimit = Limit<{ limits::DEFAULT_PAGE }, { limits::MAX_PAGE }>;
/// A page of a room's changes.
pub type ChangesLimit =
    Limit<{ crate::chat::changes::DEFAULT_PAGE }, { crate::chat::changes::MAX_PAGE }>;
/// A page of search results.
pub type SearchLimit =
    Limit<{ crate::chat::search::DEFAULT_LIMIT }, { crate::chat::search::MAX_LIMIT }>;

#[rocket::async_trait]
impl<'v, const DEFAULT: u64, const MAX: u64> FromFormField<'v> for Limit<DEFAULT, MAX> {
    fn from_value(field: ValueField<'v>) -> form::Result<'v, Self> {
        match field.value.parse::<u64>() {
            Ok(n) if (1..=MAX).contains(&n) => Ok(Limit(n)),
            _ => invalid(format!("{} must be 1 to {MAX}", name_of(&field))),
        }
    }

    fn default() -> Option<Self> {
        Some(Limit(DEFAULT))
    }
}

impl<const DEFAULT: u64, const MAX: u64> utoipa::PartialSchema for Limit<DEFAULT, MAX> {
    fn schema() -> RefOr<Schema> {
        integer(KnownFormat::Int64)
            .minimum(Some(1))
            .maximum(Some(MAX))
            .default(Some(json!(DEFAULT)))
            .into()
    }
}

impl<const DEFAULT: u64, const MAX: u64> utoipa::ToSchema for Limit<DEFAULT, MAX> {
    fn name() -> Cow<'static, str> {
        Cow::Owned(format!("Limit{MAX}"))
    }
}

/// A place in a room given as a message id or a `seq` (`after=`, `before=`, `since=`,
/// `seq=`): a whole number, 0 or more; none when absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor(pub Option<i64>);

#[rocket::async_trait]
impl<'v> FromFormField<'v> for Cursor {
    fn from_value(field: ValueField<'v>) -> form::Result<'v, Self> {
        match field.value.parse::<i64>() {
            Ok(id) if id >= 0 => Ok(Cursor(Some(id))),
            _ => {
                let name = name_of(&field);
                let what = match name {
                    "seq" => "a seq: a whole number, 0 or more",
                    _ => "a message id (0 or more)",
                };
                invalid(format!("{name} must be {what}"))
            }
        }
    }

    fn default() -> Option<Self> {
        Some(Cursor(None))
    }
}

impl utoipa::PartialSchema for Cursor {
    fn schema() -> RefOr<Schema> {
        integer(KnownFormat::Int64).minimum(Some(0)).into()
    }
}

impl utoipa::ToSchema for Cursor {}

/// `wait=`: seconds to hold a poll until something comes, 0 to 30, fractions allowed;
/// none (answer at once) when absent.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Wait(pub Option<Duration>);

#[rocket::async_trait]
impl<'v> FromFormField<'v> for Wait {
    fn from_value(field: ValueField<'v>) -> form::Result<'v, Self> {
        match limits::wait_secs(field.value) {
            Ok(wait) => Ok(Wait(Some(wait))),
            Err(err) => invalid(err.to_string()),
        }
    }

    fn default() -> Option<Self> {
        Some(Wait(None))
    }
}

impl utoipa::PartialSchema for Wait {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Number)
            .minimum(Some(0))
            .maximum(Some(MAX_WAIT_SECS))
            .into()
    }
}

impl utoipa::ToSchema for Wait {}

/// `minutes=` of the relay's history: digits only, 1 to a day, 30 when absent, refused
/// with its original server's reasons (`domain::limits::history_minutes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Minutes(pub u32);

#[rocket::async_trait]
impl<'v> FromFormField<'v> for Minutes {
    fn from_value(field: ValueField<'v>) -> form::Result<'v, Self> {
        match limits::history_minutes(Some(field.value)) {
            Ok(minutes) => Ok(Minutes(minutes)),
            Err(err) => invalid(err.to_string()),
        }
    }

    fn default() -> Option<Self> {
        limits::history_minutes(None).ok().map(Minutes)
    }
}

impl utoipa::PartialSchema for Minutes {
    fn schema() -> RefOr<Schema> {
        integer(KnownFormat::Int32)
            .minimum(Some(1))
            .maximum(Some(MAX_HISTORY_MINUTES))
            .default(limits::history_minutes(None).ok().map(|m| json!(m)))
            .into()
    }
}

impl utoipa::ToSchema for Minutes {}

/// A yes or no (`unread_only=`): `true`/`1` or `false`/`0`; no when absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flag(pub bool);

#[rocket::async_trait]
impl<'v> FromFormField<'v> for Flag {
    fn from_value(field: ValueField<'v>) -> form::Result<'v, Self> {
        match field.value {
            "true" | "1" => Ok(Flag(true)),
            "false" | "0" => Ok(Flag(false)),
            _ => invalid(format!("{} must be true or false", name_of(&field))),
        }
    }

    fn default() -> Option<Self> {
        Some(Flag(false))
    }
}

impl utoipa::PartialSchema for Flag {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Boolean)
            .default(Some(json!(false)))
            .into()
    }
}

impl utoipa::ToSchema for Flag {}

/// `q=` of a search: the words to find, taken as sent (`chat::search::words` reads them
/// and holds them to its bounds); empty when absent, which that refuses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SearchText<'v>(pub &'v str);

#[rocket::async_trait]
impl<'v> FromFormField<'v> for SearchText<'v> {
    fn from_value(field: ValueField<'v>) -> form::Result<'v, Self> {
        Ok(SearchText(field.value))
    }

    fn default() -> Option<Self> {
        Some(SearchText(""))
    }
}

impl utoipa::PartialSchema for SearchText<'_> {
    fn schema() -> RefOr<Schema> {
        use crate::chat::search::{MAX_QUERY_CHARS, MIN_QUERY_CHARS};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(MIN_QUERY_CHARS))
            .max_length(Some(MAX_QUERY_CHARS))
            .into()
    }
}

impl utoipa::ToSchema for SearchText<'_> {}

/// `q=` of a room's history: text its messages hold, taken as sent
/// (`chat::messages::history` trims it and holds it to its length); none when absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistoryText<'v>(pub Option<&'v str>);

#[rocket::async_trait]
impl<'v> FromFormField<'v> for HistoryText<'v> {
    fn from_value(field: ValueField<'v>) -> form::Result<'v, Self> {
        Ok(HistoryText(Some(field.value)))
    }

    fn default() -> Option<Self> {
        Some(HistoryText(None))
    }
}

impl utoipa::PartialSchema for HistoryText<'_> {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(crate::chat::messages::MAX_SEARCH_CHARS))
            .into()
    }
}

impl utoipa::ToSchema for HistoryText<'_> {}

/// `format=` of a transcript: `text` or `json`; when absent, what the client's `Accept`
/// asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Unsaid,
    Text,
    Json,
}

#[rocket::async_trait]
impl<'v> FromFormField<'v> for Format {
    fn from_value(field: ValueField<'v>) -> form::Result<'v, Self> {
        match field.value {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            _ => invalid(format!("{} must be text or json", name_of(&field))),
        }
    }

    fn default() -> Option<Self> {
        Some(Format::Unsaid)
    }
}

impl utoipa::PartialSchema for Format {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["text", "json"]))
            .into()
    }
}

impl utoipa::ToSchema for Format {}

#[cfg(test)]
mod tests {
    use super::*;
    use rocket::form::Form;

    #[derive(rocket::FromForm, Debug)]
    struct Query {
        limit: PageLimit,
        after: Cursor,
        seq: Cursor,
        wait: Wait,
        minutes: Minutes,
        unread_only: Flag,
        format: Format,
    }

    fn parse(query: &str) -> Result<Query, String> {
        Form::<Query>::parse(query).map_err(|errors| refused(errors).to_string())
    }

    #[test]
    fn absent_parameters_take_their_defaults() {
        let q = parse("").unwrap();
        assert_eq!(q.limit, Limit(50));
        assert_eq!(
            (q.after, q.seq, q.wait),
            (Cursor(None), Cursor(None), Wait(None))
        );
        assert_eq!(
            (q.minutes, q.unread_only, q.format),
            (Minutes(30), Flag(false), Format::Unsaid)
        );
    }

    #[test]
    fn values_in_bounds_are_taken() {
        let q = parse("limit=200&after=0&seq=12&wait=0.5&minutes=1440&unread_only=1&format=json")
            .unwrap();
        assert_eq!(q.limit, Limit(200));
        assert_eq!((q.after, q.seq), (Cursor(Some(0)), Cursor(Some(12))));
        assert_eq!(q.wait, Wait(Some(Duration::from_millis(500))));
        assert_eq!(
            (q.minutes, q.unread_only, q.format),
            (Minutes(1440), Flag(true), Format::Json)
        );
    }

    /// A value that does not parse is refused with its parameter's name, never taken as
    /// absent.
    #[test]
    fn values_out_of_bounds_are_refused_by_name() {
        for (query, reason) in [
            ("limit=0", "limit must be 1 to 200"),
            ("limit=201", "limit must be 1 to 200"),
            ("limit=1e3", "limit must be 1 to 200"),
            ("limit=", "limit must be 1 to 200"),
            ("limit=abc", "limit must be 1 to 200"),
            ("after=-1", "after must be a message id (0 or more)"),
            ("after=1.5", "after must be a message id (0 or more)"),
            (
                "after=99999999999999999999",
                "after must be a message id (0 or more)",
            ),
            ("seq=x", "seq must be a seq: a whole number, 0 or more"),
            ("limit[<b>x</b>]=0", "limit must be 1 to 200"),
            ("limit.x=0", "limit must be 1 to 200"),
            ("wait=31", "wait must be 0 to 30 seconds"),
            ("wait=-1", "wait must be 0 to 30 seconds"),
            ("minutes=0", "minutes must be a positive number"),
            ("minutes=1441", "minutes cannot be more than 24 hours"),
            ("minutes=+5", "minutes is not a valid integer"),
            ("unread_only=yes", "unread_only must be true or false"),
            ("format=xml", "format must be text or json"),
        ] {
            assert_eq!(parse(query).unwrap_err(), reason, "{query}");
        }
    }

    /// The document's bounds are the parser's: the first value past each is refused.
    #[test]
    fn the_schema_bounds_are_the_parsers() {
        let schema = serde_json::to_value(<PageLimit as utoipa::PartialSchema>::schema()).unwrap();
        assert_eq!(schema["minimum"], 1);
        assert_eq!(schema["maximum"], limits::MAX_PAGE);
        assert_eq!(schema["default"], limits::DEFAULT_PAGE);
        let max = schema["maximum"].as_u64().unwrap();
        assert!(parse(&format!("limit={max}")).is_ok());
        assert!(parse(&format!("limit={}", max + 1)).is_err());
        let minutes = serde_json::to_value(<Minutes as utoipa::PartialSchema>::schema()).unwrap();
        let max = minutes["maximum"].as_u64().unwrap();
        assert!(parse(&format!("minutes={max}")).is_ok());
        assert!(parse(&format!("minutes={}", max + 1)).is_err());
    }
}
