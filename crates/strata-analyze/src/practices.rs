//! The practices every lint rule and image finding refers to, as published
//! in `docs/practices.md`: one section per practice, each with a stable
//! anchor, so a finding can link to the text that explains it.
//!
//! ```
//! use strata_analyze::practices;
//!
//! let p = practices::by_number(4).unwrap();
//! assert_eq!(p.anchor, "same-layer");
//! assert_eq!(
//!     p.url(),
//!     "https://github.com/strata-build/strata/blob/main/docs/practices.md#same-layer"
//! );
//! ```

/// Where `docs/practices.md` is published; findings link to
/// `DOC_URL#anchor`.
pub const DOC_URL: &str = "https://github.com/strata-build/strata/blob/main/docs/practices.md";

/// One practice of `docs/practices.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Practice {
    /// Its number (1-based, as in the document's headings).
    pub number: u8,
    /// The section's anchor (stable: links in old reports keep working).
    pub anchor: &'static str,
    /// The section's title.
    pub title: &'static str,
}

impl Practice {
    /// The link to its section.
    pub fn url(&self) -> String {
        format!("{DOC_URL}#{}", self.anchor)
    }
}

/// Every practice, in document order.
pub static ALL: &[Practice] = &[
    Practice {
        number: 1,
        anchor: "split-layers",
        title: "Split what changes from what does not",
    },
    Practice {
        number: 2,
        anchor: "order",
        title: "Order instructions from least to most often changed",
    },
    Practice {
        number: 3,
        anchor: "lock-files",
        title: "Install from the lock file",
    },
    Practice {
        number: 4,
        anchor: "same-layer",
        title: "Delete in the layer that created",
    },
    Practice {
        number: 5,
        anchor: "multi-stage",
        title: "Build in one stage, ship another",
    },
    Practice {
        number: 6,
        anchor: "small-base",
        title: "Start from a small base that fits",
    },
    Practice {
        number: 7,
        anchor: "package-managers",
        title: "Install only what runs, and leave no cache",
    },
    Practice {
        number: 8,
        anchor: "purposeful-instructions",
        title: "Fewer, purposeful instructions",
    },
    Practice {
        number: 9,
        anchor: "build-context",
        title: "Keep the build context small",
    },
    Practice {
        number: 10,
        anchor: "rebuild",
        title: "Rebuild often, from fresh bases",
    },
    Practice {
        number: 11,
        anchor: "volumes",
        title: "Data goes in volumes",
    },
    Practice {
        number: 12,
        anchor: "one-process",
        title: "One main process per container",
    },
    Practice {
        number: 13,
        anchor: "pin",
        title: "Name and pin what you deploy",
    },
    Practice {
        number: 14,
        anchor: "reproducible",
        title: "Same inputs, same image",
    },
];

/// The practice with this number.
pub fn by_number(n: u8) -> Option<&'static Practice> {
    ALL.iter().find(|p| p.number == n)
}

/// The practice with this anchor.
pub fn by_anchor(anchor: &str) -> Option<&'static Practice> {
    ALL.iter().find(|p| p.anchor == anchor)
}

/// The link to a section of `docs/practices.md` by anchor (also for the
/// sections that are not practices, such as `base-image`).
pub fn url(anchor: &str) -> String {
    format!("{DOC_URL}#{anchor}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_practice_has_a_unique_anchor_and_a_section() {
        let doc = include_str!("../../../docs/practices.md");
        for (k, p) in ALL.iter().enumerate() {
            assert_eq!(p.number as usize, k + 1);
            assert_eq!(by_anchor(p.anchor), Some(p));
            let tag = format!("<a id=\"{}\"></a>", p.anchor);
            let at = doc
                .find(&tag)
                .unwrap_or_else(|| panic!("docs/practices.md has no {tag}"));
            let heading = doc[at..].lines().nth(1).unwrap_or("");
            assert_eq!(
                heading,
                format!("## {}. {}", p.number, p.title),
                "the heading after {tag}"
            );
        }
        for extra in ["base-image", "pipefail"] {
            assert!(
                doc.contains(&format!("<a id=\"{extra}\"></a>")),
                "docs/practices.md has no {extra} section"
            );
        }
    }
}
