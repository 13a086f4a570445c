//! The web UI at `/ui/`: server-rendered pages over the same [`Content`] the API uses,
//! behind the same users and rules. Browsing works without JavaScript; `app.js` only adds
//! copy buttons and delete confirmations. Assets are embedded and served under their
//! content hash with a year's cache; pages carry a strict `Content-Security-Policy` (no
//! inline script or style, nothing from other origins) and `X-Frame-Options: DENY`.
//!
//! A page shows only repositories the caller may pull: one they may not is a 404, the same
//! as one that does not exist. State-changing requests (login, logout, deletes) are POSTs
//! with a CSRF token bound to the session (`session.rs`) and a same-origin check. Deletes
//! are not done here: the UI hands them back to the API ([`Answer::Delete`]), which runs
//! its own DELETE handler with the user's rights, so the rules, `storage.delete_enabled`,
//! read-only mode and webhook events apply exactly as to a client's DELETE.

mod session;

use crate::auth::{Action, Auth};
use crate::body::{Body, RequestBody};
use crate::oci::{Digest, Reference, RepositoryName, Tag};
use crate::store::{BlobSource, Content};
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::Value;
use session::{Keys, Session, COOKIE};
use std::fmt::Write as _;
use std::sync::OnceLock;

const CSS: &str = include_str!("assets/app.css");
const JS: &str = include_str!("assets/app.js");
const PAGE: usize = 100;
/// Manifests read at once for a page of tags.
const FETCHES: usize = 32;
const CONFIG_MAX: u64 = 1 << 20;
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The UI's settings and its session key (loaded on first use).
pub(crate) struct Ui {
    state_dir: std::path::PathBuf,
    ttl: std::time::Duration,
    keys: OnceLock<Result<Keys, String>>,
    /// The store's blob bytes and when they were counted (a walk of the blob tree).
    blob_bytes: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
}

/// How long a count of the store's blob bytes is shown before it is taken again.
const BLOB_BYTES_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// What the request may see and do, from the API's side.
pub(crate) struct View<'a> {
    pub store: &'a dyn Content,
    pub auth: Option<&'a Auth>,
    pub delete_enabled: bool,
    pub tls: bool,
    /// The host name clients pull from (`http.external_url`, else the request's Host).
    pub registry: String,
    pub secure: bool,
    pub client: &'a str,
    /// When the served certificate expires (Unix seconds), when berth serves TLS.
    pub cert_not_after: Option<i64>,
}

/// What to delete for a UI user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Deletion {
    Tag(Tag),
    Manifest(Digest),
    Repository,
}

/// The UI's answer: a page, or a delete for the API to carry out and then send the
/// browser to `back`.
pub(crate) enum Answer {
    Page(Response<Body>),
    Delete {
        user: Option<String>,
        repo: RepositoryName,
        what: Deletion,
        back: String,
    },
}

/// Whether a request is the UI's: under `/ui`, a browser's `GET /`, or its favicon.
pub(crate) fn wants(req: &http::request::Parts) -> bool {
    let path = req.uri.path();
    if path == "/ui" || path.starts_with("/ui/") || path == "/favicon.ico" {
        return true;
    }
    path == "/"
        && req.method == http::Method::GET
        && req
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
}

fn hash_of(s: &str) -> String {
    let d = Digest::of(crate::oci::Algorithm::Sha256, s.as_bytes());
    d.hex()[..12].to_owned()
}

fn asset_paths() -> &'static (String, String) {
    static P: OnceLock<(String, String)> = OnceLock::new();
    P.get_or_init(|| {
        (
            format!("/ui/static/app.{}.css", hash_of(CSS)),
            format!("/ui/static/app.{}.js", hash_of(JS)),
        )
    })
}

