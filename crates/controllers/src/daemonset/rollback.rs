//! Automatic rollback (beyond.md §2.3): when a rollout with `everynode.dev/auto-rollback: "true"`
//! passes its progress deadline, the template goes back to the last revision whose rollout
//! completed, exactly as `kubectl rollout undo` would put it back. A pure function of the
//! DaemonSet, its revisions, the `Progressing` outcome of the pass and `now`.
//!
//! The controller records the last complete revision's name in the annotation
//! `everynode.dev/last-complete-revision` whenever a rollout completes. Restoring it makes that
//! revision the update revision again, so a restored revision that stalls in its turn has
//! nothing older to go back to: it never rolls back twice in a row.
//!
//! What was rolled back is written with the template, in one patch, as the annotation
//! `everynode.dev/rolled-back`; the `RolledBack` condition is worked out from it on every pass.
//! A condition alone would not survive a pass that ran on a cached object older than the
//! status that carried it.

use super::pass::PlannedEvent;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSetCondition};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

pub const CONDITION: &str = "RolledBack";
pub const LAST_COMPLETE_REVISION: &str = "everynode.dev/last-complete-revision";
pub const ROLLED_BACK: &str = "everynode.dev/rolled-back";

/// A template to write back over the DaemonSet's, and what to say once it is written.
#[derive(Clone, Debug, PartialEq)]
pub struct Rollback {
    pub template: PodTemplateSpec,
    /// The revision's name, for the log.
    pub revision: String,
    /// Also the value of `everynode.dev/rolled-back`, written with the template.
    pub event: PlannedEvent,
}

/// What the pass knows that the decision needs.
pub struct Input<'a> {
    pub auto_rollback: bool,
    /// `Progressing` is False with `ProgressDeadlineExceeded` after this pass.
    pub exceeded: bool,
    /// This pass is the one that turned it so (its event fires now).
    pub just_exceeded: bool,
    /// The update revision's name and number.
    pub update: (&'a str, i64),
    /// The annotation `everynode.dev/last-complete-revision`, if set.
    pub last_complete: Option<&'a str>,
    /// The DaemonSet's revisions.
    pub revisions: &'a [&'a ControllerRevision],
    /// The annotation `everynode.dev/rolled-back`, if set.
    pub rolled_back: Option<&'a str>,
    /// The `RolledBack` condition as stored, for its transition time.
    pub stored: Option<&'a DaemonSetCondition>,
    pub now: Timestamp,
}

/// The decision of one pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    pub rollback: Option<Rollback>,
    /// The `RolledBack` condition to keep or write; `None` removes it.
    pub condition: Option<DaemonSetCondition>,
    /// An event when a rollback was due and could not be made.
    pub event: Option<PlannedEvent>,
    /// `everynode.dev/rolled-back` is left from a template since replaced: remove it.
    pub clear_annotation: bool,
}

fn condition(message: &str, since: Timestamp) -> DaemonSetCondition {
    DaemonSetCondition {
        type_: CONDITION.into(),
        status: "True".into(),
        reason: Some("ProgressDeadlineExceeded".into()),
        message: Some(message.into()),
        last_transition_time: Some(Time(since)),
    }
}

/// The template a revision recorded. Its data is `{"spec":{"template":{…,"$patch":"replace"}}}`
/// (upstream's `getPatch`), which is what `kubectl rollout undo` applies.
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision
        .data
        .as_ref()?
        .0
        .get("spec")?
        .get("template")?
        .clone();
    let object = template.as_object_mut()?;
    object.remove("$patch");
    serde_json::from_value(template).ok()
}

fn skipped(message: String) -> PlannedEvent {
    PlannedEvent {
        warning: true,
        reason: "RollbackSkipped",
        message,
    }
}

