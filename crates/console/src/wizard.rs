//! Creating: the form wizard (every section of DCE's "create a DaemonSet") with a live YAML
//! preview, and the YAML import page.

use crate::client::{ApiClient, JSON};
use crate::error::ConsoleError;
use crate::form::{Built, Form, FormError, build, form_field};
use crate::import;
use crate::layout::{Nav, error_box, str_at, yaml};
use crate::session::Session;
use axum::body::Bytes;
use axum::http::Method;
use axum::response::{IntoResponse, Json, Response};
use k8s_openapi::api::apps::v1::DaemonSet;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn text(name: &str, label: &str, placeholder: &str) -> Markup {
    html! { label { (label) input name=(name) placeholder=(placeholder); } }
}

fn area(name: &str, label: &str, placeholder: &str) -> Markup {
    html! { label { (label) textarea name=(name) rows="2" placeholder=(placeholder) {} } }
}

fn select(name: &str, label: &str, options: &[(&str, &str)]) -> Markup {
    html! { label { (label) select name=(name) { @for (v, t) in options { option value=(v) { (t) } } } } }
}

fn probe_fields(c: &str, probe: &str, title: &str) -> Markup {
    let p = |f: &str| format!("c.{c}.{probe}.{f}");
    html! {
        fieldset {
            legend { (title) }
            (select(&p("type"), "Check", &[("none", "none"), ("http", "HTTP GET"), ("tcp", "TCP socket"), ("exec", "command")]))
            (text(&p("path"), "HTTP path", "/healthz"))
            (text(&p("port"), "Port (number or name)", "8080"))
            (area(&p("command"), "Command (one argument per line)", "cat\n/tmp/healthy"))
            (text(&p("initialDelaySeconds"), "initialDelaySeconds", "0"))
            (text(&p("periodSeconds"), "periodSeconds", "10"))
            (text(&p("timeoutSeconds"), "timeoutSeconds", "1"))
            (text(&p("successThreshold"), "successThreshold", "1"))
            (text(&p("failureThreshold"), "failureThreshold", "3"))
        }
    }
}

/// One container's fieldset; `c` is its index or the template placeholder `__i__`.
fn container_fields(c: &str, kind: &str) -> Markup {
    let f = |x: &str| format!("c.{c}.{x}");
    html! {
        fieldset.container data-container=(c) {
            legend { @if kind == "init" { "Init container" } @else { "Container" } }
            input type="hidden" name=(f("kind")) value=(kind);
            button type="button" data-remove="fieldset.container" { "Remove" }
            fieldset {
                legend { "Basic" }
                label { "Name" input name=(f("name")) required pattern="[a-z0-9]([a-z0-9\\-]*[a-z0-9])?" maxlength="63"; }
                label { "Image" input name=(f("image")) required size="40" placeholder="registry/image:tag"; }
                (select(&f("pullPolicy"), "Pull policy", &[("", "default"), ("IfNotPresent", "IfNotPresent"), ("Always", "Always"), ("Never", "Never")]))
                label.check { input type="checkbox" name=(f("privileged")); span { "privileged" } }
                (text(&f("cpuRequest"), "CPU request", "100m"))
                (text(&f("cpuLimit"), "CPU limit", "500m"))
                (text(&f("memRequest"), "Memory request", "64Mi"))
                (text(&f("memLimit"), "Memory limit", "128Mi"))
                (text(&f("gpu"), "GPUs (nvidia.com/gpu)", "0"))
                div #{"ports-" (c)} {}
                button type="button" data-add="tpl-port" data-into={"ports-" (c)} data-c=(c) { "+ Port" }
            }
            fieldset {
                legend { "Lifecycle" }
                (area(&f("command"), "Command (one argument per line)", "sh\n-c"))
                (area(&f("args"), "Arguments (one per line)", "echo hello; sleep 3600"))
                (area(&f("postStart"), "postStart command", "sh\n-c\necho started"))
                (area(&f("preStop"), "preStop command", "sh\n-c\nsleep 5"))
            }
            fieldset {
                legend { "Health checks" }
                (probe_fields(c, "liveness", "Liveness"))
                (probe_fields(c, "readiness", "Readiness"))
                (probe_fields(c, "startup", "Startup"))
            }
            fieldset {
                legend { "Environment variables" }
                div #{"env-" (c)} {}
                button type="button" data-add="tpl-env" data-into={"env-" (c)} data-c=(c) { "+ Variable" }
            }
            fieldset {
                legend { "Data storage" }
                div #{"vol-" (c)} {}
                button type="button" data-add="tpl-vol" data-into={"vol-" (c)} data-c=(c) { "+ Volume" }
            }
            fieldset {
                legend { "Security" }
                (text(&f("runAsUser"), "runAsUser", "1000"))
                (text(&f("capAdd"), "Add capabilities", "NET_ADMIN, SYS_PTRACE"))
                (text(&f("capDrop"), "Drop capabilities", "ALL"))
            }
        }
    }
}

