//! The producer's W3C `traceparent`, checked before it goes anywhere (security review L4).
//!
//! The gateway copies the producer's `traceparent` into the NATS headers of every event of
//! the request, so an unchecked value (up to `server.max_header_bytes`, 64 KiB) would be
//! stored with every event and could push packs past the server's `max_payload`. Only the
//! shape the W3C Trace Context spec defines for version 00 is passed on:
//! `version-traceid-parentid-flags`, 2 + 32 + 16 + 2 lowercase hex digits joined by `-`
//! (55 characters), with neither id all zeros and version `ff` (reserved as invalid) refused.
//! Anything else is dropped (the request then starts a new trace) and counted in
//! `auditstream_gateway_traceparent_dropped_total`; the request itself is never refused for
//! it, since tracing must not cost a producer its events.

/// The length of a version-00 `traceparent`.
pub const LEN: usize = 55;

/// `value` if it is a well-formed `traceparent`, else `None`.
pub fn parse(value: &[u8]) -> Option<&str> {
    if value.len() != LEN {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?;
    let mut fields = text.split('-');
    let (version, trace_id, parent_id, flags) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    let lower_hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let all_zero = |s: &str| s.bytes().all(|b| b == b'0');
    let well_formed = fields.next().is_none()
        && lower_hex(version, 2)
        && version != "ff"
        && lower_hex(trace_id, 32)
        && !all_zero(trace_id)
        && lower_hex(parent_id, 16)
        && !all_zero(parent_id)
        && lower_hex(flags, 2);
    well_formed.then_some(text)
}

/// What a request's `traceparent` header (if any) means for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// No header: nothing to continue, nothing to count.
    Absent,
    Valid(&'a str),
    /// Present but not W3C-shaped: dropped and counted.
    Dropped,
}

impl<'a> Incoming<'a> {
    pub fn of(header: Option<&'a [u8]>) -> Self {
        match header {
            None => Incoming::Absent,
            Some(v) => parse(v).map_or(Incoming::Dropped, Incoming::Valid),
        }
    }

    pub fn valid(&self) -> Option<&'a str> {
        match self {
            Incoming::Valid(v) => Some(v),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_w3c_traceparent_is_kept() {
        assert_eq!(parse(GOOD.as_bytes()), Some(GOOD));
        // Unsampled, and a later version with the same layout.
        let unsampled = GOOD.replace("-01", "-00");
        assert_eq!(parse(unsampled.as_bytes()), Some(unsampled.as_str()));
        let v1 = GOOD.replacen("00-", "01-", 1);
        assert_eq!(parse(v1.as_bytes()), Some(v1.as_str()));
        assert_eq!(Incoming::of(Some(GOOD.as_bytes())).valid(), Some(GOOD));
    }

    #[test]
    fn anything_else_is_dropped() {
        let long = format!("{GOOD}{}", "a".repeat(64 * 1024));
        let bad = [
            "",
            "00",
            // Upper case, wrong field lengths, wrong separators, extra fields.
            &GOOD.to_uppercase(),
            "00-0af7651916cd43dd8448eb211c80319-cb7ad6b7169203331-01",
            "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-1-01",
            &long,
            &GOOD[..54],
            // Not hex; all-zero ids; the invalid version.
            "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            // Header injection attempts keep the length but not the shape.
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920\r\nX: 12",
        ];
        for value in bad {
            assert_eq!(parse(value.as_bytes()), None, "{value:?}");
            assert_eq!(Incoming::of(Some(value.as_bytes())), Incoming::Dropped);
        }
        assert_eq!(parse(b"00-\xff"), None);
        assert_eq!(Incoming::of(None), Incoming::Absent);
        assert_eq!(Incoming::of(None).valid(), None);
    }
}
