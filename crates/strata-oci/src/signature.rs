//! Image signatures in cosign's format, stored as OCI 1.1 referrers.
//!
//! The signed payload is cosign's "simple signing" document naming the
//! image manifest digest; the signature is ECDSA P-256 over SHA-256 (ASN.1
//! DER), base64 in the layer annotation `dev.cosignproject.cosign/signature`
//! of an artifact manifest (`application/vnd.dev.cosign.artifact.sig.v1+json`)
//! whose subject is the image manifest. Keys are PEM: PKCS#8 `PRIVATE KEY`
//! and SubjectPublicKeyInfo `PUBLIC KEY` (cosign's public key format).
//!
//! ```
//! use strata_oci::signature::{generate_key, sign_payload, verify_payload, PublicKey, SigningKey};
//! let (private_pem, public_pem) = generate_key().unwrap();
//! let key = SigningKey::from_pem(&private_pem).unwrap();
//! let sig = sign_payload(&key, b"payload").unwrap();
//! let public = PublicKey::from_pem(&public_pem).unwrap();
//! assert!(verify_payload(&public, b"payload", &sig));
//! assert!(!verify_payload(&public, b"other", &sig));
//! ```

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1,
    ECDSA_P256_SHA256_ASN1_SIGNING,
};
use serde_json::json;

use crate::{Digest, Error, Result};

/// Artifact type of a signature referrer (cosign's).
pub const ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// Media type of the signed payload blob.
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// DER prefix of a P-256 SubjectPublicKeyInfo before the 65-byte point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

fn pem_decode(pem: &str, label: &str) -> Result<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem
        .find(&begin)
        .ok_or_else(|| Error::invalid(format!("not a PEM {label}")))?;
    let rest = &pem[start + begin.len()..];
    let stop = rest
        .find(&end)
        .ok_or_else(|| Error::invalid(format!("unterminated PEM {label}")))?;
    let b64: String = rest[..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| Error::invalid(format!("PEM {label}: {e}")))
}

fn pem_encode(der: &[u8], label: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// An ECDSA P-256 private key.
#[derive(Debug)]
pub struct SigningKey(EcdsaKeyPair);

impl SigningKey {
    /// From a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(pem: &str) -> Result<SigningKey> {
        let der = pem_decode(pem, "PRIVATE KEY")?;
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der, &SystemRandom::new())
            .map(SigningKey)
            .map_err(|e| Error::invalid(format!("not an ECDSA P-256 PKCS#8 key: {e}")))
    }

    /// Its public key as PEM.
    pub fn public_pem(&self) -> String {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.0.public_key().as_ref());
        pem_encode(&der, "PUBLIC KEY")
    }
}

/// An ECDSA P-256 public key.
#[derive(Debug, Clone)]
pub struct PublicKey(Vec<u8>);

impl PublicKey {
    /// From a SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(pem: &str) -> Result<PublicKey> {
        let der = pem_decode(pem, "PUBLIC KEY")?;
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) if point.len() == 65 && point[0] == 4 => Ok(PublicKey(point.to_vec())),
            _ => Err(Error::invalid("not an ECDSA P-256 public key")),
        }
    }
}

/// A new key pair: (PKCS#8 private PEM, public PEM).
pub fn generate_key() -> Result<(String, String)> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|e| Error::invalid(format!("cannot generate a key: {e}")))?;
    let private = pem_encode(pkcs8.as_ref(), "PRIVATE KEY");
    let public = SigningKey::from_pem(&private)?.public_pem();
    Ok((private, public))
}

/// cosign's simple-signing payload for `manifest` named `reference`.
pub fn payload(reference: &str, manifest: &Digest) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "critical": {
            "identity": { "docker-reference": reference },
            "image": { "docker-manifest-digest": manifest.to_string() },
            "type": "cosign container image signature",
        },
        "optional": null,
    }))
    .unwrap_or_default()
}

/// The manifest digest a simple-signing payload names.
pub fn payload_manifest(payload: &[u8]) -> Option<Digest> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    v["critical"]["image"]["docker-manifest-digest"]
        .as_str()?
        .parse()
        .ok()
}

/// Sign `payload`: base64 of the ASN.1 DER signature.
pub fn sign_payload(key: &SigningKey, payload: &[u8]) -> Result<String> {
    let sig = key
        .0
        .sign(&SystemRandom::new(), payload)
        .map_err(|e| Error::invalid(format!("cannot sign: {e}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(sig.as_ref()))
}

/// Whether `signature` (base64 DER) is `key`'s signature of `payload`.
pub fn verify_payload(key: &PublicKey, payload: &[u8], signature: &str) -> bool {
    let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &key.0)
        .verify(payload, &sig)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tampered_payloads_and_signatures_and_other_keys_fail() {
        let (private, public) = generate_key().unwrap_or_else(|e| panic!("{e}"));
        let key = SigningKey::from_pem(&private).unwrap_or_else(|e| panic!("{e}"));
        let public = PublicKey::from_pem(&public).unwrap_or_else(|e| panic!("{e}"));
        let d = Digest::sha256(b"m");
        let p = payload("example.com/app", &d);
        assert_eq!(payload_manifest(&p), Some(d));
        let sig = sign_payload(&key, &p).unwrap_or_else(|e| panic!("{e}"));
        assert!(verify_payload(&public, &p, &sig));
        let mut bad = p.clone();
        bad[10] ^= 1;
        assert!(!verify_payload(&public, &bad, &sig));
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(&sig)
            .unwrap_or_default();
        let n = raw.len() - 3;
        raw[n] ^= 1;
        let tampered = base64::engine::general_purpose::STANDARD.encode(&raw);
        assert!(!verify_payload(&public, &p, &tampered));
        let (_, other) = generate_key().unwrap_or_else(|e| panic!("{e}"));
        let other = PublicKey::from_pem(&other).unwrap_or_else(|e| panic!("{e}"));
        assert!(!verify_payload(&other, &p, &sig));
        assert!(PublicKey::from_pem("junk").is_err());
    }
}
