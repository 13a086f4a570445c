//! What `berth export` is asked for: `repo`, `repo:tag`, `repo@digest`, or globs of
//! repositories and tags (`team-a/*`, `*:v1.*`), resolved against the store's catalog.

use crate::oci::{Digest, RepositoryName, Tag};
use regex::Regex;

/// One selector of the command line.
#[derive(Debug, Clone)]
pub struct Selector {
    text: String,
    repo: Pattern,
    what: Which,
}

#[derive(Debug, Clone)]
enum Pattern {
    Exact(RepositoryName),
    Glob(Regex),
}

#[derive(Debug, Clone)]
enum Which {
    /// Every tag (filtered by `--tag-regex`).
    AllTags,
    Tag(TagPattern),
    Digest(Digest),
}

/// A tag given exactly or as a glob.
#[derive(Debug, Clone)]
enum TagPattern {
    Exact(Tag),
    Glob(Regex),
}

/// What a selector resolved to in one repository.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Wanted {
    Tag(Tag),
    Digest(Digest),
}

fn glob(text: &str) -> Option<Regex> {
    if !text.contains(['*', '?']) {
        return None;
    }
    let re = regex::escape(text).replace(r"\*", ".*").replace(r"\?", ".");
    Regex::new(&format!("^{re}$")).ok()
}

impl std::str::FromStr for Selector {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: String| {
            format!("selector {s:?}: {why} (expected repo, repo:tag, repo@digest or a glob such as team-a/* or *:v1.*)")
        };
        let (repo, what) = if let Some((r, d)) = s.split_once('@') {
            let d: Digest = d.parse().map_err(|e| bad(format!("{e}")))?;
            (r, Which::Digest(d))
        } else {
            match s.rsplit_once(':') {
                Some((r, t)) if !t.contains('/') => {
                    let t = match glob(t) {
                        Some(g) => TagPattern::Glob(g),
                        None => TagPattern::Exact(t.parse().map_err(|e| bad(format!("{e}")))?),
                    };
                    (r, Which::Tag(t))
                }
                _ => (s, Which::AllTags),
            }
        };
        let repo = match glob(repo) {
            Some(g) => Pattern::Glob(g),
            None => Pattern::Exact(repo.parse().map_err(|e| bad(format!("{e}")))?),
        };
        Ok(Selector {
            text: s.to_owned(),
            repo,
            what,
        })
    }
}

impl Selector {
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// The repositories of `catalog` this selector names.
    pub(crate) fn repositories<'a>(
        &self,
        catalog: &'a [RepositoryName],
    ) -> Vec<&'a RepositoryName> {
        catalog
            .iter()
            .filter(|r| match &self.repo {
                Pattern::Exact(e) => e == *r,
                Pattern::Glob(g) => g.is_match(r.as_str()),
            })
            .collect()
    }

    /// What it wants of a repository whose tags are `tags`; `tag_regex` narrows a
    /// selection of tags.
    pub(crate) fn wanted(&self, tags: &[Tag], tag_regex: Option<&Regex>) -> Vec<Wanted> {
        let keep = |t: &Tag| tag_regex.is_none_or(|re| re.is_match(t.as_str()));
        match &self.what {
            Which::Digest(d) => vec![Wanted::Digest(d.clone())],
            Which::AllTags => tags
                .iter()
                .filter(|t| keep(t))
                .cloned()
                .map(Wanted::Tag)
                .collect(),
            Which::Tag(TagPattern::Exact(t)) => vec![Wanted::Tag(t.clone())],
            Which::Tag(TagPattern::Glob(g)) => tags
                .iter()
                .filter(|t| g.is_match(t.as_str()) && keep(t))
                .cloned()
                .map(Wanted::Tag)
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<RepositoryName> {
        v.iter().map(|s| s.parse().expect("name")).collect()
    }
    fn tags(v: &[&str]) -> Vec<Tag> {
        v.iter().map(|s| s.parse().expect("tag")).collect()
    }

    #[test]
    fn selectors_name_repositories_tags_and_digests() {
        let cat = names(&["team-a/web", "team-a/db", "team-b/web", "solo"]);
        let s: Selector = "team-a/*".parse().expect("glob");
        let got: Vec<_> = s.repositories(&cat).iter().map(|r| r.as_str()).collect();
        assert_eq!(got, ["team-a/web", "team-a/db"]);
        let s: Selector = "*:v1.*".parse().expect("tag glob");
        assert_eq!(s.repositories(&cat).len(), 4);
        let t = tags(&["v1.0", "v1.1", "v2.0", "latest"]);
        assert_eq!(
            s.wanted(&t, None),
            tags(&["v1.0", "v1.1"])
                .into_iter()
                .map(Wanted::Tag)
                .collect::<Vec<_>>()
        );
        let s: Selector = "solo".parse().expect("repo");
        let re = Regex::new("^v2").expect("re");
        assert_eq!(
            s.wanted(&t, Some(&re)),
            vec![Wanted::Tag(tags(&["v2.0"])[0].clone())]
        );
        assert_eq!(s.repositories(&cat).len(), 1);
        let d = format!("sha256:{}", "a".repeat(64));
        let s: Selector = format!("solo@{d}").parse().expect("digest");
        assert_eq!(
            s.wanted(&t, None),
            vec![Wanted::Digest(d.parse().expect("d"))]
        );
        let s: Selector = "solo:latest".parse().expect("tag");
        assert_eq!(
            s.wanted(&[], None),
            vec![Wanted::Tag(tags(&["latest"])[0].clone())]
        );
    }

    #[test]
    fn bad_selectors_say_what_is_expected() {
        for bad in ["Upper/Case", "solo@sha256:zz", "solo:bad tag", ""] {
            let e = bad.parse::<Selector>().expect_err(bad);
            assert!(e.contains("expected repo, repo:tag"), "{bad}: {e}");
        }
    }
}
