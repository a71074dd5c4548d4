//! Validation rules for destination settings: S3 buckets and regions, Azure storage accounts
//! and containers, Azure Monitor Logs Ingestion IDs, object key prefixes, and HTTP destination
//! URLs with their SSRF check.
//!
//! Everything here is pure (no I/O, no DNS). The config service calls these functions when a
//! connection or stream is saved and turns a [`FieldError`] into gRPC `INVALID_ARGUMENT`; the
//! HTTP sink calls [`check_destination_ip`] again on every address it resolves at connect time,
//! because DNS answers can change after the save (DNS rebinding).
//!
//! Messages are read by administrators, so each one names the rule that was broken and, where it
//! helps, an example of a valid value. User input is quoted with escapes and truncated, so a
//! message never carries control characters or unbounded text into logs.
//!
//! Decisions (the rules themselves follow the AWS and Azure naming documentation):
//! - Documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32,
//!   3fff::/20) are refused: they are never routed on the internet, so a destination there is
//!   either a copied example or something routed privately.
//! - IPv4-mapped, NAT64 (64:ff9b::/96, 64:ff9b:1::/48) and 6to4 (2002::/16) addresses are
//!   classified by the IPv4 address they carry: a NAT64 address of a public host is what DNS64
//!   returns on IPv6-only networks and must keep working, while one wrapping 10.0.0.1 is private.
//!   Other IPv6 space outside 2000::/3, Teredo and the deprecated site-local range are refused.
//! - Cloud metadata addresses are only let through by an allow-list *network* entry that contains
//!   them, never by a host-name entry: a name can be re-pointed at the metadata service, and
//!   credentials are what an SSRF attacker is after.
//! - URL hosts that a resolver would read as IPv4 (`2130706433`, `0x7f.1`, `127.1`, `010.0.0.1`)
//!   are refused unless written as a canonical dotted quad; the message says how to write it.
//!   Detection follows the WHATWG URL rules that the HTTP client's URL parser uses, so a host
//!   accepted here as a name is a name for the client too.
//! - The Azure special containers `$root`, `$logs` and `$web` are refused (see
//!   [`validate_azure_container`] for why each one).
//! - DCR immutable IDs accept upper- and lowercase hex (Azure shows lowercase; some tools
//!   upper-case GUID-like strings), but the `dcr-` prefix must be lowercase.
//! - AWS region codes may start with 2 to 4 letters, not just 2, so the European Sovereign Cloud
//!   (`eusc-de-east-1`) is accepted; no region list is hard-coded.
//! - Key prefixes refuse `.` segments as well as `..`: HTTP clients normalise both out of URL
//!   paths, so the object would not land where the prefix says.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// A rejected field: `field` is the path the caller passes in (e.g. "destination.s3.bucket"),
/// `message` explains the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// The legacy Azure Monitor HTTP Data Collector API (workspace ID + shared key) was retired in
/// September 2026. Text used when a caller tries to configure it.
pub const LEGACY_DATA_COLLECTOR_RETIRED: &str = "the Azure Monitor HTTP Data Collector API \
(workspace ID and shared key) was retired in September 2026 and no longer accepts data; \
use the Logs Ingestion API instead: give the data collection endpoint, the data collection \
rule's immutable ID (dcr-...) and its stream name (e.g. Custom-AuditLogs_CL)";

/// Longest S3/Blob key prefix, in bytes: S3 keys may be 1024 bytes and the sink needs room for
/// the partition path and object name after the prefix.
const MAX_KEY_PREFIX_BYTES: usize = 512;
/// Longest destination URL accepted, in bytes.
const MAX_URL_LEN: usize = 2048;
/// Longest table name (log type) and stream table part, per Azure Monitor.
const MAX_TABLE_NAME: usize = 100;
/// How much of a user's value is repeated in a message.
const MAX_QUOTED_CHARS: usize = 80;

const ALLOW_LIST_HINT: &str = "HTTP destinations must be public unless an operator allow-lists \
them (http.allowed_networks)";

fn field_error(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// The value in quotes with escapes, cut to a readable length.
fn quoted(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((i, _)) => format!("{:?}…", &s[..i]),
        None => format!("{s:?}"),
    }
}

/// A character as an admin can find it in what they typed.
fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".to_owned(),
        c if c.is_control() || c.is_whitespace() => format!("{c:?}"),
        c => format!("'{c}'"),
    }
}

// ---------------------------------------------------------------------------------------------
// Amazon S3
// ---------------------------------------------------------------------------------------------

/// Prefixes AWS reserves, with the reason shown to the admin.
const S3_RESERVED_PREFIXES: [(&str, &str); 3] = [
    ("xn--", "reserved for internationalized domain names"),
    ("sthree-", "reserved by AWS"),
    (
        "amzn-s3-demo-",
        "reserved by AWS for documentation examples",
    ),
];

/// Suffixes AWS reserves, with the reason shown to the admin.
const S3_RESERVED_SUFFIXES: [(&str, &str); 5] = [
    ("-s3alias", "reserved for S3 access point aliases"),
    (
        "--ol-s3",
        "reserved for S3 Object Lambda access point aliases",
    ),
    (".mrap", "reserved for S3 Multi-Region Access Points"),
    ("--x-s3", "reserved for S3 directory buckets"),
    ("--table-s3", "reserved for S3 table buckets"),
];

/// Checks the S3 general purpose bucket naming rules.
pub fn validate_s3_bucket(field: &str, bucket: &str) -> Result<(), FieldError> {
    let fail = |m: String| Err(field_error(field, m));
    if bucket.is_empty() {
        return fail(
            "an S3 bucket name is required (3 to 63 characters: lowercase letters, digits, \
             '.' and '-')"
                .to_owned(),
        );
    }
    let q = quoted(bucket);
    if let Some(c) = bucket
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        let hint = if c.is_ascii_uppercase() {
            " (bucket names are all lowercase)"
        } else {
            ""
        };
        return fail(format!(
            "S3 bucket name {q} contains {}; only lowercase letters a-z, digits, '.' and '-' \
             are allowed{hint}",
            describe_char(c)
        ));
    }
    // Only ASCII is left, so bytes are characters.
    if !(3..=63).contains(&bucket.len()) {
        return fail(format!(
            "S3 bucket name {q} is {} characters long; it must be 3 to 63",
            bucket.len()
        ));
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bucket.as_bytes()[0]) {
        return fail(format!(
            "S3 bucket name {q} must begin with a lowercase letter or digit"
        ));
    }
    if !alnum(bucket.as_bytes()[bucket.len() - 1]) {
        return fail(format!(
            "S3 bucket name {q} must end with a lowercase letter or digit"
        ));
    }
    if bucket.contains("..") {
        return fail(format!(
            "S3 bucket name {q} must not contain two adjacent periods (\"..\")"
        ));
    }
    let parts: Vec<&str> = bucket.split('.').collect();
    if parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        return fail(format!(
            "S3 bucket name {q} must not be formatted as an IP address (like 192.168.5.4)"
        ));
    }
    for (prefix, why) in S3_RESERVED_PREFIXES {
        if bucket.starts_with(prefix) {
            return fail(format!(
                "S3 bucket name {q} must not start with \"{prefix}\" ({why})"
            ));
        }
    }
    for (suffix, why) in S3_RESERVED_SUFFIXES {
        if bucket.ends_with(suffix) {
            return fail(format!(
                "S3 bucket name {q} must not end with \"{suffix}\" ({why})"
            ));
        }
    }
    Ok(())
}

/// Checks the shape of an AWS region code (`us-east-1`, `us-gov-west-1`, `eusc-de-east-1`).
/// Only the pattern is checked, because AWS keeps adding regions.
pub fn validate_s3_region(field: &str, region: &str) -> Result<(), FieldError> {
    if region.is_empty() {
        return Err(field_error(
            field,
            "an AWS region is required: the region code of the bucket, e.g. us-east-1 or \
             eu-central-2",
        ));
    }
    if is_region_code(region) {
        return Ok(());
    }
    Err(field_error(
        field,
        format!(
            "{} is not an AWS region code; region codes look like us-east-1, eu-central-2 or \
             us-gov-west-1 (lowercase letters and hyphens, ending in a number)",
            quoted(region)
        ),
    ))
}

/// `^[a-z]{2,4}(-[a-z]+)+-[0-9]{1,2}$`
fn is_region_code(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let lower = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    let [first, middle @ .., last] = parts.as_slice() else {
        return false;
    };
    (2..=4).contains(&first.len())
        && lower(first)
        && !middle.is_empty()
        && middle.iter().all(|p| lower(p))
        && (1..=2).contains(&last.len())
        && last.bytes().all(|b| b.is_ascii_digit())
}

// ---------------------------------------------------------------------------------------------
// Azure Blob Storage
// ---------------------------------------------------------------------------------------------

