//! Where a connection's secret may be sent. A connection names the endpoint its credentials
//! were given for (an HTTP origin, an Azure Monitor data collection endpoint, or a whole
//! credential-bearing URL); a stream's target only picks what lies under it. These rules
//! are checked by the config service when a stream or an unsaved destination is saved or
//! tested, and again by the sink right before it builds a destination, so no request, stored
//! row or bus message can point a secret at another host.

use crate::destination::{FieldError, HttpUrl, host_text, parse_http_url};

/// `scheme://host[:port]` of a parsed URL (the port only when it is not the default).
pub fn origin(url: &HttpUrl) -> String {
    let default = if url.scheme == "https" { 443 } else { 80 };
    let port = if url.port == default {
        String::new()
    } else {
        format!(":{}", url.port)
    };
    format!("{}://{}{port}", url.scheme, host_text(&url.host))
}

/// Parses an origin as a connection stores it: an http(s) URL with nothing after the host
/// and port (a trailing `/` is accepted). Returns the URL in origin form.
pub fn parse_origin(field: &str, value: &str, allow_http: bool) -> Result<HttpUrl, FieldError> {
    let url = parse_http_url(field, value, allow_http)?;
    if url.url != format!("{}/", origin(&url)) {
        return Err(FieldError {
            field: field.to_owned(),
            message: format!(
                "must be an origin (scheme, host and port, no path or query), e.g. {}",
                origin(&url)
            ),
        });
    }
    Ok(url)
}

/// Checks that `target` lies under `origin`: the same scheme, host and port. `what` names
/// the connection's field in the message, e.g. "connection http.origin".
pub fn check_under(
    field: &str,
    target: &HttpUrl,
    origin_url: &HttpUrl,
    what: &str,
) -> Result<(), FieldError> {
    let (t, o) = (origin(target), origin(origin_url));
    if t != o {
        return Err(FieldError {
            field: field.to_owned(),
            message: format!(
                "{t} is not the {what} {o}: the connection's secret may only be sent where it \
                 was given for; use a connection for {t} (or change the connection's origin, \
                 entering its secret again)"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> HttpUrl {
        parse_http_url("f", s, true).unwrap()
    }

    #[test]
    fn origins_drop_default_ports_and_keep_others() {
        assert_eq!(
            origin(&url("https://Logs.Example.com:443/a?b")),
            "https://logs.example.com"
        );
        assert_eq!(
            origin(&url("http://127.0.0.1:8080/x")),
            "http://127.0.0.1:8080"
        );
        assert_eq!(origin(&url("https://[::1]:8443/")), "https://[::1]:8443");
    }

    #[test]
    fn an_origin_has_no_path_or_query() {
        assert!(parse_origin("f", "https://logs.example.com", false).is_ok());
        assert!(parse_origin("f", "https://logs.example.com/", false).is_ok());
        let err = parse_origin("f", "https://logs.example.com/in?t=1", false).unwrap_err();
        assert!(
            err.message.contains("e.g. https://logs.example.com"),
            "{err:?}"
        );
        assert!(parse_origin("f", "http://logs.example.com", false).is_err());
    }

    #[test]
    fn a_target_must_share_scheme_host_and_port() {
        let o = url("https://logs.example.com");
        assert!(
            check_under(
                "t",
                &url("https://logs.example.com/any/path?q=1"),
                &o,
                "origin"
            )
            .is_ok()
        );
        for other in [
            "https://attacker.example/",
            "https://logs.example.com:8443/",
            "http://logs.example.com/",
            "https://logs.example.com.attacker.example/",
        ] {
            let err = check_under("t", &url(other), &o, "origin").unwrap_err();
            assert_eq!(err.field, "t");
            assert!(err.message.contains("https://logs.example.com"), "{err:?}");
        }
    }
}
