//! Supply chain: `inspect --referrers`, `sbom`, `sign`, `verify`, and the
//! SBOM and provenance `build --sbom/--provenance` attach. The documents are
//! made by strata-analyze (SBOM), strata-build (provenance) and strata-oci
//! (signatures); this module only wires them to the store as referrers.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use strata_analyze::sbom;
use strata_build::provenance::{self, Detail, Provenance, Recorder};
use strata_build::{BaseResolver, BuildInfo};
use strata_oci::{signature, Descriptor, Digest, Image, Manifest, Platform, Store};

use crate::cli::*;
use crate::settings::Settings;

use super::image::find;
use super::{open_store, CmdResult};

/// Media type and artifact type of an SPDX JSON SBOM.
const SPDX: &str = "application/spdx+json";
/// Media type and artifact type of a CycloneDX JSON SBOM.
const CYCLONEDX: &str = "application/vnd.cyclonedx+json";
/// Annotation naming an in-toto predicate type.
const PREDICATE_ANNOTATION: &str = "in-toto.io/predicate-type";

/// Store `bytes` (`media_type`) as a referrer of `image`'s manifest.
fn attach(
    store: &Store,
    image: &Image,
    artifact_type: &str,
    media_type: &str,
    bytes: &[u8],
    annotations: BTreeMap<String, String>,
) -> anyhow::Result<Descriptor> {
    let blob = store.put_json(media_type, bytes)?;
    let m = Manifest::artifact(
        artifact_type,
        image.descriptor.clone(),
        vec![blob],
        annotations,
    );
    Ok(store.put_referrer(&m.to_json())?)
}

