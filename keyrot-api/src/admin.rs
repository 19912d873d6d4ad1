//! The admin route: `GET /admin/status`, every managed user's keys, stages and next action
//! ([`keyrot_core::report::UserState`]), for clients whose scope holds the admin right
//! ([`keyrot_core::token::ADMIN`], never implied by `*`). The API key, a bearer token
//! issued to that client, its allowlist and both scopes are checked as for `/active-key`.
//! The answer holds no secret: `UserState` has no field that could carry one.

use std::fmt;

use async_trait::async_trait;
use keyrot_core::BoxError;
use keyrot_core::Rotator;
use keyrot_core::driver::Unobserved;
use keyrot_core::model::Timestamp;
use keyrot_core::report::{GatherOptions, UserState, gather};
use keyrot_core::token::{Client, VerifiedToken};
use serde::Serialize;

use crate::request::{self, Credential, Rejection};
use crate::{Api, Audit, ErrorCode, RequestContext, Success};

/// What the admin routes show: every managed user's state, as of `generated_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// When the states were read: now for a [`Rotator`], the report's time for a stored
    /// report.
    pub generated_at: Timestamp,
    /// Every managed user's state.
    pub users: Vec<UserState>,
}

/// Where the admin route reads the users' status from: the [`Rotator`] of the process, the
/// deployed rotator's latest report, or anything else that can say it.
#[async_trait]
pub trait StatusSource: Send + Sync + fmt::Debug {
    /// Every managed user's state, read at `now` or earlier. Read-only.
    async fn status(&self, now: Timestamp) -> Result<Status, BoxError>;
}

#[async_trait]
impl StatusSource for Rotator {
    async fn status(&self, now: Timestamp) -> Result<Status, BoxError> {
        Ok(Status {
            generated_at: now,
            users: gather(self, &[], GatherOptions::default(), now, &Unobserved).await?,
        })
    }
}

/// The body of `GET /admin/status`.
#[derive(Serialize)]
struct StatusBody<'a> {
    generated_at: Timestamp,
    users: &'a [UserState],
}

impl Api {
    /// The client whose API key the request carries (from an allowed network) and the bearer
    /// token issued to it, verified: the authentication of `/active-key` and the admin route.
    pub(crate) fn authenticate_bearer(
        &self,
        parts: &http::request::Parts,
        ctx: &RequestContext,
        audit: &mut Audit,
    ) -> Result<(&Client, VerifiedToken), Rejection> {
        let client = self.authenticate(parts, ctx, audit)?;
        let token = request::credential(&parts.headers, Credential::Bearer)?;
        let verified = self
            .tokens
            .verify_for_client(token, client.id(), ctx.now)
            .map_err(|err| Rejection::from_token(&err))?;
        audit.jti = Some(verified.jti().to_owned());
        Ok((client, verified))
    }

    /// `GET /admin/status` (JSON) or, with `page`, `GET /admin/page` (HTML): authenticated
    /// like `/active-key`, then both the token's and the client's scope must hold the admin
    /// right (`403 forbidden` otherwise).
    pub(crate) async fn admin_status(
        &self,
        parts: &http::request::Parts,
        ctx: &RequestContext,
        audit: &mut Audit,
        page: bool,
    ) -> Result<Success, Rejection> {
        let source = self
            .status
            .as_ref()
            .ok_or(Rejection::new(ErrorCode::NotFound, "no_status_source"))?;
        let (client, verified) = self.authenticate_bearer(parts, ctx, audit)?;
        if !verified.scope().is_admin() {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                "token_scope_not_admin",
            ));
        }
        if !client.scope().is_admin() {
            return Err(Rejection::new(
                ErrorCode::Forbidden,
                "client_scope_not_admin",
            ));
        }
        let status = source.status(ctx.now).await.map_err(|err| {
            Rejection::new(ErrorCode::StoreUnavailable, "status_error")
                .with_detail(keyrot_core::driver::error_chain(err.as_ref()))
        })?;
        if page {
            return Ok(Success::Page(crate::page::render(
                &status.users,
                status.generated_at,
            )));
        }
        let body = StatusBody {
            generated_at: status.generated_at,
            users: &status.users,
        };
        serde_json::to_string(&body)
            .map(Success::Status)
            .map_err(|_| Rejection::new(ErrorCode::InternalError, "status_not_serialisable"))
    }
}
