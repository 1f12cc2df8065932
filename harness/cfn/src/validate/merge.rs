//! One row per control: when several tools report the same control on the same resource of the
//! same template (a Control Tower rule, a checkov check, a rule of our pack), the report keeps
//! one finding — the first in report order — and lists the others' `check/rule` in its `sources`.
//! Which rules are the same control is data, below (each class checked against the tools' own
//! descriptions); a suppression of any of them applies to the merged row.

use super::Finding;

/// Rules of different tools that check the same control (`check/rule`).
pub const SAME_CONTROL: &[&[&str]] = &[
    // S3 server access logging
    &[
        "control-tower/s3_bucket_logging_enabled_check",
        "checkov/CKV_AWS_18",
    ],
    // RDS enhanced monitoring
    &[
        "control-tower/rds_instance_enhanced_monitoring_enabled_check",
        "checkov/CKV_AWS_118",
    ],
    // ELBv2 access logs
    &[
        "control-tower/elbv2_logging_enabled_check",
        "checkov/CKV_AWS_91",
    ],
    // CloudWatch log group encrypted with KMS
    &[
        "control-tower/cloudwatch_log_group_encrypted_check",
        "checkov/CKV_AWS_158",
    ],
    // ALB listeners: HTTP only to redirect to HTTPS
    &[
        "guard/alb_http_only_redirects",
        "control-tower/alb_http_to_https_redirection_check",
        "checkov/CKV_AWS_2",
    ],
    // ALB drops invalid header fields
    &[
        "control-tower/alb_http_drop_invalid_header_enabled_check",
        "checkov/CKV_AWS_131",
    ],
    // ELBv2 deletion protection
    &[
        "control-tower/elbv2_deletion_protection_enabled_check",
        "checkov/CKV_AWS_150",
    ],
];

fn id(f: &Finding) -> String {
    format!("{}/{}", f.check, f.rule)
}

fn class_of(rule: &str) -> Option<usize> {
    SAME_CONTROL.iter().position(|class| class.contains(&rule))
}

/// Merges the findings of the same control on the same resource into one row.
pub fn across_tools(findings: Vec<Finding>) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    for f in findings {
        let class = class_of(&id(&f));
        let same = class.and_then(|class| {
            out.iter_mut().find(|kept| {
                kept.file == f.file
                    && kept.resource.is_some()
                    && kept.resource == f.resource
                    && id(kept) != id(&f)
                    && class_of(&id(kept)) == Some(class)
            })
        });
        match same {
            Some(kept) => {
                let other = id(&f);
                if !kept.sources.contains(&other) {
                    kept.sources.push(other);
                }
                kept.severity = kept.severity.min(f.severity);
            }
            None => out.push(f),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Severity;

    fn finding(check: &str, rule: &str, resource: &str) -> Finding {
        Finding {
            sources: Vec::new(),
            check: check.into(),
            rule: rule.into(),
            severity: Severity::Error,
            file: "aws/a.yaml".into(),
            line: 1,
            resource: Some(resource.into()),
            path: None,
            message: "m".into(),
            fix: None,
        }
    }

    #[test]
    fn the_same_control_on_the_same_resource_is_one_row_listing_its_sources() {
        let merged = across_tools(vec![
            finding("control-tower", "s3_bucket_logging_enabled_check", "Files"),
            finding("checkov", "CKV_AWS_18", "Files"),
            finding("checkov", "CKV_AWS_18", "Other"),
            finding("checkov", "CKV_AWS_2", "Files"),
        ]);
        assert_eq!(merged.len(), 3);
        assert_eq!(merged[0].sources, ["checkov/CKV_AWS_18"]);
        assert!(merged[1].sources.is_empty() && merged[1].resource.as_deref() == Some("Other"));
    }
}
