//! Bodies over a real connection.

use super::*;

/// Sends `head` + `partial` (fewer bytes than the declared length) on a real TCP connection,
/// half-closes it or not, and reads the whole answer.
pub(crate) fn short_body(addr: std::net::SocketAddr, close: bool) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(StdDuration::from_secs(30))).unwrap();
    s.write_all(
        b"POST /queue/tokens HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"userId\"",
    )
    .unwrap();
    if close {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut out = Vec::new();
    let mut buf = [0_u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return text,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[actix_web::test]
pub(crate) async fn a_body_shorter_than_its_length_is_answered_without_waiting_for_the_store() {
    let world = World::new();
    let state = world.builder().body_timeout(StdDuration::from_millis(200)).build();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server =
        actix_web::HttpServer::new(move || actix_web::App::new().configure(adapters_http::configure(state.clone())))
            .workers(1)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    let (closed, stalled) =
        actix_web::web::block(move || (short_body(addr, true), short_body(addr, false))).await.unwrap();
    assert!(closed.starts_with("HTTP/1.1 400"), "{closed}");
    assert!(closed.to_ascii_lowercase().contains("content-type: application/problem+json"), "{closed}");
    assert!(closed.contains("INVALID_REQUEST"), "{closed}");
    assert!(stalled.starts_with("HTTP/1.1 408"), "{stalled}");
    assert!(stalled.contains("REQUEST_TIMEOUT"), "{stalled}");
    assert_eq!(world.ticketing.queue_state().unwrap().stats.issued_through, 0, "nothing was done");
    handle.stop(true).await;
}