/// The SBOM of `image` in `format`: (bytes, media type).
fn make_sbom(
    store: &Store,
    image: &Image,
    name: &str,
    format: SbomFormat,
) -> anyhow::Result<(Vec<u8>, &'static str)> {
    let lines = BuildInfo::load(store, image.id())
        .map(|b| b.lines)
        .unwrap_or_default();
    let metas = strata_analyze::image::layer_metas(image, &lines);
    let mut open = strata_analyze::image::layer_opener(store, image);
    let pkgs = sbom::scan_packages(metas.len(), &mut open)?;
    let subject = sbom::Subject {
        name: name.to_owned(),
        manifest_digest: image.descriptor.digest.to_string(),
        created: image
            .config
            .created
            .as_deref()
            .and_then(strata_oci::parse_rfc3339)
            .unwrap_or(0),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    Ok(match format {
        SbomFormat::Spdx => (sbom::render_spdx(&subject, &pkgs, &metas), SPDX),
        SbomFormat::Cyclonedx => (sbom::render_cyclonedx(&subject, &pkgs, &metas), CYCLONEDX),
    })
}

/// `strata sbom IMAGE [--format spdx|cyclonedx] [--attach]`.
pub fn sbom(args: SbomArgs, s: &Settings) -> CmdResult {
    let store = open_store(s)?;
    let image = find(&store, &args.image)?;
    let (bytes, mt) = make_sbom(&store, &image, &args.image, args.format)?;
    if args.attach {
        attach(&store, &image, mt, mt, &bytes, BTreeMap::new())?;
    }
    use std::io::Write as _;
    std::io::stdout().lock().write_all(&bytes)?;
    Ok(ExitCode::SUCCESS)
}

/// `strata inspect --referrers IMAGE...`: the referrers of each image's
/// manifest (and index), and theirs, as JSON.
pub fn referrers(args: InspectArgs, s: &Settings) -> CmdResult {
    let store = open_store(s)?;
    let mut out = Vec::new();
    for name in &args.images {
        let image = find(&store, name)?;
        let mut subjects: Vec<Digest> = vec![image.descriptor.digest.clone()];
        if let Some(i) = &image.index {
            subjects.push(i.digest.clone());
        }
        let mut list = Vec::new();
        let mut i = 0;
        while i < subjects.len() && i < 64 {
            let subject = subjects[i].clone();
            for r in store.referrers(&subject, None)? {
                subjects.push(r.digest.clone());
                list.push(json!({
                    "Subject": subject.to_string(),
                    "Digest": r.digest.to_string(),
                    "ArtifactType": r.artifact_type,
                    "MediaType": r.media_type,
                    "Size": r.size,
                    "Annotations": r.annotations,
                }));
            }
            i += 1;
        }
        out.push(json!({
            "Image": name,
            "ManifestDigest": image.descriptor.digest.to_string(),
            "Referrers": list,
        }));
    }
    let text = serde_json::to_string_pretty(&Value::Array(out))?;
    outln!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// `strata sign --key KEY [--generate-key] IMAGE`.
pub fn sign(args: SignArgs, s: &Settings) -> CmdResult {
    if args.generate_key {
        let public = args.key.with_extension("pub");
        if args.key.exists() || public.exists() {
            bail!(
                "{} or {} exists; not overwriting a key",
                args.key.display(),
                public.display()
            );
        }
        let (private, public_pem) = signature::generate_key()?;
        {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&args.key)
                .with_context(|| format!("cannot create {}", args.key.display()))?;
            f.write_all(private.as_bytes())?;
        }
        std::fs::write(&public, public_pem)
            .with_context(|| format!("cannot write {}", public.display()))?;
        eprintln!("wrote {} and {}", args.key.display(), public.display());
    }
    let Some(name) = args.image else {
        if args.generate_key {
            return Ok(ExitCode::SUCCESS);
        }
        return Err(crate::render::usage("an IMAGE to sign is required"));
    };
    let pem = std::fs::read_to_string(&args.key)
        .with_context(|| format!("cannot read the key {}", args.key.display()))?;
    let key = signature::SigningKey::from_pem(&pem)
        .with_context(|| format!("cannot use the key {}", args.key.display()))?;
    let store = open_store(s)?;
    let image = find(&store, &name)?;
    let reference = name
        .parse::<strata_oci::Reference>()
        .map(|r| format!("{}/{}", r.domain(), r.path()))
        .unwrap_or_else(|_| name.clone());
    let payload = signature::payload(&reference, &image.descriptor.digest);
    let sig = signature::sign_payload(&key, &payload)?;
    let blob = store.put_json(signature::PAYLOAD_MEDIA_TYPE, &payload)?;
    let mut layer = blob;
    layer
        .annotations
        .insert(signature::SIGNATURE_ANNOTATION.to_owned(), sig);
    let m = Manifest::artifact(
        signature::ARTIFACT_TYPE,
        image.descriptor.clone(),
        vec![layer],
        BTreeMap::new(),
    );
    let d = store.put_referrer(&m.to_json())?;
    if !s.quiet {
        eprintln!(
            "signed {} ({}) as {}",
            name, image.descriptor.digest, d.digest
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `strata verify --key PUB IMAGE`: exit 0 when a signature referrer of
/// the image's manifest verifies with the key, 1 otherwise.
pub fn verify(args: VerifyArgs, s: &Settings) -> CmdResult {
    let pem = std::fs::read_to_string(&args.key)
        .with_context(|| format!("cannot read the key {}", args.key.display()))?;
    let key = signature::PublicKey::from_pem(&pem)
        .with_context(|| format!("cannot use the key {}", args.key.display()))?;
    let store = open_store(s)?;
    let image = find(&store, &args.image)?;
    let manifest = &image.descriptor.digest;
    let mut seen = 0;
    for r in store.referrers(manifest, Some(signature::ARTIFACT_TYPE))? {
        let Ok(m) = serde_json::from_slice::<Manifest>(&store.read_blob(&r.digest)?) else {
            continue;
        };
        for layer in &m.layers {
            let Some(sig) = layer.annotations.get(signature::SIGNATURE_ANNOTATION) else {
                continue;
            };
            seen += 1;
            let payload = store.read_blob(&layer.digest)?;
            if signature::payload_manifest(&payload).as_ref() != Some(manifest) {
                continue;
            }
            if signature::verify_payload(&key, &payload, sig) {
                outln!(
                    "verified: {} ({manifest}) signed by {}",
                    args.image,
                    args.key.display()
                );
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    bail!(
        "no valid signature of {} ({manifest}) for the key {} ({seen} signature(s) checked)",
        args.image,
        args.key.display()
    )
}

/// A resolver that remembers the base images a build used.
pub(crate) struct RecordingResolver<'a> {
    pub(crate) inner: &'a dyn BaseResolver,
    pub(crate) seen: Mutex<Vec<(String, Digest)>>,
}

impl BaseResolver for RecordingResolver<'_> {
    fn resolve(
        &self,
        store: &Store,
        reference: &str,
        platform: &Platform,
    ) -> std::result::Result<Image, Box<dyn std::error::Error + Send + Sync>> {
        let img = self.inner.resolve(store, reference, platform)?;
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((reference.to_owned(), img.descriptor.digest.clone()));
        Ok(img)
    }
}

/// What `build --sbom/--provenance` needs besides the image.
pub(crate) struct BuildFacts<'a> {
    pub(crate) name: String,
    pub(crate) opts: &'a strata_build::BuildOptions,
    pub(crate) epoch: i64,
    pub(crate) recorder: &'a Recorder,
    pub(crate) bases: Vec<(String, Digest)>,
}

/// After a build: store the SBOM and provenance asked for as referrers.
pub(crate) fn after_build(
    store: &Store,
    image: &Image,
    sbom_format: Option<SbomFormat>,
    mode: Option<ProvenanceMode>,
    facts: &BuildFacts,
) -> anyhow::Result<()> {
    if let Some(f) = sbom_format {
        let (bytes, mt) = make_sbom(store, image, &facts.name, f)?;
        attach(store, image, mt, mt, &bytes, BTreeMap::new()).context("cannot store the SBOM")?;
    }
    if let Some(mode) = mode {
        let context = std::fs::canonicalize(&facts.opts.context)
            .unwrap_or_else(|_| facts.opts.context.clone());
        let dockerfile_path = facts
            .opts
            .dockerfile
            .clone()
            .unwrap_or_else(|| context.join("Dockerfile"));
        let text = match &facts.opts.dockerfile_text {
            Some(t) => t.clone().into_bytes(),
            None => std::fs::read(&dockerfile_path)
                .with_context(|| format!("cannot read {}", dockerfile_path.display()))?,
        };
        let shown = std::fs::canonicalize(&dockerfile_path)
            .ok()
            .and_then(|p| p.strip_prefix(&context).ok().map(|r| r.to_owned()))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "Dockerfile".to_owned());
        let ctx = strata_context::Context::open(
            &context,
            strata_context::ContextOptions {
                dockerfile: Some(dockerfile_path.clone()),
                state_dir: Some(store.root().join("context-cache")),
            },
        )
        .and_then(|c| c.index().map(|i| i.digest()))
        .ok();
        let p = Provenance {
            name: facts.name.clone(),
            manifest: image.descriptor.digest.clone(),
            dockerfile: shown,
            dockerfile_digest: Digest::sha256(&text),
            context_digest: ctx,
            build_args: facts.opts.build_args.clone(),
            target: facts.opts.target.clone(),
            platform: image.config.platform().to_string(),
            bases: facts.bases.clone(),
            epoch: facts.epoch,
            builder_version: env!("CARGO_PKG_VERSION").to_owned(),
            steps: facts.recorder.steps(),
        };
        let detail = match mode {
            ProvenanceMode::Min => Detail::Min,
            ProvenanceMode::Max => Detail::Max,
        };
        let bytes = p.render(detail);
        attach(
            store,
            image,
            provenance::MEDIA_TYPE,
            provenance::MEDIA_TYPE,
            &bytes,
            BTreeMap::from([(
                PREDICATE_ANNOTATION.to_owned(),
                provenance::PREDICATE_TYPE.to_owned(),
            )]),
        )
        .context("cannot store the provenance")?;
    }
    Ok(())
}
