//! An upstream DNS server (UDP) that holds every answer until the test opens its gate: a lookup
//! stays in flight for exactly as long as a test needs it to (draining at shutdown, say).

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record};

use super::PATIENCE;

/// Answers every question with `1.2.3.4` once [`GatedDns::open`] is called.
pub struct GatedDns {
    pub addr: SocketAddr,
    state: Arc<(Mutex<Gate>, Condvar)>,
}

#[derive(Default)]
struct Gate {
    asked: usize,
    open: bool,
}

impl GatedDns {
    pub fn start() -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let state = Arc::new((Mutex::new(Gate::default()), Condvar::new()));
        let shared = state.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, peer)) = socket.recv_from(&mut buf) {
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                // Each answer waits on its own thread, so later questions still arrive.
                let (shared, socket) = (shared.clone(), socket.try_clone().unwrap());
                thread::spawn(move || {
                    let (gate, changed) = &*shared;
                    let mut g = gate.lock().unwrap();
                    g.asked += 1;
                    changed.notify_all();
                    while !g.open {
                        g = changed.wait(g).unwrap();
                    }
                    drop(g);
                    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
                    for q in &query.queries {
                        reply.add_query(q.clone());
                        let data = RData::A(A([1, 2, 3, 4].into()));
                        reply.add_answer(Record::from_rdata(q.name().clone(), 60, data));
                    }
                    let _ = socket.send_to(&reply.to_vec().unwrap(), peer);
                });
            }
        });
        Self { addr, state }
    }

    /// Waits until `count` questions have arrived (and are being held).
    pub fn wait_asked(&self, count: usize) {
        let (gate, changed) = &*self.state;
        let deadline = Instant::now() + PATIENCE;
        let mut g = gate.lock().unwrap();
        while g.asked < count {
            assert!(
                Instant::now() < deadline,
                "{} of {count} questions arrived",
                g.asked
            );
            g = changed
                .wait_timeout(g, Duration::from_millis(100))
                .unwrap()
                .0;
        }
    }

    /// Lets every held and later answer go.
    pub fn open(&self) {
        let (gate, changed) = &*self.state;
        gate.lock().unwrap().open = true;
        changed.notify_all();
    }
}
