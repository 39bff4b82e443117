//! [`DecodeError`]: why a message did not decode into a channel's `receives` type, and
//! where.
//!
//! A decode error costs time linear in the message and memory bounded by it, whatever the
//! message holds: the failing field is found in one streaming pass when serde lost its path
//! (a stack of path segments, a path string made only for the first match, the pass stopped
//! at a second), and the error keeps at most [`DecodeError::MAX_MESSAGE`] bytes of message
//! and of path, with values quoted from the input cut to [`DecodeError::MAX_QUOTED`]
//! characters, so a client cannot make its error, or the log line that reports it, large.
//!
//! What is structured comes from serde_json and serde_path_to_error: the category (syntax,
//! end of input, data), the position (stripped from the message) and the field's path.
//! Which data error it is (unknown variant, missing or unknown field, wrong type) serde
//! passes to serde_json only as text, so one private function, `read_data_error`, reads it
//! from serde's fixed wording.

/// What was wrong with a message that did not decode into a service's `receives` type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// Not JSON at all (or trailing characters after it).
    Syntax,
    /// The tag (`"type"` for `#[serde(tag = "type")]`) names no known message.
    UnknownVariant {
        /// The value that was sent.
        value: String,
    },
    /// A required field is absent (the tag included).
    MissingField {
        /// Its name.
        field: String,
    },
    /// A field has the wrong JSON type, or a value serde rejects for another reason.
    InvalidValue,
    /// A field is not allowed (`#[serde(deny_unknown_fields)]`).
    UnknownField {
        /// Its name.
        field: String,
    },
    /// The message decoded but breaks a declared constraint (garde).
    Constraint,
    /// The message holds more arrays and objects than
    /// [`DecodeError::MAX_CONTAINERS`]; it was not decoded.
    TooManyContainers,
}

impl DecodeErrorKind {
    /// A short stable name: `syntax`, `unknown_variant`, `missing_field`, `invalid_value`,
    /// `unknown_field`, `constraint`, `too_many_containers`.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeErrorKind::Syntax => "syntax",
            DecodeErrorKind::UnknownVariant { .. } => "unknown_variant",
            DecodeErrorKind::MissingField { .. } => "missing_field",
            DecodeErrorKind::InvalidValue => "invalid_value",
            DecodeErrorKind::UnknownField { .. } => "unknown_field",
            DecodeErrorKind::Constraint => "constraint",
            DecodeErrorKind::TooManyContainers => "too_many_containers",
        }
    }
}

/// A message that did not decode or validate: what is wrong, where, and serde's or garde's
/// own words for it.
///
/// The default answer to the client ([`to_json`](Self::to_json)) is
/// `{"type":"error","code":"missing_field","message":"missing field `message`","path":"."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    kind: DecodeErrorKind,
    path: String,
    message: String,
}

impl DecodeError {
    /// The most bytes of [`message`](Self::message) and of [`path`](Self::path), however
    /// large the input was: a longer one is cut and ends in `…` (a constraint message may
    /// add a short " (and N more)" naming the violations left out).
    pub const MAX_MESSAGE: usize = 256;

    /// The most characters of a value quoted from the input in
    /// [`message`](Self::message) (between backticks, or a string between double quotes),
    /// and of the value or field a [`DecodeErrorKind`] carries; a longer one is cut and
    /// ends in `…`.
    pub const MAX_QUOTED: usize = 32;

    /// The most arrays and objects one typed message may hold (10,000). A message is counted
    /// in one pass over its bytes before serde sees it: decoding builds a value per container
    /// (serde buffers a whole message of an internally tagged enum, about 70 bytes a nested
    /// container), so without the bound a 1 MiB message of nested arrays would hold some
    /// 70 MB while it is decoded. With it, decoding holds about 20 times the message's
    /// size at most (serde's ~32 bytes per scalar of at least two bytes, plus the buffer).
    pub const MAX_CONTAINERS: usize = 10_000;

    pub(crate) fn too_many_containers() -> DecodeError {
        DecodeError {
            kind: DecodeErrorKind::TooManyContainers,
            path: ".".to_owned(),
            message: format!(
                "a message may hold at most {} arrays and objects",
                DecodeError::MAX_CONTAINERS
            ),
        }
    }

