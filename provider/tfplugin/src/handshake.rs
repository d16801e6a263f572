//! go-plugin handshake: the launch environment and the handshake line.
//!
//! The host (OpenTofu/Terraform) starts the plugin with a magic cookie, the
//! protocol versions it speaks and, with AutoMTLS, its client certificate. The
//! plugin answers with one line on stdout:
//! `CORE|APP|NETWORK|ADDRESS|grpc|CERT` (CERT: the server certificate's DER in
//! standard base64 without padding, empty without TLS).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;

/// Environment variable holding the magic cookie.
pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
/// The magic cookie value shared by Terraform and OpenTofu.
pub const MAGIC_COOKIE_VALUE: &str =
    "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/// go-plugin core protocol version (first field of the handshake line).
pub const CORE_PROTOCOL_VERSION: u32 = 1;
/// The only plugin protocol waddle speaks.
pub const PROTOCOL_VERSION: u32 = 6;

/// Why the plugin refuses to start. `Display` is written for a human.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Started without the magic cookie: most likely by a person.
    #[error(
        "This binary is a plugin for OpenTofu/Terraform and is not meant to be run directly.\n\
         OpenTofu (>= 1.6) or Terraform (>= 1.0) starts it for you: declare the provider in a \
         `required_providers` block of your configuration, install it (from the registry or a \
         filesystem mirror, e.g. `tofu init -plugin-dir DIR`) and run `tofu init`, `tofu plan` \
         and `tofu apply` as usual."
    )]
    MissingMagicCookie,
    /// The host offers no protocol version waddle understands.
    #[error(
        "This provider speaks plugin protocol version 6 only, but the host offered {offered:?}.\n\
         Upgrade to OpenTofu >= 1.6 or Terraform >= 1.0."
    )]
    UnsupportedProtocol {
        /// The raw `PLUGIN_PROTOCOL_VERSIONS` value.
        offered: String,
    },
    /// `PLUGIN_MIN_PORT`/`PLUGIN_MAX_PORT` are not valid ports.
    #[error("invalid {name} value {value:?}: expected a port number")]
    InvalidPort {
        /// Variable name.
        name: &'static str,
        /// Raw value.
        value: String,
    },
    /// A handshake line could not be parsed (client side).
    #[error("malformed plugin handshake line {0:?}")]
    MalformedLine(String),
}

/// Which listener to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// Unix socket, falling back to TCP if it cannot be bound.
    #[default]
    Auto,
    /// Unix socket only.
    Unix,
    /// TCP on 127.0.0.1 only.
    Tcp,
}

/// What the host told the plugin through its environment.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct LaunchEnv {
    /// `TF_PLUGIN_MAGIC_COOKIE`.
    pub magic_cookie: Option<String>,
    /// `PLUGIN_PROTOCOL_VERSIONS` (comma separated, any order).
    pub protocol_versions: Option<String>,
    /// `PLUGIN_CLIENT_CERT` (PEM): enables AutoMTLS.
    pub client_cert_pem: Option<String>,
    /// `PLUGIN_MIN_PORT` (TCP fallback only).
    pub min_port: Option<String>,
    /// `PLUGIN_MAX_PORT` (TCP fallback only).
    pub max_port: Option<String>,
    /// `PLUGIN_UNIX_SOCKET_DIR`: parent of the private socket directory.
    pub unix_socket_dir: Option<PathBuf>,
}

impl fmt::Debug for LaunchEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LaunchEnv")
            .field("magic_cookie_set", &self.magic_cookie.is_some())
            .field("protocol_versions", &self.protocol_versions)
            .field("client_cert_set", &self.client_cert_pem.is_some())
            .field("min_port", &self.min_port)
            .field("max_port", &self.max_port)
            .field("unix_socket_dir", &self.unix_socket_dir)
            .finish()
    }
}

impl LaunchEnv {
    /// Reads the launch environment of the current process.
    pub fn from_env() -> Self {
        Self::from_map(&std::env::vars().collect())
    }

    /// Reads the launch environment from a map (for tests).
    pub fn from_map(env: &HashMap<String, String>) -> Self {
        let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
        LaunchEnv {
            magic_cookie: get(MAGIC_COOKIE_KEY),
            protocol_versions: get("PLUGIN_PROTOCOL_VERSIONS"),
            client_cert_pem: get("PLUGIN_CLIENT_CERT"),
            min_port: get("PLUGIN_MIN_PORT"),
            max_port: get("PLUGIN_MAX_PORT"),
            unix_socket_dir: get("PLUGIN_UNIX_SOCKET_DIR").map(PathBuf::from),
        }
    }

