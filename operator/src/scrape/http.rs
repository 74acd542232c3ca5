//! The scraper of each pod's `/metrics` over plain HTTP, with a short timeout so one slow pod
//! does not hold back a whole round.

use std::time::Duration;

use super::{parse, MetricsSource, PodTarget, Reading, ScrapeError};

/// Most bytes of a `/metrics` answer read.
const MAX_BODY: usize = 1 << 20;

/// Reads `http://<podIP>:<port>/metrics`.
#[derive(Clone)]
pub struct HttpScraper {
    client: reqwest::Client,
}

impl HttpScraper {
    /// A scraper giving up on a pod after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .no_proxy()
            .build()
            .expect("a plain HTTP client always builds");
        Self { client }
    }
}

impl MetricsSource for HttpScraper {
    fn read<'a>(&'a self, target: &'a PodTarget) -> Reading<'a> {
        Box::pin(async move {
            let url = format!("http://{}:{}/metrics", target.ip, target.port);
            let request_failed = |message: String| ScrapeError::Request {
                url: url.clone(),
                message,
            };
            let response = self
                .client
                .get(&url)
                .send()
                .await
                .map_err(|e| request_failed(e.to_string()))?;
            if !response.status().is_success() {
                return Err(request_failed(format!("HTTP {}", response.status())));
            }
            let body = response
                .bytes()
                .await
                .map_err(|e| request_failed(e.to_string()))?;
            if body.len() > MAX_BODY {
                return Err(request_failed(format!("more than {MAX_BODY} bytes")));
            }
            let text = String::from_utf8_lossy(&body);
            parse(&text).map_err(|source| ScrapeError::Parse {
                url: url.clone(),
                source,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;

    use super::*;

    async fn serve(router: Router) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, router).await });
        port
    }

    fn target(port: u16) -> PodTarget {
        PodTarget {
            pod: "p".to_string(),
            ip: "127.0.0.1".to_string(),
            port,
        }
    }

    #[tokio::test]
    async fn reads_a_runtime_and_says_why_another_answer_is_not_one() {
        let runtime = serve(Router::new().route(
            "/metrics",
            get(|| async { "kandle_requests_in_flight 3\nkandle_queue_depth 1\n" }),
        ))
        .await;
        let scraper = HttpScraper::new(Duration::from_secs(2));
        let m = scraper.read(&target(runtime)).await.unwrap();
        assert_eq!((m.in_flight, m.queue_depth), (3.0, 1.0));

        let other = serve(Router::new().route("/metrics", get(|| async { "up 1\n" }))).await;
        let err = scraper.read(&target(other)).await.unwrap_err().to_string();
        assert!(err.contains("not a kandle-runtime"), "{err}");

        let failing = serve(Router::new().route(
            "/metrics",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "loading") }),
        ))
        .await;
        let err = scraper
            .read(&target(failing))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("HTTP 503"), "{err}");
    }
}
