//! Message templates for streams, compatible with the platform's existing placeholders.
//!
//! A stream may carry a JSON template; every event's log message is rendered through it. This
//! module owns the template language (`{{{log_message}}}`, `{{{log_message_str}}}`, `{{{now}}}`,
//! `{{{now_utc}}}`, `{{{now_utc_micro}}}`, `{{{now_utc_nano}}}`, also in the two-brace form),
//! compiling it and rendering it.
//!
//! A template is compiled once, when a stream is saved or loaded, into literal segments and
//! placeholder segments. Rendering only concatenates segments: it never re-parses the template
//! or searches what it has written, so an event whose text contains `{{{now}}}`, quotes or
//! backslashes cannot inject a placeholder or break out of a string.
//!
//! The context rule: at compile time the template is scanned as JSON text, and each placeholder
//! is classified by where it sits.
//! - Outside string literals a placeholder must stand where a JSON value goes (after `:`, as an
//!   array element, or as the whole document) and renders as a complete JSON value:
//!   `log_message` as the event's bytes, `log_message_str` and `now` as quoted strings, the
//!   `now_utc*` ones as numbers.
//! - Inside a string literal every placeholder renders as escaped string *content*, so
//!   `"msg": "event: {{{log_message}}}"` stays one valid string whatever the event holds.
//!
//! Because each bare placeholder is a whole value at a value position and each quoted one is
//! escaped content, a template whose sample rendering parses as JSON yields valid JSON for every
//! event that is itself valid JSON; compilation checks that sample rendering.

use std::fmt;
use std::sync::Arc;

use time::{OffsetDateTime, UtcOffset};

/// Longest template accepted, in bytes.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;

/// Most `{{log_message}}` / `{{log_message_str}}` placeholders a stream's template may hold
/// (checked when a stream is saved): each copies the whole event into every delivery, so a
/// template with thousands of them would render deliveries far over NATS' `max_payload`
/// (security review H4). Two bound a delivery to about twice its event (four times with
/// `log_message_str` escaping) plus the template's own 64 KiB.
pub const MAX_LOG_MESSAGE_USES: usize = 2;

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub message: String,
}

impl TemplateError {
    fn new(message: impl Into<String>) -> Self {
        TemplateError {
            message: message.into(),
        }
    }
}

/// A compiled message template. Cloning shares the compiled segments.
#[derive(Clone)]
pub struct Template {
    source: Arc<str>,
    segments: Arc<[Segment]>,
    /// Used to reserve the output once per render instead of growing it repeatedly.
    literal_bytes: usize,
    log_message_uses: usize,
    time_uses: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placeholder {
    LogMessage,
    LogMessageStr,
    Now,
    NowUtc,
    NowUtcMicro,
    NowUtcNano,
}

impl Placeholder {
    const ALL: [Placeholder; 6] = [
        Placeholder::LogMessage,
        Placeholder::LogMessageStr,
        Placeholder::Now,
        Placeholder::NowUtc,
        Placeholder::NowUtcMicro,
        Placeholder::NowUtcNano,
    ];

    fn name(self) -> &'static str {
        match self {
            Placeholder::LogMessage => "log_message",
            Placeholder::LogMessageStr => "log_message_str",
            Placeholder::Now => "now",
            Placeholder::NowUtc => "now_utc",
            Placeholder::NowUtcMicro => "now_utc_micro",
            Placeholder::NowUtcNano => "now_utc_nano",
        }
    }

    fn from_name(name: &str) -> Option<Placeholder> {
        Placeholder::ALL.into_iter().find(|p| p.name() == name)
    }

    fn is_log_message(self) -> bool {
        matches!(self, Placeholder::LogMessage | Placeholder::LogMessageStr)
    }
}

/// Where a placeholder sits in the template's JSON text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    /// Outside string literals, at a value position: renders a whole JSON value.
    Bare,
    /// Inside a string literal: renders escaped string content without quotes.
    InString,
}

#[derive(Debug, Clone)]
enum Segment {
    /// A byte range of the source, copied as is.
    Literal { start: usize, end: usize },
    Placeholder {
        placeholder: Placeholder,
        context: Context,
    },
}

/// Rendered during compilation to prove the template yields JSON. Its string holds a quote, a
/// backslash and a placeholder, and it has whitespace between tokens, so escaping is exercised.
const SAMPLE_EVENT: &[u8] =
    b"{\"a\":\"x\\\"{{{now}}}\\\\\",\n\t\"b\": [1, -2.5e3, null, true, {}]}";

/// 2023-06-02T05:30:01.002213900Z, the instant of the platform's documented `now_utc` example.
const SAMPLE_NANOS: i128 = 1_685_683_801_002_213_900;

impl Template {
    /// Parses and checks a template. Errors name the problem (unknown placeholder, unterminated
    /// braces, not valid JSON once filled, too long, empty).
    pub fn compile(source: &str) -> Result<Template, TemplateError> {
        compile_with_max(source, MAX_TEMPLATE_BYTES)
    }

    /// The save-time bounds beyond [`Template::compile`]: at most [`MAX_LOG_MESSAGE_USES`]
    /// copies of the event. Not part of `compile`, so that a template stored before the bound
    /// still compiles where it is used (a delivery it renders too large for NATS is
    /// dead-lettered by the router, counted).
    pub fn check_bounds(&self) -> Result<(), TemplateError> {
        if self.log_message_uses > MAX_LOG_MESSAGE_USES {
            return Err(TemplateError::new(format!(
                "the template copies the event {} times ({{{{{{log_message}}}}}} / {{{{{{log_message_str}}}}}}); \
                 at most {MAX_LOG_MESSAGE_USES} are allowed, since each copies the whole event into every delivery",
                self.log_message_uses
            )));
        }
        Ok(())
    }

