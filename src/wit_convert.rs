//! WIT ↔ core conversions. Each component's bindings generate their own copies of the shared
//! `types` interface, so the conversions are a macro expanded next to each: the same code,
//! checked by the compiler against each set of generated types. It expects `wit` (the
//! generated `coco::dropbox::types`) in scope.

macro_rules! conversions {
    () => {
        fn endpoints_in(e: wit::Endpoints) -> $crate::types::Endpoints {
            $crate::types::Endpoints { authorize: e.authorize, api: e.api }
        }

        fn app_in(a: wit::AppCredentials) -> $crate::types::AppCredentials {
            $crate::types::AppCredentials {
                client_id: a.client_id,
                client_secret: $crate::Secret::new(a.client_secret),
            }
        }

        fn tokens_in(t: wit::Tokens) -> $crate::types::Tokens {
            $crate::types::Tokens {
                access_token: $crate::Secret::new(t.access_token),
                expires_at: t.expires_at,
                refresh_token: $crate::Secret::new(t.refresh_token),
            }
        }

        fn tokens_out(t: $crate::types::Tokens) -> wit::Tokens {
            wit::Tokens {
                access_token: t.access_token.into_inner(),
                expires_at: t.expires_at,
                refresh_token: t.refresh_token.into_inner(),
            }
        }

        fn root_in(r: wit::RootInfo) -> $crate::types::RootInfo {
            $crate::types::RootInfo {
                is_team: r.is_team,
                root_namespace_id: r.root_namespace_id,
                home_namespace_id: r.home_namespace_id,
                home_path: r.home_path,
            }
        }

        fn root_out(r: $crate::types::RootInfo) -> wit::RootInfo {
            wit::RootInfo {
                is_team: r.is_team,
                root_namespace_id: r.root_namespace_id,
                home_namespace_id: r.home_namespace_id,
                home_path: r.home_path,
            }
        }

        fn error_out(e: $crate::Error) -> wit::Error {
            match e {
                $crate::Error::InvalidInput(m) => wit::Error::InvalidInput(m),
                $crate::Error::Denied(m) => wit::Error::Denied(m),
                $crate::Error::InvalidClient(m) => wit::Error::InvalidClient(m),
                $crate::Error::ReauthRequired(m) => wit::Error::ReauthRequired(m),
                $crate::Error::RateLimited(ms) => wit::Error::RateLimited(ms),
                $crate::Error::CursorReset(m) => wit::Error::CursorReset(m),
                $crate::Error::RootChanged(r) => wit::Error::RootChanged(root_out(r)),
                $crate::Error::PathNotFound(p) => wit::Error::PathNotFound(p),
                $crate::Error::Transient(m) => wit::Error::Transient(m),
                $crate::Error::Api(m) => wit::Error::Api(m),
            }
        }
    };
}

pub(crate) use conversions;
