//! The Maven metadata in a Java archive (jar, war, ear: zip files): the
//! `META-INF/maven/<group>/<artifact>/pom.properties` entries, read through
//! the zip central directory, and those of the archives it holds (a Spring
//! Boot jar's `BOOT-INF/lib/*.jar`, a war's `WEB-INF/lib/*.jar`).
//!
//! Only stored and deflated entries are read, each bounded; anything else
//! (zip64, encryption, a damaged archive) yields nothing rather than an
//! error: an SBOM lists what it can prove.

use std::io::Read;

/// Largest `pom.properties` read.
const MAX_PROPERTIES: u64 = 64 << 10;
/// Largest nested archive read.
const MAX_NESTED: u64 = 64 << 20;

/// The texts of the `pom.properties` entries of `zip`, and of the archives
/// inside it down to `depth` levels.
pub(super) fn pom_properties(zip: &[u8], depth: usize) -> Vec<String> {
    let mut out = Vec::new();
    for e in entries(zip) {
        let is_pom = e.name.contains("META-INF/maven/") && e.name.ends_with("/pom.properties");
        let is_nested = depth > 0 && super::is_java_archive(&e.name);
        if is_pom {
            if let Some(data) = read(zip, &e, MAX_PROPERTIES) {
                out.push(String::from_utf8_lossy(&data).into_owned());
            }
        } else if is_nested {
            if let Some(data) = read(zip, &e, MAX_NESTED) {
                out.extend(pom_properties(&data, depth - 1));
            }
        }
    }
    out
}

struct Entry {
    name: String,
    method: u16,
    compressed: u64,
    size: u64,
    local: usize,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The central directory's entries (empty when there is none to read).
fn entries(zip: &[u8]) -> Vec<Entry> {
    const EOCD: u32 = 0x0605_4b50;
    const CENTRAL: u32 = 0x0201_4b50;
    // The end record: 22 bytes plus a comment of at most 64 KiB.
    let low = zip.len().saturating_sub(22 + 0xffff);
    let Some(end) = (low..zip.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(zip, i) == Some(EOCD))
    else {
        return Vec::new();
    };
    let (Some(count), Some(offset)) = (u16_at(zip, end + 10), u32_at(zip, end + 16)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut at = offset as usize;
    for _ in 0..count {
        if u32_at(zip, at) != Some(CENTRAL) {
            break;
        }
        let fields = (
            u16_at(zip, at + 10),
            u32_at(zip, at + 20),
            u32_at(zip, at + 24),
            u16_at(zip, at + 28),
            u16_at(zip, at + 30),
            u16_at(zip, at + 32),
            u32_at(zip, at + 42),
        );
        let (Some(method), Some(comp), Some(size), Some(n), Some(x), Some(c), Some(local)) = fields
        else {
            break;
        };
        let Some(name) = zip.get(at + 46..at + 46 + n as usize) else {
            break;
        };
        out.push(Entry {
            name: String::from_utf8_lossy(name).into_owned(),
            method,
            compressed: u64::from(comp),
            size: u64::from(size),
            local: local as usize,
        });
        at += 46 + n as usize + x as usize + c as usize;
    }
    out
}

/// An entry's bytes, if stored or deflated and at most `max` bytes.
fn read(zip: &[u8], e: &Entry, max: u64) -> Option<Vec<u8>> {
    const LOCAL: u32 = 0x0403_4b50;
    if e.size > max || u32_at(zip, e.local)? != LOCAL {
        return None;
    }
    let n = u16_at(zip, e.local + 26)? as usize;
    let x = u16_at(zip, e.local + 28)? as usize;
    let start = e.local + 30 + n + x;
    let data = zip.get(start..start.checked_add(usize::try_from(e.compressed).ok()?)?)?;
    match e.method {
        0 => Some(data.to_vec()),
        8 => {
            let mut out = Vec::new();
            flate2::read::DeflateDecoder::new(data)
                .take(max + 1)
                .read_to_end(&mut out)
                .ok()?;
            (out.len() as u64 <= max).then_some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::io::Write;

    /// A zip of `files` (name, bytes, deflated?), as `jar` writes one.
    pub(crate) fn zip(files: &[(&str, &[u8], bool)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, data, deflate) in files {
            let body = if *deflate {
                let mut e = flate2::write::DeflateEncoder::new(Vec::new(), Default::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            } else {
                data.to_vec()
            };
            let method: u16 = if *deflate { 8 } else { 0 };
            let local = out.len() as u32;
            out.extend(0x0403_4b50u32.to_le_bytes());
            out.extend([20, 0, 0, 0]);
            out.extend(method.to_le_bytes());
            out.extend([0; 8]); // time, date, crc (not checked here)
            out.extend((body.len() as u32).to_le_bytes());
            out.extend((data.len() as u32).to_le_bytes());
            out.extend((name.len() as u16).to_le_bytes());
            out.extend(0u16.to_le_bytes());
            out.extend(name.as_bytes());
            out.extend(&body);
            central.extend(0x0201_4b50u32.to_le_bytes());
            central.extend([20, 0, 20, 0, 0, 0]);
            central.extend(method.to_le_bytes());
            central.extend([0; 8]);
            central.extend((body.len() as u32).to_le_bytes());
            central.extend((data.len() as u32).to_le_bytes());
            central.extend((name.len() as u16).to_le_bytes());
            central.extend([0; 12]); // extra, comment, disk, attributes
            central.extend(local.to_le_bytes());
            central.extend(name.as_bytes());
        }
        let offset = out.len() as u32;
        out.extend(&central);
        out.extend(0x0605_4b50u32.to_le_bytes());
        out.extend([0; 4]);
        out.extend((files.len() as u16).to_le_bytes());
        out.extend((files.len() as u16).to_le_bytes());
        out.extend((central.len() as u32).to_le_bytes());
        out.extend(offset.to_le_bytes());
        out.extend([0, 0]);
        out
    }

    #[test]
    fn poms_in_a_jar_and_in_the_jars_it_holds() {
        let inner = zip(&[(
            "META-INF/maven/org.slf4j/slf4j-api/pom.properties",
            b"groupId=org.slf4j\nartifactId=slf4j-api\nversion=2.0.9\n",
            true,
        )]);
        let outer = zip(&[
            ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\n", true),
            (
                "META-INF/maven/com.example/app/pom.properties",
                b"#Generated\nversion=1.2\ngroupId=com.example\nartifactId=app\n",
                false,
            ),
            ("BOOT-INF/lib/slf4j-api-2.0.9.jar", &inner, false),
        ]);
        let mut got = pom_properties(&outer, 1);
        got.sort();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].contains("artifactId=app"));
        assert!(got[1].contains("slf4j-api"));
        // Depth 0: the nested jar is not opened.
        assert_eq!(pom_properties(&outer, 0).len(), 1);
    }

    #[test]
    fn damaged_archives_yield_nothing() {
        assert!(pom_properties(b"not a zip", 1).is_empty());
        let mut z = zip(&[(
            "META-INF/maven/g/a/pom.properties",
            b"groupId=g\nartifactId=a\nversion=1\n",
            true,
        )]);
        let n = z.len();
        z.truncate(n - 30);
        assert!(pom_properties(&z, 1).is_empty());
        assert!(pom_properties(&[], 1).is_empty());
    }
}
