//! Region names checked before any call: a typo such as `us-east1` otherwise surfaces as a
//! connection error to a host that does not exist, long after the cause.

use regex::Regex;

/// Checks one region name; the error names the fix.
pub fn check_region(region: &str) -> Result<(), String> {
    let valid = Regex::new(
        r"^(us|eu|ap|sa|ca|me|af|il|mx|cn)(-gov|-iso[a-z]?)?-(north|south|east|west|central|northeast|southeast|northwest|southwest)-[0-9]{1,2}$",
    )
    .expect("static regex");
    if valid.is_match(region) {
        return Ok(());
    }
    let missing_dash =
        Regex::new(r"^([a-z]{2}(?:-gov)?-[a-z]+)([0-9]{1,2})$").expect("static regex");
    let suggestion = missing_dash
        .captures(region)
        .map(|c| format!("{}-{}", &c[1], &c[2]))
        .filter(|s| valid.is_match(s));
    Err(match suggestion {
        Some(fixed) => format!("region {region:?} is not an AWS region name; did you mean {fixed:?}?"),
        None => format!(
            "region {region:?} is not an AWS region name; use one like \"us-east-1\" or \"eu-west-1\""
        ),
    })
}

/// Problems in an AWS CLI `config` file's `region` settings: `(profile, line, message)`.
pub fn lint_config(text: &str) -> Vec<(String, usize, String)> {
    let mut profile = String::from("default");
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            profile = section
                .trim()
                .strip_prefix("profile ")
                .unwrap_or(section.trim())
                .trim()
                .to_string();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() == "region" {
            if let Err(message) = check_region(value.trim()) {
                problems.push((profile.clone(), index + 1, message));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_caught_with_the_fix() {
        assert!(check_region("us-east-1").is_ok());
        assert!(check_region("us-gov-west-1").is_ok());
        assert!(check_region("ap-southeast-2").is_ok());
        let err = check_region("us-east1").unwrap_err();
        assert!(err.contains("did you mean \"us-east-1\""), "{err}");
        let err = check_region("useast").unwrap_err();
        assert!(err.contains("use one like"), "{err}");
        let problems =
            lint_config("[default]\nregion = us-east-1\n[profile dev]\nregion = eu-west1\n");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, "dev");
        assert_eq!(problems[0].1, 4);
        assert!(problems[0].2.contains("\"eu-west-1\""));
    }
}
