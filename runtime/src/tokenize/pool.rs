//! A small, fixed pool of tokenizer threads.
//!
//! Tokenizing on tokio's blocking pool let up to 512 threads compete with inference on a 2-core
//! pod, and kept tokenizing for clients that had already timed out or gone. Here a fixed number of
//! threads (`--tokenizer-threads`) take requests in order; the caller holds its admission permits
//! while it waits, and a request whose caller has stopped waiting is skipped, or stopped between
//! inputs.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::{Input, TextEncoder};
use crate::error::ApiError;

type Answer = Result<Vec<Vec<u32>>, ApiError>;

struct Task {
    inputs: Vec<Input>,
    reply: oneshot::Sender<Answer>,
}

pub struct TokenizerPool {
    tasks: SyncSender<Task>,
}

impl TokenizerPool {
    /// Starts `threads` tokenizer threads with room for `queue` waiting requests.
    pub fn start(encoder: Arc<TextEncoder>, threads: usize, queue: usize) -> anyhow::Result<Self> {
        let (tasks, receiver) = sync_channel::<Task>(queue.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..threads.max(1) {
            let receiver = receiver.clone();
            let encoder = encoder.clone();
            std::thread::Builder::new()
                .name(format!("kandle-tokenize-{index}"))
                .spawn(move || work(&encoder, &receiver))?;
        }
        Ok(Self { tasks })
    }

    /// Tokenizes and checks `inputs`. Dropping the future stops the work at the next input.
    pub async fn encode(&self, inputs: Vec<Input>) -> Answer {
        let (reply, answer) = oneshot::channel();
        self.tasks
            .try_send(Task { inputs, reply })
            .map_err(|err| match err {
                TrySendError::Full(_) => {
                    ApiError::Overloaded("the tokenizer queue is full".to_owned())
                }
                TrySendError::Disconnected(_) => {
                    ApiError::Internal("the tokenizer threads have stopped".to_owned())
                }
            })?;
        answer
            .await
            .map_err(|_| ApiError::Internal("a tokenizer thread stopped".to_owned()))?
    }
}

fn work(encoder: &TextEncoder, receiver: &Mutex<Receiver<Task>>) {
    loop {
        let task = {
            let Ok(receiver) = receiver.lock() else {
                return;
            };
            match receiver.recv() {
                Ok(task) => task,
                Err(_) => return,
            }
        };
        if task.reply.is_closed() {
            continue;
        }
        let reply = task.reply;
        let answer = encoder.encode_while(task.inputs, || !reply.is_closed());
        let _ = reply.send(answer);
    }
}
