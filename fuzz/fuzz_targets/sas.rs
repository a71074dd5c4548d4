//! Account SAS signing and redaction: any account name and key either is refused or signs;
//! the signature never survives `redact`, whatever text surrounds it.
#![no_main]

use auditstream_azure_auth::sas::{AccountKey, redact};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str, i64, u32, bool, &str)| {
    let (account, key, start, lifetime, https_only, text) = input;
    let redacted = redact(text);
    assert!(!redacted.to_ascii_lowercase().contains("sig=") || redacted.contains("REDACTED"));
    let Ok(key) = AccountKey::new(account, key) else {
        return;
    };
    let (Ok(start), Ok(expiry)) = (
        time::OffsetDateTime::from_unix_timestamp(start % 253_402_300_799),
        time::OffsetDateTime::from_unix_timestamp(start % 253_402_300_799 + i64::from(lifetime)),
    ) else {
        return;
    };
    if expiry.year() > 9999 || start.year() < 0 {
        return;
    }
    let query = key.sign(start, expiry, https_only);
    let sig = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("sig="))
        .expect("a signed SAS has a signature");
    assert!(!sig.is_empty());
    for around in [format!("{text}?{query}"), format!("{text} {query} {text}")] {
        let cleaned = redact(&around);
        assert!(!cleaned.contains(&format!("sig={sig}")), "{cleaned}");
    }
});
