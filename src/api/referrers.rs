//! `GET /v2/<name>/referrers/<digest>`: the OCI index of manifests whose subject is the digest.

use super::*;

impl Registry {
    pub(super) async fn referrers(
        &self,
        n: &RepositoryName,
        subject: &Digest,
        q: &[(String, String)],
    ) -> Result<Response<Body>> {
        let filter = param(q, "artifactType");
        let mut manifests = Vec::new();
        for d in self.store.referrers(n, subject).await? {
            let Some(bytes) = self.store.blob_read_small(&d).await? else {
                continue;
            };
            let Some(p) = Parsed::from_stored(&bytes) else {
                continue;
            };
            let artifact_type = p.artifact_type();
            if filter.is_some_and(|f| artifact_type.as_deref() != Some(f)) {
                continue;
            }
            let mut desc = serde_json::json!({
                "mediaType": p.body.media_type.clone().unwrap_or_else(|| p.kind.media_type().to_owned()),
                "digest": d.to_string(),
                "size": bytes.len(),
            });
            if let Some(obj) = desc.as_object_mut() {
                if let Some(a) = artifact_type {
                    obj.insert("artifactType".into(), a.into());
                }
                if let Some(ann) = &p.body.annotations {
                    obj.insert("annotations".into(), serde_json::json!(ann));
                }
            }
            manifests.push(desc);
            if manifests.len() >= self.page_max {
                break;
            }
        }
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::oci::media_type::OCI_INDEX,
            "manifests": manifests,
        });
        let mut resp = Response::new(Body::Full(body.to_string().into()));
        set(
            resp.headers_mut(),
            header::CONTENT_TYPE,
            crate::oci::media_type::OCI_INDEX,
        );
        if filter.is_some() {
            set(resp.headers_mut(), "OCI-Filters-Applied", "artifactType");
        }
        Ok(resp)
    }
}
