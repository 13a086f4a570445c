//! `GET /v2/_catalog` and `GET /v2/<name>/tags/list`, with `n`/`last` pagination and `Link`.

use super::*;

impl Registry {
    pub(super) async fn catalog(
        &self,
        q: &[(String, String)],
        caller: &Caller<'_>,
    ) -> Result<Response<Body>> {
        let names: Vec<String> = self
            .store
            .repositories()
            .await?
            .into_iter()
            .map(|n| n.to_string())
            .filter(|n| caller.lists(n))
            .collect();
        let (page, next) = self.paginate(names, q, crate::store::catalog_order)?;
        let link =
            next.map(|last| format!("</v2/_catalog?last={last}&n={}>; rel=\"next\"", page.len()));
        let body = serde_json::json!({ "repositories": page });
        Ok(with_link(
            json(StatusCode::OK, body.to_string().into()),
            link,
        ))
    }

    pub(super) async fn tags(
        &self,
        n: &RepositoryName,
        q: &[(String, String)],
    ) -> Result<Response<Body>> {
        let Some(tags) = self.store.tags(n).await? else {
            return Err(ApiError::name_unknown(n));
        };
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let (page, next) = self.paginate(tags, q, |a, b| a.cmp(b))?;
        let link = next.map(|last| {
            format!(
                "</v2/{n}/tags/list?last={last}&n={}>; rel=\"next\"",
                page.len()
            )
        });
        let body = serde_json::json!({ "name": n.as_str(), "tags": page });
        Ok(with_link(
            json(StatusCode::OK, body.to_string().into()),
            link,
        ))
    }

    /// One page of a list sorted by `order` after `last`, at most `n` (capped at the
    /// configured page size), and the `last` of the next page when there is one.
    pub(super) fn paginate(
        &self,
        all: Vec<String>,
        q: &[(String, String)],
        order: fn(&str, &str) -> std::cmp::Ordering,
    ) -> Result<(Vec<String>, Option<String>)> {
        let n = match param(q, "n") {
            None => self.page_max,
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| {
                    ApiError::pagination_invalid(format!("n={v:?} is not a non-negative number"))
                })?
                .min(self.page_max),
        };
        let last = param(q, "last");
        let mut rest: Vec<String> = all
            .into_iter()
            .filter(|x| last.is_none_or(|l| order(x, l) == std::cmp::Ordering::Greater))
            .collect();
        let more = rest.len() > n;
        rest.truncate(n);
        let next = if more { rest.last().cloned() } else { None };
        Ok((rest, next))
    }
}