    /// The source text, as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders one event (its JSON bytes, already valid JSON) at time `now` into `out`
    /// (appends).
    ///
    /// The output is valid JSON only if `log_message` is valid UTF-8 JSON; that is the caller's
    /// contract (the gateway has validated every event), so it is not re-checked per event.
    pub fn render_into(&self, log_message: &[u8], now: OffsetDateTime, out: &mut Vec<u8>) {
        // Escaping can grow the event; the estimate only has to avoid most reallocations.
        out.reserve(
            self.literal_bytes
                + self.log_message_uses * (log_message.len() + 2)
                + self.time_uses * 32,
        );
        let source = self.source.as_bytes();
        for segment in self.segments.iter() {
            match *segment {
                Segment::Literal { start, end } => out.extend_from_slice(&source[start..end]),
                Segment::Placeholder {
                    placeholder,
                    context,
                } => render_placeholder(placeholder, context, log_message, now, out),
            }
        }
    }

    /// Convenience: render into a fresh Vec.
    pub fn render(&self, log_message: &[u8], now: OffsetDateTime) -> Vec<u8> {
        let mut out = Vec::new();
        self.render_into(log_message, now, &mut out);
        out
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Template").field(&&*self.source).finish()
    }
}

/// `compile` with the length limit as a parameter, so tests need not build 64 KiB strings.
fn compile_with_max(source: &str, max_bytes: usize) -> Result<Template, TemplateError> {
    if source.trim().is_empty() {
        return Err(TemplateError::new("the template is empty"));
    }
    if source.len() > max_bytes {
        return Err(TemplateError::new(format!(
            "the template is {} bytes long; at most {max_bytes} are allowed",
            source.len()
        )));
    }
    let segments = split(source)?;
    let mut literal_bytes = 0;
    let mut log_message_uses = 0;
    let mut time_uses = 0;
    for segment in &segments {
        match *segment {
            Segment::Literal { start, end } => literal_bytes += end - start,
            Segment::Placeholder { placeholder, .. } if placeholder.is_log_message() => {
                log_message_uses += 1;
            }
            Segment::Placeholder { .. } => time_uses += 1,
        }
    }
    let template = Template {
        source: Arc::from(source),
        segments: segments.into(),
        literal_bytes,
        log_message_uses,
        time_uses,
    };
    let sample_time = OffsetDateTime::from_unix_timestamp_nanos(SAMPLE_NANOS)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let sample = template.render(SAMPLE_EVENT, sample_time);
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&sample) {
        return Err(TemplateError::new(format!(
            "the template is not valid JSON once placeholders are filled in: {e}"
        )));
    }
    Ok(template)
}

/// What came last outside string literals; decides whether a bare placeholder is at a value
/// position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prev {
    Start,
    /// A structural or literal byte (`{`, `[`, `:`, `,`, `}`, a digit, a letter...).
    Byte(u8),
    /// A string literal or a bare placeholder.
    Value,
}

fn is_json_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Splits the source into segments, classifying each placeholder by its lexical context.
fn split(source: &str) -> Result<Vec<Segment>, TemplateError> {
    let bytes = source.as_bytes();
    let mut segments = Vec::new();
    let mut literal_start = 0;
    let mut in_string = false;
    let mut prev = Prev::Start;
    // Open containers outside strings; a `,` means "next value" only inside an array (inside
    // an object it is followed by a key).
    let mut containers: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                // Skipping the escaped byte keeps `\"` from ending the string.
                b'\\' => {
                    i += 2;
                    continue;
                }
                b'"' => {
                    in_string = false;
                    prev = Prev::Value;
                    i += 1;
                    continue;
                }
                b'{' => {}
                _ => {
                    i += 1;
                    continue;
                }
            }
        } else {
            match b {
                b'"' => {
                    in_string = true;
                    i += 1;
                    continue;
                }
                b'{' => {}
                b if is_json_whitespace(b) => {
                    i += 1;
                    continue;
                }
                b'[' => {
                    containers.push(b);
                    prev = Prev::Byte(b);
                    i += 1;
                    continue;
                }
                b'}' | b']' => {
                    containers.pop();
                    prev = Prev::Byte(b);
                    i += 1;
                    continue;
                }
                _ => {
                    prev = Prev::Byte(b);
                    i += 1;
                    continue;
                }
            }
        }

        // `b` is `{`: a placeholder if two or more braces follow each other.
        let run = bytes[i..].iter().take_while(|&&c| c == b'{').count();
        if run < 2 {
            if !in_string {
                containers.push(b'{');
                prev = Prev::Byte(b'{');
            }
            i += 1;
            continue;
        }
        let braces = run.min(3);
        // Braces beyond three are literal text before a three-brace placeholder.
        let open = i + run - braces;
        if !in_string && open > i {
            containers.extend(std::iter::repeat_n(b'{', open - i));
            prev = Prev::Byte(b'{');
        }
        let (placeholder, end) = parse_placeholder(source, open, braces)?;
        let context = if in_string {
            Context::InString
        } else {
            check_value_position(source, open, end, braces, placeholder, prev, &containers)?;
            prev = Prev::Value;
            Context::Bare
        };
        if open > literal_start {
            segments.push(Segment::Literal {
                start: literal_start,
                end: open,
            });
        }
        segments.push(Segment::Placeholder {
            placeholder,
            context,
        });
        literal_start = end;
        i = end;
    }
    if literal_start < bytes.len() {
        segments.push(Segment::Literal {
            start: literal_start,
            end: bytes.len(),
        });
    }
    Ok(segments)
}

