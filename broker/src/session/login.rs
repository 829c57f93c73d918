//! Turning a `Hello`'s credentials into an identity.

use crate::context::Ctx;
use switchboard_protocol::auth::{hmac_sha256, secret_digest, sign_user_id, verify_hmac_sha256};
use switchboard_protocol::{Auth, Participant, TenantId, VisitorId};
use switchboard_raft_store::store::{durable, IdKind};

/// Longest verified user id accepted, bytes.
pub const MAX_USER_ID_LEN: usize = 256;

/// A logged-in identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// Its tenant.
    pub tenant: TenantId,
    /// Visitor or agent.
    pub who: Participant,
    /// For anonymous visitors, the token to resume as the same visitor.
    pub resume_token: Option<Vec<u8>>,
}

/// Why a login was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// No such tenant.
    #[error("unknown tenant {0}")]
    UnknownTenant(TenantId),
    /// Credentials did not verify.
    #[error("{0}")]
    BadCredentials(&'static str),
    /// The store could not allocate or look up the identity.
    #[error("store unavailable: {0}")]
    Storage(String),
}

/// The token that lets an anonymous visitor come back as itself:
/// `HMAC-SHA256(tenant signing secret, "switchboard-resume" || tenant || visitor)`.
pub fn resume_token(signing_secret: &[u8], tenant: TenantId, visitor: VisitorId) -> [u8; 32] {
    hmac_sha256(signing_secret, &resume_message(tenant, visitor))
}

fn resume_message(tenant: TenantId, visitor: VisitorId) -> Vec<u8> {
    let mut m = b"switchboard-resume".to_vec();
    m.extend_from_slice(&tenant.0.to_be_bytes());
    m.extend_from_slice(&visitor.0.to_be_bytes());
    m
}

/// Checks credentials; may allocate a visitor id (durably).
pub async fn authenticate(ctx: &Ctx, auth: Auth) -> Result<Principal, LoginError> {
    match auth {
        Auth::Anonymous { tenant } => {
            let t = ctx.directory.tenant(tenant).ok_or(LoginError::UnknownTenant(tenant))?;
            let id = durable(ctx.store.allocate_id(IdKind::Visitor)).await.map_err(|e| LoginError::Storage(e.to_string()))?;
            let visitor = VisitorId(id);
            Ok(Principal {
                tenant,
                who: Participant::Visitor(visitor),
                resume_token: Some(resume_token(&t.signing_secret, tenant, visitor).to_vec()),
            })
        }
        Auth::Resume { tenant, visitor, token } => {
            let t = ctx.directory.tenant(tenant).ok_or(LoginError::UnknownTenant(tenant))?;
            if !verify_hmac_sha256(&t.signing_secret, &resume_message(tenant, visitor), &token) {
                return Err(LoginError::BadCredentials("resume token does not match this visitor"));
            }
            Ok(Principal { tenant, who: Participant::Visitor(visitor), resume_token: Some(token) })
        }
        Auth::Verified { tenant, user_id, signature } => {
            let t = ctx.directory.tenant(tenant).ok_or(LoginError::UnknownTenant(tenant))?;
            if user_id.is_empty() || user_id.len() > MAX_USER_ID_LEN {
                return Err(LoginError::BadCredentials("user id must be 1 to 256 bytes"));
            }
            if !verify_hmac_sha256(&t.signing_secret, user_id.as_bytes(), &signature) {
                debug_assert_ne!(sign_user_id(&t.signing_secret, &user_id).as_slice(), signature.as_slice());
                return Err(LoginError::BadCredentials("signature is not HMAC-SHA256(signing secret, user id)"));
            }
            let visitor = durable(ctx.store.resolve_verified_visitor(tenant, &user_id))
                .await
                .map_err(|e| LoginError::Storage(e.to_string()))?;
            Ok(Principal { tenant, who: Participant::Visitor(visitor), resume_token: None })
        }
        Auth::Agent { token } => {
            let rec = ctx.directory.agent_token(&secret_digest(&token)).ok_or(LoginError::BadCredentials("unknown agent token"))?;
            ctx.directory.agent(rec.tenant, rec.agent).ok_or(LoginError::BadCredentials("agent no longer exists"))?;
            Ok(Principal { tenant: rec.tenant, who: Participant::Agent(rec.agent), resume_token: None })
        }
    }
}