fn row_templates() -> Markup {
    let row = |content: Markup| html! { div.row { (content) button type="button" data-remove=".row" { "Remove" } } };
    html! {
        template #tpl-port { (row(html! {
            (text("c.__c__.port.__i__.name", "Port name", "http"))
            (text("c.__c__.port.__i__.containerPort", "Container port", "8080"))
            (select("c.__c__.port.__i__.protocol", "Protocol", &[("TCP", "TCP"), ("UDP", "UDP"), ("SCTP", "SCTP")]))
            (text("c.__c__.port.__i__.hostPort", "Host port", ""))
        })) }
        template #tpl-env { (row(html! {
            (text("c.__c__.env.__i__.name", "Name", "LOG_LEVEL"))
            (select("c.__c__.env.__i__.source", "Source", &[("value", "value"), ("configMap", "ConfigMap key"), ("secret", "Secret key"), ("field", "pod field")]))
            (text("c.__c__.env.__i__.value", "Value", "info"))
            (text("c.__c__.env.__i__.ref", "ConfigMap / Secret name, or field path", "spec.nodeName"))
            (text("c.__c__.env.__i__.key", "Key", "level"))
        })) }
        template #tpl-vol { (row(html! {
            (select("c.__c__.vol.__i__.type", "Type", &[("hostPath", "hostPath"), ("emptyDir", "emptyDir"), ("pvc", "existing PVC"), ("configMap", "ConfigMap"), ("secret", "Secret")]))
            (text("c.__c__.vol.__i__.name", "Volume name", "data"))
            (text("c.__c__.vol.__i__.source", "Host path, claim, ConfigMap or Secret name", "/var/log"))
            (select("c.__c__.vol.__i__.hostPathType", "hostPath type", &[("", "(none)"), ("Directory", "Directory"), ("DirectoryOrCreate", "DirectoryOrCreate"), ("File", "File"), ("FileOrCreate", "FileOrCreate"), ("Socket", "Socket")]))
            (text("c.__c__.vol.__i__.mountPath", "Mount path", "/data"))
            label.check { input type="checkbox" name="c.__c__.vol.__i__.readOnly"; "read-only" }
        })) }
        template #tpl-svc-port { (row(html! {
            (text("svc.port.__i__.name", "Name", "http"))
            (text("svc.port.__i__.port", "Port", "80"))
            (text("svc.port.__i__.targetPort", "Target port", "8080"))
            (select("svc.port.__i__.protocol", "Protocol", &[("TCP", "TCP"), ("UDP", "UDP")]))
            (text("svc.port.__i__.nodePort", "Node port (NodePort only)", "30080"))
        })) }
        template #tpl-tol { (row(html! {
            (text("tol.__i__.key", "Key", "dedicated"))
            (select("tol.__i__.operator", "Operator", &[("Equal", "Equal"), ("Exists", "Exists")]))
            (text("tol.__i__.value", "Value", "gpu"))
            (select("tol.__i__.effect", "Effect", &[("", "all effects"), ("NoSchedule", "NoSchedule"), ("PreferNoSchedule", "PreferNoSchedule"), ("NoExecute", "NoExecute")]))
            (text("tol.__i__.seconds", "tolerationSeconds (NoExecute)", "300"))
        })) }
        template #tpl-na { (row(html! {
            (text("na.__i__.key", "Node label", "kubernetes.io/hostname"))
            (select("na.__i__.operator", "Operator", &[("In", "In"), ("NotIn", "NotIn"), ("Exists", "Exists"), ("DoesNotExist", "DoesNotExist"), ("Gt", "Gt"), ("Lt", "Lt")]))
            (text("na.__i__.values", "Values (comma separated)", "node-1, node-2"))
        })) }
        template #tpl-pa { (row(html! {
            (select("pa.__i__.kind", "Kind", &[("affinity", "pod affinity"), ("anti", "pod anti-affinity")]))
            (area("pa.__i__.labels", "Pod labels (key=value per line)", "app=cache"))
            (text("pa.__i__.topologyKey", "Topology key", "kubernetes.io/hostname"))
        })) }
        template #tpl-container { (container_fields("__i__", "container")) }
        template #tpl-init { (container_fields("__i__", "init")) }
    }
}