/// Checks an Azure storage account name: 3 to 24 lowercase letters and digits.
pub fn validate_azure_account(field: &str, account: &str) -> Result<(), FieldError> {
    let fail = |m: String| Err(field_error(field, m));
    if account.is_empty() {
        return fail(
            "an Azure storage account name is required (3 to 24 lowercase letters and digits)"
                .to_owned(),
        );
    }
    let q = quoted(account);
    if let Some(c) = account
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
    {
        // People paste the endpoint host; say what is wanted instead.
        let hint = if c == '.' {
            " (give the account name only, not the endpoint host name)"
        } else if c.is_ascii_uppercase() {
            " (account names are all lowercase)"
        } else {
            ""
        };
        return fail(format!(
            "Azure storage account name {q} contains {}; only lowercase letters a-z and digits \
             are allowed{hint}",
            describe_char(c)
        ));
    }
    if !(3..=24).contains(&account.len()) {
        return fail(format!(
            "Azure storage account name {q} is {} characters long; it must be 3 to 24",
            account.len()
        ));
    }
    Ok(())
}

/// Checks an Azure blob container name: 3 to 63 characters, lowercase letters, digits and
/// hyphens, starting with a letter or digit, no `--`, not ending with `-`.
///
/// The special containers are refused: blob names in `$root` may not contain `/`, which key
/// prefixes and the sink's partitioned object names use; `$logs` belongs to Storage Analytics;
/// anything in `$web` may be served publicly by the account's static website.
pub fn validate_azure_container(field: &str, container: &str) -> Result<(), FieldError> {
    let fail = |m: String| Err(field_error(field, m));
    let instead = "use a regular container such as audit-logs";
    match container {
        "" => {
            return fail(
                "an Azure blob container name is required (3 to 63 characters: lowercase \
                 letters, digits and '-')"
                    .to_owned(),
            );
        }
        "$root" => {
            return fail(format!(
                "the $root container is not supported: Azure does not allow '/' in the names of \
                 blobs in $root, and key prefixes and object names use it; {instead}"
            ));
        }
        "$logs" => {
            return fail(format!(
                "the $logs container is reserved for Azure Storage Analytics logs; {instead}"
            ));
        }
        "$web" => {
            return fail(format!(
                "the $web container serves the account's static website, so audit logs written \
                 there could be publicly readable; {instead}"
            ));
        }
        _ => {}
    }
    let q = quoted(container);
    if let Some(c) = container
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        let hint = if c.is_ascii_uppercase() {
            " (container names are all lowercase)"
        } else {
            ""
        };
        return fail(format!(
            "Azure blob container name {q} contains {}; only lowercase letters a-z, digits and \
             '-' are allowed{hint}",
            describe_char(c)
        ));
    }
    if !(3..=63).contains(&container.len()) {
        return fail(format!(
            "Azure blob container name {q} is {} characters long; it must be 3 to 63",
            container.len()
        ));
    }
    if container.starts_with('-') {
        return fail(format!(
            "Azure blob container name {q} must begin with a lowercase letter or digit"
        ));
    }
    if container.contains("--") {
        return fail(format!(
            "Azure blob container name {q} must not contain consecutive hyphens (\"--\")"
        ));
    }
    if container.ends_with('-') {
        return fail(format!(
            "Azure blob container name {q} must not end with a hyphen"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Azure Monitor Logs Ingestion API
// ---------------------------------------------------------------------------------------------

/// Checks a data collection rule immutable ID: `dcr-` and 32 hex digits (either case).
pub fn validate_dcr_immutable_id(field: &str, id: &str) -> Result<(), FieldError> {
    if id.is_empty() {
        return Err(field_error(
            field,
            "a data collection rule immutable ID is required: \"dcr-\" followed by 32 \
             hexadecimal characters, shown as immutableId in the rule's JSON view",
        ));
    }
    if let Some(hex) = id.strip_prefix("dcr-")
        && hex.len() == 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Ok(());
    }
    // The ARM resource ID is the value most often pasted by mistake.
    let hint = if id.starts_with("/subscriptions/") {
        "; this looks like the rule's resource ID, use its immutableId instead"
    } else {
        ""
    };
    Err(field_error(
        field,
        format!(
            "{} is not a data collection rule immutable ID; expected \"dcr-\" followed by 32 \
             hexadecimal characters, e.g. dcr-0123456789abcdef0123456789abcdef{hint}",
            quoted(id)
        ),
    ))
}

/// Checks a Logs Ingestion stream name: `Custom-<table>` for a custom table (usually ending in
/// `_CL`) or `Microsoft-<table>` for a built-in one; letters, digits, `_` and `-` after the
/// prefix, at most 100 of them.
pub fn validate_monitor_stream_name(field: &str, name: &str) -> Result<(), FieldError> {
    const EXAMPLE: &str = "e.g. Custom-AuditLogs_CL";
    let fail = |m: String| Err(field_error(field, m));
    if name.is_empty() {
        return fail(format!(
            "a data collection rule stream name is required, {EXAMPLE}"
        ));
    }
    let q = quoted(name);
    let Some((prefix, table)) = ["Custom-", "Microsoft-"]
        .into_iter()
        .find_map(|p| name.strip_prefix(p).map(|t| (p, t)))
    else {
        return fail(format!(
            "stream name {q} must start with \"Custom-\" (for a custom table, {EXAMPLE}) or \
             \"Microsoft-\" (for a built-in table)"
        ));
    };
    if table.is_empty() {
        return fail(format!(
            "stream name {q} has no table name after \"{prefix}\", {EXAMPLE}"
        ));
    }
    if let Some(c) = table
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return fail(format!(
            "stream name {q} contains {}; after \"{prefix}\" only letters, digits, '_' and '-' \
             are allowed, {EXAMPLE}",
            describe_char(c)
        ));
    }
    if table.len() > MAX_TABLE_NAME {
        return fail(format!(
            "stream name {q} has {} characters after \"{prefix}\"; at most {MAX_TABLE_NAME} are \
             allowed",
            table.len()
        ));
    }
    Ok(())
}

/// Checks a log type (Log Analytics table name): 1 to 100 letters, digits and `_`.
pub fn validate_log_type(field: &str, log_type: &str) -> Result<(), FieldError> {
    let fail = |m: String| Err(field_error(field, m));
    if log_type.is_empty() {
        return fail(format!(
            "a log type is required (letters, digits and '_', at most {MAX_TABLE_NAME} \
             characters), e.g. AuditLogs"
        ));
    }
    let q = quoted(log_type);
    if let Some(c) = log_type
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return fail(format!(
            "log type {q} contains {}; only letters, digits and '_' are allowed",
            describe_char(c)
        ));
    }
    if log_type.len() > MAX_TABLE_NAME {
        return fail(format!(
            "log type {q} is {} characters long; at most {MAX_TABLE_NAME} are allowed",
            log_type.len()
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Object key prefixes (S3 and Blob)
// ---------------------------------------------------------------------------------------------

/// Checks an object key prefix. Empty means "no prefix". At most 512 bytes, no leading `/`,
/// no empty (`//`), `.` or `..` segments, no control characters and no backslash.
pub fn validate_key_prefix(field: &str, prefix: &str) -> Result<(), FieldError> {
    let fail = |m: String| Err(field_error(field, m));
    if prefix.len() > MAX_KEY_PREFIX_BYTES {
        return fail(format!(
            "key prefix is {} bytes long; at most {MAX_KEY_PREFIX_BYTES} are allowed",
            prefix.len()
        ));
    }
    let q = quoted(prefix);
    if let Some(c) = prefix.chars().find(|c| c.is_control()) {
        return fail(format!(
            "key prefix {q} contains the control character {c:?}; only printable characters \
             are allowed"
        ));
    }
    if prefix.contains('\\') {
        return fail(format!(
            "key prefix {q} contains a backslash; use '/' to separate segments, e.g. audit/prod/"
        ));
    }
    if prefix.starts_with('/') {
        return fail(format!(
            "key prefix {q} must not start with '/'; write it like audit/prod/"
        ));
    }
    if prefix.contains("//") {
        return fail(format!(
            "key prefix {q} must not contain an empty segment (\"//\")"
        ));
    }
    if prefix.split('/').any(|s| s == "." || s == "..") {
        return fail(format!(
            "key prefix {q} must not contain a \".\" or \"..\" segment; HTTP clients resolve \
             them as relative paths, so objects would land under a different key"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// HTTP destination URLs
// ---------------------------------------------------------------------------------------------

/// Parsed http(s) destination URL.
///
/// `url` is the normalised URL the sink must request (lowercase scheme and host, default port
/// omitted, path at least `/`), so the address that was checked is the one that is contacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub scheme: String,
    pub host: Host,
    pub port: u16,
    pub url: String,
}

/// The host of an [`HttpUrl`]: an IP literal, or a (lowercase, ASCII) name to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

/// Why a host name was refused; rendered after "host \"...\"".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostError {
    BadChar(char),
    EmptyLabel,
    LabelTooLong,
    LabelHyphen,
    TooLong,
    NonCanonicalIpv4(Ipv4Addr),
    BadNumeric,
}

impl HostError {
    fn reason(self) -> String {
        match self {
            HostError::BadChar(c) => format!(
                "contains {}; host names may only contain letters, digits, '.' and '-' \
                 (write international names in their xn-- form)",
                describe_char(c)
            ),
            HostError::EmptyLabel => {
                "has an empty label (a leading, trailing or doubled '.')".to_owned()
            }
            HostError::LabelTooLong => "has a label longer than 63 characters".to_owned(),
            HostError::LabelHyphen => "has a label that begins or ends with '-'".to_owned(),
            HostError::TooLong => "is longer than 253 characters".to_owned(),
            HostError::NonCanonicalIpv4(ip) => format!(
                "is a non-standard way of writing the IPv4 address {ip}, which resolvers \
                 interpret inconsistently; write it as {ip}"
            ),
            HostError::BadNumeric => "ends in a number but is not a valid IPv4 address".to_owned(),
        }
    }
}

/// Parses an unbracketed host: a canonical dotted-quad IPv4 address or a DNS name.
///
/// Any host whose last label is numeric is an IPv4 address to the WHATWG URL parser (and to
/// `inet_aton`): `2130706433`, `0x7f.1` and `127.1` all mean 127.0.0.1. Such hosts are parsed
/// the same way and accepted only in canonical form, so they can never pass as names.
fn parse_host(host: &str) -> Result<Host, HostError> {
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '-'))
    {
        return Err(HostError::BadChar(c));
    }
    if ends_in_number(host) {
        let ip = whatwg_ipv4(host).ok_or(HostError::BadNumeric)?;
        return if ip.to_string() == host {
            Ok(Host::Ip(IpAddr::V4(ip)))
        } else {
            Err(HostError::NonCanonicalIpv4(ip))
        };
    }
    if host.len() > 253 {
        return Err(HostError::TooLong);
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err(HostError::EmptyLabel);
        }
        if label.len() > 63 {
            return Err(HostError::LabelTooLong);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(HostError::LabelHyphen);
        }
    }
    Ok(Host::Name(host.to_ascii_lowercase()))
}

/// WHATWG "ends in a number": the last label (ignoring one trailing dot) is all digits or
/// parses as an IPv4 number (`0x…`).
fn ends_in_number(host: &str) -> bool {
    let mut labels: Vec<&str> = host.split('.').collect();
    if labels.len() > 1 && labels.last() == Some(&"") {
        labels.pop();
    }
    let last = labels.last().copied().unwrap_or_default();
    (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()))
        || parse_ipv4_number(last).is_some()
}

/// WHATWG IPv4 number: `0x` hex, leading-zero octal, or decimal. Values too large for `u64`
/// saturate so the range checks in [`whatwg_ipv4`] reject them.
fn parse_ipv4_number(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (hex, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() {
        return Some(0);
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    Some(u64::from_str_radix(digits, radix).unwrap_or(u64::MAX))
}

/// The WHATWG IPv4 parser (1 to 4 parts, the last filling the remaining bytes).
fn whatwg_ipv4(host: &str) -> Option<Ipv4Addr> {
    let mut parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 1 && parts.last() == Some(&"") {
        parts.pop();
    }
    if parts.len() > 4 {
        return None;
    }
    let numbers = parts
        .iter()
        .map(|p| parse_ipv4_number(p))
        .collect::<Option<Vec<u64>>>()?;
    let (last, init) = numbers.split_last()?;
    if init.iter().any(|&n| n > 255) {
        return None;
    }
    let remaining_bytes = u32::try_from(5 - numbers.len()).ok()?;
    if *last >= 256u64.pow(remaining_bytes) {
        return None;
    }
    let mut value = *last;
    for (i, n) in init.iter().enumerate() {
        value += n * 256u64.pow(3 - u32::try_from(i).ok()?);
    }
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

pub(crate) fn host_text(host: &Host) -> String {
    match host {
        Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
        Host::Ip(IpAddr::V4(ip)) => ip.to_string(),
        Host::Name(name) => name.clone(),
    }
}

/// `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`
fn is_scheme(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Parses and checks the URL: absolute, scheme https (or http only when `allow_http`), a host,
/// no userinfo (credentials belong in the connection), no fragment; default ports 443/80; IPv6
/// literals in brackets.
///
/// Deliberately stricter than the WHATWG parser the HTTP client uses (no whitespace, control
/// characters or backslashes anywhere, hosts limited to `[A-Za-z0-9.-]`), so the two cannot
/// disagree about which host is contacted.
pub fn parse_http_url(field: &str, url: &str, allow_http: bool) -> Result<HttpUrl, FieldError> {
    const EXAMPLE: &str = "e.g. https://logs.example.com/ingest";
    let fail = |m: String| field_error(field, m);
    if url.is_empty() {
        return Err(fail(format!("a URL is required, {EXAMPLE}")));
    }
    if url.len() > MAX_URL_LEN {
        return Err(fail(format!(
            "URL is {} bytes long; at most {MAX_URL_LEN} are allowed",
            url.len()
        )));
    }
    if let Some(c) = url.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(fail(format!(
            "URL contains {}; spaces and control characters are not allowed (percent-encode \
             them in the path)",
            describe_char(c)
        )));
    }
    if url.contains('\\') {
        return Err(fail(
            "URL contains a backslash, which URL parsers treat inconsistently; use '/' or \
             percent-encode it as %5C"
                .to_owned(),
        ));
    }
    let Some((scheme, rest)) = url.split_once("://").filter(|(s, _)| is_scheme(s)) else {
        return Err(fail(format!(
            "{} is not an absolute URL; write it with its scheme, {EXAMPLE}",
            quoted(url)
        )));
    };
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" if allow_http => 80,
        "http" => {
            return Err(fail(
                "URL uses http, which would send audit events unencrypted; use https (an \
                 operator can allow plain http with the setting http.allow_insecure_http)"
                    .to_owned(),
            ));
        }
        _ => {
            return Err(fail(format!(
                "URL scheme {} is not supported; use https",
                quoted(&scheme)
            )));
        }
    };
    if url.contains('#') {
        return Err(fail(
            "URL must not contain a fragment (\"#...\"); fragments are never sent to the server"
                .to_owned(),
        ));
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err(fail(
            "URL must not contain a user name or password (\"user:password@\" before the host); \
             put credentials in the connection's authentication settings"
                .to_owned(),
        ));
    }
    let (host, port_text) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((inner, tail)) = bracketed.split_once(']') else {
            return Err(fail(
                "URL has an IPv6 address without its closing ']'".to_owned(),
            ));
        };
        let ip: Ipv6Addr = inner.parse().map_err(|_| {
            fail(format!(
                "URL host [{inner}] is not a valid IPv6 address (zone IDs like %eth0 are not \
                 accepted)"
            ))
        })?;
        let port_text = if tail.is_empty() {
            None
        } else if let Some(p) = tail.strip_prefix(':') {
            Some(p)
        } else {
            return Err(fail(format!(
                "URL has {} after the IPv6 address; expected ':' and a port, or a path",
                quoted(tail)
            )));
        };
        (Host::Ip(IpAddr::V6(ip)), port_text)
    } else {
        if authority.matches(':').count() > 1 {
            return Err(fail(
                "URL host looks like an IPv6 address; put it in brackets, e.g. \
                 https://[2001:db8::1]:8443/ingest"
                    .to_owned(),
            ));
        }
        let (name, port_text) = match authority.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (authority, None),
        };
        if name.is_empty() {
            return Err(fail(format!("URL has no host, {EXAMPLE}")));
        }
        let host = parse_host(name)
            .map_err(|e| fail(format!("URL host {} {}", quoted(name), e.reason())))?;
        (host, port_text)
    };
    let port = match port_text {
        None => default_port,
        Some("") => return Err(fail("URL has an empty port after ':'".to_owned())),
        Some(p) => parse_port(p).ok_or_else(|| {
            fail(format!(
                "URL port {} is not a number from 1 to 65535",
                quoted(p)
            ))
        })?,
    };
    let port_part = if port == default_port {
        String::new()
    } else {
        format!(":{port}")
    };
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let url = format!("{scheme}://{}{port_part}{path}", host_text(&host));
    Ok(HttpUrl {
        scheme,
        host,
        port,
        url,
    })
}

fn parse_port(p: &str) -> Option<u16> {
    if !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = p.trim_start_matches('0');
    if significant.len() > 5 {
        return None;
    }
    // All zeros leaves "", which is port 0: refused.
    significant.parse::<u16>().ok().filter(|&port| port != 0)
}

// ---------------------------------------------------------------------------------------------
// SSRF: allow-list and address classes
// ---------------------------------------------------------------------------------------------

/// Operator allow-list of networks/hosts that may be targeted even though they are private etc.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkAllowList {
    pub networks: Vec<IpNet>,
    pub hosts: Vec<String>,
}

impl NetworkAllowList {
    /// Parses entries like "10.1.0.0/16", "192.168.1.10" (single address), "[::1]" / "::1",
    /// "receiver.internal" (hostname, exact, case-insensitive). Errors name the bad entry.
    ///
    /// Surrounding whitespace is ignored; a network written with host bits set
    /// ("10.1.2.3/16") means its network (10.1.0.0/16).
    pub fn parse(entries: &[String]) -> Result<NetworkAllowList, String> {
        let mut list = NetworkAllowList::default();
        for raw in entries {
            let entry = raw.trim();
            let q = quoted(raw);
            if entry.is_empty() {
                return Err("allow-list entry \"\" is empty; remove it".to_owned());
            }
            // Brackets are how IPv6 appears in URLs; accept them here too.
            let unbracketed: String = if entry.starts_with('[') {
                entry.chars().filter(|c| !matches!(c, '[' | ']')).collect()
            } else {
                entry.to_owned()
            };
            if unbracketed.contains('/') {
                let net: IpNet = unbracketed.parse().map_err(|_| {
                    format!(
                        "allow-list entry {q} is not a valid network; write networks like \
                         10.1.0.0/16 or fd00::/8"
                    )
                })?;
                list.networks.push(net.trunc());
                continue;
            }
            if let Ok(ip) = unbracketed.parse::<IpAddr>() {
                list.networks.push(IpNet::from(ip));
                continue;
            }
            if unbracketed.contains(':') || entry.starts_with('[') {
                return Err(format!("allow-list entry {q} is not a valid IP address"));
            }
            if entry.contains('*') {
                return Err(format!(
                    "allow-list entry {q}: wildcards are not supported; list each host name, \
                     or allow its network (e.g. 10.1.0.0/16)"
                ));
            }
            match parse_host(entry) {
                Ok(Host::Name(name)) => list.hosts.push(name),
                // A canonical dotted quad was handled above.
                Ok(Host::Ip(ip)) => list.networks.push(IpNet::from(ip)),
                Err(e) => return Err(format!("allow-list entry {q}: host {}", e.reason())),
            }
        }
        Ok(list)
    }

    /// Whether the host name (as written in the URL) is allow-listed; case-insensitive.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// Whether the address is in an allow-listed network. IPv4-mapped IPv6 addresses match
    /// IPv4 networks.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        self.networks
            .iter()
            .any(|n| n.contains(&ip) || n.contains(&canonical))
    }
}

