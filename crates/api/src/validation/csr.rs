//! CertificateSigningRequest validation, with upstream's fields and wording
//! (`pkg/apis/certificates/validation`).

use crate::csr::{APPROVED, DENIED, FAILED, KEY_USAGES, RequestedIdentity};
use crate::field::{BadValue, ErrorList, FieldError, Path};
use crate::names;
use base64::Engine;
use serde_json::Value;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509CertificationRequest};

/// How Go's `%#v` prints a byte slice, which is what upstream shows for a bad `spec.request`.
fn go_bytes(bytes: &[u8]) -> BadValue {
    let shown: Vec<String> = bytes.iter().map(|b| format!("{b:#04x}")).collect();
    BadValue::Raw(format!("[]byte{{{}}}", shown.join(", ")))
}

/// The bytes of a base64 field (`spec.request`, `status.certificate`).
fn decoded(v: &Value) -> Vec<u8> {
    v.as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .unwrap_or_default()
}

/// Parses a PEM certificate request, checks its signature, and says whom it names.
pub fn parse_request(pem: &[u8]) -> Result<RequestedIdentity, String> {
    let wrong_type = || "PEM block type must be CERTIFICATE REQUEST".to_owned();
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|_| wrong_type())?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err(wrong_type());
    }
    let (_, csr) = X509CertificationRequest::from_der(&block.contents)
        .map_err(|e| format!("x509: malformed certificate request: {e}"))?;
    csr.verify_signature()
        .map_err(|_| "x509: ECDSA verification failure".to_owned())?;
    let info = &csr.certification_request_info;
    let texts = |iter: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        iter.filter_map(|a| a.as_str().ok().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let mut identity = RequestedIdentity {
        common_name: texts(&mut info.subject.iter_common_name())
            .into_iter()
            .next()
            .unwrap_or_default(),
        organizations: texts(&mut info.subject.iter_organization()),
        ..RequestedIdentity::default()
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(d) => identity.dns_names.push((*d).to_owned()),
                    GeneralName::RFC822Name(e) => identity.email_addresses.push((*e).to_owned()),
                    GeneralName::URI(u) => identity.uris.push((*u).to_owned()),
                    GeneralName::IPAddress(ip) => identity.ip_addresses.push(format!("{ip:?}")),
                    _ => {}
                }
            }
        }
    }
    Ok(identity)
}

fn validate_signer_name(signer: &str, path: &Path) -> ErrorList {
    let mut errs = ErrorList::new();
    if signer.is_empty() {
        errs.push(FieldError::required(path, ""));
        return errs;
    }
    let shape = "must be a fully qualified domain and path of the form 'example.com/signer-name'";
    let Some((domain, rest)) = signer.split_once('/') else {
        errs.push(FieldError::invalid(path, signer, shape));
        return errs;
    };
    if rest.is_empty() || !domain.contains('.') || !names::dns1123_subdomain(domain).is_empty() {
        errs.push(FieldError::invalid(path, signer, shape));
    }
    errs
}