pub async fn page(Session(client): Session) -> Response {
    wizard(&client, None).await
}

/// An existing DaemonSet the wizard edits: where it is, its fields, and the digest of what the
/// fields were read from (a save over a newer version is refused as a conflict).
pub(crate) struct Editing {
    pub namespace: String,
    pub name: String,
    pub fields: Vec<(String, String)>,
    pub basis: String,
}

/// The wizard: empty for a create, filled with an existing DaemonSet's fields for an edit.
pub(crate) async fn wizard(client: &ApiClient, editing: Option<&Editing>) -> Response {
    let namespaces: Vec<k8s_openapi::api::core::v1::Namespace> = match editing {
        // An edit stays in its namespace.
        Some(e) => {
            serde_json::from_value(json!([{"metadata": {"name": e.namespace}}])).unwrap_or_default()
        }
        None => client
            .list_as("/api/v1/namespaces")
            .await
            .unwrap_or_default(),
    };
    let (title, action, label, confirm) = match editing {
        Some(e) => (
            format!("Edit DaemonSet {}", e.name),
            format!("/ui/daemonsets/{}/{}/wizard", e.namespace, e.name),
            "Preview and save",
            "Confirm save",
        ),
        None => (
            "Create a DaemonSet".to_owned(),
            "/ui/create".to_owned(),
            "Preview and create",
            "Confirm create",
        ),
    };
    let fill = editing.map(|e| json!(e.fields).to_string());
    let steps = [
        "Basic information",
        "Containers",
        "Service",
        "Advanced",
        "Review YAML",
    ];
    crate::layout::page(
        &title,
        if editing.is_some() { Nav::DaemonSets } else { Nav::Create },
        html! {
            h1 { (title) }
            @if let Some(e) = editing {
                p.muted { "Every section of the wizard, filled from the DaemonSet as it is. Saving replaces it (a change made meanwhile by someone else is refused as a conflict); the Service the wizard made is updated too. "
                    a href={"/ui/daemonsets/" (e.namespace) "/" (e.name)} { "Back to " (e.name) } }
            }
            (row_templates())
            form.wizard method="post" action=(action) data-json-submit data-fill=[fill] {
                @if let Some(e) = editing {
                    input type="hidden" name="basis" value=(e.basis);
                }
                nav.tabs { @for (i, s) in steps.iter().enumerate() { button type="button" data-step=(i) { (i + 1) ". " (s) } } }
                div.error.form-errors role="alert" hidden {}
                section.step data-name="basic" {
                    fieldset {
                        legend { "Basic information" }
                        label { "Name" input name="name" required maxlength="63" data-dns-label pattern="[a-z0-9]([a-z0-9\\-]*[a-z0-9])?" placeholder="node-exporter" readonly[editing.is_some()]; }
                        label { "Namespace" select name="namespace" {
                            @for n in &namespaces { @let n = n.metadata.name.as_deref().unwrap_or_default(); option value=(n) selected[n == "default"] { (n) } }
                        } }
                        label { "Description (up to 512 characters)" textarea name="description" maxlength="512" rows="3" {} }
                    }
                }
                section.step data-name="containers" {
                    div #containers data-next="1" { (container_fields("0", "container")) }
                    button type="button" data-add="tpl-container" data-into="containers" { "+ Container" }
                    " "
                    button type="button" data-add="tpl-init" data-into="containers" { "+ Init container" }
                }
                section.step data-name="service" {
                    fieldset {
                        legend { "Service (optional)" }
                        label.check { input type="checkbox" name="svc.enabled"; "create a Service selecting the daemon pods" }
                        (text("svc.name", "Service name (default: the DaemonSet's)", ""))
                        (select("svc.type", "Type", &[("ClusterIP", "ClusterIP"), ("Headless", "Headless"), ("NodePort", "NodePort")]))
                        div #svc-ports {}
                        button type="button" data-add="tpl-svc-port" data-into="svc-ports" { "+ Port" }
                    }
                }
                section.step data-name="advanced" {
                    fieldset {
                        legend { "DNS" }
                        (select("dnsPolicy", "DNS policy", &[("", "default (ClusterFirst)"), ("ClusterFirst", "ClusterFirst"), ("ClusterFirstWithHostNet", "ClusterFirstWithHostNet"), ("Default", "Default"), ("None", "None")]))
                        (area("nameservers", "Nameservers (one per line)", "10.0.0.10"))
                        (area("searches", "Search domains (one per line, at most 6)", "svc.cluster.local"))
                        (area("dnsOptions", "Options (name=value per line)", "ndots=2"))
                        (area("hostAliases", "Host aliases (IP then names, per line)", "10.1.2.3 db.local"))
                    }
                    fieldset {
                        legend { "Upgrade strategy" }
                        (select("strategy", "Strategy", &[("RollingUpdate", "RollingUpdate"), ("OnDelete", "OnDelete")]))
                        (text("maxUnavailable", "maxUnavailable", "1"))
                        (text("maxSurge", "maxSurge", "0"))
                        (text("minReadySeconds", "minReadySeconds", "0"))
                        (text("revisionHistoryLimit", "revisionHistoryLimit", "10"))
                        (text("terminationGracePeriodSeconds", "terminationGracePeriodSeconds", "30"))
                        label { "Upgrade maximum duration (seconds): a rollout that makes no progress for this long is marked failed; empty for none"
                            input name="progressDeadlineSeconds" value="600"; }
                        label.check { input type="checkbox" name="autoRollback" value="true";
                            "roll back automatically to the last complete revision when it fails" }
                    }
                    fieldset {
                        legend { "Scheduling" }
                        h2 { "Tolerations" }
                        div #tolerations {}
                        button type="button" data-add="tpl-tol" data-into="tolerations" { "+ Toleration" }
                        h2 { "Node selector" }
                        (area("nodeSelector", "key=value per line", "kubernetes.io/os=linux"))
                        h2 { "Node affinity (required)" }
                        div #node-affinity {}
                        button type="button" data-add="tpl-na" data-into="node-affinity" { "+ Node affinity rule" }
                        h2 { "Pod affinity / anti-affinity" }
                        div #pod-affinity {}
                        button type="button" data-add="tpl-pa" data-into="pod-affinity" { "+ Pod affinity rule" }
                    }
                    fieldset {
                        legend { "Labels and annotations" }
                        (area("labels", "DaemonSet labels (key=value per line)", "team=infra"))
                        (area("annotations", "DaemonSet annotations", "owner=ops"))
                        (area("podLabels", "Pod labels (also the selector; default app=<name>)", "app=node-exporter"))
                        (area("podAnnotations", "Pod annotations", "prometheus.io/scrape=true"))
                        label.check { input type="checkbox" name="syncTimezone"; "sync the host's timezone (mount /etc/localtime)" }
                    }
                }
                section.step data-name="review" {
                    p.muted { "This is what will be submitted:" }
                    pre #preview {}
                }
                // Filled by the first press of Create: what the create does to the nodes.
                div #change-preview-box data-preview-box hidden {}
                input type="hidden" name=(crate::preview::FIELD) value="";
                div.wizard-nav {
                    button type="button" data-move="-1" { "Back" }
                    button type="button" data-move="1" { "Next" }
                    button.primary type="submit" data-label=(label) data-confirm-label=(confirm) { (label) }
                }
            }
        },
    )
    .into_response()
}

