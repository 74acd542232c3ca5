//! The OpenAI text generation API: `POST /v1/chat/completions` and `POST /v1/completions`, whole
//! or streamed as server-sent events.
//!
//! Both parse into one [`Prompt`] and [`GenerateOptions`], and render the model thread's events
//! in their own shape. A stream ends with `data: [DONE]`; with `stream_options.include_usage` a
//! last chunk carries the usage. An error after the stream started comes as an `error` event.
//! A client that disconnects drops the event receiver, which frees its KV cache at the next step.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

use super::openai::OpenAiError;
use super::{parse_json, read_admitted, AppState};
use crate::error::ApiError;
use crate::generate::chat_template::ChatMessage;
use crate::generate::sampling::SamplingParams;
use crate::generate::{Event, GenerateOptions, GeneratedToken, Generator};

/// Most alternatives `top_logprobs` / `logprobs` may ask for.
const MAX_TOP_LOGPROBS: usize = 20;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// The fields both endpoints share.
#[derive(Debug, Deserialize)]
struct Common {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    max_tokens: Option<usize>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    top_k: Option<usize>,
    #[serde(default)]
    n: Option<usize>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    stop: Option<OneOrMany>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    presence_penalty: Option<f32>,
    #[serde(default)]
    frequency_penalty: Option<f32>,
    /// Not OpenAI's: keep generating past end-of-sequence tokens (as vLLM), for benchmarks.
    #[serde(default)]
    ignore_eos: bool,
    #[serde(default)]
    tools: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    messages: Vec<Message>,
    #[serde(default)]
    max_completion_tokens: Option<usize>,
    #[serde(default)]
    logprobs: bool,
    #[serde(default)]
    top_logprobs: Option<usize>,
    #[serde(flatten)]
    common: Common,
}

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    prompt: OneOrMany,
    #[serde(default)]
    logprobs: Option<usize>,
    #[serde(default)]
    echo: bool,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    best_of: Option<usize>,
    #[serde(flatten)]
    common: Common,
}

/// Which endpoint a response is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Completion,
}

/// Everything a response needs besides the events.
struct Reply {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    logprobs: bool,
    generator: Arc<Generator>,
}