/// HTML-escapes text for element content and quoted attributes.
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn url_part(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn size(n: u64) -> String {
    crate::config::Size(n).approx()
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Body::Full(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

fn redirect(to: &str, cookie: Option<String>) -> Response<Body> {
    let mut r = respond(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The request, as the pages need it.
struct Req<'a> {
    v: &'a View<'a>,
    session: Option<Session>,
    csrf: String,
    query: Vec<(String, String)>,
}

impl Req<'_> {
    fn user(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.user.as_str())
    }

    fn can(&self, repo: &str, action: Action) -> bool {
        match self.v.auth {
            None => true,
            Some(a) => a.allowed(self.user(), repo, action),
        }
    }

    fn param(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    /// The page asked for (`?page=`, from 1) and how many pages `items` make.
    fn page_of(&self, items: usize) -> (usize, usize) {
        let page = self.param("page").and_then(|p| p.parse().ok()).unwrap_or(1);
        (page.max(1), items.div_ceil(PAGE).max(1))
    }

    /// Why deleting is not offered, if it is not.
    fn delete_blocked(&self, repo: &str) -> Option<&'static str> {
        if !self.v.delete_enabled {
            Some("deleting is turned off on this registry (storage.delete_enabled = false)")
        } else if self.v.store.read_only() {
            Some("the registry is read-only for now (storage.read_only)")
        } else if !self.can(repo, Action::Delete) {
            Some("your account may not delete in this repository")
        } else {
            None
        }
    }

    fn page(&self, title: &str, body: &str) -> Response<Body> {
        let (css, js) = asset_paths();
        let nav = match (self.user(), self.v.auth) {
            (Some(u), _) => format!(
                r#"<span class="who">{}</span><form method="post" action="/ui/logout" class="inline"><input type="hidden" name="csrf" value="{}"><button type="submit">Log out</button></form>"#,
                esc(u),
                esc(&self.csrf)
            ),
            (None, Some(_)) => r#"<a href="/ui/login">Log in</a>"#.to_owned(),
            (None, None) => String::new(),
        };
        let html = format!(
            r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{} · berth</title><link rel="icon" href="data:,"><link rel="stylesheet" href="{css}"><script src="{js}" defer></script></head>
<body><header><a class="brand" href="/ui/">berth</a><span class="host">{}</span><nav>{nav}</nav></header>
<main>{body}</main></body></html>
"#,
            esc(title),
            esc(&self.v.registry)
        );
        let mut r = respond(StatusCode::OK, "text/html; charset=utf-8", html);
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }

    fn not_found(&self) -> Response<Body> {
        let mut r = self.page(
            "Not found",
            r#"<h1>Not found</h1><p>There is nothing here you may see. <a href="/ui/">All repositories</a></p>"#,
        );
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    }

    fn error(&self, e: impl std::fmt::Display) -> Response<Body> {
        tracing::warn!(error = %e, "ui: the store failed");
        let mut r = self.page(
            "Error",
            "<h1>Something went wrong</h1><p>The store could not be read; the registry's log says why.</p>",
        );
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    }

    fn copy(&self, label: &str, command: &str) -> String {
        format!(
            r#"<div class="cmd"><span class="label">{}</span><code>{}</code><button type="button" class="copy" data-copy="{}">Copy</button></div>"#,
            esc(label),
            esc(command),
            esc(command)
        )
    }

    fn delete_form(&self, repo: &str, field: &str, value: &str, label: &str) -> String {
        match self.delete_blocked(repo) {
            Some(why) => format!(
                r#"<button type="button" disabled title="{}">{}</button>"#,
                esc(why),
                esc(label)
            ),
            None => format!(
                r#"<form method="post" action="/ui/delete" class="inline delete" data-confirm="{} {}?"><input type="hidden" name="csrf" value="{}"><input type="hidden" name="repo" value="{}"><input type="hidden" name="{}" value="{}"><button type="submit" class="danger">{}</button></form>"#,
                esc(label),
                esc(value),
                esc(&self.csrf),
                esc(repo),
                esc(field),
                esc(value),
                esc(label)
            ),
        }
    }
}

/// Reads a small form body.
async fn form(body: &mut dyn RequestBody) -> Vec<(String, String)> {
    let mut buf = Vec::new();
    while let Ok(Some(c)) = body.chunk().await {
        buf.extend_from_slice(&c);
        if buf.len() > 16 << 10 {
            return Vec::new();
        }
    }
    url::form_urlencoded::parse(&buf).into_owned().collect()
}

fn field<'a>(f: &'a [(String, String)], k: &str) -> Option<&'a str> {
    f.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

/// Whether a POST comes from a page of this origin (`Origin`, else `Referer`, must name
/// the request's host). Browsers send one of them with every form POST.
fn same_origin(req: &http::request::Parts) -> bool {
    let host = req
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()));
    let Some(host) = host else { return false };
    let from = req
        .headers
        .get(header::ORIGIN)
        .or_else(|| req.headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    match from.and_then(|f| url::Url::parse(f).ok()) {
        Some(u) => {
            let h = match (u.host_str(), u.port()) {
                (Some(h), Some(p)) => format!("{h}:{p}"),
                (Some(h), None) => h.to_owned(),
                _ => return false,
            };
            h.eq_ignore_ascii_case(host)
                || host
                    .rsplit_once(':')
                    .is_some_and(|(hh, _)| u.port().is_none() && hh.eq_ignore_ascii_case(&h))
        }
        None => false,
    }
}

impl Ui {
    pub(crate) fn new(cfg: &crate::config::Config) -> Self {
        Self {
            state_dir: cfg.state.dir.clone(),
            ttl: cfg.ui.session_ttl.0,
            keys: OnceLock::new(),
            blob_bytes: std::sync::Mutex::new(None),
        }
    }

