"""Drives ucm's WebDialer with zeep (a SOAP client nobody here wrote) from Cisco's wd70 WSDL
as the node serves it. Usage: zeep_client.py WSDL_URL USER PASSWORD DEVICE LINE DESTINATION

The SOAP-encoding schema (schemas.xmlsoap.org/soap/encoding/) that the WSDL imports is given
from a minimal local copy, so the test runs offline. Prints one JSON line of results."""
import json
import sys

import zeep
from zeep.transports import Transport

SOAPENC = b"""<?xml version="1.0"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"
  xmlns:tns="http://schemas.xmlsoap.org/soap/encoding/"
  targetNamespace="http://schemas.xmlsoap.org/soap/encoding/">
  <xs:attribute name="root"><xs:simpleType><xs:restriction base="xs:boolean"/></xs:simpleType></xs:attribute>
  <xs:attributeGroup name="commonAttributes">
    <xs:attribute name="id" type="xs:ID"/>
    <xs:attribute name="href" type="xs:anyURI"/>
    <xs:anyAttribute namespace="##other" processContents="lax"/>
  </xs:attributeGroup>
  <xs:attribute name="arrayType" type="xs:string"/>
  <xs:attribute name="offset" type="xs:string"/>
  <xs:attributeGroup name="arrayAttributes">
    <xs:attribute ref="tns:arrayType"/>
    <xs:attribute ref="tns:offset"/>
  </xs:attributeGroup>
  <xs:complexType name="Array">
    <xs:sequence><xs:any namespace="##any" minOccurs="0" maxOccurs="unbounded" processContents="lax"/></xs:sequence>
    <xs:attributeGroup ref="tns:arrayAttributes"/>
    <xs:attributeGroup ref="tns:commonAttributes"/>
  </xs:complexType>
  <xs:complexType name="string">
    <xs:simpleContent><xs:extension base="xs:string"><xs:attributeGroup ref="tns:commonAttributes"/></xs:extension></xs:simpleContent>
  </xs:complexType>
</xs:schema>
"""


class Offline(Transport):
    def load(self, url):
        if url.startswith("http://schemas.xmlsoap.org/soap/encoding"):
            return SOAPENC
        return super().load(url)


def main():
    wsdl, user, password, device, line, dest = sys.argv[1:7]
    client = zeep.Client(wsdl, transport=Offline())
    cred = {"userID": user, "password": password}
    out = {}
    out["isClusterUser"] = bool(client.service.isClusterUserSoap(user))
    line_ = client.service.getPrimaryLine(cred)
    out["primaryLine"] = line_ if isinstance(line_, str) else str(line_["_value_1"])
    profile = {
        "user": user,
        "deviceName": device,
        "lineNumber": line,
        "supportEM": False,
        "locale": "English",
        "dontAutoClose": False,
        "dontShowCallConf": True,
    }
    # getProfileSoap: GetConfigResponse, its deviceInfoList an array of WDDeviceInfo as the
    # WSDL types it (http://webdialer.ccm.cisco.com).
    r = client.service.getProfileSoap(cred, user)
    items = r.deviceInfoList or []
    items = getattr(items, "_value_1", items) or []
    out["profile"] = [int(r.responseCode), str(r.description),
                      [[str(i.deviceName), str(i.lines)] for i in items]]
    # getProfileDetailSoap: ConfigResponseDetail with WDDeviceInfoDetail items.
    r = client.service.getProfileDetailSoap(cred)
    items = r.deviceInfoListDetail or []
    items = getattr(items, "_value_1", items) or []

    def text(v):
        return str(getattr(v, "_value_1", v))

    def lines_of(v):
        v = getattr(v, "_value_1", v) or []
        return [text(x) for x in v]

    out["profileDetail"] = [int(r.responseCode), text(r.description),
                            [[text(i.deviceName), lines_of(i.lines), text(i.phoneType)] for i in items]]
    r = client.service.makeCallSoap(cred, dest, profile)
    out["makeCall"] = [int(r.responseCode), str(r.responseDescription)]
    bad = client.service.makeCallSoap({"userID": user, "password": "wrong"}, dest, profile)
    out["badPassword"] = int(bad.responseCode)
    print(json.dumps(out), flush=True)
    sys.stdin.readline()  # the test ends the call, then lets us go on
    r = client.service.endCallSoap(cred, profile)
    out["endCall"] = int(r.responseCode)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
