//! A stream's `HttpTarget` read into what the destination sends: the checked URL, the preset
//! with its pseudo-settings, the extra headers and the authentication header.

use std::collections::{BTreeMap, HashMap};

use auditstream_model::destination::{Host, parse_http_url};
use auditstream_proto::v1 as pb;
use base64::Engine as _;
use http::{HeaderName, HeaderValue, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::preset::{Framing, Preset, SplunkFields};

pub(crate) const URL_FIELD: &str = "destination.http.url";

// Pseudo-settings: keys of the target's `headers` map that configure the sink and are never
// sent as headers, with the presets they apply to (one list, shared with the config service).
use auditstream_model::http_settings::{
    DD_HOSTNAME, DD_SERVICE, DD_SOURCE, DD_TAGS, FRAMING, SETTINGS as PSEUDO, SPLUNK_HOST,
    SPLUNK_INDEX, SPLUNK_SOURCE, SPLUNK_SOURCETYPE,
};

/// Headers the sink sets itself.
const SET_BY_SINK: [&str; 12] = [
    "host",
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "user-agent",
];
/// Headers that carry secrets: they belong in the connection, whose secrets are encrypted and
/// never shown, not in the stream's plain settings.
const SECRET_HEADERS: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "dd-api-key",
    "dd-application-key",
    "x-sumo-token",
];

/// Query values: everything but unreserved characters is percent-encoded.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why a target or connection cannot be used: (detail, hint) of a configuration answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unusable {
    pub(crate) detail: String,
    pub(crate) hint: String,
}

fn unusable(detail: impl Into<String>, hint: impl Into<String>) -> Unusable {
    Unusable {
        detail: detail.into(),
        hint: hint.into(),
    }
}

/// How the connection authenticates, for hints (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthKind {
    None,
    /// The URL is the credential (Sumo Logic's HTTP source URL).
    Url,
    Basic,
    Bearer,
    Header(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) uri: Uri,
    /// The URL's host as written (`[::1]` for IPv6), for messages.
    pub(crate) host: String,
    pub(crate) preset: Preset,
    /// Extra headers, then the authentication header, in the order they are sent.
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) auth: AuthKind,
    pub(crate) gzip: bool,
}

