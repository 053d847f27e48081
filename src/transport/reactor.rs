//! Wakes connection threads when their socket has something for them, so a
//! connection costs one descriptor (its socket) instead of two.
//!
//! One thread waits in epoll on every stream socket, edge-triggered, for
//! input, hang-up and room to write. On an edge it unparks the socket's
//! connection thread, which parks (with its keepalive deadline as timeout)
//! between rounds of non-blocking work. The hub wakes a thread the same way
//! (`Outlet::wake`, an unpark). Edges cost nothing on the fan-out path: the
//! kernel signals "writable" only after a write found the socket full, and
//! "readable" only when the client sends something.

use rustix::event::epoll;
use std::collections::HashMap;
use std::net::TcpStream;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::thread::Thread;

pub struct Reactor {
    ep: OwnedFd,
    threads: Mutex<HashMap<u64, Thread>>,
}

impl Reactor {
    /// Creates the epoll set and starts its thread.
    pub fn start() -> std::io::Result<Arc<Reactor>> {
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let r = Arc::new(Reactor { ep, threads: Mutex::new(HashMap::new()) });
        let me = r.clone();
        crate::thread::spawn("stream-reactor".into(), Some(256 * 1024), move || me.run())?;
        Ok(r)
    }

    fn run(&self) {
        let mut events: Vec<epoll::Event> = Vec::with_capacity(256);
        loop {
            events.clear();
            match epoll::wait(&self.ep, rustix::buffer::spare_capacity(&mut events), None) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    log::error!("stream reactor: epoll_wait failed: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
            }
            let threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
            for ev in events.iter() {
                if let Some(t) = threads.get(&ev.data.u64()) {
                    t.unpark();
                }
            }
        }
    }

    /// From now on the calling thread is unparked when `sock` becomes
    /// readable or writable or hangs up. Pair with `Watch`'s drop.
    pub fn watch<'a>(&'a self, id: u64, sock: &'a TcpStream) -> std::io::Result<Watch<'a>> {
        self.threads.lock().unwrap_or_else(|p| p.into_inner()).insert(id, std::thread::current());
        let flags =
            epoll::EventFlags::IN | epoll::EventFlags::OUT | epoll::EventFlags::RDHUP | epoll::EventFlags::ET;
        if let Err(e) = epoll::add(&self.ep, sock.as_fd(), epoll::EventData::new_u64(id), flags) {
            self.threads.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            return Err(e.into());
        }
        Ok(Watch { reactor: self, id, sock })
    }
}

/// A socket in the reactor's set; removed when dropped.
pub struct Watch<'a> {
    reactor: &'a Reactor,
    id: u64,
    sock: &'a TcpStream,
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        let _ = epoll::delete(&self.reactor.ep, self.sock.as_fd());
        self.reactor.threads.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }
}