fn rendered(built: &Built) -> String {
    let mut out = yaml(&built.daemonset);
    if let Some(svc) = &built.service {
        out.push_str("---\n");
        out.push_str(&yaml(svc));
    }
    out
}

pub async fn preview(body: Bytes) -> Json<Value> {
    match Form::parse(&body)
        .map_err(|m| FormError {
            field: String::new(),
            message: m,
        })
        .and_then(|f| build(&f))
    {
        Ok(built) => Json(json!({"yaml": rendered(&built)})),
        Err(e) => Json(json!({"message": format!("{}: {}", e.field, e.message)})),
    }
}

fn answer_for(built: &Built, what: &str, e: &ConsoleError) -> Json<Value> {
    let errors: Vec<Value> = e
        .causes()
        .iter()
        .map(|c| json!({"field": c.field, "message": c.message, "input": form_field(built, &c.field)}))
        .collect();
    Json(json!({"message": format!("{what}: {e}"), "errors": errors}))
}

async fn create(
    client: &ApiClient,
    built: &Built,
    dry_run: bool,
) -> Result<Value, (&'static str, ConsoleError)> {
    let ns = &built.namespace;
    let q = if dry_run {
        "?fieldValidation=Strict&dryRun=All"
    } else {
        "?fieldValidation=Strict"
    };
    let daemonset = client
        .write(
            Method::POST,
            &format!("/apis/apps/v1/namespaces/{ns}/daemonsets{q}"),
            JSON,
            &built.daemonset,
        )
        .await
        .map_err(|e| ("The DaemonSet was refused", e))?;
    if let Some(svc) = &built.service {
        client
            .write(
                Method::POST,
                &format!("/api/v1/namespaces/{ns}/services{q}"),
                JSON,
                svc,
            )
            .await
            .map_err(|e| ("The Service was refused", e))?;
    }
    Ok(daemonset)
}