    /// What kind of problem it is.
    pub fn kind(&self) -> &DecodeErrorKind {
        &self.kind
    }

    /// Where: a dotted path to the field (`message`, `items[2].name`), `.` for the message
    /// itself; at most [`MAX_MESSAGE`](Self::MAX_MESSAGE) bytes.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The description, without position information (e.g. ``unknown variant `dance`,
    /// expected one of `message`, `ping` ``, `length is greater than 500`); at most
    /// [`MAX_MESSAGE`](Self::MAX_MESSAGE) bytes, values quoted from the input cut to
    /// [`MAX_QUOTED`](Self::MAX_QUOTED) characters.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The default error frame: `{"type":"error","code":..,"message":..,"path":..}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "error",
            "code": self.kind.code(),
            "message": self.message,
            "path": self.path,
        })
    }

    pub(crate) fn from_serde(
        error: serde_path_to_error::Error<serde_json::Error>,
        input: &[u8],
    ) -> Self {
        let mut path = match error.path().to_string() {
            // serde_path_to_error's "unknown position" (a syntax error before any key).
            p if p == "?" => ".".to_owned(),
            p => p,
        };
        let inner = error.into_inner();
        // The whole message, which quotes the input (as long as the input): located against
        // first, bounded before it is kept.
        let full = without_position(&inner);
        let message = bounded(&full);
        let kind = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                DecodeErrorKind::Syntax
            }
            // The kind's value or field is read from the bounded message, so it is cut too.
            serde_json::error::Category::Io | serde_json::error::Category::Data => {
                read_data_error(&message).0
            }
        };
        if path == "." && matches!(kind, DecodeErrorKind::InvalidValue) {
            // Internally tagged enums decode a variant from buffered content, where serde
            // loses the path; find the field from the JSON itself.
            if let Some(found) = read_data_error(&full)
                .1
                .and_then(|unexpected| locate_mismatch(input, unexpected))
            {
                path = found;
            }
        }
        DecodeError {
            kind,
            path: truncate(path, MAX_MESSAGE),
            message,
        }
    }

    pub(crate) fn syntax(error: &serde_json::Error) -> Self {
        DecodeError {
            kind: DecodeErrorKind::Syntax,
            path: ".".to_owned(),
            message: bounded(&without_position(error)),
        }
    }

    /// garde's violations, the first one's path and as many of their descriptions as fit in
    /// [`MAX_MESSAGE`] bytes, then how many more there were.
    pub(crate) fn from_report(report: garde::Report) -> Self {
        let mut path = String::new();
        let mut message = String::new();
        let mut left_out = 0usize;
        for (i, (p, e)) in report.iter().enumerate() {
            if message.len() >= MAX_MESSAGE {
                left_out += 1;
                continue;
            }
            let p = p.to_string();
            if i == 0 {
                path = if p.is_empty() {
                    ".".to_owned()
                } else {
                    truncate(p.clone(), MAX_MESSAGE)
                };
            } else {
                message.push_str("; ");
            }
            if p.is_empty() {
                message.push_str(&bounded(e.message()));
            } else {
                message.push_str(&bounded(&format!("{p}: {}", e.message())));
            }
        }
        let mut message = truncate(message, MAX_MESSAGE);
        if left_out > 0 {
            message.push_str(&format!(" (and {left_out} more)"));
        }
        DecodeError {
            kind: DecodeErrorKind::Constraint,
            path,
            message,
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path == "."
            || self
                .message
                .strip_prefix(self.path.as_str())
                .is_some_and(|rest| rest.starts_with(": "))
        {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for DecodeError {}

/// The most bytes of a [`DecodeError`]'s message and of its path (a constraint message
/// may add a short " (and N more)"); longer ones end in `…`.
const MAX_MESSAGE: usize = DecodeError::MAX_MESSAGE;

/// The most characters of a value quoted from the input in a [`DecodeError`]'s message
/// (or carried in its [`DecodeErrorKind`]); longer ones end in `…`.
const MAX_QUOTED: usize = DecodeError::MAX_QUOTED;

/// `text` cut at a character boundary to at most `max` bytes, ending in `…` when it was cut.
fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max - '…'.len_utf8();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// serde's or garde's message with every value it quotes (between backticks, or a
/// string between double quotes) cut to [`MAX_QUOTED`] characters, and the whole cut to
/// [`MAX_MESSAGE`] bytes. One pass; what is kept is bounded whatever the input was.
fn bounded(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE + 8));
    let mut chars = message.chars();
    // Inside a quote: its closing character and how many characters were kept so far.
    let mut quote: Option<(char, usize)> = None;
    while let Some(c) = chars.next() {
        if out.len() > MAX_MESSAGE + MAX_QUOTED * 4 {
            break;
        }
        match quote {
            None => {
                out.push(c);
                if c == '`' || c == '"' {
                    quote = Some((c, 0));
                }
            }
            Some((close, _)) if c == close => {
                out.push(c);
                quote = None;
            }
            Some((close, kept)) => {
                // A `\"` in a Debug-quoted string does not close it.
                let escaped = if close == '"' && c == '\\' {
                    chars.next()
                } else {
                    None
                };
                if kept < MAX_QUOTED {
                    out.push(c);
                    if let Some(e) = escaped {
                        out.push(e);
                    }
                } else if kept == MAX_QUOTED {
                    out.push('…');
                }
                quote = Some((close, kept + 1));
            }
        }
    }
    truncate(out, MAX_MESSAGE)
}

/// serde_json's message without the position it appends (` at line L column C`, made from
/// the error's own [`line`](serde_json::Error::line) and
/// [`column`](serde_json::Error::column); absent when the line is 0).
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    if error.line() == 0 {
        return text;
    }
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    match text.strip_suffix(&suffix) {
        Some(message) => message.to_owned(),
        None => text,
    }
}

