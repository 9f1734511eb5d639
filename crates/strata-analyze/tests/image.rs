//! `strata analyze` on images made of layers written by strata-layer, one per
//! case of docs/practices.md, with exact byte counts, paths, layers and
//! lines — and no waste on the fixed versions; waste in the base image's
//! layers reported apart from the Dockerfile's.
#![allow(clippy::unwrap_used)]

use std::io::{self, Cursor};

use std::collections::BTreeMap;

use strata_analyze::image::{
    analyze, ci_checks, diff_images, find_base, render_html, render_summary, render_text,
    BaseLayers, BaseSource, DiffSide, LayerFiles, LayerMeta, Options, Report, Thresholds,
    WasteKind,
};
use strata_layer::{write_layer, Entry, EntryKind, LayerOptions, LayerSource};
use strata_oci::Compression;
use strata_oci::History;

/// Incompressible-ish bytes (a simple LCG), different per seed.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

fn dir(p: &str) -> Entry {
    Entry::new(p, EntryKind::Dir)
}

fn file(p: &str, data: Vec<u8>) -> Entry {
    Entry::file(p, data)
}

fn whiteout(p: &str) -> Entry {
    let (parent, name) = p.rsplit_once('/').unwrap_or(("", p));
    let wh = if parent.is_empty() {
        format!(".wh.{name}")
    } else {
        format!("{parent}/.wh.{name}")
    };
    Entry::file(wh, Vec::new())
}

struct Img {
    metas: Vec<LayerMeta>,
    blobs: Vec<Vec<u8>>,
}

/// Layers bottom first; each with its Dockerfile line (0: none).
fn image(layers: Vec<(Vec<Entry>, &str, usize)>) -> Img {
    let opts = LayerOptions::new(Compression::Gzip);
    let mut metas = Vec::new();
    let mut blobs = Vec::new();
    for (entries, created_by, line) in layers {
        let (info, blob) = write_layer(LayerSource::Entries(entries), &opts, Vec::new()).unwrap();
        metas.push(LayerMeta {
            digest: info.digest.to_string(),
            diff_id: info.diff_id.to_string(),
            compressed_size: info.size,
            created_by: Some(created_by.to_owned()),
            line: (line > 0).then_some(line),
        });
        blobs.push(blob);
    }
    Img { metas, blobs }
}

fn run(img: &Img) -> Report {
    run_with_base(img, None)
}

fn run_with_base(img: &Img, base: Option<BaseLayers>) -> Report {
    let blobs = img.blobs.clone();
    let mut open = move |i: usize| -> io::Result<LayerFiles> {
        LayerFiles::scan_blob(Cursor::new(blobs[i].clone()))
    };
    analyze(
        "test",
        None,
        &img.metas,
        &mut open,
        &Options { top: 20, base },
    )
    .unwrap()
}

fn base() -> (Vec<Entry>, &'static str, usize) {
    (
        vec![
            dir("bin"),
            file("bin/sh", noise(30_000, 1)),
            dir("etc"),
            file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n".to_vec()),
        ],
        "FROM busybox",
        1,
    )
}

#[test]
fn file_deleted_in_a_later_layer_is_waste_in_the_layer_that_added_it() {
    let img = image(vec![
        base(),
        (
            vec![dir("tmp"), file("tmp/big.tar.gz", noise(80_000, 2))],
            "RUN wget big.tar.gz",
            2,
        ),
        (
            vec![dir("tmp"), whiteout("tmp/big.tar.gz")],
            "RUN rm big.tar.gz",
            3,
        ),
    ]);
    let r = run(&img);
    assert_eq!(r.removed_bytes, 80_000);
    assert_eq!(r.wasted_bytes, 80_000);
    let w = &r.wasted_paths[0];
    assert_eq!(w.path, "tmp/big.tar.gz");
    assert_eq!(w.kind, WasteKind::Removed);
    assert_eq!((w.bytes, w.files), (80_000, 1));
    assert_eq!(w.layers, vec![1]);
    assert_eq!(w.lines, vec![2]);
    assert_eq!((w.by_layer, w.by_line), (Some(2), Some(3)));
    assert_eq!(r.layers[2].files_removed, 1);
    assert_eq!(r.layers[1].wasted_bytes, 80_000);
    let total = 30_000 + 26 + 80_000;
    assert_eq!(r.total_file_bytes, total);
    assert!((r.efficiency - (1.0 - 80_000.0 / total as f64)).abs() < 1e-9);
    let text = render_text(&r);
    assert!(
        text.contains("/tmp/big.tar.gz removed in layer 2 (Dockerfile:3)"),
        "{text}"
    );

    // Fixed: download and delete in one RUN.
    let fixed = image(vec![base(), (vec![dir("tmp")], "RUN wget && rm", 2)]);
    let f = run(&fixed);
    assert_eq!(f.wasted_bytes, 0);
    assert!(f.wasted_paths.is_empty());
    assert_eq!(f.efficiency, 1.0);
}