    /// A valid launch environment as OpenTofu/Terraform would provide it
    /// (cookie and `PLUGIN_PROTOCOL_VERSIONS=5,6`), optionally with AutoMTLS.
    pub fn for_host(client_cert_pem: Option<String>) -> Self {
        LaunchEnv {
            magic_cookie: Some(MAGIC_COOKIE_VALUE.to_string()),
            protocol_versions: Some("5,6".to_string()),
            client_cert_pem,
            ..Default::default()
        }
    }

    /// Checks the magic cookie and negotiates the protocol version (always 6).
    pub fn negotiate(&self) -> Result<u32, HandshakeError> {
        if self.magic_cookie.as_deref() != Some(MAGIC_COOKIE_VALUE) {
            return Err(HandshakeError::MissingMagicCookie);
        }
        match &self.protocol_versions {
            // Hosts predating version negotiation: use our own version.
            None => Ok(PROTOCOL_VERSION),
            Some(list) => {
                let offered = list
                    .split(',')
                    .filter_map(|v| v.trim().parse::<u32>().ok())
                    .any(|v| v == PROTOCOL_VERSION);
                if offered {
                    Ok(PROTOCOL_VERSION)
                } else {
                    Err(HandshakeError::UnsupportedProtocol {
                        offered: list.clone(),
                    })
                }
            }
        }
    }

    /// The TCP port range to try: `(min, max)`; `(0, 0)` means "any".
    pub fn port_range(&self) -> Result<(u16, u16), HandshakeError> {
        let parse = |name: &'static str, v: &Option<String>| -> Result<u16, HandshakeError> {
            match v {
                None => Ok(0),
                Some(s) => s.trim().parse().map_err(|_| HandshakeError::InvalidPort {
                    name,
                    value: s.clone(),
                }),
            }
        };
        let min = parse("PLUGIN_MIN_PORT", &self.min_port)?;
        let max = parse("PLUGIN_MAX_PORT", &self.max_port)?;
        Ok(match (min, max) {
            (0, 0) => (0, 0),
            (min, 0) => (min, u16::MAX),
            (min, max) if min <= max => (min, max),
            (min, max) => (max, min),
        })
    }
}

/// Where the plugin listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A unix socket path.
    Unix(PathBuf),
    /// A TCP address on loopback.
    Tcp(SocketAddr),
}

impl ListenAddr {
    fn network(&self) -> &'static str {
        match self {
            ListenAddr::Unix(_) => "unix",
            ListenAddr::Tcp(_) => "tcp",
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Unix(p) => write!(f, "{}", p.display()),
            ListenAddr::Tcp(a) => write!(f, "{a}"),
        }
    }
}

/// The content of a handshake line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeInfo {
    /// Negotiated plugin protocol version (6).
    pub protocol_version: u32,
    /// Listening address.
    pub addr: ListenAddr,
    /// DER of the server certificate when AutoMTLS is on.
    pub server_cert_der: Option<Vec<u8>>,
}

impl HandshakeInfo {
    /// The handshake line, without the trailing newline.
    pub fn line(&self) -> String {
        let cert = self
            .server_cert_der
            .as_deref()
            .map(|d| STANDARD_NO_PAD.encode(d))
            .unwrap_or_default();
        format!(
            "{CORE_PROTOCOL_VERSION}|{}|{}|{}|grpc|{cert}",
            self.protocol_version,
            self.addr.network(),
            self.addr,
        )
    }