const LOOPBACK: &str = "loopback";
const PRIVATE: &str = "private";
const LINK_LOCAL: &str = "link-local";
const CLOUD_METADATA: &str = "cloud metadata";
const UNSPECIFIED: &str = "unspecified";
const MULTICAST: &str = "multicast";
const BROADCAST: &str = "broadcast";
const SHARED: &str = "shared address space";
const DOCUMENTATION: &str = "documentation";
const UNIQUE_LOCAL: &str = "unique local";
const BENCHMARKING: &str = "benchmarking";
const RESERVED: &str = "reserved";
const SITE_LOCAL: &str = "site-local";
const TEREDO: &str = "Teredo";

/// Metadata and credential endpoints: AWS/GCP/Azure/OCI/DigitalOcean (169.254.169.254), AWS
/// ECS task credentials (169.254.170.2), EKS Pod Identity (169.254.170.23), Alibaba Cloud
/// (100.100.100.200).
const METADATA_V4: [Ipv4Addr; 4] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(169, 254, 170, 23),
    Ipv4Addr::new(100, 100, 100, 200),
];

/// AWS IMDS (fd00:ec2::254) and EKS Pod Identity (fd00:ec2::23) over IPv6.
const METADATA_V6: [Ipv6Addr; 2] = [
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x23),
];

