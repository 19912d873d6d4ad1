//! The API's routes: path, method, `Allow` and metric name.

use http::{HeaderValue, Method};

/// The routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    GenerateToken,
    ActiveKey,
    Health,
    AdminStatus,
    AdminPage,
    Adapter(&'static str),
}

impl Route {
    pub(crate) fn find(path: &str) -> Option<Self> {
        match path {
            "/generate-token" => Some(Self::GenerateToken),
            "/active-key" => Some(Self::ActiveKey),
            "/health" => Some(Self::Health),
            "/admin/status" => Some(Self::AdminStatus),
            "/admin/page" => Some(Self::AdminPage),
            _ => None,
        }
    }

    pub(crate) fn method(self) -> Method {
        match self {
            Self::GenerateToken | Self::Adapter(_) => Method::POST,
            Self::ActiveKey | Self::Health | Self::AdminStatus | Self::AdminPage => Method::GET,
        }
    }

    /// The `Allow` header of a `405` on this route.
    pub(crate) fn allow(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::GenerateToken | Self::Adapter(_) => "POST",
            Self::ActiveKey | Self::Health | Self::AdminStatus | Self::AdminPage => "GET",
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::GenerateToken => "generate_token",
            Self::ActiveKey => "active_key",
            Self::Health => "health",
            Self::AdminStatus => "admin_status",
            Self::AdminPage => "admin_page",
            Self::Adapter(name) => name,
        }
    }
}
