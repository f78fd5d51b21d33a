//! Edit in the full wizard: the create wizard reopened on an existing DaemonSet (every section
//! filled from the object by `refill`), and the Service the wizard made for it. Saving is a
//! replace at the resourceVersion the page was read at, previewed first like every write.
//!
//! A DaemonSet that sets something the form cannot show is not offered the wizard: the page
//! first asks the server for a dry run of saving the form unchanged, and if that would change
//! the object (the server's defaulting applied to both sides), it names the paths and sends
//! the user to the YAML tab instead. Nothing is lost silently.

use crate::client::{ApiClient, JSON};
use crate::error::{ConsoleError, ConsoleResult};
use crate::form::{Built, Form, build};
use crate::layout::{Nav, error_box, page};
use crate::session::Session;
use crate::wizard::{Editing, built_from, preview_then_write, wizard};
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::apps::v1::DaemonSet;
use maud::html;
use serde_json::{Value, json};

fn ds_path(ns: &str, name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{ns}/daemonsets/{name}")
}

fn service_path(ns: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{ns}/services/{name}")
}

/// The Service the wizard made for `ds`: one selecting exactly its pods' labels, the one named
/// as the DaemonSet first.
pub(crate) async fn wizard_service(client: &ApiClient, ds: &Value) -> ConsoleResult<Option<Value>> {
    let ns = ds["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = &ds["metadata"]["name"];
    let labels = &ds["spec"]["template"]["metadata"]["labels"];
    let services = match client
        .list(&format!("/api/v1/namespaces/{ns}/services"))
        .await
    {
        // A user who may not read Services edits the DaemonSet alone.
        Err(e) if e.status() == axum::http::StatusCode::FORBIDDEN => return Ok(None),
        other => other?,
    };
    let mut matching: Vec<Value> = services
        .into_iter()
        .filter(|s| &s["spec"]["selector"] == labels)
        .collect();
    matching.sort_by_key(|s| &s["metadata"]["name"] != name);
    Ok(matching.into_iter().next())
}

/// The annotation the controller keeps (the template's generation): it moves with the template
/// and is not the user's to set.
const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

/// What a save compares: the spec, and the labels and annotations, without empty objects, empty
/// lists and nulls (`resources: {}` and no `resources` are the same request).
fn comparable(ds: &Value) -> Value {
    fn pruned(v: &Value) -> Option<Value> {
        match v {
            Value::Null => None,
            Value::Object(m) => {
                let m: serde_json::Map<String, Value> = m
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), pruned(v)?)))
                    .collect();
                (!m.is_empty()).then_some(Value::Object(m))
            }
            Value::Array(a) if a.is_empty() => None,
            Value::Array(a) => Some(Value::Array(
                a.iter().map(|v| pruned(v).unwrap_or(Value::Null)).collect(),
            )),
            other => Some(other.clone()),
        }
    }
    let mut annotations = ds["metadata"]["annotations"].clone();
    if let Some(m) = annotations.as_object_mut() {
        m.remove(TEMPLATE_GENERATION);
    }
    let object = json!({
        "metadata": {"labels": ds["metadata"]["labels"], "annotations": annotations},
        "spec": ds["spec"],
    });
    pruned(&object).unwrap_or(Value::Null)
}

/// What the user's edit is based on: a digest of what they can change (not the status, which
/// the controller rewrites every few seconds during a rollout and which would otherwise make
/// every save a conflict).
fn basis(ds: &Value) -> String {
    crate::preview::digest(comparable(ds).to_string().as_bytes())
}

/// The conflict of a save over an edit someone else made since the page was read.
fn changed_meanwhile(name: &str) -> ConsoleError {
    ConsoleError::Api {
        code: axum::http::StatusCode::CONFLICT,
        message: format!(
            "DaemonSet {name} was changed by someone else since this form was opened; reload the page to edit the current version (your changes are not saved)"
        ),
        causes: Vec::new(),
    }
}

/// The paths saving the form unchanged would change, by a dry run of it.
async fn round_trip_losses(
    client: &ApiClient,
    ds: &Value,
    fields: &[(String, String)],
) -> ConsoleResult<Vec<String>> {
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let built = match build(&Form::from_pairs(&pairs)) {
        Ok(b) => b,
        Err(e) => return Ok(vec![format!("{} ({})", e.field, e.message)]),
    };
    // No resourceVersion: the check must not fail because the controller wrote the status
    // meanwhile (the save itself is guarded; see `submit`).
    let object = built.daemonset;
    let ns = ds["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = ds["metadata"]["name"].as_str().unwrap_or_default();
    let saved = client
        .write(
            Method::PUT,
            &format!("{}?fieldValidation=Strict&dryRun=All", ds_path(ns, name)),
            JSON,
            &object,
        )
        .await?;
    let mut saved = comparable(&saved);
    // A DaemonSet without labels gets its pods' labels from the wizard, as on create: an
    // addition, not a loss.
    if comparable(ds)["metadata"].get("labels").is_none()
        && let Some(meta) = saved["metadata"].as_object_mut()
    {
        meta.remove("labels");
        if meta.is_empty() {
            saved.as_object_mut().map(|o| o.remove("metadata"));
        }
    }
    Ok(crate::refill::differences(&comparable(ds), &saved, 12))
}

pub async fn show(Session(client): Session, Path((ns, name)): Path<(String, String)>) -> Response {
    let loaded = async {
        let ds = client.get(&ds_path(&ns, &name)).await?;
        let service = wizard_service(&client, &ds).await?;
        let fields = crate::refill::fields(&ds, service.as_ref());
        let losses = round_trip_losses(&client, &ds, &fields).await?;
        Ok::<_, ConsoleError>((ds, fields, losses))
    };
    let (ds, fields, losses) = match loaded.await {
        Ok(l) => l,
        Err(ConsoleError::Unauthorized) => return ConsoleError::Unauthorized.into_response(),
        Err(e) => {
            return page(
                &format!("Edit DaemonSet {name}"),
                Nav::DaemonSets,
                html! { h1 { "Edit DaemonSet " (name) } (error_box(&e)) },
            )
            .into_response();
        }
    };
    if !losses.is_empty() {
        let base = format!("/ui/daemonsets/{ns}/{name}");
        return page(
            &format!("Edit DaemonSet {name}"),
            Nav::DaemonSets,
            html! {
                h1 { "Edit DaemonSet " (name) }
                div.error #not-in-the-form role="alert" {
                    strong { "This DaemonSet sets things the form cannot show" }
                    p { "Saving it through the wizard would change:" }
                    ul { @for path in &losses { li { code { (path) } } } }
                }
                p { a.button.primary href={(base) "?tab=yaml"} { "Edit the YAML" } " "
                    a.button href={(base) "?tab=edit"} { "Quick edit (images, rollout)" } }
            },
        )
        .into_response();
    }
    let editing = Editing {
        namespace: ns,
        name,
        fields,
        basis: basis(&ds),
    };
    wizard(&client, Some(&editing)).await
}