pub async fn chat_completions(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, OpenAiError> {
    let generator = state.generator()?;
    let body = read_admitted(generator.clone(), request).await?;
    let request: ChatRequest = parse_json(&body.bytes)?;
    check_common(&state, &request.common)?;
    let messages = request
        .messages
        .into_iter()
        .map(chat_message)
        .collect::<Result<Vec<_>, _>>()?;
    if messages.is_empty() {
        return Err(ApiError::invalid("messages must not be empty", "messages").into());
    }
    let top = match (request.logprobs, request.top_logprobs) {
        (false, Some(_)) => {
            return Err(
                ApiError::invalid("top_logprobs requires logprobs: true", "top_logprobs").into(),
            )
        }
        (false, None) => None,
        (true, top) => Some(top_logprobs(top.unwrap_or(0), "top_logprobs")?),
    };
    let max_tokens = request.max_completion_tokens.or(request.common.max_tokens);
    let options = options(&request.common, max_tokens, top)?;
    let gen = generator.clone();
    let prompt = tokio::task::spawn_blocking(move || {
        let text = gen.render_chat(&messages)?;
        gen.encode(&text)
    })
    .await
    .map_err(|err| ApiError::Internal(format!("tokenizer task failed: {err}")))??;
    let events = generator.submit(&body.admitted, prompt, options)?;
    let reply = reply(
        Kind::Chat,
        &state,
        &request.common,
        top.is_some(),
        generator,
    );
    Ok(respond(reply, request.common.stream, events).await)
}

pub async fn completions(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, OpenAiError> {
    let generator = state.generator()?;
    let body = read_admitted(generator.clone(), request).await?;
    let request: CompletionRequest = parse_json(&body.bytes)?;
    check_common(&state, &request.common)?;
    if request.echo {
        return Err(ApiError::invalid("echo is not supported", "echo").into());
    }
    if request.suffix.is_some() {
        return Err(ApiError::invalid("suffix is not supported", "suffix").into());
    }
    if request.best_of.is_some_and(|b| b != 1) {
        return Err(ApiError::invalid("best_of other than 1 is not supported", "best_of").into());
    }
    let mut prompts = request.prompt.into_vec();
    if prompts.len() != 1 {
        return Err(ApiError::invalid(
            format!(
                "exactly one prompt per request is supported, got {}",
                prompts.len()
            ),
            "prompt",
        )
        .into());
    }
    let text = prompts.remove(0);
    let top = request
        .logprobs
        .map(|n| top_logprobs(n, "logprobs"))
        .transpose()?;
    // OpenAI's default for completions.
    let max_tokens = request.common.max_tokens.or(Some(16));
    let options = options(&request.common, max_tokens, top)?;
    let gen = generator.clone();
    let prompt = tokio::task::spawn_blocking(move || gen.encode(&text))
        .await
        .map_err(|err| ApiError::Internal(format!("tokenizer task failed: {err}")))??;
    let events = generator.submit(&body.admitted, prompt, options)?;
    let reply = reply(
        Kind::Completion,
        &state,
        &request.common,
        top.is_some(),
        generator,
    );
    Ok(respond(reply, request.common.stream, events).await)
}

fn chat_message(message: Message) -> Result<ChatMessage, ApiError> {
    let content = match message.content {
        None => String::new(),
        Some(Content::Text(text)) => text,
        Some(Content::Parts(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part.kind.as_str(), part.text) {
                    ("text", Some(t)) => text.push_str(&t),
                    (kind, _) => {
                        return Err(ApiError::invalid(
                            format!("content parts of type {kind:?} are not supported; this model reads text"),
                            "messages",
                        ))
                    }
                }
            }
            text
        }
    };
    Ok(ChatMessage {
        role: message.role,
        content,
    })
}

fn check_common(state: &AppState, common: &Common) -> Result<(), ApiError> {
    if let Some(model) = &common.model {
        state.check_model(model)?;
    }
    if common.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("n other than 1 is not supported", "n"));
    }
    if common.tools.as_ref().is_some_and(|t| !t.is_null()) {
        return Err(ApiError::invalid("tools are not supported", "tools"));
    }
    Ok(())
}

fn top_logprobs(n: usize, param: &'static str) -> Result<usize, ApiError> {
    if n > MAX_TOP_LOGPROBS {
        return Err(ApiError::invalid(
            format!("{param} must be at most {MAX_TOP_LOGPROBS}, got {n}"),
            param,
        ));
    }
    Ok(n)
}

/// Checks the sampling options and fills in the defaults.
fn options(
    common: &Common,
    max_tokens: Option<usize>,
    logprobs: Option<usize>,
) -> Result<GenerateOptions, ApiError> {
    let in_range = |value: Option<f32>, low: f32, high: f32, param: &'static str, default: f32| {
        let v = value.unwrap_or(default);
        if v.is_finite() && (low..=high).contains(&v) {
            Ok(v)
        } else {
            Err(ApiError::invalid(
                format!("{param} must be between {low} and {high}, got {v}"),
                param,
            ))
        }
    };
    let temperature = in_range(common.temperature, 0.0, 2.0, "temperature", 1.0)?;
    let top_p = in_range(common.top_p, 0.0, 1.0, "top_p", 1.0)?;
    if top_p == 0.0 {
        return Err(ApiError::invalid("top_p must be above 0", "top_p"));
    }
    let presence_penalty = in_range(common.presence_penalty, -2.0, 2.0, "presence_penalty", 0.0)?;
    let frequency_penalty = in_range(
        common.frequency_penalty,
        -2.0,
        2.0,
        "frequency_penalty",
        0.0,
    )?;
    if max_tokens == Some(0) {
        return Err(ApiError::invalid(
            "max_tokens must be at least 1",
            "max_tokens",
        ));
    }
    let stop = common
        .stop
        .as_ref()
        .map(|s| match s {
            OneOrMany::One(one) => vec![one.clone()],
            OneOrMany::Many(many) => many.clone(),
        })
        .unwrap_or_default();
    if stop.len() > 4 {
        return Err(ApiError::invalid(
            "at most 4 stop sequences are supported",
            "stop",
        ));
    }
    Ok(GenerateOptions {
        max_tokens,
        sampling: SamplingParams {
            temperature,
            top_p,
            top_k: common.top_k.unwrap_or(0),
            presence_penalty,
            frequency_penalty,
            seed: common.seed.unwrap_or_else(random_seed),
            logprobs,
        },
        stop,
        ignore_eos: common.ignore_eos,
    })
}

