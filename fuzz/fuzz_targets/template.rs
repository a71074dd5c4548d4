//! Stream message templates: compiling never panics, and a template that compiles renders
//! every valid JSON event into valid JSON (the promise in `model::template`'s docs).
#![no_main]

use auditstream_model::template::Template;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &[u8], i64)| {
    let (source, event, nanos) = input;
    let Ok(template) = Template::compile(source) else {
        return;
    };
    if serde_json::from_slice::<serde::de::IgnoredAny>(event).is_err() {
        return;
    }
    let Ok(now) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)) else {
        return;
    };
    let rendered = template.render(event, now);
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&rendered) {
        panic!(
            "template {source:?} rendered {:?} into invalid JSON ({e}): {:?}",
            String::from_utf8_lossy(event),
            String::from_utf8_lossy(&rendered)
        );
    }
});
