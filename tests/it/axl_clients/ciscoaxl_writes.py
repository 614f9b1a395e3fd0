"""Changes a ucm node's cluster through AXL with two real clients: the `ciscoaxl` package's
helpers (which send the many Cisco settings a real cluster has) and zeep alone over Cisco's
AXL 12.5 WSDL, strict. Prints one JSON object.

usage: REQUESTS_CA_BUNDLE=node-cert.pem ciscoaxl_writes.py HOST PORT USER PASSWORD
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


def fault(r):
    """A Fault's (axlcode, message), or None when the call succeeded."""
    if isinstance(r, Fault):
        return (r.detail.find("axlError").find("axlcode").text, r.message)
    return None


out = {}
ucm = axl(username=user, password=password, cucm=host, cucm_version="12.5", cucm_port=port)
r = ucm.add_directory_number(
    "30500", partition="Internal_PT", description="Lobby line", alerting_name="Lobby",
    ascii_alerting_name="Lobby",
)
out["add_line"] = fault(r) or r["return"]
r = ucm.add_phone(
    "SEP0000000070A1", description="Lobby phone", product="Cisco 8845", device_pool="HQ_DP",
    css="Internal_CSS", protocol="SIP", enable_em="false",
    lines=[("30500", "Internal_PT", "Lobby", "Lobby", "Lobby - 30500", "")],
)
out["add_phone"] = fault(r) or r["return"]
p = ucm.get_phone(name="SEP0000000070A1")
out["phone"] = fault(p) or {
    "description": p["description"],
    "lines": [(l["dirn"]["pattern"], l["label"]) for l in p["lines"]["line"]],
}
r = ucm.update_phone(name="SEP0000000070A1", description="Lobby phone, east")
out["update_phone"] = fault(r) or r["return"]
out["described"] = ucm.get_phone(name="SEP0000000070A1")["description"]
r = ucm.add_user("axluser", "Axl", "Ann")
out["add_user"] = fault(r) or r["return"]
r = ucm.update_user_credentials("axluser", password="pw-axl-1", pin="2468")
out["credentials"] = fault(r) or r["return"]
r = ucm.update_user(userid="axluser", associatedDevices={"device": ["SEP0000000070A1"]})
out["associate"] = fault(r) or r["return"]
u = ucm.get_user(userid="axluser")
out["user"] = fault(u) or {"lastName": u["lastName"], "devices": u["associatedDevices"]["device"]}
# The data dictionary's view: the new phone and its line, by the usual join.
r = ucm.sql_query(
    "select d.name, n.dnorpattern, dm.numplanindex from device d "
    "join devicenumplanmap dm on dm.fkdevice = d.pkid join numplan n on n.pkid = dm.fknumplan "
    "where d.name = 'SEP0000000070A1'"
)
out["sql"] = fault(r) or [{c.tag: c.text for c in row} for row in r["row"]]
out["sql_bad"] = fault(ucm.sql_query("select * from callmanager"))
# The same phone twice: Cisco's duplicate-key fault.
out["again"] = fault(ucm.add_phone(
    "SEP0000000070A1", product="Cisco 8845", device_pool="HQ_DP", protocol="SIP"))
# A device pool the cluster lacks.
out["bad_pool"] = fault(ucm.add_phone(
    "SEP0000000070A2", product="Cisco 8845", device_pool="Nowhere_DP", protocol="SIP"))

# zeep alone, strict.
wsdl = os.path.join(os.path.dirname(sys.modules["ciscoaxl.axl"].__file__), "schema", "12.5", "AXLAPI.wsdl")
s = Session()
s.auth = (user, password)
s.verify = os.environ["REQUESTS_CA_BUNDLE"]
client = Client(wsdl, settings=Settings(strict=True), transport=Transport(session=s, timeout=10))
service = client.create_service(
    "{http://www.cisco.com/AXLAPIService/}AXLAPIBinding", f"https://{host}:{port}/axl/"
)
r = service.getLine(pattern="30500", routePartitionName="Internal_PT")
out["line"] = {
    "alertingName": r["return"]["line"]["alertingName"],
    "devices": r["return"]["line"]["associatedDevices"]["device"],
}
r = service.listLine(searchCriteria={"pattern": "305%"}, returnedTags={"pattern": "", "description": ""})
out["lines"] = [(x["pattern"], x["description"]) for x in r["return"]["line"]]
r = service.getDeviceProfile(name=ucm.get_device_profiles()[0]["name"])
out["profile_lines"] = len(r["return"]["deviceProfile"]["lines"]["line"])
r = service.removePhone(name="SEP0000000070A1")
out["removed"] = r["return"]
try:
    service.removePhone(name="SEP0000000070A1")
    out["removed_again"] = None
except Fault as e:
    out["removed_again"] = fault(e)
print(json.dumps(out))