pub fn decide(input: &Input<'_>) -> Decision {
    let (update_name, update_number) = input.update;
    // The condition says what the controller did to the current template: it stays while the
    // template is the one restored, and goes at the next template change by anyone else.
    let restored = input.last_complete == Some(update_name);
    let kept = input.rolled_back.filter(|_| restored).map(|message| {
        let since = input
            .stored
            .and_then(|c| c.last_transition_time.as_ref())
            .map_or(input.now, |t| t.0);
        condition(message, since)
    });
    let clear_annotation = input.rolled_back.is_some() && !restored;
    if !(input.auto_rollback && input.exceeded) {
        return Decision {
            condition: kept,
            clear_annotation,
            ..Decision::default()
        };
    }
    let target = match input.last_complete {
        None => Err(format!(
            "auto-rollback: revision {update_number} stalled and no earlier rollout of this \
             DaemonSet completed; nothing to roll back to"
        )),
        Some(name) if name == update_name => Err(format!(
            "auto-rollback: revision {update_number} is itself the last complete revision; \
             not rolling back again"
        )),
        Some(name) => input
            .revisions
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
            .and_then(|r| Some((*r, template_of(r)?)))
            .ok_or_else(|| {
                format!(
                    "auto-rollback: the last complete revision {name} no longer exists; \
                     nothing to roll back to"
                )
            }),
    };
    match target {
        Ok((revision, template)) => {
            let message = format!(
                "rolled back from revision {update_number} to revision {}",
                revision.revision
            );
            Decision {
                rollback: Some(Rollback {
                    template,
                    revision: revision.metadata.name.clone().unwrap_or_default(),
                    event: PlannedEvent {
                        warning: true,
                        reason: "RolledBack",
                        message: message.clone(),
                    },
                }),
                condition: Some(condition(&message, input.now)),
                event: None,
                // Written over by the rollback's own patch.
                clear_annotation: false,
            }
        }
        Err(message) => Decision {
            rollback: None,
            condition: kept,
            clear_annotation,
            // Said once, when the deadline passes; the condition keeps saying it is stalled.
            event: input.just_exceeded.then(|| skipped(message)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
    use serde_json::json;

    fn revision(name: &str, number: i64, image: &str) -> ControllerRevision {
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(RawExtension(json!({"spec": {"template": {
                "$patch": "replace",
                "metadata": {"creationTimestamp": null, "labels": {"app": "a"}},
                "spec": {"containers": [{"name": "c", "image": image, "resources": {}}]},
            }}}))),
            revision: number,
        }
    }

    fn input<'a>(revisions: &'a [&'a ControllerRevision], last: Option<&'a str>) -> Input<'a> {
        Input {
            auto_rollback: true,
            exceeded: true,
            just_exceeded: true,
            update: ("a-3", 3),
            last_complete: last,
            revisions,
            rolled_back: None,
            stored: None,
            now: Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn the_template_of_a_revision_is_its_data_without_the_patch_directive() {
        let t = template_of(&revision("a-2", 2, "x:2")).expect("template");
        let spec = t.spec.expect("spec");
        assert_eq!(spec.containers[0].image.as_deref(), Some("x:2"));
        assert_eq!(t.metadata.and_then(|m| m.creation_timestamp), None);
    }

    #[test]
    fn b03_a_stalled_rollout_goes_back_to_the_last_complete_revision() {
        let (two, three) = (revision("a-2", 2, "x:2"), revision("a-3", 3, "x:3"));
        let d = decide(&input(&[&two, &three], Some("a-2")));
        let rollback = d.rollback.expect("a rollback");
        assert_eq!(rollback.revision, "a-2");
        assert_eq!(
            rollback.event.message,
            "rolled back from revision 3 to revision 2"
        );
        let c = d.condition.expect("RolledBack");
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("True", Some("ProgressDeadlineExceeded"))
        );
    }

    #[test]
    fn b03_the_restored_revision_is_never_rolled_back_from_again() {
        let two = revision("a-2", 4, "x:2");
        let revisions = [&two];
        let mut i = input(&revisions, Some("a-2"));
        i.update = ("a-2", 4);
        let d = decide(&i);
        assert_eq!(d.rollback, None);
        assert!(
            d.event
                .is_some_and(|e| e.message.contains("not rolling back again"))
        );
    }

    #[test]
    fn with_nothing_complete_it_says_so_once() {
        let three = revision("a-3", 3, "x:3");
        let d = decide(&input(&[&three], None));
        assert_eq!(d.rollback, None);
        assert_eq!(d.event.map(|e| e.reason), Some("RollbackSkipped"));
        let revisions = [&three];
        let mut later = input(&revisions, None);
        later.just_exceeded = false;
        assert_eq!(decide(&later).event, None);
    }

    #[test]
    fn without_auto_rollback_nothing_happens() {
        let two = revision("a-2", 2, "x:2");
        let revisions = [&two];
        let mut i = input(&revisions, Some("a-2"));
        i.auto_rollback = false;
        assert_eq!(decide(&i), Decision::default());
    }

    #[test]
    fn the_condition_stays_until_someone_else_changes_the_template() {
        let mut i = input(&[], Some("a-2"));
        i.exceeded = false;
        i.rolled_back = Some("rolled back from revision 3 to revision 2");
        i.update = ("a-2", 4);
        let d = decide(&i);
        assert_eq!(
            d.condition.and_then(|c| c.message).as_deref(),
            Some("rolled back from revision 3 to revision 2")
        );
        assert!(!d.clear_annotation);
        i.update = ("a-5", 5);
        let d = decide(&i);
        assert_eq!(d.condition, None);
        assert!(d.clear_annotation, "the annotation goes with the condition");
    }
}
