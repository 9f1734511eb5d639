//! Docker's rules for combining ENTRYPOINT, CMD and the user's arguments.

/// The command line of a container, with `docker run` semantics:
///
/// - `entrypoint` and `cmd` come from the image config (shell forms are
///   already wrapped as `["/bin/sh", "-c", "..."]` there);
/// - `user_args` (the arguments after the image name) replace `cmd`;
/// - `entrypoint_override` is `--entrypoint`: `Some("")` clears the
///   entrypoint, `Some(prog)` replaces it with the single program `prog`
///   (not split on spaces, as docker does), and either way the image's `cmd`
///   is dropped, because a new entrypoint resets the inherited CMD.
///
/// An empty result means there is nothing to run (docker's "no command
/// specified"); the caller reports that.
///
/// ```
/// use strata_sandbox::container_args;
/// let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
/// let ep = s(&["/entry.sh"]);
/// let cmd = s(&["serve"]);
/// assert_eq!(container_args(&ep, &cmd, &[], None), s(&["/entry.sh", "serve"]));
/// assert_eq!(container_args(&ep, &cmd, &s(&["sh"]), None), s(&["/entry.sh", "sh"]));
/// assert_eq!(container_args(&ep, &cmd, &[], Some("ls")), s(&["ls"]));
/// ```
pub fn container_args(
    entrypoint: &[String],
    cmd: &[String],
    user_args: &[String],
    entrypoint_override: Option<&str>,
) -> Vec<String> {
    let (entrypoint, default_cmd): (Vec<String>, &[String]) = match entrypoint_override {
        Some("") => (Vec::new(), &[]),
        Some(prog) => (vec![prog.to_string()], &[]),
        None => (entrypoint.to_vec(), cmd),
    };
    let tail = if user_args.is_empty() {
        default_cmd
    } else {
        user_args
    };
    let mut args = entrypoint;
    args.extend(tail.iter().cloned());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn docker_rules() {
        let sh_cmd = v(&["/bin/sh", "-c", "echo $HOME"]);
        // (entrypoint, cmd, user args, --entrypoint, expected)
        type Case<'a> = (
            &'a [&'a str],
            &'a [String],
            &'a [&'a str],
            Option<&'a str>,
            &'a [&'a str],
        );
        let cases: &[Case] = &[
            // CMD only
            (&[], &sh_cmd, &[], None, &["/bin/sh", "-c", "echo $HOME"]),
            // args replace CMD
            (&[], &sh_cmd, &["ls", "-l"], None, &["ls", "-l"]),
            // ENTRYPOINT + CMD
            (&["/e"], &v(&["a", "b"]), &[], None, &["/e", "a", "b"]),
            // ENTRYPOINT + args: args replace CMD, entrypoint kept
            (&["/e"], &v(&["a"]), &["x"], None, &["/e", "x"]),
            // ENTRYPOINT only
            (&["/e", "-v"], &[], &[], None, &["/e", "-v"]),
            // --entrypoint resets CMD
            (&["/e"], &v(&["a"]), &[], Some("/bin/ls"), &["/bin/ls"]),
            // --entrypoint with args
            (
                &["/e"],
                &v(&["a"]),
                &["-l", "/"],
                Some("ls"),
                &["ls", "-l", "/"],
            ),
            // --entrypoint is one program, not split
            (&[], &[], &[], Some("ls -l"), &["ls -l"]),
            // --entrypoint "" clears entrypoint and CMD: args alone
            (&["/e"], &v(&["a"]), &["sh"], Some(""), &["sh"]),
            // nothing at all
            (&[], &[], &[], None, &[]),
            (&["/e"], &v(&["a"]), &[], Some(""), &[]),
        ];
        for (i, (ep, cmd, args, ov, want)) in cases.iter().enumerate() {
            let got = container_args(&v(ep), cmd, &v(args), *ov);
            assert_eq!(got, v(want), "case {i}");
        }
    }
}
