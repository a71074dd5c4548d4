//! Destination validation: every field check of `model::destination`, the URL parser with its
//! SSRF address rule, and the allow-list parser. None may panic, and what they accept keeps
//! the documented shape.
#![no_main]

use auditstream_model::destination::{
    Host, NetworkAllowList, check_destination_ip, parse_http_url, validate_azure_account,
    validate_azure_container, validate_dcr_immutable_id, validate_key_prefix, validate_log_type,
    validate_monitor_stream_name, validate_s3_bucket, validate_s3_region,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str, Vec<String>, bool)| {
    let (value, url, allow, allow_http) = input;
    if validate_s3_bucket("f", value).is_ok() {
        assert!((3..=63).contains(&value.len()), "{value:?}");
    }
    if validate_log_type("f", value).is_ok() {
        assert!(value.len() <= 100);
        assert!(
            value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "{value:?}"
        );
    }
    let _ = validate_s3_region("f", value);
    let _ = validate_azure_account("f", value);
    let _ = validate_azure_container("f", value);
    let _ = validate_dcr_immutable_id("f", value);
    let _ = validate_monitor_stream_name("f", value);
    if validate_key_prefix("f", value).is_ok() {
        assert!(!value.split('/').any(|s| s == ".."), "{value:?}");
    }
    let allow = NetworkAllowList::parse(&allow).unwrap_or_default();
    if let Ok(parsed) = parse_http_url("f", url, allow_http) {
        assert!(parsed.scheme == "https" || (allow_http && parsed.scheme == "http"));
        assert!(parsed.port != 0);
        match parsed.host {
            Host::Ip(ip) => {
                let _ = check_destination_ip("f", url, ip, &allow);
            }
            Host::Name(name) => {
                assert!(!name.is_empty());
                let _ = allow.allows_host(&name);
            }
        }
    }
});
