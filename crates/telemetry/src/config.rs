//! Layered configuration: built-in defaults, then an optional TOML file, then environment
//! variables `AUDITSTREAM_<FIELD>` with `__` between nesting levels
//! (`AUDITSTREAM_NATS__URL`, `AUDITSTREAM_LIMITS__MAX_EVENT_BYTES`).
//!
//! The environment is passed in as pairs, never read here. Environment values are parsed
//! by the type of the default they replace: numbers and booleans as JSON, lists as a JSON
//! array or comma-separated, everything else as a string. An `AUDITSTREAM_*` variable
//! that names no field of this service is reported back (the binary logs it) rather than
//! refused, because one environment is often shared by several services; a misspelt key in
//! the file, which belongs to one service, is an error.

use std::{fmt, path::Path};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

pub const ENV_PREFIX: &str = "AUDITSTREAM_";

/// A configuration value that must never be printed: `Debug` and `Display` hide it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {source}")]
    Toml {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The loaded configuration and the `AUDITSTREAM_*` variables that matched no field.
#[derive(Debug)]
pub struct Loaded<T> {
    pub config: T,
    pub ignored_env: Vec<String>,
}

/// Loads `T` from its defaults, the optional file and the environment, in that order.
pub fn load<T>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded<T>, ConfigError>
where
    T: Serialize + DeserializeOwned + Default,
{
    let mut tree =
        serde_json::to_value(T::default()).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    if let Some(path) = file {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let file_value: toml::Value =
            toml::from_str(&text).map_err(|source| ConfigError::Toml {
                path: shown,
                source: Box::new(source),
            })?;
        let file_json =
            serde_json::to_value(file_value).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        merge(&mut tree, file_json);
    }
    let mut ignored_env = Vec::new();
    let mut env: Vec<_> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    env.sort();
    for (var, raw) in env {
        let path: Vec<String> = var[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        match lookup_mut(&mut tree, &path) {
            Some(slot) => {
                *slot = env_value(slot, &raw).map_err(|message| ConfigError::Env {
                    var: var.clone(),
                    message,
                })?
            }
            None => ignored_env.push(var),
        }
    }
    let config = serde_json::from_value(tree).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    Ok(Loaded {
        config,
        ignored_env,
    })
}

/// The environment variable of every setting of `T` (from its defaults), e.g.
/// `AUDITSTREAM_NATS__URL`. Used to check that documentation lists them all.
pub fn env_var_names<T: Serialize + Default>() -> Vec<String> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<String>) {
        match value.as_object() {
            Some(map) if !map.is_empty() => {
                for (k, v) in map {
                    walk(&format!("{prefix}__{}", k.to_ascii_uppercase()), v, out);
                }
            }
            _ => out.push(prefix.replacen("__", "_", 1)),
        }
    }
    let mut out = Vec::new();
    walk(
        "AUDITSTREAM",
        &serde_json::to_value(T::default()).expect("defaults serialize"),
        &mut out,
    );
    out
}

/// Panics naming every setting of `T` whose environment variable `doc` does not mention:
/// the services' tests run it on the README so the configuration table cannot fall behind.
pub fn assert_documented<T: Serialize + Default>(doc: &str) {
    let names = env_var_names::<T>();
    assert!(names.len() > 5, "{names:?}");
    let missing: Vec<_> = names.iter().filter(|n| !doc.contains(n.as_str())).collect();
    assert!(missing.is_empty(), "the README lacks {missing:?}");
}

/// Deep-merges `over` into `base`; objects merge key by key, anything else replaces.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

fn lookup_mut<'a>(tree: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter()
        .try_fold(tree, |node, key| node.as_object_mut()?.get_mut(key))
}

fn env_value(current: &Value, raw: &str) -> Result<Value, String> {
    match current {
        Value::Number(_) | Value::Bool(_) => serde_json::from_str(raw)
            .map_err(|_| format!("expected a {}, got {raw:?}", kind(current))),
        Value::Array(_) if raw.trim_start().starts_with('[') => {
            serde_json::from_str(raw).map_err(|e| format!("not a JSON array: {e}"))
        }
        Value::Array(_) => Ok(Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        )),
        Value::Object(_) => {
            serde_json::from_str(raw).map_err(|e| format!("not a JSON object: {e}"))
        }
        // Strings, and optional values that default to null.
        Value::String(_) | Value::Null => Ok(Value::String(raw.to_owned())),
    }
}

fn kind(v: &Value) -> &'static str {
    if v.is_boolean() {
        "boolean (true or false)"
    } else {
        "number"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        url: String,
        timeout_ms: u64,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Conf {
        addr: String,
        enabled: bool,
        tokens: Vec<Secret>,
        nats: Inner,
        name: Option<String>,
    }

    impl Default for Inner {
        fn default() -> Self {
            Inner {
                url: "nats://d".into(),
                timeout_ms: 5,
            }
        }
    }
    impl Default for Conf {
        fn default() -> Self {
            Conf {
                addr: "a".into(),
                enabled: true,
                tokens: vec![],
                nats: Inner::default(),
                name: None,
            }
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_then_file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "addr = \"from-file\"\n[nats]\ntimeout_ms = 7\n").unwrap();
        let loaded: Loaded<Conf> = load(
            Some(&file),
            env(&[
                ("AUDITSTREAM_NATS__URL", "nats://env"),
                ("AUDITSTREAM_ENABLED", "false"),
                ("AUDITSTREAM_TOKENS", "t1, t2"),
                ("AUDITSTREAM_NAME", "gw"),
                ("AUDITSTREAM_ROUTER__X", "1"),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        let c = loaded.config;
        assert_eq!(c.addr, "from-file");
        assert_eq!(
            c.nats,
            Inner {
                url: "nats://env".into(),
                timeout_ms: 7
            }
        );
        assert!(!c.enabled);
        assert_eq!(c.tokens, vec![Secret::new("t1"), Secret::new("t2")]);
        assert_eq!(c.name.as_deref(), Some("gw"));
        assert_eq!(
            loaded.ignored_env,
            vec!["AUDITSTREAM_ROUTER__X".to_string()]
        );
        assert_eq!(format!("{:?}", c.tokens[0]), "Secret(****)");
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let e = load::<Conf>(None, env(&[("AUDITSTREAM_NATS__TIMEOUT_MS", "soon")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable AUDITSTREAM_NATS__TIMEOUT_MS: expected a number, got \"soon\""
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "adr = \"typo\"\n").unwrap();
        let e = load::<Conf>(Some(&file), env(&[])).unwrap_err();
        assert!(e.to_string().contains("unknown field `adr`"), "{e}");
        let e = load::<Conf>(Some(&dir.path().join("missing.toml")), env(&[])).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    }
}