#[test]
fn directory_deleted_in_a_later_layer_counts_every_file_under_it() {
    let build = vec![
        dir("src"),
        dir("src/build"),
        file("src/build/a.o", noise(10_000, 3)),
        dir("src/build/sub"),
        file("src/build/sub/b.o", noise(20_000, 4)),
        file("src/build/sub/c.o", noise(30_000, 5)),
        file("src/main.c", b"int main(){}\n".to_vec()),
    ];
    let img = image(vec![
        base(),
        (build.clone(), "RUN make", 4),
        (
            vec![dir("src"), whiteout("src/build")],
            "RUN rm -rf src/build",
            5,
        ),
    ]);
    let r = run(&img);
    let w = r
        .wasted_paths
        .iter()
        .find(|w| w.path == "src/build")
        .expect("src/build");
    assert_eq!((w.bytes, w.files, w.kind), (60_000, 3, WasteKind::Removed));
    assert_eq!((w.layers.clone(), w.lines.clone()), (vec![1], vec![4]));
    assert_eq!(w.by_line, Some(5));
    assert_eq!(r.layers[2].files_removed, 3);
    assert_eq!(r.wasted_bytes, 60_000);

    // The same with an opaque directory (what overlayfs upper dirs make).
    let img = image(vec![
        base(),
        (build, "RUN make", 4),
        (
            vec![
                dir("src"),
                dir("src/build"),
                file("src/build/.wh..wh..opq", Vec::new()),
                file("src/build/new.o", noise(1_000, 6)),
            ],
            "RUN make clean && make new",
            5,
        ),
    ]);
    let r = run(&img);
    assert_eq!(r.removed_bytes, 60_000);
    assert_eq!(r.wasted_paths[0].path, "src/build");
    // The file the opaque layer adds is kept.
    assert_eq!(r.final_files, 4);
}

#[test]
fn overwritten_and_duplicated_content() {
    let same = noise(50_000, 7);
    let img = image(vec![
        base(),
        (
            vec![dir("app"), file("app/data.bin", noise(40_000, 8))],
            "COPY data.bin /app/",
            2,
        ),
        (
            vec![dir("app"), file("app/data.bin", noise(41_000, 9))],
            "COPY data.bin /app/",
            3,
        ),
        (
            vec![
                dir("opt"),
                file("opt/lib-a.so", same.clone()),
                file("opt/lib-b.so", same),
            ],
            "COPY libs /opt/",
            4,
        ),
    ]);
    let r = run(&img);
    assert_eq!(r.overwritten_bytes, 40_000);
    assert_eq!(r.duplicate_bytes, 50_000);
    assert_eq!(r.wasted_bytes, 90_000);
    let ow = r
        .wasted_paths
        .iter()
        .find(|w| w.kind == WasteKind::Overwritten)
        .unwrap();
    assert_eq!(
        (ow.path.as_str(), ow.layers.clone(), ow.by_line),
        ("app/data.bin", vec![1], Some(3))
    );
    assert_eq!(r.layers[2].files_changed, 1);
    let dup = r
        .wasted_paths
        .iter()
        .find(|w| w.kind == WasteKind::Duplicate)
        .unwrap();
    assert_eq!(dup.path, "opt/lib-b.so");
    assert_eq!(dup.kept.as_deref(), Some("opt/lib-a.so"));
    assert_eq!((dup.bytes, dup.lines.clone()), (50_000, vec![4]));
}