impl Target {
    /// Reads `target` with its connection's `credentials`. The URL is chosen by the
    /// endpoint binding ([`auditstream_proto::binding::http_url`]): a secret only goes to
    /// the connection's origin (or its own URL, for URL-borne credentials).
    pub(crate) fn new(
        target: &pb::HttpTarget,
        credentials: &pb::HttpCredentials,
        allow_insecure_http: bool,
    ) -> Result<Target, Unusable> {
        let url_borne = matches!(credentials.auth, Some(pb::http_credentials::Auth::Url(_)));
        let bound =
            auditstream_proto::binding::http_url(URL_FIELD, credentials, target).map_err(|e| {
                // A URL-borne credential's parse error could quote the URL: never repeat it.
                let detail =
                    if url_borne && e.field == auditstream_proto::binding::URL_CREDENTIAL_FIELD {
                        "the connection's URL (its credential) is not a usable URL".to_owned()
                    } else {
                        e.message
                    };
                unusable(
                    detail,
                    "correct the destination's URL or the connection's origin (a connection's \
                     secret is only sent to the origin it was given for)",
                )
            })?;
        let url = parse_http_url(URL_FIELD, &bound.url, allow_insecure_http).map_err(|e| {
            unusable(
                if url_borne {
                    "the connection's URL (its credential) is not a usable https URL".to_owned()
                } else {
                    e.message
                },
                "correct the destination's URL (the service's HTTPS intake URL)",
            )
        })?;
        let host = match &url.host {
            Host::Ip(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
            Host::Ip(ip) => ip.to_string(),
            Host::Name(name) => name.clone(),
        };

        let settings = Settings::read(&target.headers)?;
        let preset_kind = pb::HttpPreset::try_from(target.preset).map_err(|_| {
            unusable(
                format!("unknown HTTP preset {}", target.preset),
                "choose generic, sumo_logic, datadog or splunk_hec",
            )
        })?;
        let preset = match preset_kind {
            pb::HttpPreset::Unspecified | pb::HttpPreset::Generic => {
                Preset::Generic(settings.framing()?)
            }
            pb::HttpPreset::SumoLogic => Preset::SumoLogic,
            pb::HttpPreset::Datadog => Preset::Datadog,
            pb::HttpPreset::SplunkHec => Preset::SplunkHec(SplunkFields::new(
                settings.pseudo(SPLUNK_SOURCETYPE),
                settings.pseudo(SPLUNK_INDEX),
                settings.pseudo(SPLUNK_HOST),
                settings.pseudo(SPLUNK_SOURCE),
            )),
        };
        settings.check_applies_to(preset.name())?;

        let mut url_text = url.url.clone();
        if preset == Preset::Datadog {
            datadog_query(&mut url_text, &settings)?;
        }
        let uri: Uri = url_text.parse().map_err(|e| {
            unusable(
                format!("{URL_FIELD}: the URL cannot be used: {e}"),
                "correct the destination's URL",
            )
        })?;

        let gzip = match pb::Compression::try_from(target.compression) {
            Ok(pb::Compression::Gzip) => true,
            Ok(pb::Compression::Unspecified | pb::Compression::None) => false,
            Err(_) => {
                return Err(unusable(
                    format!("unknown compression {}", target.compression),
                    "choose gzip or none",
                ));
            }
        };

        let mut headers = settings.headers;
        for (name, value) in connection_headers(&credentials.headers)? {
            if headers.iter().any(|(n, _)| *n == name) {
                return Err(unusable(
                    format!("header {name} is set both by the destination and by its connection"),
                    format!("remove {name} from the destination's headers"),
                ));
            }
            headers.push((name, value));
        }
        let (auth, auth_header) = auth_header(&preset, credentials.auth.as_ref())?;
        if let Some((name, value)) = auth_header {
            if headers.iter().any(|(n, _)| *n == name) {
                return Err(unusable(
                    format!("header {name} is set both by the destination and by its connection"),
                    format!("remove {name} from the destination's headers"),
                ));
            }
            headers.push((name, value));
        }
        Ok(Target {
            uri,
            host,
            preset,
            headers,
            auth,
            gzip,
        })
    }
}

/// The target's `headers` map, split into pseudo-settings (lowercase keys) and headers to send.
struct Settings {
    pseudo: BTreeMap<&'static str, String>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Settings {
    fn read(map: &HashMap<String, String>) -> Result<Settings, Unusable> {
        let mut entries: Vec<(&String, &String)> = map.iter().collect();
        entries.sort();
        let mut pseudo = BTreeMap::new();
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
        for (key, value) in entries {
            let lower = key.trim().to_ascii_lowercase();
            if let Some((name, _)) = PSEUDO.iter().find(|(p, _)| *p == lower) {
                if pseudo.insert(*name, value.trim().to_owned()).is_some() {
                    return Err(twice(key));
                }
                continue;
            }
            let name = HeaderName::from_bytes(key.trim().as_bytes()).map_err(|_| {
                unusable(
                    format!("destination header name {key:?} is not a valid HTTP header name"),
                    "header names may contain letters, digits and !#$%&'*+-.^_`|~ only; \
                     fix or remove it",
                )
            })?;
            if SECRET_HEADERS.contains(&name.as_str()) {
                return Err(unusable(
                    format!("destination header {name} carries credentials"),
                    format!(
                        "remove {name} from the destination's headers and set it in the \
                         connection's authentication (secrets are stored encrypted there)"
                    ),
                ));
            }
            if SET_BY_SINK.contains(&name.as_str()) {
                return Err(unusable(
                    format!("destination header {name} is set by the sink"),
                    format!("remove {name} from the destination's headers"),
                ));
            }
            let value = header_value(value).ok_or_else(|| {
                unusable(
                    format!("the value of destination header {name} is not a valid header value"),
                    "header values may contain printable ASCII characters only",
                )
            })?;
            if headers.iter().any(|(n, _)| *n == name) {
                return Err(twice(key));
            }
            headers.push((name, value));
        }
        Ok(Settings { pseudo, headers })
    }

    fn pseudo(&self, key: &str) -> Option<&str> {
        self.pseudo.get(key).map(String::as_str)
    }

    fn framing(&self) -> Result<Framing, Unusable> {
        match self.pseudo(FRAMING) {
            None | Some("json_array") => Ok(Framing::JsonArray),
            Some("ndjson") => Ok(Framing::Ndjson),
            Some(other) => Err(unusable(
                format!("{FRAMING} {other:?} is not a framing"),
                format!("set {FRAMING} to json_array or ndjson"),
            )),
        }
    }

