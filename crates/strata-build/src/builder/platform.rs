//! Per-stage platform concerns of the builder: a RUN for a foreign
//! architecture is checked against binfmt_misc before it runs.

use super::*;

impl Shared<'_> {
    /// Fails fast, with the fix, when the stage's platform is foreign and
    /// no qemu is registered for it (a cached RUN never gets here).
    pub(super) fn check_emulation(&self, st: &StageState) -> Result<()> {
        let platform = &self.plan.stages[st.index].platform;
        crate::emulation::check(platform, &self.opts.binfmt_dir)?;
        Ok(())
    }
}
