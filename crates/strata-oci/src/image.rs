//! Image config, manifest and index types (OCI image-spec and Docker schema 2).
//!
//! Every type keeps the fields it does not know in `extra` (serde flatten),
//! so re-serialising a parsed document loses nothing. Still, strata never
//! re-serialises what it received: the store keeps the raw bytes (see
//! [`crate::Image`]) and these types are only a parsed view of them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{media_type, Descriptor, Platform};

/// Fields a document carries that strata does not model.
pub type Extra = Map<String, Value>;

/// An image configuration (`application/vnd.oci.image.config.v1+json` or
/// Docker's `application/vnd.docker.container.image.v1+json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// When the image was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Who created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// CPU architecture (GOARCH name).
    #[serde(default)]
    pub architecture: String,
    /// Operating system (GOOS name).
    #[serde(default)]
    pub os: String,
    /// OS version.
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// OS features.
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// How to run a container from the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    /// The layers' uncompressed digests, bottom first.
    #[serde(default)]
    pub rootfs: RootFs,
    /// One entry per build step, bottom first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Fields strata does not model (docker's `container_config`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

impl ImageConfig {
    /// The platform this config declares.
    pub fn platform(&self) -> Platform {
        Platform {
            architecture: self.architecture.clone(),
            os: self.os.clone(),
            os_version: self.os_version.clone(),
            os_features: self.os_features.clone().unwrap_or_default(),
            variant: self.variant.clone(),
        }
    }

    /// Serialise (for configs strata creates itself).
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain data into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The `rootfs` section of a config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Uncompressed layer digests, bottom first.
    #[serde(default)]
    pub diff_ids: Vec<crate::Digest>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Default for RootFs {
    fn default() -> RootFs {
        RootFs {
            kind: "layers".to_owned(),
            diff_ids: Vec::new(),
            extra: Extra::new(),
        }
    }
}

/// One history entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// When the step ran (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The instruction that produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step made no layer.
    #[serde(default, skip_serializing_if = "is_false")]
    pub empty_layer: bool,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The `config` section: how to run a container (Docker's field names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// `user[:group]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `"80/tcp": {}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    /// `K=V` strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// Entrypoint argv.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `"/data": {}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Value>>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Stop signal (`SIGTERM`, `9`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Windows: CMD/ENTRYPOINT already escaped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    /// HEALTHCHECK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// ONBUILD triggers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    /// SHELL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// Unknown fields (`Hostname`, `Tty`...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// HEALTHCHECK settings; durations in nanoseconds, as docker stores them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    /// Between checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    /// Before a check is considered hung.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Start period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    /// Interval during the start period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    /// Failures before unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type (optional in OCI, required by Docker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// Layers, bottom first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to (referrers API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Manifest {
    /// A new OCI manifest.
    pub fn oci(config: Descriptor, layers: Vec<Descriptor>) -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_owned()),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: BTreeMap::new(),
            extra: Extra::new(),
        }
    }

    /// Serialise (for manifests strata creates itself).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The manifests (or nested indexes).
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Index {
    /// A new OCI index.
    pub fn oci(manifests: Vec<Descriptor>) -> Index {
        Index {
            schema_version: 2,
            media_type: Some(media_type::OCI_INDEX.to_owned()),
            artifact_type: None,
            manifests,
            subject: None,
            annotations: BTreeMap::new(),
            extra: Extra::new(),
        }
    }

    /// Serialise (for indexes strata creates itself).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// What a JSON document is, judged by its `mediaType` field or, failing
/// that, by its shape (`manifests` => index, `config` => manifest).
pub fn sniff_media_type(json: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<Value>,
        config: Option<Value>,
        layers: Option<Value>,
    }
    let p: Probe = serde_json::from_slice(json).ok()?;
    if let Some(mt) = p.media_type {
        return Some(mt);
    }
    if p.manifests.is_some() {
        Some(media_type::OCI_INDEX.to_owned())
    } else if p.config.is_some() && p.layers.is_some() {
        Some(media_type::OCI_MANIFEST.to_owned())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_CONFIG: &str = r#"{"architecture":"amd64","config":{"Hostname":"","User":"app","ExposedPorts":{"80/tcp":{}},"Env":["PATH=/usr/bin"],"Entrypoint":null,"Cmd":["sh"],"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":30000000000,"Timeout":1000000000,"StartPeriod":5,"StartInterval":6,"Retries":3},"ArgsEscaped":true,"Volumes":{"/data":{}},"WorkingDir":"/w","Labels":{"a":"b"},"OnBuild":["RUN x"],"StopSignal":"SIGQUIT","Shell":["/bin/bash","-c"]},"container":"abc","created":"2024-01-01T00:00:00Z","docker_version":"24","history":[{"created":"2024-01-01T00:00:00Z","created_by":"/bin/sh -c #(nop) ADD file:x in /","comment":"c"},{"created_by":"CMD [\"sh\"]","empty_layer":true}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]},"variant":"v1"}"#;

    #[test]
    fn docker_config_fields_and_unknowns_survive() {
        let c: ImageConfig = serde_json::from_str(DOCKER_CONFIG).unwrap();
        let cc = c.config.as_ref().unwrap();
        assert_eq!(cc.user.as_deref(), Some("app"));
        assert_eq!(cc.entrypoint, None);
        assert_eq!(cc.stop_signal.as_deref(), Some("SIGQUIT"));
        let hc = cc.healthcheck.as_ref().unwrap();
        assert_eq!(
            (hc.interval, hc.retries, hc.start_interval),
            (Some(30_000_000_000), Some(3), Some(6))
        );
        assert_eq!(cc.shell.as_ref().unwrap()[0], "/bin/bash");
        assert_eq!(cc.on_build.as_ref().unwrap(), &["RUN x"]);
        assert_eq!(cc.extra["Hostname"], "");
        assert_eq!(c.extra["docker_version"], "24");
        assert!(c.history[1].empty_layer);
        assert_eq!(c.rootfs.diff_ids.len(), 1);
        // Nothing is lost: the value round-trips.
        let back: Value = serde_json::from_slice(&c.to_json()).unwrap();
        let orig: Value = serde_json::from_str(DOCKER_CONFIG).unwrap();
        let strip_nulls = |v: &Value| -> Value {
            let mut v = v.clone();
            v["config"]
                .as_object_mut()
                .unwrap()
                .retain(|_, x| !x.is_null());
            v
        };
        assert_eq!(strip_nulls(&back), strip_nulls(&orig));
    }

    #[test]
    fn manifest_and_index_shapes() {
        let m = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":2,"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},"layers":[],"x-custom":1}"#;
        let parsed: Manifest = serde_json::from_str(m).unwrap();
        assert_eq!(parsed.extra["x-custom"], 1);
        assert_eq!(
            sniff_media_type(m.as_bytes()).as_deref(),
            Some(media_type::DOCKER_MANIFEST)
        );
        let idx = r#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(
            sniff_media_type(idx.as_bytes()).as_deref(),
            Some(media_type::OCI_INDEX)
        );
        let i: Index = serde_json::from_str(idx).unwrap();
        assert!(i.manifests.is_empty());
    }
}
