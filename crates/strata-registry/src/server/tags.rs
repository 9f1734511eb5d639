//! Listing endpoints: the catalog and tag lists (the repositories' own and
//! the store's tags), with `n`/`last` pagination.

use std::collections::HashMap;

use axum::response::Response;

use super::errcode::{err, json_response, storage, Code};
use super::routes::pct_encode;
use super::served::{self, Served};
use super::AppState;

pub(super) fn paginate(
    items: Vec<String>,
    q: &HashMap<String, String>,
    path: &str,
) -> (Vec<String>, Option<String>) {
    let mut items: Vec<String> = match q.get("last") {
        Some(last) if !last.is_empty() => items
            .into_iter()
            .filter(|t| t.as_str() > last.as_str())
            .collect(),
        _ => items,
    };
    let n = q.get("n").and_then(|n| n.parse::<usize>().ok());
    let mut link = None;
    if let Some(n) = n {
        if items.len() > n {
            items.truncate(n);
            if let Some(last) = items.last() {
                link = Some(format!(
                    "<{path}?n={n}&last={}>; rel=\"next\"",
                    pct_encode(last)
                ));
            }
        }
    }
    (items, link)
}

pub(super) fn catalog(st: &AppState, q: &HashMap<String, String>) -> Response {
    let all = match served::catalog(&st.repos) {
        Ok(a) => a,
        Err(e) => return storage(st.repos.store(), e),
    };
    let (items, link) = paginate(all, q, "/v2/_catalog");
    json_response(
        serde_json::json!({ "repositories": items }),
        link,
        "application/json",
    )
}

pub(super) fn tags_list(st: &AppState, name: &str, q: &HashMap<String, String>) -> Response {
    let mut served = Served::new(&st.repos, name);
    match served.exists() {
        Ok(true) => {}
        Ok(false) => return err(Code::NameUnknown, format!("repository {name} is not known")),
        Err(e) => return storage(st.repos.store(), e),
    }
    let tags = match served.tags() {
        Ok(t) => t,
        Err(e) => return storage(st.repos.store(), e),
    };
    let (items, link) = paginate(tags, q, &format!("/v2/{name}/tags/list"));
    json_response(
        serde_json::json!({ "name": name, "tags": items }),
        link,
        "application/json",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination() {
        let items: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let q: HashMap<String, String> = [("n".to_owned(), "2".to_owned())].into();
        let (got, link) = paginate(items.clone(), &q, "/v2/x/tags/list");
        assert_eq!(got, ["a", "b"]);
        assert_eq!(
            link.as_deref(),
            Some("</v2/x/tags/list?n=2&last=b>; rel=\"next\"")
        );
        let q: HashMap<String, String> = [
            ("n".to_owned(), "2".to_owned()),
            ("last".to_owned(), "b".to_owned()),
        ]
        .into();
        let (got, link) = paginate(items, &q, "/v2/x/tags/list");
        assert_eq!(got, ["c", "d"]);
        assert_eq!(link, None);
    }
}