#[test]
fn hard_links_and_empty_files_are_not_duplicates() {
    let img = image(vec![
        base(),
        (
            vec![
                dir("usr"),
                file("usr/a", noise(5_000, 10)),
                Entry::new("usr/b", EntryKind::Hardlink("usr/a".into())),
                file("usr/empty1", Vec::new()),
                file("usr/empty2", Vec::new()),
            ],
            "RUN ln",
            2,
        ),
    ]);
    let r = run(&img);
    assert_eq!(r.wasted_bytes, 0, "{:?}", r.wasted_paths);
}

#[test]
fn apt_lists_left_behind_are_found_and_the_fixed_image_is_clean() {
    let lists = vec![
        dir("var"),
        dir("var/lib"),
        dir("var/lib/apt"),
        dir("var/lib/apt/lists"),
        dir("var/lib/apt/lists/partial"),
        file("var/lib/apt/lists/lock", Vec::new()),
        file(
            "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4",
            noise(300_000, 11),
        ),
        file(
            "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease",
            noise(150_000, 12),
        ),
        dir("usr"),
        dir("usr/bin"),
        file("usr/bin/curl", noise(20_000, 13)),
    ];
    let img = image(vec![
        base(),
        (lists, "RUN apt-get update && apt-get install curl", 2),
    ]);
    let r = run(&img);
    let f = r.findings.iter().find(|f| f.id == "apt-lists").unwrap();
    assert_eq!((f.bytes, f.files), (450_000, 2));
    assert_eq!(f.paths[0].0, "var/lib/apt/lists");
    assert_eq!((f.layers.clone(), f.lines.clone()), (vec![1], vec![2]));

    let fixed = vec![
        dir("var"),
        dir("var/lib"),
        dir("var/lib/apt"),
        dir("var/lib/apt/lists"),
        dir("var/lib/apt/lists/partial"),
        file("var/lib/apt/lists/lock", Vec::new()),
        dir("usr"),
        dir("usr/bin"),
        file("usr/bin/curl", noise(20_000, 13)),
    ];
    let r = run(&image(vec![
        base(),
        (
            fixed,
            "RUN apt-get update && ... && rm -rf /var/lib/apt/lists/*",
            2,
        ),
    ]));
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(r.wasted_bytes, 0);
}

#[test]
fn a_toolchain_in_the_final_stage_is_found() {
    let tools = vec![
        dir("usr"),
        dir("usr/bin"),
        file("usr/bin/x86_64-linux-gnu-gcc-12", noise(900_000, 14)),
        dir("usr/lib"),
        dir("usr/lib/gcc"),
        dir("usr/lib/gcc/x86_64-linux-gnu"),
        dir("usr/lib/gcc/x86_64-linux-gnu/12"),
        file("usr/lib/gcc/x86_64-linux-gnu/12/cc1", noise(2_000_000, 15)),
        dir("usr/include"),
        file("usr/include/stdio.h", noise(30_000, 16)),
        dir("app"),
        file("app/hello", noise(15_000, 17)),
    ];
    let r = run(&image(vec![
        base(),
        (tools, "RUN apt-get install build-essential && make", 3),
    ]));
    let t = r.findings.iter().find(|f| f.id == "toolchain").unwrap();
    assert_eq!((t.bytes, t.files), (2_900_000, 2));
    assert_eq!(t.lines, vec![3]);
    let h = r.findings.iter().find(|f| f.id == "headers").unwrap();
    assert_eq!(h.bytes, 30_000);

    // Multi-stage: only the binary reaches the final image.
    let r = run(&image(vec![
        base(),
        (
            vec![dir("app"), file("app/hello", noise(15_000, 17))],
            "COPY --from=build /app/hello /app/",
            5,
        ),
    ]));
    assert!(
        r.findings.is_empty() && r.wasted_bytes == 0,
        "{:?}",
        r.findings
    );
}

