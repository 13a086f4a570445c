//! What is not the Distribution API proper: the built-in token service (`/token`) and
//! berth's admin API (`/berth/v1/...`).

use super::error::ApiError;
use super::events::{Answer, Happened};
use super::{json, param, Body, Ctx, Registry, Result};
use crate::auth::{gate, Tokens};
use crate::oci::RepositoryName;
use http::{header, Method, Response, StatusCode};

impl Registry {
    /// `GET /token`: the built-in token service (Docker registry token protocol).
    pub(super) async fn token(&self, ctx: &Ctx<'_>) -> Result<Response<Body>> {
        let req = ctx.req;
        let Some(auth) = self
            .auth
            .as_deref()
            .filter(|a| a.tokens.as_ref().is_some_and(Tokens::builtin))
        else {
            return Err(ApiError::unsupported(
                StatusCode::NOT_FOUND,
                "no token service here (auth.mode is not \"token\" with the builtin issuer)",
            ));
        };
        if req.method != Method::GET {
            return Err(ApiError::unsupported(
                StatusCode::METHOD_NOT_ALLOWED,
                "the token service takes GET with Basic credentials",
            ));
        }
        let (t, q) = (ctx.transport, &ctx.query);
        let service = auth
            .tokens
            .as_ref()
            .map(|t| t.service.as_str())
            .unwrap_or_default();
        if let Some(s) = param(q, "service").filter(|s| *s != service) {
            return Err(ApiError::unsupported(
                StatusCode::BAD_REQUEST,
                format!("unknown service {s:?}; this registry is {service:?}"),
            ));
        }
        let scopes: Vec<String> = q
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.clone())
            .collect();
        let header = req
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match auth.issue_token(header, t.secure, &t.client, &scopes).await {
            Ok(r) => {
                let body = serde_json::to_vec(&r).unwrap_or_default();
                let mut resp = json(StatusCode::OK, body.into());
                resp.headers_mut().insert(
                    header::CACHE_CONTROL,
                    header::HeaderValue::from_static("no-store"),
                );
                Ok(resp)
            }
            Err(r) => Err(super::denial(gate::refused(
                auth,
                r,
                "wrong user name or password",
            ))),
        }
    }

    /// `DELETE /berth/v1/repositories/<name>`: a whole repository.
    pub(super) async fn repository_delete<'a>(&self, n: &'a RepositoryName) -> Result<Answer<'a>> {
        self.check_delete_enabled()?;
        if !self.store.repository_delete(n).await? {
            return Err(ApiError::name_unknown(n));
        }
        tracing::info!(repo = %n, "repository deleted");
        let body = serde_json::json!({ "deleted": n.as_str() });
        Ok(Answer::with(
            json(StatusCode::ACCEPTED, body.to_string().into()),
            Happened::RepositoryDeleted { repo: n },
        ))
    }
}