/// Which data error serde reported, read from its message: the one place this crate reads
/// serde's words. serde's derived code reports through `serde::de::Error`'s constructors
/// (`unknown_variant`, `missing_field`, `unknown_field`, `invalid_type`), and serde_json
/// keeps only the text they make, in serde's fixed wording (``unknown variant `x`, expected
/// ..``, ``missing field `x` ``, ``unknown field `x`, expected ..``, ``invalid type: <found>,
/// expected ..``). Returns the kind and, for `invalid type`, serde's description of the
/// value found (``integer `5` ``, `string "x"`, `map`), which [`locate_mismatch`] looks for.
/// Any other message is [`DecodeErrorKind::InvalidValue`].
fn read_data_error(message: &str) -> (DecodeErrorKind, Option<&str>) {
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    if let Some(value) = quoted("unknown variant `") {
        (DecodeErrorKind::UnknownVariant { value }, None)
    } else if let Some(field) = quoted("missing field `") {
        (DecodeErrorKind::MissingField { field }, None)
    } else if let Some(field) = quoted("unknown field `") {
        (DecodeErrorKind::UnknownField { field }, None)
    } else {
        let found = message
            .strip_prefix("invalid type: ")
            .and_then(|rest| rest.split(", expected").next());
        (DecodeErrorKind::InvalidValue, found)
    }
}

/// For a value serde describes as `found` (``integer `5` `` in ``invalid type: integer `5`,
/// expected a string``) with no path: the path of the one value under the top-level object
/// that serde would describe that way, if exactly one is.
///
/// One streaming pass over the JSON (no tree is built): the current path is a stack of
/// segments, and a path string is made only for the first hit; the pass stops at the second.
/// Time is linear in the input, memory the current path (at most the input's size; nesting
/// is limited to serde_json's 128 levels).
fn locate_mismatch(input: &[u8], found: &str) -> Option<String> {
    if input.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let mut locate = Locate {
        found,
        path: Vec::new(),
        first: None,
        hits: 0,
        scratch: String::new(),
    };
    let mut de = serde_json::Deserializer::from_slice(input);
    serde::de::DeserializeSeed::deserialize(Node(&mut locate), &mut de).ok()?;
    match locate.hits {
        1 => locate.first,
        _ => None,
    }
}

/// One step of a path: an object's key or an array's index.
enum Segment {
    Key(String),
    Index(usize),
}