/// A zip of stored entries (enough of the format for a jar).
fn jar(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let offset = out.len() as u32;
        let head = |sig: u32, central: bool| {
            let mut h = Vec::new();
            h.extend(sig.to_le_bytes());
            if central {
                h.extend(20u16.to_le_bytes());
            }
            h.extend(20u16.to_le_bytes()); // version needed
            h.extend(0u16.to_le_bytes()); // flags
            h.extend(0u16.to_le_bytes()); // stored
            h.extend(0u32.to_le_bytes()); // time/date
            h.extend(crc.sum().to_le_bytes());
            h.extend((data.len() as u32).to_le_bytes());
            h.extend((data.len() as u32).to_le_bytes());
            h.extend((name.len() as u16).to_le_bytes());
            h.extend(0u16.to_le_bytes()); // extra
            if central {
                h.extend(0u16.to_le_bytes()); // comment
                h.extend(0u16.to_le_bytes()); // disk
                h.extend(0u16.to_le_bytes()); // internal attrs
                h.extend(0u32.to_le_bytes()); // external attrs
                h.extend(offset.to_le_bytes());
            }
            h.extend(name.as_bytes());
            h
        };
        out.extend(head(0x04034b50, false));
        out.extend(data);
        central.extend(head(0x02014b50, true));
    }
    let cd_offset = out.len() as u32;
    out.extend(&central);
    out.extend(0x06054b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

#[test]
fn a_fat_jar_is_found_with_its_nested_jars_and_the_layered_copy_is_not() {
    let fat = jar(&[
        (
            "META-INF/MANIFEST.MF",
            b"Main-Class: org.springframework.boot.loader.JarLauncher\n".to_vec(),
        ),
        ("BOOT-INF/", Vec::new()),
        ("BOOT-INF/classes/", Vec::new()),
        ("BOOT-INF/classes/com/example/App.class", noise(3_000, 18)),
        ("BOOT-INF/lib/", Vec::new()),
        ("BOOT-INF/lib/spring-core.jar", noise(120_000, 19)),
        ("BOOT-INF/lib/spring-web.jar", noise(90_000, 20)),
        ("BOOT-INF/lib/jackson.jar", noise(60_000, 21)),
    ]);
    let size = fat.len() as u64;
    let r = run(&image(vec![
        base(),
        (
            vec![dir("app"), file("app/app.jar", fat)],
            "COPY target/app.jar /app/",
            4,
        ),
    ]));
    let f = r.findings.iter().find(|f| f.id == "fat-jar").unwrap();
    assert_eq!((f.bytes, f.files), (size, 1));
    assert_eq!(f.paths[0].0, "app/app.jar");
    assert!(f.title.contains("about 3 dependency jars"), "{}", f.title);
    assert_eq!(f.lines, vec![4]);

    // Layered: lib, loader and classes copied as directories.
    let r = run(&image(vec![
        base(),
        (
            vec![
                dir("app"),
                dir("app/BOOT-INF"),
                dir("app/BOOT-INF/lib"),
                file("app/BOOT-INF/lib/spring-core.jar", noise(120_000, 19)),
            ],
            "COPY BOOT-INF/lib /app/BOOT-INF/lib",
            4,
        ),
        (
            vec![
                dir("app"),
                dir("app/BOOT-INF"),
                dir("app/BOOT-INF/classes"),
                file("app/BOOT-INF/classes/App.class", noise(3_000, 18)),
            ],
            "COPY BOOT-INF/classes /app/BOOT-INF/classes",
            5,
        ),
    ]));
    assert!(r.findings.is_empty(), "{:?}", r.findings);
    assert_eq!(r.wasted_bytes, 0);
}

#[test]
fn ci_thresholds_gate() {
    let img = image(vec![
        base(),
        (
            vec![dir("tmp"), file("tmp/x", noise(80_000, 22))],
            "RUN get",
            2,
        ),
        (vec![dir("tmp"), whiteout("tmp/x")], "RUN rm", 3),
    ]);
    let r = run(&img);
    let strict = Thresholds {
        lowest_efficiency: 0.9,
        highest_wasted_bytes: 20_000_000,
        highest_wasted_percent: 0.1,
    };
    let checks = ci_checks(&r, &strict);
    assert!(
        !checks[0].pass && checks[1].pass && !checks[2].pass,
        "{checks:?}"
    );
    let lax = Thresholds {
        lowest_efficiency: 0.2,
        highest_wasted_bytes: 100_000,
        highest_wasted_percent: 0.8,
    };
    assert!(ci_checks(&r, &lax).iter().all(|c| c.pass));
}

#[test]
fn json_and_html_carry_the_numbers() {
    let img = image(vec![
        base(),
        (
            vec![dir("tmp"), file("tmp/<x>", noise(8_000, 23))],
            "RUN get <x>",
            2,
        ),
        (vec![dir("tmp"), whiteout("tmp/<x>")], "RUN rm", 3),
    ]);
    let r = run(&img);
    let v: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(v["schema"], 2);
    assert_eq!(v["wasted_bytes"], 8_000);
    assert_eq!(v["layers"].as_array().unwrap().len(), 3);
    assert_eq!(v["wasted_paths"][0]["kind"], "removed");
    let html = render_html(&r);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("/tmp/&lt;x&gt;") && !html.contains("<x>"));
    assert!(html.contains("id=\"treemap\"") && html.contains("class=\"layer\""));
    assert!(!html.contains("<script src") && !html.contains("<link"));
}

