//! What the web app's test binaries share: the app served on a free port,
//! reading the test services.

#![allow(dead_code)]

use bandvote_testkit as kit;
use bandvote_web::{router, AppState, Sources};

/// The app on a free loopback port; its base URL.
pub async fn serve(sources: Sources) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(AppState::new(sources))).await });
    format!("http://{addr}")
}

/// The test Redis (keys under `prefix`) and MongoDB collection `collection`.
pub fn sources(prefix: &str, collection: &str) -> Sources {
    Sources {
        redis_url: kit::redis_url(),
        redis_prefix: prefix.into(),
        mongo_url: kit::mongo_url(),
        mongo_db: "bandvote_test".into(),
        mongo_collection: collection.into(),
    }
}
