//! A DaemonSet's state in one word, with the reasons behind it, as the list and the detail page
//! show it. Pure: the DaemonSet, its placement and its pods' status words in; words out.

use k8s_openapi::api::apps::v1::DaemonSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Word {
    /// Every eligible node runs an up-to-date, available pod.
    Running,
    /// A new template is rolling out (or the controller has not seen the latest spec yet).
    Updating,
    /// Pods are on their way (scheduled, starting, not ready yet), or no node is eligible.
    Waiting,
    /// A pod is failing: crash loop, image errors, failed phase.
    Abnormal,
    /// The DaemonSet is being deleted.
    Deleting,
}

impl Word {
    pub fn as_str(self) -> &'static str {
        match self {
            Word::Running => "Running",
            Word::Updating => "Updating",
            Word::Waiting => "Waiting",
            Word::Abnormal => "Abnormal",
            Word::Deleting => "Deleting",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub word: Word,
    pub reasons: Vec<String>,
}

/// Pod status words (upstream's STATUS column) that mean the pod is failing.
fn is_failing(word: &str) -> bool {
    matches!(
        word,
        "CrashLoopBackOff"
            | "Error"
            | "Failed"
            | "ImagePullBackOff"
            | "ErrImagePull"
            | "InvalidImageName"
            | "CreateContainerError"
            | "CreateContainerConfigError"
            | "RunContainerError"
            | "OOMKilled"
    ) || word.starts_with("Init:Error")
        || word.starts_with("Init:CrashLoopBackOff")
}

/// `excluded`: the placement's summary of nodes that should run no pod
/// (`placement::exclusion_summary`); `pods`: (pod name, node, STATUS word) of the DaemonSet's pods.
pub fn status(ds: &DaemonSet, excluded: Vec<String>, pods: &[(String, String, String)]) -> Status {
    let st = ds.status.clone().unwrap_or_default();
    let generation = ds.metadata.generation.unwrap_or(0);
    if ds.metadata.deletion_timestamp.is_some() {
        return Status {
            word: Word::Deleting,
            reasons: vec![format!("{} pod(s) left", pods.len())],
        };
    }
    let failing: Vec<String> = pods
        .iter()
        .filter(|(_, _, word)| is_failing(word))
        .map(|(name, node, word)| format!("pod {name} on {node}: {word}"))
        .collect();
    if !failing.is_empty() {
        return Status {
            word: Word::Abnormal,
            reasons: failing,
        };
    }
    let desired = st.desired_number_scheduled;
    let behind = st.observed_generation.unwrap_or(0) < generation;
    let updated = st.updated_number_scheduled.unwrap_or(0);
    if behind || updated < desired {
        let mut reasons = vec![format!("{updated} of {desired} nodes updated")];
        reasons.extend(excluded);
        return Status {
            word: Word::Updating,
            reasons,
        };
    }
    if desired == 0 {
        let mut reasons = vec!["no node is eligible".to_owned()];
        reasons.extend(excluded);
        return Status {
            word: Word::Waiting,
            reasons,
        };
    }
    let available = st.number_available.unwrap_or(0);
    if st.number_ready < desired || available < desired || st.current_number_scheduled < desired {
        let mut reasons = vec![format!("{} of {desired} pods ready", st.number_ready)];
        reasons.extend(
            pods.iter()
                .filter(|(_, _, word)| word != "Running")
                .map(|(name, node, word)| format!("pod {name} on {node}: {word}")),
        );
        reasons.extend(excluded);
        return Status {
            word: Word::Waiting,
            reasons,
        };
    }
    Status {
        word: Word::Running,
        reasons: excluded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(generation: i64, status: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"name": "a", "generation": generation},
            "spec": {"selector": {}, "template": {}},
            "status": status,
        }))
        .expect("daemonset")
    }

    fn counts(desired: i32, ready: i32, updated: i32, available: i32) -> serde_json::Value {
        json!({"observedGeneration": 2, "desiredNumberScheduled": desired, "currentNumberScheduled": desired,
               "numberReady": ready, "updatedNumberScheduled": updated, "numberAvailable": available,
               "numberMisscheduled": 0})
    }

    fn excluded(reason: &str) -> Vec<String> {
        vec![format!("1 node: {reason}")]
    }

    fn pod(name: &str, word: &str) -> (String, String, String) {
        (name.into(), "node-1".into(), word.into())
    }

    #[test]
    fn running_when_every_eligible_node_is_ready_and_up_to_date() {
        let rows = excluded("untolerated taint dedicated=gpu:NoSchedule");
        let s = status(&ds(2, counts(3, 3, 3, 3)), rows, &[pod("p", "Running")]);
        assert_eq!(s.word, Word::Running);
        assert_eq!(
            s.reasons,
            vec!["1 node: untolerated taint dedicated=gpu:NoSchedule"]
        );
    }

    #[test]
    fn updating_while_a_new_template_rolls_out_or_is_unobserved() {
        let s = status(&ds(2, counts(3, 3, 1, 3)), vec![], &[]);
        assert_eq!(s.word, Word::Updating);
        assert_eq!(s.reasons, vec!["1 of 3 nodes updated"]);
        assert_eq!(
            status(&ds(3, counts(3, 3, 3, 3)), vec![], &[]).word,
            Word::Updating
        );
    }

    #[test]
    fn abnormal_names_the_failing_pods() {
        let s = status(
            &ds(2, counts(3, 2, 3, 2)),
            vec![],
            &[pod("a-1", "Running"), pod("a-2", "CrashLoopBackOff")],
        );
        assert_eq!(s.word, Word::Abnormal);
        assert_eq!(s.reasons, vec!["pod a-2 on node-1: CrashLoopBackOff"]);
    }

    #[test]
    fn waiting_for_pods_or_for_an_eligible_node() {
        let s = status(&ds(2, counts(3, 1, 3, 1)), vec![], &[pod("a-2", "Pending")]);
        assert_eq!(s.word, Word::Waiting);
        assert_eq!(
            s.reasons,
            vec!["1 of 3 pods ready", "pod a-2 on node-1: Pending"]
        );
        let none = status(
            &ds(2, counts(0, 0, 0, 0)),
            excluded("node selector disk=ssd not matched"),
            &[],
        );
        assert_eq!(none.word, Word::Waiting);
        assert_eq!(
            none.reasons,
            vec![
                "no node is eligible",
                "1 node: node selector disk=ssd not matched"
            ]
        );
    }

    #[test]
    fn deleting_wins() {
        let mut set = ds(2, counts(3, 3, 3, 3));
        set.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        assert_eq!(
            status(&set, vec![], &[pod("p", "Running")]).word,
            Word::Deleting
        );
    }
}