#[test]
fn diff_counts_what_a_push_sends() {
    let one = image(vec![
        base(),
        (
            vec![dir("app"), file("app/lib.jar", noise(100_000, 24))],
            "COPY lib",
            2,
        ),
        (
            vec![dir("app"), file("app/App.class", noise(2_000, 25))],
            "COPY classes",
            3,
        ),
    ]);
    let two = image(vec![
        base(),
        (
            vec![dir("app"), file("app/lib.jar", noise(100_000, 24))],
            "COPY lib",
            2,
        ),
        (
            vec![dir("app"), file("app/App.class", noise(2_100, 26))],
            "COPY classes",
            3,
        ),
    ]);
    assert_eq!(one.metas[1].digest, two.metas[1].digest);
    let blobs = |config: &str, size: u64, metas: &[LayerMeta]| -> Vec<(String, u64)> {
        std::iter::once((config.to_owned(), size))
            .chain(metas.iter().map(|m| (m.digest.clone(), m.compressed_size)))
            .collect()
    };
    let one_blobs = blobs("sha256:aaa", 700, &one.metas);
    let two_blobs = blobs("sha256:bbb", 710, &two.metas);
    let a = DiffSide {
        name: "app:1",
        layers: &one.metas,
        config_digest: "sha256:aaa",
        blobs: &one_blobs,
        manifest_bytes: 600,
    };
    let b = DiffSide {
        name: "app:2",
        layers: &two.metas,
        config_digest: "sha256:bbb",
        blobs: &two_blobs,
        manifest_bytes: 605,
    };
    let d = diff_images(&a, &b, None);
    assert_eq!((d.shared_layers, d.new_layers), (2, 1));
    assert_eq!(d.new_layer_bytes, two.metas[2].compressed_size);
    assert_eq!(d.manifest_bytes, 605);
    assert_eq!(d.push_bytes, two.metas[2].compressed_size + 710 + 605);
    // Same config: not sent again; another platform's blobs are.
    let mut more = blobs("sha256:aaa", 700, &two.metas);
    more.push(("sha256:arm".into(), 5000));
    let c = DiffSide {
        config_digest: "sha256:aaa",
        blobs: &more,
        ..b.clone()
    };
    let d = diff_images(&a, &c, None);
    assert!(!d.config_changed);
    assert_eq!(d.push_bytes, two.metas[2].compressed_size + 5000 + 605);
    assert_eq!(d.layers[2].status, "new");
    assert_eq!(d.only_in_from, vec![one.metas[2].digest.clone()]);
}

/// A base image that wastes bytes of its own: a file duplicated in its
/// layer, and one its second layer deletes from its first.
fn wasteful_base() -> Vec<(Vec<Entry>, &'static str, usize)> {
    let lib = noise(20_000, 30);
    vec![
        (
            vec![
                dir("bin"),
                file("bin/sh", noise(30_000, 1)),
                dir("usr"),
                file("usr/lib-a.so", lib.clone()),
                file("usr/lib-b.so", lib),
                dir("tmp"),
                file("tmp/setup.tar", noise(5_000, 31)),
            ],
            "ADD rootfs.tar /",
            0,
        ),
        (
            vec![dir("tmp"), whiteout("tmp/setup.tar")],
            "RUN rm /tmp/setup.tar",
            0,
        ),
    ]
}