/// The state of [`locate_mismatch`]'s pass.
struct Locate<'a> {
    /// serde's description of the unexpected value (``integer `5` ``, `string "x"`, `map`).
    found: &'a str,
    path: Vec<Segment>,
    /// The path of the first hit.
    first: Option<String>,
    hits: u32,
    /// Reused for each value's description.
    scratch: String,
}

/// Stops the pass at the second hit: the answer is "ambiguous" already.
#[derive(Debug)]
struct Ambiguous;

impl<'a> Locate<'a> {
    /// The value at the current path is described by `unexpected`.
    fn visit(&mut self, unexpected: serde::de::Unexpected<'_>) -> Result<(), Ambiguous> {
        use std::fmt::Write as _;
        if self.path.is_empty() {
            return Ok(());
        }
        self.scratch.clear();
        let _ = write!(self.scratch, "{unexpected}");
        if self.scratch != self.found {
            return Ok(());
        }
        self.hits += 1;
        if self.hits > 1 {
            return Err(Ambiguous);
        }
        let mut at = String::new();
        for segment in &self.path {
            match segment {
                Segment::Key(k) if at.is_empty() => at.push_str(k),
                Segment::Key(k) => {
                    at.push('.');
                    at.push_str(k);
                }
                Segment::Index(i) => {
                    let _ = write!(at, "[{i}]");
                }
            }
        }
        self.first = Some(at);
        Ok(())
    }

    /// A string value: described only when its description could be as long as `found`
    /// (`string "…"` is at least 9 bytes longer than the string), so a long string costs
    /// no copy.
    fn visit_str(&mut self, s: &str) -> Result<(), Ambiguous> {
        if s.len() + 9 > self.found.len() {
            return Ok(());
        }
        self.visit(serde::de::Unexpected::Str(s))
    }
}

/// [`locate_mismatch`]'s visitor for one value.
struct Node<'l, 'a>(&'l mut Locate<'a>);

fn stop<E: serde::de::Error>(_: Ambiguous) -> E {
    E::custom("a second value matches")
}