/// A seed for requests that gave none: different for each request.
fn random_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn reply(
    kind: Kind,
    state: &AppState,
    common: &Common,
    logprobs: bool,
    generator: Arc<Generator>,
) -> Reply {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = match kind {
        Kind::Chat => "chatcmpl",
        Kind::Completion => "cmpl",
    };
    Reply {
        kind,
        id: format!(
            "{prefix}-{:x}{:06x}",
            random_seed() >> 24,
            NEXT.fetch_add(1, Ordering::Relaxed)
        ),
        created: generator.info.created.max(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        ),
        model: state.served_name.clone(),
        include_usage: common
            .stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage),
        logprobs,
        generator,
    }
}

async fn respond(reply: Reply, streaming: bool, events: UnboundedReceiver<Event>) -> Response {
    if streaming {
        Sse::new(sse(reply, events))
            .keep_alive(KeepAlive::default())
            .into_response()
    } else {
        match collect(&reply, events).await {
            Ok(body) => Json(body).into_response(),
            Err(err) => OpenAiError::from(err).into_response(),
        }
    }
}

/// The whole answer, for a request that did not ask to stream.
async fn collect(reply: &Reply, mut events: UnboundedReceiver<Event>) -> Result<Value, ApiError> {
    let mut text = String::new();
    let mut tokens = Vec::new();
    while let Some(event) = events.recv().await {
        match event {
            Event::Delta {
                text: t,
                tokens: more,
            } => {
                text.push_str(&t);
                tokens.extend(more);
            }
            Event::Done {
                finish_reason,
                prompt_tokens,
                completion_tokens,
            } => {
                let logprobs = reply.logprobs.then(|| reply.logprobs_json(&tokens));
                let choice = match reply.kind {
                    Kind::Chat => json!({
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": logprobs,
                        "finish_reason": finish_reason.as_str(),
                    }),
                    Kind::Completion => json!({
                        "index": 0,
                        "text": text,
                        "logprobs": logprobs,
                        "finish_reason": finish_reason.as_str(),
                    }),
                };
                let mut body = reply.envelope(false);
                body["choices"] = json!([choice]);
                body["usage"] = usage(prompt_tokens, completion_tokens);
                return Ok(body);
            }
            Event::Failed(err) => return Err(err),
        }
    }
    Err(ApiError::Internal(
        "the model thread stopped before answering".to_owned(),
    ))
}

