//! A flaky link in userspace (issue 31, scenario 6): every Ethernet frame
//! between two interfaces goes through this process, which delays it
//! (`delay ± jitter`, uniform, so frames overtake each other: reordering),
//! drops some and sends some twice. This kernel has no `netem`, so the
//! relay does in a thread what netem does in a qdisc.
//!
//! Each end is an `AF_PACKET` socket bound to one interface, with the
//! virtio-net header on (`PACKET_VNET_HDR`): a frame the kernel has not
//! checksummed yet (veth leaves TCP checksums to the receiver) or a GSO
//! super-frame crosses with its offload state and is finished by the
//! kernel on the far side, so no offload needs turning off (no `ethtool`).
//! Frames the relay sends itself are not read back (`PACKET_IGNORE_OUTGOING`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a flaky link treats every frame, each way.
#[derive(Clone, Copy, Debug)]
pub struct Flaky {
    /// Mean one-way delay.
    pub delay: Duration,
    /// Each frame's delay is uniform in `delay ± jitter`.
    pub jitter: Duration,
    /// Share of frames dropped.
    pub loss: f64,
    /// Share of frames sent twice (each copy with its own delay).
    pub duplicate: f64,
}

impl Flaky {
    /// Issue 31's bad link: 50 ms ± 30 ms, 3 % lost, 1 % duplicated, reordered by the jitter.
    pub const BAD: Self = Self { delay: Duration::from_millis(50), jitter: Duration::from_millis(30), loss: 0.03, duplicate: 0.01 };
}

/// What a relay did so far, both ways together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Frames read.
    pub frames: u64,
    /// Frames dropped.
    pub dropped: u64,
    /// Frames sent twice.
    pub duplicated: u64,
    /// Frames sent after a frame read later than them.
    pub reordered: u64,
}

#[derive(Default)]
struct Counters {
    frames: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
}

/// Frames waiting for their time, earliest first: (due, sequence, frame).
type Due = BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>;

#[derive(Default)]
struct Queue {
    due: Mutex<Due>,
    wake: Condvar,
}

/// At most this many frames wait in one direction; more are dropped (a full link).
const QUEUE_LIMIT: usize = 20_000;
/// A virtio-net header, then up to a 64 KiB GSO frame.
const FRAME_MAX: usize = 10 + 65_550;

/// A running relay between two interfaces; stops (and joins its threads) on drop.
pub struct Relay {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl Relay {
    /// Relay every frame between interfaces `a` and `b` (in this network
    /// namespace) through `link`, both ways.
    pub fn start(a: &str, b: &str, link: Flaky) -> io::Result<Self> {
        let (sa, sb) = (Arc::new(bind(a)?), Arc::new(bind(b)?));
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let mut threads = Vec::new();
        for (from, to, seed) in [(sa.clone(), sb.clone(), 0x9e37_79b9_7f4a_7c15_u64), (sb, sa, 0xd1b5_4a32_d192_ed03)] {
            let queue = Arc::new(Queue::default());
            threads.push(std::thread::spawn({
                let (queue, stop, counters) = (queue.clone(), stop.clone(), counters.clone());
                move || read_frames(&from, &queue, &stop, &counters, link, seed)
            }));
            threads.push(std::thread::spawn({
                let (stop, counters) = (stop.clone(), counters.clone());
                move || send_frames(&to, &queue, &stop, &counters)
            }));
        }
        Ok(Self { stop, threads, counters })
    }

    /// What the relay did so far.
    pub fn stats(&self) -> RelayStats {
        let c = &self.counters;
        RelayStats {
            frames: c.frames.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            duplicated: c.duplicated.load(Ordering::Relaxed),
            reordered: c.reordered.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn read_frames(from: &OwnedFd, queue: &Queue, stop: &AtomicBool, counters: &Counters, link: Flaky, seed: u64) {
    let mut rng = XorShift(seed);
    let mut buf = vec![0u8; FRAME_MAX];
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `buf` is valid for `buf.len()` bytes.
        let n = unsafe { libc::recv(from.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            continue; // the 100 ms receive timeout: look at `stop` again
        }
        counters.frames.fetch_add(1, Ordering::Relaxed);
        seq += 1;
        if rng.unit() < link.loss {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let copies = if rng.unit() < link.duplicate {
            counters.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        let mut due = queue.due.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for _ in 0..copies {
            if due.len() >= QUEUE_LIMIT {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let spread = link.jitter.as_secs_f64() * (2.0 * rng.unit() - 1.0);
            let delay = Duration::from_secs_f64((link.delay.as_secs_f64() + spread).max(0.0));
            due.push(Reverse((Instant::now() + delay, seq, buf[..n as usize].to_vec())));
        }
        drop(due);
        queue.wake.notify_one();
    }
}

fn send_frames(to: &OwnedFd, queue: &Queue, stop: &AtomicBool, counters: &Counters) {
    let mut highest_sent = 0u64;
    let mut due = queue.due.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let wait = match due.peek() {
            None => Duration::from_millis(100),
            Some(Reverse((at, _, _))) if *at > now => *at - now,
            Some(_) => {
                let Some(Reverse((_, seq, frame))) = due.pop() else { continue };
                drop(due);
                if seq < highest_sent {
                    counters.reordered.fetch_add(1, Ordering::Relaxed);
                }
                highest_sent = highest_sent.max(seq);
                // A frame the far side cannot take (its queue full) is lost, as on a wire.
                // SAFETY: `frame` is valid for `frame.len()` bytes.
                unsafe { libc::send(to.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
                due = queue.due.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
        };
        due = queue.wake.wait_timeout(due, wait.min(Duration::from_millis(100))).unwrap_or_else(std::sync::PoisonError::into_inner).0;
    }
}

/// An `AF_PACKET` socket on interface `name`: every frame it receives, with
/// the virtio-net header, not those it sends; reads time out after 100 ms.
fn bind(name: &str) -> io::Result<OwnedFd> {
    const PACKET_VNET_HDR: libc::c_int = 15;
    const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
    let all = (libc::ETH_P_ALL as u16).to_be();
    // Protocol 0: nothing is received until the bind below names the interface.
    // SAFETY: plain syscalls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let one: libc::c_int = 1;
        for opt in [PACKET_VNET_HDR, PACKET_IGNORE_OUTGOING] {
            if libc::setsockopt(fd.as_raw_fd(), libc::SOL_PACKET, opt, (&raw const one).cast(), size_of::<libc::c_int>() as u32) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let timeout = libc::timeval { tv_sec: 0, tv_usec: 100_000 };
        if libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&raw const timeout).cast(), size_of::<libc::timeval>() as u32) != 0 {
            return Err(io::Error::last_os_error());
        }
        let cname = CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let index = libc::if_nametoindex(cname.as_ptr());
        if index == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = all;
        addr.sll_ifindex = index as i32;
        if libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), size_of::<libc::sockaddr_ll>() as u32) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(fd)
    }
}

/// xorshift64*: a few random numbers per frame, no dependency, reproducible per direction.
struct XorShift(u64);

impl XorShift {
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_uniform_enough_for_a_loss_rate() {
        let mut rng = XorShift(7);
        let n = 100_000;
        let below = (0..n).filter(|_| rng.unit() < 0.03).count();
        assert!((2_700..3_300).contains(&below), "{below} of {n} below 0.03");
    }
}
