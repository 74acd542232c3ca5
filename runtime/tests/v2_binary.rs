//! KServe v2's binary tensor data extension: by hand on the wire, and with NVIDIA's tritonclient.

mod common;

use common::{max_abs_diff, TestServer, SERVED_NAME};
use reqwest::StatusCode;
use serde_json::{json, Value};

const TEXTS: [&str; 3] = [
    "kandle serves embeddings",
    "héllo wörld ✓",
    "a third sentence",
];

fn bytes_element(text: &str) -> Vec<u8> {
    let mut out = (text.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_inputs_and_outputs_round_trip_on_the_wire() {
    let server = TestServer::start(|_| {}).await;
    let expected = server.embed(json!(TEXTS)).await;

    let data: Vec<u8> = TEXTS.iter().flat_map(|t| bytes_element(t)).collect();
    let header = json!({
        "id": "bin-1",
        "inputs": [{"name": "text", "shape": [3], "datatype": "BYTES",
                    "parameters": {"binary_data_size": data.len()}}],
        "parameters": {"binary_data_output": true}
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&data);
    let response = server
        .client
        .post(format!("{}/v2/models/{SERVED_NAME}/infer", server.url))
        .header("inference-header-content-length", header.len())
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let json_length: usize = response.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = response.bytes().await.unwrap();
    let reply: Value = serde_json::from_slice(&bytes[..json_length]).unwrap();
    assert_eq!(reply["id"], "bin-1");
    let output = &reply["outputs"][0];
    assert_eq!(output["shape"], json!([3, 384]));
    assert!(output.get("data").is_none(), "{reply}");
    let size = output["parameters"]["binary_data_size"].as_u64().unwrap() as usize;
    assert_eq!(size, 3 * 384 * 4);
    assert_eq!(bytes.len(), json_length + size);
    let values: Vec<f32> = bytes[json_length..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    for (row, want) in values.chunks(384).zip(&expected) {
        assert!(max_abs_diff(row, want) < 1e-6);
    }

    // A size that does not match the data is a 400 naming the mismatch.
    let mut short = header.clone().into_bytes();
    short.extend_from_slice(&data[..data.len() - 1]);
    let response = server
        .client
        .post(format!("{}/v2/models/{SERVED_NAME}/infer", server.url))
        .header("inference-header-content-length", header.len())
        .body(short)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("binary_data_size"),
        "{error}"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_gets_the_vectors_the_openai_api_gives() {
    let Some(python) = common::python_with(
        "import tritonclient.http, numpy",
        "pip install 'tritonclient[http]'",
    ) else {
        return;
    };
    let server = TestServer::start(|_| {}).await;
    let expected = server.embed(json!(TEXTS)).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/triton_embed.py");
    let address = server.url.trim_start_matches("http://").to_owned();
    let output = tokio::process::Command::new(python)
        .arg(script)
        .arg(&address)
        .arg(SERVED_NAME)
        .args(TEXTS)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "tritonclient failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let decoded: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(decoded["extensions"], json!(["binary_tensor_data"]));
    for form in ["binary", "json", "default"] {
        let rows = decoded[form].as_array().unwrap();
        assert_eq!(rows.len(), TEXTS.len(), "{form}");
        for (row, want) in rows.iter().zip(&expected) {
            let got = common::as_vector(row);
            assert!(max_abs_diff(&got, want) < 1e-6, "{form}");
        }
    }
    server.stop().await.unwrap();
}