impl<'de> serde::de::DeserializeSeed<'de> for Node<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Node<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<(), E> {
        self.0.visit(serde::de::Unexpected::Bool(v)).map_err(stop)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<(), E> {
        self.0.visit(serde::de::Unexpected::Signed(v)).map_err(stop)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<(), E> {
        self.0
            .visit(serde::de::Unexpected::Unsigned(v))
            .map_err(stop)
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<(), E> {
        self.0.visit(serde::de::Unexpected::Float(v)).map_err(stop)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        self.0.visit_str(v).map_err(stop)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.0.visit(serde::de::Unexpected::Unit).map_err(stop)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.visit(serde::de::Unexpected::Seq).map_err(stop)?;
        let mut i = 0;
        loop {
            self.0.path.push(Segment::Index(i));
            let more = seq.next_element_seed(Node(self.0))?;
            self.0.path.pop();
            if more.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.visit(serde::de::Unexpected::Map).map_err(stop)?;
        while let Some(key) = map.next_key::<String>()? {
            self.0.path.push(Segment::Key(key));
            map.next_value_seed(Node(self.0))?;
            self.0.path.pop();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use schemars::{JsonSchema, SchemaGenerator};
    use serde::Deserialize;

    use super::*;
    use crate::{Message, Receives};

    #[derive(Debug, Deserialize, JsonSchema, garde::Validate)]
    #[serde(tag = "type", rename_all = "snake_case")]
    #[garde(allow_unvalidated)]
    enum In {
        Say {
            #[garde(length(chars, min = 1, max = 5))]
            text: String,
        },
        Move {
            #[garde(dive)]
            to: Point,
        },
        Ping,
        Trace {
            #[garde(dive)]
            points: Vec<Point>,
        },
    }

    #[derive(Debug, Deserialize, JsonSchema, garde::Validate)]
    struct Point {
        #[garde(range(min = 0, max = 9))]
        x: i32,
        #[garde(range(min = 0, max = 9))]
        y: i32,
    }

    fn err(json: &str) -> DecodeError {
        match In::decode(Message::Text(json.to_owned())) {
            Ok(v) => panic!("{json} decoded to {v:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_message_of_many_containers_is_refused_before_decoding() {
        let many = format!(
            r#"{{"type":"trace","points":[{}]}}"#,
            vec![r#"{"x":1,"y":1}"#; DecodeError::MAX_CONTAINERS].join(",")
        );
        let e = err(&many);
        assert_eq!(e.kind(), &DecodeErrorKind::TooManyContainers);
        assert_eq!(e.kind().code(), "too_many_containers");
        let fewer = format!(
            r#"{{"type":"trace","points":[{}]}}"#,
            vec![r#"{"x":1,"y":1}"#; DecodeError::MAX_CONTAINERS - 2].join(",")
        );
        assert!(matches!(
            In::decode(Message::Text(fewer)),
            Ok(In::Trace { points }) if points.len() == DecodeError::MAX_CONTAINERS - 2
        ));
    }

    #[test]
    fn decodes_and_validates() {
        assert!(matches!(
            In::decode(Message::Text(r#"{"type":"say","text":"hi"}"#.into())),
            Ok(In::Say { .. })
        ));
        assert!(matches!(
            In::decode(Message::Binary(r#"{"type":"ping"}"#.as_bytes().into())),
            Ok(In::Ping)
        ));
    }

    #[test]
    fn each_problem_is_named() {
        let e = err("{not json");
        assert_eq!(e.kind(), &DecodeErrorKind::Syntax);
        assert_eq!(e.message(), "key must be a string");

        let e = err(r#"{"type":"dance"}"#);
        assert_eq!(
            e.kind(),
            &DecodeErrorKind::UnknownVariant {
                value: "dance".into()
            }
        );
        assert_eq!(
            e.message(),
            "unknown variant `dance`, expected one of `say`, `move`, `ping`, `trace`"
        );

        let e = err(r#"{"text":"hi"}"#);
        assert_eq!(
            e.kind(),
            &DecodeErrorKind::MissingField {
                field: "type".into()
            }
        );

        let e = err(r#"{"type":"say"}"#);
        assert_eq!(e.message(), "missing field `text`");

        let e = err(r#"{"type":"say","text":5}"#);
        assert_eq!(e.kind(), &DecodeErrorKind::InvalidValue);
        assert_eq!(e.path(), "text");
        assert_eq!(
            e.to_string(),
            "text: invalid type: integer `5`, expected a string"
        );

        let e = err(r#"{"type":"move","to":{"x":1,"y":"2"}}"#);
        assert_eq!(e.path(), "to.y");

        let e = err(r#"{"type":"say","text":"hi"} x"#);
        assert_eq!(e.kind(), &DecodeErrorKind::Syntax);
        assert_eq!(e.message(), "trailing characters");
    }

    #[test]
    fn constraints_name_the_field() {
        let e = err(r#"{"type":"say","text":"toolong"}"#);
        assert_eq!(e.kind(), &DecodeErrorKind::Constraint);
        assert_eq!(e.path(), "text");
        assert_eq!(e.to_string(), "text: length is greater than 5");

        let e = err(r#"{"type":"move","to":{"x":1,"y":12}}"#);
        assert_eq!(e.path(), "to.y");
        assert_eq!(
            e.to_json(),
            serde_json::json!({
                "type": "error",
                "code": "constraint",
                "message": "to.y: greater than 9",
                "path": "to.y",
            })
        );
    }

    #[test]
    fn a_mismatch_is_located_in_nested_arrays_and_strings() {
        let e = err(r#"{"type":"move","to":{"x":1,"y":"two"}}"#);
        assert_eq!(e.path(), "to.y");
        assert_eq!(e.message(), r#"invalid type: string "two", expected i32"#);
        // Two values match: no guess.
        let e = err(r#"{"type":"move","to":{"x":"a","y":"a"}}"#);
        assert_eq!(e.path(), ".");
        // A mismatching value inside an array is named by its index.
        let e = err(r#"{"type":"trace","points":[{"x":1,"y":2},{"x":1,"y":true}]}"#);
        assert_eq!(e.path(), "points[1].y");
        assert_eq!(e.message(), "invalid type: boolean `true`, expected i32");
    }

    #[derive(Debug, Deserialize, JsonSchema, garde::Validate)]
    #[garde(allow_unvalidated)]
    struct Tags {
        tags: std::collections::HashMap<String, i32>,
    }

    /// One hostile message of about 1 MiB of each shape: the error's message and path stay
    /// within their bounds, and the values they quote are cut.
    #[test]
    fn hostile_megabyte_inputs_give_bounded_errors() {
        const MIB: usize = 1 << 20;
        let long = "k".repeat(MIB / 2);
        let fives = vec!["5"; MIB / 2].join(",");
        let inputs = [
            // Many values matching the mismatch, under a long key.
            format!(r#"{{"type":"say","text":5,"{long}":[{fives}]}}"#),
            // Many values matching, in arrays nested under a long key.
            format!(r#"{{"type":"move","to":{{"x":1,"{long}":[[{fives}]],"y":"2"}}}}"#),
            // A long string where a number is expected.
            format!(r#"{{"type":"move","to":{{"x":"{long}","y":1}}}}"#),
            // A long unknown tag.
            format!(r#"{{"type":"{long}"}}"#),
            // Deep nesting (serde_json stops at 128 levels).
            format!(
                r#"{{"type":"say","text":{}5{}}}"#,
                "[".repeat(MIB / 2),
                "]".repeat(MIB / 2)
            ),
            // A long string that breaks a constraint.
            format!(r#"{{"type":"say","text":"{long}"}}"#),
        ];
        for input in &inputs {
            assert!(input.len() >= MIB / 2);
            let e = err(input);
            let bound = DecodeError::MAX_MESSAGE + " (and 1 more)".len();
            assert!(e.message().len() <= bound, "{} bytes", e.message().len());
            assert!(
                e.path().len() <= DecodeError::MAX_MESSAGE,
                "{}",
                e.path().len()
            );
            assert!(e.to_json().to_string().len() <= 2 * bound + 64);
            if let DecodeErrorKind::UnknownVariant { value } = e.kind() {
                assert!(
                    value.chars().count() <= DecodeError::MAX_QUOTED + 1,
                    "{value}"
                );
            }
        }
        // The long unknown tag is quoted cut short.
        let e = err(&inputs[3]);
        let quoted = format!("unknown variant `{}…`", "k".repeat(DecodeError::MAX_QUOTED));
        assert!(e.message().starts_with(&quoted), "{}", e.message());
        let tags = Tags::decode(Message::Text(r#"{"tags":{"a":1}}"#.into())).expect("valid");
        assert_eq!(tags.tags.get("a"), Some(&1));
        // A path through a long key is cut to the bound.
        let input = format!(r#"{{"tags":{{"{long}":"x"}}}}"#);
        let e = match Tags::decode(Message::Text(input)) {
            Ok(v) => panic!("decoded to {v:?}"),
            Err(e) => e,
        };
        assert!(e.path().starts_with("tags.kkkk"), "{}", e.path());
        assert!(e.path().len() <= DecodeError::MAX_MESSAGE && e.path().ends_with('…'));
    }

    #[test]
    fn messages_are_cut_at_their_bounds() {
        assert_eq!(bounded("plain"), "plain");
        let quoted = format!("unknown variant `{}`, expected `a`", "x".repeat(100));
        assert_eq!(
            bounded(&quoted),
            format!(
                "unknown variant `{}…`, expected `a`",
                "x".repeat(MAX_QUOTED)
            )
        );
        let string = format!(
            r#"invalid type: string "{}\"{}", expected i32"#,
            "a".repeat(40),
            "b"
        );
        assert_eq!(
            bounded(&string),
            format!(
                r#"invalid type: string "{}…", expected i32"#,
                "a".repeat(MAX_QUOTED)
            )
        );
        let long = "é".repeat(1000);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_MESSAGE && cut.ends_with('…'));
        assert_eq!(truncate("abc".into(), 10), "abc");
    }

    #[test]
    fn the_schema_carries_the_constraints() {
        let mut generator = SchemaGenerator::default();
        let schema = In::schema(&mut generator).expect("typed");
        let text = serde_json::to_string(&schema).expect("json");
        let defs = serde_json::to_string(generator.definitions()).expect("json");
        assert!(
            text.contains("\"maxLength\":5") || defs.contains("\"maxLength\":5"),
            "{text} {defs}"
        );
        assert!(defs.contains("\"maximum\":9"), "{defs}");
        assert!(<Message as Receives>::schema(&mut generator).is_none());
    }
}