/// Parses the placeholder whose `braces` opening braces start at `open`; returns it and the
/// byte offset just past its closing braces.
fn parse_placeholder(
    source: &str,
    open: usize,
    braces: usize,
) -> Result<(Placeholder, usize), TemplateError> {
    let bytes = source.as_bytes();
    let name_start = open + braces;
    let mut j = name_start;
    // Names are short words; a quote, brace, backslash or line break means the braces were
    // never closed, and stopping there keeps the error pointing at the right place.
    loop {
        match bytes.get(j) {
            Some(b'}') => break,
            None | Some(b'{' | b'"' | b'\\' | b'\n' | b'\r') => {
                return Err(unterminated(source, open, j, braces));
            }
            Some(_) => j += 1,
        }
    }
    let closing = bytes[j..].iter().take_while(|&&c| c == b'}').count();
    if closing < braces {
        return Err(unterminated(source, open, j, braces));
    }
    let name = source[name_start..j].trim();
    match Placeholder::from_name(name) {
        Some(placeholder) => Ok((placeholder, j + braces)),
        None => {
            let supported: Vec<String> = Placeholder::ALL
                .iter()
                .map(|p| format!("{{{{{{{}}}}}}}", p.name()))
                .collect();
            Err(TemplateError::new(format!(
                "unknown placeholder `{}{}{}` at {}; supported placeholders are {} \
                 (the two-brace forms such as {{{{log_message}}}} are accepted too)",
                "{".repeat(braces),
                shorten(name),
                "}".repeat(braces),
                position(source, open),
                supported.join(", ")
            )))
        }
    }
}

fn unterminated(source: &str, open: usize, stop: usize, braces: usize) -> TemplateError {
    TemplateError::new(format!(
        "unterminated placeholder at {}: `{}` is not closed by `{}`",
        position(source, open),
        shorten(&source[open..stop]),
        "}".repeat(braces)
    ))
}

/// Refuses a bare placeholder that is not a whole JSON value: at a key position or next to
/// another token it could merge with (`1{{{now_utc}}}`, `{{{now_utc}}}{{{now_utc}}}`), a
/// sample might still parse while some real value would not.
fn check_value_position(
    source: &str,
    open: usize,
    end: usize,
    braces: usize,
    placeholder: Placeholder,
    prev: Prev,
    containers: &[u8],
) -> Result<(), TemplateError> {
    let before_ok = match prev {
        Prev::Start | Prev::Byte(b':' | b'[') => true,
        Prev::Byte(b',') => containers.last() == Some(&b'['),
        Prev::Byte(_) | Prev::Value => false,
    };
    let next = source.as_bytes()[end..]
        .iter()
        .copied()
        .find(|&b| !is_json_whitespace(b));
    let after_ok = matches!(next, None | Some(b',' | b']' | b'}'));
    if before_ok && after_ok {
        return Ok(());
    }
    Err(TemplateError::new(format!(
        "placeholder `{}{}{}` at {} is outside a string but not where a JSON value goes; \
         put it after a `:`, as an array element, or inside quotes",
        "{".repeat(braces),
        placeholder.name(),
        "}".repeat(braces),
        position(source, open)
    )))
}

/// "line L, column C" (1-based, columns in characters) of a byte offset, for error messages.
fn position(source: &str, offset: usize) -> String {
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |n| n + 1);
    let column = before[line_start..].chars().count() + 1;
    format!("line {line}, column {column}")
}

/// Keeps error messages short when the offending text is long.
fn shorten(text: &str) -> String {
    const MAX_CHARS: usize = 40;
    if text.chars().count() <= MAX_CHARS {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(MAX_CHARS).collect();
        short.push_str("...");
        short
    }
}

fn render_placeholder(
    placeholder: Placeholder,
    context: Context,
    log_message: &[u8],
    now: OffsetDateTime,
    out: &mut Vec<u8>,
) {
    match (placeholder, context) {
        (Placeholder::LogMessage, Context::Bare) => out.extend_from_slice(log_message),
        (Placeholder::LogMessageStr, Context::Bare) => {
            out.push(b'"');
            escape_into(log_message, out);
            out.push(b'"');
        }
        (Placeholder::LogMessage | Placeholder::LogMessageStr, Context::InString) => {
            escape_into(log_message, out);
        }
        (Placeholder::Now, Context::Bare) => {
            out.push(b'"');
            push_rfc3339(now, out);
            out.push(b'"');
        }
        (Placeholder::Now, Context::InString) => push_rfc3339(now, out),
        // Numbers need no quoting or escaping in either context.
        (Placeholder::NowUtc, _) => push_epoch_millis(now.unix_timestamp_nanos() / 1_000, out),
        (Placeholder::NowUtcMicro, _) => push_i128(now.unix_timestamp_nanos() / 1_000, out),
        (Placeholder::NowUtcNano, _) => push_i128(now.unix_timestamp_nanos(), out),
    }
}

/// Appends `text` as JSON string content. Only `"`, `\` and control characters need escaping;
/// every other byte (including UTF-8 sequences) is copied, in runs.
fn escape_into(text: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut run_start = 0;
    for (i, &b) in text.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&text[run_start..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0x0f)]);
                run_start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&text[run_start..i]);
        out.extend_from_slice(short);
        run_start = i + 1;
    }
    out.extend_from_slice(&text[run_start..]);
}

/// RFC 3339 in UTC with exactly three fractional digits, e.g. `2026-11-21T10:15:02.120Z`.
fn push_rfc3339(now: OffsetDateTime, out: &mut Vec<u8>) {
    // Converting can only fail at the very ends of the supported date range.
    let utc = now.checked_to_offset(UtcOffset::UTC).unwrap_or(now);
    let year = utc.year();
    if year < 0 {
        out.push(b'-');
    }
    push_padded(year.unsigned_abs(), 4, out);
    out.push(b'-');
    push_padded(u32::from(u8::from(utc.month())), 2, out);
    out.push(b'-');
    push_padded(u32::from(utc.day()), 2, out);
    out.push(b'T');
    push_padded(u32::from(utc.hour()), 2, out);
    out.push(b':');
    push_padded(u32::from(utc.minute()), 2, out);
    out.push(b':');
    push_padded(u32::from(utc.second()), 2, out);
    out.push(b'.');
    push_padded(u32::from(utc.millisecond()), 3, out);
    out.push(b'Z');
}

