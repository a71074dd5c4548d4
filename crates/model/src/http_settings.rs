//! The settings an HTTP stream's target may carry in its `headers` map: keys that configure
//! the sink (framing, Datadog and Splunk HEC fields) and are never sent as headers. Request
//! headers themselves belong in the connection, where their values are sealed, because a
//! header value can authenticate (`DD-API-KEY`, `X-Sumo-Token`, ...).

pub const FRAMING: &str = "auditstream-framing";
pub const DD_SOURCE: &str = "dd-source";
pub const DD_SERVICE: &str = "dd-service";
pub const DD_TAGS: &str = "dd-tags";
pub const DD_HOSTNAME: &str = "dd-hostname";
pub const SPLUNK_SOURCETYPE: &str = "splunk-sourcetype";
pub const SPLUNK_INDEX: &str = "splunk-index";
pub const SPLUNK_HOST: &str = "splunk-host";
pub const SPLUNK_SOURCE: &str = "splunk-source";

/// Every setting with the preset it applies to.
pub const SETTINGS: [(&str, &str); 9] = [
    (FRAMING, "generic"),
    (DD_SOURCE, "datadog"),
    (DD_SERVICE, "datadog"),
    (DD_TAGS, "datadog"),
    (DD_HOSTNAME, "datadog"),
    (SPLUNK_SOURCETYPE, "splunk_hec"),
    (SPLUNK_INDEX, "splunk_hec"),
    (SPLUNK_HOST, "splunk_hec"),
    (SPLUNK_SOURCE, "splunk_hec"),
];

/// Whether `key` (any case, surrounding spaces ignored) is one of the [`SETTINGS`].
pub fn is_setting(key: &str) -> bool {
    let lower = key.trim().to_ascii_lowercase();
    SETTINGS.iter().any(|(name, _)| *name == lower)
}

#[cfg(test)]
mod tests {
    #[test]
    fn settings_are_recognised_in_any_case() {
        assert!(super::is_setting(" Splunk-Index "));
        assert!(!super::is_setting("DD-API-KEY"));
    }
}
