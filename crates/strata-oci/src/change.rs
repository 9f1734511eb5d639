//! `--change` instructions applied to an image config (`strata import -c`).

use std::collections::BTreeMap;

use crate::{ContainerConfig, Error, Result};

/// Apply one Dockerfile-style instruction (CMD, ENTRYPOINT, ENV, EXPOSE,
/// LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL) to `config`. Arguments are a
/// JSON array (exec form) or plain text (shell form for CMD/ENTRYPOINT,
/// `/bin/sh -c TEXT`).
pub fn apply_change(config: &mut ContainerConfig, change: &str) -> Result<()> {
    let change = change.trim();
    let (kw, rest) = change
        .split_once(char::is_whitespace)
        .unwrap_or((change, ""));
    let rest = rest.trim();
    let bad = |why: &str| Error::invalid(format!("--change {change:?}: {why}"));
    let json_array = |s: &str| -> Option<Vec<String>> {
        if s.starts_with('[') {
            serde_json::from_str::<Vec<String>>(s).ok()
        } else {
            None
        }
    };
    let words = |s: &str| -> Vec<String> { s.split_whitespace().map(unquote).collect() };
    match kw.to_ascii_uppercase().as_str() {
        "CMD" | "ENTRYPOINT" => {
            if rest.is_empty() {
                return Err(bad("needs a command"));
            }
            let argv = json_array(rest).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into(), rest.into()]);
            if kw.eq_ignore_ascii_case("CMD") {
                config.cmd = Some(argv);
            } else {
                config.entrypoint = Some(argv);
                // docker: a new ENTRYPOINT resets an inherited CMD
            }
        }
        "ENV" => {
            let pairs = parse_pairs(rest).ok_or_else(|| bad("expected KEY=VALUE [KEY=VALUE...] or KEY VALUE"))?;
            let env = config.env.get_or_insert_with(Vec::new);
            for (k, v) in pairs {
                env.retain(|e| e.split_once('=').map_or(e.as_str(), |(ek, _)| ek) != k);
                env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => {
            let pairs = parse_pairs(rest).ok_or_else(|| bad("expected KEY=VALUE [KEY=VALUE...]"))?;
            let labels = config.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in pairs {
                labels.insert(k, v);
            }
        }
        "EXPOSE" => {
            if rest.is_empty() {
                return Err(bad("needs a port"));
            }
            let ports = config.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in words(rest) {
                let (num, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                let valid = |n: &str| n.parse::<u16>().is_ok();
                let ok_num = match num.split_once('-') {
                    Some((a, b)) => valid(a) && valid(b),
                    None => valid(num),
                };
                if !ok_num || !matches!(proto, "tcp" | "udp" | "sctp") {
                    return Err(bad(&format!("invalid port {p:?}")));
                }
                ports.insert(format!("{num}/{proto}"), serde_json::json!({}));
            }
        }
        "VOLUME" => {
            let vols = json_array(rest).unwrap_or_else(|| words(rest));
            if vols.is_empty() {
                return Err(bad("needs a path"));
            }
            let v = config.volumes.get_or_insert_with(BTreeMap::new);
            for p in vols {
                v.insert(p, serde_json::json!({}));
            }
        }
        "USER" | "WORKDIR" | "STOPSIGNAL" => {
            if rest.is_empty() {
                return Err(bad("needs a value"));
            }
            let v = Some(unquote(rest));
            match kw.to_ascii_uppercase().as_str() {
                "USER" => config.user = v,
                "WORKDIR" => config.working_dir = v,
                _ => config.stop_signal = v,
            }
        }
        _ => {
            return Err(bad(
                "only CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR and STOPSIGNAL can be changed",
            ))
        }
    }
    Ok(())
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return s[1..s.len() - 1].to_owned();
        }
    }
    s.to_owned()
}

/// `K=V K2="v 2"` or the legacy `K V...` form.
fn parse_pairs(s: &str) -> Option<Vec<(String, String)>> {
    if s.is_empty() {
        return None;
    }
    let first = s.split_whitespace().next()?;
    if !first.contains('=') {
        let (k, v) = s.split_once(char::is_whitespace)?;
        return Some(vec![(k.to_owned(), unquote(v))]);
    }
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            if c.is_whitespace() {
                return None;
            }
            key.push(c);
            chars.next();
        }
        chars.next()?; // '='
        let mut val = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => val.push(c),
                None if c == '"' || c == '\'' => quote = Some(c),
                None if c.is_whitespace() => break,
                None if c == '\\' => {
                    chars.next();
                    if let Some(&n) = chars.peek() {
                        val.push(n);
                    }
                }
                None => val.push(c),
            }
            chars.next();
        }
        if key.is_empty() || quote.is_some() {
            return None;
        }
        out.push((unquote(&key), val));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes() {
        let mut c = ContainerConfig::default();
        for ch in [
            r#"CMD ["sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /init --verbose",
            r#"ENV A=1 B="two words""#,
            "ENV C three words",
            "ENV A=replaced",
            "EXPOSE 80 53/udp",
            r#"LABEL org.x="y z" k=v"#,
            "USER app",
            "WORKDIR /srv",
            "VOLUME /data /cache",
            "STOPSIGNAL SIGQUIT",
        ] {
            apply_change(&mut c, ch).unwrap_or_else(|e| panic!("{ch}: {e}"));
        }
        assert_eq!(c.cmd.as_deref().unwrap(), ["sh", "-c", "echo hi"]);
        assert_eq!(
            c.entrypoint.as_deref().unwrap(),
            ["/bin/sh", "-c", "/init --verbose"]
        );
        assert_eq!(
            c.env.as_deref().unwrap(),
            ["B=two words", "C=three words", "A=replaced"]
        );
        assert!(c.exposed_ports.as_ref().unwrap().contains_key("53/udp"));
        assert!(c.exposed_ports.as_ref().unwrap().contains_key("80/tcp"));
        assert_eq!(c.labels.as_ref().unwrap()["org.x"], "y z");
        assert_eq!(c.user.as_deref(), Some("app"));
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert_eq!(c.volumes.as_ref().unwrap().len(), 2);
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
        for bad in ["RUN echo", "EXPOSE abc", "CMD", "ENV", "LABEL =x"] {
            let e = apply_change(&mut c, bad).unwrap_err();
            assert!(
                e.to_string().contains(bad.split(' ').next().unwrap()),
                "{bad}: {e}"
            );
        }
    }
}
