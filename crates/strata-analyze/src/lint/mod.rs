//! Static checks on a Dockerfile and its build context (`strata lint`).