#[test]
fn waste_in_the_base_image_is_reported_apart_and_not_judged() {
    let mut layers = wasteful_base();
    layers.push((
        vec![dir("tmp"), file("tmp/big.tar.gz", noise(80_000, 2))],
        "RUN wget big.tar.gz",
        2,
    ));
    layers.push((
        vec![dir("tmp"), whiteout("tmp/big.tar.gz")],
        "RUN rm big.tar.gz",
        3,
    ));
    // The Dockerfile deletes a base file too: its bytes stay in the base.
    layers.push((vec![dir("usr"), whiteout("usr/lib-b.so")], "RUN rm", 4));
    let img = image(layers);
    let base = Some(BaseLayers {
        layers: 2,
        source: BaseSource::Dockerfile,
    });
    let r = run_with_base(&img, base);
    let total = 30_000 + 40_000 + 5_000 + 80_000;
    assert_eq!(r.total_file_bytes, total);
    // The total stays visible.
    assert_eq!(r.wasted_bytes, 20_000 + 5_000 + 80_000);
    // The Dockerfile's share: the archive it downloaded and deleted.
    assert_eq!(r.added.layers, 3);
    assert_eq!(r.added.file_bytes, 80_000);
    assert_eq!(
        (
            r.added.wasted_bytes,
            r.added.removed_bytes,
            r.added.duplicate_bytes
        ),
        (80_000, 80_000, 0)
    );
    assert!((r.added.wasted_percent - 1.0).abs() < 1e-9);
    // The base's: its own removal and the library the Dockerfile deleted
    // (whose duplicate is then no longer in the final filesystem).
    assert_eq!(r.base.layers, 2);
    assert_eq!(r.base.file_bytes, 75_000);
    assert_eq!(
        (
            r.base.wasted_bytes,
            r.base.removed_bytes,
            r.base.duplicate_bytes
        ),
        (25_000, 25_000, 0)
    );
    assert_eq!(r.base_source, Some(BaseSource::Dockerfile));
    assert!((r.efficiency - (1.0 - 80_000.0 / total as f64)).abs() < 1e-9);
    assert!((r.total_efficiency - (1.0 - 105_000.0 / total as f64)).abs() < 1e-9);
    assert!(r.layers[..2].iter().all(|l| l.base) && !r.layers[2].base);
    // The Dockerfile's waste comes first, the base's is marked.
    assert_eq!(r.wasted_paths[0].path, "tmp/big.tar.gz");
    assert_eq!(r.wasted_paths[0].base_bytes, 0);
    let lib = r
        .wasted_paths
        .iter()
        .find(|w| w.path == "usr/lib-b.so")
        .unwrap();
    assert_eq!(
        (lib.bytes, lib.base_bytes, lib.by_line),
        (20_000, 20_000, Some(4))
    );
    let text = render_text(&r);
    assert!(
        text.contains("80.0 kB wasted by the Dockerfile's layers 2-4"),
        "{text}"
    );
    assert!(
        text.contains("from the base image (layers 0-1, before the Dockerfile's first step): 25.0 kB wasted of 75.0 kB"),
        "{text}"
    );
    assert!(
        text.contains(
            "/usr/lib-b.so removed in layer 4 (Dockerfile:4) but kept in layer 0 [base image]"
        ),
        "{text}"
    );
    assert!(render_summary(&r)
        .contains("80.0 kB wasted by the Dockerfile (+ 25.0 kB in the base image)"));
    let v: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(v["base"]["wasted_bytes"], 25_000);
    assert_eq!(v["added"]["wasted_bytes"], 80_000);
    assert_eq!(v["base_source"], "dockerfile");
    assert_eq!(v["layers"][0]["base"], true);
    assert!(render_html(&r).contains("From the base image (2 layers"));

    // CI judges the Dockerfile's waste: 80 kB passes a 90 kB limit that
    // the whole image's 105 kB would fail.
    let t = Thresholds {
        lowest_efficiency: 0.4,
        highest_wasted_bytes: 90_000,
        highest_wasted_percent: 1.0,
    };
    assert!(
        ci_checks(&r, &t).iter().all(|c| c.pass),
        "{:?}",
        ci_checks(&r, &t)
    );
    // Without the base known, everything counts.
    let all = run(&img);
    assert_eq!(all.added.wasted_bytes, 105_000);
    assert_eq!(all.base.layers, 0);
    assert!(!ci_checks(&all, &t)[1].pass);
    assert!(render_text(&all).contains("the base image's layers are not known"));
}