    /// Parses a handshake line as a go-plugin host does.
    pub fn parse(line: &str) -> Result<Self, HandshakeError> {
        let bad = || HandshakeError::MalformedLine(line.to_string());
        let line = line.trim_end_matches(['\r', '\n']);
        let parts: Vec<&str> = line.splitn(6, '|').collect();
        if parts.len() < 5 || parts[0] != CORE_PROTOCOL_VERSION.to_string() || parts[4] != "grpc" {
            return Err(bad());
        }
        let protocol_version = parts[1].parse().map_err(|_| bad())?;
        let addr = match parts[2] {
            "unix" => ListenAddr::Unix(PathBuf::from(parts[3])),
            "tcp" => ListenAddr::Tcp(parts[3].parse().map_err(|_| bad())?),
            _ => return Err(bad()),
        };
        let server_cert_der = match parts.get(5) {
            Some(c) if !c.is_empty() => Some(STANDARD_NO_PAD.decode(c).map_err(|_| bad())?),
            _ => None,
        };
        Ok(HandshakeInfo {
            protocol_version,
            addr,
            server_cert_der,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> LaunchEnv {
        LaunchEnv::from_map(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn missing_or_wrong_cookie_is_refused_with_human_message() {
        let e = env(&[("PLUGIN_PROTOCOL_VERSIONS", "6")]).negotiate();
        assert_eq!(e, Err(HandshakeError::MissingMagicCookie));
        let msg = HandshakeError::MissingMagicCookie.to_string();
        assert!(msg.contains("plugin for OpenTofu/Terraform"), "{msg}");
        assert!(msg.contains("not meant to be run directly"), "{msg}");
        let wrong = env(&[(MAGIC_COOKIE_KEY, "nope")]).negotiate();
        assert_eq!(wrong, Err(HandshakeError::MissingMagicCookie));
    }

    #[test]
    fn protocol_6_is_picked_from_a_list_in_any_order() {
        for list in ["5,6", "6,5", "6", " 4 , 6 ", "7,6,5"] {
            let e = env(&[
                (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
                ("PLUGIN_PROTOCOL_VERSIONS", list),
            ]);
            assert_eq!(e.negotiate(), Ok(6), "{list}");
        }
        let no_list = env(&[(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)]);
        assert_eq!(no_list.negotiate(), Ok(6));
    }

    #[test]
    fn protocol_without_6_names_minimum_versions() {
        let e = env(&[
            (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
            ("PLUGIN_PROTOCOL_VERSIONS", "4,5"),
        ]);
        let err = e.negotiate().unwrap_err();
        assert_eq!(
            err,
            HandshakeError::UnsupportedProtocol {
                offered: "4,5".into()
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("OpenTofu >= 1.6"), "{msg}");
        assert!(msg.contains("Terraform >= 1.0"), "{msg}");
    }

    #[test]
    fn port_range() {
        assert_eq!(env(&[]).port_range(), Ok((0, 0)));
        let e = env(&[("PLUGIN_MIN_PORT", "10000"), ("PLUGIN_MAX_PORT", "25000")]);
        assert_eq!(e.port_range(), Ok((10000, 25000)));
        assert!(env(&[("PLUGIN_MIN_PORT", "x")]).port_range().is_err());
    }

    #[test]
    fn line_format_and_round_trip() {
        let info = HandshakeInfo {
            protocol_version: 6,
            addr: ListenAddr::Unix("/tmp/plugin123/sock".into()),
            server_cert_der: Some(vec![0x30, 0x82, 0x01]),
        };
        // 3 bytes -> 4 chars, no padding either way; 0x30 0x82 0x01 -> "MIIB".
        assert_eq!(info.line(), "1|6|unix|/tmp/plugin123/sock|grpc|MIIB");
        assert_eq!(HandshakeInfo::parse(&info.line()), Ok(info.clone()));

        let two = HandshakeInfo {
            server_cert_der: Some(vec![1, 2]),
            ..info.clone()
        };
        assert!(two.line().ends_with("|grpc|AQI"), "no '=' padding");

        let plain = HandshakeInfo {
            protocol_version: 6,
            addr: ListenAddr::Tcp("127.0.0.1:1234".parse().unwrap()),
            server_cert_der: None,
        };
        assert_eq!(plain.line(), "1|6|tcp|127.0.0.1:1234|grpc|");
        assert_eq!(HandshakeInfo::parse(&plain.line()), Ok(plain));
        assert!(HandshakeInfo::parse("hello").is_err());
    }

    #[test]
    fn debug_does_not_show_cookie_or_cert() {
        let e = LaunchEnv::for_host(Some("-----BEGIN CERTIFICATE-----".into()));
        let dbg = format!("{e:?}");
        assert!(!dbg.contains(MAGIC_COOKIE_VALUE));
        assert!(!dbg.contains("BEGIN"));
    }
}
