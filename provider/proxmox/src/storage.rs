//! Storage: content listing, `download-url` into `import`/`iso`, ISO upload, volume deletion.

use std::sync::Arc;

use serde_json::Value;

use crate::client::{Body, Client};
use crate::error::{Error, Result};
use crate::params::{api_path, Params};
use crate::props::{validate_node, validate_storage};
use crate::task::{upid_from, TaskOutcome, WaitOptions};
use crate::value::{f_str, f_u64};
use crate::Method;

/// Content type for `download-url` / `upload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// `import`: disk images for `import-from` (qcow2, raw, vmdk, ova).
    Import,
    /// `iso`: CD images.
    Iso,
}

impl ContentType {
    /// Wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentType::Import => "import",
            ContentType::Iso => "iso",
        }
    }
}

/// Checksum algorithm for verified downloads/uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    /// md5
    Md5,
    /// sha1
    Sha1,
    /// sha224
    Sha224,
    /// sha256
    Sha256,
    /// sha384
    Sha384,
    /// sha512
    Sha512,
}

impl ChecksumAlgorithm {
    /// Wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Md5 => "md5",
            ChecksumAlgorithm::Sha1 => "sha1",
            ChecksumAlgorithm::Sha224 => "sha224",
            ChecksumAlgorithm::Sha256 => "sha256",
            ChecksumAlgorithm::Sha384 => "sha384",
            ChecksumAlgorithm::Sha512 => "sha512",
        }
    }
    fn hex_len(self) -> usize {
        match self {
            ChecksumAlgorithm::Md5 => 32,
            ChecksumAlgorithm::Sha1 => 40,
            ChecksumAlgorithm::Sha224 => 56,
            ChecksumAlgorithm::Sha256 => 64,
            ChecksumAlgorithm::Sha384 => 96,
            ChecksumAlgorithm::Sha512 => 128,
        }
    }
}

/// A `download-url` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadUrl {
    /// Content type (`import` for disk images).
    pub content: ContentType,
    /// Target file name (e.g. `talos-v1.12.0-nocloud-amd64.qcow2`). For `import` content it
    /// must end in `.qcow2`, `.raw`, `.vmdk` or `.ova`; for `iso`, `.iso` or `.img`.
    pub filename: String,
    /// Source URL.
    pub url: String,
    /// Expected checksum (hex) and its algorithm.
    pub checksum: Option<(ChecksumAlgorithm, String)>,
    /// Verify the source's TLS certificate (PVE default: true).
    pub verify_certificates: Option<bool>,
    /// Decompression algorithm for compressed sources (`gz`, `lzo`, `zst`, `bz2`).
    pub compression: Option<String>,
}

impl DownloadUrl {
    /// Validate the request.
    pub fn validate(&self) -> Result<()> {
        validate_volume_file_name(self.content, &self.filename)?;
        let u = url::Url::parse(&self.url)
            .map_err(|e| Error::InvalidArgument(format!("url: {:?}: {e}", self.url)))?;
        if !matches!(u.scheme(), "http" | "https" | "ftp") {
            return Err(Error::InvalidArgument(format!(
                "url: {:?} must be http(s) or ftp",
                self.url
            )));
        }
        if let Some((alg, sum)) = &self.checksum {
            if sum.len() != alg.hex_len() || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::InvalidArgument(format!(
                    "checksum: not a {} hex digest",
                    alg.as_str()
                )));
            }
        }
        Ok(())
    }

    fn params(&self) -> Params {
        let mut p = Params::new()
            .str("content", self.content.as_str())
            .str("filename", &self.filename)
            .str("url", &self.url);
        if let Some((alg, sum)) = &self.checksum {
            p = p
                .str("checksum", sum.to_ascii_lowercase())
                .str("checksum-algorithm", alg.as_str());
        }
        p.opt_bool("verify-certificates", self.verify_certificates)
            .opt_str("compression", self.compression.as_deref())
    }
}

/// Check a file name for an `import`/`iso` volume.
pub fn validate_volume_file_name(content: ContentType, name: &str) -> Result<()> {
    let ok_chars = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b));
    let ext_ok = match content {
        ContentType::Import => [".qcow2", ".raw", ".vmdk", ".ova", ".img"]
            .iter()
            .any(|e| name.ends_with(e)),
        ContentType::Iso => name.ends_with(".iso") || name.ends_with(".img"),
    };
    if ok_chars && ext_ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "filename: {name:?} is not a valid {} file name",
            content.as_str()
        )))
    }
}

