//! Transaction keys: how requests and responses find their transaction (RFC 3261 17.1.3,
//! 17.2.3).

use super::*;

/// Which side of a transaction a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// We sent the request.
    Client,
    /// We received the request.
    Server,
}

/// Identifies a transaction.
///
/// * Server side (RFC 3261 17.2.3): the top Via branch, if it starts with the
///   magic cookie, plus the top Via sent-by plus the method (ACK counts as
///   INVITE; CANCEL is its own transaction). Without the cookie the RFC 2543
///   rule applies: Request-URI, From tag, Call-ID, CSeq number, top Via and
///   method (the To tag is left out, so that the ACK for a non-2xx, which
///   carries the response's To tag, matches its INVITE).
/// * Client side (RFC 3261 17.1.3): the top Via branch plus the CSeq method.
///
/// Branches and hosts compare case-insensitively. The key also records the
/// [`Role`], so client and server transactions never collide, even when the
/// node sends a request to itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    role: Role,
    id: KeyId,
    method: Method,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum KeyId {
    Branch {
        branch: String,
        sent_by: Option<String>,
    },
    Rfc2543(Box<LegacyId>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LegacyId {
    request_uri: String,
    from_tag: Option<String>,
    call_id: String,
    cseq: u32,
    top_via: String,
}

fn sent_by(via: &ViaRef<'_>) -> String {
    let mut s = String::with_capacity(via.host.len() + 6);
    s.push_str(via.host);
    s.make_ascii_lowercase();
    if let Some(p) = via.port {
        use std::fmt::Write as _;
        let _ = write!(s, ":{p}");
    }
    s
}

/// The cookie test, case-insensitive like the branch comparison.
fn has_magic_cookie(branch: &str) -> bool {
    branch
        .get(..MAGIC_COOKIE.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(MAGIC_COOKIE))
}

fn key_method(m: &Method) -> Method {
    match m {
        Method::Ack => Method::Invite,
        other => other.clone(),
    }
}

impl TransactionKey {
    /// The key of the server transaction an incoming request belongs to
    /// (RFC 3261 17.2.3). For an ACK this is the key of the INVITE it
    /// acknowledges.
    pub fn for_request(req: &Request) -> Result<Self, TransactionError> {
        let via = req.headers.top_via_ref().map_err(unidentifiable)?;
        let method = key_method(&req.method);
        let id = match via.branch() {
            Some(b) if has_magic_cookie(b) => KeyId::Branch {
                branch: b.to_ascii_lowercase(),
                sent_by: Some(sent_by(&via)),
            },
            _ => {
                let cseq = req.cseq().map_err(unidentifiable)?;
                let call_id = req
                    .call_id()
                    .ok_or_else(|| unidentifiable("missing Call-ID"))?;
                let from_tag = req
                    .headers
                    .from_ref()
                    .map_err(unidentifiable)?
                    .tag()
                    .map(str::to_string);
                let mut top = via.to_owned_via();
                top.host.make_ascii_lowercase();
                KeyId::Rfc2543(Box::new(LegacyId {
                    request_uri: req.uri.trim().to_string(),
                    from_tag,
                    call_id: call_id.to_string(),
                    cseq: cseq.seq,
                    top_via: top.to_string(),
                }))
            }
        };
        Ok(TransactionKey {
            role: Role::Server,
            id,
            method,
        })
    }

    /// The key of the client transaction an outgoing request creates
    /// (RFC 3261 17.1.3): top Via branch and method. The branch is required.
    pub fn client_for_request(req: &Request) -> Result<Self, TransactionError> {
        let via = req.headers.top_via_ref().map_err(unidentifiable)?;
        let branch = via
            .branch()
            .ok_or_else(|| unidentifiable("top Via has no branch"))?;
        Ok(TransactionKey {
            role: Role::Client,
            id: KeyId::Branch {
                branch: branch.to_ascii_lowercase(),
                sent_by: None,
            },
            method: key_method(&req.method),
        })
    }

    /// The key of the client transaction an incoming response belongs to
    /// (RFC 3261 17.1.3): top Via branch and CSeq method.
    pub fn for_response(resp: &Response) -> Result<Self, TransactionError> {
        let via = resp.headers.top_via_ref().map_err(unidentifiable)?;
        let branch = via
            .branch()
            .ok_or_else(|| unidentifiable("top Via has no branch"))?;
        let cseq = resp.cseq().map_err(unidentifiable)?;
        Ok(TransactionKey {
            role: Role::Client,
            id: KeyId::Branch {
                branch: branch.to_ascii_lowercase(),
                sent_by: None,
            },
            method: cseq.method,
        })
    }

    /// Client or server side.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The method of the request that created the transaction.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The (lower-cased) branch, unless the key follows the RFC 2543 rule.
    pub fn branch(&self) -> Option<&str> {
        match &self.id {
            KeyId::Branch { branch, .. } => Some(branch),
            KeyId::Rfc2543(_) => None,
        }
    }

    /// The same transaction identifier with another method: a CANCEL's key
    /// with [`Method::Invite`] is the key of the INVITE it cancels (RFC 3261
    /// 9.2).
    pub fn with_method(&self, method: Method) -> TransactionKey {
        TransactionKey {
            role: self.role,
            id: self.id.clone(),
            method,
        }
    }
}