/// The answer as server-sent events.
fn sse(
    reply: Reply,
    events: UnboundedReceiver<Event>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let opening = (reply.kind == Kind::Chat)
        .then(|| reply.chunk(json!({"role": "assistant", "content": ""}), None, None));
    let state = (reply, events, false);
    let body = stream::unfold(state, |(reply, mut events, done)| async move {
        if done {
            return None;
        }
        let (chunks, finished) = match events.recv().await {
            Some(Event::Delta { text, tokens }) => {
                if text.is_empty() && (!reply.logprobs || tokens.is_empty()) {
                    (Vec::new(), false)
                } else {
                    let logprobs = reply.logprobs.then(|| reply.logprobs_json(&tokens));
                    let delta = json!({"content": text});
                    (vec![reply.chunk(delta, logprobs, None)], false)
                }
            }
            Some(Event::Done {
                finish_reason,
                prompt_tokens,
                completion_tokens,
            }) => {
                let mut chunks = vec![reply.chunk(json!({}), None, Some(finish_reason.as_str()))];
                if reply.include_usage {
                    let mut last = reply.envelope(true);
                    last["choices"] = json!([]);
                    last["usage"] = usage(prompt_tokens, completion_tokens);
                    chunks.push(last);
                }
                (chunks, true)
            }
            Some(Event::Failed(err)) => {
                let error = json!({"error": {
                    "message": err.to_string(),
                    "type": if err.status().is_server_error() { "server_error" } else { "invalid_request_error" },
                    "param": err.param(),
                    "code": err.code(),
                }});
                (vec![error], true)
            }
            None => (Vec::new(), true),
        };
        let mut out: Vec<Result<SseEvent, Infallible>> = chunks
            .into_iter()
            .map(|c| Ok(SseEvent::default().data(c.to_string())))
            .collect();
        if finished {
            out.push(Ok(SseEvent::default().data("[DONE]")));
        }
        Some((stream::iter(out), (reply, events, finished)))
    })
    .flatten();
    stream::iter(opening.map(|c| Ok(SseEvent::default().data(c.to_string())))).chain(body)
}

fn usage(prompt_tokens: usize, completion_tokens: usize) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

impl Reply {
    fn envelope(&self, chunk: bool) -> Value {
        let object = match (self.kind, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Completion, _) => "text_completion",
        };
        json!({"id": self.id, "object": object, "created": self.created, "model": self.model})
    }

    /// One streamed chunk with a single choice.
    fn chunk(&self, delta: Value, logprobs: Option<Value>, finish_reason: Option<&str>) -> Value {
        let mut body = self.envelope(true);
        let choice = match self.kind {
            Kind::Chat => json!({
                "index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason,
            }),
            Kind::Completion => json!({
                "index": 0,
                "text": delta.get("content").cloned().unwrap_or_else(|| json!("")),
                "logprobs": logprobs,
                "finish_reason": finish_reason,
            }),
        };
        body["choices"] = json!([choice]);
        body
    }

    /// Log-probabilities in the endpoint's shape.
    fn logprobs_json(&self, tokens: &[GeneratedToken]) -> Value {
        let text = |id: u32| self.generator.token_text(id);
        let entries = tokens
            .iter()
            .filter_map(|t| t.logprobs.as_ref().map(|l| (t.id, l)));
        match self.kind {
            Kind::Chat => {
                let content: Vec<Value> = entries
                    .map(|(id, l)| {
                        let token = text(id);
                        json!({
                            "token": token,
                            "logprob": l.logprob,
                            "bytes": token.as_bytes(),
                            "top_logprobs": l.top.iter().map(|&(alt, lp)| {
                                let alt = text(alt);
                                json!({"token": alt, "logprob": lp, "bytes": alt.as_bytes()})
                            }).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                json!({ "content": content })
            }
            Kind::Completion => {
                let (mut tokens_out, mut lps, mut tops) = (Vec::new(), Vec::new(), Vec::new());
                for (id, l) in entries {
                    tokens_out.push(json!(text(id)));
                    lps.push(json!(l.logprob));
                    let top: serde_json::Map<String, Value> = l
                        .top
                        .iter()
                        .map(|&(alt, lp)| (text(alt), json!(lp)))
                        .collect();
                    tops.push(Value::Object(top));
                }
                json!({"tokens": tokens_out, "token_logprobs": lps, "top_logprobs": tops})
            }
        }
    }
}