/// How often a save is tried again when only the controller's status writes got in its way.
const STATUS_RACES: usize = 5;

/// Replaces the DaemonSet, then updates (or creates) the Service; a dry run of both when
/// `dry_run`. Each try reads the DaemonSet's current resourceVersion first: the controller
/// rewrites the status every few seconds during a rollout, which would make the replace a 409
/// though nothing the user edits has changed. If what the user edits has changed since the
/// page was read (`basis`), that is a real conflict and is returned as one.
async fn replace(
    client: &ApiClient,
    built: &Built,
    basis_read: &str,
    dry_run: bool,
) -> Result<Value, (&'static str, ConsoleError)> {
    let ns = &built.namespace;
    let dry = if dry_run { "&dryRun=All" } else { "" };
    let name = built.daemonset["metadata"]["name"]
        .as_str()
        .unwrap_or_default();
    let refused = |e| ("The DaemonSet was refused", e);
    let mut tries = 0;
    let daemonset = loop {
        tries += 1;
        let stored = client.get(&ds_path(ns, name)).await.map_err(refused)?;
        if basis(&stored) != basis_read {
            return Err(refused(changed_meanwhile(name)));
        }
        let mut daemonset = built.daemonset.clone();
        daemonset["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"].clone();
        let written = client
            .write(
                Method::PUT,
                &format!("{}?fieldValidation=Strict{dry}", ds_path(ns, name)),
                JSON,
                &daemonset,
            )
            .await;
        match written {
            Err(e) if e.status() == axum::http::StatusCode::CONFLICT && tries < STATUS_RACES => {}
            other => break other.map_err(refused)?,
        }
    };
    if let Some(svc) = &built.service {
        let svc_name = svc["metadata"]["name"].as_str().unwrap_or_default();
        let refused = |e| ("The Service was refused", e);
        match client.get(&service_path(ns, svc_name)).await {
            Ok(stored) => {
                // The cluster IP is the server's to keep, as upstream keeps it on update.
                let mut svc = svc.clone();
                svc["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"].clone();
                for field in ["clusterIP", "clusterIPs"] {
                    if svc["spec"].get(field).is_none() && !stored["spec"][field].is_null() {
                        svc["spec"][field] = stored["spec"][field].clone();
                    }
                }
                client
                    .write(
                        Method::PUT,
                        &format!("{}?fieldValidation=Strict{dry}", service_path(ns, svc_name)),
                        JSON,
                        &svc,
                    )
                    .await
                    .map_err(refused)?;
            }
            Err(e) if e.status() == axum::http::StatusCode::NOT_FOUND => {
                client
                    .write(
                        Method::POST,
                        &format!("/api/v1/namespaces/{ns}/services?fieldValidation=Strict{dry}"),
                        JSON,
                        svc,
                    )
                    .await
                    .map_err(refused)?;
            }
            Err(e) => return Err(refused(e)),
        }
    }
    Ok(daemonset)
}

pub async fn submit(
    Session(client): Session,
    Path((ns, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let mut built = match built_from(&body) {
        Ok(b) => b,
        Err(answer) => return answer.into_response(),
    };
    // The object edited is the one on the URL, as it was when the page was read: if what the
    // user can change has changed since, the save is a conflict, as upstream's optimistic
    // concurrency makes it; status changes alone are not.
    let sent_basis = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "basis")
        .map(|(_, v)| v)
        .unwrap_or_default();
    let stored = match client.get(&ds_path(&ns, &name)).await {
        Ok(ds) => ds,
        Err(e) => return e.into_response(),
    };
    if basis(&stored) != sent_basis {
        return axum::response::Json(json!({
            "message": changed_meanwhile(&name).to_string(),
            "errors": [],
        }))
        .into_response();
    }
    let current: DaemonSet = match serde_json::from_value(stored.clone()) {
        Ok(ds) => ds,
        Err(e) => {
            return ConsoleError::Internal(format!("the stored DaemonSet: {e}")).into_response();
        }
    };
    built.namespace.clone_from(&ns);
    built.daemonset["metadata"]["name"] = json!(name);
    built.daemonset["metadata"]["namespace"] = json!(ns);
    if let Some(svc) = built.service.as_mut() {
        svc["metadata"]["namespace"] = json!(ns);
    }
    let location = format!("/ui/daemonsets/{ns}/{name}?tab=overview&notice=Saved.");
    preview_then_write(
        &client,
        &built,
        &body,
        Some(&current),
        |dry_run| replace(&client, &built, &sent_basis, dry_run),
        location,
    )
    .await
}
