//! The rule table: stable ids, names, default severities, the practice
//! each rule checks and the other linters' codes for the same check.
//!
//! Ids are `SL` + three digits, grouped by topic and never reused:
//! `SL0xx` layers and ordering, `SL1xx` package managers, `SL2xx` base
//! images and stages, `SL3xx` build context, `SL4xx` runtime config,
//! `SL9xx` the linter itself. Each rule also has a kebab-case name; both
//! (and the aliases) are accepted wherever a rule is named: pragmas,
//! `--ignore`, the config file.

use serde::Serialize;

use super::findings::Severity;

/// Where `docs/lint.md` (the rule table) is published.
pub const LINT_DOC_URL: &str = "https://github.com/strata-build/strata/blob/main/docs/lint.md";

/// A lint rule's metadata.
#[derive(Debug, Serialize)]
pub struct Rule {
    /// Stable id, e.g. `SL101`.
    pub id: &'static str,
    /// Stable kebab-case name, e.g. `apt-no-install-recommends`.
    pub name: &'static str,
    /// Default severity.
    pub severity: Severity,
    /// The number of the practice it checks (`docs/practices.md`; 0 for
    /// none).
    pub practice: u8,
    /// One line: what it detects.
    pub short: &'static str,
    /// Why it matters (one line, citing the practice).
    pub why: &'static str,
    /// How to fix it, in general.
    pub help: &'static str,
    /// Other linters' codes covering the same check.
    pub aliases: &'static [&'static str],
}

macro_rules! rules {
    ($($konst:ident = $id:literal $name:literal $sev:ident $pr:literal [$($alias:literal),*]
        $short:literal, $why:literal, $help:literal;)*) => {
        $(
            #[doc = $short]
            pub static $konst: Rule = Rule {
                id: $id,
                name: $name,
                severity: Severity::$sev,
                practice: $pr,
                short: $short,
                why: $why,
                help: $help,
                aliases: &[$($alias),*],
            };
        )*
        /// Every rule, in id order.
        pub static ALL: &[&Rule] = &[$(&$konst),*];
    };
}

