//! Small docker-run rules `strata run` needs besides [`crate::container_args`]:
//! `-v HOST:CTR[:ro]` and `-e K[=V]` over the image's environment.

use std::path::PathBuf;

use crate::spec::Mount;

/// `-v` / `--volume` as docker reads a bind: `HOST:CTR`, `HOST:CTR:ro`,
/// `HOST:CTR:rw`. The host path must be absolute (docker's named volumes are
/// not supported), the container path absolute.
///
/// ```
/// let m = strata_sandbox::parse_volume("/srv/data:/data:ro").unwrap();
/// assert_eq!(m, strata_sandbox::Mount::bind("/srv/data", "/data", true));
/// ```
pub fn parse_volume(spec: &str) -> Result<Mount, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, ctr, mode) = match parts.as_slice() {
        [h, c] => (*h, *c, ""),
        [h, c, m] => (*h, *c, *m),
        _ => {
            return Err(format!(
                "invalid volume {spec:?}: expected HOST:CONTAINER[:ro|rw]"
            ))
        }
    };
    if !host.starts_with('/') {
        return Err(format!(
            "invalid volume {spec:?}: the host path must be absolute (named volumes are not supported)"
        ));
    }
    if !ctr.starts_with('/') {
        return Err(format!(
            "invalid volume {spec:?}: the container path must be absolute"
        ));
    }
    let mut readonly = false;
    for opt in mode.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => readonly = true,
            "rw" => readonly = false,
            o => return Err(format!("invalid volume {spec:?}: unknown option {o:?}")),
        }
    }
    Ok(Mount::bind(PathBuf::from(host), ctr, readonly))
}

/// The environment of a container: the image's `base` entries, overridden
/// by `overrides` (`-e K=V`; `-e K` takes K from `host`, and drops it when
/// the host has no K), keys compared exactly, image order kept, new keys
/// appended; then `HOME=home` when still unset and docker's default `PATH`
/// (first) when the result has none, as docker does.
///
/// ```
/// let env = strata_sandbox::merge_env(
///     &["PATH=/bin".into(), "A=1".into()],
///     &["A=2".into(), "B".into()],
///     |k| (k == "B").then(|| "from-host".to_string()),
///     "/root",
/// );
/// assert_eq!(env, ["PATH=/bin", "A=2", "B=from-host", "HOME=/root"]);
/// ```
pub fn merge_env(
    base: &[String],
    overrides: &[String],
    host: impl Fn(&str) -> Option<String>,
    home: &str,
) -> Vec<String> {
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
    let mut env: Vec<String> = base.to_vec();
    for o in overrides {
        let k = key(o);
        let value = if o.contains('=') {
            Some(o.clone())
        } else {
            host(&k).map(|v| format!("{k}={v}"))
        };
        let pos = env.iter().position(|e| key(e) == k);
        match (pos, value) {
            (Some(i), Some(v)) => env[i] = v,
            (None, Some(v)) => env.push(v),
            (Some(i), None) => {
                env.remove(i);
            }
            (None, None) => {}
        }
    }
    if !env.iter().any(|e| key(e) == "HOME") {
        env.push(format!("HOME={home}"));
    }
    // An image without PATH (one made by `import`) still finds its
    // programs: docker's daemon puts its default PATH in first.
    if !env.iter().any(|e| key(e) == "PATH") {
        env.insert(0, crate::DEFAULT_PATH_ENV.to_string());
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DEFAULT_PATH_ENV;

    #[test]
    fn volumes() {
        assert_eq!(
            parse_volume("/a:/b").unwrap(),
            Mount::bind("/a", "/b", false)
        );
        assert_eq!(
            parse_volume("/a:/b:rw").unwrap(),
            Mount::bind("/a", "/b", false)
        );
        assert_eq!(
            parse_volume("/a:/b:ro").unwrap(),
            Mount::bind("/a", "/b", true)
        );
        for bad in ["a:/b", "/a:b", "/a", "/a:/b:rx", "/a:/b:ro:x", "vol:/data"] {
            assert!(parse_volume(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_rules() {
        let base: Vec<String> = vec![
            "PATH=/usr/bin".into(),
            "X=1".into(),
            "HOME=/home/app".into(),
        ];
        let got = merge_env(
            &base,
            &["X=2".into(), "Y=".into(), "Z".into(), "PATH".into()],
            |_| None,
            "/root",
        );
        assert_eq!(got, [DEFAULT_PATH_ENV, "X=2", "HOME=/home/app", "Y="]);
        let got = merge_env(&[], &[], |_| None, "/");
        assert_eq!(got, [DEFAULT_PATH_ENV, "HOME=/"]);
    }
}