    fn keys(&self) -> Result<&Keys, &str> {
        self.keys
            .get_or_init(|| Keys::load(&self.state_dir, self.ttl))
            .as_ref()
            .map_err(|e| e.as_str())
    }

    /// Answers one UI request.
    pub(crate) async fn handle(
        &self,
        v: &View<'_>,
        req: &http::request::Parts,
        body: &mut dyn RequestBody,
    ) -> Answer {
        let path = req.uri.path();
        if path == "/" {
            return Answer::Page(redirect("/ui/", None));
        }
        if path == "/ui" {
            return Answer::Page(redirect("/ui/", None));
        }
        if path == "/favicon.ico" {
            // Browsers ask on every page that names no icon (the plain-text refusals).
            let mut r = respond(StatusCode::NO_CONTENT, "image/x-icon", "");
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            );
            return Answer::Page(r);
        }
        let (css, js) = asset_paths();
        if path == css {
            return Answer::Page(asset("text/css; charset=utf-8", CSS));
        }
        if path == js {
            return Answer::Page(asset("text/javascript; charset=utf-8", JS));
        }
        let keys = match self.keys() {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(error = %e, "ui: no session key");
                return Answer::Page(respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain; charset=utf-8",
                    "the UI cannot keep logins: state.dir is not writable (see the log)",
                ));
            }
        };
        let session = cookie(req).and_then(|c| keys.verify(&c));
        let csrf = session.as_ref().map(|s| keys.csrf(s)).unwrap_or_default();
        let r = Req {
            v,
            session,
            csrf,
            query: url::form_urlencoded::parse(req.uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        };
        if req.method == http::Method::POST {
            if !same_origin(req) {
                return Answer::Page(forbidden(
                    "a form of another site may not change anything here",
                ));
            }
            let f = form(body).await;
            return match path {
                "/ui/login" => Answer::Page(self.login(keys, &r, &f, v).await),
                "/ui/logout" => match &r.session {
                    Some(s) if keys.csrf_ok(s, field(&f, "csrf").unwrap_or("")) => {
                        Answer::Page(redirect("/ui/", Some(clear_cookie(v.tls))))
                    }
                    _ => Answer::Page(forbidden("the form has expired: reload the page")),
                },
                "/ui/delete" => delete(keys, &r, &f),
                _ => Answer::Page(r.not_found()),
            };
        }
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            return Answer::Page(respond(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain; charset=utf-8",
                "GET or POST",
            ));
        }
        Answer::Page(match path {
            "/ui/" => repositories(&r, self).await,
            "/ui/login" => login_form(&r, None),
            p if p.starts_with("/ui/r/") => match p["/ui/r/".len()..].parse::<RepositoryName>() {
                Ok(n) => repository(&r, &n).await,
                Err(_) => r.not_found(),
            },
            p if p.starts_with("/ui/m/") => {
                let rest = &p["/ui/m/".len()..];
                match rest
                    .split_once('@')
                    .map(|(n, d)| (n.parse::<RepositoryName>(), d.parse::<Digest>()))
                {
                    Some((Ok(n), Ok(d))) => manifest(&r, &n, &d).await,
                    _ => r.not_found(),
                }
            }
            _ => r.not_found(),
        })
    }

    async fn login(
        &self,
        keys: &Keys,
        r: &Req<'_>,
        f: &[(String, String)],
        v: &View<'_>,
    ) -> Response<Body> {
        let Some(auth) = v.auth else {
            return redirect("/ui/", None);
        };
        let (user, pass) = (
            field(f, "username").unwrap_or(""),
            field(f, "password").unwrap_or(""),
        );
        use base64::Engine as _;
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        );
        match auth.authenticate(Some(&basic), v.secure, v.client).await {
            Ok(Some(u)) => {
                let value = keys.issue(&u);
                let c = format!(
                    "{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{}",
                    keys.ttl().as_secs(),
                    if v.tls { "; Secure" } else { "" }
                );
                tracing::info!(user = %u, "ui: logged in");
                redirect("/ui/", Some(c))
            }
            Ok(None) | Err(crate::auth::Refusal::BadCredentials) => {
                let mut p = login_form(r, Some("Wrong user name or password."));
                *p.status_mut() = StatusCode::UNAUTHORIZED;
                p
            }
            Err(crate::auth::Refusal::Plaintext) => {
                let mut p = login_form(r, Some(crate::auth::gate::PLAINTEXT_REFUSED));
                *p.status_mut() = StatusCode::FORBIDDEN;
                p
            }
            Err(crate::auth::Refusal::TooMany(secs)) => {
                let mut p = login_form(
                    r,
                    Some(&format!("Too many failed logins: try again in {secs} s.")),
                );
                *p.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                p
            }
        }
    }
}