rules! {
    RUN_CHAINABLE = "SL001" "run-chainable" Info 8 ["DL3059"]
        "consecutive RUN instructions that could be one",
        "practice 8: each RUN is a layer; related commands chained in one RUN make fewer, purposeful layers",
        "join the commands with `&&` in one RUN (`strata lint --fix` does it when it is safe)";
    CD_IN_RUN = "SL002" "cd-in-run" Warning 8 ["DL3003"]
        "`cd` inside RUN instead of WORKDIR",
        "practice 8: WORKDIR sets the directory for every later instruction and is free; `cd` only lasts one RUN",
        "use `WORKDIR /path` before the RUN";
    SOURCE_BEFORE_DEPS = "SL003" "source-before-dependencies" Warning 2 []
        "the application source is copied before the dependency install",
        "practice 2: any source change then misses the cache of the install and every dependency is reinstalled",
        "copy the dependency manifest first, install, then copy the source";
    LOCKFILE_NOT_COPIED = "SL004" "lockfile-not-copied" Warning 3 []
        "dependencies installed without the lock file that exists in the context",
        "practice 3: without the lock file the install resolves versions anew and they drift between builds",
        "copy the lock file with the manifest, before the install";
    LOCKFILE_NOT_ENFORCED = "SL005" "lockfile-not-enforced" Warning 3 []
        "the install does not enforce the lock file",
        "practice 3: an install that may update the lock file does not give the same versions on every build",
        "use the package manager's locked install (`npm ci`, `yarn install --frozen-lockfile`, `cargo build --locked`, `pipenv install --deploy`, pinned requirements or `--require-hashes`)";
    DELETED_LATER = "SL006" "deleted-in-later-layer" Warning 4 []
        "a file downloaded in one layer is deleted in a later one",
        "practice 4: the file still takes its full size in the layer that created it; delete in the same layer",
        "download, use and delete the file in the same RUN (or stream it)";
    DOWNLOAD_THEN_EXTRACT = "SL007" "download-then-extract" Info 4 []
        "an archive is downloaded to a file and then extracted",
        "practice 4: streaming (`curl -fsSL URL | tar -xz`) never writes the archive at all",
        "pipe the download into tar: `curl -fsSL URL | tar -xzf -` or `wget -O - URL | tar -xzf -`";
    PIPE_WITHOUT_PIPEFAIL = "SL008" "pipe-without-pipefail" Warning 4 ["DL4006"]
        "a pipe in RUN without `set -o pipefail`",
        "practice 4: a pipe's status is its last command's, so `curl URL | tar -x` succeeds with a failed download and the layer is cached broken",
        "set a shell with pipefail before the RUN: `SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]` (alpine: `[\"/bin/ash\", \"-o\", \"pipefail\", \"-c\"]`), or start the RUN with `set -o pipefail &&`";
    APT_NO_RECOMMENDS = "SL101" "apt-no-install-recommends" Warning 7 ["DL3015"]
        "apt-get install without --no-install-recommends",
        "practice 7: recommended packages are rarely needed in an image and can double its size",
        "add `--no-install-recommends` to the install";
    APT_LISTS = "SL102" "apt-lists-not-removed" Warning 7 ["DL3009"]
        "apt lists are not removed in the RUN that downloaded them",
        "practice 7 (and 4): the package lists (tens of MB) stay in the layer unless removed in the same RUN",
        "end the RUN with `&& rm -rf /var/lib/apt/lists/*`";
    APT_UPDATE_ALONE = "SL103" "apt-update-alone" Warning 7 []
        "`apt-get update` in a RUN without the install",
        "practice 7: a cached `apt-get update` layer is reused with stale lists when the install line changes",
        "chain `apt-get update && apt-get install ...` in one RUN";
    PKG_UPGRADE = "SL104" "package-upgrade" Warning 7 ["DL3005"]
        "the base image's packages are upgraded in the image",
        "practice 7 (and 10): upgrades make the image unreproducible and large; rebuild on a fresh base instead",
        "remove the upgrade and rebuild with a newer base image (`--no-cache`, practice 10)";
    APK_NO_CACHE = "SL105" "apk-no-cache" Warning 7 ["DL3019"]
        "apk add without --no-cache",
        "practice 7: apk keeps its index in /var/cache/apk in the layer unless told not to",
        "use `apk add --no-cache`";
    RPM_CLEAN = "SL106" "rpm-cache-not-cleaned" Warning 7 ["DL3032", "DL3040"]
        "dnf/yum/microdnf install without cleaning the cache in the same RUN",
        "practice 7: the package cache stays in the layer unless cleaned in the same RUN",
        "end the RUN with `&& dnf clean all` (or `yum clean all`), or use `--setopt=keepcache=0`";
    PIP_NO_CACHE = "SL107" "pip-no-cache-dir" Warning 7 ["DL3042"]
        "pip install without --no-cache-dir",
        "practice 7: pip's download cache stays in the layer",
        "add `--no-cache-dir` (or `ENV PIP_NO_CACHE_DIR=1`)";
    UNPINNED = "SL108" "unpinned-package" Info 13 ["DL3008", "DL3018", "DL3013", "DL3016", "DL3028", "DL3033", "DL3041", "DL3037"]
        "a package installed without a version",
        "practice 13: unpinned packages change under the same Dockerfile; pin what is deployed",
        "pin the version (`pkg=1.2.3`, `pkg==1.2.3`, `pkg-1.2.3`) or install from a lock file";
    BUILD_TOOLS_FINAL = "SL201" "build-tools-in-final-stage" Warning 5 []
        "build tools installed in the stage that becomes the image",
        "practice 5: compilers, SDKs and dev dependencies ship in the image unless the build runs in a separate stage",
        "build in a `builder` stage and `COPY --from=builder` only the results into a small final stage";
    PYTHON_ALPINE = "SL202" "python-on-alpine" Warning 6 []
        "Python on an alpine (musl) base",
        "practice 6: PyPI wheels are built for glibc, so pip compiles from source on musl (minutes to hours)",
        "use `python:<version>-slim`";
    FROM_NO_TAG = "SL203" "from-untagged" Warning 13 ["DL3006"]
        "FROM without a tag",
        "practice 13: an implicit `latest` changes under you; pin a meaningful tag (or a digest)",
        "write the tag, e.g. `FROM debian:bookworm-slim`";
    FROM_LATEST = "SL204" "from-latest" Warning 13 ["DL3007"]
        "FROM with the `latest` tag",
        "practice 13: `latest` is not a version; pin a meaningful tag (or a digest)",
        "replace `latest` with a version tag";
    COPY_NO_IGNORE = "SL301" "copy-all-without-dockerignore" Warning 9 []
        "the whole context is copied and there is no .dockerignore",
        "practice 9: every file of the context is uploaded and any change busts the cache",
        "add a .dockerignore (or copy named files)";
    IGNORE_INCOMPLETE = "SL302" "dockerignore-incomplete" Warning 9 []
        "a copied directory holds VCS data, dependencies or build output that no .dockerignore pattern excludes",
        "practice 9: VCS data, dependencies and build outputs in the context bust the cache and bloat the upload",
        "add the directory to the .dockerignore";
    FAT_JAR = "SL303" "fat-jar-single-layer" Warning 1 []
        "a fat jar copied as one file",
        "practice 1: the whole jar is one layer, re-pushed on every code change",
        "extract the jar (`java -Djarmode=tools -jar app.jar extract --layers`, or unzip) and copy BOOT-INF/lib, META-INF, org and BOOT-INF/classes in that order";
    ADD_LOCAL = "SL304" "add-local-file" Warning 8 ["DL3020"]
        "ADD for a local file or directory that COPY would copy the same",
        "practice 8: ADD also downloads URLs and unpacks archives; COPY says that the files are only copied",
        "use COPY (keep ADD for URLs, git repositories and local archives it should unpack)";
    SHELL_FORM = "SL401" "shell-form-command" Warning 12 ["DL3025", "JSONArgsRecommended"]
        "CMD/ENTRYPOINT in shell form",
        "practice 12: shell form runs `/bin/sh -c`, so the program is not PID 1 and does not receive signals",
        "use the exec (JSON) form: `CMD [\"prog\", \"arg\"]`";
    MULTI_PROCESS = "SL402" "multiple-main-processes" Warning 12 []
        "several main processes started by CMD/ENTRYPOINT",
        "practice 12: one main process per container; run sidecars for the rest",
        "run one process per container (and one container per process)";
    NO_VOLUME = "SL403" "data-without-volume" Warning 11 []
        "a log, upload or data directory is written without a VOLUME",
        "practice 11: runtime data belongs in volumes, not in the image or the container's writable layer",
        "declare `VOLUME <dir>` (and mount one at run time)";
    SECRET = "SL404" "secret-in-arg-env" Error 13 ["SecretsUsedInArgOrEnv"]
        "a secret passed in ARG or ENV",
        "practice 13/14: ARG and ENV values are stored in the image config and history for anyone who pulls it",
        "use a secret mount: `RUN --mount=type=secret,id=NAME ...`";
    MAINTAINER = "SL405" "maintainer-deprecated" Warning 8 ["DL4000"]
        "MAINTAINER is deprecated",
        "practice 8: MAINTAINER only sets a deprecated config field; metadata belongs in labels, which tools read",
        "use `LABEL org.opencontainers.image.authors=\"name <email>\"`";
    PARSE_ERROR = "SL900" "parse-error" Error 0 []
        "the Dockerfile does not parse",
        "the builder would refuse it too",
        "fix the syntax error";
}

impl Rule {
    /// The anchor of its section in `docs/practices.md` (None for rules
    /// about the linter itself).
    pub fn doc_anchor(&self) -> Option<&'static str> {
        if self.id == PIPE_WITHOUT_PIPEFAIL.id {
            return Some("pipefail");
        }
        crate::practices::by_number(self.practice).map(|p| p.anchor)
    }

    /// Where its explanation is: its section of `docs/practices.md`, or the
    /// rule table of `docs/lint.md` for the linter's own rules.
    pub fn doc_url(&self) -> String {
        match self.doc_anchor() {
            Some(a) => crate::practices::url(a),
            None => format!("{LINT_DOC_URL}#rule-ids"),
        }
    }
}

/// Finds a rule by id or name (case-insensitive).
pub fn find(key: &str) -> Option<&'static Rule> {
    ALL.iter()
        .copied()
        .find(|r| r.id.eq_ignore_ascii_case(key) || r.name.eq_ignore_ascii_case(key))
}