/// The wizard's form as objects, or the JSON answer naming the input the form refuses.
pub(crate) fn built_from(body: &[u8]) -> Result<Built, Json<Value>> {
    Form::parse(body)
        .map_err(|m| FormError {
            field: String::new(),
            message: m,
        })
        .and_then(|f| build(&f))
        .map_err(|e| {
            Json(json!({"message": "The form has a problem", "errors": [{"field": "", "input": e.field, "message": e.message}]}))
        })
}

/// The wizard's two presses: `write` is first a dry run (the server checks everything, so a
/// refused Service leaves no DaemonSet behind) and the preview of what it does to the nodes
/// over `current` (None for a create); then, when the body carries the digest of that very
/// submission, the write itself, and the browser goes to `location`.
pub(crate) async fn preview_then_write<W, F>(
    client: &ApiClient,
    built: &Built,
    body: &[u8],
    current: Option<&DaemonSet>,
    write: W,
    location: String,
) -> Response
where
    W: Fn(bool) -> F,
    F: std::future::Future<Output = Result<Value, (&'static str, ConsoleError)>>,
{
    let submission = serde_json::to_vec(&(&built.daemonset, &built.service)).unwrap_or_default();
    let digest = crate::preview::digest(&submission);
    let previewed: BTreeMap<String, String> =
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k == crate::preview::FIELD)
            .collect();
    let confirmed = crate::preview::confirmed(&previewed, &digest);
    for dry_run in [true, false] {
        let result = match write(dry_run).await {
            Ok(daemonset) if dry_run && !confirmed => {
                crate::preview::compute(client, &daemonset, current)
                    .await
                    .map(|(p, known)| crate::preview::render(&p, known))
                    .map_err(|e| ("The preview failed", e))
            }
            Ok(_) => continue,
            Err(e) => Err(e),
        };
        match result {
            Ok(preview) => {
                return Json(json!({"preview": preview.into_string(), "previewed": digest}))
                    .into_response();
            }
            Err((_, ConsoleError::Unauthorized)) => {
                return Json(json!({"location": "/ui/login"})).into_response();
            }
            Err((what, e)) => return answer_for(built, what, &e).into_response(),
        }
    }
    Json(json!({"location": location})).into_response()
}

pub async fn submit(Session(client): Session, body: Bytes) -> Response {
    let built = match built_from(&body) {
        Ok(b) => b,
        Err(answer) => return answer.into_response(),
    };
    let name = str_at(&built.daemonset, "/metadata/name");
    let location = format!(
        "/ui/daemonsets/{}/{name}?tab=overview&notice=Created.",
        built.namespace
    );
    preview_then_write(
        &client,
        &built,
        &body,
        None,
        |dry_run| create(&client, &built, dry_run),
        location,
    )
    .await
}

