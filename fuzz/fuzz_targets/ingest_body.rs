//! The gateway's request parser: framing (JSON object / array, NDJSON), gzip, limits, and
//! each item's envelope validation. First byte: bit 0 gzip, bit 1 NDJSON; the rest is the body.
#![no_main]

use auditstream_model::{
    Limits,
    body::{Framing, decode},
    validate_id,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    // Small limits so the fuzzer reaches them.
    let limits = Limits {
        max_event_bytes: 4 * 1024,
        max_request_bytes: 64 * 1024,
        max_events_per_request: 64,
        max_depth: 16,
    };
    let framing = if flags & 2 == 0 {
        Framing::Json
    } else {
        Framing::Ndjson
    };
    let Ok(items) = decode(body.to_vec(), flags & 1 == 1, framing, &limits) else {
        return;
    };
    assert!(!items.is_empty() && items.len() <= limits.max_events_per_request);
    for event in items.into_iter().flatten() {
        // What the gateway would store: within limits, ids safe as subject tokens, JSON.
        assert!(event.body.len() <= limits.max_event_bytes);
        assert!(validate_id(&event.org_id).is_ok(), "{:?}", event.org_id);
        assert!(validate_id(&event.workspace_id).is_ok());
        assert!(!event.id.is_empty());
        // JSON by RFC 8259's grammar, which puts no limit on numbers: `data` is passed on
        // verbatim, so a number beyond f64's range is kept, not refused (see
        // fuzz/regressions/ingest_body/huge-number and model::body's tests).
        let parsed: &serde_json::value::RawValue =
            serde_json::from_slice(&event.body).expect("a stored event is JSON");
        assert!(parsed.get().starts_with('{'));
    }
});
