//! SBOM, provenance and signatures as OCI 1.1 referrers, driven through the
//! CLI as a user would: the image digest does not change, provenance is
//! reproducible, the SBOM matches dpkg-query and passes the official
//! validators, referrers travel through `strata serve`, and a tampered
//! signature fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

/// A dpkg database with three installed packages and one removed.
const STATUS: &str = "Package: base-files\nStatus: install ok installed\nVersion: 12.4+deb12u5\nArchitecture: amd64\nDescription: base\n\nPackage: libc6\nStatus: install ok installed\nVersion: 2.36-9+deb12u4\nArchitecture: amd64\nMulti-Arch: same\nDescription: libc\n\nPackage: old\nStatus: deinstall ok config-files\nVersion: 1.0\nArchitecture: amd64\nDescription: gone\n";
const STATUS2: &str = "Package: zlib1g\nStatus: install ok installed\nVersion: 1:1.2.13.dfsg-1\nArchitecture: amd64\nDescription: z\n";

const DOCKERFILE: &str = "FROM busybox\nCOPY status /var/lib/dpkg/status\nCOPY os-release /etc/os-release\nRUN cat /var/lib/dpkg/status /extra > /tmp/s && mv /tmp/s /var/lib/dpkg/status\nCOPY requirements.txt /app/\n";

fn files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Dockerfile", DOCKERFILE),
        ("status", STATUS),
        ("os-release", "ID=debian\n"),
        ("requirements.txt", "flask\n"),
    ]
}