fn validate_conditions(obj: &Value) -> ErrorList {
    let mut errs = ErrorList::new();
    let path = Path::root("status").child("conditions");
    let list = obj["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut seen = std::collections::BTreeSet::new();
    let has = |kind: &str| list.iter().any(|c| c["type"] == kind);
    for (i, c) in list.iter().enumerate() {
        let kind = c["type"].as_str().unwrap_or("");
        let status = c["status"].as_str().unwrap_or("");
        let p = path.index(i);
        if kind.is_empty() {
            errs.push(FieldError::required(&p.child("type"), ""));
        }
        if [APPROVED, DENIED, FAILED].contains(&kind) && !seen.insert(kind.to_owned()) {
            errs.push(FieldError::duplicate(&p.child("type"), kind));
        }
        if [APPROVED, DENIED].contains(&kind) {
            if status != "True" {
                errs.push(FieldError::not_supported(
                    &p.child("status"),
                    status,
                    &["True"],
                ));
            }
        } else if !["True", "False", "Unknown"].contains(&status) {
            errs.push(FieldError::not_supported(
                &p.child("status"),
                status,
                &["False", "True", "Unknown"],
            ));
        }
    }
    if has(APPROVED) && has(DENIED) {
        errs.push(FieldError::invalid(
            &path,
            APPROVED,
            "Approved and Denied conditions are mutually exclusive",
        ));
    }
    errs
}

/// Everything checked on a request, whichever way it is written.
pub fn validate(obj: &Value) -> ErrorList {
    let spec = Path::root("spec");
    let mut errs = ErrorList::new();
    let request = decoded(&obj["spec"]["request"]);
    if let Err(why) = parse_request(&request) {
        errs.push(FieldError::invalid(
            &spec.child("request"),
            go_bytes(&request),
            why,
        ));
    }
    let usages = obj["spec"]["usages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if usages.is_empty() {
        errs.push(FieldError::required(
            &spec.child("usages"),
            "usages must be provided",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, usage) in usages.iter().enumerate() {
        let u = usage.as_str().unwrap_or("");
        if !KEY_USAGES.contains(&u) {
            let mut supported = KEY_USAGES.to_vec();
            supported.sort_unstable();
            errs.push(FieldError::not_supported(
                &spec.child("usages").index(i),
                u,
                &supported,
            ));
        } else if !seen.insert(u) {
            errs.push(FieldError::duplicate(&spec.child("usages").index(i), u));
        }
    }
    errs.extend(validate_signer_name(
        obj["spec"]["signerName"].as_str().unwrap_or(""),
        &spec.child("signerName"),
    ));
    if let Some(seconds) = obj["spec"]["expirationSeconds"].as_i64()
        && seconds < 600
    {
        errs.push(FieldError::invalid(
            &spec.child("expirationSeconds"),
            seconds,
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
    errs.extend(validate_conditions(obj));
    if let Some(cert) = obj["status"].get("certificate") {
        let bytes = decoded(cert);
        let is_cert = x509_parser::pem::Pem::iter_from_buffer(&bytes)
            .map(|p| p.map(|p| p.label == "CERTIFICATE"))
            .collect::<Result<Vec<bool>, _>>()
            .is_ok_and(|labels| !labels.is_empty() && labels.iter().all(|l| *l));
        if !bytes.is_empty() && !is_cert {
            errs.push(FieldError::invalid(
                &Path::root("status").child("certificate"),
                BadValue::Raw("\"<certificate data>\"".into()),
                "must contain at least one CERTIFICATE PEM block",
            ));
        }
    }
    errs
}

/// What an update through `/status` or `/approval` may not do: take back an approval or a
/// denial, or change an issued certificate.
pub fn validate_status_update(new: &Value, old: &Value) -> ErrorList {
    let mut errs = validate(new);
    let kinds = |v: &Value| -> Vec<String> {
        v["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["type"].as_str().map(str::to_owned))
            .collect()
    };
    let (now, before) = (kinds(new), kinds(old));
    for kind in [APPROVED, DENIED] {
        if before.iter().any(|k| k == kind) && !now.iter().any(|k| k == kind) {
            errs.push(FieldError::forbidden(
                &Path::root("status").child("conditions"),
                format!("updates may not remove a condition of type {kind:?}"),
            ));
        }
    }
    let old_cert = old["status"]["certificate"].as_str().unwrap_or("");
    if !old_cert.is_empty() && new["status"]["certificate"].as_str() != Some(old_cert) {
        errs.push(FieldError::invalid(
            &Path::root("status").child("certificate"),
            BadValue::Raw("\"<certificate data>\"".into()),
            "updates may not modify existing certificate content",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request_pem(cn: &str, org: &str) -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, org);
        params
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem")
    }

    fn csr(pem: &str) -> Value {
        let b64 = base64::engine::general_purpose::STANDARD.encode(pem);
        json!({"metadata": {"name": "c"}, "spec": {"request": b64,
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"]}})
    }

    fn messages(errs: &ErrorList) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_signed_request_parses_to_its_subject() {
        let id = parse_request(request_pem("system:node:n1", "system:nodes").as_bytes())
            .expect("parses");
        assert_eq!(id.common_name, "system:node:n1");
        assert_eq!(id.organizations, ["system:nodes"]);
        assert!(validate(&csr(&request_pem("a", "b"))).is_empty());
    }

    #[test]
    fn bad_requests_are_named_by_field_as_upstream() {
        let mut bad = csr("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        bad["spec"]["usages"] = json!(["client auth", "client auth", "flying"]);
        bad["spec"]["signerName"] = json!("nodomain");
        bad["spec"]["expirationSeconds"] = json!(60);
        let m = messages(&validate(&bad));
        assert!(
            m[0].starts_with("spec.request: Invalid value: []byte{0x2d, 0x2d"),
            "{m:?}"
        );
        assert!(
            m[0].ends_with(": PEM block type must be CERTIFICATE REQUEST"),
            "{m:?}"
        );
        assert_eq!(m[1], "spec.usages[1]: Duplicate value: \"client auth\"");
        assert!(
            m[2].starts_with(
                "spec.usages[2]: Unsupported value: \"flying\": supported values: \"any\""
            ),
            "{m:?}"
        );
        assert_eq!(
            m[3],
            "spec.signerName: Invalid value: \"nodomain\": must be a fully qualified domain and path of the form 'example.com/signer-name'"
        );
        assert_eq!(
            m[4],
            "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 600 seconds (10 minutes)"
        );
    }

    #[test]
    fn approval_is_true_once_and_cannot_be_taken_back() {
        let pem = request_pem("a", "b");
        let mut both = csr(&pem);
        both["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "False"}]});
        let m = messages(&validate(&both));
        assert_eq!(
            m[0],
            "status.conditions[1].status: Unsupported value: \"False\": supported values: \"True\""
        );
        assert_eq!(
            m[1],
            "status.conditions: Invalid value: \"Approved\": Approved and Denied conditions are mutually exclusive"
        );
        let mut approved = csr(&pem);
        approved["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}]});
        let m = messages(&validate_status_update(&csr(&pem), &approved));
        assert_eq!(
            m,
            [
                "status.conditions: Forbidden: updates may not remove a condition of type \"Approved\""
            ]
        );
    }
}