/// One storage volume (`GET /nodes/{node}/storage/{storage}/content`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageVolume {
    /// Volume id (`local:import/x.qcow2`).
    pub volid: String,
    /// Content type.
    pub content: String,
    /// Format (`qcow2`, `raw`, `iso`, ...).
    pub format: Option<String>,
    /// Size in bytes.
    pub size: Option<u64>,
    /// Owning VMID, for disk images.
    pub vmid: Option<u64>,
}

/// The volume id a file gets on a storage: `STORAGE:CONTENT/FILENAME`.
pub fn volume_id(storage: &str, content: ContentType, filename: &str) -> String {
    format!("{storage}:{}/{filename}", content.as_str())
}

impl Client {
    /// `GET /nodes/{node}/storage/{storage}/content[?content=]`.
    pub async fn list_storage_content(
        &self,
        node: &str,
        storage: &str,
        content: Option<&str>,
    ) -> Result<Vec<StorageVolume>> {
        let path = api_path(&["nodes", node, "storage", storage, "content"]);
        let v: Value = self
            .get(&path, &Params::new().opt_str("content", content))
            .await?;
        let mut out = Vec::new();
        if let Value::Array(items) = v {
            for it in items {
                if let Some(volid) = f_str(&it, "volid") {
                    out.push(StorageVolume {
                        volid,
                        content: f_str(&it, "content").unwrap_or_default(),
                        format: f_str(&it, "format"),
                        size: f_u64(&it, "size"),
                        vmid: f_u64(&it, "vmid"),
                    });
                }
            }
        }
        Ok(out)
    }

    /// `POST /nodes/{node}/storage/{storage}/download-url`; returns the started task.
    pub async fn download_url(
        &self,
        node: &str,
        storage: &str,
        req: &DownloadUrl,
    ) -> Result<crate::Upid> {
        validate_node(node)?;
        validate_storage(storage)?;
        req.validate()?;
        let path = api_path(&["nodes", node, "storage", storage, "download-url"]);
        let data = self.post(&path, &req.params()).await?;
        upid_from(&data)
    }

    /// Make sure `req.filename` exists on the storage, downloading it when absent, and return
    /// its volume id. Concurrent calls for the same node/storage/file in this process share
    /// one download; the node permit is held during the download task.
    pub async fn ensure_image_downloaded(
        &self,
        node: &str,
        storage: &str,
        req: &DownloadUrl,
        wait: &WaitOptions,
    ) -> Result<String> {
        req.validate()?;
        let volid = volume_id(storage, req.content, &req.filename);
        let _guard = self.key_lock(&format!("download:{node}:{volid}")).await;
        if self
            .volume_exists(node, storage, req.content, &volid)
            .await?
        {
            return Ok(volid);
        }
        let _permit = self.node_permit(node).await;
        match self.download_url(node, storage, req).await {
            Ok(upid) => {
                self.wait_task(&upid, wait).await?;
            }
            Err(e) if crate::vm::is_outcome_unknown(&e) => {
                // The download may have started: wait for its task, and look before posting
                // again.
                if let Some(upid) = self
                    .active_task(node, "download", Some(&req.filename))
                    .await?
                {
                    self.wait_task(&upid, wait).await?;
                }
                if !self
                    .volume_exists(node, storage, req.content, &volid)
                    .await?
                {
                    let upid = self.download_url(node, storage, req).await?;
                    self.wait_task(&upid, wait).await?;
                }
            }
            Err(e) => return Err(e),
        }
        Ok(volid)
    }

    async fn volume_exists(
        &self,
        node: &str,
        storage: &str,
        content: ContentType,
        volid: &str,
    ) -> Result<bool> {
        Ok(self
            .list_storage_content(node, storage, Some(content.as_str()))
            .await?
            .iter()
            .any(|v| v.volid == volid))
    }