fn manifest_digest(root: &Path, image: &str) -> String {
    inspect(root, image)["ManifestDigest"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn referrers(root: &Path, image: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(&ok(root, &["inspect", "--referrers", image])).unwrap();
    v[0]["Referrers"].as_array().unwrap().clone()
}

fn blob_of_referrer(root: &Path, referrer: &str) -> Vec<u8> {
    let hex = referrer.strip_prefix("sha256:").unwrap();
    let m: Value =
        serde_json::from_slice(&std::fs::read(root.join("blobs/sha256").join(hex)).unwrap())
            .unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap();
    std::fs::read(
        root.join("blobs/sha256")
            .join(layer.strip_prefix("sha256:").unwrap()),
    )
    .unwrap()
}

fn setup_with_extra() -> Option<Setup> {
    let mut f = files();
    f.push(("extra", ""));
    let s = setup(&f)?;
    // The RUN appends a second paragraph (zlib1g) from a file the image gets
    // through a COPY: written here so the RUN layer installs it.
    std::fs::write(s.ctx.join("extra"), format!("\n{STATUS2}")).unwrap();
    let df = DOCKERFILE.replace(
        "COPY os-release /etc/os-release\n",
        "COPY os-release /etc/os-release\nCOPY extra /extra\n",
    );
    std::fs::write(s.ctx.join("Dockerfile"), df).unwrap();
    Some(s)
}

#[test]
fn sbom_and_provenance_leave_the_image_digest_alone_and_are_reproducible() {
    let Some(s) = setup_with_extra() else { return };
    let ctx = s.ctx.to_str().unwrap();
    let root = &s.root;
    ok(root, &["build", "-q", "-t", "plain:1", ctx]);
    let plain = manifest_digest(root, "plain:1");
    assert!(referrers(root, "plain:1").is_empty());
    ok(
        root,
        &[
            "build",
            "-q",
            "-t",
            "app:1",
            "--sbom=spdx",
            "--provenance=min",
            ctx,
        ],
    );
    let with = manifest_digest(root, "app:1");
    assert_eq!(plain, with, "--sbom/--provenance changed the image digest");
    let refs = referrers(root, "app:1");
    let types: BTreeSet<&str> = refs
        .iter()
        .map(|r| r["ArtifactType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        BTreeSet::from(["application/spdx+json", "application/vnd.in-toto+json"])
    );
    let prov_ref = refs
        .iter()
        .find(|r| r["ArtifactType"] == "application/vnd.in-toto+json")
        .unwrap();
    let prov1 = blob_of_referrer(root, prov_ref["Digest"].as_str().unwrap());
    let statement: Value = serde_json::from_slice(&prov1).unwrap();
    assert_eq!(
        format!(
            "sha256:{}",
            statement["subject"][0]["digest"]["sha256"]
                .as_str()
                .unwrap()
        ),
        with,
        "the provenance subject is the image manifest"
    );
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v1");
    let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap();
    assert!(deps.iter().any(|d| d["name"] == "base"), "{deps:?}");
    assert!(deps.iter().any(|d| d["name"] == "context"), "{deps:?}");

    // Building again (cached) gives the same provenance bytes.
    ok(
        root,
        &["build", "-q", "-t", "app:1", "--provenance=min", ctx],
    );
    let refs2 = referrers(root, "app:1");
    let prov_ref2 = refs2
        .iter()
        .find(|r| r["ArtifactType"] == "application/vnd.in-toto+json")
        .unwrap();
    assert_eq!(prov_ref2["Digest"], prov_ref["Digest"]);
    assert_eq!(
        blob_of_referrer(root, prov_ref2["Digest"].as_str().unwrap()),
        prov1
    );

    // max: every step with its cache key and whether it ran.
    ok(
        root,
        &["build", "-q", "-t", "app:1", "--provenance=max", ctx],
    );
    let max = referrers(root, "app:1")
        .into_iter()
        .map(|r| blob_of_referrer(root, r["Digest"].as_str().unwrap()))
        .filter_map(|b| serde_json::from_slice::<Value>(&b).ok())
        .find(|v| !v["predicate"]["buildDefinition"]["internalParameters"]["steps"].is_null())
        .expect("a max provenance");
    let steps = max["predicate"]["buildDefinition"]["internalParameters"]["steps"]
        .as_array()
        .unwrap();
    assert!(steps.len() >= 5, "{steps:?}");
    assert!(steps.iter().all(|s| s["cacheKey"]
        .as_str()
        .is_some_and(|k| k.starts_with("sha256:"))));
    assert!(steps
        .iter()
        .any(|s| s["instruction"].as_str().unwrap_or("").starts_with("RUN")));
    assert!(
        steps.iter().all(|s| s["ran"] == false),
        "a cached build ran nothing"
    );

    // The referrers are kept by prune while the image lives.
    ok(root, &["prune"]);
    assert_eq!(referrers(root, "app:1").len(), 3);
    verify_clean(root);
}

#[test]
fn sbom_matches_dpkg_query_and_attributes_layers() {
    let Some(s) = setup_with_extra() else { return };
    let ctx = s.ctx.to_str().unwrap();
    let root = &s.root;
    ok(root, &["build", "-q", "-t", "app:1", ctx]);
    let spdx: Value = serde_json::from_str(&ok(root, &["sbom", "app:1"])).unwrap();
    let got: BTreeSet<(String, String)> = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["SPDXID"] != "SPDXRef-Image")
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["versionInfo"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // Attribution: zlib1g came with the RUN (line 5), base-files with the COPY (line 2).
    let info = |n: &str| {
        spdx["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == n)
            .unwrap()["sourceInfo"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        info("zlib1g").contains("Dockerfile line 5: RUN"),
        "{}",
        info("zlib1g")
    );
    assert!(
        info("base-files").contains("Dockerfile line 2"),
        "{}",
        info("base-files")
    );

    if strata_testkit::require_tool("dpkg-query") {
        let rootfs = s.root.with_extension("rootfs");
        ok(
            root,
            &[
                "build",
                "-q",
                "-o",
                &format!("type=local,dest={}", rootfs.display()),
                ctx,
            ],
        );
        let out = Command::new("dpkg-query")
            .arg(format!(
                "--admindir={}",
                rootfs.join("var/lib/dpkg").display()
            ))
            .args(["-W", "-f", "${db:Status-Abbrev}\t${Package}\t${Version}\n"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want: BTreeSet<(String, String)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("ii"))
            .filter_map(|l| {
                let mut f = l.split('\t').skip(1);
                Some((f.next()?.to_owned(), f.next()?.to_owned()))
            })
            .collect();
        assert_eq!(want.len(), 3, "{want:?}");
        assert_eq!(got, want);
    }

    // The official validators accept both formats.
    let dir = s.root.with_extension("sboms");
    std::fs::create_dir_all(&dir).unwrap();
    let spdx_file = dir.join("sbom.spdx.json");
    std::fs::write(&spdx_file, ok(root, &["sbom", "app:1", "--format", "spdx"])).unwrap();
    let cdx_file = dir.join("sbom.cdx.json");
    std::fs::write(
        &cdx_file,
        ok(root, &["sbom", "app:1", "--format", "cyclonedx"]),
    )
    .unwrap();
    if strata_testkit::require_tool("pyspdxtools") {
        let out = Command::new("pyspdxtools")
            .arg("-i")
            .arg(&spdx_file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pyspdxtools refused the SPDX document:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    if strata_testkit::require_tool("cyclonedx-py") {
        let script = "import sys\nfrom cyclonedx.validation.json import JsonStrictValidator\nfrom cyclonedx.schema import SchemaVersion\nerr = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())\nprint(err)\nsys.exit(1 if err else 0)\n";
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&cdx_file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cyclonedx-python-lib refused the CycloneDX document:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn referrers_travel_through_serve_and_signatures_verify() {
    let Some(s) = setup(&[
        (
            "Dockerfile",
            "FROM busybox\nCOPY status /var/lib/dpkg/status\n",
        ),
        ("status", STATUS),
    ]) else {
        return;
    };
    let ctx = s.ctx.to_str().unwrap();
    let root = &s.root;
    ok(
        root,
        &["build", "-q", "-t", "app:1", "--sbom=cyclonedx", ctx],
    );
    let key = s._dir.path().join("cosign.key");
    let key_s = key.to_str().unwrap();
    let public = key.with_extension("pub");
    let public_s = public.to_str().unwrap();
    ok(root, &["sign", "--generate-key", "--key", key_s, "app:1"]);
    ok(root, &["verify", "--key", public_s, "app:1"]);
    let digest = manifest_digest(root, "app:1");

    // Another key does not verify.
    let other = s._dir.path().join("other.key");
    ok(
        root,
        &["sign", "--generate-key", "--key", other.to_str().unwrap()],
    );
    let out = run(
        root,
        &[
            "verify",
            "--key",
            other.with_extension("pub").to_str().unwrap(),
            "app:1",
        ],
    );
    assert_eq!(out.status.code(), Some(1));

    // Push to a strata serve, pull into a fresh store: referrers come along.
    let server_root = root.with_extension("server");
    let serve = Serve::start(&server_root, &[]);
    let dest = format!("{}/team/app:1", serve.addr);
    ok(root, &["tag", "app:1", &dest]);
    ok(root, &["push", "-q", &dest]);
    // skopeo copies the image with --all, keeping or ignoring its referrers
    // without an error, and the copy is the same image.
    if strata_testkit::require_tool("skopeo") {
        let copy = format!("{}/copied/app:1", serve.addr);
        strata_testkit::run_ok(std::process::Command::new("skopeo").args([
            "copy",
            "--all",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            &format!("docker://{dest}"),
            &format!("docker://{copy}"),
        ]));
        let other = root.with_extension("copied");
        ok(&other, &["pull", "-q", &copy]);
        assert_eq!(manifest_digest(&other, &copy), digest);
    }
    let fresh = root.with_extension("fresh");
    ok(&fresh, &["pull", "-q", &dest]);
    assert_eq!(manifest_digest(&fresh, &dest), digest);
    let types: BTreeSet<String> = referrers(&fresh, &dest)
        .iter()
        .map(|r| r["ArtifactType"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        types,
        BTreeSet::from([
            "application/vnd.cyclonedx+json".to_owned(),
            "application/vnd.dev.cosign.artifact.sig.v1+json".to_owned()
        ])
    );
    ok(&fresh, &["verify", "--key", public_s, &dest]);
    verify_clean(&fresh);
    drop(serve);

    // A tampered signature fails: replace the signature referrer by one
    // whose signature has a byte changed.
    let store = strata_oci::Store::open(&fresh).unwrap();
    let img = store.find_image(&dest).unwrap();
    let sig = store
        .referrers(
            &img.descriptor.digest,
            Some(strata_oci::signature::ARTIFACT_TYPE),
        )
        .unwrap()
        .remove(0);
    let mut m: strata_oci::Manifest =
        serde_json::from_slice(&store.read_blob(&sig.digest).unwrap()).unwrap();
    let ann = m.layers[0]
        .annotations
        .get_mut(strata_oci::signature::SIGNATURE_ANNOTATION)
        .unwrap();
    let mut raw =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &*ann).unwrap();
    let n = raw.len() - 2;
    raw[n] ^= 0x01;
    *ann = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &raw);
    store
        .remove_referrer(&img.descriptor.digest, &sig.digest)
        .unwrap();
    store.put_referrer(&m.to_json()).unwrap();
    let out = run(&fresh, &["verify", "--key", public_s, &dest]);
    assert_eq!(out.status.code(), Some(1), "a tampered signature verified");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no valid signature"));
}
