//! PUT of one object or its status: replace it.

use crate::body;
use crate::error::ApiResult;
use crate::registry::{Registry, UpdateMode, Write};
use crate::request::ResourcePath;
use crate::request::options::UpdateOptions;
use crate::response;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::Response;
use std::sync::Arc;

/// The object an update or a patch writes, and which part of it.
pub struct Target<'a> {
    pub path: &'a ResourcePath,
    pub name: &'a str,
    pub mode: UpdateMode,
}

impl<'a> Target<'a> {
    /// The write to this target by `manager`.
    pub fn write(&self, dry_run: bool, manager: Option<&'a str>) -> Write<'a> {
        Write {
            res: self.path.res,
            namespace: self.path.namespace(),
            name: self.name,
            mode: self.mode,
            dry_run,
            manager,
        }
    }
}

pub async fn handle(
    registry: &Arc<Registry>,
    target: &Target<'_>,
    options: &UpdateOptions,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<Response> {
    let written = body::written_object(target.path, headers, body, options)?;
    let (obj, created) = registry
        .replace(
            &target.write(options.dry_run, Some(&written.manager)),
            written.object,
        )
        .await?;
    Ok(response::with_warnings(
        response::written(created, &obj),
        &written.warnings,
    ))
}