    fn check_applies_to(&self, preset: &str) -> Result<(), Unusable> {
        for key in self.pseudo.keys() {
            let applies = PSEUDO
                .iter()
                .find(|(p, _)| p == key)
                .map_or("", |(_, p)| *p);
            if applies != preset {
                return Err(unusable(
                    format!("setting {key} applies to the {applies} preset, not {preset}"),
                    format!(
                        "remove {key} from the destination's headers, or choose the {applies} \
                         preset"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The connection's sealed headers, as sensitive header values (never logged by hyper).
fn connection_headers(
    map: &HashMap<String, String>,
) -> Result<Vec<(HeaderName, HeaderValue)>, Unusable> {
    let mut entries: Vec<(&String, &String)> = map.iter().collect();
    entries.sort();
    let mut out: Vec<(HeaderName, HeaderValue)> = Vec::new();
    for (key, value) in entries {
        let name = HeaderName::from_bytes(key.trim().as_bytes()).map_err(|_| {
            unusable(
                format!("connection header name {key:?} is not a valid HTTP header name"),
                "correct the connection's header name",
            )
        })?;
        if SET_BY_SINK.contains(&name.as_str()) {
            return Err(unusable(
                format!("connection header {name} is set by the sink"),
                format!("remove {name} from the connection's headers"),
            ));
        }
        let mut value = header_value(value).ok_or_else(|| {
            // Never quote the value: it is a secret.
            unusable(
                format!("the value of connection header {name} is not a valid header value"),
                "header values may contain printable ASCII characters only",
            )
        })?;
        value.set_sensitive(true);
        if out.iter().any(|(n, _)| *n == name) {
            return Err(twice(key));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// A header value of printable ASCII (and tabs): what every service reads the same way.
fn header_value(value: &str) -> Option<HeaderValue> {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
        .then(|| HeaderValue::from_str(value).ok())
        .flatten()
}

fn twice(key: &str) -> Unusable {
    unusable(
        format!("destination header {key:?} is given twice (names are case-insensitive)"),
        "keep one of them",
    )
}

/// Datadog reads `ddsource`, `service`, `ddtags` and `hostname` from the query: the
/// pseudo-settings are appended, `ddsource` and `service` default to `auditstream`. A
/// parameter may come from the URL or a setting, not both.
fn datadog_query(url: &mut String, settings: &Settings) -> Result<(), Unusable> {
    let existing: Vec<String> = url
        .split_once('?')
        .map(|(_, q)| {
            q.split('&')
                .map(|pair| pair.split('=').next().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default();
    let mut params = Vec::new();
    for (key, param, default) in [
        (DD_SOURCE, "ddsource", Some("auditstream")),
        (DD_SERVICE, "service", Some("auditstream")),
        (DD_TAGS, "ddtags", None),
        (DD_HOSTNAME, "hostname", None),
    ] {
        let in_url = existing.iter().any(|k| k == param);
        match (settings.pseudo(key), in_url) {
            (Some(_), true) => {
                return Err(unusable(
                    format!("Datadog's {param} is given both in the URL and by {key}"),
                    format!("remove {param} from the URL's query or {key} from the headers"),
                ));
            }
            (Some(value), false) => params.push((param, value)),
            (None, false) => params.extend(default.map(|d| (param, d))),
            (None, true) => {}
        }
    }
    for (param, value) in params {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(param);
        url.push('=');
        url.extend(utf8_percent_encode(value, QUERY_VALUE));
    }
    Ok(())
}

/// The connection's authentication as a header, per preset.
fn auth_header(
    preset: &Preset,
    credentials: Option<&pb::http_credentials::Auth>,
) -> Result<(AuthKind, Option<(HeaderName, HeaderValue)>), Unusable> {
    use pb::http_credentials::Auth;
    let secret = |value: String, what: &str| {
        let mut v = header_value(&value).ok_or_else(|| {
            unusable(
                format!("the connection's {what} contains characters not allowed in a header"),
                format!("re-enter the connection's {what} (printable ASCII only)"),
            )
        })?;
        v.set_sensitive(true);
        Ok::<_, Unusable>(v)
    };
    let empty = |what: &str| {
        unusable(
            format!("the connection's {what} is empty"),
            format!("set the connection's {what}"),
        )
    };
    match credentials {
        None | Some(Auth::None(_)) => Ok((AuthKind::None, None)),
        Some(Auth::Url(_)) => Ok((AuthKind::Url, None)),
        Some(Auth::Basic(basic)) => {
            if basic.username.contains(':') {
                return Err(unusable(
                    "the connection's user name contains ':', which basic authentication cannot \
                     carry",
                    "use a user name without ':'",
                ));
            }
            if basic.username.is_empty() && basic.password.is_empty() {
                return Err(empty("user name and password"));
            }
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", basic.username, basic.password));
            Ok((
                AuthKind::Basic,
                Some((
                    http::header::AUTHORIZATION,
                    secret(format!("Basic {encoded}"), "password")?,
                )),
            ))
        }
        Some(Auth::Bearer(bearer)) => {
            let token = bearer.token.trim();
            if token.is_empty() {
                return Err(empty("token"));
            }
            let header = match preset {
                // Datadog takes its API key in DD-API-KEY, never as a bearer token.
                Preset::Datadog => (
                    HeaderName::from_static("dd-api-key"),
                    secret(token.to_owned(), "token")?,
                ),
                Preset::SplunkHec(_) => (
                    http::header::AUTHORIZATION,
                    secret(format!("Splunk {token}"), "token")?,
                ),
                Preset::Generic(_) | Preset::SumoLogic => (
                    http::header::AUTHORIZATION,
                    secret(format!("Bearer {token}"), "token")?,
                ),
            };
            Ok((AuthKind::Bearer, Some(header)))
        }
        Some(Auth::Header(h)) => {
            let name = HeaderName::from_bytes(h.name.trim().as_bytes()).map_err(|_| {
                unusable(
                    format!(
                        "the connection's header name {:?} is not a valid HTTP header name",
                        h.name
                    ),
                    "correct the connection's header name (e.g. DD-API-KEY)",
                )
            })?;
            if SET_BY_SINK.contains(&name.as_str()) {
                return Err(unusable(
                    format!("the connection's header {name} is set by the sink"),
                    "choose the header the service reads credentials from",
                ));
            }
            if h.value.is_empty() {
                return Err(empty(&format!("value of header {name}")));
            }
            let value = secret(h.value.clone(), &format!("value of header {name}"))?;
            Ok((
                AuthKind::Header(name.as_str().to_owned()),
                Some((name, value)),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::http_credentials::Auth;

    fn target(preset: pb::HttpPreset, url: &str, headers: &[(&str, &str)]) -> pb::HttpTarget {
        pb::HttpTarget {
            url: url.into(),
            preset: preset as i32,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            compression: 0,
        }
    }

    fn sent(t: &Target) -> Vec<(String, String)> {
        t.headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect()
    }

    /// `Target::new` with `auth` bound to the target URL's origin.
    fn new(target: &pb::HttpTarget, auth: Option<&Auth>, allow: bool) -> Result<Target, Unusable> {
        let origin = parse_http_url("u", &target.url, true)
            .map(|u| auditstream_model::binding::origin(&u))
            .unwrap_or_default();
        let credentials = pb::HttpCredentials {
            auth: auth.cloned(),
            origin,
            ..Default::default()
        };
        Target::new(target, &credentials, allow)
    }

    fn bearer(token: &str) -> Auth {
        Auth::Bearer(pb::HttpBearerAuth {
            token: token.into(),
        })
    }

    #[test]
    fn auth_headers_per_preset() {
        let url = "https://logs.example.com/in";
        let generic = target(pb::HttpPreset::Generic, url, &[]);
        let t = new(&generic, Some(&bearer("t0k")), false).unwrap();
        assert_eq!(sent(&t), [("authorization".into(), "Bearer t0k".into())]);
        assert!(t.headers[0].1.is_sensitive());

        let splunk = target(pb::HttpPreset::SplunkHec, url, &[]);
        let t = new(&splunk, Some(&bearer("hec")), false).unwrap();
        assert_eq!(sent(&t), [("authorization".into(), "Splunk hec".into())]);

        let datadog = target(pb::HttpPreset::Datadog, url, &[]);
        let t = new(&datadog, Some(&bearer("key")), false).unwrap();
        assert_eq!(sent(&t), [("dd-api-key".into(), "key".into())]);
        let header = Auth::Header(pb::HttpHeaderAuth {
            name: "DD-API-KEY".into(),
            value: "key2".into(),
        });
        let t = new(&datadog, Some(&header), false).unwrap();
        assert_eq!(sent(&t), [("dd-api-key".into(), "key2".into())]);

        let basic = Auth::Basic(pb::HttpBasicAuth {
            username: "user".into(),
            password: "pass".into(),
        });
        let t = new(&generic, Some(&basic), false).unwrap();
        assert_eq!(
            sent(&t),
            [("authorization".into(), "Basic dXNlcjpwYXNz".into())]
        );
        let t = new(&generic, Some(&Auth::None(pb::HttpNoAuth {})), false).unwrap();
        assert!(t.headers.is_empty() && t.auth == AuthKind::None);

        let err = new(&generic, Some(&bearer(" ")), false).unwrap_err();
        assert_eq!(err.detail, "the connection's token is empty");
        let err = new(&generic, Some(&bearer("a\nb")), false).unwrap_err();
        assert!(
            !err.detail.contains("a\nb") && !err.hint.contains("a\nb"),
            "{err:?}"
        );
    }

    #[test]
    fn pseudo_settings_are_not_sent() {
        let url = "https://http-intake.logs.datadoghq.eu/api/v2/logs";
        let t = new(
            &target(
                pb::HttpPreset::Datadog,
                url,
                &[
                    ("DD-Source", "audit"),
                    ("dd-tags", "env:prod,team:sec"),
                    ("X-Extra", "1"),
                ],
            ),
            None,
            false,
        )
        .unwrap();
        assert_eq!(sent(&t), [("x-extra".into(), "1".into())]);
        assert_eq!(
            t.uri.to_string(),
            "https://http-intake.logs.datadoghq.eu/api/v2/logs?ddsource=audit&service=auditstream&ddtags=env%3Aprod%2Cteam%3Asec"
        );
        // The URL's own parameters stay; defaults are not added over them.
        let t = new(
            &target(
                pb::HttpPreset::Datadog,
                &format!("{url}?ddsource=x&service=y"),
                &[],
            ),
            None,
            false,
        )
        .unwrap();
        assert_eq!(t.uri.query(), Some("ddsource=x&service=y"));
        let err = new(
            &target(
                pb::HttpPreset::Datadog,
                &format!("{url}?ddsource=x"),
                &[("dd-source", "y")],
            ),
            None,
            false,
        )
        .unwrap_err();
        assert!(err.detail.contains("both"), "{err:?}");

        let t = new(
            &target(
                pb::HttpPreset::Generic,
                "https://a.example/x",
                &[("auditstream-framing", "ndjson")],
            ),
            None,
            false,
        )
        .unwrap();
        assert_eq!(t.preset, Preset::Generic(Framing::Ndjson));
        assert!(t.headers.is_empty());

        let t = new(
            &target(
                pb::HttpPreset::SplunkHec,
                "https://splunk.example:8088/services/collector/event",
                &[("splunk-index", "sec"), ("splunk-sourcetype", "audit")],
            ),
            None,
            false,
        )
        .unwrap();
        assert!(t.headers.is_empty());
        assert_eq!(
            t.preset,
            Preset::SplunkHec(SplunkFields::new(Some("audit"), Some("sec"), None, None))
        );

        // A setting of another preset is refused, not silently sent as a header.
        let err = new(
            &target(
                pb::HttpPreset::SumoLogic,
                "https://a.example/x",
                &[("splunk-index", "x")],
            ),
            None,
            false,
        )
        .unwrap_err();
        assert!(err.detail.contains("splunk_hec"), "{err:?}");
        let err = new(
            &target(
                pb::HttpPreset::Generic,
                "https://a.example/x",
                &[("auditstream-framing", "xml")],
            ),
            None,
            false,
        )
        .unwrap_err();
        assert!(err.hint.contains("json_array or ndjson"), "{err:?}");
    }

    #[test]
    fn unusable_targets_say_what_to_fix() {
        let t = |url: &str, headers: &[(&str, &str)]| {
            new(&target(pb::HttpPreset::Generic, url, headers), None, false)
        };
        let err = t("http://logs.example.com/in", &[]).unwrap_err();
        assert!(err.detail.contains("unencrypted"), "{err:?}");
        assert!(
            new(
                &target(pb::HttpPreset::Generic, "http://logs.example.com/in", &[]),
                None,
                true
            )
            .is_ok()
        );
        let err = t("https://logs.example.com/in", &[("Bad Header", "x")]).unwrap_err();
        assert!(
            err.detail.contains("not a valid HTTP header name"),
            "{err:?}"
        );
        let err = t(
            "https://logs.example.com/in",
            &[("Authorization", "Bearer x")],
        )
        .unwrap_err();
        assert!(err.hint.contains("connection"), "{err:?}");
        let err = t(
            "https://logs.example.com/in",
            &[("Content-Type", "text/xml")],
        )
        .unwrap_err();
        assert!(err.detail.contains("set by the sink"), "{err:?}");
        let err = t("https://logs.example.com/in", &[("X-A", "1"), ("x-a", "2")]).unwrap_err();
        assert!(err.detail.contains("twice"), "{err:?}");
        let err = t("https://logs.example.com/in", &[("X-A", "é")]).unwrap_err();
        assert!(
            err.detail.contains("X-A") || err.detail.contains("x-a"),
            "{err:?}"
        );
    }
}
