//! A resolved profile compiled to seccomp BPF for the built-in sandbox,
//! with `seccompiler` (rust-vmm).
//!
//! seccompiler builds a filter with one action for matching rules and one
//! for everything else, while a profile gives each rule its own action
//! (docker's `clone3` fails with ENOSYS, everything unlisted with EPERM).
//! The kernel runs every installed filter and keeps the most restrictive
//! answer, so a profile becomes a stack:
//!
//! 1. a base filter: every rule of the profile, whatever its action, allows;
//!    anything else gets the default action;
//! 2. one filter per other action A: the rules with action A get A, anything
//!    else is allowed.
//!
//! A call that matches a rule with action A is allowed by the base and gets
//! A from its filter; a call that matches nothing gets the default from the
//! base and is allowed by the others; so the stack answers what the profile
//! says.
//!
//! System call names are looked up for the CPU strata runs on (names of
//! other architectures are skipped, as runc and crun skip names libseccomp
//! does not know). seccompiler filters one architecture: system calls made
//! through another ABI of the same CPU (32-bit x86 `int 0x80`) kill the
//! process, where docker's profile lists those ABIs too.

use std::collections::BTreeMap;
use std::str::FromStr;

use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};

use super::{Action, Arg, LinuxSeccomp, Op, SeccompError};

/// A compiled filter, ready for `seccomp(SECCOMP_SET_MODE_FILTER)`.
pub(crate) type Program = seccompiler::BpfProgram;

const EPERM: u32 = 1;

/// The rules of one action for one system call.
#[derive(Debug)]
enum Chain {
    /// The system call matches whatever its arguments.
    Always,
    /// It matches when one of these rules does.
    AnyOf(Vec<SeccompRule>),
}

/// System call number -> its chain.
type Rules = BTreeMap<i64, Chain>;

fn add(rules: &mut Rules, nr: i64, rule: Option<SeccompRule>) {
    match (rules.get_mut(&nr), rule) {
        (Some(Chain::Always), _) => {}
        (Some(Chain::AnyOf(list)), Some(r)) => list.push(r),
        (_, None) => {
            rules.insert(nr, Chain::Always);
        }
        (None, Some(r)) => {
            rules.insert(nr, Chain::AnyOf(vec![r]));
        }
    }
}

fn action(a: Action, errno: Option<u32>) -> SeccompAction {
    match a {
        Action::Allow => SeccompAction::Allow,
        Action::Errno => SeccompAction::Errno(errno.unwrap_or(EPERM)),
        Action::Kill | Action::KillThread => SeccompAction::KillThread,
        Action::KillProcess => SeccompAction::KillProcess,
        Action::Trap => SeccompAction::Trap,
        Action::Trace => SeccompAction::Trace(errno.unwrap_or(EPERM)),
        Action::Log => SeccompAction::Log,
        // refused when the profile was resolved
        Action::Notify => SeccompAction::KillProcess,
    }
}

fn condition(a: &Arg) -> Result<Option<SeccompCondition>, SeccompError> {
    let (op, value) = match a.op {
        Op::NotEqual => (SeccompCmpOp::Ne, a.value),
        Op::LessThan => (SeccompCmpOp::Lt, a.value),
        Op::LessEqual => (SeccompCmpOp::Le, a.value),
        Op::Equal => (SeccompCmpOp::Eq, a.value),
        Op::GreaterEqual => (SeccompCmpOp::Ge, a.value),
        Op::GreaterThan => (SeccompCmpOp::Gt, a.value),
        Op::MaskedEqual => {
            // libseccomp: (arg & value) == valueTwo, which never holds when
            // valueTwo has bits outside the mask.
            if a.value_two & !a.value != 0 {
                return Ok(None);
            }
            (SeccompCmpOp::MaskedEq(a.value), a.value_two)
        }
    };
    // libseccomp (so runc and crun) compares all 64 bits of an argument
    SeccompCondition::new(a.index as u8, SeccompCmpArgLen::Qword, op, value)
        .map(Some)
        .map_err(|e| SeccompError::Compile(e.into()))
}

/// The rules an entry stands for: one rule with all its conditions, or,
/// when two conditions are on the same argument, one rule per condition
/// (runc's reading of such entries). `None` inside: no condition.
fn entry_rules(args: &[Arg]) -> Result<Vec<Option<SeccompRule>>, SeccompError> {
    let rule = |conds: Vec<SeccompCondition>| {
        SeccompRule::new(conds).map_err(|e| SeccompError::Compile(e.into()))
    };
    if args.is_empty() {
        return Ok(vec![None]);
    }
    let mut indexes: Vec<u32> = args.iter().map(|a| a.index).collect();
    indexes.sort_unstable();
    indexes.dedup();
    if indexes.len() == args.len() {
        let mut conds = Vec::new();
        for a in args {
            match condition(a)? {
                Some(c) => conds.push(c),
                None => return Ok(Vec::new()), // can never match
            }
        }
        return Ok(vec![Some(rule(conds)?)]);
    }
    let mut rules = Vec::new();
    for a in args {
        if let Some(c) = condition(a)? {
            rules.push(Some(rule(vec![c])?));
        }
    }
    Ok(rules)
}

/// The filters to install, in order (see the module doc). Empty when the
/// profile allows everything.
pub(crate) fn compile(profile: &LinuxSeccomp) -> Result<Vec<Program>, SeccompError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|_| {
        SeccompError::Invalid(format!(
            "the built-in sandbox cannot apply seccomp filters on {}",
            std::env::consts::ARCH
        ))
    })?;
    let default = action(profile.default_action, profile.default_errno_ret);
    let mut all = Rules::new();
    let mut by_action: Vec<(SeccompAction, Rules)> = Vec::new();
    for entry in &profile.syscalls {
        let act = action(entry.action, entry.errno_ret);
        let rules = entry_rules(&entry.args)?;
        for name in &entry.names {
            let Ok(nr) = syscalls::Sysno::from_str(name) else {
                continue; // not a system call of this architecture
            };
            let nr = i64::from(nr.id());
            for r in &rules {
                add(&mut all, nr, r.clone());
                if act != SeccompAction::Allow {
                    let i = match by_action.iter().position(|(a, _)| *a == act) {
                        Some(i) => i,
                        None => {
                            by_action.push((act.clone(), Rules::new()));
                            by_action.len() - 1
                        }
                    };
                    add(&mut by_action[i].1, nr, r.clone());
                }
            }
        }
    }
    let mut filters = Vec::new();
    if default != SeccompAction::Allow {
        filters.push((all, default, SeccompAction::Allow));
    }
    for (act, rules) in by_action {
        filters.push((rules, SeccompAction::Allow, act));
    }
    filters
        .into_iter()
        .map(|(rules, mismatch, matched)| {
            let rules = rules
                .into_iter()
                .map(|(nr, chain)| match chain {
                    Chain::Always => (nr, Vec::new()),
                    Chain::AnyOf(list) => (nr, list),
                })
                .collect();
            let filter = SeccompFilter::new(rules, mismatch, matched, arch)
                .map_err(|e| SeccompError::Compile(e.into()))?;
            Program::try_from(filter).map_err(|e| SeccompError::Compile(e.into()))
        })
        .collect()
}
