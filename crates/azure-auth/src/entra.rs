//! Microsoft Entra ID token replies (`/{tenant}/oauth2/v2.0/token`, client credentials):
//! the success fields and the OAuth2 error fields, read leniently because an authority host
//! may be misconfigured and answer with anything.

use serde::Deserialize;

/// Entra ID's answer (success or error). Whatever cannot be read is absent.
#[derive(Debug, Deserialize, Default)]
pub struct TokenReply {
    pub access_token: Option<String>,
    pub expires_in: Option<serde_json::Value>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

impl TokenReply {
    /// Reads a reply body; a body that is not a JSON object gives an empty reply.
    pub fn parse(body: &[u8]) -> TokenReply {
        serde_json::from_slice(body).unwrap_or_default()
    }

    /// The token's lifetime in seconds, when the reply has a positive one.
    pub fn lifetime(&self) -> Option<u64> {
        self.expires_in.as_ref().and_then(seconds)
    }
}

/// `expires_in` as Entra ID sends it (a number; some endpoints send a string).
fn seconds(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .filter(|s| *s > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_as_number_or_string() {
        assert_eq!(seconds(&serde_json::json!(3599)), Some(3599));
        assert_eq!(seconds(&serde_json::json!("3599")), Some(3599));
        assert_eq!(seconds(&serde_json::json!(0)), None);
        assert_eq!(seconds(&serde_json::json!(null)), None);
    }

    #[test]
    fn replies_are_read_leniently() {
        let ok = TokenReply::parse(
            br#"{"token_type":"Bearer","expires_in":3599,"access_token":"eyJ0"}"#,
        );
        assert_eq!(
            (ok.access_token.as_deref(), ok.lifetime()),
            (Some("eyJ0"), Some(3599))
        );
        let refused = TokenReply::parse(
            br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#,
        );
        assert_eq!(refused.error.as_deref(), Some("invalid_client"));
        assert!(refused.access_token.is_none());
        let html = TokenReply::parse(b"<html>502 Bad Gateway</html>");
        assert!(html.access_token.is_none() && html.error.is_none());
    }
}