fn import_form(text: &str, results: Markup) -> Response {
    import_form_marking(text, results, None)
}

/// The import page with `text` in the editor and, for a YAML error, its line marked.
fn import_form_marking(text: &str, results: Markup, error_line: Option<usize>) -> Response {
    crate::layout::page(
        "Import YAML",
        Nav::Import,
        html! {
            h1 { "Create from YAML" }
            p.muted { "Paste manifests (several may be separated by ---) or upload a file. Fields the server sets (uid, resourceVersion, creationTimestamp, generation, managedFields, status) are removed from exported objects, and the result says which. Unknown fields are refused with their paths." }
            (results)
            form method="post" action="/ui/import" {
                p { label.check { "Upload a file" input type="file" accept=".yaml,.yml,.json" data-load-into="yaml-editor"; } }
                textarea.code #yaml-editor name="yaml" spellcheck="false" data-editor="yaml" data-error-line=[error_line] placeholder="apiVersion: apps/v1\nkind: DaemonSet\n..." { (text) }
                p { button.primary type="submit" { "Create" } }
            }
        },
    )
    .into_response()
}

pub async fn import_page(Session(_): Session) -> Response {
    import_form("", html! {})
}

#[derive(Deserialize)]
pub struct ImportForm {
    yaml: String,
}

fn collection_of(res: &everynode_api::registry::Resource, obj: &Value) -> String {
    let prefix = if res.group.is_empty() {
        format!("/api/{}", res.version)
    } else {
        format!("/apis/{}/{}", res.group, res.version)
    };
    // A cluster-scoped resource has no namespace segment; a namespaced one defaults to `default`.
    let ns = if res.namespaced {
        obj.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or("default")
    } else {
        ""
    };
    crate::daemonsets::collection(&prefix, ns, res.plural)
}

pub async fn import(
    Session(client): Session,
    axum::Form(form): axum::Form<ImportForm>,
) -> Response {
    let docs = match import::parse(&form.yaml) {
        Ok(d) if d.is_empty() => {
            return import_form(
                &form.yaml,
                html! { div.error role="alert" { p { "Nothing to create: the text has no manifest." } } },
            );
        }
        Ok(d) => d,
        Err(e) => {
            return import_form_marking(
                &form.yaml,
                html! { div.error.yaml-error role="alert" { p { "YAML error at " (e.to_string()) ". Nothing was created." } } },
                Some(e.line).filter(|l| *l > 0),
            );
        }
    };
    let mut targets = Vec::new();
    for doc in &docs {
        match import::resource_of(&doc.object) {
            Ok(res) => targets.push((res, collection_of(res, &doc.object))),
            Err(e) => {
                return import_form(
                    &form.yaml,
                    html! { div.error role="alert" { p { (e) ". Nothing was created." } } },
                );
            }
        }
    }
    // All documents are checked (dry run) before any is created.
    for dry_run in [true, false] {
        for (doc, (res, path)) in docs.iter().zip(&targets) {
            let q = if dry_run {
                "?fieldValidation=Strict&dryRun=All"
            } else {
                "?fieldValidation=Strict"
            };
            if let Err(e) = client
                .write(Method::POST, &format!("{path}{q}"), JSON, &doc.object)
                .await
            {
                let name = str_at(&doc.object, "/metadata/name");
                let created_before = if dry_run {
                    "Nothing was created."
                } else {
                    "Documents before it were created."
                };
                return import_form(
                    &form.yaml,
                    html! {
                        p { (res.kind) " " (name) ": " (created_before) }
                        (error_box(&e))
                    },
                );
            }
        }
    }
    let results = html! {
        div.notice role="status" {
            @for (doc, (res, _)) in docs.iter().zip(&targets) {
                @let ns = doc.object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default");
                @let name = str_at(&doc.object, "/metadata/name");
                p.created {
                    "Created " (res.kind) " "
                    @if res.id == everynode_api::registry::Kind::DaemonSet { a href={"/ui/daemonsets/" (ns) "/" (name)} { (ns) "/" (name) } } @else { (name) }
                    "."
                    @if !doc.dropped.is_empty() { " Removed the server-set fields " code.dropped { (doc.dropped.join(", ")) } "." }
                }
            }
        }
    };
    import_form("", results)
}
