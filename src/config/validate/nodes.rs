//! The cluster and its nodes.

use std::collections::HashSet;
use std::net::IpAddr;

use super::{is_hostname, Checker};
use crate::config::model::NodeService;
use crate::wire::yaml::Path;

impl Checker<'_> {
    pub(super) fn cluster_and_nodes(&mut self) {
        let d = self.def;
        let root = Path::root();
        if d.cluster.id.trim().is_empty() {
            self.err(root.key("cluster").key("id"), "cluster id is empty");
        }
        self.unique("nodes", &d.nodes, |n| n.name.clone(), "node");
        for (i, n) in d.nodes.iter().enumerate() {
            let p = root.key("nodes").index(i);
            if n.address.parse::<IpAddr>().is_err() && !is_hostname(&n.address) {
                self.err(
                    p.key("address"),
                    format!("{:?} is neither an IP address nor a host name", n.address),
                );
            }
            let mut seen = HashSet::new();
            for (j, s) in n.services.iter().enumerate() {
                if !seen.insert(*s) {
                    self.err(
                        p.key("services").index(j),
                        format!("service {s:?} listed twice"),
                    );
                }
                // These place calls or register route points through their own node's call
                // control: without it their requests would go unanswered.
                let needs_calls = matches!(s, NodeService::Webdialer | NodeService::Paging);
                if needs_calls && !n.runs(NodeService::CallProcessing) {
                    self.err(
                        p.key("services").index(j),
                        format!(
                            "{} needs call-processing on the same node (its calls go through \
                             this node's call control): add call-processing to node {:?}",
                            s.flag(),
                            n.name
                        ),
                    );
                }
            }
        }
    }
}
