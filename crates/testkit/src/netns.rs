//! Network namespaces for network-fault tests (issue 31): each server runs
//! in a namespace of its own, attached by a veth pair to one bridge
//! (`bvfault0`, `10.231.0.1/24` in the test's namespace; namespace `i` is
//! `10.231.0.<10+i>`), so namespaces reach each other and the test's
//! processes reach them all. [`Netns::cut`] makes every packet between a
//! namespace and everyone vanish, both ways (no reset, no error: a
//! blackhole), [`Netns::cut_from`] only those between it and one address;
//! [`Netns::heal`] lets them through again. This kernel has no `netem`,
//! `prio`, `gact` or `police`, and no iptables/nft, so the blackhole is an
//! `htb` root on each end of the pair whose class leads to a `pfifo limit 0`
//! queue (it drops everything), with a `u32` filter steering the cut
//! packets into it. Everything is removed on drop (the bridge with the last
//! namespace), also when a test fails, and what a killed run left is
//! removed before it is made again. Needs root and iproute2 (CI runs as root).

use std::net::Ipv4Addr;
use std::process::Command;

/// A network namespace on the tests' bridge.
pub struct Netns {
    /// The namespace's name (`bvfault<index>`).
    pub name: String,
    host_if: String,
    ns_if: String,
    /// The test's namespace on the bridge (`10.231.0.1`): where its
    /// processes' packets come from.
    pub host_ip: Ipv4Addr,
    /// The namespace's address.
    pub ns_ip: Ipv4Addr,
    cut: bool,
    /// A flaky namespace's relay and its own veth pair toward the bridge
    /// (`bvf<index>r`, whose peer `bvf<index>b` is the bridge port).
    relay: Option<(crate::relay::Relay, String)>,
}

const BRIDGE: &str = "bvfault0";

/// Namespaces alive in this process: the bridge goes with the last one.
static ALIVE: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

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
    /// Namespace `bvfault<index>` (index 1–200) on the bridge, up and reachable.
    pub fn create(index: u8) -> Self {
        Self::create_with(index, None)
    }

    /// Namespace `bvfault<index>` whose every frame to and from the bridge
    /// crosses a [`crate::relay::Relay`] treating it as `link` says: the
    /// namespace's end of the veth pair stays as in [`Netns::create`], its
    /// other end is not a bridge port but one end of the relay, whose other
    /// end is a second veth pair on the bridge. Both relay interfaces have
    /// no address and ARP off, so the test's own stack never answers on
    /// them: every frame goes through the relay. [`Netns::cut`] still
    /// works (the relay's sends pass the cut's queue).
    pub fn create_flaky(index: u8, link: crate::relay::Flaky) -> Self {
        Self::create_with(index, Some(link))
    }

    /// What the namespace's relay did so far (`None`: not a flaky namespace).
    pub fn relay_stats(&self) -> Option<crate::relay::RelayStats> {
        self.relay.as_ref().map(|(r, _)| r.stats())
    }

    fn create_with(index: u8, link: Option<crate::relay::Flaky>) -> Self {
        let name = format!("bvfault{index}");
        let (host_if, ns_if) = (format!("bvf{index}h"), format!("bvf{index}n"));
        let host_ip = Ipv4Addr::new(10, 231, 0, 1);
        let ns_ip = Ipv4Addr::new(10, 231, 0, 10 + index);
        {
            let mut alive = ALIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if *alive == 0 {
                quiet("ip", &["link", "del", BRIDGE]);
                ip(&["link", "add", BRIDGE, "type", "bridge"]);
                ip(&["addr", "add", &format!("{host_ip}/24"), "dev", BRIDGE]);
                ip(&["link", "set", BRIDGE, "up"]);
            }
            *alive += 1;
        }
        let relay_if = format!("bvf{index}r");
        quiet("ip", &["netns", "del", &name]);
        quiet("ip", &["link", "del", &host_if]);
        quiet("ip", &["link", "del", &relay_if]);
        ip(&["netns", "add", &name]);
        let mut ns = Self { name, host_if, ns_if, host_ip, ns_ip, cut: false, relay: None };
        ip(&["link", "add", &ns.host_if, "type", "veth", "peer", "name", &ns.ns_if]);
        ip(&["link", "set", &ns.ns_if, "netns", &ns.name]);
        match link {
            None => {
                ip(&["link", "set", &ns.host_if, "master", BRIDGE]);
                ip(&["link", "set", &ns.host_if, "up"]);
            }
            Some(link) => {
                let port = format!("bvf{index}b");
                ip(&["link", "add", &relay_if, "type", "veth", "peer", "name", &port]);
                ip(&["link", "set", &port, "master", BRIDGE]);
                ip(&["link", "set", &port, "up"]);
                for dev in [&ns.host_if, &relay_if] {
                    quiet("sysctl", &["-qw", &format!("net.ipv6.conf.{dev}.disable_ipv6=1")]);
                    ip(&["link", "set", dev, "arp", "off", "promisc", "on", "up"]);
                }
                let relay = crate::relay::Relay::start(&ns.host_if, &relay_if, link).unwrap_or_else(|e| panic!("packet relay {} <-> {relay_if}: {e}", ns.host_if));
                ns.relay = Some((relay, relay_if));
            }
        }
        ns.inside(&["ip", "addr", "add", &format!("{ns_ip}/24"), "dev", &ns.ns_if]);
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

    /// Make `svc` start inside the namespace.
    pub fn wrap(&self, svc: &mut crate::process::Service) {
        let mut args = vec!["netns".to_owned(), "exec".to_owned(), self.name.clone(), svc.program.to_string_lossy().into_owned()];
        args.append(&mut svc.args);
        svc.args = args;
        svc.program = "ip".into();
    }

    /// Drop every packet between the namespace and anyone, both ways.
    pub fn cut(&mut self) {
        self.install(None);
    }

    /// Drop every packet between the namespace and `peer`, both ways (the
    /// rest goes through).
    pub fn cut_from(&mut self, peer: Ipv4Addr) {
        self.install(Some(peer));
    }

    fn install(&mut self, peer: Option<Ipv4Addr>) {
        assert!(!self.cut, "{} is cut already: heal it first", self.name);
        let peer = peer.map_or("0.0.0.0/0".to_owned(), |p| format!("{p}/32"));
        // Toward the namespace (its bridge port's egress) the peer is the
        // source; out of it (its own end's egress) the destination.
        for (dev, field, inside) in [(self.host_if.clone(), "src", false), (self.ns_if.clone(), "dst", true)] {
            let steps: [&[&str]; 5] = [
                &["tc", "qdisc", "add", "dev", &dev, "root", "handle", "1:", "htb", "default", "10"],
                &["tc", "class", "add", "dev", &dev, "parent", "1:", "classid", "1:10", "htb", "rate", "1gbit"],
                &["tc", "class", "add", "dev", &dev, "parent", "1:", "classid", "1:20", "htb", "rate", "1gbit"],
                &["tc", "qdisc", "add", "dev", &dev, "parent", "1:20", "handle", "20:", "pfifo", "limit", "0"],
                &["tc", "filter", "add", "dev", &dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "ip", field, &peer, "flowid", "1:20"],
            ];
            for step in steps {
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
        if let Some((relay, relay_if)) = self.relay.take() {
            drop(relay);
            quiet("ip", &["link", "del", &relay_if]);
        }
        quiet("ip", &["netns", "del", &self.name]);
        quiet("ip", &["link", "del", &self.host_if]);
        let mut alive = ALIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *alive = alive.saturating_sub(1);
        if *alive == 0 {
            quiet("ip", &["link", "del", BRIDGE]);
        }
    }
}