/// Non-public IPv4 ranges, first match wins: (network, prefix length, class).
const V4_RANGES: [([u8; 4], u32, &str); 17] = [
    ([0, 0, 0, 0], 32, UNSPECIFIED),
    ([0, 0, 0, 0], 8, RESERVED), // "this network"
    ([10, 0, 0, 0], 8, PRIVATE),
    ([100, 64, 0, 0], 10, SHARED),
    ([127, 0, 0, 0], 8, LOOPBACK),
    ([169, 254, 0, 0], 16, LINK_LOCAL),
    ([172, 16, 0, 0], 12, PRIVATE),
    ([192, 0, 0, 0], 24, RESERVED), // IETF protocol assignments
    ([192, 0, 2, 0], 24, DOCUMENTATION),
    ([192, 88, 99, 0], 24, RESERVED), // deprecated 6to4 relay anycast
    ([192, 168, 0, 0], 16, PRIVATE),
    ([198, 18, 0, 0], 15, BENCHMARKING),
    ([198, 51, 100, 0], 24, DOCUMENTATION),
    ([203, 0, 113, 0], 24, DOCUMENTATION),
    ([224, 0, 0, 0], 4, MULTICAST),
    ([255, 255, 255, 255], 32, BROADCAST),
    ([240, 0, 0, 0], 4, RESERVED),
];

/// Non-public IPv6 ranges checked after the special cases, first match wins.
const V6_RANGES: [(u128, u32, &str); 9] = [
    (0x0100_0000_0000_0000_0000_0000_0000_0000, 64, RESERVED), // discard-only
    (0x2001_0000_0000_0000_0000_0000_0000_0000, 32, TEREDO),
    (0x2001_0002_0000_0000_0000_0000_0000_0000, 48, BENCHMARKING),
    (0x2001_0db8_0000_0000_0000_0000_0000_0000, 32, DOCUMENTATION),
    (0x3fff_0000_0000_0000_0000_0000_0000_0000, 20, DOCUMENTATION),
    (0xfc00_0000_0000_0000_0000_0000_0000_0000, 7, UNIQUE_LOCAL),
    (0xfe80_0000_0000_0000_0000_0000_0000_0000, 10, LINK_LOCAL),
    (0xfec0_0000_0000_0000_0000_0000_0000_0000, 10, SITE_LOCAL),
    (0xff00_0000_0000_0000_0000_0000_0000_0000, 8, MULTICAST),
];

fn in_v6(ip: u128, net: u128, len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    ip & mask == net & mask
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    if METADATA_V4.contains(&ip) {
        return Some(CLOUD_METADATA);
    }
    let ip = u32::from(ip);
    V4_RANGES.iter().find_map(|&(net, len, class)| {
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        (ip & mask == u32::from_be_bytes(net) & mask).then_some(class)
    })
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some(UNSPECIFIED);
    }
    if ip.is_loopback() {
        return Some(LOOPBACK);
    }
    if METADATA_V6.contains(&ip) {
        return Some(CLOUD_METADATA);
    }
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from(bits as u32);
    // IPv4-mapped (::ffff:0:0/96) and NAT64 (64:ff9b::/96, 64:ff9b:1::/48) carry the IPv4
    // address in the low 32 bits; 6to4 (2002::/16) in bits 16..48.
    if in_v6(bits, 0xffff_0000_0000, 96)
        || in_v6(bits, 0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96)
        || in_v6(bits, 0x0064_ff9b_0001_0000_0000_0000_0000_0000, 48)
    {
        return v4_class(low32);
    }
    if in_v6(bits, 0x2002_0000_0000_0000_0000_0000_0000_0000, 16) {
        return v4_class(Ipv4Addr::from((bits >> 80) as u32));
    }
    if let Some(class) = V6_RANGES
        .iter()
        .find_map(|&(net, len, class)| in_v6(bits, net, len).then_some(class))
    {
        return Some(class);
    }
    // Everything else outside global unicast (2000::/3), e.g. deprecated IPv4-compatible
    // ::a.b.c.d and the IPv4-translated ::ffff:0:a.b.c.d, is not a destination.
    if !in_v6(bits, 0x2000_0000_0000_0000_0000_0000_0000_0000, 3) {
        return Some(RESERVED);
    }
    None
}

/// Why an address may not be a destination, or None if it is public.
///
/// Classes: "loopback", "private", "link-local", "cloud metadata", "unspecified", "multicast",
/// "broadcast", "shared address space" (100.64.0.0/10), "documentation", "unique local"
/// (fc00::/7), "benchmarking" (198.18.0.0/15, 2001:2::/48), "site-local" (fec0::/10),
/// "Teredo" (2001::/32) and "reserved" (other special-purpose space). IPv4-mapped, NAT64 and
/// 6to4 IPv6 addresses are classified by the IPv4 address they carry.
pub fn forbidden_address_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => v4_class(ip),
        IpAddr::V6(ip) => v6_class(ip),
    }
}

/// The class as a noun phrase for messages.
fn class_phrase(class: &str) -> &'static str {
    match class {
        LOOPBACK => "a loopback address",
        PRIVATE => "a private address",
        LINK_LOCAL => "a link-local address",
        CLOUD_METADATA => "a cloud metadata service address",
        UNSPECIFIED => "an unspecified address",
        MULTICAST => "a multicast address",
        BROADCAST => "the broadcast address",
        SHARED => "a shared address space (carrier-grade NAT) address",
        DOCUMENTATION => "a documentation address (reserved for examples)",
        UNIQUE_LOCAL => "a unique local address",
        BENCHMARKING => "a benchmarking address",
        SITE_LOCAL => "a deprecated site-local address",
        TEREDO => "a Teredo tunnel address",
        _ => "a reserved address",
    }
}