    /// Upload an ISO (`POST /nodes/{node}/storage/{storage}/upload`, multipart, content
    /// `iso`) and wait for the copy task. Returns the volume id. With `replace`, an existing
    /// file of the same name is deleted first; without it, an existing file is kept and its
    /// volume id returned.
    pub async fn upload_iso(
        &self,
        node: &str,
        storage: &str,
        filename: &str,
        data: Vec<u8>,
        replace: bool,
    ) -> Result<String> {
        validate_node(node)?;
        validate_storage(storage)?;
        validate_volume_file_name(ContentType::Iso, filename)?;
        let volid = volume_id(storage, ContentType::Iso, filename);
        let _guard = self.key_lock(&format!("upload:{node}:{volid}")).await;
        if self
            .volume_exists(node, storage, ContentType::Iso, &volid)
            .await?
        {
            if !replace {
                return Ok(volid);
            }
            self.delete_volume(node, storage, &volid).await?;
        }
        let _permit = self.node_permit(node).await;
        let path = api_path(&["nodes", node, "storage", storage, "upload"]);
        let fields = Params::new().str("content", "iso");
        let data = Arc::new(data);
        let res = match self
            .call_body(
                Method::POST,
                &path,
                Body::Upload {
                    fields: &fields,
                    file_name: filename,
                    data: data.clone(),
                },
                false,
            )
            .await
        {
            Ok(v) => v,
            Err(e) if crate::vm::is_outcome_unknown(&e) => {
                // The upload may have been stored: look before sending it again.
                if let Some(upid) = self.active_task(node, "imgcopy", None).await? {
                    self.wait_task(&upid, &WaitOptions::default()).await?;
                }
                if self
                    .volume_exists(node, storage, ContentType::Iso, &volid)
                    .await?
                {
                    return Ok(volid);
                }
                self.call_body(
                    Method::POST,
                    &path,
                    Body::Upload {
                        fields: &fields,
                        file_name: filename,
                        data,
                    },
                    false,
                )
                .await?
            }
            Err(e) => return Err(e),
        };
        // Real PVE returns the UPID of the copy task; tolerate servers that finish inline.
        if let Value::String(_) = res {
            let upid = upid_from(&res)?;
            self.wait_task(&upid, &WaitOptions::default()).await?;
        }
        Ok(volid)
    }

    /// `DELETE /nodes/{node}/storage/{storage}/content/{volume}`; waits for the task when
    /// one is returned. A volume that does not exist is success.
    pub async fn delete_volume(
        &self,
        node: &str,
        storage: &str,
        volid: &str,
    ) -> Result<Option<TaskOutcome>> {
        let path = api_path(&["nodes", node, "storage", storage, "content", volid]);
        match self.delete(&path, &Params::new()).await {
            Ok(Value::String(s)) => Ok(Some(
                self.wait_task_value(&Value::String(s), &WaitOptions::default())
                    .await?,
            )),
            Ok(_) => Ok(None),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_params_and_validation() {
        let d = DownloadUrl {
            content: ContentType::Import,
            filename: "talos-v1.12.0-nocloud-amd64.qcow2".into(),
            url: "https://factory.talos.dev/image/abc/v1.12.0/nocloud-amd64.qcow2".into(),
            checksum: Some((ChecksumAlgorithm::Sha256, "AB".repeat(32))),
            verify_certificates: Some(true),
            compression: None,
        };
        d.validate().unwrap();
        let j = d.params().to_json();
        assert_eq!(j["content"], "import");
        assert_eq!(j["checksum-algorithm"], "sha256");
        assert_eq!(j["checksum"], "ab".repeat(32));
        assert_eq!(j["verify-certificates"], true);
        let mut bad = d.clone();
        bad.checksum = Some((ChecksumAlgorithm::Sha256, "abc".into()));
        assert!(bad.validate().is_err());
        let mut bad = d.clone();
        bad.filename = "talos.iso".into();
        assert!(bad.validate().is_err());
        let mut bad = d.clone();
        bad.url = "file:///etc/passwd".into();
        assert!(bad.validate().is_err());
        let mut bad = d;
        bad.filename = "../x.qcow2".into();
        assert!(bad.validate().is_err());
        assert_eq!(
            volume_id("local", ContentType::Import, "a.qcow2"),
            "local:import/a.qcow2"
        );
    }
}