/// Epoch milliseconds with three fractional digits (microsecond precision), e.g.
/// `1685683801002.213`, from epoch microseconds.
fn push_epoch_millis(micros: i128, out: &mut Vec<u8>) {
    if micros < 0 {
        out.push(b'-');
    }
    let abs = micros.unsigned_abs();
    push_u128(abs / 1_000, out);
    out.push(b'.');
    // The remainder is below 1000, so it fits.
    push_padded((abs % 1_000) as u32, 3, out);
}

fn push_i128(value: i128, out: &mut Vec<u8>) {
    if value < 0 {
        out.push(b'-');
    }
    push_u128(value.unsigned_abs(), out);
}

fn push_u128(mut value: u128, out: &mut Vec<u8>) {
    let mut buf = [0u8; 40];
    let mut pos = buf.len();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[pos..]);
}

/// Decimal digits of `value`, left-padded with zeros to at least `width`.
fn push_padded(value: u32, width: usize, out: &mut Vec<u8>) {
    let mut buf = [0u8; 10];
    let mut pos = buf.len();
    let mut rest = value;
    loop {
        pos -= 1;
        buf[pos] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let digits = buf.len() - pos;
    for _ in digits..width {
        out.push(b'0');
    }
    out.extend_from_slice(&buf[pos..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// 2023-06-02T05:30:01.002213900Z.
    const NANOS: i128 = 1_685_683_801_002_213_900;
    const NOW_TEXT: &str = "2023-06-02T05:30:01.002Z";
    const NOW_UTC: &str = "1685683801002.213";
    const NOW_MICRO: &str = "1685683801002213";
    const NOW_NANO: &str = "1685683801002213900";

    const DOCUMENTED: &str =
        r#"{"log_message_str": {{{log_message_str}}}, "now_utc_micro": {{{now_utc_micro}}}}"#;

    /// An event whose text tries every trick: placeholders, quotes, backslashes, line breaks,
    /// closing braces, control characters and non-ASCII.
    const NASTY: &str = r#"{"msg":"x\"{{{now}}}\\ }}} {{log_message}} \n\t\r\u0001 é 💥","k\"{{{":[1,"\\\"",{"{{{now_utc}}}":null}]}"#;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(NANOS).unwrap()
    }

    fn compile(source: &str) -> Template {
        Template::compile(source).unwrap()
    }

    fn render_str(source: &str, event: &str) -> String {
        String::from_utf8(compile(source).render(event.as_bytes(), now())).unwrap()
    }

    fn render_json(source: &str, event: &str) -> Value {
        let out = render_str(source, event);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    fn error(source: &str) -> String {
        Template::compile(source).unwrap_err().message
    }

    /// The event as serde_json would write it inside a string, for exact comparisons.
    fn escaped(text: &str) -> String {
        let quoted = serde_json::to_string(text).unwrap();
        quoted[1..quoted.len() - 1].to_owned()
    }

    #[test]
    fn copies_of_the_event_are_bounded_at_save_not_at_compile() {
        let two = Template::compile(r#"[{{{log_message}}}, "{{{log_message_str}}}", {{{now}}}]"#)
            .unwrap();
        assert_eq!(two.check_bounds(), Ok(()));
        let many = format!("[{}]", ["{{{log_message}}}"; 1000].join(","));
        let stored = Template::compile(&many).expect("a stored template still compiles");
        let e = stored.check_bounds().unwrap_err().message;
        assert!(e.starts_with("the template copies the event 1000 times ({{{log_message}}} / {{{log_message_str}}}); at most 2"), "{e}");
    }

    // --- each placeholder, bare and inside a string ---

    #[test]
    fn log_message_bare_copies_the_event_bytes() {
        let event = "{ \"a\" : [1, 2.50, \"b\"] }";
        assert_eq!(
            render_str(r#"{"e": {{{log_message}}}}"#, event),
            format!(r#"{{"e": {event}}}"#)
        );
    }

    #[test]
    fn log_message_in_string_is_escaped_content() {
        let event = r#"{"a":"b\"c"}"#;
        let out = render_str(r#"{"msg": "event: {{{log_message}}}"}"#, event);
        assert_eq!(out, format!(r#"{{"msg": "event: {}"}}"#, escaped(event)));
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["msg"], format!("event: {event}"));
    }

    #[test]
    fn log_message_str_bare_is_a_quoted_string() {
        let event = r#"{"a":"b\"c"}"#;
        let out = render_str(r#"{"s": {{{log_message_str}}}}"#, event);
        assert_eq!(out, format!(r#"{{"s": "{}"}}"#, escaped(event)));
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["s"], event);
    }

    #[test]
    fn log_message_str_in_string_is_escaped_content() {
        let event = r#"{"a":1}"#;
        let v = render_json(r#"{"s": "<{{{log_message_str}}}>"}"#, event);
        assert_eq!(v["s"], format!("<{event}>"));
    }

    #[test]
    fn now_bare_is_a_quoted_rfc3339_string() {
        assert_eq!(
            render_str(r#"{"ts": {{{now}}}}"#, "{}"),
            format!(r#"{{"ts": "{NOW_TEXT}"}}"#)
        );
    }

    #[test]
    fn now_in_string_is_the_rfc3339_text() {
        assert_eq!(
            render_str(r#"{"ts": "at {{{now}}}"}"#, "{}"),
            format!(r#"{{"ts": "at {NOW_TEXT}"}}"#)
        );
        assert_eq!(
            render_str(r#"{"ts": "{{{now}}}"}"#, "{}"),
            format!(r#"{{"ts": "{NOW_TEXT}"}}"#)
        );
    }

    #[test]
    fn now_utc_is_milliseconds_with_three_fraction_digits() {
        assert_eq!(
            render_str(r#"{"t": {{{now_utc}}}}"#, "{}"),
            format!(r#"{{"t": {NOW_UTC}}}"#)
        );
        assert_eq!(
            render_str(r#"{"t": "{{{now_utc}}}"}"#, "{}"),
            format!(r#"{{"t": "{NOW_UTC}"}}"#)
        );
        let v = render_json(r#"{"t": {{{now_utc}}}}"#, "{}");
        assert!(v["t"].is_f64());
    }

    #[test]
    fn now_utc_micro_is_an_integer() {
        assert_eq!(
            render_str(r#"{"t": {{{now_utc_micro}}}}"#, "{}"),
            format!(r#"{{"t": {NOW_MICRO}}}"#)
        );
        assert_eq!(
            render_str(r#"{"t": "{{{now_utc_micro}}}"}"#, "{}"),
            format!(r#"{{"t": "{NOW_MICRO}"}}"#)
        );
        assert_eq!(
            render_json(r#"{"t": {{{now_utc_micro}}}}"#, "{}")["t"],
            1_685_683_801_002_213_u64
        );
    }

    #[test]
    fn now_utc_nano_is_an_integer() {
        assert_eq!(
            render_str(r#"{"t": {{{now_utc_nano}}}}"#, "{}"),
            format!(r#"{{"t": {NOW_NANO}}}"#)
        );
        assert_eq!(
            render_str(r#"{"t": "{{{now_utc_nano}}}"}"#, "{}"),
            format!(r#"{{"t": "{NOW_NANO}"}}"#)
        );
    }

    #[test]
    fn now_is_converted_to_utc() {
        let offset = UtcOffset::from_hms(5, 30, 0).unwrap();
        let local = now().to_offset(offset);
        let t = compile(r#"{"ts": {{{now}}}, "n": {{{now_utc_nano}}}}"#);
        let out = String::from_utf8(t.render(b"{}", local)).unwrap();
        assert_eq!(out, format!(r#"{{"ts": "{NOW_TEXT}", "n": {NOW_NANO}}}"#));
    }

    #[test]
    fn time_formats_at_the_epoch_and_before_it() {
        let t = compile(r#"[{{{now}}}, {{{now_utc}}}, {{{now_utc_micro}}}, {{{now_utc_nano}}}]"#);
        let render = |nanos: i128| {
            let now = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap();
            String::from_utf8(t.render(b"{}", now)).unwrap()
        };
        assert_eq!(render(0), r#"["1970-01-01T00:00:00.000Z", 0.000, 0, 0]"#);
        assert_eq!(
            render(1_500),
            r#"["1970-01-01T00:00:00.000Z", 0.001, 1, 1500]"#
        );
        assert_eq!(
            render(-1_500_000),
            r#"["1969-12-31T23:59:59.998Z", -1.500, -1500, -1500000]"#
        );
        let v: Value = serde_json::from_str(&render(-1_500_000)).unwrap();
        assert_eq!(v[1], json!(-1.5));
        assert_eq!(
            render(253_402_300_799_999_999_999),
            r#"["9999-12-31T23:59:59.999Z", 253402300799999.999, 253402300799999999, 253402300799999999999]"#
        );
    }

    #[test]
    fn milliseconds_are_truncated_not_rounded() {
        let t = compile("{{{now}}}");
        let now = OffsetDateTime::from_unix_timestamp_nanos(999_999_999).unwrap();
        assert_eq!(t.render(b"{}", now), b"\"1970-01-01T00:00:00.999Z\"");
    }

    // --- placeholder syntax ---

    #[test]
    fn two_brace_forms_render_identically() {
        let three = r#"{"a": {{{log_message}}}, "b": {{{log_message_str}}}, "c": {{{now}}}, "d": {{{now_utc}}}, "e": {{{now_utc_micro}}}, "f": {{{now_utc_nano}}}, "g": "{{{log_message}}} {{{now}}}"}"#;
        let two = r#"{"a": {{log_message}}, "b": {{log_message_str}}, "c": {{now}}, "d": {{now_utc}}, "e": {{now_utc_micro}}, "f": {{now_utc_nano}}, "g": "{{log_message}} {{now}}"}"#;
        assert_eq!(render_str(three, NASTY), render_str(two, NASTY));
    }

    #[test]
    fn whitespace_inside_braces_is_accepted() {
        assert_eq!(
            render_str(r#"{"a": {{{ now }}}, "b": "{{  now_utc_micro	}}"}"#, "{}"),
            format!(r#"{{"a": "{NOW_TEXT}", "b": "{NOW_MICRO}"}}"#)
        );
    }

    #[test]
    fn documented_platform_example() {
        let event = r#"{"user":"alice","action":"login"}"#;
        let out = render_str(DOCUMENTED, event);
        assert_eq!(
            out,
            format!(
                r#"{{"log_message_str": "{}", "now_utc_micro": {NOW_MICRO}}}"#,
                escaped(event)
            )
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["log_message_str"], event);
        assert_eq!(v["now_utc_micro"], 1_685_683_801_002_213_u64);
    }

    #[test]
    fn closing_braces_after_a_placeholder_close_objects() {
        let v = render_json(r#"{"a":{"b":{{{now_utc_micro}}}}}"#, "{}");
        assert_eq!(v, json!({"a": {"b": 1_685_683_801_002_213_u64}}));
        let v = render_json(r#"{"a":{"b":{{now_utc_micro}}}}"#, "{}");
        assert_eq!(v, json!({"a": {"b": 1_685_683_801_002_213_u64}}));
        let v = render_json(r#"{"a":[{{{log_message}}}]}"#, r#"{"x":1}"#);
        assert_eq!(v, json!({"a": [{"x": 1}]}));
    }

    #[test]
    fn extra_braces_in_a_string_stay_literal() {
        let v = render_json(r#"{"a": "{{{{now}}}}", "b": "{x} }}} {"}"#, "{}");
        assert_eq!(v["a"], format!("{{{NOW_TEXT}}}"));
        assert_eq!(v["b"], "{x} }}} {");
    }

    #[test]
    fn whole_document_placeholders() {
        let event = r#"{"a":[1,2]}"#;
        assert_eq!(render_str("{{{log_message}}}", event), event);
        assert_eq!(
            render_str(" {{{log_message}}}\n", event),
            format!(" {event}\n")
        );
        let v = render_json("{{{log_message_str}}}", event);
        assert_eq!(v, event);
        assert_eq!(
            render_json("{{{now_utc_nano}}}", "{}"),
            json!(1_685_683_801_002_213_900_u64)
        );
    }

    #[test]
    fn escaped_quotes_and_backslashes_in_the_template_keep_context() {
        // The placeholder is still inside the string after `\"`.
        let v = render_json(r#"{"a": "say \"{{{now}}}\""}"#, "{}");
        assert_eq!(v["a"], format!("say \"{NOW_TEXT}\""));
        // `\\` ends in a backslash, so the next quote closes the string and the placeholder is bare.
        let v = render_json(r#"{"a": "\\", "b": {{{now_utc_micro}}}}"#, "{}");
        assert_eq!(v["a"], "\\");
        assert_eq!(v["b"], 1_685_683_801_002_213_u64);
    }

    #[test]
    fn constant_template_is_allowed() {
        let t = compile(r#"{"kind": "heartbeat", "n": [1, 2]}"#);
        assert_eq!(
            t.render(b"{\"ignored\":1}", now()),
            br#"{"kind": "heartbeat", "n": [1, 2]}"#
        );
    }

    #[test]
    fn several_placeholders_and_unicode_in_the_template() {
        let event = r#"{"é":"💥"}"#;
        let v = render_json(
            "{\n  \"títle\": \"→ {{{now}}} ← {{log_message}}\",\n  \"e\": {{{log_message}}},\n  \"list\": [{{{now_utc}}}, {{{now}}}, {{{log_message_str}}}]\n}",
            event,
        );
        assert_eq!(v["títle"], format!("→ {NOW_TEXT} ← {event}"));
        assert_eq!(v["e"], json!({"é": "💥"}));
        assert_eq!(v["list"][1], NOW_TEXT);
        assert_eq!(v["list"][2], event);
    }

    // --- errors ---

    #[test]
    fn unknown_placeholder_is_named_with_the_supported_list() {
        let msg = error(r#"{"a": {{{foo}}}}"#);
        assert!(msg.contains("unknown placeholder `{{{foo}}}`"), "{msg}");
        assert!(msg.contains("line 1, column 7"), "{msg}");
        for name in [
            "{{{log_message}}}",
            "{{{log_message_str}}}",
            "{{{now}}}",
            "{{{now_utc}}}",
            "{{{now_utc_micro}}}",
            "{{{now_utc_nano}}}",
        ] {
            assert!(msg.contains(name), "{msg} lacks {name}");
        }
        let msg = error(r#"{"a": "x {{ Now }}"}"#);
        assert!(msg.contains("unknown placeholder `{{Now}}`"), "{msg}");
        let msg = error(r#"{"a": "{{{}}}"}"#);
        assert!(msg.contains("unknown placeholder `{{{}}}`"), "{msg}");
    }

    #[test]
    fn unterminated_placeholder_is_reported() {
        let msg = error(r#"{"a": "{{{log_message"}"#);
        assert_eq!(
            msg,
            "unterminated placeholder at line 1, column 8: `{{{log_message` is not closed by `}}}`"
        );
        let msg = error("{{{log_message");
        assert!(
            msg.starts_with("unterminated placeholder at line 1, column 1"),
            "{msg}"
        );
        // One closing brace short.
        let msg = error(r#"{"a": {{{log_message}}"#);
        assert!(
            msg.contains("`{{{log_message` is not closed by `}}}`"),
            "{msg}"
        );
        let msg = error("[\n  \"{{now\n}}\"]");
        assert!(
            msg.starts_with("unterminated placeholder at line 2, column 4"),
            "{msg}"
        );
    }

    #[test]
    fn invalid_json_templates_are_rejected() {
        for source in [
            r#"{"a": }"#,
            r#"{"a": {{{log_message}}}"#,
            r#"{"a": "{{{now}}}""#,
            r#"{"a": 1} trailing"#,
            r#"{"a": "\q {{{now}}}"}"#,
            "{\"a\": \"raw\nnewline\"}",
            "[1,]",
        ] {
            let msg = error(source);
            assert!(
                msg.starts_with("the template is not valid JSON once placeholders are filled in: "),
                "{source}: {msg}"
            );
        }
    }

    #[test]
    fn bare_placeholders_must_be_at_value_positions() {
        for source in [
            r#"{ {{{now}}}: 1 }"#,
            r#"{"a": 1, {{{log_message_str}}}: 2}"#,
            r#"[{{{now_utc}}} {{{now_utc}}}]"#,
            r#"[{{{now_utc_micro}}}{{{now_utc_nano}}}]"#,
            r#"{"a": 1{{{now_utc_micro}}}}"#,
            r#"{"a": -{{{now_utc_micro}}}}"#,
            r#"{"a": {{{now_utc_micro}}}0}"#,
            r#"{"a": "x"{{{now}}}}"#,
            r#"{"a": {{{now}}} "x"}"#,
            r#"{"a": {{{{now}}}}"#,
        ] {
            let msg = error(source);
            assert!(
                msg.contains("not where a JSON value goes"),
                "{source}: {msg}"
            );
        }
        let msg = error(r#"{ {{{now}}}: 1 }"#);
        assert!(
            msg.starts_with("placeholder `{{{now}}}` at line 1, column 3"),
            "{msg}"
        );
    }

    #[test]
    fn empty_and_too_long_templates_are_rejected() {
        assert_eq!(error(""), "the template is empty");
        assert_eq!(error(" \n\t"), "the template is empty");
        let msg = compile_with_max(r#"{"a": "0123456789"}"#, 10)
            .unwrap_err()
            .message;
        assert_eq!(msg, "the template is 19 bytes long; at most 10 are allowed");

        let filler = "x".repeat(MAX_TEMPLATE_BYTES);
        let long = format!(r#"{{"a": "{filler}"}}"#);
        assert!(error(&long).contains(&format!("at most {MAX_TEMPLATE_BYTES} are allowed")));
        let fits = format!(r#"{{"a": "{}"}}"#, "x".repeat(MAX_TEMPLATE_BYTES - 9));
        assert_eq!(fits.len(), MAX_TEMPLATE_BYTES);
        assert!(Template::compile(&fits).is_ok());
    }

    #[test]
    fn long_names_are_shortened_in_errors() {
        let name = "y".repeat(500);
        let msg = error(&format!("{{{{{{{name}}}}}}}"));
        assert!(msg.len() < 400, "{msg}");
        assert!(msg.contains("..."), "{msg}");
    }

    // --- injection ---

    #[test]
    fn event_text_cannot_inject_placeholders_or_break_json() {
        let original: Value = serde_json::from_str(NASTY).unwrap();

        let v = render_json(r#"{"e": {{{log_message}}}, "t": {{{now}}}}"#, NASTY);
        assert_eq!(v["e"], original);
        assert_eq!(v["t"], NOW_TEXT);

        let v = render_json(DOCUMENTED, NASTY);
        assert_eq!(v["log_message_str"], NASTY);
        let inner: Value = serde_json::from_str(v["log_message_str"].as_str().unwrap()).unwrap();
        assert_eq!(inner, original);

        let v = render_json(r#"{"msg": "event: {{{log_message}}} at {{{now}}}"}"#, NASTY);
        assert_eq!(v["msg"], format!("event: {NASTY} at {NOW_TEXT}"));

        let v = render_json(r#"{"msg": "{{log_message_str}}"}"#, NASTY);
        assert_eq!(v["msg"], NASTY);
    }

    #[test]
    fn pretty_printed_events_are_escaped_in_strings() {
        let event = serde_json::to_string_pretty(&json!({"a": ["x\ty", {"b": "}}}"}]})).unwrap();
        assert!(event.contains('\n'));
        let v = render_json(
            r#"{"s": "{{{log_message}}}", "b": {{{log_message}}}}"#,
            &event,
        );
        assert_eq!(v["s"], event);
        assert_eq!(v["b"], serde_json::from_str::<Value>(&event).unwrap());
    }

    #[test]
    fn escaping_matches_serde_json_for_every_ascii_character() {
        let text: String = (0u8..0x80)
            .map(char::from)
            .chain("é💥\u{2028}".chars())
            .collect();
        let mut out = Vec::new();
        escape_into(text.as_bytes(), &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), escaped(&text));
    }

    // --- the type itself ---

    #[test]
    fn render_into_appends() {
        let t = compile("{{{now_utc_micro}}}");
        let mut out = b"prefix:".to_vec();
        t.render_into(b"{}", now(), &mut out);
        assert_eq!(out, format!("prefix:{NOW_MICRO}").into_bytes());
    }

    #[test]
    fn source_debug_and_clone() {
        let source = "{\"a\":  {{ now }} }";
        let t = compile(source);
        assert_eq!(t.source(), source);
        assert_eq!(format!("{t:?}"), format!("Template({source:?})"));
        let copy = t.clone();
        assert_eq!(copy.source(), source);
        assert_eq!(copy.render(b"{}", now()), t.render(b"{}", now()));
    }

    #[test]
    fn template_error_displays_its_message() {
        let e = Template::compile("").unwrap_err();
        assert_eq!(e.to_string(), "the template is empty");
    }

    // --- properties ---

    fn arb_string() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[{}\"\\\\\n\t a-z_]{0,20}",
            prop::sample::select(vec![
                "{{{now}}}".to_owned(),
                "{{log_message}}".to_owned(),
                "}}}\"\\".to_owned(),
                "\u{0}\u{1f}\u{7f}\u{2028}".to_owned(),
            ]),
        ]
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            arb_string().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(arb_string(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn arb_event() -> impl Strategy<Value = (Value, String)> {
        (arb_value(), any::<bool>()).prop_map(|(v, pretty)| {
            let text = if pretty {
                serde_json::to_string_pretty(&v).unwrap()
            } else {
                serde_json::to_string(&v).unwrap()
            };
            (v, text)
        })
    }

    /// Instants across the whole supported range of years (1..=9999) and before the epoch.
    fn arb_time() -> impl Strategy<Value = OffsetDateTime> {
        (-62_135_596_800_i64..=253_402_300_799, 0u32..1_000_000_000).prop_map(|(s, ns)| {
            OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(s) * 1_000_000_000 + i128::from(ns),
            )
            .unwrap()
        })
    }

    /// Pieces of template text, used both as token soup and as mutations.
    const TOKENS: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"",
        "\"k\"",
        "1",
        " ",
        "\\",
        "\\\"",
        "{{{log_message}}}",
        "{{{log_message_str}}}",
        "{{{now}}}",
        "{{now_utc}}",
        "{{{now_utc_micro}}}",
        "{{now_utc_nano}}",
        "{{",
        "}}}",
        "null",
        "-",
    ];

    const PLACEHOLDERS: &[&str] = &[
        "{{{log_message}}}",
        "{{{log_message_str}}}",
        "{{{now}}}",
        "{{now_utc}}",
        "{{{now_utc_micro}}}",
        "{{now_utc_nano}}",
    ];

    /// Marks where a bare placeholder goes in a skeleton; serde_json writes it as `"\u0001<n>"`.
    const BARE_MARK: char = '\u{1}';

    /// A JSON document whose strings may hold placeholders and whose values may be bare ones.
    fn arb_skeleton() -> impl Strategy<Value = String> {
        let text = prop::collection::vec(
            prop::sample::select(vec![
                "a",
                " ",
                "\"",
                "\\",
                "{{{now}}}",
                "{{log_message}}",
                "{{{log_message_str}}}",
                "{{now_utc_nano}}",
                "}}}",
                "{",
            ]),
            0..5,
        )
        .prop_map(|pieces| pieces.concat());
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<i32>().prop_map(Value::from),
            text.clone().prop_map(Value::String),
            (0..PLACEHOLDERS.len()).prop_map(|n| Value::String(format!("{BARE_MARK}{n}"))),
        ];
        let document = leaf.prop_recursive(3, 16, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(text.clone(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        });
        (document, any::<bool>()).prop_map(|(document, pretty)| {
            let mut source = if pretty {
                serde_json::to_string_pretty(&document).unwrap()
            } else {
                serde_json::to_string(&document).unwrap()
            };
            for (n, placeholder) in PLACEHOLDERS.iter().enumerate() {
                source = source.replace(&format!("\"\\u0001{n}\""), placeholder);
            }
            source
        })
    }

    /// Valid templates, near-valid ones (a skeleton with one token inserted) and token soup.
    fn arb_template() -> impl Strategy<Value = String> {
        let token = prop::sample::select(TOKENS.to_vec());
        prop_oneof![
            arb_skeleton(),
            (arb_skeleton(), any::<prop::sample::Index>(), token.clone()).prop_map(
                |(mut source, at, token)| {
                    let mut at = at.index(source.len() + 1);
                    while !source.is_char_boundary(at) {
                        at -= 1;
                    }
                    source.insert_str(at, token);
                    source
                }
            ),
            prop::collection::vec(token, 1..16).prop_map(|tokens| tokens.concat()),
        ]
    }

    proptest! {
        #[test]
        fn rendered_events_round_trip((value, text) in arb_event(), at in arb_time()) {
            let documented = compile(DOCUMENTED).render(text.as_bytes(), at);
            let v: Value = serde_json::from_slice(&documented).unwrap();
            prop_assert_eq!(v["log_message_str"].as_str().unwrap(), text.as_str());
            prop_assert_eq!(&serde_json::from_str::<Value>(&text).unwrap(), &value);

            let in_string = compile(r#"{"msg": "event: {{{log_message}}}", "s": "{{log_message_str}}", "ts": "{{{now}}}", "n": "{{{now_utc}}}"}"#)
                .render(text.as_bytes(), at);
            let v: Value = serde_json::from_slice(&in_string).unwrap();
            let expected_msg = format!("event: {text}");
            prop_assert_eq!(v["msg"].as_str().unwrap(), expected_msg.as_str());
            prop_assert_eq!(v["s"].as_str().unwrap(), text.as_str());

            let bare = compile(r#"{"e": {{{log_message}}}, "ts": {{{now}}}, "n": [{{now_utc}}, {{{now_utc_micro}}}, {{{now_utc_nano}}}]}"#)
                .render(text.as_bytes(), at);
            let v: Value = serde_json::from_slice(&bare).unwrap();
            prop_assert_eq!(&v["e"], &value);
            prop_assert_eq!(v["n"][1].as_i64().unwrap() as i128, at.unix_timestamp_nanos() / 1_000);
        }

        #[test]
        fn compile_never_panics(source in any::<String>()) {
            let _ = Template::compile(&source);
        }
    }

    proptest! {
        // Most generated templates are refused; more cases keep enough accepted ones.
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn compiled_templates_always_render_json(
            source in arb_template(),
            (_, text) in arb_event(),
            at in arb_time(),
        ) {
            if let Ok(t) = Template::compile(&source) {
                let out = t.render(text.as_bytes(), at);
                prop_assert!(
                    serde_json::from_slice::<Value>(&out).is_ok(),
                    "template {:?} rendered invalid JSON: {}",
                    source,
                    String::from_utf8_lossy(&out)
                );
            }
        }
    }

    proptest! {
        /// Numbers beyond what f64 or u64 hold (as producers do send: 30-digit ids, long
        /// decimals, tiny exponents) pass through byte for byte, bare and in strings.
        #[test]
        fn huge_numbers_are_carried_exactly(
            digits in "[1-9][0-9]{19,80}",
            fraction in "[0-9]{1,40}",
            exponent in -300i32..300,
        ) {
            let event = format!(r#"{{"id":{digits},"ratio":-{digits}.{fraction}e{exponent},"s":"{{{{{{now}}}}}} \"q\""}}"#);
            // serde_json must accept the event, as the gateway does.
            prop_assume!(serde_json::from_str::<Value>(&event).is_ok());
            let out = render_str(r#"{"e": {{{log_message}}}, "s": {{{log_message_str}}}}"#, &event);
            let parsed: Value = serde_json::from_str(&out).unwrap();
            prop_assert!(out.contains(&event), "bare event changed: {out}");
            prop_assert_eq!(parsed["s"].as_str().unwrap(), event.as_str());
        }
    }
}
