"""Embeds texts through kandle-runtime's v2 API with NVIDIA's tritonclient (HTTP).

tritonclient sends inputs in the binary tensor data extension by default; this asks for the
output both ways (binary and JSON) and prints what the client decoded, as JSON, for the Rust test
runtime/tests/v2_binary.rs to compare with the OpenAI API's vectors.

Usage: triton_embed.py HOST:PORT MODEL TEXT...
"""
import json
import sys

import numpy as np
import tritonclient.http as httpclient


def main():
    url, model, *texts = sys.argv[1:]
    client = httpclient.InferenceServerClient(url=url)
    assert client.is_server_live(), "server not live"
    assert client.is_model_ready(model), "model not ready"
    extensions = client.get_server_metadata()["extensions"]

    tensor = httpclient.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_))
    results = {}
    for binary in (True, False):
        output = httpclient.InferRequestedOutput("embedding", binary_data=binary)
        result = client.infer(model, [tensor], outputs=[output])
        results["binary" if binary else "json"] = result.as_numpy("embedding").tolist()
    # No outputs named: tritonclient asks for every output in binary.
    results["default"] = client.infer(model, [tensor]).as_numpy("embedding").tolist()
    print(json.dumps({"extensions": extensions, **results}))


if __name__ == "__main__":
    main()
