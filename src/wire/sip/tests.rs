//! Parser, framer and serializer tests: RFC 4475's torture messages, Cisco phone traffic,
//! line endings, the typed views, stream framing and robustness against arbitrary input.

use super::lex::{
    is_gen_value_char, is_hnv_char, is_host_char, is_param_char, is_password_char, is_tel_char,
    is_token_char, is_uric, is_user_char,
};
use super::parse::find_lf;
use super::*;

/// Converts LF line endings to CRLF, replaces `{CL}` by the length of the
/// (converted) body and appends the empty line and the body.
fn build(head: &str, body: &str) -> Vec<u8> {
    let body = body.replace('\n', "\r\n");
    let head = head
        .trim_start_matches('\n')
        .replace("{CL}", &body.len().to_string())
        .replace('\n', "\r\n");
    let mut out = head.into_bytes();
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

fn req(data: &[u8]) -> Request {
    match parse_datagram(data) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn resp(data: &[u8]) -> Response {
    match parse_datagram(data) {
        Ok(SipMessage::Response(r)) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

fn err(data: &[u8]) -> ParseError {
    match parse_datagram(data) {
        Err(e) => e,
        Ok(m) => panic!("expected an error, parsed {m:?}"),
    }
}

/// parse -> to_bytes -> parse gives the same message (after Content-Length
/// normalization), over both transports.
fn assert_roundtrip(data: &[u8]) -> SipMessage {
    let m = parse_datagram(data).unwrap();
    let mut norm = m.clone();
    norm.normalize_content_length();
    let bytes = m.to_bytes();
    assert_eq!(parse_datagram(&bytes).unwrap(), norm, "datagram round trip");
    assert_eq!(
        parse_stream_message(&bytes).unwrap(),
        norm,
        "stream round trip"
    );
    assert_eq!(frame_stream(&bytes), Ok(Some(bytes.len())));
    assert_eq!(norm.to_bytes(), bytes, "serialization is stable");
    let text = m.to_string();
    assert_eq!(text.as_bytes(), &bytes[..]);
    m
}

const OPTIONS: &str = "
OPTIONS sip:carol@chicago.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKhjhs8ass877
Via: SIP/2.0/TCP proxy.example.com:5061;branch=z9hG4bK77asjd;received=192.0.2.7
Max-Forwards: 70
To: <sip:carol@chicago.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710
CSeq: 63104 OPTIONS
Contact: <sip:alice@pc33.atlanta.example.com>
Accept: application/sdp
Content-Length: 0
";

const WSINV: &str = r#"
INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : "J Rosenberg \\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : {CL}
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \"\"" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33
"#;

const SDP: &str = "v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.3
s=-
c=IN IP4 192.0.2.4
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
";

const CISCO_REGISTER: &str = r#"
REGISTER sip:10.10.10.1 SIP/2.0
Via: SIP/2.0/TCP 10.10.20.55:51508;branch=z9hG4bK5e1c2c4b
From: <sip:2001@10.10.10.1>;tag=0022905c1e3b00027a8b7c26-4d2b3f51
To: <sip:2001@10.10.10.1>
Call-ID: 0022905c-1e3b0002-1d0a2b3c-4d5e6f70@10.10.20.55
Max-Forwards: 70
Date: Mon, 24 Nov 2025 22:13:01 GMT
CSeq: 101 REGISTER
User-Agent: Cisco-CP8865/14.2.1
Contact: <sip:9d4f7a2e-1b3c-4d5e-8f90-0022905c1e3b@10.10.20.55:51508;transport=tcp>;+sip.instance="<urn:uuid:00000000-0000-0000-0000-0022905c1e3b>";+u.sip!devicename.ccm.cisco.com="SEP0022905C1E3B";+u.sip!model.ccm.cisco.com="36213";+u.sip!vc.ccm.cisco.com="0";reg-id=1;expires=3600
Supported: replaces,join,sdp-anat,norefersub,resource-priority,extended-refer,X-cisco-callinfo,X-cisco-serviceuri,X-cisco-escapecodes,X-cisco-service-control,X-cisco-srtp-fallback,X-cisco-monrec,X-cisco-config,X-cisco-sis-7.0.0,X-cisco-xsi-8.5.1
Reason: SIP;cause=200;text="cisco-alarm:25 Name=SEP0022905C1E3B ActiveLoad=sip88xx.14-2-1-0001-14 Last=initialized"
Expires: 3600
X-Cisco-Peer-Cert-Status: none
x-cisco-client-version: 14.2(1)
Content-Type: multipart/mixed; boundary=uniqueBoundary
Mime-Version: 1.0
Content-Length: {CL}
"#;

const CISCO_BODY: &str = "--uniqueBoundary
Content-Type: application/x-cisco-remotecc-request+xml
Content-Disposition: session;handling=required

<?xml version=\"1.0\" encoding=\"UTF-8\"?>
<x-cisco-remotecc-request>
<bulkupdate>
<contact>sip:2001@10.10.10.1</contact>
</bulkupdate>
</x-cisco-remotecc-request>
--uniqueBoundary--
";

fn samples() -> Vec<Vec<u8>> {
    vec![
            build(OPTIONS, ""),
            build(WSINV, SDP),
            build(CISCO_REGISTER, CISCO_BODY),
            build(
                "
SIP/2.0 200 OK
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;received=10.0.0.1;rport=5060
From: <sip:a@example.com>;tag=1
To: \"B\" <sip:b@example.com>;tag=2
Call-ID: x@y
CSeq: 1 INVITE
Contact: <sip:b@10.0.0.2:5060>
Content-Type: application/sdp
l: {CL}
",
                SDP,
            ),
            b"NOTIFY sip:a@[2001:db8::1]:5070;transport=tls SIP/2.0\nv: SIP/2.0/TLS [2001:db8::2];branch=z9hG4bKx\nf: <sips:a@example.com>;tag=q\nt: sips:b@example.com\ni: abc\nCSeq: 2 NOTIFY\nMax-Forwards: 70\no: presence\n\n"
                .to_vec(),
        ]
}

// ----- basic requests and responses

#[test]
fn parses_options_and_builds_response() {
    let r = req(&build(OPTIONS, ""));
    assert_eq!(r.method, Method::Options);
    assert_eq!(r.uri, "sip:carol@chicago.example.com");
    assert_eq!(r.call_id(), Some("a84b4c76e66710"));
    assert_eq!(r.cseq().unwrap(), CSeq::new(63104, Method::Options));
    assert_eq!(r.max_forwards().unwrap(), 70);
    let via = r.top_via().unwrap();
    assert_eq!(via.transport, "UDP");
    assert_eq!(via.host, "pc33.atlanta.example.com");
    assert_eq!(via.branch(), Some("z9hG4bKhjhs8ass877"));
    assert_eq!(r.vias().unwrap().len(), 2);
    assert_eq!(r.from().unwrap().display_name.as_deref(), Some("Alice"));
    assert_eq!(r.from().unwrap().tag(), Some("1928301774"));
    assert_eq!(r.to().unwrap().tag(), None);
    assert!(r.body.is_empty());
    r.validate().unwrap();

    let resp = r.make_response(200, "", Some("abc123"));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.reason, "OK");
    let vias: Vec<&str> = resp.headers.get_all("Via").collect();
    assert_eq!(
        vias,
        vec![
            "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKhjhs8ass877",
            "SIP/2.0/TCP proxy.example.com:5061;branch=z9hG4bK77asjd;received=192.0.2.7"
        ]
    );
    assert_eq!(resp.to().unwrap().tag(), Some("abc123"));
    assert_eq!(resp.from().unwrap().tag(), Some("1928301774"));
    assert_eq!(resp.call_id(), Some("a84b4c76e66710"));
    assert_eq!(resp.cseq().unwrap(), CSeq::new(63104, Method::Options));
    assert_eq!(resp.headers.get("Content-Length"), Some("0"));
    assert!(resp.headers.get("Contact").is_none());
    resp.validate().unwrap();
    let names: Vec<&str> = resp.headers.iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "Via",
            "Via",
            "From",
            "To",
            "Call-ID",
            "CSeq",
            "Content-Length"
        ]
    );
    let text = String::from_utf8(resp.to_bytes()).unwrap();
    assert!(text.starts_with("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP pc33"));
    assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    let back = resp_roundtrip(&resp);
    assert_eq!(back, resp);

    // 100 Trying never gets a To tag; existing tags are kept
    let trying = r.make_response(100, "Trying", Some("zzz"));
    assert_eq!(trying.to().unwrap().tag(), None);
    let mut tagged = r.clone();
    tagged
        .headers
        .set("To", "<sip:carol@chicago.example.com>;tag=orig");
    let resp2 = tagged.make_response(486, "", Some("new"));
    assert_eq!(resp2.to().unwrap().tag(), Some("orig"));
    assert_eq!(resp2.reason, "Busy Here");
    // bare addr-spec To: the tag becomes a header parameter
    tagged.headers.set("t", "sip:carol@chicago.example.com");
    let resp3 = tagged.make_response(404, "Nope", Some("t1"));
    assert_eq!(
        resp3.headers.get("To"),
        Some("sip:carol@chicago.example.com;tag=t1")
    );
    assert_eq!(resp3.to().unwrap().tag(), Some("t1"));
    assert_eq!(resp3.reason, "Nope");
}

fn resp_roundtrip(r: &Response) -> Response {
    match parse_datagram(&r.to_bytes()).unwrap() {
        SipMessage::Response(r) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn make_response_copies_vias_in_order_including_compact_and_lists() {
    let data = b"INVITE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/UDP b.example.com;branch=z9hG4bK2\r\nMax-Forwards: 70\r\nv: SIP/2.0/TCP c.example.com;branch=z9hG4bK3\r\nf: <sip:a@example.com>;tag=x\r\nt: <sip:b@example.com>\r\ni: cid\r\nCSeq: 1 INVITE\r\nTimestamp: 54\r\nl: 0\r\n\r\n";
    let r = req(data);
    r.validate().unwrap();
    let branches: Vec<String> = r
        .vias()
        .unwrap()
        .iter()
        .map(|v| v.branch().unwrap().to_string())
        .collect();
    assert_eq!(branches, ["z9hG4bK1", "z9hG4bK2", "z9hG4bK3"]);
    let resp = r.make_response(100, "", Some("tag"));
    assert_eq!(resp.reason, "Trying");
    assert_eq!(resp.headers.get("Timestamp"), Some("54"));
    let rb: Vec<String> = resp
        .vias()
        .unwrap()
        .iter()
        .map(|v| v.branch().unwrap().to_string())
        .collect();
    assert_eq!(rb, branches);
    let resp = r.make_response(180, "Ringing", Some("tag"));
    assert_eq!(resp.headers.get("Timestamp"), None);
    assert_eq!(resp.to().unwrap().tag(), Some("tag"));
}

#[test]
fn parses_response_and_status_line_variants() {
    let r = resp(&samples()[3]);
    assert_eq!(r.status, 200);
    assert_eq!(r.reason, "OK");
    assert_eq!(r.body.len(), SDP.replace('\n', "\r\n").len());
    assert_eq!(r.top_via().unwrap().rport(), Some(Some(5060)));
    assert_eq!(r.to().unwrap().display_name.as_deref(), Some("B"));
    r.validate().unwrap();

    // RFC 4475 3.1.1.12 unreason: UTF-8 reason phrase
    let unreason = "SIP/2.0 200 = 2**3 * 5**2 но сто девяносто девять - простое\r\nVia: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\r\nCall-ID: unreason.1234ksdfak3j2erwedfsASdf\r\nCSeq: 35 INVITE\r\nFrom: sip:user@example.com;tag=11141343\r\nTo: sip:user@example.edu;tag=2229\r\nContent-Length: 0\r\n\r\n";
    let r = resp(unreason.as_bytes());
    assert_eq!(r.reason, "= 2**3 * 5**2 но сто девяносто девять - простое");
    assert_roundtrip(unreason.as_bytes());

    // RFC 4475 3.1.1.13 noreason: empty reason phrase
    let noreason = b"SIP/2.0 100 \r\nVia: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\r\nCall-ID: noreason.asndj203insdf99223ndf\r\nCSeq: 35 INVITE\r\nFrom: <sip:user@example.com>;tag=39ansfi3\r\nTo: <sip:user@example.edu>;tag=902jndnke3\r\nContent-Length: 0\r\n\r\n";
    let r = resp(noreason);
    assert_eq!((r.status, r.reason.as_str()), (100, ""));
    assert_roundtrip(noreason);
    // no space at all after the code is tolerated as an empty reason
    let r = resp(b"SIP/2.0 180\r\nContent-Length: 0\r\n\r\n");
    assert_eq!((r.status, r.reason.as_str()), (180, ""));
    // responses lacking mandatory headers do not validate, silently
    assert_eq!(r.validate().unwrap_err().status, None);
}

// ----- RFC 4475 valid messages

#[test]
fn rfc4475_wsinv_whitespace_folding_compact_forms() {
    let data = build(WSINV, SDP);
    let r = req(&data);
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.uri, "sip:vivekg@chair-dnrc.example.com;unknownparam");
    let to = r.to().unwrap();
    assert_eq!(to.uri.user.as_deref(), Some("vivekg"));
    assert_eq!(to.tag(), Some("1918181833n"));
    assert_eq!(to.display_name, None);
    let from = r.from().unwrap();
    assert_eq!(from.display_name.as_deref(), Some("J Rosenberg \\\""));
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(r.max_forwards().unwrap(), 68);
    assert_eq!(r.cseq().unwrap(), CSeq::new(9, Method::Invite));
    assert_eq!(r.headers.get("cseq"), Some("0009 INVITE"));
    let vias = r.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].host, "192.0.2.2");
    assert_eq!(vias[0].transport, "UDP");
    assert_eq!(vias[0].branch(), Some("390skdjuw"));
    assert_eq!(vias[1].transport, "TCP");
    assert_eq!(vias[1].host, "spindle.example.com");
    assert_eq!(vias[1].branch(), Some("z9hG4bK9ikj8"));
    assert_eq!(vias[2].host, "192.168.255.111");
    assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));
    assert_eq!(r.headers.get("Subject"), Some(""));
    assert_eq!(
        r.headers.get("newfangledheader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(
        r.headers.get("UnknownHeaderWithUnusualValue"),
        Some(";;,,;;,;")
    );
    let ContactList::Addrs(contacts) = r.contacts().unwrap() else {
        panic!("expected addresses")
    };
    assert_eq!(contacts.len(), 1);
    assert_eq!(
        contacts[0].display_name.as_deref(),
        Some("Quoted string \"\"")
    );
    assert_eq!(contacts[0].param("newparam"), Some(Some("newvalue")));
    assert_eq!(contacts[0].param("secondparam"), Some(None));
    assert_eq!(contacts[0].param("q"), Some(Some("0.33")));
    let routes = r.headers.name_addrs("Route").unwrap();
    assert_eq!(routes[0].uri.param("lr"), Some(None));
    assert_eq!(routes[0].uri.param("unknownwith"), Some(Some("value")));
    assert_eq!(&r.body[..], SDP.replace('\n', "\r\n").as_bytes());
    r.validate().unwrap();
    assert_roundtrip(&data);
}

