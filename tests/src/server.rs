//! Local HTTP servers for the bench: loopback only, `TCP_NODELAY` on every connection (as Lambda's
//! Runtime API does; without it delayed-ACK stalls of ~40 ms appear that belong to no one).

use axum::Router;
use axum::serve::ListenerExt;
use std::net::SocketAddr;
use tokio::task::JoinHandle;

pub async fn spawn(router: Router) -> (SocketAddr, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("bound address");
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (addr, task)
}