#[test]
fn duplicates_inside_the_base_belong_to_the_base_and_copies_of_base_files_to_the_dockerfile() {
    let lib = noise(20_000, 30);
    let mut layers = wasteful_base();
    // The Dockerfile copies a file the base already has.
    layers.push((
        vec![dir("app"), file("app/lib.so", lib)],
        "COPY lib.so /app/",
        2,
    ));
    let r = run_with_base(
        &image(layers),
        Some(BaseLayers {
            layers: 2,
            source: BaseSource::History,
        }),
    );
    let in_base = r
        .wasted_paths
        .iter()
        .find(|w| w.path == "usr/lib-b.so")
        .unwrap();
    assert_eq!(
        (in_base.kind, in_base.base_bytes),
        (WasteKind::Duplicate, 20_000)
    );
    let copied = r
        .wasted_paths
        .iter()
        .find(|w| w.path == "app/lib.so")
        .unwrap();
    assert_eq!(
        (copied.kind, copied.base_bytes, copied.kept.as_deref()),
        (WasteKind::Duplicate, 0, Some("usr/lib-a.so"))
    );
    assert_eq!(r.base.duplicate_bytes, 20_000);
    assert_eq!(r.added.duplicate_bytes, 20_000);
    assert_eq!(r.wasted_paths[0].path, "app/lib.so");
    assert!(render_text(&r).contains("up to the last CMD/ENTRYPOINT in the history"));
}

fn hist(created_by: &str, empty: bool) -> History {
    History {
        created_by: Some(created_by.to_owned()),
        empty_layer: empty,
        ..History::default()
    }
}

#[test]
fn the_base_ends_where_the_dockerfile_starts() {
    let h = vec![
        hist("/bin/sh -c #(nop) ADD file:abc in / ", false),
        hist("/bin/sh -c #(nop)  CMD [\"bash\"]", true),
        hist("ENV PYTHON_VERSION=3.12.3", true),
        hist("RUN /bin/sh -c set -eux; apt-get update", false),
        hist("CMD [\"python3\"]", true),
        hist("WORKDIR /app", true),
        hist("COPY requirements.txt . # buildkit", false),
        hist("RUN /bin/sh -c pip install -r requirements.txt", false),
        hist("CMD [\"gunicorn\", \"app:app\"]", true),
    ];
    // The build record: the Dockerfile's first entry is history index 5.
    let lines: BTreeMap<usize, usize> = [(5, 2), (6, 3), (7, 4), (8, 5)].into_iter().collect();
    assert_eq!(
        find_base(&h, Some(&lines)),
        Some(BaseLayers {
            layers: 2,
            source: BaseSource::Dockerfile
        })
    );
    // A Dockerfile of a bare FROM: the image is its base.
    assert_eq!(
        find_base(&h, Some(&BTreeMap::new())).map(|b| b.layers),
        Some(4)
    );
    // History alone: up to the last CMD that layers are added on.
    assert_eq!(
        find_base(&h, None),
        Some(BaseLayers {
            layers: 2,
            source: BaseSource::History
        })
    );
    // BuildKit spelling, ENTRYPOINT.
    let bk = vec![
        hist("ADD alpine-minirootfs.tar.gz / # buildkit", false),
        hist("ENTRYPOINT [\"/bin/sh\"]", true),
        hist("RUN apk add --no-cache curl # buildkit", false),
    ];
    assert_eq!(find_base(&bk, None).map(|b| b.layers), Some(1));
    // The base image's own history finds its base in turn.
    assert_eq!(find_base(&h[..5], None).map(|b| b.layers), Some(1));
    // No CMD with layers after it (an imported tree, or a base alone).
    assert_eq!(find_base(&h[..2], None), None);
    assert_eq!(find_base(&[hist("import", false)], None), None);
}
