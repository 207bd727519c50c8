//! What the RabbitMQ source and sink share: the broker URL, connecting with bounded back-off,
//! and running lapin's futures on the calling thread.
//!
//! lapin is asynchronous; eventflow's connector threads are not. Each connector thread owns its
//! connection and waits on lapin's futures with `block_on`; lapin's own executor drives the
//! socket. Nothing here runs on a timely worker.

use lapin::options::{BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};

/// The broker used when a node gives no `url` and `EVENTFLOW_AMQP_URL` is not set.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

pub use super::live_source::CONNECT_ATTEMPTS;

/// The URL to use: the node's `url`, else `EVENTFLOW_AMQP_URL`, else [`DEFAULT_URL`].
pub fn resolve_url(url: Option<&str>) -> String {
    match url {
        Some(u) => u.to_string(),
        None => std::env::var("EVENTFLOW_AMQP_URL").unwrap_or_else(|_| DEFAULT_URL.to_string()),
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user = &url[s + 3..at];
            let user = user.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Runs a future to completion on this thread.
pub fn block<F: std::future::Future>(f: F) -> F::Output {
    futures_lite::future::block_on(f)
}

/// An open connection and channel, with the queue declared (durable, if it did not exist).
pub struct Link {
    /// The connection (kept open while the channel is used).
    pub connection: Connection,
    /// The channel.
    pub channel: Channel,
}

impl Link {
    /// Connects once: opens a channel, declares `queue` (durable; an existing queue is used as
    /// it is), then sets `prefetch` (consumers) or turns on publisher confirms (publishers).
    pub fn open(url: &str, queue: &str, role: Role) -> Result<Link, lapin::Error> {
        block(async {
            let connection = Connection::connect(
                url,
                ConnectionProperties::default().with_connection_name("eventflow".into()),
            )
            .await?;
            let channel = connection.create_channel().await?;
            // A passive declare first: an existing queue (quorum, stream, other arguments) is
            // used as it is; only a missing one is created (durable, classic).
            if channel
                .queue_declare(
                    queue,
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .is_err()
            {
                // The failed passive declare closed the channel.
                let c = connection.create_channel().await?;
                c.queue_declare(
                    queue,
                    QueueDeclareOptions {
                        durable: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
                let _ = c.close(200, "declared").await;
            }
            let channel = if channel.status().connected() {
                channel
            } else {
                connection.create_channel().await?
            };
            match role {
                Role::Consumer { prefetch } => {
                    channel
                        .basic_qos(prefetch, BasicQosOptions::default())
                        .await?
                }
                Role::Publisher => {
                    channel
                        .confirm_select(ConfirmSelectOptions::default())
                        .await?
                }
            }
            Ok(Link {
                connection,
                channel,
            })
        })
    }

    /// Connects, retrying with doubling waits ([`CONNECT_ATTEMPTS`] in all); each failure is
    /// logged on stderr. `give_up` is asked before each wait (a stop request ends the retries).
    pub fn open_with_retry(
        url: &str,
        queue: &str,
        role: Role,
        what: &str,
        give_up: &dyn Fn() -> bool,
    ) -> Result<Link, String> {
        super::live_source::connect_with_retry(what, &redact(url), give_up, || {
            Link::open(url, queue, role).map_err(|e| e.to_string())
        })
    }

    /// Closes the channel and the connection, ignoring errors (the broker may be gone).
    pub fn close(self) {
        block(async {
            let _ = self.channel.close(200, "bye").await;
            let _ = self.connection.close(200, "bye").await;
        });
    }
}

/// What a link is for.
#[derive(Clone, Copy, Debug)]
pub enum Role {
    /// Consuming, with at most `prefetch` unacknowledged messages.
    Consumer {
        /// `basic.qos` prefetch count.
        prefetch: u16,
    },
    /// Publishing with confirms.
    Publisher,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(redact("amqp://host"), "amqp://host");
    }
}
