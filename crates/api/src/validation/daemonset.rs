//! DaemonSet validation, spec §1.3 (`ValidateDaemonSet`, `ValidateDaemonSetUpdate`,
//! `ValidateDaemonSetStatusUpdate` upstream), rule by rule.

use crate::field::{BadValue, ErrorList, FieldError, Path, go_string_map};
use crate::names;
use crate::selector;
use crate::validation::pod::validate_pod_spec;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

const PERCENT_MSG: &str = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";

fn render(v: &IntOrString) -> BadValue {
    match v {
        IntOrString::Int(i) => BadValue::Int(i64::from(*i)),
        IntOrString::String(s) => BadValue::Raw(s.clone()),
    }
}

/// The percentage of a `[0-9]+%` string, or `None` when it is not one.
pub fn parse_percent(s: &str) -> Option<i64> {
    let digits = s.strip_suffix('%')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `getIntOrPercentValue`: the number, whether int or percent; invalid strings count as 0.
fn int_or_percent_value(v: Option<&IntOrString>) -> i64 {
    match v {
        Some(IntOrString::Int(i)) => i64::from(*i),
        Some(IntOrString::String(s)) => parse_percent(s).unwrap_or(0),
        None => 0,
    }
}

fn validate_positive_int_or_percent(v: Option<&IntOrString>, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    match v {
        Some(IntOrString::String(s)) => {
            if parse_percent(s).is_none() {
                errs.push(FieldError::invalid(
                    path,
                    BadValue::Raw(s.clone()),
                    PERCENT_MSG,
                ));
            } else if parse_percent(s).is_some_and(|p| p > 100) {
                errs.push(FieldError::invalid(
                    path,
                    BadValue::Raw(s.clone()),
                    "must not be greater than 100%",
                ));
            }
        }
        Some(IntOrString::Int(i)) if *i < 0 => {
            errs.push(FieldError::invalid(
                path,
                *i,
                "must be greater than or equal to 0",
            ));
        }
        _ => {}
    }
    errs
}

fn validate_update_strategy(ds: &DaemonSet, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    let Some(strategy) = ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref()) else {
        return errs;
    };
    let t = strategy.type_.as_deref().unwrap_or("");
    match t {
        "OnDelete" => {}
        "RollingUpdate" => {
            let ru_path = path.child("rollingUpdate");
            let Some(ru) = &strategy.rolling_update else {
                errs.push(FieldError::required(&ru_path, ""));
                return errs;
            };
            let (mu, ms) = (ru.max_unavailable.as_ref(), ru.max_surge.as_ref());
            errs.extend(validate_positive_int_or_percent(
                mu,
                &ru_path.child("maxUnavailable"),
            ));
            errs.extend(validate_positive_int_or_percent(
                ms,
                &ru_path.child("maxSurge"),
            ));
            let has_unavailable = int_or_percent_value(mu) != 0;
            let has_surge = int_or_percent_value(ms) != 0;
            if has_unavailable && has_surge {
                let value = ms.map_or(BadValue::None, render);
                errs.push(FieldError::invalid(
                    &ru_path.child("maxSurge"),
                    value,
                    "may not be set when maxUnavailable is non-zero",
                ));
            } else if !has_unavailable && !has_surge {
                errs.push(FieldError::required(
                    &ru_path.child("maxUnavailable"),
                    "cannot be 0 when maxSurge is 0",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            path,
            other,
            &["RollingUpdate", "OnDelete"],
        )),
    }
    errs
}

/// Renders a LabelSelector roughly as Go's `%#v` does, for error values.
fn render_selector(raw: &Value) -> BadValue {
    BadValue::Raw(format!("v1.LabelSelector{}", raw))
}

/// `ValidateDaemonSetSpec` on a decoded, defaulted DaemonSet. `raw` is the same object as JSON,
/// needed because a missing selector and an empty one decode alike but differ in meaning.
pub fn validate_spec(ds: &DaemonSet, raw: &Value) -> ErrorList {
    let path = Path::root("spec");
    let mut errs = ErrorList::new();
    let raw_selector = raw
        .get("spec")
        .and_then(|s| s.get("selector"))
        .filter(|s| !s.is_null());
    let spec = ds.spec.clone().unwrap_or_default();
    let selector = raw_selector.map(|_| &spec.selector);

    // Rule 1: selector syntax.
    if let Some(sel) = selector {
        errs.extend(selector::validate_label_selector(
            sel,
            &path.child("selector"),
        ));
    }
    // Rule 2: the selector must match the template labels (a missing selector matches nothing).
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    if let Ok(parsed) = selector::from_label_selector(selector)
        && !parsed.matches(&template_labels)
    {
        errs.push(FieldError::invalid(
            &path.child("template").child("metadata").child("labels"),
            go_string_map(&template_labels),
            "`selector` does not match template `labels`",
        ));
    }
    // Rule 3: a present selector must not be empty.
    if let Some(sel) = selector
        && sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty())
    {
        errs.push(FieldError::invalid(
            &path.child("selector"),
            render_selector(raw_selector.unwrap_or(&Value::Null)),
            "empty selector is invalid for daemonset",
        ));
    }
    // Rule 4: the pod template.
    let template_path = path.child("template");
    if let Some(meta) = &spec.template.metadata {
        errs.extend(names::validate_labels(
            &meta.labels.clone().unwrap_or_default(),
            &template_path.child("metadata").child("labels"),
        ));
        errs.extend(names::validate_annotations(
            &meta.annotations.clone().unwrap_or_default(),
            &template_path.child("metadata").child("annotations"),
        ));
    }
    let pod_spec = spec.template.spec.clone().unwrap_or_default();
    let pod_path = template_path.child("spec");
    errs.extend(validate_pod_spec(&pod_spec, &pod_path));
    // Rule 5: restartPolicy must be Always.
    if let Some(rp) = pod_spec.restart_policy.as_deref()
        && rp != "Always"
    {
        errs.push(FieldError::not_supported(
            &pod_path.child("restartPolicy"),
            rp,
            &["Always"],
        ));
    }
    // Rule 6: activeDeadlineSeconds is forbidden.
    if pod_spec.active_deadline_seconds.is_some() {
        errs.push(FieldError::forbidden(
            &pod_path.child("activeDeadlineSeconds"),
            "activeDeadlineSeconds in DaemonSet is not Supported",
        ));
    }
    // Rule 7: minReadySeconds >= 0.
    if let Some(m) = spec.min_ready_seconds
        && m < 0
    {
        errs.push(FieldError::invalid(
            &path.child("minReadySeconds"),
            m,
            "must be greater than or equal to 0",
        ));
    }
    // Rule 9: update strategy.
    errs.extend(validate_update_strategy(ds, &path.child("updateStrategy")));
    // everynode's rollout controls (beyond.md §0.3): each bad annotation is a 422 of its own.
    errs.extend(
        crate::rollout_controls::parse(&ds.metadata.annotations.clone().unwrap_or_default()).1,
    );
    // Rule 10: revisionHistoryLimit >= 0.
    if let Some(r) = spec.revision_history_limit
        && r < 0
    {
        errs.push(FieldError::invalid(
            &path.child("revisionHistoryLimit"),
            r,
            "must be greater than or equal to 0",
        ));
    }
    errs
}

/// The update-only rule: the selector is immutable in apps/v1 (semantic comparison).
pub fn validate_update(new: &DaemonSet, old: &DaemonSet) -> ErrorList {
    let sel = |ds: &DaemonSet| ds.spec.as_ref().map(|s| s.selector.clone());
    let (new_sel, old_sel) = (sel(new), sel(old));
    let semantic = |s: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>| {
        s.map(|mut s| {
            if s.match_labels.as_ref().is_some_and(|m| m.is_empty()) {
                s.match_labels = None;
            }
            if s.match_expressions.as_ref().is_some_and(|m| m.is_empty()) {
                s.match_expressions = None;
            }
            s
        })
    };
    if semantic(new_sel.clone()) != semantic(old_sel) {
        let raw = serde_json::to_value(new_sel).unwrap_or(Value::Null);
        return vec![FieldError::invalid(
            &Path::root("spec").child("selector"),
            render_selector(&raw),
            "field is immutable",
        )];
    }
    ErrorList::new()
}

/// `ValidateDaemonSetStatusUpdate`: counters non-negative, collisionCount never decremented.
pub fn validate_status_update(
    new: Option<&DaemonSetStatus>,
    old: Option<&DaemonSetStatus>,
) -> ErrorList {
    let mut errs = ErrorList::new();
    let Some(new) = new else { return errs };
    let path = Path::root("status");
    let counters: [(&str, i64); 8] = [
        (
            "currentNumberScheduled",
            i64::from(new.current_number_scheduled),
        ),
        ("numberMisscheduled", i64::from(new.number_misscheduled)),
        (
            "desiredNumberScheduled",
            i64::from(new.desired_number_scheduled),
        ),
        ("numberReady", i64::from(new.number_ready)),
        ("observedGeneration", new.observed_generation.unwrap_or(0)),
        (
            "updatedNumberScheduled",
            i64::from(new.updated_number_scheduled.unwrap_or(0)),
        ),
        (
            "numberAvailable",
            i64::from(new.number_available.unwrap_or(0)),
        ),
        (
            "numberUnavailable",
            i64::from(new.number_unavailable.unwrap_or(0)),
        ),
    ];
    for (field, value) in counters {
        if value < 0 {
            errs.push(FieldError::invalid(
                &path.child(field),
                value,
                "must be greater than or equal to 0",
            ));
        }
    }
    if let Some(c) = new.collision_count {
        if c < 0 {
            errs.push(FieldError::invalid(
                &path.child("collisionCount"),
                c,
                "must be greater than or equal to 0",
            ));
        }
        if let Some(old_c) = old.and_then(|o| o.collision_count)
            && c < old_c
        {
            errs.push(FieldError::invalid(
                &path.child("collisionCount"),
                c,
                "cannot be decremented",
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    //! One test per rule of spec §1.3, named after its scenario in §5.1.
    use super::*;
    use crate::defaults;
    use crate::registry::Kind;
    use serde_json::json;

    fn ds_json(spec_patch: Value) -> Value {
        let mut ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "foo", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"name": "simple-daemon", "type": "production"}},
                "template": {"metadata": {"labels": {"name": "simple-daemon", "type": "production"}},
                    "spec": {"containers": [{"name": "foo", "image": "foo/bar"}]}}}});
        // A selector in the patch replaces the whole selector rather than merging into it.
        if let Some(sel) = spec_patch.get("selector") {
            ds["spec"]["selector"] = sel.clone();
        }
        let mut rest = spec_patch;
        if let Some(o) = rest.as_object_mut() {
            o.remove("selector");
        }
        merge(&mut ds["spec"], rest);
        if ds["spec"]["selector"].is_null()
            && let Some(spec) = ds["spec"].as_object_mut()
        {
            spec.remove("selector");
        }
        ds
    }

    fn merge(target: &mut Value, patch: Value) {
        match (target, patch) {
            (Value::Object(t), Value::Object(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(&k);
                    } else {
                        merge(t.entry(k).or_insert(Value::Null), v);
                    }
                }
            }
            (t, p) => *t = p,
        }
    }

    /// Defaults then validates, as the API server does on create.
    fn errors(spec_patch: Value) -> Vec<String> {
        let mut raw = ds_json(spec_patch);
        defaults::apply(Kind::DaemonSet, &mut raw);
        let ds: DaemonSet = serde_json::from_value(raw.clone()).expect("decodes");
        validate_spec(&ds, &raw)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn valid_daemonset_has_no_errors() {
        assert_eq!(errors(json!({})), Vec::<String>::new());
    }

    #[test]
    fn s003_selector_template_mismatch_rejected() {
        let e = errors(json!({"selector": {"matchLabels": {"app": "a"}}}));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("spec.template.metadata.labels: Invalid value: "),
            "{e:?}"
        );
        assert!(
            e[0].ends_with("`selector` does not match template `labels`"),
            "{e:?}"
        );
    }

    #[test]
    fn s004_missing_selector_rejected() {
        let e = errors(json!({"selector": null}));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("spec.template.metadata.labels: Invalid value"),
            "{e:?}"
        );
    }

    #[test]
    fn s005_empty_selector_rejected() {
        let e = errors(json!({"selector": {}}));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("spec.selector: Invalid value: "), "{e:?}");
        assert!(
            e[0].ends_with("empty selector is invalid for daemonset"),
            "{e:?}"
        );
    }

    #[test]
    fn s006_restart_policy_must_be_always() {
        for policy in ["OnFailure", "Never"] {
            let e = errors(json!({"template": {"spec": {"restartPolicy": policy}}}));
            assert_eq!(
                e,
                vec![format!(
                    "spec.template.spec.restartPolicy: Unsupported value: \"{policy}\": supported values: \"Always\""
                )]
            );
        }
        assert!(errors(json!({"template": {"spec": {"restartPolicy": "Always"}}})).is_empty());
    }

    #[test]
    fn s007_active_deadline_seconds_forbidden() {
        let e = errors(json!({"template": {"spec": {"activeDeadlineSeconds": 10}}}));
        assert_eq!(
            e,
            vec![
                "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in DaemonSet is not Supported"
            ]
        );
    }

    #[test]
    fn s008_min_ready_seconds_and_revision_history_limit_negative() {
        assert_eq!(
            errors(json!({"minReadySeconds": -1})),
            vec!["spec.minReadySeconds: Invalid value: -1: must be greater than or equal to 0"]
        );
        assert_eq!(
            errors(json!({"revisionHistoryLimit": -1})),
            vec![
                "spec.revisionHistoryLimit: Invalid value: -1: must be greater than or equal to 0"
            ]
        );
        assert!(errors(json!({"revisionHistoryLimit": 0})).is_empty());
    }

    #[test]
    fn s009_max_unavailable_and_max_surge_both_zero() {
        let want = vec!["spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0".to_owned()];
        assert_eq!(
            errors(
                json!({"updateStrategy": {"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}})
            ),
            want
        );
        assert_eq!(
            errors(
                json!({"updateStrategy": {"rollingUpdate": {"maxUnavailable": "0%", "maxSurge": "0%"}}})
            ),
            want
        );
    }

    #[test]
    fn s010_max_surge_alone_rejected_because_of_defaulting() {
        assert_eq!(
            errors(json!({"updateStrategy": {"rollingUpdate": {"maxSurge": 1}}})),
            vec![
                "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: 1: may not be set when maxUnavailable is non-zero"
            ]
        );
        assert!(errors(json!({"updateStrategy": {"rollingUpdate": {"maxSurge": "20%", "maxUnavailable": 0}}})).is_empty());
    }

    #[test]
    fn s011_bad_int_or_percent_values() {
        let one =
            |v: Value| errors(json!({"updateStrategy": {"rollingUpdate": {"maxUnavailable": v}}}));
        assert_eq!(
            one(json!("150%")),
            vec![
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 150%: must not be greater than 100%"
            ]
        );
        let abc = one(json!("abc"));
        assert!(abc[0].starts_with("spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: abc: a valid percent string"), "{abc:?}");
        assert!(one(json!(-1)).contains(&"spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: -1: must be greater than or equal to 0".to_owned()));
        assert!(one(json!("100%")).is_empty());
    }

    #[test]
    fn s012_unknown_strategy_type() {
        assert_eq!(
            errors(json!({"updateStrategy": {"type": "Foo"}})),
            vec![
                "spec.updateStrategy: Unsupported value: \"Foo\": supported values: \"RollingUpdate\", \"OnDelete\""
            ]
        );
    }

    #[test]
    fn s013_selector_immutable() {
        let old: DaemonSet = serde_json::from_value(ds_json(json!({}))).expect("old");
        let new: DaemonSet = serde_json::from_value(ds_json(
            json!({"selector": {"matchLabels": {"name": "simple-daemon"}}}),
        ))
        .expect("new");
        let e: Vec<String> = validate_update(&new, &old)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("spec.selector: Invalid value: ")
                && e[0].ends_with("field is immutable"),
            "{e:?}"
        );
        assert!(validate_update(&old, &old).is_empty());
    }

    #[test]
    fn s017_collision_count_may_not_decrease() {
        let status = |v: Value| -> DaemonSetStatus { serde_json::from_value(v).expect("status") };
        let base = json!({"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0});
        let mut old = base.clone();
        old["collisionCount"] = json!(2);
        let mut new = base.clone();
        new["collisionCount"] = json!(1);
        let e = validate_status_update(Some(&status(new)), Some(&status(old)));
        assert_eq!(
            e[0].to_string(),
            "status.collisionCount: Invalid value: 1: cannot be decremented"
        );
        let mut negative = base;
        negative["numberReady"] = json!(-1);
        let e = validate_status_update(Some(&status(negative)), None);
        assert_eq!(
            e[0].to_string(),
            "status.numberReady: Invalid value: -1: must be greater than or equal to 0"
        );
    }

    #[test]
    fn selector_syntax_rule_1() {
        let e = errors(
            json!({"selector": {"matchExpressions": [{"key": "name", "operator": "Bogus"}]}}),
        );
        assert!(e.iter().any(|m| m.starts_with("spec.selector.matchExpressions[0].operator: Invalid value: \"Bogus\": not a valid selector operator")), "{e:?}");
    }
}