/// The check applied to every resolved address of the host (at save time and again at connect
/// time): error unless public, or the allow-list permits the host name or the IP.
///
/// `host_label` is the URL host as written; it is named in the message when it differs from the
/// IP ("localhost resolves to a loopback address; ..."; the address itself is never named,
/// so an error tells a tenant nothing about the platform's internal DNS, L1). A cloud metadata address is
/// only permitted by an allow-listed network containing it, never by an allow-listed name.
pub fn check_destination_ip(
    field: &str,
    host_label: &str,
    ip: IpAddr,
    allow: &NetworkAllowList,
) -> Result<(), FieldError> {
    if allow.allows_ip(ip) {
        return Ok(());
    }
    let Some(class) = forbidden_address_class(ip) else {
        return Ok(());
    };
    let name_allowed = allow.allows_host(host_label);
    if name_allowed && class != CLOUD_METADATA {
        return Ok(());
    }
    let phrase = class_phrase(class);
    let label = host_label.trim_start_matches('[').trim_end_matches(']');
    let same = label.is_empty() || label.parse::<IpAddr>().is_ok_and(|l| l == ip);
    let subject = if same {
        format!("{ip} is {phrase}")
    } else {
        format!("{} resolves to {phrase}", quoted_label(host_label))
    };
    let rule = if name_allowed {
        "allow-listing a host name does not cover cloud metadata addresses; only an allow-listed \
         network containing the address does (http.allowed_networks)"
    } else {
        ALLOW_LIST_HINT
    };
    Err(field_error(field, format!("{subject}; {rule}")))
}

