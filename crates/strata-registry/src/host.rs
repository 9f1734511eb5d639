//! Registry host names as users write them and as references spell them:
//! Docker Hub's aliases (`index.docker.io`, `registry-1.docker.io`) are all
//! `docker.io`, whose API is served by `registry-1.docker.io`.

/// The name references use for Docker Hub.
pub(crate) const DOCKER_HUB: &str = "docker.io";

/// Whether `host` is one of Docker Hub's names.
pub(crate) fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// The registry a user named (`strata login https://index.docker.io/v1/`,
/// `localhost:5000/`) as references spell it: no scheme, no path, Docker
/// Hub's aliases folded into `docker.io`.
pub fn registry_host(input: &str) -> String {
    let r = input
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let r = r.split('/').next().unwrap_or(r);
    if is_docker_hub(r) {
        DOCKER_HUB.to_owned()
    } else {
        r.to_owned()
    }
}

/// The host that serves the API for a reference's domain.
pub(crate) fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        "registry-1.docker.io"
    } else {
        registry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for (input, want) in [
            ("docker.io", "docker.io"),
            ("index.docker.io", "docker.io"),
            ("https://index.docker.io/v1/", "docker.io"),
            ("registry-1.docker.io", "docker.io"),
            ("localhost:5000", "localhost:5000"),
            ("http://localhost:5000/", "localhost:5000"),
            ("reg.example/v2/", "reg.example"),
            ("[::1]:5000", "[::1]:5000"),
        ] {
            assert_eq!(registry_host(input), want, "{input}");
        }
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("ghcr.io"), "ghcr.io");
    }
}