#[test]
fn rfc4475_intmeth_unusual_tokens() {
    let mut data = Vec::new();
    data.extend_from_slice(
            br#"!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0
Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~
To: "BEL:\"#,
        );
    data.push(0x07);
    data.extend_from_slice(b" NUL:\\");
    data.push(0x00);
    data.extend_from_slice(b" DEL:\\");
    data.push(0x7f);
    data.extend_from_slice(
            r#"" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>
From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%="работающий";tag=_token~1'+`*%!-.
Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\/"][?}{
CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~
Max-Forwards: 255
extensionHeader-!.%*+_`'~: ﻿大停電
Content-Length: 0

"#
            .as_bytes(),
        );
    let data: Vec<u8> = String::from_utf8(data)
        .unwrap()
        .replace('\n', "\r\n")
        .into_bytes();
    let r = req(&data);
    assert_eq!(
        r.method,
        Method::Other("!interesting-Method0123456789_*+`.%indeed'~".into())
    );
    let uri = r.request_uri().unwrap();
    assert_eq!(
        uri.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        uri.password.as_deref(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(uri.host, "example.com");
    let to = r.to().unwrap();
    assert_eq!(
        to.display_name.as_deref(),
        Some("BEL:\x07 NUL:\x00 DEL:\x7f")
    );
    let from = r.from().unwrap();
    assert_eq!(
        from.display_name.as_deref(),
        Some("token1~` token2'+_ token3*%!.-")
    );
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(
        from.param("fromParam''~+*_!.-%"),
        Some(Some("\"работающий\""))
    );
    assert_eq!(r.max_forwards().unwrap(), 255);
    assert_eq!(
        r.headers.get("EXTENSIONHEADER-!.%*+_`'~"),
        Some("\u{feff}大停電")
    );
    r.validate().unwrap();
    assert_roundtrip(&data);
    // typed views survive Display -> parse
    assert_eq!(NameAddr::parse(&to.to_string()).unwrap(), to);
    assert_eq!(NameAddr::parse(&from.to_string()).unwrap(), from);
    assert_eq!(SipUri::parse(&uri.to_string()).unwrap(), uri);
}

#[test]
fn rfc4475_escaped_uris() {
    // 3.1.1.3 esc01
    let data = build(
        "
INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0
To: sip:%75ser@example.com
From: <sip:I%20have%20spaces@example.net>;tag=938
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: {CL}
",
        SDP,
    );
    let r = req(&data);
    let ruri = r.request_uri().unwrap();
    assert_eq!(
        ruri.user_unescaped().as_deref(),
        Some("sips:user@example.com")
    );
    assert_eq!(ruri.host, "example.net");
    assert_eq!(
        r.to().unwrap().uri.user_unescaped().as_deref(),
        Some("user")
    );
    assert_eq!(
        r.from().unwrap().uri.user_unescaped().as_deref(),
        Some("I have spaces")
    );
    assert_eq!(r.headers.get("Content-Type"), Some("application/sdp"));
    assert_eq!(r.call_id(), Some("esc01.239409asdfakjkn23onasd0-3234"));
    let ContactList::Addrs(c) = r.contacts().unwrap() else {
        panic!()
    };
    assert_eq!(
        c[0].uri.params,
        vec![
            ("%6C%72".to_string(), None),
            ("n%61me".to_string(), Some("v%61lue%25%34%31".to_string()))
        ]
    );
    r.validate().unwrap();
    assert_roundtrip(&data);

    // 3.1.1.4 escnull
    let data = b"REGISTER sip:example.com SIP/2.0\r\nTo: sip:null-%00-null@example.com\r\nFrom: sip:null-%00-null@example.com;tag=839923423\r\nMax-Forwards: 70\r\nCall-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd\r\nCSeq: 14398234 REGISTER\r\nVia: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw\r\nContact: <sip:%00@host5.example.com>\r\nContact: <sip:%00%00@host5.example.com>\r\nL:0\r\n\r\n";
    let r = req(data);
    r.validate().unwrap();
    let ContactList::Addrs(c) = r.contacts().unwrap() else {
        panic!()
    };
    assert_eq!(c.len(), 2);
    assert_eq!(c[1].uri.user_unescaped().as_deref(), Some("\0\0"));
    assert_eq!(r.headers.content_length().unwrap(), Some(0));
    assert_roundtrip(data);

    // 3.1.1.5 esc02: escaped characters in a method are a different method
    let data = build(
        r#"
RE%47IST%45R sip:registrar.example.com SIP/2.0
To: "%Z%45" <sip:resource@example.com>
From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23
Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
Via: SIP/2.0/TCP host.example.com;rport;branch=z9hG4bK209asDJF
CSeq: 3882340 RE%47IST%45R
Max-Forwards: 70
Contact: <sip:alias1@host1.example.com>
Contact: <sip:alias%32@host2.example.com>
Contact: <sip:alias3@host3.example.com>
l: 0
"#,
        "",
    );
    let r = req(&data);
    assert_eq!(r.method, Method::Other("RE%47IST%45R".into()));
    assert_ne!(r.method, Method::Register);
    assert_eq!(r.to().unwrap().display_name.as_deref(), Some("%Z%45"));
    assert_eq!(r.top_via().unwrap().rport(), Some(None));
    r.validate().unwrap();
    assert_roundtrip(&data);
}

#[test]
fn rfc4475_lwsdisp_semiuri_transports_dblreq() {
    // 3.1.1.6 lwsdisp: no LWS between display name and <
    let data = b"OPTIONS sip:user@example.com SIP/2.0\r\nTo: sip:user@example.com\r\nFrom: caller<sip:caller@example.com>;tag=323\r\nMax-Forwards: 70\r\nCall-ID: lwsdisp.1234abcd@funky.example.com\r\nCSeq: 60 OPTIONS\r\nVia: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw\r\nl: 0\r\n\r\n";
    let r = req(data);
    assert_eq!(r.from().unwrap().display_name.as_deref(), Some("caller"));
    assert_eq!(r.from().unwrap().uri.user.as_deref(), Some("caller"));
    r.validate().unwrap();

    // 3.1.1.9 semiuri: ; in the user part
    let data = build(
        "
OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Call-ID: semiuri.0ha0isndaksdj
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
        multipart/mixed, multipart/signed,
        message/sip, message/sipfrag
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw
l: 0
",
        "",
    );
    let r = req(&data);
    let uri = r.request_uri().unwrap();
    assert_eq!(uri.user.as_deref(), Some("user;par=u%40example.net"));
    assert_eq!(uri.user_part(), Some("user"));
    assert_eq!(uri.host, "example.com");
    assert!(uri.params.is_empty());
    assert_eq!(
        r.headers.get_all_split("Accept").collect::<Vec<_>>(),
        [
            "application/sdp",
            "application/pkcs7-mime",
            "multipart/mixed",
            "multipart/signed",
            "message/sip",
            "message/sipfrag"
        ]
    );
    r.validate().unwrap();
    assert_roundtrip(&data);

    // 3.1.1.10 transports
    let data = build(
        "
OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: <sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID:  transports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw
Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf
Via: SIP/2.0/tls t3.example.com;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee
l: 0
",
        "",
    );
    let r = req(&data);
    let t: Vec<String> = r.vias().unwrap().into_iter().map(|v| v.transport).collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    r.validate().unwrap();

    // 3.1.1.8 dblreq: a second message in the same datagram is discarded
    let first = "REGISTER sip:example.com SIP/2.0\r\nTo: sip:j.user@example.com\r\nFrom: sip:j.user@example.com;tag=43251j3j324\r\nMax-Forwards: 8\r\nI: dblreq.0ha0isndaksdj99sdfafnl3lk233412\r\nContact: sip:j.user@host.example.com\r\nCSeq: 8 REGISTER\r\nVia: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492\r\nContent-Length: 0\r\n\r\n";
    let second = "INVITE sip:joe@example.com SIP/2.0\r\nt: sip:joe@example.com\r\nFrom: sip:caller@example.net;tag=141334\r\nMax-Forwards: 8\r\nCall-ID: dblreq.0ha0isnda977644900765@192.0.2.15\r\nCSeq: 8 INVITE\r\nVia: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234\r\nContent-Length: 0\r\n\r\n";
    let r = req(format!("{first}{second}").as_bytes());
    assert_eq!(r.method, Method::Register);
    assert!(r.body.is_empty());
    assert_eq!(r, req(first.as_bytes()));
    r.validate().unwrap();
    // Contact in addr-spec form
    let ContactList::Addrs(c) = r.contacts().unwrap() else {
        panic!()
    };
    assert_eq!(c[0].uri.host, "host.example.com");
    // over a stream the two are framed separately
    let both = format!("{first}{second}");
    assert_eq!(frame_stream(both.as_bytes()), Ok(Some(first.len())));
    assert_eq!(
        parse_stream_message(both.as_bytes()).unwrap_err().status,
        Some(400)
    );
}

#[test]
fn ipv6_references() {
    let data = b"REGISTER sip:[2001:db8::10] SIP/2.0\r\nTo: sip:user@example.com\r\nFrom: sip:user@example.com;tag=81x2\r\nVia: SIP/2.0/UDP [2001:db8::9:1]:5070;received=2001:db8::9:255;branch=z9hG4bKas3-111\r\nCall-ID: SSG9559905523997077@hlau_4100\r\nMax-Forwards: 70\r\nContact: \"Caller\" <sip:caller@[2001:db8::1]>\r\nCSeq: 98176 REGISTER\r\nContent-Length: 0\r\n\r\n";
    let r = req(data);
    r.validate().unwrap();
    assert_eq!(r.request_uri().unwrap().host, "[2001:db8::10]");
    let via = r.top_via().unwrap();
    assert_eq!(via.host, "[2001:db8::9:1]");
    assert_eq!(via.port, Some(5070));
    assert_eq!(via.received(), Some("2001:db8::9:255"));
    assert_roundtrip(data);

    // port-ambiguous vs port-unambiguous (RFC 5118 4.2)
    let u = SipUri::parse("sip:[2001:db8::9:255]").unwrap();
    assert_eq!((u.host.as_str(), u.port), ("[2001:db8::9:255]", None));
    let u = SipUri::parse("sip:[2001:db8::9]:255").unwrap();
    assert_eq!((u.host.as_str(), u.port), ("[2001:db8::9]", Some(255)));
    // embedded IPv4 with two colons ok, three colons not
    assert!(SipUri::parse("sip:user@[2001:db8::192.0.2.1]").is_ok());
    assert!(SipUri::parse("sip:user@[2001:db8:::192.0.2.1]").is_err());
    // IPv6 without brackets
    assert!(SipUri::parse("sip:user@2001:db8::10").is_err());
    let e = err(b"REGISTER sip:2001:db8::10 SIP/2.0\r\nl: 0\r\n\r\n");
    assert_eq!(e.status, Some(400));
    assert!(e.detail.contains("Request-URI"), "{e}");
    let e = err(b"OPTIONS sip:user@[2001:db8:::192.0.2.1] SIP/2.0\r\n\r\n");
    assert_eq!(e.status, Some(400));
    assert!(e.detail.contains("IPv6"), "{e}");
}

#[test]
fn unknown_schemes() {
    // Request-URI with an unknown scheme: parses, validate() says 416
    let data = b"OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0\r\nTo: sip:user@example.com\r\nFrom: sip:caller@example.net;tag=384\r\nMax-Forwards: 3\r\nCall-ID: unkscm.nasdfasser0q239nwsdfasdkl34\r\nCSeq: 3923423 OPTIONS\r\nVia: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234\r\nContent-Length: 0\r\n\r\n";
    let r = req(data);
    assert_eq!(r.validate().unwrap_err().status, Some(416));
    let uri = r.request_uri().unwrap();
    assert_eq!(uri.scheme, "nobodyknowsthisscheme");
    assert_eq!(uri.host, "totallyopaquecontent");
    assert!(!uri.is_sip());
    assert_roundtrip(data);
    // unknown scheme in To is fine
    let data = b"OPTIONS sip:user@example.com SIP/2.0\r\nTo: isbn:2983792873\r\nFrom: <http://www.example.com>;tag=3234233\r\nCall-ID: unksm2.daksdj@hyphenated-host.example.com\r\nCSeq: 234902 OPTIONS\r\nMax-Forwards: 70\r\nVia: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw\r\nContact: <name:John_Smith>\r\nl: 0\r\n\r\n";
    let r = req(data);
    r.validate().unwrap();
    assert_eq!(r.to().unwrap().uri.scheme, "isbn");
    assert_eq!(r.from().unwrap().uri.to_string(), "http://www.example.com");
    assert_roundtrip(data);
    // tel URIs
    let r = req(b"INVITE tel:+1-201-555-0123;phone-context=example.com SIP/2.0\r\nTo: <tel:+12015550123>\r\nFrom: <sip:a@b.example>;tag=1\r\ni: x\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nv: SIP/2.0/UDP h.example\r\n\r\n");
    r.validate().unwrap();
    let u = r.request_uri().unwrap();
    assert_eq!(u.scheme, "tel");
    assert_eq!(u.user.as_deref(), Some("+1-201-555-0123"));
    assert_eq!(u.param("phone-context"), Some(Some("example.com")));
    assert_eq!(
        u.to_string(),
        "tel:+1-201-555-0123;phone-context=example.com"
    );
}

// ----- RFC 4475 invalid messages and other errors

fn assert_err(data: &[u8], status: Option<u16>, needle: &str) -> ParseError {
    let e = err(data);
    assert_eq!(e.status, status, "status of {e:?}");
    assert!(
        e.detail.contains(needle),
        "detail {:?} should contain {needle:?}",
        e.detail
    );
    e
}

const GOOD_HEADERS: &str = "To: sip:user@example.com\r\nFrom: sip:caller@example.com;tag=1\r\nMax-Forwards: 70\r\nCall-ID: abc@host\r\nCSeq: 1 INVITE\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n";

#[test]
fn rfc4475_invalid_start_lines() {
    let with = |start: &str| format!("{start}\r\n{GOOD_HEADERS}Content-Length: 0\r\n\r\n");
    // 3.1.2.7 ltgtruri
    assert_err(
        with("INVITE <sip:user@example.com> SIP/2.0").as_bytes(),
        Some(400),
        "<>",
    );
    // 3.1.2.8 lwsruri
    assert_err(
        with("INVITE sip:user@example.com; lr SIP/2.0").as_bytes(),
        Some(400),
        "single spaces",
    );
    // 3.1.2.9 lwsstart
    assert_err(
        with("INVITE  sip:user@example.com  SIP/2.0").as_bytes(),
        Some(400),
        "line 1",
    );
    // 3.1.2.10 trws
    assert_err(
        with("INVITE sip:user@example.com SIP/2.0  ").as_bytes(),
        Some(400),
        "trailing whitespace",
    );
    // 3.1.2.11 escruri
    assert_err(
        with("INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0").as_bytes(),
        Some(400),
        "headers",
    );
    // 3.1.2.16 badvers
    assert_err(
        with("OPTIONS sip:t.watson@example.org SIP/7.0").as_bytes(),
        Some(505),
        "SIP/7.0",
    );
    assert_err(
        with("OPTIONS sip:t.watson@example.org SIP/x").as_bytes(),
        Some(400),
        "malformed SIP version",
    );
    // invalid method token
    assert_err(
        with("INV@ITE sip:user@example.com SIP/2.0").as_bytes(),
        Some(400),
        "method",
    );
    // the version is case-insensitive
    assert!(parse_datagram(with("INVITE sip:user@example.com sip/2.0").as_bytes()).is_ok());
    // 3.1.2.19 bigcode and other malformed responses: dropped
    assert_err(
        b"SIP/2.0 4294967301 better not break the receiver\r\nContent-Length: 0\r\n\r\n",
        None,
        "status code",
    );
    assert_err(b"SIP/2.0 099 Low\r\n\r\n", None, "out of range");
    assert_err(b"SIP/2.0 700 High\r\n\r\n", None, "out of range");
    assert_err(b"SIP/3.0 200 OK\r\n\r\n", None, "SIP/3.0");
    assert_err(b"SIP/2.0 200 OK\r\nVia: nonsense\r\n\r\n", None, "Via");
    // not SIP at all: dropped
    assert_err(
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        None,
        "not a SIP message",
    );
    assert_err(
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        None,
        "not a SIP",
    );
    assert_err(b"\r\n\r\n", None, "keep-alive");
    assert_err(b"", None, "empty");
    // control characters in the start line
    assert_err(
        b"OPTIONS sip:a@b\x00 SIP/2.0\r\n\r\n",
        Some(400),
        "control character 0x00",
    );
}

#[test]
fn rfc4475_invalid_headers() {
    // 3.1.2.1 badinv01
    let e = assert_err(
            b"INVITE sip:user@example.com SIP/2.0\r\nTo: sip:j.user@example.com\r\nFrom: sip:caller@example.net;tag=134161461246\r\nMax-Forwards: 7\r\nCall-ID: badinv01.0ha0isndaksdjasdf3234nas\r\nCSeq: 8 INVITE\r\nVia: SIP/2.0/UDP 192.0.2.15;;,;,,\r\nContact: \"Joe\" <sip:joe@example.org>;;;;\r\nContent-Length: 0\r\n\r\n",
            Some(400),
            "line 7: header \"Via\"",
        );
    assert!(e.detail.contains("parameter"), "{e}");
    // 3.1.2.2 clerr
    assert_err(
            b"INVITE sip:user@example.com SIP/2.0\r\nMax-Forwards: 80\r\nContent-Length: 9999\r\n\r\nv=0\r\n",
            Some(400),
            "Content-Length 9999 exceeds body of 5 bytes",
        );
    // 3.1.2.3 ncl
    assert_err(
        b"INVITE sip:user@example.com SIP/2.0\r\nContent-Length: -999\r\n\r\n",
        Some(400),
        "invalid Content-Length \"-999\"",
    );
    // 3.1.2.4 scalar02
    assert_err(
            b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3\r\nTo: <sip:user@example.com>\r\nFrom: <sip:user@example.com>;tag=239232jh3\r\nCSeq: 36893488147419103232 REGISTER\r\nCall-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32\r\nMax-Forwards: 300\r\nExpires: 1000000000000000000000000000000000000000\r\nContact: <sip:user@host129.example.com>;expires=280297596632815\r\nContent-Length: 0\r\n\r\n",
            Some(400),
            "line 5: header \"CSeq\": sequence number",
        );
    assert_err(
        b"INVITE sip:a@b.example SIP/2.0\r\nMax-Forwards: 300\r\n\r\n",
        Some(400),
        "exceeds 255",
    );
    // 3.1.2.6 quotbal
    assert_err(
            b"INVITE sip:user@example.com SIP/2.0\r\nTo: \"Mr. J. User <sip:j.user@example.com>\r\n\r\n",
            Some(400),
            "unterminated quoted string",
        );
    // 3.1.2.13 regbadct
    assert_err(
            b"REGISTER sip:example.com SIP/2.0\r\nContact: sip:user@example.com?Route=%3Csip:sip.example.com%3E\r\n\r\n",
            Some(400),
            "must be enclosed in <>",
        );
    // 3.1.2.14 badaspec
    assert_err(
            b"OPTIONS sip:user@example.org SIP/2.0\r\nTo: \"Watson, Thomas\" < sip:t.watson@example.org >\r\n\r\n",
            Some(400),
            "whitespace inside",
        );
    // 3.1.2.15 baddn
    assert_err(
            b"OPTIONS sip:t.watson@example.org SIP/2.0\r\nFrom: Bell, Alexander <sip:a.g.bell@example.com>;tag=43\r\n\r\n",
            Some(400),
            "display name",
        );
    // multi01-style duplicates of single-valued headers
    assert_err(
        format!(
            "INVITE sip:a@b.example SIP/2.0\r\n{GOOD_HEADERS}To: sip:other@example.com\r\n\r\n"
        )
        .as_bytes(),
        Some(400),
        "line 8: duplicate \"To\" header (first on line 2)",
    );
    assert_err(
        b"INVITE sip:a@b.example SIP/2.0\r\nCall-ID: a\r\ni: b\r\n\r\n",
        Some(400),
        "duplicate \"Call-ID\"",
    );
    // mcl01: differing Content-Length values
    assert_err(
        b"OPTIONS sip:user@example.com SIP/2.0\r\nContent-Length: 0\r\nl: 193\r\n\r\n",
        Some(400),
        "differs",
    );
    // equal duplicates are tolerated and normalized on output
    let r = req(b"OPTIONS sip:user@example.com SIP/2.0\r\nContent-Length: 3\r\nl: 03\r\n\r\nabc");
    assert_eq!(&r.body[..], b"abc");
    let out = String::from_utf8(r.to_bytes()).unwrap();
    assert_eq!(
        out.matches("Content-Length").count() + out.matches("\r\nl:").count(),
        1
    );
    // too large
    assert_err(
        b"OPTIONS sip:user@example.com SIP/2.0\r\nContent-Length: 70000\r\n\r\n",
        Some(513),
        "maximum message size",
    );
    assert_err(
            b"OPTIONS sip:user@example.com SIP/2.0\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
            Some(513),
            "Content-Length",
        );
    let mut big = b"OPTIONS sip:user@example.com SIP/2.0\r\n\r\n".to_vec();
    big.resize(MAX_MESSAGE_SIZE + 1, b'x');
    assert_err(&big, Some(513), "exceeds the maximum");
    // the example from the module contract
    assert_err(
        b"OPTIONS sip:user@example.com SIP/2.0\r\nTo: sip:user@example.com\r\nCSeq: abc\r\n\r\n",
        Some(400),
        "line 3: header \"CSeq\": expected \"<number> <method>\", got \"abc\"",
    );
    // malformed header lines
    assert_err(
            b"OPTIONS sip:user@example.com SIP/2.0\r\nTo: sip:user@example.com\r\nthis line has no colon\r\n\r\n",
            Some(400),
            "line 3: header line without a colon",
        );
    assert_err(
        b"OPTIONS sip:user@example.com SIP/2.0\r\nBad Name: x\r\n\r\n",
        Some(400),
        "line 2: invalid header name \"Bad Name\"",
    );
    assert_err(
        b"OPTIONS sip:user@example.com SIP/2.0\r\n folded: x\r\n\r\n",
        Some(400),
        "line 2: continuation line without a preceding header",
    );
    assert_err(
        b"OPTIONS sip:user@example.com SIP/2.0\r\nSubject: caf\xe9\r\n\r\n",
        Some(400),
        "line 2: header section is not valid UTF-8",
    );
    assert_err(
        b"OPTIONS sip:user@example.com SIP/2.0\r\nSubject: a\rb\r\n\r\n",
        Some(400),
        "line 2: invalid control character 0x0d",
    );
    assert_err(
        b"OPTIONS sip:user@example.com SIP/2.0\r\nSubject: a\x00b\r\n\r\n",
        Some(400),
        "control character 0x00",
    );
    assert_err(
        b"OPTIONS sip:user@example.com SIP/2.0\r\nSubject: x\r\n",
        Some(400),
        "not terminated by an empty line",
    );
    assert_err(
        b"OPTIONS sip:user@example.com SIP/2.0\r\nCall-ID: a b\r\n\r\n",
        Some(400),
        "Call-ID",
    );
    // bodies are raw bytes, never UTF-8 checked
    let r = req(b"MESSAGE sip:a@b.example SIP/2.0\r\nContent-Length: 4\r\n\r\n\xff\x00\xfe\x80");
    assert_eq!(&r.body[..], b"\xff\x00\xfe\x80");
}

#[test]
fn validate_mandatory_headers() {
    let base = format!("INVITE sip:a@b.example SIP/2.0\r\n{GOOD_HEADERS}Content-Length: 0\r\n\r\n");
    let r = req(base.as_bytes());
    r.validate().unwrap();
    for (name, needle) in [
        ("To", "missing \"To\""),
        ("From", "missing \"From\""),
        ("CSeq", "missing \"CSeq\""),
        ("Call-ID", "missing \"Call-ID\""),
        ("Max-Forwards", "missing \"Max-Forwards\""),
        ("Via", "missing \"Via\""),
    ] {
        let mut r2 = r.clone();
        r2.headers.remove(name);
        let e = r2.validate().unwrap_err();
        assert_eq!(e.status, Some(400));
        assert!(e.detail.contains(needle), "{e}");
    }
    // 3.3.1 insuf: Call-ID, From, To missing
    let insuf = b"INVITE sip:user@example.com SIP/2.0\r\nCSeq: 193942 INVITE\r\nVia: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\r\nContent-Type: application/sdp\r\nl: 0\r\n\r\n";
    let e = req(insuf).validate().unwrap_err();
    assert_eq!(e.status, Some(400));
    assert!(e.detail.contains("missing"), "{e}");
    // 3.1.2.17 mismatch01 / 3.1.2.18 mismatch02
    let mut m = r.clone();
    m.method = Method::Options;
    let e = m.validate().unwrap_err();
    assert!(e.detail.contains("does not match"), "{e}");
    let mut m = r.clone();
    m.method = Method::Other("NEWMETHOD".into());
    m.headers.set("CSeq", "8 newmethod");
    assert_eq!(m.validate().unwrap_err().status, Some(400));
    // ACK and CANCEL carry their own method in CSeq
    let mut ack = r.clone();
    ack.method = Method::Ack;
    ack.headers.set("CSeq", "1 ACK");
    ack.validate().unwrap();
    let mut cancel = r.clone();
    cancel.method = Method::Cancel;
    cancel.headers.set("CSeq", "1 INVITE");
    assert!(cancel.validate().is_err());
    cancel.headers.set("CSeq", "1 CANCEL");
    cancel.validate().unwrap();
    // duplicates added programmatically
    let mut dup = r.clone();
    dup.headers.push("Max-Forwards", "69");
    assert!(dup.validate().unwrap_err().detail.contains("exactly one"));
    // bad values
    let mut bad = r.clone();
    bad.headers.set("To", "<sip:a@b");
    assert!(bad.validate().unwrap_err().detail.contains("header \"To\""));
}

// ----- Cisco phone REGISTER

#[test]
fn cisco_register() {
    let data = build(CISCO_REGISTER, CISCO_BODY);
    let r = req(&data);
    r.validate().unwrap();
    assert_eq!(r.method, Method::Register);
    assert_eq!(r.top_via().unwrap().transport, "TCP");
    assert_eq!(r.top_via().unwrap().port, Some(51508));
    assert_eq!(r.headers.get("x-cisco-peer-cert-status"), Some("none"));
    assert_eq!(r.headers.get("X-CISCO-CLIENT-VERSION"), Some("14.2(1)"));
    assert_eq!(r.headers.get("Date"), Some("Mon, 24 Nov 2025 22:13:01 GMT"));
    assert_eq!(r.headers.get_all_split("Supported").count(), 15);
    let ContactList::Addrs(contacts) = r.contacts().unwrap() else {
        panic!()
    };
    assert_eq!(contacts.len(), 1);
    let c = &contacts[0];
    assert_eq!(c.uri.transport(), Some("tcp"));
    assert_eq!(c.uri.port, Some(51508));
    assert_eq!(
        c.param("+sip.instance"),
        Some(Some("\"<urn:uuid:00000000-0000-0000-0000-0022905c1e3b>\""))
    );
    assert_eq!(
        unquote(c.param("+sip.instance").flatten().unwrap()),
        "<urn:uuid:00000000-0000-0000-0000-0022905c1e3b>"
    );
    assert_eq!(
        c.param("+u.sip!devicename.ccm.cisco.com"),
        Some(Some("\"SEP0022905C1E3B\""))
    );
    assert_eq!(c.param("reg-id"), Some(Some("1")));
    assert_eq!(c.expires(), Some(3600));
    // the params survive Display exactly
    let shown = c.to_string();
    assert_eq!(
        shown,
        r.headers.get("Contact").unwrap(),
        "Contact Display reproduces the received value"
    );
    assert_eq!(NameAddr::parse(&shown).unwrap(), *c);
    assert_eq!(&r.body[..], CISCO_BODY.replace('\n', "\r\n").as_bytes());
    assert_roundtrip(&data);

    // Contact: * for un-registering all bindings
    let mut unreg = r.clone();
    unreg.headers.set("Contact", "*");
    unreg.headers.set("Expires", "0");
    assert_eq!(unreg.contacts().unwrap(), ContactList::Wildcard);
    unreg.headers.push("Contact", "<sip:x@y.example>");
    assert!(unreg.contacts().is_err());
    assert!(parse_contact_list("*, <sip:a@b.example>").is_err());

    // the same REGISTER with bare LF line endings (phone quirk)
    let lf: Vec<u8> = String::from_utf8(data.clone())
        .unwrap()
        .replace("\r\n", "\n")
        .into_bytes();
    let body_lf = CISCO_BODY.len();
    let r2 = match parse_datagram(&lf) {
        Err(e) => {
            // Content-Length counted CRLF bytes: too large for the LF body
            assert_eq!(e.status, Some(400));
            let fixed = String::from_utf8(lf.clone()).unwrap().replace(
                &format!("Content-Length: {}", CISCO_BODY.replace('\n', "\r\n").len()),
                &format!("Content-Length: {body_lf}"),
            );
            req(fixed.as_bytes())
        }
        Ok(_) => panic!("expected Content-Length mismatch"),
    };
    assert_eq!(r2.headers, r.headers.clone().tap_cl(body_lf));
    assert_eq!(&r2.body[..], CISCO_BODY.as_bytes());
}

trait TapCl {
    fn tap_cl(self, n: usize) -> Self;
}

impl TapCl for Headers {
    fn tap_cl(mut self, n: usize) -> Self {
        self.set("Content-Length", n.to_string());
        self
    }
}

// ----- line endings and folding

#[test]
fn bare_lf_mixed_endings_and_folding() {
    let data = b"\r\n\r\nOPTIONS sip:a@b.example SIP/2.0\nVia: SIP/2.0/UDP h.example;branch=z9hG4bK1\r\nSubject: first\n\t second \r\n   third\nTo: sip:a@b.example\r\nContent-Length: 2\n\r\nhi";
    let r = req(data);
    assert_eq!(r.headers.get("s"), Some("first second third"));
    assert_eq!(&r.body[..], b"hi");
    assert_eq!(r.headers.len(), 4);
    assert_roundtrip(data);
    let out = r.to_bytes();
    assert!(out.windows(2).filter(|w| w == b"\r\n").count() >= 6);
    assert!(!out.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
    // whitespace-only continuation lines are ignored
    let r = req(b"OPTIONS sip:a@b.example SIP/2.0\nSubject: x\n   \nl: 0\n\n");
    assert_eq!(r.headers.get("Subject"), Some("x"));
    // folded empty value
    let r = req(b"OPTIONS sip:a@b.example SIP/2.0\nSubject:\n value\n\n");
    assert_eq!(r.headers.get("Subject"), Some("value"));
}

// ----- headers API

#[test]
fn headers_api_and_compact_forms() {
    let mut h = Headers::new();
    assert!(h.is_empty());
    h.push("v", "SIP/2.0/UDP a.example");
    h.push("Via", "SIP/2.0/UDP b.example, SIP/2.0/UDP c.example");
    h.push("f", "<sip:a@b.example>");
    h.push("X-Custom", "1");
    h.push("x-custom", "2");
    h.push("l", "5");
    assert_eq!(h.len(), 6);
    assert_eq!(h.get("VIA"), Some("SIP/2.0/UDP a.example"));
    assert_eq!(h.get("V"), Some("SIP/2.0/UDP a.example"));
    assert_eq!(h.get("From"), Some("<sip:a@b.example>"));
    assert_eq!(h.get("content-length"), Some("5"));
    assert_eq!(h.get_all("via").count(), 2);
    assert_eq!(h.get_all_split("v").count(), 3);
    assert_eq!(h.get_all("X-CUSTOM").collect::<Vec<_>>(), ["1", "2"]);
    let name = String::from("X-Custom");
    let vals: Vec<&str> = h.get_all(&name).collect();
    drop(name);
    assert_eq!(vals, ["1", "2"]);
    h.set("x-custom", "3");
    assert_eq!(h.get_all("X-Custom").collect::<Vec<_>>(), ["3"]);
    assert_eq!(
        h.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        ["v", "Via", "f", "X-Custom", "l"]
    );
    h.set("Subject", "new");
    assert_eq!(h.iter().last(), Some(("Subject", "new")));
    h.remove("via");
    assert_eq!(h.get("v"), None);
    assert_eq!(h.len(), 4);
    assert!(h.contains("From"));
    assert_eq!(h.count("f"), 1);
    for c in [
        'v', 'f', 't', 'i', 'm', 'l', 'c', 'k', 's', 'e', 'o', 'r', 'b', 'u', 'x',
    ] {
        let full = full_header_name(&c.to_string()).to_string();
        assert_ne!(full.len(), 1, "{c}");
        assert_eq!(compact_header_name(&full), Some(c));
        assert!(header_names_equal(
            &c.to_ascii_uppercase().to_string(),
            &full
        ));
    }
    assert_eq!(full_header_name("Call-ID"), "Call-ID");
    assert_eq!(full_header_name("i"), "Call-ID");
    assert_eq!(full_header_name("q"), "q");
    let collected: Headers = vec![("A", "1"), ("B", "2")].into_iter().collect();
    assert_eq!((&collected).into_iter().count(), 2);
}

#[test]
fn comma_splitting_respects_quotes_and_brackets() {
    let v = r#""Doe, John" <sip:j,d@example.com;x=a>;q=0.5, <sip:b@example.com>;+sip.instance="<urn:uuid:1,2>", sip:c@example.com ,, "a\",b" <sip:d@example.com>"#;
    let items: Vec<&str> = split_commas(v).collect();
    assert_eq!(
        items,
        [
            r#""Doe, John" <sip:j,d@example.com;x=a>;q=0.5"#,
            r#"<sip:b@example.com>;+sip.instance="<urn:uuid:1,2>""#,
            "sip:c@example.com",
            r#""a\",b" <sip:d@example.com>"#,
        ]
    );
    let ContactList::Addrs(a) = parse_contact_list(v).unwrap() else {
        panic!()
    };
    assert_eq!(a.len(), 4);
    assert_eq!(a[0].display_name.as_deref(), Some("Doe, John"));
    assert_eq!(a[3].display_name.as_deref(), Some("a\",b"));
    assert_eq!(split_commas(" , ,").count(), 0);
}

// ----- typed views

#[test]
fn via_typed_view() {
    let mut v =
        Via::parse("SIP/2.0/udp 10.0.0.1:5060;branch=z9hG4bK776;rport;received=10.0.0.9").unwrap();
    assert_eq!(v.transport, "UDP");
    assert_eq!(v.host, "10.0.0.1");
    assert_eq!(v.port, Some(5060));
    assert_eq!(v.branch(), Some("z9hG4bK776"));
    assert!(v.has_rfc3261_branch());
    assert_eq!(v.param("rport"), Some(None));
    assert_eq!(v.rport(), Some(None));
    assert_eq!(v.param("nope"), None);
    v.set_param("rport", Some("61000".into()));
    v.set_param("received", Some("192.0.2.4".into()));
    v.set_param("alias", None);
    assert_eq!(
        v.to_string(),
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776;rport=61000;received=192.0.2.4;alias"
    );
    assert_eq!(Via::parse(&v.to_string()).unwrap(), v);
    v.remove_param("alias");
    assert_eq!(v.param("alias"), None);
    let mut n = Via::new("tls", "proxy.example.com", None);
    n.set_param("branch", Some("z9hG4bKabc".into()));
    assert_eq!(
        n.to_string(),
        "SIP/2.0/TLS proxy.example.com;branch=z9hG4bKabc"
    );
    assert_eq!(
        "SIP/2.0/TLS proxy.example.com;branch=z9hG4bKabc"
            .parse::<Via>()
            .unwrap(),
        n
    );
    for bad in [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP ",
        "SIP/3.0/UDP host",
        "SIP/2.0 host",
        "SIP/2.0/UDPhost",
        "SIP/2.0/UDP host:99999",
        "SIP/2.0/UDP host:",
        "SIP/2.0/UDP host;branch",
        "SIP/2.0/UDP host;branch=a\"b\"",
        "SIP/2.0/UDP host;received=example.com",
        "SIP/2.0/UDP host;ttl=256",
        "SIP/2.0/UDP host;rport=x",
        "SIP/2.0/UDP host junk",
        "SIP/2.0/UDP a, SIP/2.0/UDP b",
        "SIP/2.0/UDP -bad-.example",
        "SIP/2.0/UDP 1.2.3.256",
        "SIP/2.0/UDP [::1",
    ] {
        let e = Via::parse(bad).unwrap_err();
        assert_eq!(e.status, Some(400), "{bad}");
    }
    assert!(Via::parse("SIP/2.0/UDP [::1]:5060;received=[::2];maddr=224.2.0.1;ttl=16").is_ok());
}

#[test]
fn cseq_and_method() {
    let c = CSeq::parse("  4711   INVITE ").unwrap();
    assert_eq!(c, CSeq::new(4711, Method::Invite));
    assert_eq!(c.to_string(), "4711 INVITE");
    assert_eq!("4294967295 ACK".parse::<CSeq>().unwrap().seq, u32::MAX);
    assert!(CSeq::parse("4294967296 ACK")
        .unwrap_err()
        .detail
        .contains("2**32-1"));
    let e = CSeq::parse("abc").unwrap_err();
    assert_eq!(e.detail, "expected \"<number> <method>\", got \"abc\"");
    for bad in [
        "1",
        "INVITE",
        "1INVITE",
        "1 INVITE x",
        "-1 INVITE",
        "1 IN;VITE",
    ] {
        assert!(CSeq::parse(bad).is_err(), "{bad}");
    }
    for m in [
        Method::Invite,
        Method::Ack,
        Method::Bye,
        Method::Cancel,
        Method::Register,
        Method::Options,
        Method::Info,
        Method::Update,
        Method::Prack,
        Method::Subscribe,
        Method::Notify,
        Method::Refer,
        Method::Message,
        Method::Publish,
    ] {
        assert_eq!(m.as_str().parse::<Method>().unwrap(), m);
        assert_eq!(m.to_string(), m.as_str());
    }
    assert_eq!(
        "invite".parse::<Method>().unwrap(),
        Method::Other("invite".into())
    );
    assert_eq!(Method::parse("FOO").unwrap().as_str(), "FOO");
    assert!(Method::parse("").is_err());
    assert!(Method::parse("FO O").is_err());
    assert!(Method::parse("FOO/1").is_err());
}

#[test]
fn sip_uri_parse_and_display() {
    let u = SipUri::parse("sips:alice:secret@Atlanta.Example.com:5061;transport=tls;lr;maddr=239.255.255.1?subject=project%20x&priority=urgent").unwrap();
    assert_eq!(u.scheme, "sips");
    assert_eq!(u.user.as_deref(), Some("alice"));
    assert_eq!(u.password.as_deref(), Some("secret"));
    assert_eq!(u.host, "Atlanta.Example.com");
    assert_eq!(u.port, Some(5061));
    assert_eq!(u.param("TRANSPORT"), Some(Some("tls")));
    assert_eq!(u.transport(), Some("tls"));
    assert_eq!(u.param("lr"), Some(None));
    assert_eq!(
        u.headers,
        vec![
            ("subject".to_string(), "project%20x".to_string()),
            ("priority".to_string(), "urgent".to_string())
        ]
    );
    assert_eq!(u.host_port(), "Atlanta.Example.com:5061");
    assert_eq!(
            u.to_string(),
            "sips:alice:secret@Atlanta.Example.com:5061;transport=tls;lr;maddr=239.255.255.1?subject=project%20x&priority=urgent"
        );
    let cases = [
        "sip:host.example",
        "SIP:user@host.example",
        "sip:user@192.0.2.1:5060",
        "sip:+1-212-555-1212:1234@gateway.com;user=phone",
        "sip:user:@host.example",
        "sip:alice@example.com;transport=tcp;x=%41",
        "sip:[::1]:5060",
        "sip:a@[2001:db8::1];lr",
        "sip:host.example.",
        "tel:+358-555-1234567;postd=pp22",
        "tel:7042;phone-context=example.com",
        "urn:service:sos",
        "mailto:a@b.example",
        "sip:u@h.example?a=&b=c",
    ];
    for s in cases {
        let u = SipUri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(SipUri::parse(&u.to_string()).unwrap(), u, "{s}");
        assert_eq!(u.to_string().to_ascii_lowercase(), s.to_ascii_lowercase());
    }
    for bad in [
        "",
        "sip:",
        "sip:@host.example",
        "sip:user@",
        "sip:user@host.example:",
        "sip:user@host.example:70000",
        "sip:user@host..example",
        "sip:user@host.example;",
        "sip:user@host.example;=x",
        "sip:user@host.example;a=",
        "sip:user@host.example?a",
        "sip:us er@host.example",
        "sip:user@host.example>",
        "sip:user%4@host.example",
        "sip:user@host_name.example",
        "1sip:host",
        "host.example",
        ":foo",
        "tel:",
        "tel:+1 2",
        "tel:+12?x=y",
        "isbn:",
        "isbn:a b",
        "x:<y>",
        "sip:user@[2001:db8::1",
        "sip:user@[::g]",
    ] {
        assert!(SipUri::parse(bad).is_err(), "{bad:?} should fail");
    }
    let u = SipUri::parse("sip:%61lice;phone-context=x@h.example").unwrap();
    assert_eq!(u.user_part(), Some("%61lice"));
    assert_eq!(u.user_unescaped().as_deref(), Some("alice;phone-context=x"));
    assert_eq!(unescape_uri("%zz%41%4"), "%zzA%4");
    let mut u = SipUri::sip(Some("bob"), "biloxi.example.com", Some(5060));
    u.set_param("transport", Some("udp".into()));
    u.set_param("transport", Some("tcp".into()));
    assert_eq!(
        u.to_string(),
        "sip:bob@biloxi.example.com:5060;transport=tcp"
    );
    u.remove_param("transport");
    assert_eq!(u.to_string(), "sip:bob@biloxi.example.com:5060");
}

#[test]
fn name_addr_forms() {
    let n = NameAddr::parse(r#"  "A \"quoted\" \\ name" <sip:a@b.example;lr>;tag=x;foo="b;a<r>,""#)
        .unwrap();
    assert_eq!(n.display_name.as_deref(), Some(r#"A "quoted" \ name"#));
    assert_eq!(n.uri.param("lr"), Some(None));
    assert_eq!(n.tag(), Some("x"));
    assert_eq!(n.param("foo"), Some(Some(r#""b;a<r>,""#)));
    assert_eq!(
        n.to_string(),
        r#""A \"quoted\" \\ name" <sip:a@b.example;lr>;tag=x;foo="b;a<r>,""#
    );
    assert_eq!(NameAddr::parse(&n.to_string()).unwrap(), n);

    // bare addr-spec: parameters belong to the header
    let n = NameAddr::parse("sip:+1-972-555-1212@example.com;user=phone;tag=7").unwrap();
    assert!(n.uri.params.is_empty());
    assert_eq!(n.param("user"), Some(Some("phone")));
    assert_eq!(n.tag(), Some("7"));
    assert_eq!(
        n.to_string(),
        "<sip:+1-972-555-1212@example.com>;user=phone;tag=7"
    );
    // inside <> they belong to the URI
    let n = NameAddr::parse("<sip:+1-972-555-1212@example.com;user=phone>;tag=7").unwrap();
    assert_eq!(n.uri.param("user"), Some(Some("phone")));
    assert_eq!(n.param("user"), None);

    let n = NameAddr::parse("Bob  Smith\t<sip:bob@b.example>").unwrap();
    assert_eq!(n.display_name.as_deref(), Some("Bob  Smith"));
    assert_eq!(NameAddr::parse(&n.to_string()).unwrap(), n);
    let n = NameAddr::parse("\"\" <sip:anon@anonymous.invalid>").unwrap();
    assert_eq!(n.display_name.as_deref(), Some(""));
    assert_eq!(NameAddr::parse(&n.to_string()).unwrap(), n);
    let n = NameAddr::parse("\"Ünïcødé 名前\" <sip:u@h.example>").unwrap();
    assert_eq!(n.display_name.as_deref(), Some("Ünïcødé 名前"));

    let mut n = NameAddr::new(SipUri::sip(Some("a"), "h.example", None));
    n.display_name = Some("x\"y".into());
    n.set_tag("abc");
    n.set_param("expires", Some("60".into()));
    assert_eq!(
        n.to_string(),
        r#""x\"y" <sip:a@h.example>;tag=abc;expires=60"#
    );
    assert_eq!(n.expires(), Some(60));
    n.remove_param("tag");
    assert_eq!(n.tag(), None);

    for bad in [
        "",
        "<sip:a@b.example",
        "\"unterminated <sip:a@b.example>",
        "\"x\" sip:a@b.example",
        "< sip:a@b.example>",
        "<sip:a@b.example> junk",
        "<sip:a@b.example>;",
        "<sip:a@b.example>;tag=",
        "<sip:a@b.example>;tag=\"x",
        "sip:a@b.example, sip:c@d.example",
        "sip:a@b.example?x=y",
        "a, b <sip:a@b.example>",
        "*",
    ] {
        assert!(NameAddr::parse(bad).is_err(), "{bad:?} should fail");
    }
}

#[test]
fn char_class_table_matches_rfc3261_grammar() {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b);
    for b in 0..=255u8 {
        let token = b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b);
        assert_eq!(is_token_char(b), token, "token {b}");
        assert_eq!(is_user_char(b), unreserved(b) || b"&=+$,;?/".contains(&b));
        assert_eq!(is_password_char(b), unreserved(b) || b"&=+$,".contains(&b));
        assert_eq!(is_param_char(b), unreserved(b) || b"[]/:&+$".contains(&b));
        assert_eq!(is_hnv_char(b), unreserved(b) || b"[]/?:+$".contains(&b));
        assert_eq!(is_uric(b), unreserved(b) || b";/?:@&=+$,[]".contains(&b));
        assert_eq!(
            is_tel_char(b),
            b.is_ascii_hexdigit() || b"*#+-.()".contains(&b)
        );
        assert_eq!(is_gen_value_char(b), token || b":[]".contains(&b));
        assert_eq!(
            is_host_char(b),
            b.is_ascii_alphanumeric() || b"-.".contains(&b)
        );
    }
}

#[test]
fn find_lf_matches_naive_search() {
    let mut rng = Rng(7);
    for _ in 0..2000 {
        let len = rng.below(40);
        let v: Vec<u8> = (0..len)
            .map(|_| [b'\n', b'\r', 0, 1, 0x0b, 0x8a, 0xff, b'a'][rng.below(8)])
            .collect();
        assert_eq!(find_lf(&v), v.iter().position(|&b| b == b'\n'), "{v:?}");
    }
}

#[test]
fn quoting_helpers() {
    assert_eq!(quote("a\"b\\c"), r#""a\"b\\c""#);
    assert_eq!(quote("x\r\ny"), "\"x  y\"");
    assert_eq!(unquote(r#""a\"b\\c""#), "a\"b\\c");
    assert_eq!(unquote("plain"), "plain");
    assert_eq!(unquote("\""), "\"");
    assert!(is_token("abc-.!%*_+`'~"));
    assert!(!is_token("a b"));
    assert!(!is_token(""));
}

#[test]
fn reason_phrases() {
    for (code, phrase) in [
        (100, "Trying"),
        (180, "Ringing"),
        (183, "Session Progress"),
        (200, "OK"),
        (202, "Accepted"),
        (204, "No Notification"),
        (302, "Moved Temporarily"),
        (400, "Bad Request"),
        (401, "Unauthorized"),
        (407, "Proxy Authentication Required"),
        (408, "Request Timeout"),
        (413, "Request Entity Too Large"),
        (416, "Unsupported URI Scheme"),
        (420, "Bad Extension"),
        (422, "Session Interval Too Small"),
        (423, "Interval Too Brief"),
        (428, "Use Identity Header"),
        (429, "Provide Referrer Identity"),
        (430, "Flow Failed"),
        (433, "Anonymity Disallowed"),
        (436, "Bad Identity-Info"),
        (437, "Unsupported Certificate"),
        (438, "Invalid Identity Header"),
        (439, "First Hop Lacks Outbound Support"),
        (470, "Consent Needed"),
        (480, "Temporarily Unavailable"),
        (481, "Call/Transaction Does Not Exist"),
        (486, "Busy Here"),
        (487, "Request Terminated"),
        (488, "Not Acceptable Here"),
        (489, "Bad Event"),
        (491, "Request Pending"),
        (493, "Undecipherable"),
        (494, "Security Agreement Required"),
        (500, "Server Internal Error"),
        (503, "Service Unavailable"),
        (504, "Server Time-out"),
        (505, "Version Not Supported"),
        (513, "Message Too Large"),
        (580, "Precondition Failure"),
        (600, "Busy Everywhere"),
        (603, "Decline"),
        (604, "Does Not Exist Anywhere"),
        (606, "Not Acceptable"),
    ] {
        assert_eq!(default_reason(code), phrase, "{code}");
    }
    assert_eq!(default_reason(299), "Success");
    assert_eq!(default_reason(499), "Client Error");
    assert_eq!(default_reason(42), "Unknown");
    assert_eq!(Response::new(404, "").reason, "Not Found");
}

// ----- serialization

#[test]
fn to_bytes_content_length_rules() {
    let mut r = Request::new(Method::Message, "sip:bob@b.example");
    r.headers
        .push("Via", "SIP/2.0/UDP a.example;branch=z9hG4bK1");
    r.headers.push("Content-Length", "999");
    r.headers.push("Content-Type", "text/plain");
    r.headers.push("Content-Length", "1");
    r.body = Bytes::from_static(b"hello");
    let s = String::from_utf8(r.to_bytes()).unwrap();
    assert_eq!(
            s,
            "MESSAGE sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP a.example;branch=z9hG4bK1\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
        );
    assert_eq!(r.to_string(), s);
    // appended last when absent
    let mut r2 = Request::new(Method::Options, "sip:x.example");
    r2.headers.push("Subject", "a\r\nInjected: yes");
    let s = String::from_utf8(r2.to_bytes()).unwrap();
    assert_eq!(
        s,
        "OPTIONS sip:x.example SIP/2.0\r\nSubject: a  Injected: yes\r\nContent-Length: 0\r\n\r\n"
    );
    // compact name keeps its position and name
    let mut r3 = req(b"OPTIONS sip:x.example SIP/2.0\r\nl: 0\r\nSubject: s\r\n\r\n");
    r3.body = Bytes::from_static(b"12");
    assert!(String::from_utf8(r3.to_bytes())
        .unwrap()
        .contains("\r\nl: 2\r\nSubject: s\r\n\r\n12"));
    r3.normalize_content_length();
    assert_eq!(r3.headers.get("Content-Length"), Some("2"));
    let mut msg = SipMessage::from(Response::new(200, "OK"));
    msg.normalize_content_length();
    assert_eq!(msg.headers().get("l"), Some("0"));
    let mut out = Vec::new();
    msg.write_to(&mut out);
    assert_eq!(out, b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n");
}

#[test]
fn round_trips() {
    for s in samples() {
        assert_roundtrip(&s);
    }
    let d = parse_datagram_bytes(&Bytes::from(build(CISCO_REGISTER, CISCO_BODY))).unwrap();
    assert_eq!(
        d,
        parse_datagram(&build(CISCO_REGISTER, CISCO_BODY)).unwrap()
    );
    let b = Bytes::from(build(OPTIONS, ""));
    assert_eq!(
        parse_stream_message_bytes(&b).unwrap(),
        parse_datagram(&b).unwrap()
    );
    // UDP without Content-Length: the body is the rest of the datagram
    let m = assert_roundtrip(b"MESSAGE sip:a@b.example SIP/2.0\r\nSubject: x\r\n\r\nbody\r\nmore");
    assert_eq!(&m.body()[..], b"body\r\nmore");
    assert!(m.is_request());
    assert!(m.as_response().is_none());
    assert!(m.as_request().is_some());
}

// ----- stream framing

fn two_messages() -> (Vec<u8>, Vec<u8>) {
    let a = build(CISCO_REGISTER, CISCO_BODY);
    let b = build(
        "
SIP/2.0 200 OK
Via: SIP/2.0/TCP 10.10.20.55:51508;branch=z9hG4bK5e1c2c4b
From: <sip:2001@10.10.10.1>;tag=0022905c1e3b00027a8b7c26-4d2b3f51
To: <sip:2001@10.10.10.1>;tag=991
Call-ID: 0022905c-1e3b0002-1d0a2b3c-4d5e6f70@10.10.20.55
CSeq: 101 REGISTER
Content-Length: {CL}
",
        "0123456789\n\n",
    );
    (a, b)
}

#[test]
fn stream_framing_byte_by_byte() {
    let (a, b) = two_messages();
    let mut wire = b"\r\n\r\n".to_vec();
    wire.extend_from_slice(&a);
    wire.extend_from_slice(b"\r\n");
    wire.extend_from_slice(&b);
    wire.extend_from_slice(b"\r\n\r\n");

    let mut framer = StreamFramer::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut messages = Vec::new();
    let mut pings = 0;
    let mut keepalive_bytes = 0;
    for &byte in &wire {
        buf.push(byte);
        while let Some(ev) = framer.poll(&buf).unwrap() {
            match ev {
                StreamEvent::KeepAlive { len, ping } => {
                    keepalive_bytes += len;
                    pings += usize::from(ping);
                    buf.drain(..len);
                }
                StreamEvent::Message { len } => {
                    messages.push(parse_stream_message(&buf[..len]).unwrap());
                    buf.drain(..len);
                }
            }
        }
    }
    assert!(buf.is_empty());
    assert!(framer.is_idle());
    assert_eq!(keepalive_bytes, 10);
    assert_eq!(pings, 2);
    assert_eq!(
        messages,
        vec![parse_datagram(&a).unwrap(), parse_datagram(&b).unwrap()]
    );
}

#[test]
fn stream_framing_arbitrary_splits() {
    let (a, b) = two_messages();
    let mut wire = b"\r\n".to_vec();
    wire.extend_from_slice(&a);
    wire.extend_from_slice(&b);
    let first = 2 + a.len();
    // stateless: every prefix
    for i in 0..=wire.len() {
        let got = frame_stream(&wire[..i]).unwrap();
        if i < first {
            assert_eq!(got, None, "prefix {i}");
        } else {
            assert_eq!(got, Some(first), "prefix {i}");
        }
    }
    assert_eq!(
        parse_stream_message(&wire[..first]).unwrap(),
        parse_datagram(&a).unwrap()
    );
    let rest = &wire[first..];
    assert_eq!(frame_stream(rest).unwrap(), Some(b.len()));
    // stateful, with every two-chunk split
    for split in 0..=wire.len() {
        let mut framer = StreamFramer::new();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for chunk in [&wire[..split], &wire[split..]] {
            buf.extend_from_slice(chunk);
            while let Some(ev) = framer.poll(&buf).unwrap() {
                match ev {
                    StreamEvent::KeepAlive { len, .. } => {
                        buf.drain(..len);
                    }
                    StreamEvent::Message { len } => {
                        got.push(parse_stream_message(&buf[..len]).unwrap());
                        buf.drain(..len);
                    }
                }
            }
        }
        assert_eq!(got.len(), 2, "split {split}");
        assert!(buf.is_empty());
    }
}

#[test]
fn keepalives() {
    assert_eq!(skip_keepalive(b"\r\n\r\nINVITE"), 4);
    assert_eq!(skip_keepalive(b"\n\n\r"), 3);
    assert_eq!(skip_keepalive(b"INVITE"), 0);
    assert_eq!(skip_keepalive(b""), 0);
    assert_eq!(frame_stream(b"\r\n\r\n"), Ok(None));
    assert_eq!(frame_stream(b""), Ok(None));
    let mut f = StreamFramer::new();
    assert_eq!(
        f.poll(b"\r\n\r\n"),
        Ok(Some(StreamEvent::KeepAlive { len: 4, ping: true }))
    );
    assert_eq!(
        f.poll(b"\r\n"),
        Ok(Some(StreamEvent::KeepAlive {
            len: 2,
            ping: false
        }))
    );
    // a ping split over two reads is still a ping
    assert_eq!(
        f.poll(b"\r\n"),
        Ok(Some(StreamEvent::KeepAlive { len: 2, ping: true }))
    );
    assert_eq!(
        f.poll(b"\r\n\r"),
        Ok(Some(StreamEvent::KeepAlive {
            len: 3,
            ping: false
        }))
    );
    assert_eq!(
        f.poll(b"\nOPT"),
        Ok(Some(StreamEvent::KeepAlive { len: 1, ping: true }))
    );
    assert_eq!(f.poll(b"OPT"), Ok(None));
    assert!(!f.is_idle());
    f.reset();
    assert!(f.is_idle());
    assert_eq!(f.poll(b""), Ok(None));
    let too_many = vec![b'\n'; MAX_MESSAGE_SIZE + 1];
    assert_eq!(frame_stream(&too_many).unwrap_err().status, None);
}

#[test]
fn stream_framing_errors() {
    // missing Content-Length on a stream transport
    let e = frame_stream(b"OPTIONS sip:a@b.example SIP/2.0\r\nVia: SIP/2.0/TCP h.example\r\n\r\n")
        .unwrap_err();
    assert_eq!(e.status, Some(400));
    assert_eq!(e.detail, "missing Content-Length on a stream transport");
    let e = parse_stream_message(b"OPTIONS sip:a@b.example SIP/2.0\r\n\r\n").unwrap_err();
    assert_eq!(e.status, Some(400));
    // a response without Content-Length cannot be answered
    let e = frame_stream(b"SIP/2.0 200 OK\r\n\r\n").unwrap_err();
    assert_eq!(e.status, None);
    // invalid / differing / too large Content-Length
    let e =
        frame_stream(b"OPTIONS sip:a@b.example SIP/2.0\r\nContent-Length: x\r\n\r\n").unwrap_err();
    assert_eq!(e.status, Some(400));
    let e =
        frame_stream(b"OPTIONS sip:a@b.example SIP/2.0\r\nl: 1\r\nContent-Length:\r\n 2\r\n\r\n")
            .unwrap_err();
    assert!(e.detail.contains("differs"), "{e}");
    let e = frame_stream(b"OPTIONS sip:a@b.example SIP/2.0\r\nContent-Length: 65536\r\n\r\n")
        .unwrap_err();
    assert_eq!(e.status, Some(513));
    let e = frame_stream(b"OPTIONS sip:a@b.example SIP/2.0\r\nContent-Length: 65500\r\nX-Pad: 0123456789012345678901234567890123456789\r\n\r\n").unwrap_err();
    assert_eq!(e.status, Some(513));
    // folded Content-Length is understood
    assert_eq!(
        frame_stream(b"OPTIONS sip:a@b.example SIP/2.0\r\nContent-Length:\r\n 2\r\n\r\nab"),
        Ok(Some(58))
    );
    // a header section that never ends
    let mut endless = b"INVITE sip:a@b.example SIP/2.0\r\nX-Junk: ".to_vec();
    let mut f = StreamFramer::new();
    let mut result = Ok(None);
    for _ in 0..2000 {
        endless.extend_from_slice(&[b'a'; 40]);
        result = f.poll(&endless);
        if result.is_err() {
            break;
        }
    }
    let e = result.unwrap_err();
    assert_eq!(e.status, Some(513), "{e}");
    assert!(endless.len() <= MAX_MESSAGE_SIZE + 41);
    assert_eq!(frame_stream(&endless).unwrap_err().status, Some(513));
    // many short lines without an empty line
    let mut lines = b"INVITE sip:a@b.example SIP/2.0\r\n".to_vec();
    while lines.len() <= MAX_MESSAGE_SIZE {
        lines.extend_from_slice(b"A: b\r\n");
    }
    assert_eq!(frame_stream(&lines).unwrap_err().status, Some(513));
    // garbage is rejected as soon as its first line is seen
    let e = frame_stream(b"GET / HTTP/1.1\r\n").unwrap_err();
    assert_eq!(e.status, None);
    assert!(e.detail.contains("not a SIP message"));
    let e = StreamFramer::new().poll(b"\x16\x03\x01\x00").unwrap_err();
    assert_eq!(e.status, None);
    assert_eq!(frame_stream(b"INVITE sip:a@b.example SIP/2.0"), Ok(None));
    // control characters in the start line: not SIP, however it arrives
    let nul = b"OPTIONS sip:a@b\x00 SIP/2.0\r\nl: 0\r\n\r\n";
    assert_eq!(frame_stream(nul).unwrap_err().status, None);
    let mut f = StreamFramer::new();
    assert_eq!(f.poll(&nul[..10]), Ok(None));
    assert_eq!(f.poll(&nul[..16]).unwrap_err().status, None);
    // truncated / over-long stream messages
    let e = parse_stream_message(b"OPTIONS sip:a@b.example SIP/2.0\r\nl: 5\r\n\r\nab").unwrap_err();
    assert!(e.detail.contains("truncated"), "{e}");
    let e = parse_stream_message(b"OPTIONS sip:a@b.example SIP/2.0\r\nl: 1\r\n\r\nab").unwrap_err();
    assert!(e.detail.contains("unexpected bytes"), "{e}");
    // a framed message with a bad header still frames (so the server can
    // answer 400 and keep the connection)
    let bad = b"OPTIONS sip:a@b.example SIP/2.0\r\nCSeq: x\r\nl: 0\r\n\r\n";
    assert_eq!(frame_stream(bad), Ok(Some(bad.len())));
    assert_eq!(parse_stream_message(bad).unwrap_err().status, Some(400));
}

// ----- robustness

/// Small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Every property the fuzz target checks.
fn check_input(data: &[u8]) {
    if let Ok(m) = parse_datagram(data) {
        let mut norm = m.clone();
        norm.normalize_content_length();
        let bytes = m.to_bytes();
        assert_eq!(
            parse_datagram(&bytes).as_ref(),
            Ok(&norm),
            "{:?}",
            String::from_utf8_lossy(data)
        );
        assert_eq!(parse_stream_message(&bytes).as_ref(), Ok(&norm));
        assert_eq!(frame_stream(&bytes), Ok(Some(bytes.len())));
        let h = m.headers();
        let _ = (
            m.cseq(),
            m.top_via(),
            h.from_addr(),
            h.to_addr(),
            h.contacts(),
        );
        let _ = h.max_forwards();
        // The borrowed views agree with the owned ones.
        if let Ok(v) = m.top_via() {
            let r = h.top_via_ref().map(|v| v.to_owned_via());
            assert_eq!(r.as_ref(), Ok(&v));
            assert_eq!(h.top_via_ref().ok().and_then(|v| v.branch()), v.branch());
        }
        for (owned, borrowed) in [(h.from_addr(), h.from_ref()), (h.to_addr(), h.to_ref())] {
            if let Ok(na) = owned {
                let b = borrowed.expect("borrowed view parses");
                assert_eq!(b.to_owned_name_addr(), na);
                assert_eq!(b.tag(), na.tag());
            }
        }
        if let Some(r) = m.as_request() {
            // What the shell uses for parsed requests says what the full check says.
            assert_eq!(r.validate_parsed(), r.validate(), "{r}");
            let resp = r.make_response(200, "", Some("t"));
            assert!(parse_datagram(&resp.to_bytes()).is_ok());
        }
        for (_, v) in h.iter() {
            check_typed(v);
        }
    }
    match frame_stream(data) {
        Ok(Some(n)) => {
            assert!(n <= data.len());
            let _ = parse_stream_message(&data[..n]);
        }
        Ok(None) => {}
        Err(e) => assert!(!e.detail.is_empty()),
    }
    let mut f = StreamFramer::new();
    let mut buf: Vec<u8> = Vec::new();
    for chunk in data.chunks(7) {
        buf.extend_from_slice(chunk);
        loop {
            match f.poll(&buf) {
                Ok(Some(StreamEvent::KeepAlive { len, .. })) => {
                    assert!(len > 0 && len <= buf.len());
                    buf.drain(..len);
                }
                Ok(Some(StreamEvent::Message { len })) => {
                    assert!(len > 0 && len <= buf.len());
                    let _ = parse_stream_message(&buf[..len]);
                    buf.drain(..len);
                }
                Ok(None) => break,
                Err(_) => {
                    buf.clear();
                    break;
                }
            }
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        check_typed(s);
    }
}

/// Typed parsers: never panic, and Display -> parse is the identity.
fn check_typed(s: &str) {
    if let Ok(v) = Via::parse(s) {
        assert_eq!(Via::parse(&v.to_string()), Ok(v.clone()), "{s:?}");
    }
    if let Ok(n) = NameAddr::parse(s) {
        assert_eq!(NameAddr::parse(&n.to_string()), Ok(n.clone()), "{s:?}");
    }
    if let Ok(u) = SipUri::parse(s) {
        assert_eq!(SipUri::parse(&u.to_string()), Ok(u.clone()), "{s:?}");
    }
    if let Ok(c) = CSeq::parse(s) {
        assert_eq!(CSeq::parse(&c.to_string()), Ok(c.clone()));
    }
    if let Ok(ContactList::Addrs(a)) = parse_contact_list(s) {
        for n in a {
            assert_eq!(NameAddr::parse(&n.to_string()), Ok(n.clone()));
        }
    }
    let _ = split_commas(s).count();
    let _ = unquote(s);
    let _ = unescape_uri(s);
}

#[test]
fn mutation_fuzz_never_panics_and_round_trips() {
    const INTERESTING: &[u8] = b" \t\r\n:;,=\"<>\\@[]?&%/0123456789.aZ*\x00\x7f\xff\xc3";
    let seeds = samples();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let iterations = if cfg!(debug_assertions) {
        6_000
    } else {
        60_000
    };
    for _ in 0..iterations {
        let mut d = seeds[rng.below(seeds.len())].clone();
        for _ in 0..=rng.below(4) {
            let len = d.len();
            match rng.below(6) {
                0 if len > 0 => {
                    let i = rng.below(len);
                    d[i] = INTERESTING[rng.below(INTERESTING.len())];
                }
                1 => {
                    let i = rng.below(len + 1);
                    d.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
                }
                2 if len > 0 => {
                    let i = rng.below(len);
                    let j = (i + 1 + rng.below(16)).min(len);
                    d.drain(i..j);
                }
                3 if len > 0 => {
                    let i = rng.below(len);
                    let j = (i + 1 + rng.below(32)).min(len);
                    let piece = d[i..j].to_vec();
                    let at = rng.below(d.len() + 1);
                    d.splice(at..at, piece);
                }
                4 => d.truncate(rng.below(len + 1)),
                _ if len > 0 => {
                    let i = rng.below(len);
                    d[i] ^= 1 << rng.below(8);
                }
                _ => {}
            }
        }
        check_input(&d);
    }
    // hand-picked edge cases
    for d in [
        &b""[..],
        b"\r",
        b"\n",
        b"SIP/2.0",
        b"SIP/",
        b" SIP/2.0",
        b"A SIP/2.0\r\n\r\n",
        b"A  SIP/2.0\r\n\r\n",
        b"A b SIP/2.0\r\n\r\n",
        b"A sip:b SIP/2.0\r\n:\r\n\r\n",
        b"A sip:b SIP/2.0\r\nv: \r\n\r\n",
        b"A sip:b SIP/2.0\r\nm: \"\r\n\r\n",
        b"A sip:b SIP/2.0\r\nm: <\r\n\r\n",
        b"A sip:b SIP/2.0\r\nt: \"\\\r\n\r\n",
        b"SIP/2.0 200 \xff\r\n\r\n",
        b"A sip:b SIP/2.0\r\nl: 1\r\n\r\n",
        b"A sip:b SIP/2.0\r\nl: 0000000000000000000000001\r\n\r\nx",
    ] {
        check_input(d);
    }
}

#[test]
fn pathological_inputs_are_fast() {
    let start = std::time::Instant::now();
    let big = |fill: &str| {
        let mut s = String::from("OPTIONS sip:a@b.example SIP/2.0\r\n");
        while s.len() < MAX_MESSAGE_SIZE - 200 {
            s.push_str(fill);
        }
        s.push_str("\r\n\r\n");
        s
    };
    let inputs = [
        big("Via: SIP/2.0/UDP h.example;branch=z9hG4bK1\r\n"),
        {
            let mut s = String::from("OPTIONS sip:a@b.example SIP/2.0\r\nVia: ");
            while s.len() < MAX_MESSAGE_SIZE - 100 {
                s.push_str("SIP/2.0/UDP h,");
            }
            s.push_str("\r\n\r\n");
            s
        },
        {
            let mut s = String::from("OPTIONS sip:a@b.example SIP/2.0\r\nContact: ");
            while s.len() < MAX_MESSAGE_SIZE - 100 {
                s.push_str("<sip:a@b>;x=\"<,>\",");
            }
            s.push_str("\r\n\r\n");
            s
        },
        {
            let mut s = String::from("OPTIONS sip:a@b.example SIP/2.0\r\nSubject: x");
            while s.len() < MAX_MESSAGE_SIZE - 100 {
                s.push_str("\r\n y");
            }
            s.push_str("\r\n\r\n");
            s
        },
        {
            let mut s = String::from("OPTIONS sip:a@b.example SIP/2.0\r\nTo: ");
            while s.len() < MAX_MESSAGE_SIZE - 100 {
                s.push_str("tok ");
            }
            s.push_str("\r\n\r\n");
            s
        },
        big("X: \"\\\"\\\"\\\"\\\"\\\"\\\"\"\r\n"),
    ];
    for input in &inputs {
        let _ = parse_datagram(input.as_bytes());
        let _ = frame_stream(input.as_bytes());
        let mut f = StreamFramer::new();
        for end in (1..input.len()).step_by(1) {
            if f.poll(&input.as_bytes()[..end]).is_err() {
                break;
            }
        }
    }
    assert!(
        start.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        start.elapsed()
    );
}