/// Host labels that passed [`parse_http_url`] are plain; anything else is quoted.
fn quoted_label(label: &str) -> String {
    if !label.is_empty()
        && label.len() <= 253
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'))
    {
        label.to_owned()
    } else {
        quoted(label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: &str = "f";

    fn msg<T: std::fmt::Debug>(r: Result<T, FieldError>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.field, F);
        e.message
    }

    #[test]
    fn field_error_display_names_the_field() {
        let e = validate_s3_bucket("destination.s3.bucket", "ab").unwrap_err();
        assert_eq!(
            e.to_string(),
            "destination.s3.bucket: S3 bucket name \"ab\" is 2 characters long; it must be 3 to 63"
        );
    }

    #[test]
    fn s3_bucket_accepts_valid_names() {
        for ok in [
            "abc",
            "my-audit-logs",
            "logs.example.com",
            "a1b2c3",
            "123",
            "1.2.3",
            "1.2.3.4.5",
            "1-2.3.4",
            &"a".repeat(63),
            "xn-abc",
            "my-sthree-bucket",
            "bucket-s3alias-x",
        ] {
            assert_eq!(validate_s3_bucket(F, ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn s3_bucket_rejects_each_rule_with_its_own_message() {
        for (bad, want) in [
            (
                "",
                "an S3 bucket name is required (3 to 63 characters: lowercase letters, digits, \
                 '.' and '-')",
            ),
            (
                "My-Bucket",
                "S3 bucket name \"My-Bucket\" contains 'M'; only lowercase letters a-z, digits, \
                 '.' and '-' are allowed (bucket names are all lowercase)",
            ),
            (
                "my_bucket",
                "S3 bucket name \"my_bucket\" contains '_'; only lowercase letters a-z, digits, \
                 '.' and '-' are allowed",
            ),
            (
                "my bucket",
                "S3 bucket name \"my bucket\" contains a space; only lowercase letters a-z, \
                 digits, '.' and '-' are allowed",
            ),
            (
                "ab",
                "S3 bucket name \"ab\" is 2 characters long; it must be 3 to 63",
            ),
            (
                "-abc",
                "S3 bucket name \"-abc\" must begin with a lowercase letter or digit",
            ),
            (
                ".abc",
                "S3 bucket name \".abc\" must begin with a lowercase letter or digit",
            ),
            (
                "abc-",
                "S3 bucket name \"abc-\" must end with a lowercase letter or digit",
            ),
            (
                "abc.",
                "S3 bucket name \"abc.\" must end with a lowercase letter or digit",
            ),
            (
                "a..b",
                "S3 bucket name \"a..b\" must not contain two adjacent periods (\"..\")",
            ),
            (
                "192.168.5.4",
                "S3 bucket name \"192.168.5.4\" must not be formatted as an IP address (like \
                 192.168.5.4)",
            ),
            (
                "xn--abc",
                "S3 bucket name \"xn--abc\" must not start with \"xn--\" (reserved for \
                 internationalized domain names)",
            ),
            (
                "sthree-logs",
                "S3 bucket name \"sthree-logs\" must not start with \"sthree-\" (reserved by AWS)",
            ),
            (
                "amzn-s3-demo-bucket",
                "S3 bucket name \"amzn-s3-demo-bucket\" must not start with \"amzn-s3-demo-\" \
                 (reserved by AWS for documentation examples)",
            ),
            (
                "logs-s3alias",
                "S3 bucket name \"logs-s3alias\" must not end with \"-s3alias\" (reserved for S3 \
                 access point aliases)",
            ),
            (
                "logs--ol-s3",
                "S3 bucket name \"logs--ol-s3\" must not end with \"--ol-s3\" (reserved for S3 \
                 Object Lambda access point aliases)",
            ),
            (
                "logs.mrap",
                "S3 bucket name \"logs.mrap\" must not end with \".mrap\" (reserved for S3 \
                 Multi-Region Access Points)",
            ),
            (
                "logs--use1-az4--x-s3",
                "S3 bucket name \"logs--use1-az4--x-s3\" must not end with \"--x-s3\" (reserved \
                 for S3 directory buckets)",
            ),
            (
                "logs--table-s3",
                "S3 bucket name \"logs--table-s3\" must not end with \"--table-s3\" (reserved \
                 for S3 table buckets)",
            ),
        ] {
            assert_eq!(msg(validate_s3_bucket(F, bad)), want, "{bad:?}");
        }
        assert_eq!(
            msg(validate_s3_bucket(F, &"a".repeat(64))),
            format!(
                "S3 bucket name \"{}\" is 64 characters long; it must be 3 to 63",
                "a".repeat(64)
            )
        );
    }

    #[test]
    fn s3_region_is_checked_by_pattern() {
        for ok in [
            "us-east-1",
            "eu-central-2",
            "ap-southeast-4",
            "us-gov-west-1",
            "cn-north-1",
            "il-central-1",
            "us-isob-east-1",
            "eusc-de-east-1",
            "xx-new-region-12",
        ] {
            assert_eq!(validate_s3_region(F, ok), Ok(()), "{ok}");
        }
        for bad in [
            "US-EAST-1",
            "us-east",
            "useast1",
            "us-east-1a",
            "us-east-123",
            "u-east-1",
            "usabc-east-1",
            "us--east-1",
            "us-1",
            "us-east-1 ",
            "-us-east-1",
            "us-east1",
        ] {
            assert!(validate_s3_region(F, bad).is_err(), "{bad}");
        }
        assert_eq!(
            msg(validate_s3_region(F, "")),
            "an AWS region is required: the region code of the bucket, e.g. us-east-1 or \
             eu-central-2"
        );
        assert_eq!(
            msg(validate_s3_region(F, "Frankfurt")),
            "\"Frankfurt\" is not an AWS region code; region codes look like us-east-1, \
             eu-central-2 or us-gov-west-1 (lowercase letters and hyphens, ending in a number)"
        );
    }

    #[test]
    fn azure_account_names() {
        for ok in ["abc", "auditlogs01", &"a".repeat(24)] {
            assert_eq!(validate_azure_account(F, ok), Ok(()), "{ok}");
        }
        for (bad, want) in [
            (
                "",
                "an Azure storage account name is required (3 to 24 lowercase letters and digits)",
            ),
            (
                "ab",
                "Azure storage account name \"ab\" is 2 characters long; it must be 3 to 24",
            ),
            (
                "audit-logs",
                "Azure storage account name \"audit-logs\" contains '-'; only lowercase letters \
                 a-z and digits are allowed",
            ),
            (
                "AuditLogs",
                "Azure storage account name \"AuditLogs\" contains 'A'; only lowercase letters \
                 a-z and digits are allowed (account names are all lowercase)",
            ),
            (
                "audit.blob.core.windows.net",
                "Azure storage account name \"audit.blob.core.windows.net\" contains '.'; only \
                 lowercase letters a-z and digits are allowed (give the account name only, not \
                 the endpoint host name)",
            ),
        ] {
            assert_eq!(msg(validate_azure_account(F, bad)), want, "{bad:?}");
        }
        assert!(validate_azure_account(F, &"a".repeat(25)).is_err());
    }

    #[test]
    fn azure_container_names() {
        for ok in ["abc", "audit-logs", "a-b-c", "0logs", &"a".repeat(63)] {
            assert_eq!(validate_azure_container(F, ok), Ok(()), "{ok}");
        }
        for (bad, want) in [
            (
                "",
                "an Azure blob container name is required (3 to 63 characters: lowercase \
                 letters, digits and '-')",
            ),
            (
                "ab",
                "Azure blob container name \"ab\" is 2 characters long; it must be 3 to 63",
            ),
            (
                "Audit",
                "Azure blob container name \"Audit\" contains 'A'; only lowercase letters a-z, \
                 digits and '-' are allowed (container names are all lowercase)",
            ),
            (
                "audit_logs",
                "Azure blob container name \"audit_logs\" contains '_'; only lowercase letters \
                 a-z, digits and '-' are allowed",
            ),
            (
                "-audit",
                "Azure blob container name \"-audit\" must begin with a lowercase letter or digit",
            ),
            (
                "audit--logs",
                "Azure blob container name \"audit--logs\" must not contain consecutive hyphens \
                 (\"--\")",
            ),
            (
                "audit-",
                "Azure blob container name \"audit-\" must not end with a hyphen",
            ),
            (
                "$root",
                "the $root container is not supported: Azure does not allow '/' in the names of \
                 blobs in $root, and key prefixes and object names use it; use a regular \
                 container such as audit-logs",
            ),
            (
                "$logs",
                "the $logs container is reserved for Azure Storage Analytics logs; use a \
                 regular container such as audit-logs",
            ),
            (
                "$web",
                "the $web container serves the account's static website, so audit logs written \
                 there could be publicly readable; use a regular container such as audit-logs",
            ),
        ] {
            assert_eq!(msg(validate_azure_container(F, bad)), want, "{bad:?}");
        }
        assert!(validate_azure_container(F, "$other").is_err());
        assert!(validate_azure_container(F, &"a".repeat(64)).is_err());
    }

    #[test]
    fn dcr_immutable_ids() {
        for ok in [
            "dcr-0123456789abcdef0123456789abcdef",
            "dcr-0123456789ABCDEF0123456789ABCDEF",
        ] {
            assert_eq!(validate_dcr_immutable_id(F, ok), Ok(()), "{ok}");
        }
        for bad in [
            "dcr-0123456789abcdef0123456789abcde",
            "dcr-0123456789abcdef0123456789abcdef0",
            "dcr-0123456789abcdef0123456789abcdeg",
            "DCR-0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef",
            "dcr-01234567-89ab-cdef-0123-456789abcdef",
            " dcr-0123456789abcdef0123456789abcdef",
        ] {
            assert!(validate_dcr_immutable_id(F, bad).is_err(), "{bad}");
        }
        assert_eq!(
            msg(validate_dcr_immutable_id(F, "")),
            "a data collection rule immutable ID is required: \"dcr-\" followed by 32 \
             hexadecimal characters, shown as immutableId in the rule's JSON view"
        );
        assert_eq!(
            msg(validate_dcr_immutable_id(F, "dcr-123")),
            "\"dcr-123\" is not a data collection rule immutable ID; expected \"dcr-\" followed \
             by 32 hexadecimal characters, e.g. dcr-0123456789abcdef0123456789abcdef"
        );
        assert!(
            msg(validate_dcr_immutable_id(
                F,
                "/subscriptions/x/resourceGroups/y/providers/Microsoft.Insights/dataCollectionRules/z"
            ))
            .ends_with("; this looks like the rule's resource ID, use its immutableId instead")
        );
    }

    #[test]
    fn monitor_stream_names() {
        for ok in [
            "Custom-AuditLogs_CL",
            "Custom-MyTableRawData",
            "Custom-Audit-Logs",
            "Microsoft-Syslog",
            "Microsoft-CommonSecurityLog",
        ] {
            assert_eq!(validate_monitor_stream_name(F, ok), Ok(()), "{ok}");
        }
        let table100 = format!("Custom-{}", "a".repeat(100));
        assert_eq!(validate_monitor_stream_name(F, &table100), Ok(()));
        for (bad, want) in [
            (
                "",
                "a data collection rule stream name is required, e.g. Custom-AuditLogs_CL",
            ),
            (
                "AuditLogs_CL",
                "stream name \"AuditLogs_CL\" must start with \"Custom-\" (for a custom table, \
                 e.g. Custom-AuditLogs_CL) or \"Microsoft-\" (for a built-in table)",
            ),
            (
                "custom-AuditLogs_CL",
                "stream name \"custom-AuditLogs_CL\" must start with \"Custom-\" (for a custom \
                 table, e.g. Custom-AuditLogs_CL) or \"Microsoft-\" (for a built-in table)",
            ),
            (
                "Custom-",
                "stream name \"Custom-\" has no table name after \"Custom-\", e.g. \
                 Custom-AuditLogs_CL",
            ),
            (
                "Custom-Audit.Logs",
                "stream name \"Custom-Audit.Logs\" contains '.'; after \"Custom-\" only letters, \
                 digits, '_' and '-' are allowed, e.g. Custom-AuditLogs_CL",
            ),
        ] {
            assert_eq!(msg(validate_monitor_stream_name(F, bad)), want, "{bad:?}");
        }
        let table101 = format!("Microsoft-{}", "a".repeat(101));
        assert!(
            msg(validate_monitor_stream_name(F, &table101))
                .ends_with("has 101 characters after \"Microsoft-\"; at most 100 are allowed")
        );
    }

    #[test]
    fn log_types() {
        for ok in ["AuditLogs", "Audit_Logs_CL", "a", "A1", &"a".repeat(100)] {
            assert_eq!(validate_log_type(F, ok), Ok(()), "{ok}");
        }
        for (bad, want) in [
            (
                "",
                "a log type is required (letters, digits and '_', at most 100 characters), e.g. \
                 AuditLogs",
            ),
            (
                "Audit-Logs",
                "log type \"Audit-Logs\" contains '-'; only letters, digits and '_' are allowed",
            ),
            (
                "Audit Logs",
                "log type \"Audit Logs\" contains a space; only letters, digits and '_' are \
                 allowed",
            ),
            (
                "Audité",
                "log type \"Audité\" contains 'é'; only letters, digits and '_' are allowed",
            ),
        ] {
            assert_eq!(msg(validate_log_type(F, bad)), want, "{bad:?}");
        }
        assert!(
            msg(validate_log_type(F, &"a".repeat(101)))
                .ends_with("is 101 characters long; at most 100 are allowed")
        );
    }

    #[test]
    fn key_prefixes() {
        for ok in [
            "",
            "audit",
            "audit/",
            "audit/prod/",
            "a..b/c",
            ".hidden/x",
            "ünïcode/日本",
            &"a".repeat(512),
        ] {
            assert_eq!(validate_key_prefix(F, ok), Ok(()), "{ok}");
        }
        for (bad, want) in [
            (
                "/audit",
                "key prefix \"/audit\" must not start with '/'; write it like audit/prod/",
            ),
            (
                "audit//prod",
                "key prefix \"audit//prod\" must not contain an empty segment (\"//\")",
            ),
            (
                "audit/../prod",
                "key prefix \"audit/../prod\" must not contain a \".\" or \"..\" segment; HTTP \
                 clients resolve them as relative paths, so objects would land under a \
                 different key",
            ),
            (
                "audit\\prod",
                "key prefix \"audit\\\\prod\" contains a backslash; use '/' to separate \
                 segments, e.g. audit/prod/",
            ),
            (
                "audit\nprod",
                "key prefix \"audit\\nprod\" contains the control character '\\n'; only \
                 printable characters are allowed",
            ),
        ] {
            assert_eq!(msg(validate_key_prefix(F, bad)), want, "{bad:?}");
        }
        for bad in ["..", "../x", "x/..", "./x", "x/./y", "x\u{7f}"] {
            assert!(validate_key_prefix(F, bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            msg(validate_key_prefix(F, &"a".repeat(513))),
            "key prefix is 513 bytes long; at most 512 are allowed"
        );
    }

    fn url_ok(url: &str, allow_http: bool) -> HttpUrl {
        parse_http_url(F, url, allow_http).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn name(s: &str) -> Host {
        Host::Name(s.to_owned())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn urls_parse_with_default_ports_and_normalise() {
        for (input, allow_http, scheme, host, port, url) in [
            (
                "https://logs.example.com/ingest",
                false,
                "https",
                name("logs.example.com"),
                443,
                "https://logs.example.com/ingest",
            ),
            (
                "HTTPS://Logs.Example.COM",
                false,
                "https",
                name("logs.example.com"),
                443,
                "https://logs.example.com/",
            ),
            (
                "https://logs.example.com:443/a?b=c",
                false,
                "https",
                name("logs.example.com"),
                443,
                "https://logs.example.com/a?b=c",
            ),
            (
                "https://logs.example.com?x=1",
                false,
                "https",
                name("logs.example.com"),
                443,
                "https://logs.example.com/?x=1",
            ),
            (
                "http://collector:8080/in",
                true,
                "http",
                name("collector"),
                8080,
                "http://collector:8080/in",
            ),
            (
                "http://collector/",
                true,
                "http",
                name("collector"),
                80,
                "http://collector/",
            ),
            (
                "https://[::1]:8443/path",
                false,
                "https",
                Host::Ip(ip("::1")),
                8443,
                "https://[::1]:8443/path",
            ),
            (
                "https://[2606:4700:4700:0:0:0:0:1111]/",
                false,
                "https",
                Host::Ip(ip("2606:4700:4700::1111")),
                443,
                "https://[2606:4700:4700::1111]/",
            ),
            (
                "https://8.8.8.8:0443/",
                false,
                "https",
                Host::Ip(ip("8.8.8.8")),
                443,
                "https://8.8.8.8/",
            ),
            (
                "https://xn--bcher-kva.example/",
                false,
                "https",
                name("xn--bcher-kva.example"),
                443,
                "https://xn--bcher-kva.example/",
            ),
            (
                "https://h.example/a@b",
                false,
                "https",
                name("h.example"),
                443,
                "https://h.example/a@b",
            ),
        ] {
            let got = url_ok(input, allow_http);
            assert_eq!(
                got,
                HttpUrl {
                    scheme: scheme.to_owned(),
                    host,
                    port,
                    url: url.to_owned()
                },
                "{input}"
            );
        }
    }

    #[test]
    fn urls_are_rejected_with_clear_messages() {
        for (input, allow_http, want) in [
            (
                "",
                false,
                "a URL is required, e.g. https://logs.example.com/ingest",
            ),
            (
                "http://logs.example.com/",
                false,
                "URL uses http, which would send audit events unencrypted; use https (an \
                 operator can allow plain http with the setting http.allow_insecure_http)",
            ),
            (
                "HTTP://logs.example.com/",
                false,
                "URL uses http, which would send audit events unencrypted; use https (an \
                 operator can allow plain http with the setting http.allow_insecure_http)",
            ),
            (
                "ftp://logs.example.com/",
                true,
                "URL scheme \"ftp\" is not supported; use https",
            ),
            (
                "logs.example.com/ingest",
                false,
                "\"logs.example.com/ingest\" is not an absolute URL; write it with its scheme, \
                 e.g. https://logs.example.com/ingest",
            ),
            (
                "https:/logs.example.com",
                false,
                "\"https:/logs.example.com\" is not an absolute URL; write it with its scheme, \
                 e.g. https://logs.example.com/ingest",
            ),
            (
                "https://user:pw@logs.example.com/",
                false,
                "URL must not contain a user name or password (\"user:password@\" before the \
                 host); put credentials in the connection's authentication settings",
            ),
            (
                "https://token@logs.example.com/",
                false,
                "URL must not contain a user name or password (\"user:password@\" before the \
                 host); put credentials in the connection's authentication settings",
            ),
            (
                "https:///ingest",
                false,
                "URL has no host, e.g. https://logs.example.com/ingest",
            ),
            (
                "https://:443/",
                false,
                "URL has no host, e.g. https://logs.example.com/ingest",
            ),
            (
                "https://logs.example.com:70000/",
                false,
                "URL port \"70000\" is not a number from 1 to 65535",
            ),
            (
                "https://logs.example.com:0/",
                false,
                "URL port \"0\" is not a number from 1 to 65535",
            ),
            (
                "https://logs.example.com:https/",
                false,
                "URL port \"https\" is not a number from 1 to 65535",
            ),
            (
                "https://logs.example.com:/",
                false,
                "URL has an empty port after ':'",
            ),
            (
                "https://logs.example.com/#frag",
                false,
                "URL must not contain a fragment (\"#...\"); fragments are never sent to the \
                 server",
            ),
            (
                "https://::1/",
                false,
                "URL host looks like an IPv6 address; put it in brackets, e.g. \
                 https://[2001:db8::1]:8443/ingest",
            ),
            (
                "https://[::1/",
                false,
                "URL has an IPv6 address without its closing ']'",
            ),
            (
                "https://[::g]/",
                false,
                "URL host [::g] is not a valid IPv6 address (zone IDs like %eth0 are not \
                 accepted)",
            ),
            (
                "https://[fe80::1%25eth0]/",
                false,
                "URL host [fe80::1%25eth0] is not a valid IPv6 address (zone IDs like %eth0 are \
                 not accepted)",
            ),
            (
                "https://[::1]x/",
                false,
                "URL has \"x\" after the IPv6 address; expected ':' and a port, or a path",
            ),
            (
                "https://logs%2eexample.com/",
                false,
                "URL host \"logs%2eexample.com\" contains '%'; host names may only contain \
                 letters, digits, '.' and '-' (write international names in their xn-- form)",
            ),
            (
                "https://my_host/",
                false,
                "URL host \"my_host\" contains '_'; host names may only contain letters, \
                 digits, '.' and '-' (write international names in their xn-- form)",
            ),
            (
                "https://logs..example.com/",
                false,
                "URL host \"logs..example.com\" has an empty label (a leading, trailing or \
                 doubled '.')",
            ),
            (
                "https://logs.example.com./",
                false,
                "URL host \"logs.example.com.\" has an empty label (a leading, trailing or \
                 doubled '.')",
            ),
            (
                "https://-logs.example.com/",
                false,
                "URL host \"-logs.example.com\" has a label that begins or ends with '-'",
            ),
            (
                "https://2130706433/",
                false,
                "URL host \"2130706433\" is a non-standard way of writing the IPv4 address \
                 127.0.0.1, which resolvers interpret inconsistently; write it as 127.0.0.1",
            ),
            (
                "https://example.123/",
                false,
                "URL host \"example.123\" ends in a number but is not a valid IPv4 address",
            ),
            (
                "https://logs example.com/",
                false,
                "URL contains a space; spaces and control characters are not allowed \
                 (percent-encode them in the path)",
            ),
            (
                "https://evil.example\\@good.example/",
                false,
                "URL contains a backslash, which URL parsers treat inconsistently; use '/' or \
                 percent-encode it as %5C",
            ),
        ] {
            assert_eq!(msg(parse_http_url(F, input, allow_http)), want, "{input:?}");
        }
        let long = format!("https://h.example/{}", "a".repeat(2100));
        assert!(msg(parse_http_url(F, &long, false)).starts_with("URL is 2118 bytes long"));
    }

    #[test]
    fn numeric_hosts_never_pass_as_names() {
        for (host, canonical) in [
            ("2130706433", "127.0.0.1"),
            ("0x7f.1", "127.0.0.1"),
            ("0X7F.0.0.1", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("127.0.1", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("010.0.0.1", "8.0.0.1"),
            ("127.0.0.1.", "127.0.0.1"),
            ("0", "0.0.0.0"),
            ("0x", "0.0.0.0"),
            ("0xa9fea9fe", "169.254.169.254"),
        ] {
            assert_eq!(
                parse_host(host),
                Err(HostError::NonCanonicalIpv4(canonical.parse().unwrap())),
                "{host}"
            );
        }
        for bad in [
            "1.2.3.4.5",
            "256.0.0.1",
            "1.2.3.256",
            "1.16777216",
            "4294967296",
            "08.0.0.1",
            "0x1g.1",
            "99999999999999999999999",
        ] {
            assert!(
                matches!(
                    parse_host(bad),
                    Err(HostError::BadNumeric | HostError::NonCanonicalIpv4(_))
                ),
                "{bad}: {:?}",
                parse_host(bad)
            );
        }
        assert_eq!(parse_host("1.2.3.4.5"), Err(HostError::BadNumeric));
        assert_eq!(parse_host("127.0.0.1"), Ok(Host::Ip(ip("127.0.0.1"))));
        // A numeric label that is not the last one does not make an address.
        assert_eq!(parse_host("123.example"), Ok(name("123.example")));
        assert_eq!(parse_host("0x7f.example"), Ok(name("0x7f.example")));
    }

    #[test]
    fn address_classes() {
        for (addr, class) in [
            ("127.0.0.1", Some("loopback")),
            ("127.255.0.9", Some("loopback")),
            ("::1", Some("loopback")),
            ("10.0.0.1", Some("private")),
            ("172.16.5.4", Some("private")),
            ("172.31.255.255", Some("private")),
            ("172.32.0.1", None),
            ("192.168.1.1", Some("private")),
            ("169.254.169.254", Some("cloud metadata")),
            ("169.254.170.2", Some("cloud metadata")),
            ("169.254.170.23", Some("cloud metadata")),
            ("100.100.100.200", Some("cloud metadata")),
            ("fd00:ec2::254", Some("cloud metadata")),
            ("fd00:ec2::23", Some("cloud metadata")),
            ("169.254.1.1", Some("link-local")),
            ("fe80::1", Some("link-local")),
            ("0.0.0.0", Some("unspecified")),
            ("::", Some("unspecified")),
            ("0.1.2.3", Some("reserved")),
            ("224.0.0.1", Some("multicast")),
            ("239.255.255.250", Some("multicast")),
            ("ff02::1", Some("multicast")),
            ("255.255.255.255", Some("broadcast")),
            ("240.0.0.1", Some("reserved")),
            ("100.64.0.1", Some("shared address space")),
            ("100.127.255.254", Some("shared address space")),
            ("100.128.0.1", None),
            ("192.0.2.1", Some("documentation")),
            ("198.51.100.7", Some("documentation")),
            ("203.0.113.9", Some("documentation")),
            ("2001:db8::1", Some("documentation")),
            ("3fff::1", Some("documentation")),
            ("198.18.0.1", Some("benchmarking")),
            ("fc00::1", Some("unique local")),
            ("fd12:3456::1", Some("unique local")),
            ("fec0::1", Some("site-local")),
            ("2001::1", Some("Teredo")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:10.1.2.3", Some("private")),
            ("::ffff:169.254.169.254", Some("cloud metadata")),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::10.0.0.1", Some("private")),
            ("64:ff9b::8.8.8.8", None),
            ("64:ff9b:1::7f00:1", Some("loopback")),
            ("2002:7f00:1::", Some("loopback")),
            ("2002:a9fe:a9fe::1", Some("cloud metadata")),
            ("2002:808:808::1", None),
            ("::127.0.0.1", Some("reserved")),
            ("100::1", Some("reserved")),
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("2606:4700:4700::1111", None),
            ("2a00:1450:4001:80b::200e", None),
        ] {
            assert_eq!(forbidden_address_class(ip(addr)), class, "{addr}");
        }
    }

    fn allow(entries: &[&str]) -> NetworkAllowList {
        let owned: Vec<String> = entries.iter().map(|s| (*s).to_owned()).collect();
        NetworkAllowList::parse(&owned).unwrap()
    }

    const HTTP_FIELD: &str = "destination.http.url";

    #[test]
    fn ssrf_check_refuses_non_public_addresses() {
        let none = NetworkAllowList::default();
        for (label, addr, subject) in [
            ("127.0.0.1", "127.0.0.1", "127.0.0.1 is a loopback address"),
            (
                "localhost",
                "127.0.0.1",
                "localhost resolves to a loopback address",
            ),
            ("[::1]", "::1", "::1 is a loopback address"),
            ("10.0.0.1", "10.0.0.1", "10.0.0.1 is a private address"),
            (
                "172.16.5.4",
                "172.16.5.4",
                "172.16.5.4 is a private address",
            ),
            (
                "router.lan",
                "192.168.1.1",
                "router.lan resolves to a private address",
            ),
            (
                "169.254.169.254",
                "169.254.169.254",
                "169.254.169.254 is a cloud metadata service address",
            ),
            (
                "[fd00:ec2::254]",
                "fd00:ec2::254",
                "fd00:ec2::254 is a cloud metadata service address",
            ),
            (
                "mapped.example",
                "::ffff:127.0.0.1",
                "mapped.example resolves to a loopback address",
            ),
            ("0.0.0.0", "0.0.0.0", "0.0.0.0 is an unspecified address"),
            (
                "100.64.0.1",
                "100.64.0.1",
                "100.64.0.1 is a shared address space (carrier-grade NAT) address",
            ),
        ] {
            let err = check_destination_ip(HTTP_FIELD, label, ip(addr), &none).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "{HTTP_FIELD}: {subject}; HTTP destinations must be public unless an \
                     operator allow-lists them (http.allowed_networks)"
                ),
                "{label} {addr}"
            );
        }
        assert_eq!(
            check_destination_ip(HTTP_FIELD, "127.0.0.1", ip("127.0.0.1"), &none)
                .unwrap_err()
                .to_string(),
            "destination.http.url: 127.0.0.1 is a loopback address; HTTP destinations must be \
             public unless an operator allow-lists them (http.allowed_networks)"
        );
    }

    #[test]
    fn ssrf_check_passes_public_addresses() {
        let none = NetworkAllowList::default();
        for (label, addr) in [
            ("8.8.8.8", "8.8.8.8"),
            ("dns.google", "8.8.8.8"),
            ("[2606:4700:4700::1111]", "2606:4700:4700::1111"),
            ("one.one.one.one", "2606:4700:4700::1111"),
            ("nat64.example", "64:ff9b::8.8.8.8"),
        ] {
            assert_eq!(
                check_destination_ip(HTTP_FIELD, label, ip(addr), &none),
                Ok(()),
                "{label} {addr}"
            );
        }
    }

    #[test]
    fn allow_list_lets_operators_through() {
        let list = allow(&[
            "10.1.0.0/16",
            "192.168.1.10",
            "[::1]",
            "fd00::/8",
            " Receiver.Internal ",
        ]);
        for (label, addr) in [
            ("10.1.2.3", "10.1.2.3"),
            ("collector", "10.1.255.255"),
            ("192.168.1.10", "192.168.1.10"),
            ("[::1]", "::1"),
            ("mapped", "::ffff:10.1.0.7"),
            ("ula", "fd12::1"),
            ("receiver.internal", "127.0.0.1"),
            ("RECEIVER.internal", "172.16.0.9"),
        ] {
            assert_eq!(
                check_destination_ip(HTTP_FIELD, label, ip(addr), &list),
                Ok(()),
                "{label} {addr}"
            );
        }
        for (label, addr) in [
            ("10.2.0.1", "10.2.0.1"),
            ("192.168.1.11", "192.168.1.11"),
            ("other.internal", "10.3.0.1"),
            ("receiver.internal.evil", "10.3.0.1"),
        ] {
            assert!(
                check_destination_ip(HTTP_FIELD, label, ip(addr), &list).is_err(),
                "{label} {addr}"
            );
        }
        assert!(list.allows_host("receiver.internal"));
        assert!(list.allows_host("receiver.internal."));
        assert!(!list.allows_host("internal"));
        assert!(list.allows_ip(ip("10.1.0.1")));
        assert!(!list.allows_ip(ip("10.0.0.1")));
    }

    #[test]
    fn cloud_metadata_needs_a_network_entry() {
        let by_name = allow(&["metadata.internal"]);
        assert_eq!(
            check_destination_ip(
                HTTP_FIELD,
                "metadata.internal",
                ip("169.254.169.254"),
                &by_name
            )
            .unwrap_err()
            .message,
            "metadata.internal resolves to a cloud metadata service address; \
             allow-listing a host name does not cover cloud metadata addresses; only an \
             allow-listed network containing the address does (http.allowed_networks)"
        );
        let by_net = allow(&["169.254.169.254"]);
        assert_eq!(
            check_destination_ip(
                HTTP_FIELD,
                "metadata.internal",
                ip("169.254.169.254"),
                &by_net
            ),
            Ok(())
        );
    }

    #[test]
    fn allow_list_parsing() {
        let list = allow(&[
            "10.1.2.3/16",
            "::1",
            "[fd00::]/8",
            "Host-1.example",
            "8.8.8.8",
        ]);
        assert_eq!(
            list.networks,
            vec![
                "10.1.0.0/16".parse::<IpNet>().unwrap(),
                "::1/128".parse().unwrap(),
                "fd00::/8".parse().unwrap(),
                "8.8.8.8/32".parse().unwrap(),
            ]
        );
        assert_eq!(list.hosts, vec!["host-1.example".to_owned()]);
        assert_eq!(allow(&[]), NetworkAllowList::default());

        for (entry, want) in [
            ("", "allow-list entry \"\" is empty; remove it"),
            (
                "10.0.0.0/33",
                "allow-list entry \"10.0.0.0/33\" is not a valid network; write networks like \
                 10.1.0.0/16 or fd00::/8",
            ),
            (
                "10.0.0/8",
                "allow-list entry \"10.0.0/8\" is not a valid network; write networks like \
                 10.1.0.0/16 or fd00::/8",
            ),
            (
                "fd00::g",
                "allow-list entry \"fd00::g\" is not a valid IP address",
            ),
            (
                "*.internal",
                "allow-list entry \"*.internal\": wildcards are not supported; list each host \
                 name, or allow its network (e.g. 10.1.0.0/16)",
            ),
            (
                "bad_host",
                "allow-list entry \"bad_host\": host contains '_'; host names may only contain \
                 letters, digits, '.' and '-' (write international names in their xn-- form)",
            ),
            (
                "127.1",
                "allow-list entry \"127.1\": host is a non-standard way of writing the IPv4 \
                 address 127.0.0.1, which resolvers interpret inconsistently; write it as \
                 127.0.0.1",
            ),
        ] {
            assert_eq!(
                NetworkAllowList::parse(&[entry.to_owned()]),
                Err(want.to_owned()),
                "{entry:?}"
            );
        }
    }

    #[test]
    fn retired_data_collector_text_names_the_replacement() {
        assert!(LEGACY_DATA_COLLECTOR_RETIRED.contains("September 2026"));
        assert!(LEGACY_DATA_COLLECTOR_RETIRED.contains("Logs Ingestion API"));
        assert!(LEGACY_DATA_COLLECTOR_RETIRED.contains("Custom-AuditLogs_CL"));
    }

    #[test]
    fn long_values_are_truncated_in_messages() {
        let long = "A".repeat(500);
        let m = msg(validate_log_type(F, &format!("{long}-")));
        assert!(m.len() < 200, "{m}");
        assert!(m.contains('…'));
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parse_never_panics_and_names_are_not_numeric(s in "\\PC{0,80}") {
                if let Ok(u) = parse_http_url("f", &s, true)
                    && let Host::Name(n) = &u.host
                {
                    prop_assert!(n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
                    prop_assert!(!ends_in_number(n));
                }
            }

            #[test]
            fn url_shaped_inputs_round_trip(
                host in "[a-z][a-z0-9-]{0,10}[a-z0-9](\\.[a-z][a-z0-9]{0,5}){0,3}",
                port in 1u16..,
                path in "(/[a-zA-Z0-9._~%-]{0,8}){0,3}",
            ) {
                let u = parse_http_url("f", &format!("https://{host}:{port}{path}"), false).unwrap();
                prop_assert_eq!(&u.host, &Host::Name(host.clone()));
                prop_assert_eq!(u.port, port);
                let again = parse_http_url("f", &u.url, false).unwrap();
                prop_assert_eq!(again, u);
            }

            #[test]
            fn mapped_addresses_classify_like_ipv4(a: u32) {
                let v4 = Ipv4Addr::from(a);
                prop_assert_eq!(
                    forbidden_address_class(IpAddr::V6(v4.to_ipv6_mapped())),
                    forbidden_address_class(IpAddr::V4(v4))
                );
            }
        }
    }
}
