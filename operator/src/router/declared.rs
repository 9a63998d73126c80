//! What a request declares in the standard MCP request headers of the 2026-07-28 revision
//! (SEP-2243): `Mcp-Method`, and on `tools/call` the tool in `Mcp-Name`. Intermediaries are
//! meant to route on them without reading bodies; the router reads the body anyway (sessions
//! and per-call metrics need it), routes a tool call by `Mcp-Name` when it is sent, and refuses
//! a request whose body says otherwise — 400 with `HeaderMismatch` (-32020), as a server of
//! that revision must — so that the router, the server and every other hop agree on which tool
//! a call is (a tool route would otherwise send a call of another tool to the canary under the
//! listed tool's name).

use hyper::header::HeaderMap;

use super::jsonrpc::{Sniffed, header_text};

const METHOD_HEADER: &str = "mcp-method";
const NAME_HEADER: &str = "mcp-name";

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Declared {
    method: Option<String>,
    name: Option<String>,
}

impl Declared {
    /// The headers as sent; an unreadable value (a broken `=?base64?…?=`, control characters)
    /// is an error.
    pub fn read(headers: &HeaderMap) -> Result<Self, &'static str> {
        let text = |name: &str, why: &'static str| match headers.get(name) {
            None => Ok(None),
            Some(v) => header_text(v.as_bytes()).map(Some).ok_or(why),
        };
        Ok(Self {
            method: text(METHOD_HEADER, "Mcp-Method is not readable")?,
            name: text(NAME_HEADER, "Mcp-Name is not readable")?,
        })
    }

    /// The tool a `tools/call` names in its headers.
    pub fn tool(&self) -> Option<&str> {
        if self.method.as_deref() == Some("tools/call") { self.name.as_deref() } else { None }
    }

    /// Whether the body says what the headers say (where both say something).
    pub fn check(&self, body: &Sniffed) -> Result<(), &'static str> {
        if let (Some(header), Some(body)) = (self.method.as_deref(), body.method.as_deref())
            && header != body
        {
            return Err("Mcp-Method does not match the body's method");
        }
        if let (Some(header), Some(body)) = (self.tool(), body.tool.as_deref())
            && header != body
        {
            return Err("Mcp-Name does not match the tool the body calls");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;
    use crate::router::jsonrpc::sniff;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    const CALL: &[u8] =
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{}}}"#;

    #[test]
    fn a_tool_call_is_routed_by_its_header_and_must_agree_with_its_body() {
        let declared =
            Declared::read(&headers(&[("mcp-method", "tools/call"), ("mcp-name", "search")])).unwrap();
        assert_eq!(declared.tool(), Some("search"));
        assert_eq!(declared.check(&sniff(CALL)), Ok(()));
        let other =
            Declared::read(&headers(&[("mcp-method", "tools/call"), ("mcp-name", "delete_all")])).unwrap();
        assert!(other.check(&sniff(CALL)).is_err(), "another tool's name");
        let list = Declared::read(&headers(&[("mcp-method", "tools/list")])).unwrap();
        assert!(list.check(&sniff(CALL)).is_err(), "another method");
        assert_eq!(list.tool(), None);
    }

    #[test]
    fn without_headers_the_body_alone_decides_and_junk_headers_are_refused() {
        let none = Declared::read(&HeaderMap::new()).unwrap();
        assert_eq!(none, Declared::default());
        assert_eq!(none.check(&sniff(CALL)), Ok(()));
        // A name on a method that takes none is not a tool.
        let prompt = Declared::read(&headers(&[("mcp-method", "prompts/get"), ("mcp-name", "x")])).unwrap();
        assert_eq!(prompt.tool(), None);
        assert!(Declared::read(&headers(&[("mcp-name", "=?base64?%%%?=")])).is_err());
        // A body that is not JSON says nothing to disagree with.
        let declared =
            Declared::read(&headers(&[("mcp-method", "tools/call"), ("mcp-name", "search")])).unwrap();
        assert_eq!(declared.check(&sniff(b"not json")), Ok(()));
    }
}
