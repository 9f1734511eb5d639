//! The state of a stage while its instructions run.

use super::*;

/// A stage being built.
pub(super) struct StageState {
    pub(super) index: usize,
    pub(super) label: String,
    pub(super) total: usize,
    pub(super) config: ImageConfig,
    pub(super) layers: Vec<Layer>,
    pub(super) view: Vec<ViewLayer>,
    pub(super) key: Digest,
    /// ARGs declared in this stage, in order, with their values.
    pub(super) args: Vec<(String, Option<String>)>,
    pub(super) cmd_set: bool,
    pub(super) first_change: Option<(String, String)>,
    /// Whether an earlier step of the stage had a record of its last build.
    pub(super) has_records: bool,
    /// The step being built: its Dockerfile text and which occurrence of
    /// that text in the stage it is (for records that survive insertions).
    pub(super) current: Option<(String, usize)>,
    /// How many times each text occurred so far in the stage.
    pub(super) seen: HashMap<String, usize>,
    pub(super) no_cache: bool,
    pub(super) lines: BTreeMap<usize, usize>,
}

impl StageState {
    pub(super) fn step_label(&self, step: usize) -> String {
        if self.label.is_empty() {
            format!("[{step}/{}]", self.total)
        } else {
            format!("[{} {step}/{}]", self.label, self.total)
        }
    }

    pub(super) fn cfg(&mut self) -> &mut ContainerConfig {
        self.config
            .config
            .get_or_insert_with(ContainerConfig::default)
    }

    /// Variables for expansion: build args in scope, then ENV over them.
    pub(super) fn expand_env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for (k, v) in &self.args {
            if let Some(v) = v {
                env.insert(k.clone(), v.clone());
            }
        }
        for e in self.env_list() {
            let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
            env.insert(k.to_owned(), v.to_owned());
        }
        env
    }

    pub(super) fn env_list(&self) -> Vec<String> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.env.clone())
            .unwrap_or_default()
    }

    pub(super) fn set_env(&mut self, key: &str, value: &str) {
        let env = self.cfg().env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        match env.iter_mut().find(|e| e.split('=').next() == Some(key)) {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
    }

    pub(super) fn workdir(&self) -> String {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_owned())
    }

    pub(super) fn user(&self) -> String {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_default()
    }

    pub(super) fn shell(&self) -> Vec<String> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.shell.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".to_owned(), "-c".to_owned()])
    }

    pub(super) fn merged(&self) -> MergedView {
        MergedView::of(self.view.clone())
    }

    pub(super) fn push_history(
        &mut self,
        created_by: String,
        empty: bool,
        epoch: i64,
        line: usize,
    ) {
        let h = History {
            created: Some(format_rfc3339(epoch)),
            created_by: Some(created_by),
            comment: Some(HISTORY_COMMENT.to_owned()),
            empty_layer: empty,
            ..History::default()
        };
        self.config.history.push(h);
        self.lines.insert(self.config.history.len() - 1, line);
    }
}