fn asset(content_type: &'static str, text: &'static str) -> Response<Body> {
    let mut r = respond(StatusCode::OK, content_type, text);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    r
}

fn forbidden(why: &str) -> Response<Body> {
    let mut r = respond(
        StatusCode::FORBIDDEN,
        "text/plain; charset=utf-8",
        format!("{why}\n"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn cookie(req: &http::request::Parts) -> Option<String> {
    req.headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

fn clear_cookie(tls: bool) -> String {
    format!(
        "{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if tls { "; Secure" } else { "" }
    )
}

fn login_form(r: &Req<'_>, error: Option<&str>) -> Response<Body> {
    let e = error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, esc(e)))
        .unwrap_or_default();
    r.page(
        "Log in",
        &format!(
            r#"<h1>Log in</h1>{e}<form method="post" action="/ui/login" class="login">
<label for="username">User name</label><input id="username" name="username" autocomplete="username" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button></form>"#
        ),
    )
}

fn delete(keys: &Keys, r: &Req<'_>, f: &[(String, String)]) -> Answer {
    let ok = match &r.session {
        Some(s) => keys.csrf_ok(s, field(f, "csrf").unwrap_or("")),
        // Without access control there are no sessions; the same-origin check stands.
        None => r.v.auth.is_none(),
    };
    if !ok {
        return Answer::Page(forbidden("the form has expired: reload the page"));
    }
    let Some(repo) = field(f, "repo").and_then(|n| n.parse::<RepositoryName>().ok()) else {
        return Answer::Page(r.not_found());
    };
    if !r.can(repo.as_str(), Action::Pull) {
        return Answer::Page(r.not_found());
    }
    if let Some(why) = r.delete_blocked(repo.as_str()) {
        return Answer::Page(forbidden(why));
    }
    let (what, back) = if let Some(t) = field(f, "tag").and_then(|t| t.parse::<Tag>().ok()) {
        (Deletion::Tag(t), format!("/ui/r/{repo}"))
    } else if let Some(d) = field(f, "digest").and_then(|d| d.parse::<Digest>().ok()) {
        (Deletion::Manifest(d), format!("/ui/r/{repo}"))
    } else if field(f, "repository").is_some() {
        (Deletion::Repository, "/ui/".to_owned())
    } else {
        return Answer::Page(forbidden("nothing to delete was named"));
    };
    Answer::Delete {
        user: r.user().map(str::to_owned),
        repo,
        what,
        back,
    }
}

/// The repositories page: searchable, paginated, only what the caller may pull.
async fn repositories(r: &Req<'_>, ui: &Ui) -> Response<Body> {
    let all = match r.v.store.repositories().await {
        Ok(a) => a,
        Err(e) => return r.error(e),
    };
    let q = r.param("q").unwrap_or("").trim().to_lowercase();
    let visible: Vec<&RepositoryName> = all
        .iter()
        .filter(|n| r.can(n.as_str(), Action::Pull))
        .filter(|n| q.is_empty() || n.as_str().contains(&q))
        .collect();
    let (page, pages) = r.page_of(visible.len());
    let mut rows = String::new();
    for n in visible.iter().skip((page - 1) * PAGE).take(PAGE) {
        let tags = match r.v.store.tags(n).await {
            Ok(t) => t.map(|t| t.len()).unwrap_or(0),
            Err(e) => return r.error(e),
        };
        let _ = write!(
            rows,
            r#"<tr><td><a href="/ui/r/{}">{}</a></td><td class="num">{tags}</td></tr>"#,
            esc(n.as_str()),
            esc(n.as_str())
        );
    }
    let mut body = format!(
        r#"<h1>Repositories</h1><form method="get" action="/ui/" class="search" role="search"><label for="q">Search</label><input id="q" name="q" value="{}" type="search" placeholder="name contains"><button type="submit">Search</button></form>"#,
        esc(&q)
    );
    if visible.is_empty() {
        body.push_str(if r.user().is_none() && r.v.auth.is_some() {
            r#"<p>Nothing to show to anonymous visitors. <a href="/ui/login">Log in</a> to see your repositories.</p>"#
        } else {
            "<p>No repositories yet. Push an image to see it here.</p>"
        });
    } else {
        let _ = write!(
            body,
            r#"<p class="meta">{} repositories</p><table><thead><tr><th scope="col">Repository</th><th scope="col" class="num">Tags</th></tr></thead><tbody>{rows}</tbody></table>"#,
            visible.len()
        );
        let qs = if q.is_empty() {
            String::new()
        } else {
            format!("&q={}", url_part(&q))
        };
        body.push_str(&pager("/ui/", page, pages, &qs));
    }
    let admin = match r.v.auth {
        None => true,
        Some(a) => a.reads_everything(r.user()),
    };
    if admin {
        body.push_str(&overview(r, ui).await);
    }
    r.page("Repositories", &body)
}

/// For admins: the store's blob bytes, the last garbage collection and what it freed, and
/// the served certificate's expiry.
async fn overview(r: &Req<'_>, ui: &Ui) -> String {
    let cached = *ui.blob_bytes.lock().unwrap_or_else(|p| p.into_inner());
    let bytes = match cached {
        Some((at, b)) if at.elapsed() < BLOB_BYTES_TTL => Some(b),
        _ => match r.v.store.blob_bytes().await {
            Ok(b) => {
                *ui.blob_bytes.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((std::time::Instant::now(), b));
                Some(b)
            }
            Err(_) => None,
        },
    };
    let mut s = r#"<section class="overview"><h2>Storage</h2><ul>"#.to_owned();
    if let Some(b) = bytes {
        let _ = write!(s, "<li>{} of blobs in the store.</li>", size(b));
    }
    match r.v.store.last_gc().await {
        Ok(Some((at, text))) => {
            let _ = write!(
                s,
                "<li>Last garbage collection finished {}{}.</li>",
                esc(&crate::timestamp::seconds(at)),
                if text.is_empty() {
                    String::new()
                } else {
                    format!(": {}", esc(&text))
                }
            );
        }
        Ok(None) => s.push_str("<li>No garbage collection has run on this store yet.</li>"),
        Err(_) => {}
    }
    if let Some(end) = r.v.cert_not_after {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(end.max(0) as u64);
        let _ = write!(
            s,
            "<li>The served certificate expires {} (in {} days).</li>",
            esc(&crate::timestamp::seconds(at)),
            (end - now).div_euclid(86_400)
        );
    }
    s.push_str("</ul></section>");
    s
}

/// Previous / page N of M / Next links (nothing for one page); `qs` is the rest of the
/// query, `&`-prefixed.
fn pager(path: &str, page: usize, pages: usize, qs: &str) -> String {
    if pages <= 1 {
        return String::new();
    }
    let mut s = r#"<nav class="pages" aria-label="pages">"#.to_owned();
    let link = |p: usize, rel: &str, label: &str| {
        format!(
            r#"<a href="{}?page={p}{}" rel="{rel}">{label}</a>"#,
            esc(path),
            esc(qs)
        )
    };
    if page > 1 {
        s.push_str(&link(page - 1, "prev", "Previous"));
    }
    let _ = write!(s, " <span>page {page} of {pages}</span> ");
    if page < pages {
        s.push_str(&link(page + 1, "next", "Next"));
    }
    s.push_str("</nav>");
    s
}

/// A manifest's kind and total size, from its JSON.
struct Summary {
    media_type: String,
    size: u64,
    platforms: Vec<(String, String)>,
}

fn summarize(bytes: &[u8]) -> Summary {
    let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let n = |d: &Value| d["size"].as_u64().unwrap_or(0);
    let mut s = Summary {
        media_type: v["mediaType"]
            .as_str()
            .unwrap_or("application/vnd.oci.image.manifest.v1+json")
            .to_owned(),
        size: bytes.len() as u64,
        platforms: Vec::new(),
    };
    if let Some(children) = v["manifests"].as_array() {
        for c in children {
            let p = &c["platform"];
            let mut name = format!(
                "{}/{}",
                p["os"].as_str().unwrap_or("?"),
                p["architecture"].as_str().unwrap_or("?")
            );
            if let Some(var) = p["variant"].as_str() {
                name.push('/');
                name.push_str(var);
            }
            s.platforms
                .push((name, c["digest"].as_str().unwrap_or("").to_owned()));
            s.size += n(c);
        }
    } else {
        s.size += n(&v["config"]);
        for l in v["layers"].as_array().into_iter().flatten() {
            s.size += n(l);
        }
    }
    s
}

/// A repository's page: its tags, with digest, type, size and platforms.
async fn repository(r: &Req<'_>, n: &RepositoryName) -> Response<Body> {
    if !r.can(n.as_str(), Action::Pull) {
        return r.not_found();
    }
    let tags = match r.v.store.tags(n).await {
        Ok(Some(t)) => t,
        Ok(None) => Vec::new(),
        Err(e) => return r.error(e),
    };
    let q = r.param("q").unwrap_or("").trim().to_owned();
    let by_size = r.param("sort") == Some("size");
    let shown: Vec<&Tag> = tags
        .iter()
        .filter(|t| q.is_empty() || t.as_str().contains(&q))
        .collect();
    let (page, pages) = r.page_of(shown.len());
    // By name, only this page's manifests are read; by size, all of them (to sort).
    let wanted: Vec<&Tag> = if by_size {
        shown.clone()
    } else {
        shown
            .iter()
            .skip((page - 1) * PAGE)
            .take(PAGE)
            .copied()
            .collect()
    };
    let mut rows: Vec<(Tag, Digest, Summary)> = Vec::new();
    // FETCHES manifests at once: each is a read of the store.
    for batch in wanted.chunks(FETCHES) {
        let refs: Vec<Reference> = batch.iter().map(|t| Reference::Tag((*t).clone())).collect();
        let fetched =
            futures_util::future::join_all(refs.iter().map(|rf| r.v.store.manifest_fetch(n, rf)))
                .await;
        for (t, f) in batch.iter().zip(fetched) {
            match f {
                Ok(Some((d, bytes))) => rows.push(((*t).clone(), d, summarize(&bytes))),
                Ok(None) => {}
                Err(e) => return r.error(e),
            }
        }
    }
    if tags.is_empty()
        && r.v
            .store
            .repositories()
            .await
            .map(|a| !a.contains(n))
            .unwrap_or(true)
    {
        return r.not_found();
    }
    if by_size {
        rows.sort_by_key(|r| std::cmp::Reverse(r.2.size));
        rows = rows
            .into_iter()
            .skip((page - 1) * PAGE)
            .take(PAGE)
            .collect();
    }
    let mut body = format!(
        r#"<p class="crumbs"><a href="/ui/">Repositories</a> /</p><h1>{}</h1>{}"#,
        esc(n.as_str()),
        r.copy("Pull", &format!("docker pull {}/{}", r.v.registry, n))
    );
    let _ = write!(
        body,
        r#"<form method="get" action="/ui/r/{}" class="search"><label for="q">Filter tags</label><input id="q" name="q" value="{}" type="search"><label for="sort">Sort</label><select id="sort" name="sort"><option value="name">by name</option><option value="size"{}>by size</option></select><button type="submit">Apply</button></form>"#,
        esc(n.as_str()),
        esc(&q),
        if r.param("sort") == Some("size") {
            " selected"
        } else {
            ""
        }
    );
    if rows.is_empty() {
        body.push_str("<p>No tags.</p>");
    } else {
        let _ = write!(
            body,
            r#"<table><thead><tr><th scope="col">Tag</th><th scope="col">Digest</th><th scope="col">Type</th><th scope="col" class="num">Size</th><th scope="col">Platforms</th><th scope="col"><span class="sr">Actions</span></th></tr></thead><tbody>"#
        );
        for (t, d, s) in &rows {
            let platforms: Vec<String> = s
                .platforms
                .iter()
                .map(|(p, cd)| {
                    format!(
                        r#"<a href="/ui/m/{}@{}">{}</a>"#,
                        esc(n.as_str()),
                        esc(cd),
                        esc(p)
                    )
                })
                .collect();
            let _ = write!(
                body,
                r#"<tr><td><a href="/ui/m/{}@{}">{}</a></td><td><code class="digest" title="{}">{}</code></td><td>{}</td><td class="num">{}</td><td>{}</td><td>{}</td></tr>"#,
                esc(n.as_str()),
                esc(&d.to_string()),
                esc(t.as_str()),
                esc(&d.to_string()),
                esc(&d.hex()[..12]),
                esc(short_type(&s.media_type)),
                size(s.size),
                platforms.join(" "),
                r.delete_form(n.as_str(), "tag", t.as_str(), "Delete tag")
            );
        }
        body.push_str("</tbody></table>");
        let mut qs = String::new();
        if !q.is_empty() {
            let _ = write!(qs, "&q={}", url_part(&q));
        }
        if by_size {
            qs.push_str("&sort=size");
        }
        let _ = write!(body, r#"<p class="meta">{} tags</p>"#, shown.len());
        body.push_str(&pager(&format!("/ui/r/{n}"), page, pages, &qs));
    }
    let _ = write!(
        body,
        r#"<section class="danger-zone"><h2>Repository</h2>{}</section>"#,
        r.delete_form(n.as_str(), "repository", n.as_str(), "Delete repository")
    );
    r.page(n.as_str(), &body)
}

fn short_type(mt: &str) -> &str {
    match mt {
        "application/vnd.oci.image.index.v1+json" => "OCI index",
        "application/vnd.oci.image.manifest.v1+json" => "OCI image",
        "application/vnd.docker.distribution.manifest.list.v2+json" => "Docker list",
        "application/vnd.docker.distribution.manifest.v2+json" => "Docker image",
        other => other,
    }
}

async fn read_blob(r: &Req<'_>, n: &RepositoryName, d: &Digest) -> Option<Vec<u8>> {
    let (len, src) = r.v.store.blob_open(n, d).await.ok()??;
    if len > CONFIG_MAX {
        return None;
    }
    let mut stream = match src {
        BlobSource::File(f) => f.slice(0, len).into_stream(),
        BlobSource::Stream(open) => open(0, len),
        BlobSource::Redirect(_) => return None,
    };
    let mut out = Vec::with_capacity(len as usize);
    while let Some(c) = crate::body::next_chunk(&mut stream).await {
        out.extend_from_slice(&c.ok()?);
    }
    Some(out)
}

fn kv_table(title: &str, rows: &[(String, String)]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let mut s = format!(r#"<h2>{}</h2><table class="kv"><tbody>"#, esc(title));
    for (k, v) in rows {
        let _ = write!(
            s,
            "<tr><th scope=\"row\">{}</th><td>{}</td></tr>",
            esc(k),
            esc(v)
        );
    }
    s.push_str("</tbody></table>");
    s
}

fn strings(v: &Value) -> String {
    match v.as_array() {
        Some(a) => a
            .iter()
            .map(|x| x.as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
            .join(" "),
        None => String::new(),
    }
}

/// A manifest's page: config, layers, platforms, annotations, referrers, raw JSON.
async fn manifest(r: &Req<'_>, n: &RepositoryName, d: &Digest) -> Response<Body> {
    if !r.can(n.as_str(), Action::Pull) {
        return r.not_found();
    }
    let bytes = match r
        .v
        .store
        .manifest_fetch(n, &Reference::Digest(d.clone()))
        .await
    {
        Ok(Some((_, b))) => b,
        Ok(None) => return r.not_found(),
        Err(e) => return r.error(e),
    };
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let s = summarize(&bytes);
    let reference = format!("{}/{}@{}", r.v.registry, n, d);
    let mut body = format!(
        r#"<p class="crumbs"><a href="/ui/">Repositories</a> / <a href="/ui/r/{}">{}</a> /</p><h1><code class="digest">{}</code></h1><p class="meta">{} · {}</p>"#,
        esc(n.as_str()),
        esc(n.as_str()),
        esc(&d.to_string()),
        esc(short_type(&s.media_type)),
        size(s.size)
    );
    body.push_str(&r.copy("docker", &format!("docker pull {reference}")));
    body.push_str(&r.copy("podman", &format!("podman pull {reference}")));
    body.push_str(&r.copy("skopeo", &format!("skopeo inspect docker://{reference}")));
    if !s.platforms.is_empty() {
        body.push_str(r#"<h2>Platforms</h2><ul class="platforms">"#);
        for (p, cd) in &s.platforms {
            let _ = write!(
                body,
                r#"<li><a href="/ui/m/{}@{}">{}</a> <code class="digest">{}</code></li>"#,
                esc(n.as_str()),
                esc(cd),
                esc(p),
                esc(cd)
            );
        }
        body.push_str("</ul>");
    }
    if let Some(cd) = v["config"]["digest"]
        .as_str()
        .and_then(|c| c.parse::<Digest>().ok())
    {
        if let Some(cfg) = read_blob(r, n, &cd).await {
            let c: Value = serde_json::from_slice(&cfg).unwrap_or(Value::Null);
            let mut rows = Vec::new();
            for (k, val) in [
                (
                    "Created",
                    c["created"].as_str().unwrap_or_default().to_owned(),
                ),
                (
                    "Platform",
                    format!(
                        "{}/{}",
                        c["os"].as_str().unwrap_or("?"),
                        c["architecture"].as_str().unwrap_or("?")
                    ),
                ),
                ("Entrypoint", strings(&c["config"]["Entrypoint"])),
                ("Cmd", strings(&c["config"]["Cmd"])),
                (
                    "Working dir",
                    c["config"]["WorkingDir"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                ),
                (
                    "User",
                    c["config"]["User"].as_str().unwrap_or_default().to_owned(),
                ),
            ] {
                if !val.is_empty() && val != "?/?" {
                    rows.push((k.to_owned(), val));
                }
            }
            for e in c["config"]["Env"].as_array().into_iter().flatten() {
                rows.push(("Env".to_owned(), e.as_str().unwrap_or_default().to_owned()));
            }
            body.push_str(&kv_table("Config", &rows));
            let labels: Vec<(String, String)> = c["config"]["Labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            body.push_str(&kv_table("Labels", &labels));
            let history: Vec<(String, String)> = c["history"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|h| {
                    (
                        h["created"].as_str().unwrap_or_default().to_owned(),
                        h["created_by"]
                            .as_str()
                            .or(h["comment"].as_str())
                            .unwrap_or_default()
                            .to_owned(),
                    )
                })
                .collect();
            body.push_str(&kv_table("History", &history));
        }
    }
    if let Some(layers) = v["layers"].as_array() {
        body.push_str(r#"<h2>Layers</h2><table><thead><tr><th scope="col">#</th><th scope="col">Digest</th><th scope="col">Media type</th><th scope="col" class="num">Size</th></tr></thead><tbody>"#);
        for (i, l) in layers.iter().enumerate() {
            let urls = strings(&l["urls"]);
            let foreign = if urls.is_empty() {
                String::new()
            } else {
                format!(r#" <span class="tag">foreign: {}</span>"#, esc(&urls))
            };
            let _ = write!(
                body,
                r#"<tr><td>{}</td><td><code class="digest">{}</code></td><td>{}{foreign}</td><td class="num">{}</td></tr>"#,
                i + 1,
                esc(l["digest"].as_str().unwrap_or_default()),
                esc(l["mediaType"].as_str().unwrap_or_default()),
                size(l["size"].as_u64().unwrap_or(0))
            );
        }
        body.push_str("</tbody></table>");
    }
    let annotations: Vec<(String, String)> = v["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    body.push_str(&kv_table("Annotations", &annotations));
    if let Some(sub) = v["subject"]["digest"].as_str() {
        let _ = write!(
            body,
            r#"<h2>Subject</h2><p><a href="/ui/m/{}@{}"><code class="digest">{}</code></a></p>"#,
            esc(n.as_str()),
            esc(sub),
            esc(sub)
        );
    }
    match r.v.store.referrers(n, d).await {
        Ok(refs) if !refs.is_empty() => {
            body.push_str(r#"<h2>Referrers</h2><table><thead><tr><th scope="col">Digest</th><th scope="col">Artifact type</th></tr></thead><tbody>"#);
            for rd in refs {
                let at = match r
                    .v
                    .store
                    .manifest_fetch(n, &Reference::Digest(rd.clone()))
                    .await
                {
                    Ok(Some((_, b))) => {
                        let rv: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
                        rv["artifactType"]
                            .as_str()
                            .or(rv["config"]["mediaType"].as_str())
                            .unwrap_or_default()
                            .to_owned()
                    }
                    _ => String::new(),
                };
                let _ = write!(
                    body,
                    r#"<tr><td><a href="/ui/m/{}@{}"><code class="digest">{}</code></a></td><td>{}</td></tr>"#,
                    esc(n.as_str()),
                    esc(&rd.to_string()),
                    esc(&rd.to_string()),
                    esc(&at)
                );
            }
            body.push_str("</tbody></table>");
        }
        Ok(_) => {}
        Err(e) => return r.error(e),
    }
    let pretty = serde_json::to_string_pretty(&v).unwrap_or_default();
    let _ = write!(
        body,
        r#"<details><summary>Raw manifest</summary><pre class="raw">{}</pre></details><section class="danger-zone"><h2>Manifest</h2>{}</section>"#,
        esc(&pretty),
        r.delete_form(n.as_str(), "digest", &d.to_string(), "Delete manifest")
    );
    r.page(&format!("{n}@{}", &d.hex()[..12]), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_link_to_their_neighbours_only() {
        assert_eq!(pager("/ui/", 1, 1, ""), "");
        let p = pager("/ui/r/a/b", 2, 3, "&q=x");
        assert!(
            p.contains(r#"href="/ui/r/a/b?page=1&amp;q=x" rel="prev""#),
            "{p}"
        );
        assert!(
            p.contains(r#"href="/ui/r/a/b?page=3&amp;q=x" rel="next""#),
            "{p}"
        );
        assert!(!pager("/ui/", 3, 3, "").contains("next"));
    }

    #[test]
    fn text_is_escaped_for_html() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn posts_must_come_from_this_origin() {
        let req = |origin: Option<&str>| {
            let mut b = http::Request::builder()
                .method("POST")
                .uri("/ui/delete")
                .header("Host", "reg.lan:5000");
            if let Some(o) = origin {
                b = b.header("Origin", o);
            }
            b.body(()).expect("request").into_parts().0
        };
        assert!(same_origin(&req(Some("http://reg.lan:5000"))));
        assert!(!same_origin(&req(Some("http://evil.example"))));
        assert!(!same_origin(&req(Some("http://reg.lan:5001"))));
        assert!(!same_origin(&req(None)));
    }

    #[test]
    fn a_summary_adds_up_an_image_and_lists_an_index_platforms() {
        let img = br#"{"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"size":10},"layers":[{"size":100},{"size":1000}]}"#;
        let s = summarize(img);
        assert_eq!(s.size, img.len() as u64 + 1110);
        let idx = br#"{"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":"sha256:a","size":5,"platform":{"os":"linux","architecture":"arm64","variant":"v8"}}]}"#;
        let s = summarize(idx);
        assert_eq!(
            s.platforms,
            vec![("linux/arm64/v8".to_owned(), "sha256:a".to_owned())]
        );
    }
}
