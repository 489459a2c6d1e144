//! Types and schema fragments shared by the three kinds.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A party, federation or dealer name. The same rule as the worker's
/// (`transport::certs::validate_name`): 1 to 63 ASCII letters, digits, `-`,
/// `.` or `_`, starting with a letter or digit. It appears in SPIFFE IDs
/// (`spiffe://<federation>/party/<name>`) inside certificates.
pub const NAME_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$";

/// A Kubernetes object name (DNS-1123 subdomain, as Secrets, ConfigMaps and
/// custom resources use).
pub const OBJECT_NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A key inside a Secret or ConfigMap.
pub const DATA_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";

/// `host:port`, where host is a DNS name, an IPv4 address or a bracketed
/// IPv6 address, and port is 1 to 65535.
pub const ENDPOINT_PATTERN: &str = r"^([A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\]):(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})$";

/// A positive Go-style duration (`90s`, `10m`, `1h30m`, `720h`), the format
/// of `metav1.Duration` and of CEL's `duration()`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// A duration in a spec: a Go-style duration string such as `30s`, `10m`
/// or `720h` (the format of `metav1.Duration` and of CEL's `duration()`).
///
/// The text is kept as written, so reading and writing an object never
/// rewrites the user's value; [`Duration::to_std`] parses it. The schema
/// admits only positive durations of that form, so a stored object parses,
/// but callers still handle the error rather than trust it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Duration(String);

impl Duration {
    /// A duration from its text, unchecked (see [`Duration::to_std`]).
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parse the text. Zero and negative durations are refused: every
    /// duration in these resources is a positive time span.
    pub fn to_std(&self) -> Result<std::time::Duration, String> {
        let parsed: kube::core::Duration =
            self.0.parse().map_err(|e| format!("invalid duration {:?}: {e}", truncate(&self.0, 64)))?;
        let std: std::time::Duration = parsed.into();
        if parsed.is_negative() || std.is_zero() {
            return Err(format!("invalid duration {:?}: must be positive", truncate(&self.0, 64)));
        }
        Ok(std)
    }
}

impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "maxLength": 64,
            "pattern": DURATION_PATTERN,
        })
    }
}

/// `s` cut to at most `max` bytes at a character boundary (for quoting user
/// input in messages).
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A reference to an object of another kind in the same namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// Name of the referenced object, in this object's namespace.
    #[schemars(length(min = 1, max = 253), pattern(OBJECT_NAME_PATTERN))]
    pub name: String,
}

impl LocalObjectReference {
    /// A reference to `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

/// A reference to a Secret in the same namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Name of the Secret, in this object's namespace.
    #[schemars(length(min = 1, max = 253), pattern(OBJECT_NAME_PATTERN))]
    pub name: String,
}

/// The default key of a CA bundle in a trust Secret.
pub const DEFAULT_CA_KEY: &str = "ca.crt";

fn default_ca_key() -> String {
    DEFAULT_CA_KEY.to_string()
}

/// A PEM CA bundle stored under one key of a Secret in the same namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaSecretKeyReference {
    /// Name of the Secret, in this object's namespace.
    #[schemars(length(min = 1, max = 253), pattern(OBJECT_NAME_PATTERN))]
    pub name: String,
    /// Key in the Secret whose value is the PEM bundle. Defaults to `ca.crt`.
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1, max = 253), pattern(DATA_KEY_PATTERN))]
    pub key: String,
}

/// The CA that authenticates a remote principal (a peer party or a dealer).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trust {
    /// The Secret key holding the CA bundle (PEM) that issued the remote
    /// side's certificates. Obtain it from that organization out of band.
    /// It may hold several certificates (during that side's CA key
    /// replacement): each is trusted. A change to the Secret reaches this
    /// party's workers without a restart.
    pub secret_ref: CaSecretKeyReference,
}

/// One key of a Secret or ConfigMap in the same namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeySelector {
    /// Name of the Secret or ConfigMap, in this object's namespace.
    #[schemars(length(min = 1, max = 253), pattern(OBJECT_NAME_PATTERN))]
    pub name: String,
    /// The key whose value is used.
    #[schemars(length(min = 1, max = 253), pattern(DATA_KEY_PATTERN))]
    pub key: String,
}

/// A trusted dealer: a third party that every party of the federation trusts
/// to generate correlated randomness honestly. A dealer that colludes with a
/// party can learn the other parties' inputs; see docs/security.md.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DealerEndpoint {
    /// The dealer's name: its certificate must carry the URI SAN
    /// `spiffe://<federation>/dealer/<name>`.
    #[schemars(length(min = 1, max = 63), pattern(NAME_PATTERN))]
    pub name: String,
    /// Where the dealer listens, as `host:port`.
    #[schemars(length(min = 3, max = 261), pattern(ENDPOINT_PATTERN))]
    pub endpoint: String,
    /// The CA that issued the dealer's certificate.
    pub trust: Trust,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as Std;

    #[test]
    fn durations_keep_their_text_and_parse_like_go() {
        let d: Duration = serde_json::from_str("\"1h30m\"").expect("a string");
        assert_eq!(d.as_str(), "1h30m");
        assert_eq!(serde_json::to_string(&d).expect("serializes"), "\"1h30m\"");
        assert_eq!(d.to_std(), Ok(Std::from_secs(5400)));
        assert_eq!(Duration::new("720h").to_std(), Ok(Std::from_secs(720 * 3600)));
        assert_eq!(Duration::new("250ms").to_std(), Ok(Std::from_millis(250)));
    }

    #[test]
    fn bad_durations_are_errors_not_panics() {
        for bad in ["", "0s", "10", "ten minutes", "-5s", "5d", &"9".repeat(500)] {
            let err = Duration::new(bad).to_std().expect_err(bad);
            assert!(err.starts_with("invalid duration"), "{err}");
            assert!(err.len() < 200, "the message is bounded: {err}");
        }
    }
}
