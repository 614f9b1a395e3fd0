"""Reads a ucm node through AXL with two real clients: the `ciscoaxl` package (zeep over the
AXL 12.5 WSDL it ships) and zeep alone over the same WSDL, strict. Prints one JSON object.

usage: REQUESTS_CA_BUNDLE=node-cert.pem ciscoaxl_client.py HOST PORT USER PASSWORD
"""
import json
import os
import sys
import warnings

import urllib3

warnings.filterwarnings("ignore")
urllib3.disable_warnings()

host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

from ciscoaxl import axl  # noqa: E402
from requests import Session  # noqa: E402
from zeep import Client, Settings  # noqa: E402
from zeep.exceptions import Fault  # noqa: E402
from zeep.transports import Transport  # noqa: E402

out = {}
ucm = axl(username=user, password=password, cucm=host, cucm_version="12.5", cucm_port=port)
out["version"] = ucm.client.getCCMVersion()["return"]["componentVersion"]["version"]
phones = ucm.get_phones()
out["phones"] = len(phones)
out["phone_names"] = sorted(p["name"] for p in phones)[:3]
first = [p for p in phones if p["name"] == "SEP00036BC7B973"][0]
out["first"] = {k: first[k] for k in ("name", "product", "protocol", "callingSearchSpaceName")}
out["first"]["callingSearchSpaceName"] = first["callingSearchSpaceName"]["_value_1"]
out["first_uuid"] = first["uuid"]
p = ucm.get_phone(name="SEP00036BC7B973")
out["lines"] = [
    (l["index"], l["dirn"]["pattern"], l["dirn"]["routePartitionName"]["_value_1"])
    for l in p["lines"]["line"]
]
p = ucm.get_phone(uuid=out["first_uuid"])
out["by_uuid"] = p["name"]
missing = ucm.get_phone(name="SEP000000000000")
out["missing"] = isinstance(missing, Fault) and missing.message
out["missing_code"] = (
    isinstance(missing, Fault) and missing.detail.find("axlError").find("axlcode").text
)
users = ucm.get_users()
out["users"] = sorted(u["userid"] for u in users)
u = ucm.get_user(userid="jsmith")
out["jsmith"] = {
    "firstName": u["firstName"],
    "lastName": u["lastName"],
    "devices": u["associatedDevices"]["device"],
}
out["partitions"] = sorted(p["name"] for p in ucm.get_partitions())
out["css"] = sorted(c["name"] for c in ucm.get_calling_search_spaces())
# A page of two, then the next.
res = ucm.client.listPhone(
    searchCriteria={"name": "SEP%"}, returnedTags={"name": ""}, first=2, skip=0
)["return"]["phone"]
res2 = ucm.client.listPhone(
    searchCriteria={"name": "SEP%"}, returnedTags={"name": ""}, first=2, skip=2
)["return"]["phone"]
out["paged"] = [x["name"] for x in res] + [x["name"] for x in res2]

# zeep alone, strict (the schema's sequence order is checked).
wsdl = os.path.join(os.path.dirname(axl.__module__ and sys.modules["ciscoaxl.axl"].__file__), "schema", "12.5", "AXLAPI.wsdl")
s = Session()
s.auth = (user, password)
s.verify = os.environ["REQUESTS_CA_BUNDLE"]
client = Client(wsdl, settings=Settings(strict=True), transport=Transport(session=s, timeout=10))
service = client.create_service(
    "{http://www.cisco.com/AXLAPIService/}AXLAPIBinding", f"https://{host}:{port}/axl/"
)
r = service.listPhone(
    searchCriteria={"name": "SEP00036BC7B973"},
    returnedTags={"name": "", "description": "", "product": "", "model": "", "devicePoolName": ""},
)
out["strict_list"] = [x["name"] for x in r["return"]["phone"]]
r = service.getUser(userid="jsmith")
out["strict_user"] = r["return"]["user"]["userid"]
print(json.dumps(out))
