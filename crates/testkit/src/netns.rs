//! Network namespaces for network-fault tests (issue 31): a server runs in a
//! namespace of its own, reached from the test's namespace over a veth pair
//! (`10.231.<index>.1` here, `.2` there). [`Netns::cut`] makes every packet
//! between the two vanish, both ways (no reset, no error: a blackhole);
//! [`Netns::heal`] lets them through again. This kernel has no `netem`,
//! `prio`, `gact` or `police`, and no iptables/nft, so the blackhole is an
//! `htb` root on each end of the pair whose class leads to a `pfifo limit 0`
//! queue (it drops everything), with a `u32` filter steering the peer's
//! address into it. Everything is removed on drop, also when a test fails,
//! and a namespace left by a killed run is removed before one is made.
//! Needs root and iproute2 (CI runs as root).

use std::net::Ipv4Addr;
use std::process::Command;

/// A network namespace with a veth pair to the test's namespace.
pub struct Netns {
    /// The namespace's name (`bvfault<index>`).
    pub name: String,
    host_if: String,
    ns_if: String,
    /// This end's address (the test's namespace).
    pub host_ip: Ipv4Addr,
    /// The namespace's address.
    pub ns_ip: Ipv4Addr,
    cut: bool,
}

fn ip(args: &[&str]) {
    run("ip", args);
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program} {args:?}: {e} (network-fault tests need iproute2 and root)"));
    assert!(out.status.success(), "{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

fn quiet(program: &str, args: &[&str]) {
    let _ = Command::new(program).args(args).output();
}

impl Netns {
    /// Namespace `bvfault<index>` (index 1–250), up and reachable.
    pub fn create(index: u8) -> Self {
        let name = format!("bvfault{index}");
        let (host_if, ns_if) = (format!("bvf{index}h"), format!("bvf{index}n"));
        quiet("ip", &["netns", "del", &name]);
        quiet("ip", &["link", "del", &host_if]);
        let (host_ip, ns_ip) = (Ipv4Addr::new(10, 231, index, 1), Ipv4Addr::new(10, 231, index, 2));
        ip(&["netns", "add", &name]);
        let ns = Self { name, host_if, ns_if, host_ip, ns_ip, cut: false };
        ip(&["link", "add", &ns.host_if, "type", "veth", "peer", "name", &ns.ns_if]);
        ip(&["link", "set", &ns.ns_if, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &ns.host_if]);
        ip(&["link", "set", &ns.host_if, "up"]);
        ns.inside(&["ip", "addr", "add", &format!("{ns_ip}/30"), "dev", &ns.ns_if]);
        ns.inside(&["ip", "link", "set", &ns.ns_if, "up"]);
        ns.inside(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Run a command inside the namespace to completion (panics on failure).
    fn inside(&self, cmd: &[&str]) {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(cmd);
        ip(&args);
    }

    /// The command line that runs `program args` inside the namespace
    /// (`ip netns exec` execs it: the child's pid is the program's).
    pub fn command_line(&self, program: &str, args: &[&str]) -> (std::path::PathBuf, Vec<String>) {
        let mut all = vec!["netns".to_owned(), "exec".to_owned(), self.name.clone(), program.to_owned()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        ("ip".into(), all)
    }

    /// Drop every packet between the namespace and the test's, both ways.
    pub fn cut(&mut self) {
        if self.cut {
            return;
        }
        for (dev, peer, inside) in [(self.host_if.clone(), self.ns_ip, false), (self.ns_if.clone(), self.host_ip, true)] {
            let peer = format!("{peer}/32");
            let steps: [&[&str]; 4] = [
                &["tc", "qdisc", "add", "dev", &dev, "root", "handle", "1:", "htb", "default", "10"],
                &["tc", "class", "add", "dev", &dev, "parent", "1:", "classid", "1:10", "htb", "rate", "1gbit"],
                &["tc", "class", "add", "dev", &dev, "parent", "1:", "classid", "1:20", "htb", "rate", "1gbit"],
                &["tc", "qdisc", "add", "dev", &dev, "parent", "1:20", "handle", "20:", "pfifo", "limit", "0"],
            ];
            let filter: &[&str] = &["tc", "filter", "add", "dev", &dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "ip", "dst", &peer, "flowid", "1:20"];
            for step in steps.iter().copied().chain([filter]) {
                if inside {
                    self.inside(step);
                } else {
                    run(step[0], &step[1..]);
                }
            }
        }
        self.cut = true;
    }

    /// Let packets through again.
    pub fn heal(&mut self) {
        if !self.cut {
            return;
        }
        run("tc", &["qdisc", "del", "dev", &self.host_if, "root"]);
        self.inside(&["tc", "qdisc", "del", "dev", &self.ns_if, "root"]);
        self.cut = false;
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        quiet("ip", &["netns", "del", &self.name]);
        quiet("ip", &["link", "del", &self.host_if]);
    }
}
